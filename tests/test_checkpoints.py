"""Loading models from paths safely (docs/design.md §3: checkpoints are data, never code).

Round-trips of diffusers folders, guidegap checkpoints and plain state dicts (with a factory) must give the
same model; anything that would need arbitrary unpickling, or is damaged, is an InputError — and never
runs the file's code.
"""

from __future__ import annotations

import copy
import json
import os
import pathlib
import random
import sys

import pytest
import torch

from guidegap.checkpoints import Checkpoint, load_model, load_scheduler, read_checkpoint, save_checkpoint
from guidegap.denoisers import as_denoiser
from guidegap.errors import InputError

from conftest import tiny_dit, tiny_unet

NUM_CLASSES = 4
FAMILIES = {"unet": tiny_unet, "dit": tiny_dit}


# -- helpers --------------------------------------------------------------------------------------
def outputs(model: torch.nn.Module) -> torch.Tensor:
    """The model's predictions on fixed inputs covering every class and the null label."""
    denoiser = as_denoiser(model)
    gen = torch.Generator().manual_seed(7)
    x = torch.randn(NUM_CLASSES + 1, *denoiser.sample_shape, generator=gen)
    t = torch.tensor([999, 700, 400, 100, 0])
    with torch.no_grad():
        return denoiser(x, t, torch.arange(NUM_CLASSES + 1))


def assert_same_model(loaded: torch.nn.Module, original: torch.nn.Module) -> None:
    assert type(loaded) is type(original)
    assert not loaded.training
    torch.testing.assert_close(outputs(loaded), outputs(original), rtol=0, atol=0)


def perturbed(model: torch.nn.Module, seed: int) -> torch.nn.Module:
    """Same architecture, different weights (an 'EMA' copy that can be told apart)."""
    other = FAMILIES["unet" if hasattr(model, "conv_out") else "dit"](NUM_CLASSES, seed=seed)
    assert not torch.equal(outputs(other), outputs(model))
    return other


def ddpm_config(**overrides) -> dict:
    from diffusers import DDPMScheduler

    return dict(DDPMScheduler(num_train_timesteps=1000, beta_schedule="squaredcos_cap_v2", **overrides).config)


def make_checkpoint(model: torch.nn.Module, **overrides) -> Checkpoint:
    ema = perturbed(model, seed=11)
    trained = copy.deepcopy(model)
    optimizer = torch.optim.Adam(trained.parameters(), lr=1e-3)
    as_denoiser(trained)(torch.zeros(1, 1, 8, 8), 10, torch.tensor([0])).sum().backward()
    optimizer.step()  # a real optimizer state: step counts and moments
    fields = dict(
        model_class=type(model).__name__,
        model_config=dict(model.config),
        state_dict=model.state_dict(),
        ema_state_dict=ema.state_dict(),
        scheduler_config=ddpm_config(),
        tirt_lambda=torch.linspace(-1, 1, 1000),
        optimizer=optimizer.state_dict(),
        rng_state={"torch": torch.get_rng_state()},
        step=1234,
        metadata={"objective": "dash", "weights": [1.0, 1.0, 0.1]},
    )
    fields.update(overrides)
    return Checkpoint(**fields)


class TouchOnLoad:
    """Unpickling this runs code: it creates ``marker``. A safe loader must refuse it without running it."""

    def __init__(self, marker: pathlib.Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (pathlib.Path.touch, (pathlib.Path(self.marker),))


def write_factory(tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch, body: str) -> str:
    """A module in tmp_path (on sys.path) with the given source; returns its unique module name."""
    name = f"guidegap_test_factory_{abs(hash(str(tmp_path)))}"
    (tmp_path / f"{name}.py").write_text(body)
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delitem(sys.modules, name, raising=False)
    return name


FACTORY_SOURCE = """
from conftest import tiny_unet

def build():
    return tiny_unet(4, seed=99)      # same architecture, other weights: loading must overwrite them

def build_six_classes():
    return tiny_unet(6)

def not_a_module():
    return 42

value = 3
"""


# -- diffusers folders ----------------------------------------------------------------------------
@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_save_pretrained_folder_loads_identically(family, tmp_path):
    model = FAMILIES[family](NUM_CLASSES)
    model.save_pretrained(tmp_path / "model")
    loaded = load_model(tmp_path / "model")
    assert loaded.kind == "diffusers-folder"
    assert loaded.scheduler_config is None
    assert_same_model(loaded.model, model)


@pytest.mark.parametrize("family, sub", [("unet", "unet"), ("dit", "transformer")])
def test_pipeline_folder_gives_the_model_and_its_scheduler(family, sub, tmp_path):
    from diffusers import DDPMScheduler

    model = FAMILIES[family](NUM_CLASSES)
    model.save_pretrained(tmp_path / "pipe" / sub)
    DDPMScheduler(beta_schedule="squaredcos_cap_v2", num_train_timesteps=500).save_pretrained(tmp_path / "pipe" / "scheduler")
    loaded = load_model(tmp_path / "pipe")
    assert_same_model(loaded.model, model)
    assert loaded.scheduler_config["_class_name"] == "DDPMScheduler"
    assert loaded.scheduler_config["beta_schedule"] == "squaredcos_cap_v2"
    assert loaded.scheduler_config["num_train_timesteps"] == 500
    # The stored schedule is what the audit samples with (DDIM on the same betas).
    sampler = load_scheduler(loaded.scheduler_config)
    reference = DDPMScheduler(beta_schedule="squaredcos_cap_v2", num_train_timesteps=500)
    assert type(sampler).__name__ == "DDIMScheduler"
    torch.testing.assert_close(sampler.alphas_cumprod, reference.alphas_cumprod)


def test_folder_without_config_is_an_input_error(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(InputError, match="config.json"):
        load_model(tmp_path / "empty")


def test_damaged_folders_are_input_errors(tmp_path):
    model = tiny_unet(NUM_CLASSES)
    model.save_pretrained(tmp_path / "no_weights")
    next((tmp_path / "no_weights").glob("diffusion_pytorch_model.*")).unlink()
    with pytest.raises(InputError, match="save_pretrained"):
        load_model(tmp_path / "no_weights")

    model.save_pretrained(tmp_path / "bad_json")
    (tmp_path / "bad_json" / "config.json").write_text("{not json")
    with pytest.raises(InputError, match="JSON"):
        load_model(tmp_path / "bad_json")

    model.save_pretrained(tmp_path / "other_class")
    config = json.loads((tmp_path / "other_class" / "config.json").read_text())
    (tmp_path / "other_class" / "config.json").write_text(json.dumps({**config, "_class_name": "AutoencoderKL"}))
    with pytest.raises(InputError, match="not supported"):
        load_model(tmp_path / "other_class")

    model.save_pretrained(tmp_path / "other_weights")
    tiny_unet(6).save_pretrained(tmp_path / "six")
    (tmp_path / "six" / "config.json").replace(tmp_path / "other_weights" / "config.json")
    with pytest.raises(InputError, match="do not fit"):
        load_model(tmp_path / "other_weights")


def test_pickle_inside_a_folder_is_refused(tmp_path):
    marker = tmp_path / "ran"
    tiny_unet(NUM_CLASSES).save_pretrained(tmp_path / "model", safe_serialization=False)
    torch.save({"conv_in.weight": TouchOnLoad(marker)}, tmp_path / "model" / "diffusion_pytorch_model.bin")
    with pytest.raises(InputError, match="--trust-pickle"):
        load_model(tmp_path / "model")
    assert not marker.exists()


# -- guidegap checkpoints -------------------------------------------------------------------------
@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_guidegap_checkpoint_round_trip(family, tmp_path):
    model = FAMILIES[family](NUM_CLASSES)
    checkpoint = make_checkpoint(model)
    path = save_checkpoint(checkpoint, tmp_path / "ckpt.pt")
    assert [p.name for p in tmp_path.iterdir()] == ["ckpt.pt"]

    # Data only: the file loads with weights_only=True, and configs are JSON strings.
    raw = torch.load(path, weights_only=True)
    assert raw["format"] == "guidegap-checkpoint" and isinstance(raw["model_config"], str)

    ema = load_model(path)  # EMA weights by default
    assert ema.kind == "guidegap-checkpoint"
    assert_same_model(ema.model, perturbed(model, seed=11))
    plain = load_model(path, use_ema=False)
    assert_same_model(plain.model, model)

    back = plain.checkpoint
    assert back.model_class == type(model).__name__
    def unordered(config: dict) -> dict:  # diffusers lists a set there, in hash order; checkpoints store it sorted
        return {**config, "_use_default_values": sorted(config["_use_default_values"])} if "_use_default_values" in config else config

    assert back.model_config == unordered(json.loads(json.dumps(dict(model.config))))
    assert plain.scheduler_config == unordered(json.loads(json.dumps(ddpm_config())))
    torch.testing.assert_close(back.tirt_lambda, torch.linspace(-1, 1, 1000), rtol=0, atol=0)
    assert back.step == 1234
    assert back.metadata == {"objective": "dash", "weights": [1.0, 1.0, 0.1]}
    torch.testing.assert_close(back.rng_state["torch"], checkpoint.rng_state["torch"], rtol=0, atol=0)
    assert back.optimizer["param_groups"][0]["lr"] == 1e-3
    assert read_checkpoint(path).step == 1234


def test_a_training_run_folder_loads_its_checkpoint(tmp_path):
    # what `guidegap distill --out runs/dash` leaves: checkpoint.pt beside the run's config.json (not a diffusers config)
    model = tiny_unet(NUM_CLASSES)
    run = tmp_path / "runs" / "dash"
    run.mkdir(parents=True)
    save_checkpoint(make_checkpoint(model), run / "checkpoint.pt")
    (run / "config.json").write_text(json.dumps({"objective": "dash", "train_steps": 10}))
    from_folder, from_file = load_model(run), load_model(run / "checkpoint.pt")
    assert from_folder.kind == "guidegap-checkpoint"
    assert_same_model(from_folder.model, from_file.model)
    assert from_folder.scheduler_config == from_file.scheduler_config


def test_checkpoint_without_ema_loads_the_raw_weights(tmp_path):
    model = tiny_unet(NUM_CLASSES)
    path = save_checkpoint(make_checkpoint(model, ema_state_dict=None, scheduler_config=None, tirt_lambda=None), tmp_path / "c.pt")
    loaded = load_model(path, use_ema=True)
    assert_same_model(loaded.model, model)
    assert loaded.scheduler_config is None and loaded.checkpoint.tirt_lambda is None


def test_checkpoint_version_and_class_are_checked(tmp_path):
    good = make_checkpoint(tiny_unet(NUM_CLASSES)).to_dict()
    torch.save({**good, "format_version": 99}, tmp_path / "future.pt")
    with pytest.raises(InputError, match="version"):
        load_model(tmp_path / "future.pt")
    torch.save({**good, "model_class": "os.system"}, tmp_path / "cls.pt")
    with pytest.raises(InputError, match="not supported"):
        load_model(tmp_path / "cls.pt")
    torch.save({k: v for k, v in good.items() if k != "model_config"}, tmp_path / "partial.pt")
    with pytest.raises(InputError, match="incomplete"):
        load_model(tmp_path / "partial.pt")
    torch.save({"format": "something-else"}, tmp_path / "other.pt")
    with pytest.raises(InputError, match="guidegap checkpoint"):
        read_checkpoint(tmp_path / "other.pt")


def test_save_is_atomic(tmp_path, monkeypatch):
    path = tmp_path / "ckpt.pt"
    save_checkpoint(make_checkpoint(tiny_unet(NUM_CLASSES), step=1), path)
    before = path.read_bytes()

    def crash_mid_write(obj, target, *args, **kwargs):
        target.write(b"PK\x03\x04 half a checkpoint")  # torch.save gets the temporary file's handle
        raise OSError("disk full")

    monkeypatch.setattr(torch, "save", crash_mid_write)
    with pytest.raises(OSError, match="disk full"):
        save_checkpoint(make_checkpoint(tiny_unet(NUM_CLASSES), step=2), path)
    monkeypatch.undo()
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["ckpt.pt"]  # no temporary file left behind
    assert read_checkpoint(path).step == 1


def test_saved_files_get_the_usual_permissions(tmp_path):
    umask = os.umask(0)
    os.umask(umask)
    path = save_checkpoint(make_checkpoint(tiny_unet(NUM_CLASSES)), tmp_path / "ckpt.pt")
    assert path.stat().st_mode & 0o777 == 0o666 & ~umask  # as torch.save/open would, not mkstemp's 0o600
    path.chmod(0o600)  # a private checkpoint stays private when overwritten
    save_checkpoint(make_checkpoint(tiny_unet(NUM_CLASSES), step=5), path)
    assert path.stat().st_mode & 0o777 == 0o600 and read_checkpoint(path).step == 5


# -- plain state dicts with a factory -------------------------------------------------------------
@pytest.mark.parametrize("suffix", [".pt", ".safetensors", ".nested.pt"])
def test_state_dict_with_factory(suffix, tmp_path, monkeypatch):
    from safetensors.torch import save_file

    module = write_factory(tmp_path, monkeypatch, FACTORY_SOURCE)
    model = tiny_unet(NUM_CLASSES)
    path = tmp_path / f"weights{suffix}"
    if suffix == ".safetensors":
        save_file(model.state_dict(), str(path))
    elif suffix == ".nested.pt":
        torch.save({"state_dict": model.state_dict(), "epoch": 3}, path)
    else:
        torch.save(model.state_dict(), path)
    loaded = load_model(path, factory=f"{module}:build")
    assert loaded.kind == "state-dict" and loaded.scheduler_config is None
    assert_same_model(loaded.model, model)

    with pytest.raises(InputError, match="--factory"):
        load_model(path)
    with pytest.raises(InputError, match="do not fit"):
        load_model(path, factory=f"{module}:build_six_classes")
    with pytest.raises(InputError, match="torch.nn.Module"):
        load_model(path, factory=f"{module}:not_a_module")


@pytest.mark.parametrize("spec, match", [
    ("no_colon_here", "package.module:function"),
    (":build", "package.module:function"),
    ("module_only:", "package.module:function"),
    ("guidegap_no_such_module_xyz:build", "cannot import"),
    ("{module}:missing", "no callable"),
    ("{module}:value", "no callable"),
])
def test_bad_factory_specs(spec, match, tmp_path, monkeypatch):
    module = write_factory(tmp_path, monkeypatch, FACTORY_SOURCE)
    torch.save(tiny_unet(NUM_CLASSES).state_dict(), tmp_path / "w.pt")
    with pytest.raises(InputError, match=match):
        load_model(tmp_path / "w.pt", factory=spec.format(module=module))


def test_state_dict_with_non_tensors_is_refused(tmp_path, monkeypatch):
    module = write_factory(tmp_path, monkeypatch, FACTORY_SOURCE)
    torch.save({"conv_in.weight": [1, 2, 3]}, tmp_path / "odd.pt")
    with pytest.raises(InputError, match="state dict"):
        load_model(tmp_path / "odd.pt", factory=f"{module}:build")


# -- hostile and damaged files --------------------------------------------------------------------
@pytest.mark.parametrize("wrap", ["bare", "in_state_dict", "in_checkpoint"])
def test_malicious_pickle_is_refused_and_not_run(wrap, tmp_path):
    marker = tmp_path / "pwned"
    evil = TouchOnLoad(marker)
    payload = {
        "bare": evil,
        "in_state_dict": {"conv_in.weight": torch.zeros(1), "hook": evil},
        "in_checkpoint": {**make_checkpoint(tiny_unet(NUM_CLASSES)).to_dict(), "metadata": evil},
    }[wrap]
    torch.save(payload, tmp_path / "evil.pt")
    with pytest.raises(InputError, match="--trust-pickle"):
        load_model(tmp_path / "evil.pt")
    with pytest.raises(InputError, match="--trust-pickle"):
        read_checkpoint(tmp_path / "evil.pt")
    assert not marker.exists()


def test_the_malicious_file_really_runs_code_when_trusted(tmp_path):
    """Control for the test above: the payload is live, so 'marker not created' means the loader refused it."""
    marker = tmp_path / "pwned"
    torch.save({"hook": TouchOnLoad(marker)}, tmp_path / "evil.pt")
    with pytest.raises(InputError):  # after unpickling, a dict without tensors still is no model
        load_model(tmp_path / "evil.pt", trust_pickle=True)
    assert marker.exists()


def _real_pt(tmp_path: pathlib.Path) -> bytes:
    torch.save(tiny_unet(NUM_CLASSES).state_dict(), tmp_path / "real.pt")
    return (tmp_path / "real.pt").read_bytes()


def _real_safetensors(tmp_path: pathlib.Path) -> bytes:
    from safetensors.torch import save_file

    save_file(tiny_unet(NUM_CLASSES).state_dict(), str(tmp_path / "real.safetensors"))
    return (tmp_path / "real.safetensors").read_bytes()


def garbage(seed: int) -> bytes:
    return random.Random(seed).randbytes(64) + b"not a checkpoint" * 8


# Seeds whose garbage makes torch's weights-only unpickler raise UnpicklingError, IndexError, KeyError and
# UnicodeDecodeError respectively (torch 2.13): each must still be one clear InputError.
GARBAGE_SEEDS = (0, 2, 20, 195)


@pytest.mark.parametrize("suffix", [".pt", ".pth", ".bin", ".ckpt", ".safetensors"])
@pytest.mark.parametrize("damage", ["empty", "truncated", *(f"garbage{seed}" for seed in GARBAGE_SEEDS)])
def test_damaged_files_are_input_errors(suffix, damage, tmp_path):
    if damage == "empty":
        data = b""
    elif damage == "truncated":
        real = _real_safetensors(tmp_path) if suffix == ".safetensors" else _real_pt(tmp_path)
        data = real[: len(real) // 2]
    else:
        data = garbage(int(damage.removeprefix("garbage")))
    path = tmp_path / f"damaged{suffix}"
    path.write_bytes(data)
    with pytest.raises(InputError, match="damaged|readable|corrupt|--trust-pickle"):
        load_model(path, factory="guidegap_no_such_module_xyz:build")


def test_unknown_suffix_and_missing_paths(tmp_path):
    (tmp_path / "model.onnx").write_bytes(b"\x08\x01")
    with pytest.raises(InputError, match="unknown checkpoint type"):
        load_model(tmp_path / "model.onnx")
    with pytest.raises(InputError, match="no such file"):
        load_model(tmp_path / "missing.pt")
    with pytest.raises(InputError, match="no such file"):
        load_model(tmp_path / "missing_folder")


def test_other_objects_are_not_models(tmp_path):
    torch.save([torch.zeros(2)], tmp_path / "list.pt")
    with pytest.raises(InputError, match="received list"):
        load_model(tmp_path / "list.pt")


def test_saving_the_same_checkpoint_twice_gives_the_same_bytes(tmp_path):
    from guidegap.checkpoints.format import atomic_torch_save

    state = {"weight": torch.arange(6.0).reshape(2, 3), "step": 3}
    a, b = atomic_torch_save(state, tmp_path / "a.pt"), atomic_torch_save(state, tmp_path / "b.pt")
    assert a.read_bytes() == b.read_bytes()


# -- one resolver for every model spec -------------------------------------------------------------
def test_the_resolver_gives_denoiser_schedule_source_tirt_and_parameters_for_every_kind_of_spec(tmp_path):
    from guidegap.checkpoints import resolve_model
    from guidegap.denoisers import count_parameters
    from guidegap.oracle import OracleDenoiser

    model = tiny_unet(NUM_CLASSES)
    path = save_checkpoint(make_checkpoint(model), tmp_path / "ckpt.pt")
    from_file = resolve_model(str(path))
    assert from_file.source == str(path) and from_file.scheduler_config == load_model(path).scheduler_config
    torch.testing.assert_close(from_file.tirt_lambda, torch.linspace(-1, 1, 1000), rtol=0, atol=0)
    assert from_file.num_parameters == count_parameters(model)
    torch.testing.assert_close(outputs(from_file.denoiser.module), outputs(perturbed(model, seed=11)), rtol=0, atol=0)
    assert resolve_model(load_model(path)).source == str(path)  # a model read once is resolved without reading it again

    in_memory = resolve_model(model)
    assert (in_memory.scheduler_config, in_memory.tirt_lambda, in_memory.num_parameters) == (None, None, count_parameters(model))
    assert in_memory.on_schedule(load_scheduler(ddpm_config())) is in_memory  # only the oracle moves to a schedule

    stored = ddpm_config()
    oracle = resolve_model("oracle:3", schedule=stored)
    assert isinstance(oracle.denoiser, OracleDenoiser) and oracle.num_parameters is None and oracle.source == "oracle:3"
    assert oracle.scheduler_config == stored  # exact on any schedule: it takes the one it is compared on
    torch.testing.assert_close(oracle.denoiser.alphas_cumprod, load_scheduler(stored).alphas_cumprod.double())
    linear = oracle.on_schedule(load_scheduler(None))
    assert not torch.equal(linear.denoiser.alphas_cumprod, oracle.denoiser.alphas_cumprod)
    with pytest.raises(InputError, match=r"^teacher: no such file"):
        resolve_model(str(tmp_path / "missing.pt"), role="teacher")


def test_recordings_of_checkpoints_sample_on_the_schedule_they_store(tmp_path):
    """trace / probe / sample given a load_model result (audit: a path) build their sampler on the stored (cosine)
    schedule, exactly as if that scheduler had been passed; a bare module keeps DDPM-linear; two schedules are refused."""
    import guidegap
    from guidegap.checkpoints.resolve import resolve_roles
    from guidegap.recording.sampler import sample

    model = tiny_unet(NUM_CLASSES)
    path = save_checkpoint(make_checkpoint(model), tmp_path / "cosine.pt")
    loaded = load_model(path)
    cosine = load_scheduler(loaded.scheduler_config)
    options = dict(num_samples=2, num_steps=3, sample_shape=(1, 8, 8))
    from_disk = guidegap.trace(loaded, load_model(path), **options)
    explicit = guidegap.trace(loaded.model, loaded.model, scheduler=cosine, **options)
    assert from_disk.equals(explicit)
    assert not from_disk.equals(guidegap.trace(loaded.model, loaded.model, **options))  # a bare module: DDPM-linear
    assert guidegap.trace(loaded, loaded.model, **options).equals(explicit)  # one stored schedule is enough

    images, labels = torch.zeros(4, 1, 8, 8), torch.tensor([0, 1, 2, 0])
    assert guidegap.probe(loaded, loaded, (images, labels)).equals(
        guidegap.probe(loaded.model, loaded.model, (images, labels), scheduler=cosine))
    torch.testing.assert_close(sample(loaded, [0, 1], num_steps=3),
                               sample(loaded.model, [0, 1], num_steps=3, scheduler=cosine), rtol=0, atol=0)

    _, _, sampler = resolve_roles(None, loaded, "euler")
    assert type(sampler).__name__ == "EulerDiscreteScheduler"
    torch.testing.assert_close(sampler.alphas_cumprod, cosine.alphas_cumprod, rtol=0, atol=0)
    from diffusers import DDPMScheduler

    linear = save_checkpoint(make_checkpoint(model, scheduler_config=dict(DDPMScheduler(beta_schedule="linear").config)),
                             tmp_path / "lin.pt")
    with pytest.raises(InputError, match="store different noise schedules"):
        guidegap.trace(load_model(linear), loaded, **options)
    with pytest.raises(InputError, match="store different noise schedules"):
        guidegap.audit(str(path), str(linear), num_samples=2, num_steps=3)
    assert as_denoiser(loaded).scheduler_config == loaded.scheduler_config and as_denoiser(model).scheduler_config is None
