"""Likelihoods: how a network output explains a target.

Each likelihood checks targets at the boundary, gives the Pyro distribution of the
observation site, a fast ``log_prob`` for training, turns outputs into a typed
:class:`Prediction` -- :class:`ClassPrediction` (probabilities) for classification,
:class:`RegressionPrediction` (mean and noise scale) for regression -- and draws replicated
targets for posterior-predictive checks.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import pyro.distributions as dist
import torch
import torch.nn as nn
import torch.nn.functional as F

from bayesdl.checks import as_tensor, check_finite, check_labels, check_positive

__all__ = ["Likelihood", "Categorical", "Bernoulli", "Gaussian", "make_likelihood", "Prediction",
           "ClassPrediction", "RegressionPrediction"]


class Prediction:
    """Posterior-predictive samples at some inputs, samples first. ``task`` says which kind."""

    task: str

    @property
    def num_samples(self) -> int:
        raise NotImplementedError

    def cpu(self) -> Prediction:
        """The same prediction with its tensors on the CPU."""
        raise NotImplementedError


@dataclass(frozen=True)
class ClassPrediction(Prediction):
    """Class probabilities of every posterior sample, ``probs`` ``[S, N, C]``.

    ``predictive`` is their mean over samples ``[N, C]``, the posterior-predictive
    distribution ``p(y | x, D) ~= 1/S sum_s p(y | x, theta_s)``.
    """

    probs: torch.Tensor
    task = "classification"

    @property
    def num_samples(self) -> int:
        return self.probs.shape[0]

    @property
    def predictive(self) -> torch.Tensor:
        return self.probs.mean(0)

    def cpu(self) -> ClassPrediction:
        return ClassPrediction(self.probs.cpu())


@dataclass(frozen=True)
class RegressionPrediction(Prediction):
    """Posterior-predictive samples for regression: ``y ~ N(mean[s, n], noise[s, n]^2)``, ``[S, N]``."""

    mean: torch.Tensor
    noise: torch.Tensor
    task = "regression"

    @property
    def num_samples(self) -> int:
        return self.mean.shape[0]

    def moments(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Predictive mean and variance ``[N]`` of the mixture over samples."""
        mean = self.mean.mean(0)
        variance = self.mean.var(0, unbiased=False) + (self.noise**2).mean(0)
        return mean, variance

    def cpu(self) -> RegressionPrediction:
        return RegressionPrediction(self.mean.cpu(), self.noise.cpu())


class Likelihood(nn.Module):
    """Base class. ``task`` is ``"classification"`` or ``"regression"``."""

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
    """``y ~ Categorical(softmax(output))``; ``output`` are logits ``[N, C]``."""

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
    initialised at ``init_scale``); a number fixes it.
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


def make_likelihood(likelihood) -> Likelihood:
    """A :class:`Likelihood` from an instance or a name: categorical, bernoulli, gaussian."""
    if isinstance(likelihood, Likelihood):
        return likelihood
    names = {"categorical": Categorical, "bernoulli": Bernoulli, "gaussian": Gaussian}
    if isinstance(likelihood, str) and likelihood.lower() in names:
        return names[likelihood.lower()]()
    raise ValueError(f"likelihood must be one of {sorted(names)} or a Likelihood, got {likelihood!r}")
