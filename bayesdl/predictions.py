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
import numbers
from dataclasses import dataclass

import torch

from bayesdl.checks import as_tensor, check_finite

__all__ = ["Prediction", "ClassPrediction", "RegressionPrediction"]


def _sum_tolerance(dtype: torch.dtype) -> float:
    """How far from 1 a probability vector of ``dtype`` may sum (rounding of a softmax)."""
    return max(1e-4, 10 * torch.finfo(dtype).eps)


def check_probs(probs, name: str = "probs", *, ndim: int) -> torch.Tensor:
    """Return ``probs`` as a floating tensor with ``ndim`` dims, probabilities along the last.

    Raises ``TypeError`` for what is not an array of numbers, ``ValueError`` for a wrong rank,
    an empty set, non-finite or negative entries, or rows that do not sum to 1 (within the
    rounding of the dtype). A floating tensor comes back as the same object. Shared by
    :class:`ClassPrediction` and the metrics of :mod:`bayesdl.evaluation` (which re-exports it
    from ``bayesdl.evaluation._inputs``).
    """
    probs = as_tensor(probs, name)
    if not probs.is_floating_point():
        probs = probs.to(torch.get_default_dtype())
    layout = {2: "[N, C]", 3: "[S, N, C] (samples first)"}[ndim]
    if probs.dim() != ndim:
        raise ValueError(f"{name} must have shape {layout}, got shape {tuple(probs.shape)}")
    if probs.shape[-1] < 2:
        raise ValueError(f"{name} needs at least 2 classes along its last axis, got {probs.shape[-1]}")
    if probs.numel() == 0:
        raise ValueError(f"{name} is empty (shape {tuple(probs.shape)}); pass at least one example")
    check_finite(probs, name)
    if bool((probs < 0).any()):
        raise ValueError(f"{name} has negative entries; pass probabilities (a softmax), not logits")
    sums = probs.sum(-1)
    worst = float((sums - 1).abs().max())
    if worst > _sum_tolerance(probs.dtype):
        raise ValueError(
            f"{name} must sum to 1 along the class axis (last); the worst row is off by {worst:.3g}. "
            "Pass probabilities (apply softmax to logits)"
        )
    return probs


def _as_float_tensor(value, name: str) -> torch.Tensor:
    """``value`` (tensor, numpy array, nested numbers) as a real floating tensor; integers and
    booleans become the default float dtype, a floating tensor comes back as the same object."""
    tensor = as_tensor(value, name)
    if tensor.is_complex():
        raise TypeError(f"{name} must be real, got a tensor of dtype {tensor.dtype}")
    if not tensor.is_floating_point():
        tensor = tensor.to(torch.get_default_dtype())
    return tensor


def _mixture_cdf(y: torch.Tensor, mean: torch.Tensor, noise: torch.Tensor, dim: int) -> torch.Tensor:
    """The CDF of the mixture ``1/S sum_s N(mean_s, noise_s^2)`` at ``y``, the samples along ``dim``
    of ``mean``/``noise`` (``y`` broadcasting against them): ``mean_s Phi((y - mean_s) / noise_s)``.
    The one definition behind :meth:`RegressionPrediction.cdf` (hence the coverage of
    :func:`bayesdl.evaluation.interval_coverage`) and :meth:`RegressionPrediction.quantile`."""
    return torch.special.ndtr((y - mean) / noise).mean(dim)


def _check_levels(levels) -> torch.Tensor:
    """``levels`` (a number or a 1-D sequence of numbers in ``(0, 1)``) as a float64 tensor."""
    if isinstance(levels, bool):
        raise TypeError("levels must be a number or a sequence of numbers in (0, 1), got bool")
    tensor = as_tensor(levels, "levels")
    if tensor.dtype == torch.bool or tensor.is_complex():
        raise TypeError(f"levels must be real numbers in (0, 1), got dtype {tensor.dtype}")
    tensor = tensor.double()
    if tensor.dim() > 1:
        raise ValueError(f"levels must be a number or a 1-D sequence, got shape {tuple(tensor.shape)}")
    if tensor.numel() == 0:
        raise ValueError("levels is empty; pass at least one level in (0, 1)")
    if not bool(((tensor > 0) & (tensor < 1)).all()):  # NaN fails too
        raise ValueError(f"levels must lie in (0, 1) (probabilities), got {tensor.tolist()}")
    return tensor


class Prediction:
    """Posterior-predictive samples at some inputs, samples first. ``task`` says which kind.

    Where one comes from: a likelihood's ``predict`` of network outputs, and
    :meth:`bayesdl.inference.Posterior.predict`, which calls it::

        >>> import torch
        >>> from bayesdl.models import Categorical, Gaussian
        >>> from bayesdl.predictions import Prediction
        >>> probs = Categorical().predict(torch.zeros(4, 3, 2))     # outputs [S=4, N=3, C=2]
        >>> isinstance(probs, Prediction), probs.task, probs.num_samples
        (True, 'classification', 4)
        >>> values = Gaussian(scale=1.0).predict(torch.zeros(4, 3))  # means [S=4, N=3]
        >>> type(values).__name__, values.task, values.num_samples
        ('RegressionPrediction', 'regression', 4)
    """

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

    Checked at construction: ``probs`` must be an array of rank 3 with ``S, N >= 1`` and
    ``C >= 2``, finite, non-negative and summing to 1 along ``C`` (within the rounding of its
    dtype); a ``ValueError``/``TypeError`` says what is wrong. Numpy arrays and integer
    tensors are converted to floating tensors.

    Example (``Posterior.predict`` of a classifier returns one; logits are refused)::

        >>> import torch
        >>> from bayesdl.predictions import ClassPrediction
        >>> probs = torch.tensor([[[0.9, 0.1], [0.5, 0.5]],
        ...                       [[0.7, 0.3], [0.1, 0.9]]])   # S = 2 samples, N = 2 inputs, C = 2
        >>> p = ClassPrediction(probs)
        >>> p.num_samples, p.probs.shape
        (2, torch.Size([2, 2, 2]))
        >>> p.predictive                                         # the mean over the samples, [N, C]
        tensor([[0.8000, 0.2000],
                [0.3000, 0.7000]])
        >>> ClassPrediction(torch.tensor([[[2.0, -1.0]]]))
        Traceback (most recent call last):
        ...
        ValueError: probs has negative entries; pass probabilities (a softmax), not logits
    """

    probs: torch.Tensor
    task = "classification"

    def __post_init__(self):
        probs = check_probs(self.probs, "probs", ndim=3)
        if probs is not self.probs:
            object.__setattr__(self, "probs", probs)

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
    per sample.

    Checked at construction (``ValueError``/``TypeError`` naming what is wrong): ``mean`` and
    ``noise`` are arrays of the same shape -- ``[S, N]``, samples first, trailing event
    dimensions ``[S, N, ...]`` allowed, and ``[S]`` read as ``S`` samples of one scalar target
    (what one draw ``[N]`` of ``Gaussian.predict`` gives) -- on the same device, with at least
    one sample and one input; ``mean`` finite; ``noise`` finite and > 0 (a zero scale is a
    point mass, whose log density is -inf or NaN). Numpy arrays and integer tensors are
    converted to floating tensors. Example::

        >>> p = RegressionPrediction(torch.tensor([[0.0], [2.0]]), torch.tensor([[1.0], [1.0]]))
        >>> p.predictive_mean, p.aleatoric, p.epistemic, p.variance
        (tensor([1.]), tensor([1.]), tensor([1.]), tensor([2.]))
    """

    mean: torch.Tensor
    noise: torch.Tensor
    task = "regression"

    def __post_init__(self):
        mean, noise = _as_float_tensor(self.mean, "mean"), _as_float_tensor(self.noise, "noise")
        if mean.dim() == 0:
            raise ValueError("mean and noise must have shape [S, N] (samples first), got scalars; "
                             "for one sample of N inputs pass mean[None] and noise[None]")
        if mean.shape != noise.shape:
            raise ValueError(
                f"mean and noise must have the same shape [S, N] (samples first), got mean "
                f"{tuple(mean.shape)} and noise {tuple(noise.shape)}; for one noise scale per input "
                "or one for all, pass noise.expand_as(mean)")
        if mean.device != noise.device:
            raise ValueError(f"mean and noise must be on the same device, got {mean.device} and "
                             f"{noise.device}")
        if mean.shape[0] == 0:
            raise ValueError(f"the prediction has no sample (S = 0, shape {tuple(mean.shape)}); "
                             "pass at least one posterior sample")
        if mean.numel() == 0:
            raise ValueError(f"the prediction has no input (N = 0, shape {tuple(mean.shape)}); "
                             "predict at least one input")
        check_finite(mean, "mean")
        check_finite(noise, "noise")
        low = float(noise.min())
        if low <= 0:
            why = ("a zero noise scale is a point mass, whose log density is -inf or NaN; use a small "
                   "positive scale" if low == 0 else
                   "pass standard deviations (e.g. exp of a log-scale), not log-scales")
            raise ValueError(f"noise must be > 0 (the standard deviation of the Gaussian), got min "
                             f"{low:g}: {why}")
        if mean is not self.mean:
            object.__setattr__(self, "mean", mean)
        if noise is not self.noise:
            object.__setattr__(self, "noise", noise)

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
        return _mixture_cdf(y, self.mean, self.noise, dim=0)

    def quantile(self, levels) -> torch.Tensor:
        """Quantiles of the predictive mixture, ``F^-1(level)`` with ``F`` the CDF of :meth:`cdf`.

        ``levels``: a number in ``(0, 1)`` (result shaped like one sample, ``[N]``) or a sequence
        of ``L`` of them (result ``[L, N]``); float64, on the prediction's device. Solved by
        bisection on ``F`` (the same function :meth:`cdf` evaluates), vectorised over inputs and
        levels, inside the bracket ``[min_s, max_s] (mean_s + noise_s Phi^-1(level))``, to float64
        precision -- the algorithm of :func:`bayesdl.evaluation.conformal.mixture_quantiles`,
        which agrees with it (to the last bits) on ``[S, N]`` predictions. With one sample it is
        the Gaussian quantile ``mean + noise Phi^-1(level)``.
        """
        level_tensor = _check_levels(levels)
        scalar = level_tensor.dim() == 0
        level_tensor = level_tensor.reshape(-1).to(self.mean.device)
        event = self.mean.shape[1:]
        mean = self.mean.double().reshape(self.num_samples, -1)
        noise = self.noise.double().reshape(self.num_samples, -1)
        out = torch.empty(level_tensor.shape[0], mean.shape[1], dtype=torch.float64, device=mean.device)
        z = torch.special.ndtri(level_tensor)
        eps, tiny = torch.finfo(torch.float64).eps, torch.finfo(torch.float64).tiny
        # keep [L, S, chunk] at a few million numbers
        chunk = max(1, 4_000_000 // (mean.shape[0] * level_tensor.shape[0]))
        for start in range(0, mean.shape[1], chunk):
            m = mean[None, :, start:start + chunk]
            s = noise[None, :, start:start + chunk]
            components = m + s * z[:, None, None]  # each component's own quantile, [L, S, n]
            lo, hi = components.amin(1), components.amax(1)
            target = level_tensor[:, None]
            for _ in range(200):
                mid = 0.5 * (lo + hi)
                below = _mixture_cdf(mid[:, None, :], m, s, dim=1) < target
                lo, hi = torch.where(below, mid, lo), torch.where(below, hi, mid)
                if bool(((hi - lo) <= 4 * eps * hi.abs().maximum(lo.abs()) + tiny).all()):
                    break
            out[:, start:start + chunk] = 0.5 * (lo + hi)
        out = out.reshape(level_tensor.shape[0], *event)
        return out[0] if scalar else out

    def interval(self, level: float = 0.95) -> tuple[torch.Tensor, torch.Tensor]:
        """The central ``level`` interval of the predictive mixture: ``(lower, upper)``, each
        shaped like one sample (``[N]``), float64 -- the quantiles ``F^-1((1 - level) / 2)`` and
        ``F^-1((1 + level) / 2)`` (:meth:`quantile`).

        It is the interval whose coverage :func:`bayesdl.evaluation.interval_coverage` reports:
        ``lower <= y <= upper`` exactly when ``|F(y) - 1/2| <= level / 2``. With several samples
        it is not ``mean +- 1.96 sd`` (the mixture need not be Gaussian: skewed or bimodal where
        the samples disagree); with one sample it is. Example::

            >>> p = RegressionPrediction(torch.zeros(1, 2), torch.ones(1, 2))
            >>> lower, upper = p.interval(0.95)
            >>> [round(v, 4) for v in upper.tolist()]
            [1.96, 1.96]
        """
        if isinstance(level, bool) or not isinstance(level, numbers.Real):
            raise TypeError(f"level must be a number in (0, 1), got {type(level).__name__}")
        level = float(level)
        if not 0 < level < 1:  # NaN fails too
            raise ValueError(f"level must lie in (0, 1) (the probability of the central interval), "
                             f"got {level}")
        bounds = self.quantile([(1 - level) / 2, (1 + level) / 2])
        return bounds[0], bounds[1]

    def affine(self, shift, scale) -> RegressionPrediction:
        """The prediction of ``shift + scale * y`` (e.g. undoing a target normalisation):
        means ``shift + scale * mean``, noise ``|scale| * noise``. ``shift``, ``scale``: numbers
        or tensors broadcasting against ``[N]`` (a ``ValueError`` otherwise, or when they are
        not finite or ``scale`` has a zero)."""
        shift = self._coefficient(shift, "shift")
        self._coefficient(scale, "scale")
        scale = torch.as_tensor(scale, dtype=self.mean.dtype, device=self.mean.device)
        if not bool(torch.all(scale != 0)):
            raise ValueError("scale must be non-zero")
        return RegressionPrediction(shift + scale * self.mean, scale.abs() * self.noise)

    def _coefficient(self, value, name: str):
        """``value`` of :meth:`affine` checked: a finite number, or a finite array whose shape
        broadcasts against ``[N]`` to ``[N]``. Numbers come back unchanged, arrays as tensors
        on the device of the prediction."""
        if isinstance(value, numbers.Real) and not isinstance(value, bool):
            check_finite(torch.tensor(float(value)), name)
            return value
        if isinstance(value, bool):
            raise TypeError(f"{name} must be a number or a tensor, got bool")
        tensor = as_tensor(value, name)
        if tensor.is_complex():
            raise TypeError(f"{name} must be real, got a tensor of dtype {tensor.dtype}")
        check_finite(tensor, name)
        event = tuple(self.mean.shape[1:])
        try:
            fits = tuple(torch.broadcast_shapes(tensor.shape, event)) == event
        except RuntimeError:
            fits = False
        if not fits:
            raise ValueError(f"{name} must be a number or broadcast against [N] = {event}, got shape "
                             f"{tuple(tensor.shape)}")
        if not isinstance(value, torch.Tensor):  # numpy: as a tensor of the prediction's dtype
            tensor = tensor.to(self.mean.dtype)
        return tensor.to(self.mean.device)

    def cpu(self) -> RegressionPrediction:
        return RegressionPrediction(self.mean.cpu(), self.noise.cpu())
