"""Per-timestep loss weights: DASH's TIRT (learned) and the Improved-DDPM loss-moment prior (measured).

Both are called as ``weights = prior(t)`` with ``t`` the batch's ``(B,)`` training timesteps and return
``(B,)`` weights with unit batch mean; ``profile()`` gives the weight of every timestep, mean 1 over ``t``.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from guidegap.errors import InputError

__all__ = ["TIRT", "LossMomentPrior"]


def _check_timesteps(where: str, t: Tensor, num_timesteps: int) -> Tensor:
    t = torch.as_tensor(t)
    if t.ndim != 1 or t.is_floating_point() or t.is_complex() or t.dtype == torch.bool:
        raise InputError(f"{where}: expected integer timesteps of shape (B,), received dtype {t.dtype} and shape {tuple(t.shape)}.")
    if t.numel() and bool(((t < 0) | (t >= num_timesteps)).any()):
        raise InputError(f"{where}: expected timesteps in 0..{num_timesteps - 1}, received {t[(t < 0) | (t >= num_timesteps)][0].item()}.")
    return t.long()


class TIRT(nn.Module):
    """Timestep importance re-weighting (DASH): omega_t = min(SNR_t, snr_cap) * sigmoid(lambda_t), unit batch mean.

    ``SNR_t = abar_t / (1 - abar_t)``; ``lambda_t`` (one per training timestep, init 0) is learned jointly with
    the teacher and copied into the student frozen (:meth:`freeze`).

    Caveat (the issue raised in the spec): learned by gradient descent on the weighted loss itself,
    ``d/d omega_k mean(omega * L) ∝ L_k - (weighted mean loss)``, so lambda rises wherever the loss is *below*
    average. Nothing stops the weights from moving onto the easiest (lowest-loss) timesteps; the minimiser
    puts all weight on ``argmin_t L_t``. ``tests/test_tirt.py::test_tirt_degenerates_to_easy_timesteps``
    shows it on fixed per-timestep losses. The SNR cap only bounds the prior factor; sigmoid can still
    drive any timestep's weight to ~0. Prefer a fixed profile (``lambda = 0``) or :class:`LossMomentPrior`
    unless the learned profile is checked.
    """

    def __init__(self, alphas_cumprod: Tensor, snr_cap: float = 5.0) -> None:
        super().__init__()
        abar = torch.as_tensor(alphas_cumprod).detach().to("cpu", torch.float64)
        if abar.ndim != 1 or abar.numel() < 1 or not bool(((abar > 0) & (abar < 1)).all()):
            raise InputError(
                f"TIRT: expected a 1-D alphas_cumprod with values in (0, 1), received shape {tuple(abar.shape)}; "
                "pass scheduler.alphas_cumprod."
            )
        if not float(snr_cap) > 0:
            raise InputError(f"TIRT: expected snr_cap > 0, received {snr_cap!r}; the DASH default is 5.0.")
        self.snr_cap = float(snr_cap)
        snr = abar / (1.0 - abar)
        self.register_buffer("capped_snr", snr.clamp(max=self.snr_cap).to(torch.float32))
        self.lambda_t = nn.Parameter(torch.zeros(abar.numel()))

    @property
    def num_timesteps(self) -> int:
        return int(self.lambda_t.numel())

    def omega(self) -> Tensor:
        """Unnormalised ``omega_t`` for every timestep, shape ``(T,)``."""
        return self.capped_snr * torch.sigmoid(self.lambda_t)

    def forward(self, t: Tensor) -> Tensor:
        """``(B,)`` weights ``omega_t / mean_batch(omega_t)``; gradients flow to ``lambda_t``."""
        t = _check_timesteps("TIRT", t, self.num_timesteps).to(self.lambda_t.device)
        omega = self.capped_snr[t] * torch.sigmoid(self.lambda_t[t])
        return omega / omega.mean()

    def profile(self) -> Tensor:
        """``omega_t`` for all ``t``, normalised to mean 1 over ``t`` (detached; for plots and checkpoints)."""
        with torch.no_grad():
            omega = self.omega()
            return omega / omega.mean()

    def freeze(self) -> "TIRT":
        """Stop learning ``lambda_t`` (students copy the teacher's TIRT and freeze it); returns ``self``."""
        self.requires_grad_(False)
        return self


class LossMomentPrior:
    """Alternative prior, clearly named: importance from the loss second moment per timestep (Improved DDPM, Nichol & Dhariwal 2021, §3.3).

    Keeps the last ``history`` squared losses per ``t``; ``weight_t ∝ sqrt(E[L_t^2])`` once every ``t`` has
    ``history`` entries, uniform before; weights come back with unit batch mean. Improved DDPM uses this
    quantity as a *sampling* probability with a ``1/p_t`` correction (an unbiased, lower-variance estimate of
    the same loss); used here as a loss weight, as specified, it up-weights the high-loss timesteps instead,
    the opposite tendency of a learned TIRT.
    """

    def __init__(self, num_timesteps: int, history: int = 10) -> None:
        if isinstance(num_timesteps, bool) or int(num_timesteps) < 1 or isinstance(history, bool) or int(history) < 1:
            raise InputError(
                f"LossMomentPrior: expected num_timesteps >= 1 and history >= 1, received {num_timesteps!r} and {history!r}."
            )
        self.num_timesteps, self.history = int(num_timesteps), int(history)
        self._squares = torch.zeros(self.num_timesteps, self.history, dtype=torch.float64)
        self._count = torch.zeros(self.num_timesteps, dtype=torch.long)  # updates seen per t; slot = count % history

    @property
    def ready(self) -> bool:
        """Whether every timestep has ``history`` entries (weights are uniform until then)."""
        return bool((self._count >= self.history).all())

    def update(self, t: Tensor, per_sample_loss: Tensor) -> None:
        """Record ``per_sample_loss ** 2`` at timesteps ``t`` (both ``(B,)``), in batch order."""
        t = _check_timesteps("LossMomentPrior", t, self.num_timesteps).cpu()
        loss = torch.as_tensor(per_sample_loss).detach().to("cpu", torch.float64)
        if tuple(loss.shape) != tuple(t.shape):
            raise InputError(f"LossMomentPrior: expected per_sample_loss of shape {tuple(t.shape)}, received {tuple(loss.shape)}.")
        for step, value in zip(t.tolist(), loss.pow(2).tolist()):
            self._squares[step, self._count[step] % self.history] = value
            self._count[step] += 1

    def profile(self) -> Tensor:
        """``sqrt(E[L_t^2])`` for all ``t``, mean 1 over ``t`` (ones until :attr:`ready`), float64."""
        if not self.ready:
            return torch.ones(self.num_timesteps, dtype=torch.float64)
        root = self._squares.mean(1).sqrt()
        return root / root.mean()

    def weights(self, t: Tensor) -> Tensor:
        """``(B,)`` float32 weights with unit batch mean, on ``t``'s device (also ``prior(t)``, like :class:`TIRT`)."""
        checked = _check_timesteps("LossMomentPrior", t, self.num_timesteps)
        weight = self.profile()[checked.cpu()]
        return (weight / weight.mean()).to(device=checked.device, dtype=torch.float32)

    __call__ = weights

    def state_dict(self) -> dict[str, Tensor]:
        return {"squares": self._squares.clone(), "count": self._count.clone()}

    def load_state_dict(self, state: dict[str, Tensor]) -> None:
        squares, count = state.get("squares"), state.get("count")
        if (
            not isinstance(squares, Tensor) or not isinstance(count, Tensor)
            or tuple(squares.shape) != (self.num_timesteps, self.history) or tuple(count.shape) != (self.num_timesteps,)
        ):
            raise InputError(
                f"LossMomentPrior: expected a state with 'squares' {(self.num_timesteps, self.history)} and 'count' "
                f"({self.num_timesteps},) tensors, received keys {sorted(state)}; build the prior with the saved sizes."
            )
        self._squares = squares.detach().to("cpu", torch.float64).clone()
        self._count = count.detach().to("cpu", torch.long).clone()
