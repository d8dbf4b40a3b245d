"""Inference: from a model to an approximate posterior.

- guides fitted by SVI: :class:`MeanFieldGuide`, :class:`DropoutGuide`, :class:`MAPGuide`,
  with :func:`fit` and the structured :class:`BNNElbo`;
- :func:`nuts` for models small enough to sample exactly;
- :class:`Posterior`, the one object every method returns.
"""

from .elbo import BNNElbo
from .guides import BNNGuide, DropoutGuide, MAPGuide, MeanFieldGuide
from .mcmc import MCMCSamples, nuts
from .posterior import Posterior, PyroGuideApproximation, RegressionPrediction
from .svi import NonFiniteLossError, TrainingHistory, fit, load_checkpoint

__all__ = [
    "BNNGuide",
    "MeanFieldGuide",
    "DropoutGuide",
    "MAPGuide",
    "BNNElbo",
    "fit",
    "load_checkpoint",
    "TrainingHistory",
    "NonFiniteLossError",
    "nuts",
    "MCMCSamples",
    "Posterior",
    "PyroGuideApproximation",
    "RegressionPrediction",
]
