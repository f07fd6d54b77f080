"""Views of one denoiser as another pair of branches, for audits that compare a model with itself.

* :class:`UnguidedView`: the same model with its unconditional branch replaced by the conditional one, so guidance
  has no effect (the teacher-free audit's unguided path).
* :class:`GuidanceResponseView`: the branches ``(eps(w), eps(w = 1))`` of a model that takes w as an input, so the
  recorder's gap is its response to w (guidance-distilled students).
"""

from __future__ import annotations

import torch

from guidegap.denoisers.base import Denoiser

__all__ = ["UnguidedView", "GuidanceResponseView"]


class UnguidedView(Denoiser):
    """The same model with its unconditional branch replaced by the conditional one (guidance has no effect)."""

    def __init__(self, denoiser: Denoiser) -> None:
        super().__init__(num_classes=denoiser.num_classes, null_label=denoiser.null_label,
                         sample_shape=denoiser.sample_shape, module=denoiser.module, name=f"{denoiser.name} (w=1)")
        self.inner = denoiser

    def forward(self, x: torch.Tensor, t: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        return self.inner(x, t, labels)

    def branches(self, x: torch.Tensor, t: torch.Tensor | float | int, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        cond = self.inner(x, t, labels)
        return cond, cond


class GuidanceResponseView(Denoiser):
    """Branches ``(eps(w), eps(w = 1))`` of one guidance-embedded model: the recorder's gap is its response to w."""

    def __init__(self, at_w: Denoiser, at_one: Denoiser) -> None:
        super().__init__(num_classes=at_w.num_classes, null_label=at_w.null_label, sample_shape=at_w.sample_shape,
                         module=at_w.module, name=at_w.name)
        self.at_w, self.at_one = at_w, at_one

    def forward(self, x: torch.Tensor, t: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        return self.at_w(x, t, labels)

    def branches(self, x: torch.Tensor, t: torch.Tensor | float | int, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.at_w(x, t, labels), self.at_one(x, t, labels)

    def describe(self) -> dict[str, object]:
        info = self.at_w.describe()
        info["branches"] = "cond = eps(prompt; w embedding), uncond = eps(prompt; w = 1 embedding)"
        return info
