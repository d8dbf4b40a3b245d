"""Likelihoods: how a network output explains a target.

Each likelihood checks targets at the boundary, gives the Pyro distribution of the
observation site, a fast ``log_prob`` for training, turns outputs into a typed
:class:`Prediction` -- :class:`ClassPrediction` (probabilities) for classification,
:class:`RegressionPrediction` (mean and noise scale) for regression -- and draws replicated
targets for posterior-predictive checks.

The predictions themselves live in :mod:`bayesdl.predictions` (the evaluation layer reads them
without importing ``models``); they are imported here, so ``bayesdl.models.ClassPrediction``
and ``bayesdl.models.likelihoods.ClassPrediction`` are the same classes.
"""

from __future__ import annotations

import math

import pyro.distributions as dist
import torch
import torch.nn as nn
import torch.nn.functional as F

from bayesdl.checks import as_tensor, check_finite, check_labels, check_positive
from bayesdl.predictions import ClassPrediction, Prediction, RegressionPrediction

__all__ = ["Likelihood", "Categorical", "Bernoulli", "Gaussian", "HeteroscedasticGaussian", "make_likelihood",
           "Prediction", "ClassPrediction", "RegressionPrediction"]


class Likelihood(nn.Module):
    """Base class. ``task`` is ``"classification"`` or ``"regression"``.

    Every likelihood answers the same calls; for instance the categorical one::

        >>> import torch
        >>> from bayesdl.models import Categorical, Likelihood
        >>> likelihood = Categorical()
        >>> isinstance(likelihood, Likelihood), likelihood.task
        (True, 'classification')
        >>> logits = torch.tensor([[2.0, 0.0], [0.0, 2.0]])
        >>> y = likelihood.check_targets([0, 1], logits)     # converted and checked against the outputs
        >>> y
        tensor([0, 1])
        >>> [round(v, 4) for v in likelihood.log_prob(logits, y).tolist()]
        [-0.1269, -0.1269]
        >>> likelihood.predict(logits[None]).probs.shape      # outputs [S, N, C] -> a ClassPrediction
        torch.Size([1, 2, 2])
    """

    task = "classification"

    def check_targets(self, y, output: torch.Tensor) -> torch.Tensor:
        """Return ``y`` converted and validated against the network ``output``."""
        raise NotImplementedError

    def distribution(self, output: torch.Tensor) -> dist.Distribution:
        """Distribution of the targets given the outputs, batch shape ``[N]``."""
        raise NotImplementedError

    def observed(self, y: torch.Tensor | None) -> torch.Tensor | None:
        """Targets in the form :meth:`distribution` observes them (e.g. float 0/1)."""
        return y

    def log_prob(self, output: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """``ln p(y_n | output_n)``, shape ``[N]``."""
        return self.distribution(output).log_prob(y)

    def predict(self, output: torch.Tensor) -> Prediction:
        """The prediction of outputs ``[S, N, ...]``: :class:`ClassPrediction` or
        :class:`RegressionPrediction`."""
        raise NotImplementedError

    def sample_targets(self, output: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        """Replicated targets ``y_rep ~ p(y | output)`` ``[N]`` (float, on the CPU), drawn with the
        CPU ``generator`` -- the posterior-predictive group of ArviZ data."""
        raise NotImplementedError

    def output_hessian(self, output: torch.Tensor) -> torch.Tensor:
        """Hessian of ``-ln p(y | output)`` with respect to the output, ``[N, K, K]``.

        It does not depend on ``y`` for these likelihoods (canonical links), which is what
        makes the generalized Gauss-Newton ``J^T Lambda J`` positive semi-definite.
        """
        raise NotImplementedError

    def noise_mismatch(self, mean_log_prob: float) -> str | None:
        """What is wrong with the noise model, judged from the mean log-likelihood per training
        example of the last epoch (``fit`` warns with it), or None: by default nothing to judge."""
        return None


def _check_labels(y, num_classes: int, n: int) -> torch.Tensor:
    return check_labels(y, num_classes, n, name="y (labels)", counted="the inputs x")


class _Classification(Likelihood):
    """Likelihoods whose prediction is class probabilities."""

    def probabilities(self, output: torch.Tensor) -> torch.Tensor:
        """Class probabilities ``[..., N, C]`` of outputs ``[..., N, ...]``."""
        raise NotImplementedError

    def predict(self, output):
        return ClassPrediction(self.probabilities(output))

    def sample_targets(self, output, generator):
        return torch.multinomial(self.probabilities(output).cpu(), 1, generator=generator)[:, 0].float()


class Categorical(_Classification):
    """``y ~ Categorical(softmax(output))``; ``output`` are logits ``[N, C]``.

    Example::

        >>> import torch
        >>> from bayesdl.models import Categorical
        >>> logits = torch.tensor([[2.0, 0.0], [0.0, 2.0]])
        >>> Categorical().probabilities(logits).round(decimals=4)
        tensor([[0.8808, 0.1192],
                [0.1192, 0.8808]])
        >>> [round(v, 4) for v in Categorical().log_prob(logits, torch.tensor([0, 0])).tolist()]
        [-0.1269, -2.1269]
    """

    def check_targets(self, y, output):
        if output.dim() != 2:
            raise ValueError(f"a categorical likelihood needs logits [N, C], got {tuple(output.shape)}")
        return _check_labels(y, output.shape[1], output.shape[0])

    def distribution(self, output):
        return dist.Categorical(logits=output)

    def log_prob(self, output, y):
        return -F.cross_entropy(output, y, reduction="none")

    def probabilities(self, output):
        return torch.softmax(output, dim=-1)

    def output_hessian(self, output):
        p = torch.softmax(output, dim=-1)
        return torch.diag_embed(p) - p[..., :, None] * p[..., None, :]


class Bernoulli(_Classification):
    """``y ~ Bernoulli(sigmoid(output))``; ``output`` is one logit per example, ``[N]`` or ``[N, 1]``.

    Predictions are returned as two-class probabilities ``[..., N, 2]`` = ``(1 - p, p)``,
    so binary models share the evaluation layer of multi-class ones.

    Example::

        >>> import torch
        >>> from bayesdl.models import Bernoulli
        >>> logits = torch.tensor([[0.0], [2.0]])             # one logit per example, [N, 1]
        >>> Bernoulli().probabilities(logits).round(decimals=4)   # as two classes (1 - p, p)
        tensor([[0.5000, 0.5000],
                [0.1192, 0.8808]])
        >>> [round(v, 4) for v in Bernoulli().log_prob(logits, torch.tensor([1, 1])).tolist()]
        [-0.6931, -0.1269]
    """

    @staticmethod
    def _logit(output):
        return output.squeeze(-1) if output.dim() >= 2 and output.shape[-1] == 1 else output

    def check_targets(self, y, output):
        logit = self._logit(output)
        if logit.dim() != 1:
            raise ValueError(f"a Bernoulli likelihood needs one logit per example, got {tuple(output.shape)}")
        return _check_labels(y, 2, logit.shape[0])

    def distribution(self, output):
        return dist.Bernoulli(logits=self._logit(output))

    def observed(self, y):
        return None if y is None else y.float()

    def log_prob(self, output, y):
        return -F.binary_cross_entropy_with_logits(self._logit(output), y.to(output.dtype), reduction="none")

    def probabilities(self, output):
        p = torch.sigmoid(self._logit(output))
        return torch.stack([1 - p, p], dim=-1)

    def output_hessian(self, output):
        p = torch.sigmoid(self._logit(output))
        return (p * (1 - p))[..., None, None]


class Gaussian(Likelihood):
    """``y ~ N(output, scale^2)``; ``output`` is the mean, ``[N]`` or ``[N, 1]``.

    ``scale=None`` learns the noise scale (a point estimate, type-II maximum likelihood,
    initialised at ``init_scale``); a number fixes it. The scale is in the units of the targets
    ``y``: a fixed ``scale=0.1`` on targets whose residuals are of order 1 makes every predictive
    interval far too narrow (measured on the README's regression example: its 95% intervals
    covered 52% of the targets) -- standardise ``y``, or learn the scale (``likelihood="gaussian"``),
    or check the coverage (:func:`bayesdl.evaluation.regression_metrics`).

    Example::

        >>> import torch
        >>> from bayesdl.models import Gaussian
        >>> fixed, learned = Gaussian(scale=0.5), Gaussian()   # a fixed scale, or one learned from 1.0
        >>> fixed.learned, learned.learned, float(fixed.scale)
        (False, True, 0.5)
        >>> [round(v, 4) for v in fixed.log_prob(torch.tensor([0.0, 1.0]), torch.tensor([0.0, 0.0])).tolist()]
        [-0.2258, -2.2258]
        >>> prediction = fixed.predict(torch.zeros(3, 2))      # means [S, N] -> a RegressionPrediction
        >>> prediction.noise
        tensor([[0.5000, 0.5000],
                [0.5000, 0.5000],
                [0.5000, 0.5000]])
    """

    task = "regression"

    def __init__(self, scale: float | None = None, init_scale: float = 1.0):
        super().__init__()
        if scale is None:
            init = check_positive(init_scale, "init_scale")
            self.log_scale = nn.Parameter(torch.tensor(math.log(init)))
        else:
            self.register_buffer("log_scale", torch.tensor(math.log(check_positive(scale, "scale"))))

    @property
    def learned(self) -> bool:
        return isinstance(self.log_scale, nn.Parameter)

    @property
    def scale(self) -> torch.Tensor:
        return self.log_scale.exp()

    @staticmethod
    def _mean(output):
        return output.squeeze(-1) if output.dim() >= 2 and output.shape[-1] == 1 else output

    def check_targets(self, y, output):
        mean = self._mean(output)
        y = as_tensor(y, "y")
        y = y.squeeze(-1) if y.dim() == 2 and y.shape[1] == 1 else y
        if y.shape != mean.shape:
            raise ValueError(
                f"y must have shape {tuple(mean.shape)} to match the outputs, got {tuple(y.shape)}"
            )
        return check_finite(y.to(mean.dtype), "y")

    def distribution(self, output):
        return dist.Normal(self._mean(output), self.scale.to(output.dtype))

    def log_prob(self, output, y):
        mean = self._mean(output)
        return -0.5 * ((y - mean) / self.scale) ** 2 - self.log_scale - 0.5 * math.log(2 * math.pi)

    def predict(self, output):
        mean = self._mean(output)
        return RegressionPrediction(mean, self.scale.detach().to(mean.dtype).expand_as(mean))

    def sample_targets(self, output, generator):
        prediction = self.predict(output)
        noise = torch.randn(prediction.mean.shape, generator=generator)
        return prediction.mean.cpu() + prediction.noise.cpu() * noise

    def output_hessian(self, output):
        mean = self._mean(output)
        precision = (1.0 / self.scale.detach() ** 2).to(mean.dtype)
        return precision.expand(*mean.shape, 1, 1)

    #: how far (a factor) the noise scale may be from the training residuals' RMS before ``fit`` warns
    MISMATCH_FACTOR = 2.0

    def residual_rms(self, mean_log_prob: float) -> float:
        """The RMS of the training residuals ``r = sqrt(E (y - f)^2)`` that a mean log-likelihood
        per example ``l`` implies at the current scale ``s``: ``l = -(r / s)^2 / 2 - ln s - ln(2 pi) / 2``,
        so ``r = s sqrt(-2 (l + ln s + ln(2 pi) / 2))`` -- no pass over the data needed. For a
        stochastic network (MC dropout, VI) it is the RMS under the training draws, ``E_q (y - f)^2``,
        the residual that maximises the expected log-likelihood over ``s`` (``s* = r``)."""
        s = float(self.scale.detach())
        return s * math.sqrt(max(-2.0 * (mean_log_prob + math.log(s) + 0.5 * math.log(2 * math.pi)), 0.0))

    def noise_mismatch(self, mean_log_prob: float) -> str | None:
        """A message when the noise scale is more than :attr:`MISMATCH_FACTOR` from the training
        residuals' RMS (:meth:`residual_rms`), where the likelihood is maximal: the predictive
        intervals are then too narrow (scale too small) or too wide."""
        s, r = float(self.scale.detach()), self.residual_rms(mean_log_prob)
        if r <= 0 or 1 / self.MISMATCH_FACTOR <= s / r <= self.MISMATCH_FACTOR:
            return None
        effect = "too narrow" if s < r else "too wide"
        if self.learned:
            fix = ("it is learned, but has not got there yet (it moves by about lr per step, in log space): "
                   "train longer, or with a larger lr")
        else:
            fix = ("it is fixed: set Gaussian(scale=...) near the residuals' RMS, standardise y, or learn it "
                   "(likelihood='gaussian')")
        return (f"the Gaussian noise scale is {s:.3g} (in the units of y) but the training residuals' RMS is "
                f"{r:.3g}, so the predictive intervals will be {effect}; {fix}")


class HeteroscedasticGaussian(Likelihood):
    """``y ~ N(output[:, 0], softplus(output[:, 1])^2 + min_scale^2)``: the network predicts its
    own noise scale per input (Nix & Weigend 1994; Kendall & Gal 2017). ``output`` ``[N, 2]``.

    Its predictions carry a noise scale per sample and per input, so the aleatoric part of
    :class:`RegressionPrediction` varies over the inputs. ``min_scale`` keeps the density bounded.

    Example::

        >>> import torch
        >>> from bayesdl.models import HeteroscedasticGaussian
        >>> outputs = torch.tensor([[[1.0, 0.0], [2.0, 3.0]]])  # [S=1, N=2, (mean, raw scale)]
        >>> prediction = HeteroscedasticGaussian().predict(outputs)
        >>> prediction.mean, prediction.noise.round(decimals=4)  # noise: softplus of the raw scale
        (tensor([[1., 2.]]), tensor([[0.6931, 3.0486]]))
    """

    task = "regression"

    def __init__(self, min_scale: float = 1e-3):
        super().__init__()
        self.min_scale = check_positive(min_scale, "min_scale")

    def _split(self, output: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        scale = torch.sqrt(F.softplus(output[..., 1]) ** 2 + self.min_scale**2)
        return output[..., 0], scale

    def check_targets(self, y, output):
        if output.dim() != 2 or output.shape[1] != 2:
            raise ValueError("a heteroscedastic Gaussian needs two outputs per example [N, 2] (mean, noise "
                             f"scale): build the network with out_features=2, got {tuple(output.shape)}")
        y = as_tensor(y, "y")
        y = y.squeeze(-1) if y.dim() == 2 and y.shape[1] == 1 else y
        if y.shape != output.shape[:1]:
            raise ValueError(f"y must have shape {tuple(output.shape[:1])} to match the outputs, "
                             f"got {tuple(y.shape)}")
        return check_finite(y.to(output.dtype), "y")

    def distribution(self, output):
        return dist.Normal(*self._split(output))

    def log_prob(self, output, y):
        mean, scale = self._split(output)
        return -0.5 * ((y - mean) / scale) ** 2 - torch.log(scale) - 0.5 * math.log(2 * math.pi)

    def predict(self, output):
        return RegressionPrediction(*self._split(output))

    def sample_targets(self, output, generator):
        mean, scale = (t.cpu() for t in self._split(output))
        return mean + scale * torch.randn(mean.shape, generator=generator)

    def output_hessian(self, output):
        raise NotImplementedError(
            "the Hessian of a heteroscedastic Gaussian depends on the target, so its GGN is not "
            "defined by the output alone; use a homoscedastic Gaussian for Laplace"
        )


def make_likelihood(likelihood) -> Likelihood:
    """A :class:`Likelihood` from an instance or a name: categorical, bernoulli, gaussian,
    heteroscedastic.

    Example::

        >>> from bayesdl.models import Gaussian, make_likelihood
        >>> [type(make_likelihood(name)).__name__ for name in ("categorical", "bernoulli", "gaussian")]
        ['Categorical', 'Bernoulli', 'Gaussian']
        >>> fixed = Gaussian(scale=0.1)
        >>> make_likelihood(fixed) is fixed                     # an instance passes through
        True
    """
    if isinstance(likelihood, Likelihood):
        return likelihood
    names = {"categorical": Categorical, "bernoulli": Bernoulli, "gaussian": Gaussian,
             "heteroscedastic": HeteroscedasticGaussian}
    if isinstance(likelihood, str) and likelihood.lower() in names:
        return names[likelihood.lower()]()
    raise ValueError(f"likelihood must be one of {sorted(names)} or a Likelihood, got {likelihood!r}")
