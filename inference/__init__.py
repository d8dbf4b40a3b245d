"""Inference: from a model to an approximate posterior.

- :func:`approximate` and :data:`METHODS`: every method by name (``map``, ``mean_field``,
  ``dropout``, ``laplace``, ``nuts``, ``swag``, ``ensemble``, ``deep_ensemble``, ``multiswag``),
  each returning a :class:`Posterior`;
- guides fitted by SVI: :class:`MeanFieldGuide`, :class:`DropoutGuide`, :class:`MAPGuide`,
  with :func:`fit` (checkpoints: :func:`load_checkpoint`) and the structured :class:`BNNElbo`;
- Laplace approximations around the MAP (:func:`fit_laplace`, one class per weight subset and
  Hessian structure);
- :func:`nuts` for models small enough to sample exactly;
- stochastic-gradient MCMC over network weights, with chains: :func:`sgld` (and pSGLD),
  :func:`sghmc` and the cyclical :func:`csgmcmc` (:mod:`bayesdl.inference.sgmcmc`);
- SWAG (:class:`SWAGGuide`, :func:`fit_swag`) and ensembles of any method (:class:`Ensemble`,
  :func:`fit_ensemble`: deep ensembles, MultiSWAG, mixtures of Laplace approximations);
- :class:`Posterior`, the one object every method returns, and :func:`to_inference_data`,
  which turns any of them into ArviZ data;
- :func:`fit_confidnet`: ConfidNet (Corbiere et al. 2019), a head on a posterior's features that
  predicts whether its classifier is right (:class:`ConfidNet`; the loop: :func:`train_confidnet`);
- :mod:`bayesdl.inference.attacks`: adversarial examples against any posterior predictive
  (:func:`fgsm`, :func:`pgd`; :func:`random_perturbation` as their control);
- :mod:`bayesdl.inference.distributed`: ``fit`` data-parallel and ``predict`` sharded over several
  devices and nodes through Lightning Fabric (the optional ``distributed`` extra).
"""

if __name__ != "bayesdl.inference":  # e.g. `import inference` with the repository root on sys.path
    raise ImportError(
        f"this folder is the package bayesdl.inference: import it as `bayesdl.inference`, not `{__name__}` "
        "(one file must never be importable under two names)"
    )

from bayesdl.predictions import ClassPrediction, Prediction, RegressionPrediction

from . import attacks, distributed
from .attacks import fgsm, pgd, random_perturbation
from .checkpoints import load_checkpoint
from .confidnet import ConfidNet, fit_confidnet, train_confidnet
from .elbo import BNNElbo
from .ensemble import Ensemble, reinitialised
from .guides import BNNGuide, DropoutGuide, MAPGuide, MeanFieldGuide
from .history import TrainingHistory
from .idata import to_inference_data
from .influence import Influence, influence
from .laplace import (
    LAPLACE_CLASSES,
    BaseLaplace,
    CurvatureWarning,
    DiagLaplace,
    DiagLastLayerLaplace,
    EKFACLaplace,
    FullLaplace,
    FullLastLayerLaplace,
    KronLaplace,
    KronLastLayerLaplace,
    LastLayerLaplace,
    fit_laplace,
    laplace,
)
from .mcmc import MCMCSamples, nuts
from .methods import METHODS, MethodInfo, approximate, fit_ensemble, register_method
from .posterior import Approximation, Draws, Posterior, PyroGuideApproximation
from .sgmcmc import SGMCMCSamples, csgmcmc, sampling_run, sghmc, sgld
from .svi import FitConfig, NonFiniteLossError, exponential_decay, fit
from .swag import SWAGGuide, fit_swag

__all__ = [
    "distributed",
    "attacks",
    "fgsm",
    "pgd",
    "random_perturbation",
    "approximate",
    "register_method",
    "METHODS",
    "MethodInfo",
    "Posterior",
    "Approximation",
    "Draws",
    "Prediction",
    "ClassPrediction",
    "RegressionPrediction",
    "PyroGuideApproximation",
    "to_inference_data",
    "BNNGuide",
    "MeanFieldGuide",
    "DropoutGuide",
    "MAPGuide",
    "BNNElbo",
    "ConfidNet",
    "fit_confidnet",
    "train_confidnet",
    "fit",
    "FitConfig",
    "exponential_decay",
    "load_checkpoint",
    "TrainingHistory",
    "NonFiniteLossError",
    "laplace",
    "fit_laplace",
    "LAPLACE_CLASSES",
    "BaseLaplace",
    "FullLaplace",
    "DiagLaplace",
    "LastLayerLaplace",
    "KronLaplace",
    "EKFACLaplace",
    "Influence",
    "influence",
    "KronLastLayerLaplace",
    "DiagLastLayerLaplace",
    "FullLastLayerLaplace",
    "CurvatureWarning",
    "nuts",
    "MCMCSamples",
    "SGMCMCSamples",
    "csgmcmc",
    "sampling_run",
    "sghmc",
    "sgld",
    "SWAGGuide",
    "fit_swag",
    "Ensemble",
    "fit_ensemble",
    "reinitialised",
]
