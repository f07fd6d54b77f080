"""TIRT weights against hand computation on the DDPM linear schedule, its degeneration, and the loss-moment prior."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from diffusers import DDPMScheduler

from guidegap.errors import InputError
from guidegap.training.tirt import TIRT, LossMomentPrior

T = 1000


@pytest.fixture(scope="module")
def alphas_cumprod():
    return DDPMScheduler(num_train_timesteps=T).alphas_cumprod


def hand_capped_snr(cap: float = 5.0) -> np.ndarray:
    """DDPM linear schedule (betas 1e-4 .. 0.02) computed here in float64, SNR capped."""
    abar = np.cumprod(1.0 - np.linspace(1e-4, 0.02, T))
    return np.minimum(abar / (1.0 - abar), cap)


def test_capped_snr_matches_the_linear_schedule(alphas_cumprod):
    tirt = TIRT(alphas_cumprod)
    snr = hand_capped_snr()
    np.testing.assert_allclose(tirt.capped_snr.numpy(), snr, rtol=2e-4)
    assert tirt.capped_snr[0].item() == 5.0  # SNR_0 = 0.9999 / 1e-4 ~ 1e4, capped
    assert tirt.capped_snr[-1].item() == pytest.approx(4.04e-5, rel=0.01)  # abar_999 ~ 4.04e-5
    capped = int((snr >= 5.0).sum())
    assert int((tirt.capped_snr == 5.0).sum()) == capped and 60 < capped < 200  # abar >= 5/6 up to t ~ 130


def test_omega_formula_and_unit_batch_mean(alphas_cumprod):
    tirt = TIRT(alphas_cumprod, snr_cap=3.0)
    gen = torch.Generator().manual_seed(0)
    with torch.no_grad():
        tirt.lambda_t.copy_(torch.randn(T, generator=gen) * 2)
    t = torch.randint(0, T, (64,), generator=gen)
    lam = tirt.lambda_t.detach().double().numpy()[t.numpy()]
    omega = hand_capped_snr(3.0)[t.numpy()] / (1.0 + np.exp(-lam))
    weights = tirt(t)
    np.testing.assert_allclose(weights.detach().numpy(), omega / omega.mean(), rtol=2e-4)
    assert weights.mean().item() == pytest.approx(1.0, abs=1e-6)
    profile = tirt.profile()
    assert profile.shape == (T,) and profile.mean().item() == pytest.approx(1.0, abs=1e-6)


def test_lambda_zero_gives_half_the_capped_snr(alphas_cumprod):
    tirt = TIRT(alphas_cumprod)
    np.testing.assert_allclose(tirt.omega().detach().numpy(), hand_capped_snr() / 2, rtol=2e-4)
    t = torch.tensor([0, 10, 100, 500, 999])
    snr = hand_capped_snr()[t.numpy()]
    np.testing.assert_allclose(tirt(t).detach().numpy(), snr / snr.mean(), rtol=2e-4)


def test_gradient_reaches_lambda_until_frozen(alphas_cumprod):
    tirt = TIRT(alphas_cumprod)
    t = torch.tensor([5, 300, 600, 600])
    loss = torch.tensor([1.0, 2.0, 3.0, 4.0])
    (tirt(t) * loss).mean().backward()
    grad = tirt.lambda_t.grad
    assert set(torch.nonzero(grad).flatten().tolist()) == {5, 300, 600}
    assert grad[5] < 0 < grad[600]  # the low-loss timestep is pushed up, the high-loss one down
    assert tirt.freeze() is tirt
    assert not tirt.lambda_t.requires_grad and not tirt(t).requires_grad


def test_tirt_degenerates_to_easy_timesteps(alphas_cumprod):
    """Learning lambda on mean(omega * L) moves the weight onto the lowest-loss timesteps (the spec's issue)."""
    loss = 0.1 + torch.linspace(0, 1, T)  # fixed per-timestep losses, increasing in t
    easiest, hardest = torch.arange(100), torch.arange(T - 100, T)
    tirt = TIRT(alphas_cumprod)
    before = tirt.profile()
    optimizer = torch.optim.Adam(tirt.parameters(), lr=0.05)
    gen = torch.Generator().manual_seed(0)
    for _ in range(300):
        t = torch.randint(0, T, (256,), generator=gen)
        objective = (tirt(t) * loss[t]).mean()
        optimizer.zero_grad()
        objective.backward()
        optimizer.step()
    after = tirt.profile()
    sig = torch.sigmoid(tirt.lambda_t.detach())

    def ess(p):  # effective fraction of timesteps carrying weight
        return (p.sum() ** 2 / (p**2).sum() / T).item()

    numbers = {
        "weighted_loss": ((before * loss).mean().item(), (after * loss).mean().item()),
        "mass_on_easiest_10pct": (before[easiest].mean().item() / 10, after[easiest].mean().item() / 10),
        "ess_fraction": (ess(before), ess(after)),
        "sigmoid_easiest_hardest": (sig[easiest].mean().item(), sig[hardest].mean().item()),
    }
    print(numbers)
    assert numbers["weighted_loss"][0] == pytest.approx(0.224, abs=0.005)
    assert numbers["weighted_loss"][1] < 0.14  # -> min loss 0.1; uniform weights would give 0.6
    assert numbers["mass_on_easiest_10pct"][0] == pytest.approx(0.476, abs=0.01)
    assert numbers["mass_on_easiest_10pct"][1] > 0.95
    assert numbers["ess_fraction"][1] < numbers["ess_fraction"][0] / 3
    assert numbers["sigmoid_easiest_hardest"][0] > 0.5 > 0.05 > numbers["sigmoid_easiest_hardest"][1]


def test_tirt_rejects_bad_input(alphas_cumprod):
    with pytest.raises(InputError, match="alphas_cumprod"):
        TIRT(torch.ones(10))
    with pytest.raises(InputError, match="0..999"):
        TIRT(alphas_cumprod)(torch.tensor([1000]))


def test_loss_moment_prior_uniform_until_full_then_root_mean_square():
    prior = LossMomentPrior(num_timesteps=4, history=3)
    t = torch.tensor([0, 1, 2, 3])
    assert torch.equal(prior(t), torch.ones(4))
    # t = 0..3 get losses; t = 0 gets four (the first one, 100, falls out of the history of 3)
    prior.update(torch.tensor([0]), torch.tensor([100.0]))
    rows = {0: [1.0, 2.0, 2.0], 1: [3.0, 3.0, 3.0], 2: [0.5, 1.5, 1.0], 3: [4.0, 0.0, 2.0]}
    for k in range(3):
        prior.update(t, torch.tensor([rows[i][k] for i in range(4)]))
        if k < 2:
            assert not prior.ready and torch.equal(prior(t), torch.ones(4))
    assert prior.ready
    rms = np.array([np.sqrt(np.mean(np.square(rows[i]))) for i in range(4)])  # [sqrt(3), 3, sqrt(7/6), sqrt(20/3)]
    np.testing.assert_allclose(prior.profile().numpy(), rms / rms.mean(), rtol=1e-12)
    batch = torch.tensor([1, 1, 3, 0, 2])
    np.testing.assert_allclose(prior(batch).numpy(), rms[batch.numpy()] / rms[batch.numpy()].mean(), rtol=1e-6)
    assert prior(batch).mean().item() == pytest.approx(1.0, abs=1e-6)
    assert torch.equal(prior.weights(batch), prior(batch)) and prior.weights(batch).dtype == torch.float32

    restored = LossMomentPrior(num_timesteps=4, history=3)
    restored.load_state_dict(prior.state_dict())
    assert torch.equal(restored(batch), prior(batch))
    for p in (prior, restored):  # resume is bitwise: the ring buffer position travels with the state
        p.update(torch.tensor([2, 2]), torch.tensor([9.0, 0.25]))
    assert torch.equal(restored.profile(), prior.profile())
    with pytest.raises(InputError, match="squares"):
        LossMomentPrior(num_timesteps=5, history=3).load_state_dict(prior.state_dict())
