"""Distillation objectives: each loss against its formula computed here by hand, call layout, gradients, registry.

Also the oracle-tier MLPDenoiser (shapes, null label, config round trip, use with as_denoiser and trace).
"""

from __future__ import annotations

import json
import math

import pytest
import torch
from torch import nn

import guidegap
from guidegap.denoisers import ModuleDenoiser
from guidegap.errors import InputError
from guidegap.oracle import collapsed_student
from guidegap.oracle.mlp import MLPDenoiser
from guidegap.training.objectives import OBJECTIVES, TeacherPreds, TrainBatch, make_objective

K, B, SHAPE = 4, 6, (1, 2, 2)


class AffinePerLabel(nn.Module):
    """eps = a[y] * x + b[y] + c * t/1000, with distinct per-label (null included) coefficients."""

    num_classes = K

    def __init__(self) -> None:
        super().__init__()
        gen = torch.Generator().manual_seed(1)
        self.a = nn.Parameter(0.5 + torch.rand(K + 1, generator=gen))
        self.b = nn.Parameter(torch.randn(K + 1, *SHAPE, generator=gen))
        self.c = nn.Parameter(torch.tensor(0.3))

    def forward(self, x, t, y):
        return self.a[y].view(-1, 1, 1, 1) * x + self.b[y] + self.c * (t.float() / 1000).view(-1, 1, 1, 1)


class CountingDenoiser(ModuleDenoiser):
    """Records the batch size and labels of every forward call."""

    def __init__(self, fn, **kw) -> None:
        super().__init__(fn, **kw)
        self.calls: list[int] = []
        self.seen_labels: list[torch.Tensor] = []

    def forward(self, x, t, labels):
        self.calls.append(x.shape[0])
        self.seen_labels.append(labels.clone())
        return super().forward(x, t, labels)


def make_batch(seed: int = 0, n: int = B) -> TrainBatch:
    gen = torch.Generator().manual_seed(seed)
    x0 = torch.randn(n, *SHAPE, generator=gen)
    noise = torch.randn(n, *SHAPE, generator=gen)
    t = torch.randint(0, 1000, (n,), generator=gen)
    abar = torch.linspace(0.999, 0.01, 1000)[t].view(-1, 1, 1, 1)
    weights = 0.2 + torch.rand(n, generator=gen)
    return TrainBatch(
        x0=x0, noise=noise, x_t=abar.sqrt() * x0 + (1 - abar).sqrt() * noise, t=t,
        labels=torch.randint(0, K, (n,), generator=gen), weights=weights / weights.mean(),
        generator=torch.Generator().manual_seed(seed + 100),
    )


def make_teacher(seed: int = 0, n: int = B) -> TeacherPreds:
    gen = torch.Generator().manual_seed(seed + 50)
    return TeacherPreds(cond=torch.randn(n, *SHAPE, generator=gen), uncond=torch.randn(n, *SHAPE, generator=gen))


def by_hand(module: AffinePerLabel, batch: TrainBatch) -> tuple[torch.Tensor, torch.Tensor]:
    """The student's branches from its parameters, without the Denoiser machinery."""
    with torch.no_grad():
        ramp = 0.3 * batch.t.float().view(-1, 1, 1, 1) / 1000
        cond = module.a[batch.labels].view(-1, 1, 1, 1) * batch.x_t + module.b[batch.labels] + ramp
        uncond = module.a[K] * batch.x_t + module.b[K] + ramp
    return cond, uncond


def mse(e: torch.Tensor) -> torch.Tensor:
    return (e**2).sum(dim=(1, 2, 3)) / e[0].numel()


def expected(name: str, options: dict, cond, uncond, teacher: TeacherPreds, batch: TrainBatch) -> tuple[float, dict[str, float]]:
    ones = torch.ones(B)
    w = batch.weights
    e_c, e_u = cond - teacher.cond, uncond - teacher.uncond
    if name.startswith("dash"):
        ww = ones if name == "dash-no-tirt" else w
        parts = {"cond": (ww * mse(e_c)).mean().item(), "uncond": (ww * mse(e_u)).mean().item(),
                 "anchor": (ww * mse(cond - batch.noise)).mean().item()}
        coef = {"cond": options.get("w_cond", 1.0), "uncond": options.get("w_uncond", 1.0), "anchor": options.get("w_anchor", 0.1)}
        if name == "dash-no-uncond":
            parts.pop("uncond")
        if name == "dash-no-anchor":
            parts.pop("anchor")
        return sum(coef[k] * v for k, v in parts.items()), parts
    if name == "cond-only":
        value = mse(e_c).mean().item()
        return value, {"cond": value}
    if name == "composite":
        gw = options.get("guidance_scale", 4.0)
        g_s, g_t = uncond + gw * (cond - uncond), teacher.uncond + gw * (teacher.cond - teacher.uncond)
        value = mse(g_s - g_t).mean().item()
        return value, {"guided": value}
    if name == "gap":
        gap = mse((cond - uncond) - (teacher.cond - teacher.uncond)).mean().item()
        cnd = mse(e_c).mean().item()
        return options.get("w_gap", 1.0) * gap + options.get("w_cond", 1.0) * cnd, {"gap": gap, "cond": cnd}
    if name == "pdm":
        cnd, gap = mse(e_c).mean().item(), mse(e_c - e_u).mean().item()
        return cnd + options.get("lam", 1.0) * gap, {"cond": cnd, "gap": gap}
    raise AssertionError(name)


CASES = [
    ("dash", {}, 2),
    ("dash", {"w_cond": 2.0, "w_uncond": 0.5, "w_anchor": 0.3}, 2),
    ("dash-no-uncond", {}, 1),
    ("dash-no-anchor", {}, 2),
    ("dash-no-tirt", {}, 2),
    ("cond-only", {}, 1),
    ("composite", {}, 2),
    ("composite", {"guidance_scale": 7.5}, 2),
    ("gap", {}, 2),
    ("gap", {"w_gap": 2.0, "w_cond": 0.5}, 2),
    ("pdm", {}, 2),
    ("pdm", {"lam": 0.25}, 2),
]


@pytest.mark.parametrize("name, options, halves", CASES)
def test_loss_matches_hand_formula_and_calls_student_once(name, options, halves):
    module = AffinePerLabel()
    student = CountingDenoiser(module)
    batch, teacher = make_batch(), make_teacher()
    loss, parts = make_objective(name, **options)(student, teacher, batch)
    want, want_parts = expected(name, options, *by_hand(module, batch), teacher, batch)
    assert loss.ndim == 0 and loss.requires_grad
    assert loss.item() == pytest.approx(want, rel=1e-5)
    assert parts.keys() == want_parts.keys()
    for key, value in want_parts.items():
        assert parts[key] == pytest.approx(value, rel=1e-5)
    assert student.calls == [halves * B]
    if halves == 2:  # cond half first, then the null label
        assert torch.equal(student.seen_labels[0], torch.cat([batch.labels, torch.full((B,), K)]))


def test_tirt_weights_matter_only_where_declared():
    module, batch, teacher = AffinePerLabel(), make_batch(), make_teacher()
    student = ModuleDenoiser(module)
    flat = TrainBatch(**{**batch.__dict__, "weights": torch.ones(B)})
    for name in OBJECTIVES:
        if name == "scratch":
            continue
        objective = make_objective(name)
        if name == "multi-w":
            flat.generator, batch.generator = torch.Generator().manual_seed(3), torch.Generator().manual_seed(3)
        weighted, _ = objective(student, teacher, batch)
        uniform, _ = objective(student, teacher, flat)
        assert objective.weighted == (name in ("dash", "dash-no-uncond", "dash-no-anchor"))
        assert (abs(weighted.item() - uniform.item()) > 1e-4) == objective.weighted, name


def test_multi_w_draws_uniform_scales_deterministically_per_seed():
    module, teacher = AffinePerLabel(), make_teacher()
    objective = make_objective("multi-w", w_min=2.0, w_max=5.0)
    losses = [objective(ModuleDenoiser(module), teacher, make_batch(seed=0))[0].item() for _ in range(2)]
    assert losses[0] == losses[1]
    other = make_batch(seed=0)
    other.generator = torch.Generator().manual_seed(999)
    assert objective(ModuleDenoiser(module), teacher, other)[0].item() != pytest.approx(losses[0], rel=1e-6)
    # the loss equals the composite formula at the per-sample draws u ~ U[0, 1) of the batch's generator
    batch = make_batch(seed=0)
    scales = 2.0 + 3.0 * torch.rand(B, generator=torch.Generator().manual_seed(100), dtype=torch.float64)
    cond, uncond = by_hand(module, batch)
    w = scales.float().view(-1, 1, 1, 1)
    g_err = (uncond - teacher.uncond) + w * ((cond - uncond) - (teacher.cond - teacher.uncond))
    assert losses[0] == pytest.approx(mse(g_err).mean().item(), rel=1e-5)
    draws = objective.scales(make_batch(seed=1, n=20000))
    assert 2.0 <= draws.min() and draws.max() <= 5.0
    assert draws.mean().item() == pytest.approx(3.5, abs=0.03)
    assert draws.var().item() == pytest.approx(9 / 12, rel=0.05)


def test_scratch_matches_cfg_training_and_drops_about_ten_percent():
    module, batch = AffinePerLabel(), make_batch()
    cond, uncond = by_hand(module, batch)
    keep = make_objective("scratch", label_dropout=0.0)
    drop = make_objective("scratch", label_dropout=1.0, tirt=True)
    assert not keep.needs_teacher and not keep.weighted and drop.weighted
    assert keep(ModuleDenoiser(module), None, batch)[0].item() == pytest.approx(mse(cond - batch.noise).mean().item(), rel=1e-5)
    want = (batch.weights * mse(uncond - batch.noise)).mean().item()
    assert drop(ModuleDenoiser(module), None, batch)[0].item() == pytest.approx(want, rel=1e-5)

    n = 20000
    student = CountingDenoiser(module)
    big = make_batch(seed=5, n=n)
    make_objective("scratch")(student, None, big)
    assert student.calls == [n]
    seen = student.seen_labels[0]
    dropped = seen == K
    assert abs(int(dropped.sum()) - 0.1 * n) < 4 * math.sqrt(n * 0.09)  # 2000 +- 170
    assert torch.equal(seen[~dropped], big.labels[~dropped])
    again = CountingDenoiser(module)
    make_objective("scratch")(again, None, make_batch(seed=5, n=n))
    assert torch.equal(again.seen_labels[0], seen)


def test_cond_only_never_trains_the_null_row_but_dash_does():
    torch.manual_seed(0)
    mlp = MLPDenoiser(sample_shape=SHAPE, num_classes=K, hidden=16, depth=2, time_dim=8)
    grads = {}
    for name in ("cond-only", "dash", "composite"):
        mlp.zero_grad(set_to_none=True)
        loss, _ = make_objective(name)(guidegap.as_denoiser(mlp), make_teacher(), make_batch())
        loss.backward()
        grads[name] = mlp.label_embedding.weight.grad.clone()
    null = K
    assert torch.count_nonzero(grads["cond-only"][null]) == 0
    assert grads["cond-only"][:K].abs().sum() > 0
    assert grads["dash"][null].abs().sum() > 1e-6
    assert grads["composite"][null].abs().sum() > 1e-6


def test_composite_has_a_zero_loss_direction_that_collapses_the_gap(oracle):
    """A student with both branches = the teacher's guided output at w gets zero composite loss: collapse."""
    w = 4.0
    student = collapsed_student(oracle, w)
    gen = torch.Generator().manual_seed(0)
    x0, labels = oracle.mixture.sample(32, generator=gen)
    noise = torch.randn(x0.shape, generator=gen)
    t = torch.randint(50, 950, (32,), generator=gen)
    abar = oracle.alpha_bar_at(t).float().view(-1, 1, 1, 1)
    x_t = abar.sqrt() * x0 + (1 - abar).sqrt() * noise
    batch = TrainBatch(x0, noise, x_t, t, labels, torch.ones(32), torch.Generator().manual_seed(1))
    teacher = TeacherPreds(*oracle.branches(x_t, t, labels))
    s_cond, s_uncond = student.branches(x_t, t, labels)
    assert torch.equal(s_cond, s_uncond)  # the student's gap is exactly zero
    gap_t = mse(teacher.cond - teacher.uncond).mean().item()
    assert gap_t > 1e-3

    assert make_objective("composite", guidance_scale=w)(student, teacher, batch)[0].item() < 1e-10
    # the whole null direction: delta_c = (w - 1)/w v, delta_u = v leaves g unchanged
    v = torch.randn(x_t.shape, generator=gen)
    moved = TeacherPreds(teacher.cond + (w - 1) / w * v, teacher.uncond + v)
    assert mse((moved.uncond + w * (moved.cond - moved.uncond)) - (teacher.uncond + w * (teacher.cond - teacher.uncond))).max() < 1e-10
    # every objective that constrains the branches separately sees the collapse
    dash, parts = make_objective("dash-no-tirt")(student, teacher, batch)
    e_c, e_u = s_cond - teacher.cond, s_uncond - teacher.uncond
    assert parts["cond"] == pytest.approx(mse(e_c).mean().item(), rel=1e-5) and parts["cond"] > 1e-3
    assert parts["uncond"] == pytest.approx(mse(e_u).mean().item(), rel=1e-5) and parts["uncond"] > 1e-3
    gap_loss, gap_parts = make_objective("gap")(student, teacher, batch)
    assert gap_parts["gap"] == pytest.approx(gap_t, rel=1e-4)  # ||0 - Delta_T||^2
    assert make_objective("pdm")(student, teacher, batch)[1]["gap"] == pytest.approx(gap_t, rel=1e-4)
    assert make_objective("multi-w")(student, teacher, batch)[0].item() > 1e-3  # only w = 4 is matched


@pytest.mark.parametrize("lam", [0.25, 1.0, 3.0])
def test_pdm_is_gap_matching_with_w_gap_lam_and_w_cond_one(lam):
    """e_c - e_u = Delta_S - Delta_T, so PDM(lam) and gap(w_gap=lam, w_cond=1) are one loss with one gradient."""
    batch, teacher = make_batch(seed=3), make_teacher(seed=3)
    grads = []
    for name, options in (("pdm", {"lam": lam}), ("gap", {"w_gap": lam, "w_cond": 1.0})):
        module = AffinePerLabel()
        loss, _ = make_objective(name, **options)(ModuleDenoiser(module), teacher, batch)
        loss.backward()
        grads.append((loss.detach(), [p.grad.clone() for p in module.parameters()]))
    (loss_pdm, grad_pdm), (loss_gap, grad_gap) = grads
    assert torch.allclose(loss_pdm, loss_gap, rtol=1e-6)
    assert all(torch.allclose(a, b, rtol=1e-5, atol=1e-7) for a, b in zip(grad_pdm, grad_gap))


def test_registry_errors_list_the_valid_choices():
    assert sorted(OBJECTIVES) == sorted(
        ["dash", "dash-no-uncond", "dash-no-anchor", "dash-no-tirt", "cond-only", "composite", "multi-w", "gap", "pdm", "scratch"]
    )
    with pytest.raises(InputError, match="cond-only.*dash.*scratch"):
        make_objective("dahs")
    with pytest.raises(InputError, match=r"guidance_scal.*valid options are \['guidance_scale'\]"):
        make_objective("composite", guidance_scal=3.0)
    with pytest.raises(InputError, match="w_cond"):
        make_objective("dash-no-anchor", lam=1.0)
    with pytest.raises(InputError, match="w_max"):
        make_objective("multi-w", w_min=5.0, w_max=2.0)
    with pytest.raises(InputError, match="label_dropout"):
        make_objective("scratch", label_dropout=1.5)
    with pytest.raises(InputError, match="TeacherPreds"):
        make_objective("dash")(ModuleDenoiser(AffinePerLabel()), None, make_batch())
    bad = make_batch()
    bad.weights = torch.ones(B + 1)
    with pytest.raises(InputError, match="weights"):
        make_objective("dash")(ModuleDenoiser(AffinePerLabel()), make_teacher(), bad)
    names = {n: make_objective(n).name for n in OBJECTIVES}
    assert names == {n: n for n in OBJECTIVES}
    assert make_objective("dash", uncond=False, tirt=False).name == "dash-no-uncond-no-tirt"


# -- MLPDenoiser -----------------------------------------------------------------------------------
def test_mlp_shapes_null_label_and_config_round_trip():
    torch.manual_seed(0)
    mlp = MLPDenoiser(sample_shape=(1, 4, 4), num_classes=4, hidden=32, depth=2, time_dim=16)
    assert (mlp.num_classes, mlp.null_label, mlp.sample_shape) == (4, 4, (1, 4, 4))
    assert mlp.label_embedding.num_embeddings == 5
    x, t = torch.randn(5, 1, 4, 4), torch.tensor([0, 10, 500, 999, 3])
    out = mlp(x, t, torch.tensor([0, 1, 2, 3, 4]))
    assert out.shape == x.shape and torch.isfinite(out).all()
    # the label changes the output, and the null row is a branch of its own
    assert not torch.allclose(mlp(x, t, torch.full((5,), 4)), mlp(x, t, torch.zeros(5, dtype=torch.long)))
    config = json.loads(json.dumps(mlp.config))
    assert config == {"sample_shape": [1, 4, 4], "num_classes": 4, "hidden": 32, "depth": 2, "time_dim": 16,
                      "sigma_data": None, "schedule": "linear", "num_train_timesteps": 1000}
    clone = MLPDenoiser.from_config(config)
    assert not torch.equal(clone(x, t, torch.zeros(5, dtype=torch.long)), mlp(x, t, torch.zeros(5, dtype=torch.long)))
    clone.load_state_dict(mlp.state_dict())
    y = torch.tensor([3, 4, 0, 1, 2])
    assert torch.equal(clone(x, t, y), mlp(x, t, y))
    with pytest.raises(InputError, match="unknown keys"):
        MLPDenoiser.from_config({**config, "width": 3})
    with pytest.raises(InputError, match="even time_dim"):
        MLPDenoiser(time_dim=7)


def test_mlp_works_as_a_denoiser_and_in_trace(oracle, scheduler):
    torch.manual_seed(0)
    mlp = MLPDenoiser(hidden=32, depth=2, time_dim=16)
    student = guidegap.as_denoiser(mlp)
    assert (student.num_classes, student.null_label, student.sample_shape) == (4, 4, (1, 4, 4))
    cond, uncond = student.branches(torch.randn(3, 1, 4, 4), 500, torch.tensor([0, 1, 2]))
    assert cond.shape == uncond.shape == (3, 1, 4, 4) and not torch.allclose(cond, uncond)
    ds = guidegap.trace(oracle, mlp, num_samples=8, num_steps=4, scheduler=scheduler)
    gap = ds.gap_norm.sel(model="student")
    assert gap.sizes["sample"] == 8 and gap.sizes["step"] == 4
    assert bool((gap > 0).all()) and bool(ds.gap_norm.sel(model="teacher").notnull().all())


def test_mlp_preconditioning_is_the_gaussian_optimum_skip():
    """With sigma_data set, eps = c_skip x + c_out F: for Gaussian data N(0, s^2) the skip alone is the exact eps."""
    from diffusers import DDPMScheduler

    mlp = MLPDenoiser(sample_shape=(1, 2, 2), hidden=16, depth=1, time_dim=8, sigma_data=0.7)
    with torch.no_grad():
        for p in mlp.output.parameters():
            p.zero_()  # F = 0: only the skip remains
    abar = DDPMScheduler(num_train_timesteps=1000).alphas_cumprod.double()
    t = torch.tensor([0, 250, 999])
    x = torch.randn(3, 1, 2, 2, generator=torch.Generator().manual_seed(0))
    expected = ((1 - abar[t]).sqrt() / (abar[t] * 0.49 + 1 - abar[t])).view(-1, 1, 1, 1) * x.double()
    torch.testing.assert_close(mlp(x, t, torch.zeros(3, dtype=torch.long)).double(), expected, rtol=1e-5, atol=1e-7)
    assert MLPDenoiser.from_config(mlp.config).config == mlp.config
