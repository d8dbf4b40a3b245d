"""Models: what we believe before seeing data.

- bases and conjugate Bayesian linear regression (closed form, evidence, a Pyro model);
- plain torch networks (MLP, LeNet, the CNNs of active learning and of ConfidNet, the ConfidNet
  head) and a fast dropout layer;
- priors, likelihoods, and :class:`BNN`, which lifts any network into a Pyro model.
"""

if __name__ != "bayesdl.models":  # e.g. `import models` with the repository root on sys.path
    raise ImportError(
        f"this folder is the package bayesdl.models: import it as `bayesdl.models`, not `{__name__}` "
        "(one file must never be importable under two names)"
    )

from .bases import GaussianBasis, PolynomialBasis
from .bnn import BNN, Site, bnn_of
from .likelihoods import (
    Bernoulli,
    Categorical,
    ClassPrediction,
    Gaussian,
    HeteroscedasticGaussian,
    Likelihood,
    Prediction,
    RegressionPrediction,
    make_likelihood,
)
from .linear_regression import BayesianLinearRegression, NormalInverseGammaRegression
from .masked_likelihood import MaskedGaussian
from .networks import DBALCNN, MLP, ConfidNetHead, Dropout, LeNet, SmallConvNet, dropout_modules
from .priors import NormalPrior
from .recurrent import RecurrentRegressor

__all__ = [
    "PolynomialBasis",
    "GaussianBasis",
    "BayesianLinearRegression",
    "NormalInverseGammaRegression",
    "MaskedGaussian",
    "MLP",
    "LeNet",
    "DBALCNN",
    "SmallConvNet",
    "ConfidNetHead",
    "RecurrentRegressor",
    "Dropout",
    "dropout_modules",
    "NormalPrior",
    "Likelihood",
    "Categorical",
    "Bernoulli",
    "Gaussian",
    "HeteroscedasticGaussian",
    "make_likelihood",
    "Prediction",
    "ClassPrediction",
    "RegressionPrediction",
    "BNN",
    "Site",
    "bnn_of",
]
