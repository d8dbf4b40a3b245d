"""Inference: from a model to an approximate posterior.

- guides fitted by SVI: :class:`MeanFieldGuide`, :class:`DropoutGuide`, :class:`MAPGuide`,
  with :func:`fit` and the structured :class:`BNNElbo`;
- Laplace approximations around the MAP (:func:`fit_laplace`, full / diagonal / last-layer
  Kronecker-factored);
- :func:`nuts` for models small enough to sample exactly;
- :class:`Posterior`, the one object every method returns.
"""

if __name__ != "bayesdl.inference":  # e.g. `import inference` with the repository root on sys.path
    raise ImportError(
        f"this folder is the package bayesdl.inference: import it as `bayesdl.inference`, not `{__name__}` "
        "(one file must never be importable under two names)"
    )

from .elbo import BNNElbo
from .guides import BNNGuide, DropoutGuide, MAPGuide, MeanFieldGuide
from .laplace import (
    BaseLaplace,
    CurvatureWarning,
    DiagLaplace,
    FullLaplace,
    LastLayerLaplace,
    fit_laplace,
    laplace,
)
from .mcmc import MCMCSamples, nuts
from .posterior import Posterior, PyroGuideApproximation, RegressionPrediction
from .svi import NonFiniteLossError, TrainingHistory, exponential_decay, fit, load_checkpoint

__all__ = [
    "BNNGuide",
    "MeanFieldGuide",
    "DropoutGuide",
    "MAPGuide",
    "BNNElbo",
    "fit",
    "exponential_decay",
    "load_checkpoint",
    "TrainingHistory",
    "NonFiniteLossError",
    "laplace",
    "fit_laplace",
    "BaseLaplace",
    "FullLaplace",
    "DiagLaplace",
    "LastLayerLaplace",
    "CurvatureWarning",
    "nuts",
    "MCMCSamples",
    "Posterior",
    "PyroGuideApproximation",
    "RegressionPrediction",
]
