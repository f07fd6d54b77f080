"""The oracle tier: exact eps of a Gaussian mixture under VP noise, and students with known gaps."""

from __future__ import annotations

import math

import pytest
import torch
from diffusers import DDIMScheduler
from torch.distributions import Categorical, Independent, MixtureSameFamily, Normal

from guidegap.errors import AdapterError, InputError
from guidegap.oracle import (
    GaussianMixture,
    GuidedOutputStudent,
    OracleDenoiser,
    collapsed_student,
    shifted_student,
    shrunk_student,
)

ALPHA_BARS = [0.003, 0.2, 0.6, 0.97, 0.9995]


@pytest.fixture(scope="module")
def mixture() -> GaussianMixture:
    return GaussianMixture.random(num_classes=3, components_per_class=2, sample_shape=(2, 2, 2), seed=7)


@pytest.fixture(scope="module")
def scheduler() -> DDIMScheduler:
    return DDIMScheduler(num_train_timesteps=1000, beta_schedule="linear", clip_sample=False)


def noised(mixture: GaussianMixture, n: int, alpha_bar: float, seed: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``(x_t, labels, eps)`` with ``x_t = sqrt(abar) x0 + sqrt(1 - abar) eps``, float64."""
    generator = torch.Generator().manual_seed(seed)
    x0, labels = mixture.sample(n, generator=generator, dtype=torch.float64)
    eps = torch.randn(x0.shape, generator=generator, dtype=torch.float64)
    return math.sqrt(alpha_bar) * x0 + math.sqrt(1 - alpha_bar) * eps, labels, eps


# -- the closed form ------------------------------------------------------------------------------
@pytest.mark.parametrize("alpha_bar", ALPHA_BARS)
@pytest.mark.parametrize("conditional", [True, False])
def test_eps_is_minus_scaled_autograd_score(mixture: GaussianMixture, alpha_bar: float, conditional: bool) -> None:
    x_t, labels, _ = noised(mixture, 64, alpha_bar, seed=1)
    labels = labels if conditional else None
    x = x_t.clone().requires_grad_(True)
    (score,) = torch.autograd.grad(mixture.log_prob(x, alpha_bar, labels).sum(), x)
    expected = -math.sqrt(1 - alpha_bar) * score
    torch.testing.assert_close(mixture.eps(x_t, alpha_bar, labels), expected, rtol=0, atol=1e-10)


@pytest.mark.parametrize("alpha_bar", ALPHA_BARS)
def test_log_prob_matches_torch_distributions(mixture: GaussianMixture, alpha_bar: float) -> None:
    x_t, labels, _ = noised(mixture, 32, alpha_bar, seed=2)
    flat = x_t.reshape(len(x_t), -1)
    a = torch.tensor(alpha_bar, dtype=torch.float64)
    scale = (a * mixture.stds**2 + 1 - a).sqrt()  # (K, M)

    def reference(weights: torch.Tensor, means: torch.Tensor, scales: torch.Tensor) -> MixtureSameFamily:
        normal = Normal(a.sqrt() * means, scales[..., None].expand(means.shape))
        return MixtureSameFamily(Categorical(probs=weights), Independent(normal, 1))

    per_class = [reference(mixture.component_weights[y], mixture.means[y], scale[y]) for y in labels]
    cond = torch.stack([dist.log_prob(row) for dist, row in zip(per_class, flat)])
    joint_w = (mixture.class_probs[:, None] * mixture.component_weights).reshape(-1)
    uncond = reference(joint_w, mixture.means.reshape(-1, mixture.dim), scale.reshape(-1)).log_prob(flat)
    torch.testing.assert_close(mixture.log_prob(x_t, alpha_bar, labels), cond, rtol=1e-12, atol=1e-10)
    torch.testing.assert_close(mixture.log_prob(x_t, alpha_bar), uncond, rtol=1e-12, atol=1e-10)


@pytest.mark.parametrize("alpha_bar", ALPHA_BARS)
def test_single_gaussian_has_linear_eps(alpha_bar: float) -> None:
    mean = torch.linspace(-1.0, 2.0, 12, dtype=torch.float64)
    std = torch.tensor([[0.3]], dtype=torch.float64)
    single = GaussianMixture(mean.reshape(1, 1, 12), std, torch.ones(1, 1), torch.ones(1), (3, 2, 2))
    x_t = torch.randn(5, 3, 2, 2, generator=torch.Generator().manual_seed(3), dtype=torch.float64)
    var = alpha_bar * 0.3**2 + 1 - alpha_bar
    expected = math.sqrt(1 - alpha_bar) * (x_t - math.sqrt(alpha_bar) * mean.reshape(3, 2, 2)) / var
    torch.testing.assert_close(single.eps(x_t, alpha_bar, torch.zeros(5, dtype=torch.long)), expected, rtol=1e-13, atol=1e-13)
    torch.testing.assert_close(single.eps(x_t, alpha_bar), expected, rtol=1e-13, atol=1e-13)


@pytest.mark.parametrize("alpha_bar", [0.05, 0.5, 0.95])
def test_uncond_eps_is_posterior_weighted_cond_eps(mixture: GaussianMixture, alpha_bar: float) -> None:
    x_t, _, _ = noised(mixture, 48, alpha_bar, seed=4)
    classes = [torch.full((48,), y, dtype=torch.long) for y in range(mixture.num_classes)]
    log_joint = torch.stack(
        [mixture.class_probs[y].log() + mixture.log_prob(x_t, alpha_bar, c) for y, c in enumerate(classes)],
        dim=1,
    )
    posterior = torch.softmax(log_joint, dim=1)  # p(y | x_t), (B, K)
    eps_c = torch.stack([mixture.eps(x_t, alpha_bar, c) for c in classes], 1)  # (B, K, ...)
    expected = (posterior[:, :, None, None, None] * eps_c).sum(1)
    torch.testing.assert_close(mixture.eps(x_t, alpha_bar), expected, rtol=0, atol=1e-12)
    torch.testing.assert_close(mixture.log_prob(x_t, alpha_bar), torch.logsumexp(log_joint, 1), rtol=1e-13, atol=1e-12)
    # the gap is not trivially zero: the classes are distinguishable at this noise level
    assert (eps_c[:, 0] - mixture.eps(x_t, alpha_bar)).abs().max() > 1e-2


@pytest.mark.parametrize("conditional", [True, False])
def test_eps_is_the_posterior_mean_of_the_noise_monte_carlo(conditional: bool) -> None:
    """eps_hat = E[eps | x_t] implies E[eps_hat . x_t] = E[eps . x_t] = sqrt(1 - abar) D and E[eps_hat . (eps - eps_hat)] = 0."""
    mixture = GaussianMixture.random(num_classes=4, components_per_class=2, sample_shape=(1, 4, 4), seed=0)
    alpha_bar, n = 0.5, 4000
    x_t, labels, eps = noised(mixture, n, alpha_bar, seed=5)
    eps_hat = mixture.eps(x_t, alpha_bar, labels if conditional else None).reshape(n, -1)
    eps, x_t = eps.reshape(n, -1), x_t.reshape(n, -1)
    checks = [((eps_hat * x_t).sum(1), math.sqrt(1 - alpha_bar) * mixture.dim), ((eps_hat * (eps - eps_hat)).sum(1), 0.0)]
    for stat, target in checks:
        standard_error = stat.std().item() / math.sqrt(n)
        assert abs(stat.mean().item() - target) < 4 * standard_error, (stat.mean().item(), target, standard_error)
    # the optimal predictor beats the naive one that ignores the data (eps_hat = x_t scaled to unit variance)
    assert ((eps - eps_hat) ** 2).mean() < 0.5 * ((eps - math.sqrt(1 - alpha_bar) * x_t) ** 2).mean()


# -- the oracle denoiser --------------------------------------------------------------------------
def test_oracle_branches_match_mixture_at_scheduler_timesteps(mixture: GaussianMixture, scheduler: DDIMScheduler) -> None:
    oracle = mixture.denoiser(scheduler)
    assert (oracle.num_classes, oracle.null_label, oracle.sample_shape, oracle.name) == (3, 3, (2, 2, 2), "oracle")
    scheduler.set_timesteps(50)
    x_t, labels, _ = noised(mixture, 6, 0.4, seed=6)
    for t in scheduler.timesteps[[0, 17, 49]]:
        alpha_bar = scheduler.alphas_cumprod[t].double()
        pred_cond, pred_uncond = oracle.branches(x_t, t, labels)
        torch.testing.assert_close(pred_cond, mixture.eps(x_t, alpha_bar, labels), rtol=0, atol=1e-12)
        torch.testing.assert_close(pred_uncond, mixture.eps(x_t, alpha_bar), rtol=0, atol=1e-12)
    pred_cond32, _ = oracle.branches(x_t.float(), scheduler.timesteps[17], labels)
    assert pred_cond32.dtype == torch.float32


def test_oracle_interpolates_fractional_timesteps_in_log_alpha_bar(mixture: GaussianMixture, scheduler: DDIMScheduler) -> None:
    oracle = OracleDenoiser(mixture, scheduler.alphas_cumprod)
    ac = scheduler.alphas_cumprod.double()
    abar = oracle.alpha_bar_at(torch.tensor([100.0, 100.25, 100.5, 999.0, -3.0, 2000.0]))
    torch.testing.assert_close(abar[[0, 3]], ac[[100, 999]], rtol=0, atol=0)
    assert ac[101] < abar[1] < ac[100]
    torch.testing.assert_close(abar[2], (ac[100] * ac[101]).sqrt(), rtol=1e-14, atol=0)
    torch.testing.assert_close(abar[4:], ac[[0, 999]], rtol=0, atol=0)  # clamped to [0, T - 1]
    x_t, labels, _ = noised(mixture, 4, 0.3, seed=7)
    torch.testing.assert_close(oracle(x_t, 100.5, labels), mixture.eps(x_t, abar[2], labels), rtol=0, atol=1e-12)


def test_oracle_mixes_null_and_real_labels_in_one_batch(mixture: GaussianMixture, scheduler: DDIMScheduler) -> None:
    oracle = mixture.denoiser(scheduler.alphas_cumprod)
    x_t, _, _ = noised(mixture, 4, 0.5, seed=8)
    labels = torch.tensor([0, 3, 2, 3])
    t = torch.tensor([10, 500, 500, 900])
    pred = oracle(x_t, t, labels)
    for row in range(4):
        alpha_bar = scheduler.alphas_cumprod[t[row]].double()
        y = None if labels[row] == 3 else labels[row : row + 1]
        torch.testing.assert_close(pred[row : row + 1], mixture.eps(x_t[row : row + 1], alpha_bar, y), rtol=0, atol=1e-12)


# -- constructed students -------------------------------------------------------------------------
def gap_ratio(student_gap: torch.Tensor, teacher_gap: torch.Tensor) -> float:
    """rho = E||Delta_S|| / E||Delta_T||."""
    return (student_gap.flatten(1).norm(dim=1).mean() / teacher_gap.flatten(1).norm(dim=1).mean()).item()


def test_constructed_students_have_the_gaps_they_claim(mixture: GaussianMixture, scheduler: DDIMScheduler) -> None:
    oracle = mixture.denoiser(scheduler)
    x_t, labels, _ = noised(mixture, 8, 0.5, seed=9)
    t = torch.full((8,), 400)
    teacher_cond, teacher_uncond = oracle.branches(x_t, t, labels)
    teacher_gap = teacher_cond - teacher_uncond

    cond, uncond = collapsed_student(oracle, 4.0).branches(x_t, t, labels)
    assert torch.equal(cond, uncond) and gap_ratio(cond - uncond, teacher_gap) == 0.0
    torch.testing.assert_close(cond, teacher_uncond + 4.0 * teacher_gap, rtol=0, atol=1e-12)

    cond, uncond = shrunk_student(oracle, 0.25).branches(x_t, t, labels)
    torch.testing.assert_close(cond - uncond, 0.25 * teacher_gap, rtol=0, atol=1e-12)
    assert torch.equal(uncond, teacher_uncond)
    assert gap_ratio(cond - uncond, teacher_gap) == pytest.approx(0.25, rel=1e-12)

    cond, uncond = shifted_student(oracle, 0.5).branches(x_t, t, labels)
    torch.testing.assert_close(cond - uncond, teacher_gap, rtol=0, atol=1e-12)
    torch.testing.assert_close(uncond - teacher_uncond, torch.full_like(uncond, 0.5), rtol=0, atol=1e-12)


def test_collapsed_student_pairs_null_rows_with_their_cfg_partner(mixture: GaussianMixture, scheduler: DDIMScheduler) -> None:
    oracle = mixture.denoiser(scheduler)
    student = GuidedOutputStudent(oracle, 3.0)
    x_t, labels, _ = noised(mixture, 3, 0.5, seed=10)
    null = torch.full_like(labels, oracle.null_label)
    teacher_cond, teacher_uncond = oracle.branches(x_t, 300, labels)
    guided = teacher_uncond + 3.0 * (teacher_cond - teacher_uncond)
    uncond_first = student(torch.cat([x_t, x_t]), 300, torch.cat([null, labels]))  # Stable Diffusion layout
    torch.testing.assert_close(uncond_first, torch.cat([guided, guided]), rtol=0, atol=1e-12)
    torch.testing.assert_close(student(x_t, 300, labels), guided, rtol=0, atol=1e-12)  # cond rows alone
    with pytest.raises(AdapterError, match="conditional partner"):
        student(x_t, 300, null)  # a lone null row has no class to guide towards


# -- determinism and input checks -----------------------------------------------------------------
def test_random_mixture_is_deterministic_per_seed() -> None:
    first, second, other = GaussianMixture.random(seed=0), GaussianMixture.random(seed=0), GaussianMixture.random(seed=1)
    for name in ("means", "stds", "component_weights", "class_probs"):
        assert torch.equal(getattr(first, name), getattr(second, name))
        assert not torch.equal(getattr(first, name), getattr(other, name))
    assert (first.num_classes, first.components_per_class, first.dim, first.sample_shape) == (4, 2, 16, (1, 4, 4))
    assert bool(((first.stds >= 0.1) & (first.stds <= 0.4)).all())
    draws = [first.sample(10, generator=torch.Generator().manual_seed(3)) for _ in range(2)]
    assert torch.equal(draws[0][0], draws[1][0]) and torch.equal(draws[0][1], draws[1][1])
    x0, labels = first.sample(5, labels=torch.tensor([2, 2, 2, 2, 2]))
    assert x0.shape == (5, 1, 4, 4) and x0.dtype == torch.float32 and bool((labels == 2).all())


def _bad_calls(mixture: GaussianMixture, scheduler: DDIMScheduler) -> list[tuple[object, type[Exception], str]]:
    x, ones = torch.zeros(2, 2, 2, 2), torch.ones
    oracle = mixture.denoiser(scheduler)
    return [
        (lambda: GaussianMixture.random(std_range=(0.0, 0.4)), InputError, "std_range"),
        (lambda: GaussianMixture(torch.zeros(1, 1, 5), ones(1, 1), ones(1, 1), ones(1), (1, 2, 2)), InputError, "means"),
        (lambda: GaussianMixture(torch.zeros(1, 1, 4), -ones(1, 1), ones(1, 1), ones(1), (1, 2, 2)), InputError, "stds"),
        (lambda: GaussianMixture(torch.zeros(1, 2, 4), ones(1, 2), ones(1, 2), ones(1), (1, 2, 2)), InputError, "sum to 1"),
        (lambda: GaussianMixture(torch.zeros(2, 1, 4), ones(2, 1), ones(2, 1), ones(3) / 3, (1, 4)), InputError, "class_probs"),
        (lambda: GaussianMixture(torch.zeros(1, 1, 4), ones(1, 1), ones(1, 1), ones(1), (1, 0, 4)), InputError, "sample_shape"),
        (lambda: mixture.eps(torch.zeros(2, 8), 0.5), InputError, "x_t of shape"),
        (lambda: mixture.eps(x, 1.5), InputError, "alpha_bar in"),
        (lambda: mixture.eps(x, torch.ones(3) / 2), InputError, "alpha_bar as a scalar"),
        (lambda: mixture.eps(x, 0.5, torch.tensor([0, 3])), InputError, "labels=None"),
        (lambda: mixture.sample(3, labels=torch.tensor([0.0, 1.0, 2.0])), InputError, "integer labels"),
        (lambda: OracleDenoiser(mixture, torch.ones(3, 3)), InputError, "1-D alphas_cumprod"),
        (lambda: OracleDenoiser(mixture, torch.tensor([1.0, 0.0])), InputError, "(0, 1]"),
        (lambda: oracle(x, 10, torch.tensor([0, 7])), AdapterError, "null label 3"),
        (lambda: oracle(x, float("nan"), torch.tensor([0, 1])), AdapterError, "finite timesteps"),
        (lambda: collapsed_student(oracle, float("inf")), InputError, "guidance_scale"),
        (lambda: shrunk_student("teacher", 0.5), InputError, "Denoiser"),  # type: ignore[arg-type]
    ]


def test_bad_inputs_raise_one_line_errors(mixture: GaussianMixture, scheduler: DDIMScheduler) -> None:
    for call, error, fragment in _bad_calls(mixture, scheduler):
        with pytest.raises(error) as info:
            call()  # type: ignore[operator]
        message = str(info.value)
        assert fragment in message and "expected" in message and "received" in message and "\n" not in message, message


# -- the outcome of guidance, measured exactly on the oracle (docs/design.md §6) ---------------------------------
@pytest.fixture(scope="module")
def tier_teacher():
    from guidegap.oracle import oracle_mixture
    from guidegap.recording.schedulers import default_scheduler

    return oracle_mixture(0).denoiser(default_scheduler())


def test_the_oracle_outcome_says_what_each_constructed_student_does(tier_teacher):
    from guidegap.evaluation.outcome import guides_like
    from guidegap.oracle import collapsed_student, shifted_student, shrunk_student
    from guidegap.oracle.outcome import oracle_outcome

    teacher = oracle_outcome(tier_teacher, tier_teacher, num_samples=512)
    assert teacher.gain > 0.3 and guides_like(teacher, teacher)  # guidance lifts the Bayes accuracy
    collapsed = oracle_outcome(collapsed_student(tier_teacher, 4.0), tier_teacher, num_samples=512)
    assert collapsed.gain == 0.0 and collapsed.accuracy_guided == pytest.approx(teacher.accuracy_guided, abs=1e-9)
    assert not guides_like(collapsed, teacher)  # the teacher's guided samples, but guidance adds nothing
    assert guides_like(oracle_outcome(shrunk_student(tier_teacher, 0.9), tier_teacher, num_samples=512), teacher)
    weak = oracle_outcome(shrunk_student(tier_teacher, 0.2), tier_teacher, num_samples=512)
    assert not guides_like(weak, teacher) and weak.accuracy_guided < teacher.accuracy_guided - 0.1  # not faithful
    shifted = oracle_outcome(shifted_student(tier_teacher, 1.0), tier_teacher, num_samples=512)
    assert not guides_like(shifted, teacher) and shifted.fd_guided > 2 * teacher.fd_guided  # degraded
    assert oracle_outcome(tier_teacher, tier_teacher, num_samples=512) == teacher  # seeded: the same outcome
    with pytest.raises(InputError, match="expected the oracle teacher"):
        oracle_outcome(tier_teacher, shrunk_student(tier_teacher, 0.9))


def test_a_noisy_student_is_off_on_each_branch_by_its_own_fixed_field(tier_teacher):
    import guidegap
    from guidegap.oracle import noisy_student

    x = torch.randn(6, *tier_teacher.sample_shape, generator=torch.Generator().manual_seed(0))
    t = torch.full((6,), 500)
    labels = torch.arange(6) % tier_teacher.num_classes
    cond_t, uncond_t = tier_teacher.branches(x, t, labels)
    student = noisy_student(tier_teacher, 0.1, 0.1, seed=3)
    cond, uncond = student.branches(x, t, labels)
    assert torch.equal(noisy_student(tier_teacher, 0.1, 0.1, seed=3).branches(x, t, labels)[0], cond)  # seeded
    assert not torch.allclose(cond - cond_t, uncond - uncond_t)  # each branch its own error: the gap moves too
    assert (cond - cond_t).abs().max() <= 0.1 + 1e-6 and (cond - cond_t).pow(2).mean().sqrt() > 0.03
    exact_cond, exact_uncond = noisy_student(tier_teacher, 0.0).branches(x, t, labels)
    assert torch.equal(exact_cond, cond_t) and torch.equal(exact_uncond, uncond_t)
    report = guidegap.audit(student, tier_teacher, num_samples=8, num_steps=6, n_boot=50)
    assert report.summary["amplification"].value > 1.5  # guidance multiplies the part of the errors that differs
    with pytest.raises(InputError, match="finite cond_scale"):
        noisy_student(tier_teacher, float("nan"))
