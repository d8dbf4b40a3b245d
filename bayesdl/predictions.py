"""Typed posterior-predictive samples: what a model predicts at some inputs, samples first.

- :class:`Prediction`, the base: ``task`` and ``num_samples``;
- :class:`ClassPrediction`: class probabilities ``probs`` ``[S, N, C]`` for classification;
- :class:`RegressionPrediction`: means and noise scales ``[S, N]`` for regression, with the
  predictive moments, the aleatoric/epistemic split, log-likelihood and CDF of targets.

They live in the core package because every step of the pipeline uses them: the likelihoods of
:mod:`bayesdl.models` make them (``Likelihood.predict``), ``Posterior.predict`` of
:mod:`bayesdl.inference` returns them, and the metrics of :mod:`bayesdl.evaluation` read them
-- and evaluation must never import ``models``. ``bayesdl.models``, ``bayesdl.inference`` and
``bayesdl.evaluation`` re-export these same classes.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from bayesdl.checks import as_tensor, check_finite

__all__ = ["Prediction", "ClassPrediction", "RegressionPrediction"]


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
    """Posterior-predictive samples for regression: ``y ~ N(mean[s, n], noise[s, n]^2)``, ``[S, N]``.

    The predictive distribution is the mixture ``p(y | x, D) ~= 1/S sum_s N(y | mean_s, noise_s^2)``.
    Its variance splits by the law of total variance (Kendall & Gal 2017, eq. 9)::

        variance  =  1/S sum_s noise_s^2   +   1/S sum_s (mean_s - predictive_mean)^2
                  =  aleatoric (expected noise variance) + epistemic (variance of the means)

    With homoscedastic noise (``Gaussian``) ``noise`` is the same at every sample and input
    (a fixed precision ``tau``: ``noise = tau^-1/2``, as in Gal & Ghahramani 2016); with
    heteroscedastic noise (``HeteroscedasticGaussian``) the network predicts it per input and
    per sample. Example::

        >>> p = RegressionPrediction(torch.tensor([[0.0], [2.0]]), torch.tensor([[1.0], [1.0]]))
        >>> p.predictive_mean, p.aleatoric, p.epistemic, p.variance
        (tensor([1.]), tensor([1.]), tensor([1.]), tensor([2.]))
    """

    mean: torch.Tensor
    noise: torch.Tensor
    task = "regression"

    @property
    def num_samples(self) -> int:
        return self.mean.shape[0]

    @property
    def predictive_mean(self) -> torch.Tensor:
        """``1/S sum_s mean_s``, ``[N]``: the point prediction (the MC average)."""
        return self.mean.mean(0)

    @property
    def aleatoric(self) -> torch.Tensor:
        """Expected noise variance ``1/S sum_s noise_s^2``, ``[N]``."""
        return (self.noise**2).mean(0)

    @property
    def epistemic(self) -> torch.Tensor:
        """Variance of the sampled means ``1/S sum_s (mean_s - predictive_mean)^2``, ``[N]``."""
        return self.mean.var(0, unbiased=False)

    @property
    def variance(self) -> torch.Tensor:
        """Predictive variance ``aleatoric + epistemic``, ``[N]``."""
        return self.aleatoric + self.epistemic

    def moments(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Predictive mean and variance ``[N]`` of the mixture over samples."""
        return self.predictive_mean, self.variance

    def check_targets(self, y) -> torch.Tensor:
        """``y`` as a finite tensor ``[N]`` matching the predictions (a ``ValueError`` otherwise)."""
        y = as_tensor(y, "y").to(self.mean.dtype).to(self.mean.device)
        y = y.squeeze(-1) if y.dim() == 2 and y.shape[1] == 1 else y
        if y.shape != self.mean.shape[1:]:
            raise ValueError(f"y must have shape {tuple(self.mean.shape[1:])} (one target per input), "
                             f"got {tuple(y.shape)}")
        return check_finite(y, "y")

    def log_likelihood(self, y) -> torch.Tensor:
        """Predictive log density of targets ``y`` ``[N]``, per example ``[N]`` (nats)::

            ln p(y_n | x_n, D) ~= logsumexp_s ln N(y_n | mean_sn, noise_sn^2) - ln S

        -- the test log-likelihood of Gal & Ghahramani 2016 (their code: ``logsumexp(-tau/2
        (y - y_s)^2) - ln T - 1/2 ln 2 pi + 1/2 ln tau``); average it over the test set.
        """
        y = self.check_targets(y)
        log_density = (-0.5 * ((y - self.mean) / self.noise) ** 2 - torch.log(self.noise)
                       - 0.5 * math.log(2 * math.pi))
        return torch.logsumexp(log_density, dim=0) - math.log(self.num_samples)

    def cdf(self, y) -> torch.Tensor:
        """The predictive CDF at the targets, ``F(y_n) = 1/S sum_s Phi((y_n - mean_sn) / noise_sn)``,
        ``[N]`` (the probability integral transform). ``y_n`` lies in the central ``level``
        interval of the predictive exactly when ``|F(y_n) - 1/2| <= level / 2``."""
        y = self.check_targets(y)
        return torch.special.ndtr((y - self.mean) / self.noise).mean(0)

    def affine(self, shift, scale) -> RegressionPrediction:
        """The prediction of ``shift + scale * y`` (e.g. undoing a target normalisation):
        means ``shift + scale * mean``, noise ``|scale| * noise``. ``shift``, ``scale``: numbers
        or tensors broadcasting against ``[N]``."""
        scale = torch.as_tensor(scale, dtype=self.mean.dtype, device=self.mean.device)
        if not bool(torch.all(scale != 0)):
            raise ValueError("scale must be non-zero")
        return RegressionPrediction(shift + scale * self.mean, scale.abs() * self.noise)

    def cpu(self) -> RegressionPrediction:
        return RegressionPrediction(self.mean.cpu(), self.noise.cpu())
