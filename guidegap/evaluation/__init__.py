"""Evaluation on Fashion-MNIST: the project's reference classifier, Fréchet distance on its features, guidance fidelity,
and the outcome a verdict must predict (docs/design.md §6).

``fd`` is Fréchet distance on this classifier's penultimate features, not Inception FID. Standard Inception FID is
``inception_fid`` (needs the ``fid`` extra and a local copy of the Inception weights; nothing is downloaded).
"""

from guidegap.evaluation.classifier import FashionMNISTClassifier, load_classifier
from guidegap.evaluation.fidelity import fidelity_curve, guidance_fidelity
from guidegap.evaluation.frechet import classifier_features, fd, frechet_distance
from guidegap.evaluation.inception import inception_features, inception_fid  # pytorch_fid imported only when called
from guidegap.evaluation.outcome import GuidanceOutcome, guides_like

__all__ = ["FashionMNISTClassifier", "load_classifier", "frechet_distance", "fd", "classifier_features",
           "guidance_fidelity", "fidelity_curve", "inception_fid", "inception_features", "GuidanceOutcome", "guides_like"]
