"""The outcome of guidance on the oracle tier, measured exactly (docs/design.md §6 with an exact judge of samples).

On the oracle tier the judge of samples needs no trained network: the mixture's Bayes classifier
``argmax_y p(y) p(x0 | y)`` stands in for the project classifier, and the Fréchet distance is taken on the samples
themselves (the data have a few dimensions). Constructed students of this teacher then have an outcome that no gap
metric fed, against which a verdict rule can be checked.
"""

from __future__ import annotations

import torch

from guidegap.denoisers import DenoiserLike
from guidegap.errors import InputError
from guidegap.evaluation.frechet import frechet_distance
from guidegap.evaluation.outcome import GuidanceOutcome
from guidegap.oracle.gaussian_mixture import GaussianMixture, OracleDenoiser
from guidegap.recording.sampler import sample

__all__ = ["bayes_accuracy", "oracle_outcome"]


def oracle_outcome(model: DenoiserLike, teacher: OracleDenoiser, *, guidance_scale: float = 4.0, num_samples: int = 1024,
                   num_steps: int = 25, seed: int = 0) -> GuidanceOutcome:
    """``model``'s outcome under classifier-free guidance on ``teacher``'s mixture: ``num_samples`` DDIM samples (classes
    in turn, the same noise for every model) at w = 1 and at ``guidance_scale``, classified by the exact Bayes
    classifier; FD at ``guidance_scale`` against as many exact data samples of the same classes."""
    if not isinstance(teacher, OracleDenoiser):
        raise InputError(f"expected the oracle teacher (an OracleDenoiser: guidegap.oracle.oracle_mixture().denoiser(scheduler)), "
                         f"received {type(teacher).__name__}; outcomes of other teachers need a trained classifier "
                         "(guidegap.evaluation).")
    mixture = teacher.mixture
    labels = torch.arange(num_samples) % mixture.num_classes
    options = dict(num_steps=num_steps, scheduler="ddim", seed=seed, clip=False)
    unguided = sample(model, labels, guidance_scale=1.0, **options)
    guided = sample(model, labels, guidance_scale=guidance_scale, **options)
    data, _ = mixture.sample(num_samples, labels=labels, generator=torch.Generator().manual_seed(seed + 1))  # same classes
    return GuidanceOutcome(bayes_accuracy(mixture, unguided, labels), bayes_accuracy(mixture, guided, labels),
                           frechet_distance(guided.flatten(1).double().numpy(), data.flatten(1).double().numpy()))


def bayes_accuracy(mixture: GaussianMixture, images: torch.Tensor, labels: torch.Tensor) -> float:
    """Share of ``images`` whose most probable class under the mixture, ``argmax_y p(y) p(x0 | y)`` (the Bayes classifier,
    its class prior included, as a classifier trained on the data would learn it), is their label."""
    x = images.double()
    log_joint = torch.stack([mixture.log_prob(x, 1.0, torch.full((len(x),), y, dtype=torch.long)) + mixture.class_probs[y].log()
                             for y in range(mixture.num_classes)], dim=1)
    return float((log_joint.argmax(1) == labels).double().mean())
