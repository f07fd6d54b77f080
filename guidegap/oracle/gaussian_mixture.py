"""A class-conditional Gaussian mixture whose noised eps is known exactly: the ground truth for tests.

Under the VP (DDPM) forward process ``x_t = sqrt(abar) x0 + sqrt(1 - abar) eps``, an isotropic component
``N(mu, s^2 I)`` of the data becomes ``N(sqrt(abar) mu, v I)`` with ``v = abar s^2 + 1 - abar``. The noised
density stays a mixture, so its score, and ``E[eps | x_t, y] = -sqrt(1 - abar) * score``, are closed form:

    score(x_t) = sum_m r_m(x_t) * (-(x_t - sqrt(abar) mu_m) / v_m)

with responsibilities ``r_m`` from a log-sum-exp over ``log w_m + log N(x_t; sqrt(abar) mu_m, v_m I)``.
The unconditional branch is the mixture over every class, weighted by ``class_probs * component_weights``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from guidegap.denoisers.base import Denoiser
from guidegap.errors import AdapterError, InputError

__all__ = ["GaussianMixture", "OracleDenoiser"]

_SUM_TOL = 1e-6


def _as_probabilities(name: str, value: torch.Tensor, shape: tuple[int, ...]) -> torch.Tensor:
    """Check that ``value`` has ``shape``, is non-negative and sums to 1 along its last dim."""
    value = torch.as_tensor(value, dtype=torch.float64)
    if tuple(value.shape) != shape:
        raise InputError(
            f"GaussianMixture: expected {name} of shape {shape}, received {tuple(value.shape)}; pass one weight per entry."
        )
    if not bool(torch.isfinite(value).all()) or bool((value < 0).any()):
        raise InputError(
            f"GaussianMixture: expected finite non-negative {name}, received minimum {value.min().item()}; pass probabilities."
        )
    sums = value.sum(-1)
    if not bool(torch.allclose(sums, torch.ones_like(sums), rtol=0.0, atol=_SUM_TOL)):
        raise InputError(
            f"GaussianMixture: expected {name} to sum to 1 along the last dim, received sums {sums.flatten().tolist()}; "
            "normalise them."
        )
    return value


def _sample_shape(value: tuple[int, ...]) -> tuple[int, ...]:
    shape = tuple(int(s) for s in value)
    if not shape or any(s < 1 for s in shape):
        raise InputError(
            f"GaussianMixture: expected a sample_shape of positive sizes such as (1, 4, 4), received {value}; "
            "pass the shape of one sample."
        )
    return shape


@dataclass(frozen=True, eq=False)
class GaussianMixture:
    """Class-conditional mixture ``p(x0 | y) = sum_m w[y, m] N(x0; means[y, m], stds[y, m]^2 I)``, ``p(y) = class_probs[y]``.

    Attributes:
        means: ``(K, M, D)`` component means, ``D = prod(sample_shape)``.
        stds: ``(K, M)`` isotropic standard deviation of each component, all > 0.
        component_weights: ``(K, M)`` mixture weights within each class, each row summing to 1.
        class_probs: ``(K,)`` class prior, summing to 1.
        sample_shape: shape of one sample, e.g. ``(1, 4, 4)``.
    """

    means: torch.Tensor
    stds: torch.Tensor
    component_weights: torch.Tensor
    class_probs: torch.Tensor
    sample_shape: tuple[int, ...]

    def __post_init__(self) -> None:
        sample_shape = _sample_shape(self.sample_shape)
        dim = math.prod(sample_shape)
        means = torch.as_tensor(self.means, dtype=torch.float64)
        if means.ndim != 3 or means.shape[0] < 1 or means.shape[1] < 1 or means.shape[2] != dim:
            raise InputError(
                f"GaussianMixture: expected means of shape (num_classes, components_per_class, {dim}) "
                f"for sample_shape {sample_shape}, received {tuple(means.shape)}; flatten each mean to prod(sample_shape) values."
            )
        if not bool(torch.isfinite(means).all()):
            raise InputError("GaussianMixture: expected finite means, received NaN or Inf; pass finite values.")
        num_classes, components = means.shape[:2]
        stds = torch.as_tensor(self.stds, dtype=torch.float64)
        if tuple(stds.shape) != (num_classes, components):
            raise InputError(
                f"GaussianMixture: expected stds of shape {(num_classes, components)}, received {tuple(stds.shape)}; "
                "pass one std per component."
            )
        if not bool(torch.isfinite(stds).all()) or bool((stds <= 0).any()):
            raise InputError(
                f"GaussianMixture: expected finite stds > 0, received minimum {stds.min().item()}; "
                "use positive standard deviations."
            )
        object.__setattr__(self, "sample_shape", sample_shape)
        object.__setattr__(self, "means", means)
        object.__setattr__(self, "stds", stds)
        weights = _as_probabilities("component_weights", self.component_weights, (num_classes, components))
        object.__setattr__(self, "component_weights", weights)
        object.__setattr__(self, "class_probs", _as_probabilities("class_probs", self.class_probs, (num_classes,)))

    # -- construction -----------------------------------------------------------------------------
    @classmethod
    def random(
        cls,
        num_classes: int = 4,
        components_per_class: int = 2,
        sample_shape: tuple[int, ...] = (1, 4, 4),
        seed: int = 0,
        mean_scale: float = 1.0,
        std_range: tuple[float, float] = (0.1, 0.4),
    ) -> GaussianMixture:
        """Draw a mixture from a generator seeded with ``seed``: means ``N(0, mean_scale^2 I)``, stds uniform in ``std_range``."""
        if num_classes < 1 or components_per_class < 1:
            raise InputError(
                f"GaussianMixture.random: expected num_classes >= 1 and components_per_class >= 1, "
                f"received {num_classes} and {components_per_class}; pass positive counts."
            )
        low, high = (float(v) for v in std_range)
        if not 0 < low <= high or not math.isfinite(high):
            raise InputError(
                f"GaussianMixture.random: expected std_range (low, high) with 0 < low <= high, received {std_range}; "
                "pass e.g. (0.1, 0.4)."
            )
        if not math.isfinite(mean_scale) or mean_scale < 0:
            raise InputError(f"GaussianMixture.random: expected a finite mean_scale >= 0, received {mean_scale}; pass e.g. 1.0.")
        generator = torch.Generator().manual_seed(int(seed))
        shape = (num_classes, components_per_class)
        sample_shape = _sample_shape(sample_shape)
        dim = math.prod(sample_shape)
        means = mean_scale * torch.randn(*shape, dim, generator=generator, dtype=torch.float64)
        stds = low + (high - low) * torch.rand(*shape, generator=generator, dtype=torch.float64)
        weights = 0.5 + torch.rand(*shape, generator=generator, dtype=torch.float64)
        probs = 0.5 + torch.rand(num_classes, generator=generator, dtype=torch.float64)
        return cls(means, stds, weights / weights.sum(-1, keepdim=True), probs / probs.sum(), sample_shape)

    # -- sizes ------------------------------------------------------------------------------------
    @property
    def num_classes(self) -> int:
        return int(self.means.shape[0])

    @property
    def components_per_class(self) -> int:
        return int(self.means.shape[1])

    @property
    def dim(self) -> int:
        """Data dimension ``D = prod(sample_shape)``."""
        return int(self.means.shape[2])

    # -- sampling ---------------------------------------------------------------------------------
    def data_std(self) -> float:
        """Overall standard deviation of x0 (all classes, all dims pooled): sqrt(E||x0 - E x0||^2 / D)."""
        weights = (self.class_probs[:, None] * self.component_weights).reshape(-1)  # (K*M,)
        means = self.means.reshape(-1, self.dim)
        second = (weights * (self.stds.reshape(-1) ** 2 * self.dim + (means**2).sum(1))).sum()
        overall_mean = (weights[:, None] * means).sum(0)
        return float(((second - (overall_mean**2).sum()) / self.dim).sqrt())

    def sample(
        self,
        n: int,
        labels: torch.Tensor | None = None,
        generator: torch.Generator | None = None,
        dtype: torch.dtype = torch.float32,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Draw ``(x0, labels)``: ``x0`` of shape ``(n, *sample_shape)``; labels from ``class_probs`` when ``None``."""
        if n < 1:
            raise InputError(f"GaussianMixture.sample: expected n >= 1, received {n}; ask for at least one sample.")
        if labels is None:
            labels = torch.multinomial(self.class_probs, n, replacement=True, generator=generator)
        else:
            labels = self._check_labels("sample", labels, n)
        component = torch.multinomial(self.component_weights[labels], 1, generator=generator).squeeze(1)
        noise = torch.randn(n, self.dim, generator=generator, dtype=torch.float64)
        x0 = self.means[labels, component] + self.stds[labels, component, None] * noise
        return x0.reshape(n, *self.sample_shape).to(dtype), labels

    # -- the noised density -----------------------------------------------------------------------
    def log_prob(self, x_t: torch.Tensor, alpha_bar: torch.Tensor | float, labels: torch.Tensor | None = None) -> torch.Tensor:
        """Log density ``log p_t(x_t | y)`` of the noised data, shape ``(B,)``; ``labels=None`` gives ``log p_t(x_t)``."""
        log_joint, _, _ = self._log_joint("log_prob", x_t, alpha_bar, labels)
        return torch.logsumexp(log_joint, dim=1)

    def eps(self, x_t: torch.Tensor, alpha_bar: torch.Tensor | float, labels: torch.Tensor | None = None) -> torch.Tensor:
        """Exact ``E[eps | x_t, y] = sqrt(1 - abar) sum_m r_m (x_t - sqrt(abar) mu_m) / v_m``; ``labels=None``: unconditional."""
        log_joint, diff, var = self._log_joint("eps", x_t, alpha_bar, labels)
        resp = torch.softmax(log_joint, dim=1)  # (B, C)
        abar = self._alpha_bar("eps", alpha_bar, x_t.shape[0], x_t.device)
        eps = (1.0 - abar).sqrt()[:, None] * torch.einsum("bc,bcd->bd", resp / var, diff)
        return eps.reshape(x_t.shape).to(x_t.dtype)

    # -- the oracle denoiser ----------------------------------------------------------------------
    def denoiser(self, scheduler_or_alphas_cumprod: object) -> OracleDenoiser:
        """An :class:`OracleDenoiser` on a diffusers scheduler's (or a given) ``alphas_cumprod``."""
        alphas_cumprod = getattr(scheduler_or_alphas_cumprod, "alphas_cumprod", scheduler_or_alphas_cumprod)
        return OracleDenoiser(self, alphas_cumprod)  # type: ignore[arg-type]

    # -- internals --------------------------------------------------------------------------------
    def _check_labels(self, where: str, labels: torch.Tensor | int, batch: int) -> torch.Tensor:
        labels = torch.as_tensor(labels)
        if labels.is_floating_point() or labels.is_complex():
            raise InputError(
                f"GaussianMixture.{where}: expected integer labels, received dtype {labels.dtype}; "
                "pass a long tensor of class ids."
            )
        labels = labels.to(torch.long)
        if labels.ndim == 0:
            labels = labels.expand(batch)
        if tuple(labels.shape) != (batch,):
            raise InputError(
                f"GaussianMixture.{where}: expected labels of shape ({batch},), received {tuple(labels.shape)}; "
                "pass one label per sample."
            )
        bad = (labels < 0) | (labels >= self.num_classes)
        if bool(bad.any()):
            raise InputError(
                f"GaussianMixture.{where}: expected labels in 0..{self.num_classes - 1}, received {labels[bad][0].item()}; "
                "pass real class ids (labels=None gives the unconditional branch)."
            )
        return labels

    def _alpha_bar(self, where: str, alpha_bar: torch.Tensor | float, batch: int, device: torch.device) -> torch.Tensor:
        abar = torch.as_tensor(alpha_bar, dtype=torch.float64, device=device)
        if abar.ndim == 0:
            abar = abar.expand(batch)
        if tuple(abar.shape) != (batch,):
            raise InputError(
                f"GaussianMixture.{where}: expected alpha_bar as a scalar or of shape ({batch},), received {tuple(abar.shape)}; "
                "pass one value per sample."
            )
        if not bool(((abar >= 0) & (abar <= 1)).all()):
            outside = abar[~((abar >= 0) & (abar <= 1))][0].item()
            raise InputError(
                f"GaussianMixture.{where}: expected alpha_bar in [0, 1], received {outside}; "
                "pass the cumulative product of alphas."
            )
        return abar

    def _log_joint(
        self, where: str, x_t: torch.Tensor, alpha_bar: torch.Tensor | float, labels: torch.Tensor | None
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Per component c: ``log w_c + log N(x_t; sqrt(abar) mu_c, v_c I)``, ``x_t - sqrt(abar) mu_c``, ``v_c``."""
        if not isinstance(x_t, torch.Tensor) or x_t.ndim < 1 or tuple(x_t.shape[1:]) != self.sample_shape:
            received = tuple(x_t.shape) if isinstance(x_t, torch.Tensor) else type(x_t).__name__
            raise InputError(
                f"GaussianMixture.{where}: expected x_t of shape (B, {', '.join(map(str, self.sample_shape))}), "
                f"received {received}; pass a batch of samples of the mixture's sample_shape."
            )
        batch, device = x_t.shape[0], x_t.device
        abar = self._alpha_bar(where, alpha_bar, batch, device)
        x = x_t.reshape(batch, 1, self.dim).to(torch.float64)
        if labels is None:  # every (class, component) pair, weighted by p(y) w[y, m]
            log_w = (self.class_probs[:, None] * self.component_weights).log().reshape(1, -1).to(device)
            means = self.means.reshape(1, -1, self.dim).to(device)
            stds = self.stds.reshape(1, -1).to(device)
        else:
            labels = self._check_labels(where, labels, batch).cpu()
            log_w = self.component_weights[labels].log().to(device)
            means, stds = self.means[labels].to(device), self.stds[labels].to(device)
        var = abar[:, None] * stds**2 + (1.0 - abar[:, None])  # (B, C)
        diff = x - abar.sqrt()[:, None, None] * means  # (B, C, D)
        sq = diff.pow(2).sum(-1)
        log_normal = -0.5 * sq / var - 0.5 * self.dim * torch.log(2 * math.pi * var)
        return log_w + log_normal, diff, var


class OracleDenoiser(Denoiser):
    """The exact eps of a :class:`GaussianMixture` at training timesteps of a VP schedule (``alphas_cumprod``).

    Integer ``t`` indexes ``alphas_cumprod``; fractional ``t`` (Euler-type schedulers) interpolates linearly in
    ``log(alpha_bar)`` between neighbours; ``t`` is clamped to ``[0, T - 1]``. Rows whose label is the null label
    (``num_classes``) get the unconditional eps, the others the conditional eps of their class.
    """

    def __init__(self, mixture: GaussianMixture, alphas_cumprod: torch.Tensor) -> None:
        if not isinstance(mixture, GaussianMixture):
            raise InputError(
                f"oracle: expected a GaussianMixture, received {type(mixture).__name__}; build one with GaussianMixture.random()."
            )
        k = mixture.num_classes
        super().__init__(num_classes=k, null_label=k, sample_shape=mixture.sample_shape, module=None, name="oracle")
        abar = torch.as_tensor(alphas_cumprod).detach().to("cpu", torch.float64)
        if abar.ndim != 1 or abar.numel() < 1:
            raise InputError(
                f"oracle: expected a 1-D alphas_cumprod (one value per training timestep), received shape {tuple(abar.shape)}; "
                "pass scheduler.alphas_cumprod."
            )
        if not bool(((abar > 0) & (abar <= 1)).all()):
            raise InputError(
                "oracle: expected alphas_cumprod in (0, 1], received values outside it; "
                "pass scheduler.alphas_cumprod of a VP schedule."
            )
        self.mixture = mixture
        self.alphas_cumprod = abar
        self._log_alphas_cumprod = abar.log()

    def alpha_bar_at(self, t: torch.Tensor) -> torch.Tensor:
        """``alpha_bar`` at training timesteps ``t`` (float64), log-linear between integer timesteps."""
        t = torch.as_tensor(t).detach().to("cpu", torch.float64)
        if not bool(torch.isfinite(t).all()):
            raise AdapterError(
                f"oracle: expected finite timesteps, received {t[~torch.isfinite(t)][0].item()}; "
                f"pass training timesteps in [0, {self.alphas_cumprod.numel() - 1}]."
            )
        t = t.clamp(0, self.alphas_cumprod.numel() - 1)
        low = t.floor().long()
        high = (low + 1).clamp(max=self.alphas_cumprod.numel() - 1)
        frac = t - low
        log_abar = (1 - frac) * self._log_alphas_cumprod[low] + frac * self._log_alphas_cumprod[high]
        return log_abar.exp()

    def forward(self, x: torch.Tensor, t: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """Exact eps per row: conditional for real labels, unconditional for ``null_label``."""
        if tuple(x.shape[1:]) != self.sample_shape or tuple(t.shape) != (x.shape[0],):
            raise AdapterError(
                f"oracle: expected x of shape (B, {', '.join(map(str, self.sample_shape))}) and t of shape (B,), "
                f"received {tuple(x.shape)} and {tuple(t.shape)}; pass a batch of the mixture's sample_shape."
            )
        is_null = labels == self.null_label
        bad = ~is_null & ((labels < 0) | (labels >= self.num_classes))
        if bool(bad.any()):
            raise AdapterError(
                f"oracle: expected labels in 0..{self.num_classes - 1} or the null label {self.null_label}, "
                f"received {labels[bad][0].item()}; pass real class ids or null_label."
            )
        abar = self.alpha_bar_at(t).to(x.device)
        out = torch.empty_like(x, dtype=torch.float64)
        real = ~is_null
        if bool(real.any()):
            out[real] = self.mixture.eps(x[real].to(torch.float64), abar[real], labels[real])
        if bool(is_null.any()):
            out[is_null] = self.mixture.eps(x[is_null].to(torch.float64), abar[is_null], None)
        return out.to(x.dtype)
