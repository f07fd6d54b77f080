"""Adapters: every model family becomes ``pred = denoiser(x, t, labels)`` with a null label (docs/design.md §3)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from guidegap.denoisers import Denoiser, DiTDenoiser, ModuleDenoiser, UNet2DDenoiser, as_denoiser
from guidegap.errors import AdapterError, GuidegapError

from conftest import tiny_dit, tiny_unet


def _inputs(batch: int = 3, shape: tuple[int, ...] = (1, 8, 8), seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(batch, *shape, generator=g)
    t = torch.tensor([10, 500, 990, 250][:batch])
    labels = torch.tensor([0, 3, 1, 2][:batch])
    return x, t, labels


def _one_line(error: pytest.ExceptionInfo) -> str:
    message = str(error.value)
    assert "\n" not in message
    return message


class Recorder(torch.nn.Module):
    """Returns a deterministic function of (x, t, y) and records every call's inputs."""

    num_classes = 4

    def __init__(self) -> None:
        super().__init__()
        self.calls: list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]] = []

    def forward(self, x, t, y):
        self.calls.append((x.clone(), t.clone(), y.clone()))
        return 0.5 * x + 0.001 * t.view(-1, 1, 1, 1).float() + 0.1 * y.view(-1, 1, 1, 1).float()


# -- UNet2DModel -----------------------------------------------------------------------------------


def test_unet_reads_classes_null_label_and_shape_from_config():
    d = as_denoiser(tiny_unet(num_classes=4))
    assert isinstance(d, UNet2DDenoiser)
    assert (d.num_classes, d.null_label, d.sample_shape) == (4, 4, (1, 8, 8))
    d = as_denoiser(tiny_unet(num_classes=9, sample_size=(8, 16), in_channels=2, out_channels=2))
    assert (d.num_classes, d.null_label, d.sample_shape) == (9, 9, (2, 8, 16))
    x = torch.randn(2, 2, 8, 16)
    assert d(x, 100, torch.tensor([0, 8])).shape == x.shape
    # an explicit num_classes that agrees is accepted, one that does not is refused
    assert as_denoiser(tiny_unet(num_classes=4), num_classes=4).num_classes == 4
    with pytest.raises(AdapterError, match="num_class_embeds = num_classes \\+ 1") as info:
        as_denoiser(tiny_unet(num_classes=4), num_classes=3)
    assert "received 5" in _one_line(info)


@pytest.mark.parametrize("overrides", [dict(num_class_embeds=None), dict(class_embed_type="timestep", num_class_embeds=None),
                                       dict(class_embed_type="timestep"), dict(class_embed_type="identity", num_class_embeds=None)])
def test_unet_without_a_label_embedding_is_refused(overrides):
    with pytest.raises(AdapterError, match="classifier-free guidance") as info:
        as_denoiser(tiny_unet(**overrides))
    assert "num_class_embeds = num_classes + 1" in _one_line(info)


def test_unet_learned_sigma_keeps_the_eps_channels():
    model = tiny_unet(out_channels=2)
    d = as_denoiser(model)
    x, t, labels = _inputs()
    pred = d(x, t, labels)
    raw = model(x, t, class_labels=labels).sample
    assert raw.shape[1] == 2 and pred.shape == x.shape
    torch.testing.assert_close(pred, raw[:, :1], rtol=0, atol=0)
    assert not torch.equal(raw[:, :1], raw[:, 1:])  # the reduction picked the first channels, not any
    with pytest.raises(AdapterError, match="out_channels"):
        as_denoiser(tiny_unet(out_channels=3))


def test_unet_branches_are_the_two_separate_calls():
    model = tiny_unet()
    d = as_denoiser(model)
    x, t, labels = _inputs()
    cond, uncond = d.branches(x, t, labels)
    torch.testing.assert_close(cond, model(x, t, class_labels=labels).sample, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(uncond, model(x, t, class_labels=torch.full_like(labels, 4)).sample, rtol=1e-5, atol=1e-6)
    assert (cond - uncond).abs().max() > 1e-4


def test_unet_subclass_is_recognised():
    from diffusers import UNet2DModel

    class MyUNet(UNet2DModel):
        pass

    model = tiny_unet()
    model.__class__ = MyUNet
    assert isinstance(as_denoiser(model), UNet2DDenoiser)


# -- the contract of every denoiser -----------------------------------------------------------------


def test_branches_send_one_batch_cond_half_first():
    net = Recorder()
    d = ModuleDenoiser(net, sample_shape=(1, 2, 2))
    x, t, labels = _inputs(shape=(1, 2, 2))
    cond, uncond = d.branches(x, t, labels)
    assert len(net.calls) == 1
    seen_x, seen_t, seen_y = net.calls[0]
    assert seen_y.tolist() == labels.tolist() + [4, 4, 4]
    assert torch.equal(seen_x, torch.cat([x, x])) and torch.equal(seen_t, torch.cat([t, t]))
    assert seen_y.dtype == torch.long
    assert torch.equal(cond, d(x, t, labels)) and torch.equal(uncond, d(x, t, torch.full_like(labels, 4)))
    torch.testing.assert_close(uncond - cond, 0.1 * (4 - labels.float()).view(-1, 1, 1, 1).expand_as(x))


def test_scalar_timestep_and_label_are_broadcast():
    net = Recorder()
    d = ModuleDenoiser(net)
    x = torch.zeros(3, 1, 2, 2)
    d(x, 7, 2)
    assert net.calls[-1][1].tolist() == [7, 7, 7] and net.calls[-1][2].tolist() == [2, 2, 2]
    d.branches(x, 7, 1)
    assert net.calls[-1][1].tolist() == [7] * 6 and net.calls[-1][2].tolist() == [1, 1, 1, 4, 4, 4]


def test_check_labels_refuses_the_null_label_and_negatives():
    d = ModuleDenoiser(Recorder())
    d.check_labels(torch.tensor([0, 3]))
    for bad in (4, -1):
        with pytest.raises(AdapterError, match="labels in 0..3") as info:
            d.check_labels(torch.tensor([0, bad]))
        assert f"received {bad}" in _one_line(info)


class _Mixed(torch.nn.Module):
    num_classes = 2

    def __init__(self) -> None:
        super().__init__()
        self.a = torch.nn.Dropout(0.5)
        self.b = torch.nn.Sequential(torch.nn.Dropout(0.5), torch.nn.Identity())

    def forward(self, x, t, y):
        return x


def _modes(module: torch.nn.Module) -> list[bool]:
    return [m.training for m in module.modules()]


def test_evaluating_restores_each_submodule_mode_also_on_error():
    net = _Mixed()
    net.train()
    net.b[0].eval()  # mixed modes must come back exactly
    before = _modes(net)
    assert any(before) and not all(before)
    d = ModuleDenoiser(net)
    with d.evaluating() as inside:
        assert inside is d and not any(_modes(net))
    assert _modes(net) == before
    with pytest.raises(KeyError):
        with d.evaluating():
            assert not any(_modes(net))
            raise KeyError("boom")
    assert _modes(net) == before
    plain = ModuleDenoiser(lambda x, t, y: x, num_classes=2)  # no module: nothing to switch
    with plain.evaluating() as inside:
        assert inside is plain


def test_describe_is_json_safe_and_counts_parameters():
    model = tiny_unet()
    info = as_denoiser(model).describe()
    assert json.loads(json.dumps(info)) == info
    assert info["num_parameters"] == sum(p.numel() for p in model.parameters()) > 0
    assert info["sample_shape"] == [1, 8, 8] and info["null_label"] == 4


# -- DiT ---------------------------------------------------------------------------------------------


def test_dit_null_label_and_learned_sigma():
    model = tiny_dit(num_classes=5, out_channels=2)
    d = as_denoiser(model)
    assert isinstance(d, DiTDenoiser)
    assert (d.num_classes, d.null_label, d.sample_shape) == (5, 5, (1, 8, 8))
    x, t, labels = _inputs()
    pred = d(x, t, labels)
    raw = model(x, timestep=t, class_labels=labels).sample
    assert raw.shape[1] == 2 and pred.shape == x.shape
    torch.testing.assert_close(pred, raw[:, :1], rtol=0, atol=0)
    same = as_denoiser(tiny_dit(out_channels=1))
    assert same(x, t, labels).shape == x.shape


def test_dit_with_every_class_embedded_as_null_has_zero_gap():
    model = tiny_dit(num_classes=4)
    d = as_denoiser(model)
    x, t, labels = _inputs()
    cond, uncond = d.branches(x, t, labels)
    assert (cond - uncond).abs().max() > 1e-4
    from diffusers.models.embeddings import LabelEmbedding

    tables = [m.embedding_table.weight for m in model.modules() if isinstance(m, LabelEmbedding)]
    assert tables and all(w.shape[0] == 5 for w in tables)
    with torch.no_grad():
        for weight in tables:
            weight[:4] = weight[4]
    cond, uncond = d.branches(x, t, labels)
    assert torch.equal(cond, uncond)


def test_dit_in_train_mode_gives_eval_outputs_and_keeps_its_flags():
    from diffusers.models.embeddings import LabelEmbedding

    model = tiny_dit()
    d = as_denoiser(model)
    x, t, labels = _inputs()
    with torch.no_grad():
        expected = d.branches(x, t, labels)
    embedders = [m for m in model.modules() if isinstance(m, LabelEmbedding)]
    for m in embedders:
        m.dropout_prob = 1.0  # drop every label in train mode: the raw model can no longer see the class
    model.train()
    with torch.no_grad():
        raw_cond = model(x, timestep=t, class_labels=labels).sample[:, :1]
        assert torch.equal(raw_cond, model(x, timestep=t, class_labels=torch.full_like(labels, 4)).sample[:, :1])
        got = d.branches(x, t, labels)
    assert torch.equal(got[0], expected[0]) and torch.equal(got[1], expected[1])
    assert model.training and all(m.training for m in model.modules())


def test_dit_without_a_null_row_is_refused():
    model = tiny_dit()
    from diffusers.models.embeddings import LabelEmbedding

    for m in model.modules():
        if isinstance(m, LabelEmbedding):
            m.embedding_table = torch.nn.Embedding(4, m.embedding_table.embedding_dim)
    with pytest.raises(AdapterError, match="null row"):
        as_denoiser(model)


# -- plain modules and callables -----------------------------------------------------------------------


def test_module_reads_num_classes_null_label_and_shape_from_attributes():
    class Net(torch.nn.Module):
        num_classes, null_label, sample_shape = 3, 7, (1, 2, 2)

        def forward(self, x, t, y):
            return x

    d = as_denoiser(Net())
    assert (d.num_classes, d.null_label, d.sample_shape) == (3, 7, (1, 2, 2))
    assert as_denoiser(Net(), num_classes=5, null_label=5).num_classes == 5  # explicit options win


def test_module_without_num_classes_says_how_to_fix_it():
    with pytest.raises(AdapterError, match="pass num_classes=") as info:
        as_denoiser(lambda x, t, y: x)
    assert "num_classes attribute" in _one_line(info)


@pytest.mark.parametrize("null_label", [0, 2])
def test_a_null_label_inside_the_real_classes_is_refused(null_label):
    with pytest.raises(AdapterError, match="null label") as info:
        ModuleDenoiser(Recorder(), null_label=null_label)
    assert "0..3" in _one_line(info)
    with pytest.raises(AdapterError, match="num_classes >= 1"):
        ModuleDenoiser(Recorder(), num_classes=0)


def test_module_outputs_as_tuple_or_sample_attribute_are_accepted():
    class Output:
        def __init__(self, sample):
            self.sample = sample

    x, t, labels = _inputs(shape=(1, 2, 2))
    expected = 2 * x
    for fn in (lambda x, t, y: (2 * x,), lambda x, t, y: [2 * x, None], lambda x, t, y: Output(2 * x)):
        assert torch.equal(ModuleDenoiser(fn, num_classes=4)(x, t, labels), expected)


@pytest.mark.parametrize("output", [lambda x: x[:, :, :1], lambda x: x.flatten(1), lambda x: None, lambda x: (x[:1],)])
def test_a_prediction_of_the_wrong_shape_is_an_adapter_error(output):
    d = ModuleDenoiser(lambda x, t, y: output(x), num_classes=4)
    x, t, labels = _inputs(shape=(1, 2, 2))
    with pytest.raises(AdapterError, match="expected a prediction of the input's shape") as info:
        d(x, t, labels)
    assert "(3, 1, 2, 2)" in _one_line(info)


# -- as_denoiser ---------------------------------------------------------------------------------------


def test_as_denoiser_dispatch():
    from diffusers import UNet2DConditionModel

    text_unet = UNet2DConditionModel(
        sample_size=8, in_channels=1, out_channels=1, block_out_channels=(8, 16), layers_per_block=1,
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"), up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
        norm_num_groups=4, cross_attention_dim=8, attention_head_dim=2,
    )
    with pytest.raises(AdapterError, match="guidegap.record") as info:
        as_denoiser(text_unet)
    assert "text-conditioned" in _one_line(info)
    for thing in (3, None):
        with pytest.raises(AdapterError, match="expected a Denoiser") as info:
            as_denoiser(thing)
        assert type(thing).__name__ in _one_line(info)
    for path in ("model.safetensors", Path("teacher.pt")):
        with pytest.raises(AdapterError, match=r"received the path .*guidegap\.load_model\(path\)"):
            as_denoiser(path)
    d = ModuleDenoiser(Recorder())
    assert as_denoiser(d) is d
    with pytest.raises(AdapterError, match="already a Denoiser"):
        as_denoiser(d, num_classes=4)
    assert isinstance(as_denoiser(tiny_dit()), DiTDenoiser)
    assert isinstance(as_denoiser(lambda x, t, y: x, num_classes=2), ModuleDenoiser)
    assert issubclass(AdapterError, GuidegapError) and isinstance(d, Denoiser)
