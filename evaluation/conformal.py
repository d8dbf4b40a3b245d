"""Split conformal prediction on posterior-predictive samples: sets and intervals with a
finite-sample coverage guarantee, for the predictive of any method.

A nonconformity score ``s(x, y)`` (large = the label looks wrong) is computed on ``n``
calibration points that were *not* used to fit the model; its conformal quantile

.. math::

    \\hat q = s_{(k)}, \\qquad k = \\lceil (n + 1)(1 - \\alpha) \\rceil,

the ``k``-th smallest calibration score (the empirical quantile at level ``k / n``), gives the
set ``C(x) = {y : s(x, y) <= q}``. For a test point exchangeable with the calibration points
(Vovk et al. 2005; Lei et al. 2018; the tutorial of Angelopoulos & Bates 2023, Sec. 1, App. D)

.. math::

    1 - \\alpha \\le P(y \\in C(x)) \\le 1 - \\alpha + \\frac{1}{n + 1},

the upper bound when the scores have no ties. ``k <= n`` needs ``n >= ceil(1/alpha) - 1``.

Classification scores, of the predictive probabilities ``p`` ``[N, C]`` (a ``ClassPrediction``'s
``.predictive``, the mean over the posterior samples), with ``pi_1 >= pi_2 >= ...`` the sorted
probabilities, ``o(y)`` the (1-based) rank of label ``y`` and ``u`` in ``[0, 1]``:

- ``"thr"`` (LAC, Sadinle, Lei & Wasserman 2019): ``s = 1 - p_y``; the smallest average sets
  when ``p`` is the true conditional distribution.
- ``"aps"`` (Romano, Sesia & Candès 2020): ``s = sum_{j < o(y)} pi_j + u pi_{o(y)}``, the mass
  ranked above ``y`` plus a fraction ``u`` of its own; ``u ~ U(0, 1)`` when randomised (exact
  coverage), ``u = 1`` (the cumulative mass up to ``y``) when not.
- ``"raps"`` (Angelopoulos, Bates, Malik & Jordan 2021, "Uncertainty sets for image classifiers
  using conformal prediction", Alg. 1-2): ``aps + lambda (o(y) - k_reg)^+``, penalising labels
  ranked below ``k_reg``.

A set holds the labels whose score (with one ``u`` per test point) is ``<= q``; the score
increases along the ranking, so every set is the top of the ranking (possibly empty).

Regression, of a :class:`~bayesdl.predictions.RegressionPrediction` (the mixture
``1/S sum_s N(mean_s, noise_s^2)``) with predictive mean ``mu`` and standard deviation ``sigma``:

- ``"absolute"`` (Lei et al. 2018): ``s = |y - mu|``, interval ``mu +- q``.
- ``"normalized"`` (Papadopoulos et al. 2008; Lei et al. 2018, locally weighted):
  ``s = |y - mu| / sigma`` with ``sigma^2`` the total predictive variance ``aleatoric +
  epistemic`` (or one of the two, ``std=``), interval ``mu +- q sigma``.
- ``"cqr"`` (Romano, Patterson & Candès 2019): ``[l, h]`` the ``alpha/2`` and ``1 - alpha/2``
  quantiles of the mixture (:func:`mixture_quantiles`), ``s = max(l - y, y - h)``, interval
  ``[l - q, h + q]``.

:class:`ConformalClassifier` and :class:`ConformalRegressor` calibrate on one set of predictions
and predict on another, and refuse to predict on the very predictions they were calibrated on.
The metrics (:func:`set_coverage`, :func:`mean_set_size`, :func:`size_stratified_coverage`,
:func:`class_conditional_coverage`, :func:`conformal_interval_metrics`) read the sets
(bool ``[N, C]``) and intervals (``[N]``, ``[N]``). Nothing here runs a model.

Example::

    >>> import torch
    >>> conformal_quantile(torch.arange(1.0, 10.0), alpha=0.1)  # n = 9: k = ceil(10 * 0.9) = 9
    9.0
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass

import numpy as np
import torch

from bayesdl.checks import (
    as_tensor,
    check_choice,
    check_finite,
    check_int,
    check_labels,
    check_positive,
    check_probability,
    check_same_length,
)
from bayesdl.predictions import ClassPrediction, RegressionPrediction

from ._inputs import check_probs, check_scores

__all__ = [
    "CLASSIFICATION_SCORES",
    "REGRESSION_SCORES",
    "conformal_quantile",
    "required_calibration_size",
    "classification_scores",
    "prediction_sets",
    "mixture_quantiles",
    "regression_scores",
    "prediction_intervals",
    "ConformalClassifier",
    "ConformalRegressor",
    "StratifiedCoverage",
    "set_coverage",
    "mean_set_size",
    "size_stratified_coverage",
    "class_conditional_coverage",
    "conformal_set_metrics",
    "conformal_interval_metrics",
]

#: The classification scores: thresholded probability (LAC), APS and RAPS.
CLASSIFICATION_SCORES = ("thr", "aps", "raps")
#: The regression scores: absolute residual, residual / predictive std, conformalised quantiles.
REGRESSION_SCORES = ("absolute", "normalized", "cqr")
#: Which predictive standard deviation the "normalized" score divides by.
STD_KINDS = ("total", "aleatoric", "epistemic")

#: RAPS defaults when ``k_reg`` / ``lam`` are not given.
DEFAULT_K_REG = 1
DEFAULT_LAMBDA = 0.01

# (n + 1)(1 - alpha) is an integer for "round" pairs (alpha = 0.3, n = 9), but 1 - 0.3 rounds
# to 0.7000000000000001 in binary and ceil would then jump by one; this slack (relative) undoes it.
_RANK_SLACK = 1e-9


# ---------------------------------------------------------------------------------------------
# The conformal quantile
# ---------------------------------------------------------------------------------------------


def _check_alpha(alpha) -> float:
    return check_probability(alpha, "alpha", lower_inclusive=False)


def _rank(n: int, alpha: float) -> int:
    """``k = ceil((n + 1)(1 - alpha))``, the rank of the conformal quantile among ``n`` scores."""
    x = (n + 1) * (1 - alpha)
    return max(1, math.ceil(x - _RANK_SLACK * x))


def required_calibration_size(alpha: float) -> int:
    """The fewest calibration points for which the conformal quantile at ``alpha`` exists:
    the smallest ``n`` with ``ceil((n + 1)(1 - alpha)) <= n``, i.e. ``ceil(1 / alpha) - 1``
    (9 at ``alpha = 0.1``, 19 at ``alpha = 0.05``).

    Example::

        >>> from bayesdl.evaluation import required_calibration_size
        >>> [required_calibration_size(alpha) for alpha in (0.2, 0.1, 0.05)]
        [4, 9, 19]
    """
    alpha = _check_alpha(alpha)
    n = max(1, math.ceil(1 / alpha - 1 - _RANK_SLACK))
    while _rank(n, alpha) > n:
        n += 1
    while n > 1 and _rank(n - 1, alpha) <= n - 1:
        n -= 1
    return n


def conformal_quantile(scores, alpha: float):
    """The split-conformal quantile of calibration ``scores``: the ``k``-th smallest with
    ``k = ceil((n + 1)(1 - alpha))`` -- numpy's ``quantile(scores, k / n, method="lower")``.

    ``scores`` ``[n]`` gives a float; ``[B, n]`` (``B`` calibration sets at once) a float64
    tensor ``[B]``. Raises ``ValueError`` when ``k > n``: the quantile needs at least
    ``ceil(1/alpha) - 1`` points (:func:`required_calibration_size`).

    Example::

        >>> import torch
        >>> from bayesdl.evaluation import conformal_quantile
        >>> scores = torch.arange(1.0, 20.0)                  # n = 19 calibration scores 1 .. 19
        >>> conformal_quantile(scores, alpha=0.1)              # k = ceil(20 x 0.9) = 18
        18.0
        >>> conformal_quantile(torch.stack([scores, 2 * scores]), alpha=0.1)   # B = 2 sets at once
        tensor([18., 36.], dtype=torch.float64)
        >>> conformal_quantile(scores[:5], alpha=0.1)          # doctest: +ELLIPSIS
        Traceback (most recent call last):
        ...
        ValueError: the conformal quantile at alpha=0.1 needs at least ceil(1/alpha) - 1 = 9 calibration ...
    """
    alpha = _check_alpha(alpha)
    tensor = as_tensor(scores, "scores")
    if tensor.dim() == 2:
        if tensor.shape[0] == 0 or tensor.shape[1] == 0:
            raise ValueError(f"scores is empty (shape {tuple(tensor.shape)}); pass at least one score")
        tensor = check_finite(tensor if tensor.is_floating_point() else tensor.double(), "scores")
    else:
        tensor = check_scores(tensor, "scores")
    n = tensor.shape[-1]
    k = _rank(n, alpha)
    if k > n:
        needed = required_calibration_size(alpha)
        raise ValueError(
            f"the conformal quantile at alpha={alpha:g} needs at least ceil(1/alpha) - 1 = {needed} "
            f"calibration points (so that its rank ceil((n+1)(1-alpha)) does not exceed n), got n={n}; "
            f"calibrate on at least {needed} points or raise alpha"
        )
    value = torch.kthvalue(tensor.double(), k, dim=-1).values
    return float(value) if tensor.dim() == 1 else value


# ---------------------------------------------------------------------------------------------
# Classification: scores and sets
# ---------------------------------------------------------------------------------------------


def _class_probs(probs, name: str = "probs") -> torch.Tensor:
    """The predictive probabilities ``[N, C]`` of a ClassPrediction or a tensor, float64."""
    if isinstance(probs, ClassPrediction):
        return check_probs(probs.predictive, f"{name}.predictive", ndim=2).double()
    if isinstance(probs, torch.Tensor | np.ndarray) and probs.ndim == 3:
        raise ValueError(
            f"{name} has shape {tuple(probs.shape)}, samples first: conformal prediction uses the "
            "predictive probabilities [N, C] -- pass a ClassPrediction or probs.mean(0)"
        )
    return check_probs(probs, name, ndim=2).double()


def _raps_params(score: str, k_reg, lam) -> tuple[int, float]:
    if score != "raps":
        if k_reg is not None or lam is not None:
            raise ValueError(f"k_reg and lam only apply to score='raps', got score={score!r}; "
                             "drop them or use score='raps'")
        return 0, 0.0
    k_reg = DEFAULT_K_REG if k_reg is None else check_int(k_reg, "k_reg", minimum=0)
    lam = DEFAULT_LAMBDA if lam is None else check_positive(lam, "lam", allow_zero=True)
    return k_reg, lam


def _check_u(u, n: int, device: torch.device) -> torch.Tensor:
    """``u`` as a float64 tensor ``[n]`` in ``[0, 1]``; ``None`` means ``u = 1`` (not randomised)."""
    if u is None:
        return torch.ones(n, dtype=torch.float64, device=device)
    u = as_tensor(u, "u")
    if u.dim() != 1 or u.shape[0] != n:
        raise ValueError(f"u must have shape [{n}] (one uniform number per example), "
                         f"got shape {tuple(u.shape)}")
    u = check_finite(u.double(), "u")
    if bool(((u < 0) | (u > 1)).any()):
        raise ValueError("u must lie in [0, 1] (uniform random numbers)")
    return u.to(device)


def classification_scores(probs, score: str = "aps", *, u=None, k_reg: int | None = None,
                          lam: float | None = None) -> torch.Tensor:
    """Nonconformity score of every candidate label, float64 ``[N, C]``.

    ``probs``: predictive probabilities ``[N, C]`` or a :class:`ClassPrediction` (its mean over
    samples). ``score``: ``"thr"`` (``1 - p_y``), ``"aps"`` or ``"raps"`` (see the module).
    ``u`` ``[N]`` in ``[0, 1]``: the randomisation of APS/RAPS, one number per example (``None``:
    ``u = 1``, not randomised; ``"thr"`` ignores it). ``k_reg`` (int >= 0, default 1) and
    ``lam`` (>= 0, default 0.01): the RAPS penalty ``lam (o(y) - k_reg)^+``. Ties in
    probability rank by class index. The score of the true label is ``scores.gather(1, y[:, None])``.

    Example::

        >>> import torch
        >>> probs = torch.tensor([[0.7, 0.2, 0.1], [0.5, 0.3, 0.2], [0.1, 0.6, 0.3]])   # [N, C]
        >>> from bayesdl.evaluation import classification_scores
        >>> classification_scores(probs, "thr")[0]            # 1 - p_y
        tensor([0.3000, 0.8000, 0.9000], dtype=torch.float64)
        >>> classification_scores(probs, "aps")[0]            # the mass ranked above y, plus p_y (u = 1)
        tensor([0.7000, 0.9000, 1.0000], dtype=torch.float64)
        >>> labels = torch.tensor([0, 1, 2])
        >>> classification_scores(probs, "aps").gather(1, labels[:, None]).squeeze(1)   # at the true labels
        tensor([0.7000, 0.8000, 0.9000], dtype=torch.float64)
    """
    probs = _class_probs(probs)
    score = check_choice(score, "score", CLASSIFICATION_SCORES)
    k_reg, lam = _raps_params(score, k_reg, lam)
    if score == "thr":
        return 1.0 - probs
    n, c = probs.shape
    u = _check_u(u, n, probs.device)
    sorted_p, order = torch.sort(probs, dim=1, descending=True, stable=True)
    # mass ranked strictly above each label (an exclusive cumulative sum)
    above = torch.cat([torch.zeros_like(sorted_p[:, :1]), torch.cumsum(sorted_p, dim=1)[:, :-1]], dim=1)
    ranked = above + u[:, None] * sorted_p
    if score == "raps":
        rank = torch.arange(1, c + 1, dtype=torch.float64, device=probs.device)
        ranked = ranked + lam * (rank - k_reg).clamp_min(0)
    return torch.empty_like(ranked).scatter_(1, order, ranked)


def _check_threshold(threshold) -> float:
    if isinstance(threshold, torch.Tensor) and threshold.numel() == 1:
        threshold = threshold.item()
    if isinstance(threshold, bool) or not isinstance(threshold, int | float | np.floating | np.integer):
        raise TypeError(f"threshold must be a real number, got {type(threshold).__name__}")
    threshold = float(threshold)
    if not math.isfinite(threshold):
        raise ValueError(f"threshold must be finite, got {threshold}")
    return threshold


def prediction_sets(probs, threshold: float, score: str = "aps", *, u=None, k_reg: int | None = None,
                    lam: float | None = None) -> torch.Tensor:
    """Conformal sets ``{y : s(x, y, u) <= threshold}``, bool ``[N, C]`` (``True`` = in the set).

    ``threshold`` is the conformal quantile of the calibration scores (:func:`conformal_quantile`
    of :func:`classification_scores` at the true labels); the other arguments are those of
    :func:`classification_scores`, with ``u`` drawn afresh for the test points.

    Example::

        >>> import torch
        >>> probs = torch.tensor([[0.7, 0.2, 0.1], [0.5, 0.3, 0.2], [0.1, 0.6, 0.3]])   # [N, C]
        >>> from bayesdl.evaluation import prediction_sets
        >>> prediction_sets(probs, threshold=0.85, score="aps")     # the top of each ranking
        tensor([[ True, False, False],
                [ True,  True, False],
                [False,  True, False]])
    """
    threshold = _check_threshold(threshold)
    return classification_scores(probs, score, u=u, k_reg=k_reg, lam=lam) <= threshold


def _fingerprint(*tensors: torch.Tensor) -> str:
    """A hash of the values (rounded to float32) and shapes: the same points give the same
    fingerprint whatever their dtype, device or memory layout. It catches the very same
    predictions, not a calibration set that merely overlaps the test set."""
    digest = hashlib.blake2b(digest_size=16)
    for tensor in tensors:
        array = np.ascontiguousarray(tensor.detach().to("cpu", torch.float32).numpy())
        digest.update(repr(array.shape).encode())
        digest.update(array.tobytes())
    return digest.hexdigest()


def _same_points_error(method: str, what: str) -> ValueError:
    return ValueError(
        f"{method} got the very {what} this object was calibrated on; the coverage guarantee "
        "holds only for points not used to calibrate. Pass held-out predictions (split the data "
        "into a calibration and a test part), or allow_same=True to score the calibration points "
        "on purpose"
    )


def _uniforms(seed: int, stream: int, n: int, device: torch.device) -> torch.Tensor:
    """``n`` uniforms from an independent stream ``(seed, stream)`` (numpy's SeedSequence)."""
    values = np.random.default_rng([seed, stream]).random(n)
    return torch.as_tensor(values, dtype=torch.float64, device=device)


class ConformalClassifier:
    """Split conformal prediction sets from the predictive probabilities of any classifier.

    ``score``: ``"thr"``, ``"aps"`` or ``"raps"`` (see the module); ``alpha`` in ``(0, 1)``: the
    miscoverage, sets cover the true label with probability ``>= 1 - alpha``; ``k_reg``,
    ``lam``: the RAPS penalty (defaults 1 and 0.01; RAPS only); ``randomized``: APS/RAPS draw
    ``u ~ U(0, 1)`` per example (exact coverage, sets may be empty) instead of ``u = 1``;
    ``seed``: the draws of ``u`` -- calibration and test points use independent streams, and
    :meth:`predict_sets` draws the same ``u`` for the same number of points at every call, so
    the sets are a function of the inputs. Pass ``u=`` to either method to set it yourself.

    After :meth:`calibrate`: ``threshold_`` (the conformal quantile), ``scores_`` (the
    calibration scores ``[n]``), ``n_calibration_`` and ``num_classes_``. Example::

        >>> probs = torch.tensor([[0.7, 0.2, 0.1]] * 9 + [[0.2, 0.5, 0.3]] * 9)
        >>> labels = torch.tensor([0, 1] * 9)
        >>> cp = ConformalClassifier("thr", alpha=0.2).calibrate(probs[::2], labels[::2])
        >>> cp.predict_sets(probs[1::2])[0]
        tensor([ True,  True, False])
    """

    def __init__(self, score: str = "aps", alpha: float = 0.1, *, k_reg: int | None = None,
                 lam: float | None = None, randomized: bool = True, seed: int = 0):
        self.score = check_choice(score, "score", CLASSIFICATION_SCORES)
        self.alpha = _check_alpha(alpha)
        self.k_reg, self.lam = _raps_params(self.score, k_reg, lam)
        if not isinstance(randomized, bool):
            raise TypeError(f"randomized must be True or False, got {type(randomized).__name__}")
        self.randomized = randomized
        self.seed = check_int(seed, "seed", minimum=0)
        self._fingerprint: str | None = None

    def __repr__(self) -> str:
        raps = f", k_reg={self.k_reg}, lam={self.lam:g}" if self.score == "raps" else ""
        return (f"ConformalClassifier(score={self.score!r}, alpha={self.alpha:g}{raps}, "
                f"randomized={self.randomized}, seed={self.seed})")

    def _scores(self, probs: torch.Tensor, u) -> torch.Tensor:
        kwargs = {"k_reg": self.k_reg, "lam": self.lam} if self.score == "raps" else {}
        return classification_scores(probs, self.score, u=u, **kwargs)

    def _draw(self, n: int, stream: int, device: torch.device, u):
        if u is not None or self.score == "thr" or not self.randomized:
            return u
        return _uniforms(self.seed, stream, n, device)

    def calibrate(self, probs, labels, *, u=None) -> ConformalClassifier:
        """Fit ``threshold_`` on calibration predictions: ``probs`` ``[n, C]`` or a
        ``ClassPrediction``, ``labels`` ``[n]`` in ``[0, C)``; ``u`` ``[n]``: see the class.
        Returns ``self``."""
        probs = _class_probs(probs)
        labels = check_labels(labels, probs.shape[1], probs.shape[0]).to(probs.device)
        u = self._draw(probs.shape[0], 0, probs.device, u)
        scores = self._scores(probs, u).gather(1, labels[:, None]).squeeze(1)
        self.threshold_ = conformal_quantile(scores, self.alpha)
        self.scores_ = scores
        self.n_calibration_ = probs.shape[0]
        self.num_classes_ = probs.shape[1]
        self._fingerprint = _fingerprint(probs)
        return self

    def predict_sets(self, probs, *, u=None, allow_same: bool = False) -> torch.Tensor:
        """Prediction sets of test predictions ``probs`` ``[N, C]`` (or a ``ClassPrediction``),
        bool ``[N, C]``. Refuses (``ValueError``) the very probabilities it was calibrated on
        unless ``allow_same=True``."""
        if self._fingerprint is None:
            raise ValueError("this ConformalClassifier is not calibrated: call .calibrate(probs_cal, "
                             "labels_cal) on held-out predictions first")
        probs = _class_probs(probs)
        if probs.shape[1] != self.num_classes_:
            raise ValueError(f"probs has {probs.shape[1]} classes but the classifier was calibrated on "
                             f"{self.num_classes_}")
        if not allow_same and _fingerprint(probs) == self._fingerprint:
            raise _same_points_error("predict_sets", "probabilities")
        u = self._draw(probs.shape[0], 1, probs.device, u)
        return self._scores(probs, u) <= self.threshold_


def random_splits(n: int, n_calibration: int, trials: int, seed: int = 0):
    """``trials`` random splits of ``n`` points into ``n_calibration`` calibration points and the
    rest as test points: yields ``(calibration [n_calibration], test [n - n_calibration])`` index
    tensors, drawn from a generator seeded by ``seed`` (the global random state is untouched).

    Coverage is a property of the split's randomness: averaged over many splits of one fixed set
    of predictions, the coverage of split conformal sets lies in ``[1 - alpha, 1 - alpha +
    1/(n_calibration + 1)]`` (up to the Monte-Carlo error of the average), which is what a study
    reports.

    Example::

        >>> from bayesdl.evaluation import random_splits
        >>> splits = list(random_splits(5, n_calibration=2, trials=2, seed=0))
        >>> [(cal.tolist(), test.tolist()) for cal, test in splits]
        [([4, 0], [1, 3, 2]), ([3, 4], [0, 1, 2])]
    """
    n = check_int(n, "n", minimum=2)
    n_calibration = check_int(n_calibration, "n_calibration", minimum=1)
    if n_calibration >= n:
        raise ValueError(f"n_calibration ({n_calibration}) must leave test points among the n = {n} points")
    trials = check_int(trials, "trials", minimum=1)
    generator = torch.Generator().manual_seed(check_int(seed, "seed", minimum=0))
    for _ in range(trials):
        order = torch.randperm(n, generator=generator)
        yield order[:n_calibration], order[n_calibration:]


# ---------------------------------------------------------------------------------------------
# Regression: mixture quantiles, scores and intervals
# ---------------------------------------------------------------------------------------------


def _check_regression_prediction(prediction, name: str = "prediction") -> RegressionPrediction:
    if not isinstance(prediction, RegressionPrediction):
        raise TypeError(f"{name} must be a RegressionPrediction (from Posterior.predict on a regression "
                        f"model), got {type(prediction).__name__}")
    mean = as_tensor(prediction.mean, f"{name}.mean")
    noise = as_tensor(prediction.noise, f"{name}.noise")
    if mean.shape != noise.shape:
        raise ValueError(f"{name}.mean and {name}.noise must have the same shape [S, N] (samples first), "
                         f"got {tuple(mean.shape)} and {tuple(noise.shape)}")
    if mean.dim() != 2:
        raise ValueError(f"conformal prediction takes one scalar target per input: {name}.mean and .noise "
                         f"must have shape [S, N] (samples first), got {tuple(mean.shape)}; for [S, N, 1] "
                         "pass mean[..., 0] and noise[..., 0]")
    if mean.shape[0] == 0 or mean.shape[1] == 0:
        raise ValueError(f"{name} is empty (shape {tuple(mean.shape)}); pass at least one sample and input")
    check_finite(mean, f"{name}.mean")
    check_finite(noise, f"{name}.noise")
    if bool((noise <= 0).any()):
        raise ValueError(f"{name}.noise must be > 0 (a standard deviation per sample and input)")
    return prediction


def mixture_quantiles(prediction: RegressionPrediction, levels) -> torch.Tensor:
    """Quantiles of the predictive mixture ``F(y) = 1/S sum_s Phi((y - mean_s) / noise_s)``.

    ``levels``: a number in ``(0, 1)`` (result ``[N]``) or a sequence of ``L`` of them
    (result ``[L, N]``), float64. Solved by bisection on ``F``, vectorised over inputs and
    levels, inside the bracket ``[min_s, max_s] (mean_s + noise_s Phi^-1(level))`` (``F`` is
    ``<= level`` at its left end and ``>= level`` at its right), to float64 precision: the one
    implementation, :meth:`bayesdl.predictions.RegressionPrediction.quantile`.

    Example::

        >>> import torch
        >>> from bayesdl.evaluation import RegressionPrediction
        >>> prediction = RegressionPrediction(torch.tensor([[0.0, 1.0], [2.0, 1.0]]), torch.ones(2, 2))
        >>> y = torch.tensor([1.5, 3.0])                 # predictive means 1 and 1
        >>> from bayesdl.evaluation import mixture_quantiles
        >>> mixture_quantiles(prediction, 0.5).round(decimals=4)     # the medians, [N]
        tensor([1., 1.], dtype=torch.float64)
        >>> mixture_quantiles(prediction, [0.05, 0.95]).round(decimals=4)   # [L, N]; input 0 is bimodal
        tensor([[-1.2845, -0.6449],
                [ 3.2845,  2.6449]], dtype=torch.float64)
    """
    prediction = _check_regression_prediction(prediction)
    for level in as_tensor(levels, "levels").double().reshape(-1).tolist():
        check_probability(level, "level", lower_inclusive=False)
    return prediction.quantile(levels)


def _check_pair(pair, names: tuple[str, str]) -> tuple[torch.Tensor, torch.Tensor | None]:
    if not isinstance(pair, tuple | list) or len(pair) != 2:
        raise TypeError(f"prediction must be a RegressionPrediction or a pair ({names[0]}, {names[1]}) "
                        f"of [N] tensors, got {type(pair).__name__}")
    out = []
    for value, name in zip(pair, names):
        if value is None:
            out.append(None)
            continue
        value = as_tensor(value, name)
        if value.dim() != 1 or value.shape[0] == 0:
            raise ValueError(f"{name} must have shape [N] with N >= 1, got shape {tuple(value.shape)}")
        out.append(check_finite(value.double(), name))
    if out[0] is None:
        raise TypeError(f"{names[0]} must be a tensor [N], got None")
    if out[1] is not None:
        check_same_length(out[0], out[1], names)
    return out[0], out[1]


def _regression_base(prediction, score: str, alpha: float, std: str) -> tuple[torch.Tensor, torch.Tensor]:
    """``(center, spread)`` for "absolute"/"normalized" (spread 1 for absolute), ``(l, h)`` for
    "cqr", each float64 ``[N]``."""
    if isinstance(prediction, RegressionPrediction):
        prediction = _check_regression_prediction(prediction)
        if score == "cqr":
            quantiles = mixture_quantiles(prediction, [alpha / 2, 1 - alpha / 2])
            return quantiles[0], quantiles[1]
        center = prediction.predictive_mean.double()
        if score == "absolute":
            return center, torch.ones_like(center)
        variance = {"total": prediction.variance, "aleatoric": prediction.aleatoric,
                    "epistemic": prediction.epistemic}[std].double()
        spread = variance.sqrt()
    elif score == "cqr":
        lower, upper = _check_pair(prediction, ("lower", "upper"))
        if upper is None:
            raise TypeError("upper must be a tensor [N], got None")
        return lower, upper
    else:
        center, spread = _check_pair(prediction, ("mean", "std"))
        if std != "total":
            raise ValueError(f"std={std!r} picks a part of a RegressionPrediction's variance; a (mean, std) "
                             "pair brings its own std -- pass the RegressionPrediction, or leave std='total'")
        if score == "absolute":
            return center, torch.ones_like(center)
        if spread is None:
            raise TypeError("score='normalized' needs the predictive std: pass (mean, std), not (mean, None)")
        if bool((spread <= 0).any()):
            raise ValueError(f"std must be > 0 (score='normalized' divides by it), got "
                             f"{int((spread <= 0).sum())} value(s) <= 0")
        return center, spread
    if bool((spread <= 0).any()):
        raise ValueError(
            f"score='normalized' divides by the predictive std ({std}), which is 0 at "
            f"{int((spread <= 0).sum())} input(s); use std='total' (a single posterior sample has no "
            "epistemic spread) or score='absolute'"
        )
    return center, spread


def _check_regression_options(score, alpha, std) -> tuple[str, float, str]:
    score = check_choice(score, "score", REGRESSION_SCORES)
    alpha = _check_alpha(alpha)
    std = check_choice(std, "std", STD_KINDS)
    if score != "normalized" and std != "total":
        raise ValueError(f"std only applies to score='normalized', got score={score!r}")
    return score, alpha, std


def _targets(y, n: int) -> torch.Tensor:
    y = as_tensor(y, "y")
    y = y.reshape(-1) if y.dim() == 2 and y.shape[1] == 1 else y
    if y.dim() != 1 or y.shape[0] != n:
        raise ValueError(f"y must have shape [{n}] (one target per input), got {tuple(y.shape)}")
    return check_finite(y.double(), "y")


def _scores_from_base(base: tuple[torch.Tensor, torch.Tensor], y: torch.Tensor, score: str) -> torch.Tensor:
    a, b = base
    y = y.to(a.device)
    if score == "cqr":
        return torch.maximum(a - y, y - b)
    return (y - a).abs() / b


def _intervals_from_base(base, threshold: float, score: str) -> tuple[torch.Tensor, torch.Tensor]:
    a, b = base
    if score == "cqr":
        return a - threshold, b + threshold
    return a - threshold * b, a + threshold * b


def regression_scores(prediction, y, score: str = "absolute", *, alpha: float = 0.1,
                      std: str = "total") -> torch.Tensor:
    """Nonconformity scores of targets ``y`` ``[N]``, float64 ``[N]``.

    ``prediction``: a :class:`RegressionPrediction`, or for ``"absolute"``/``"normalized"`` a pair
    ``(mean, std)`` of ``[N]`` tensors (``std`` may be ``None`` for ``"absolute"``), for ``"cqr"``
    a pair ``(lower, upper)``. ``alpha``: the level of the CQR base interval (the ``alpha/2``
    and ``1 - alpha/2`` mixture quantiles); ``std``: ``"total"`` (``sqrt(aleatoric +
    epistemic)``), ``"aleatoric"`` or ``"epistemic"``, for ``"normalized"``.

    Example::

        >>> import torch
        >>> from bayesdl.evaluation import RegressionPrediction
        >>> prediction = RegressionPrediction(torch.tensor([[0.0, 1.0], [2.0, 1.0]]), torch.ones(2, 2))
        >>> y = torch.tensor([1.5, 3.0])                 # predictive means 1 and 1
        >>> from bayesdl.evaluation import regression_scores
        >>> regression_scores(prediction, y, "absolute")          # |y - mu|
        tensor([0.5000, 2.0000], dtype=torch.float64)
        >>> regression_scores(prediction, y, "normalized").round(decimals=4)   # / sqrt(aleatoric + epistemic)
        tensor([0.3536, 2.0000], dtype=torch.float64)
        >>> regression_scores((torch.tensor([1.0, 1.0]), None), y, "absolute")  # a (mean, std) pair
        tensor([0.5000, 2.0000], dtype=torch.float64)
    """
    score, alpha, std = _check_regression_options(score, alpha, std)
    base = _regression_base(prediction, score, alpha, std)
    return _scores_from_base(base, _targets(y, base[0].shape[0]), score)


def prediction_intervals(prediction, threshold: float, score: str = "absolute", *, alpha: float = 0.1,
                         std: str = "total") -> tuple[torch.Tensor, torch.Tensor]:
    """Conformal intervals ``(lower, upper)``, float64 ``[N]`` each: ``mu +- threshold``
    ("absolute"), ``mu +- threshold sigma`` ("normalized"), ``[l - threshold, h + threshold]``
    ("cqr"; a negative threshold shrinks the base interval, and can make it empty: ``lower >
    upper``). Arguments as in :func:`regression_scores`.

    Example::

        >>> import torch
        >>> from bayesdl.evaluation import RegressionPrediction
        >>> prediction = RegressionPrediction(torch.tensor([[0.0, 1.0], [2.0, 1.0]]), torch.ones(2, 2))
        >>> y = torch.tensor([1.5, 3.0])                 # predictive means 1 and 1
        >>> from bayesdl.evaluation import prediction_intervals
        >>> prediction_intervals(prediction, threshold=1.0, score="absolute")      # mu +- 1
        (tensor([0., 0.], dtype=torch.float64), tensor([2., 2.], dtype=torch.float64))
        >>> lower, upper = prediction_intervals(prediction, threshold=1.0, score="normalized")
        >>> (upper - lower).round(decimals=4)           # wider where the samples disagree (input 0)
        tensor([2.8284, 2.0000], dtype=torch.float64)
    """
    score, alpha, std = _check_regression_options(score, alpha, std)
    threshold = _check_threshold(threshold)
    return _intervals_from_base(_regression_base(prediction, score, alpha, std), threshold, score)


class ConformalRegressor:
    """Split conformal intervals from the posterior predictive of any regression method.

    ``score``: ``"absolute"``, ``"normalized"`` or ``"cqr"`` (see the module); ``alpha`` in
    ``(0, 1)``: intervals cover the target with probability ``>= 1 - alpha`` (and, for CQR, the
    level of the base interval of mixture quantiles); ``std``: which predictive std
    ``"normalized"`` divides by (``"total"``, ``"aleatoric"``, ``"epistemic"``).

    :meth:`calibrate` and :meth:`predict_intervals` take a :class:`RegressionPrediction` or a
    pair of ``[N]`` tensors (``(mean, std)``, or ``(lower, upper)`` for "cqr"). After
    calibrating: ``threshold_``, ``scores_`` ``[n]``, ``n_calibration_``.

    Example::

        >>> import torch
        >>> from bayesdl.evaluation import ConformalRegressor, RegressionPrediction
        >>> _ = torch.manual_seed(0)
        >>> mean, noise = torch.randn(3, 40), torch.ones(3, 40)       # S = 3 samples, N = 40 inputs
        >>> y = mean.mean(0) + torch.randn(40)
        >>> cal, test = slice(0, 20), slice(20, 40)
        >>> conformal = ConformalRegressor("normalized", alpha=0.1).calibrate(
        ...     RegressionPrediction(mean[:, cal], noise[:, cal]), y[cal])
        >>> conformal.n_calibration_, conformal.scores_.shape
        (20, torch.Size([20]))
        >>> lower, upper = conformal.predict_intervals(RegressionPrediction(mean[:, test], noise[:, test]))
        >>> lower.shape, bool((lower < upper).all())
        (torch.Size([20]), True)
    """

    def __init__(self, score: str = "absolute", alpha: float = 0.1, *, std: str = "total"):
        self.score, self.alpha, self.std = _check_regression_options(score, alpha, std)
        self._fingerprint: str | None = None

    def __repr__(self) -> str:
        extra = f", std={self.std!r}" if self.score == "normalized" else ""
        return f"ConformalRegressor(score={self.score!r}, alpha={self.alpha:g}{extra})"

    def calibrate(self, prediction, y) -> ConformalRegressor:
        """Fit ``threshold_`` on calibration predictions and their targets ``y`` ``[n]``;
        returns ``self``."""
        base = _regression_base(prediction, self.score, self.alpha, self.std)
        scores = _scores_from_base(base, _targets(y, base[0].shape[0]), self.score)
        self.threshold_ = conformal_quantile(scores, self.alpha)
        self.scores_ = scores
        self.n_calibration_ = scores.shape[0]
        self._fingerprint = _fingerprint(*base)
        return self

    def predict_intervals(self, prediction, *, allow_same: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
        """``(lower, upper)`` float64 ``[N]`` for test predictions. Refuses (``ValueError``) the very
        predictions it was calibrated on unless ``allow_same=True``."""
        if self._fingerprint is None:
            raise ValueError("this ConformalRegressor is not calibrated: call .calibrate(prediction_cal, "
                             "y_cal) on held-out predictions first")
        base = _regression_base(prediction, self.score, self.alpha, self.std)
        if not allow_same and _fingerprint(*base) == self._fingerprint:
            raise _same_points_error("predict_intervals", "predictions")
        return _intervals_from_base(base, self.threshold_, self.score)


# ---------------------------------------------------------------------------------------------
# Metrics of sets and intervals
# ---------------------------------------------------------------------------------------------


def _check_sets(sets, name: str = "sets") -> torch.Tensor:
    sets = as_tensor(sets, name)
    if sets.dim() != 2:
        raise ValueError(f"{name} must have shape [N, C] (True where a label is in the set), "
                         f"got shape {tuple(sets.shape)}")
    if sets.shape[0] == 0 or sets.shape[1] == 0:
        raise ValueError(f"{name} is empty (shape {tuple(sets.shape)}); pass at least one example")
    if sets.dtype != torch.bool:
        check_finite(sets, name)
        if not bool(((sets == 0) | (sets == 1)).all()):
            raise ValueError(f"{name} must be booleans or 0/1 values")
        sets = sets.bool()
    return sets


def _covered(sets, labels) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    sets = _check_sets(sets)
    labels = check_labels(labels, sets.shape[1], sets.shape[0], counted="the sets").to(sets.device)
    return sets, labels, sets.gather(1, labels[:, None]).squeeze(1)


def set_coverage(sets, labels) -> float:
    """Marginal coverage ``1/N sum_n [y_n in C(x_n)]`` of sets bool ``[N, C]``.

    Example::

        >>> import torch
        >>> sets = torch.tensor([[True, False, False], [True, True, False], [False, True, True],
        ...                      [False, False, True]])                     # [N = 4, C = 3]
        >>> labels = torch.tensor([0, 2, 1, 0])
        >>> from bayesdl.evaluation import set_coverage
        >>> set_coverage(sets, labels)          # the true label is in sets 0 and 2
        0.5
    """
    return float(_covered(sets, labels)[2].double().mean())


def mean_set_size(sets) -> float:
    """Average number of labels per set, ``1/N sum_n |C(x_n)|``.

    Example::

        >>> import torch
        >>> sets = torch.tensor([[True, False, False], [True, True, False], [False, True, True],
        ...                      [False, False, True]])                     # [N = 4, C = 3]
        >>> labels = torch.tensor([0, 2, 1, 0])
        >>> from bayesdl.evaluation import mean_set_size
        >>> mean_set_size(sets)                  # (1 + 2 + 2 + 1) / 4
        1.5
    """
    return float(_check_sets(sets).sum(1).double().mean())


@dataclass(frozen=True)
class StratifiedCoverage:
    """Coverage within groups of test points, shapes ``[K]``: ``groups`` (a set size, or a class),
    ``coverage`` (NaN for an empty group) and ``count`` (int64).

    :func:`size_stratified_coverage` and :func:`class_conditional_coverage` return one::

        >>> import torch
        >>> sets = torch.tensor([[True, False, False], [True, True, False], [False, True, True],
        ...                      [False, False, True]])                     # [N = 4, C = 3]
        >>> labels = torch.tensor([0, 2, 1, 0])
        >>> from bayesdl.evaluation import size_stratified_coverage
        >>> by_size = size_stratified_coverage(sets, labels)
        >>> by_size.groups, by_size.count, by_size.coverage     # sets of size 1 and 2
        (tensor([1, 2]), tensor([2, 2]), tensor([0.5000, 0.5000], dtype=torch.float64))
        >>> by_size.as_dict(), by_size.worst, round(by_size.max_deviation(alpha=0.2), 4)
        ({1: 0.5, 2: 0.5}, 0.5, 0.3)
    """

    groups: torch.Tensor
    coverage: torch.Tensor
    count: torch.Tensor

    @property
    def worst(self) -> float:
        """The lowest coverage over the non-empty groups."""
        return float(self.coverage[self.count > 0].min())

    def max_deviation(self, alpha: float) -> float:
        """``max_g |coverage_g - (1 - alpha)|`` over the non-empty groups (for set sizes, the
        size-stratified coverage violation of Angelopoulos et al. 2021, with one stratum per size)."""
        alpha = _check_alpha(alpha)
        return float((self.coverage[self.count > 0] - (1 - alpha)).abs().max())

    def as_dict(self) -> dict[int, float]:
        """``{group: coverage}`` over the non-empty groups."""
        keep = self.count > 0
        return {int(g): float(c) for g, c in zip(self.groups[keep], self.coverage[keep])}


def _grouped(group: torch.Tensor, covered: torch.Tensor, groups: torch.Tensor) -> StratifiedCoverage:
    index = torch.searchsorted(groups, group)
    count = torch.bincount(index, minlength=groups.shape[0])
    hits = torch.zeros(groups.shape[0], dtype=torch.float64, device=group.device)
    hits.index_add_(0, index, covered.double())
    coverage = torch.where(count > 0, hits / count.clamp_min(1), torch.full_like(hits, float("nan")))
    return StratifiedCoverage(groups=groups.cpu(), coverage=coverage.cpu(), count=count.cpu())


def size_stratified_coverage(sets, labels) -> StratifiedCoverage:
    """Coverage among the test points whose set has each size (the sizes that occur, ascending).

    Marginal coverage can hide sets that undercover where they are small (confident) and
    overcover where they are large; adaptive scores (APS, RAPS) even this out (Angelopoulos et
    al. 2021, Sec. 4).

    Example::

        >>> import torch
        >>> sets = torch.tensor([[True, False, False], [True, True, False], [False, True, True],
        ...                      [False, False, True]])                     # [N = 4, C = 3]
        >>> labels = torch.tensor([0, 2, 1, 0])
        >>> from bayesdl.evaluation import size_stratified_coverage
        >>> size_stratified_coverage(sets, labels).as_dict()     # {set size: coverage}
        {1: 0.5, 2: 0.5}
    """
    sets, _, covered = _covered(sets, labels)
    size = sets.sum(1)
    return _grouped(size, covered, torch.unique(size))


def class_conditional_coverage(sets, labels) -> StratifiedCoverage:
    """Coverage among the test points of each true class ``0 .. C-1`` (NaN for a class absent
    from ``labels``); split conformal guarantees only the marginal coverage, not this.

    Example::

        >>> import torch
        >>> sets = torch.tensor([[True, False, False], [True, True, False], [False, True, True],
        ...                      [False, False, True]])                     # [N = 4, C = 3]
        >>> labels = torch.tensor([0, 2, 1, 0])
        >>> from bayesdl.evaluation import class_conditional_coverage
        >>> by_class = class_conditional_coverage(sets, labels)
        >>> by_class.count, by_class.as_dict()                 # {class: coverage}
        (tensor([2, 1, 1]), {0: 0.5, 1: 1.0, 2: 0.0})
    """
    sets, labels, covered = _covered(sets, labels)
    return _grouped(labels, covered, torch.arange(sets.shape[1], device=sets.device))


def conformal_set_metrics(sets, labels) -> dict[str, float]:
    """``coverage``, ``mean_size``, ``empty_fraction`` (sets with no label), and the lowest
    class-conditional and size-stratified coverage (``worst_class_coverage``,
    ``worst_size_coverage``) in one dict.

    Example::

        >>> import torch
        >>> sets = torch.tensor([[True, False, False], [True, True, False], [False, True, True],
        ...                      [False, False, True]])                     # [N = 4, C = 3]
        >>> labels = torch.tensor([0, 2, 1, 0])
        >>> from bayesdl.evaluation import conformal_set_metrics
        >>> conformal_set_metrics(sets, labels)      # doctest: +NORMALIZE_WHITESPACE
        {'coverage': 0.5, 'mean_size': 1.5, 'empty_fraction': 0.0, 'worst_class_coverage': 0.0,
         'worst_size_coverage': 0.5}
    """
    sets, labels, covered = _covered(sets, labels)
    return {
        "coverage": float(covered.double().mean()),
        "mean_size": float(sets.sum(1).double().mean()),
        "empty_fraction": float((sets.sum(1) == 0).double().mean()),
        "worst_class_coverage": class_conditional_coverage(sets, labels).worst,
        "worst_size_coverage": size_stratified_coverage(sets, labels).worst,
    }


def conformal_interval_metrics(lower, upper, y) -> dict[str, float]:
    """``coverage`` (``mean_n [lower_n <= y_n <= upper_n]``), ``mean_width`` and ``median_width``
    of intervals ``[N]`` (a crossed interval, ``lower > upper``, is empty: width 0, never covers).

    Example::

        >>> import torch
        >>> from bayesdl.evaluation import conformal_interval_metrics
        >>> lower, upper = torch.tensor([0.0, 1.0, 2.0]), torch.tensor([1.0, 3.0, 1.5])   # the last is empty
        >>> conformal_interval_metrics(lower, upper, y=torch.tensor([0.5, 4.0, 1.8]))
        {'coverage': 0.3333333333333333, 'mean_width': 1.0, 'median_width': 1.0}
    """
    lower = check_scores(lower, "lower")
    upper = check_scores(upper, "upper")
    check_same_length(lower, upper, ("lower", "upper"))
    y = _targets(y, lower.shape[0]).to(lower.device)
    lower, upper = lower.double(), upper.to(lower.device).double()
    width = (upper - lower).clamp_min(0)
    return {
        "coverage": float(((lower <= y) & (y <= upper)).double().mean()),
        "mean_width": float(width.mean()),
        "median_width": float(torch.quantile(width, 0.5)),
    }


def _subset(prediction, index: torch.Tensor):
    """The predictions of the points ``index``: rows of probs ``[N, C]``, columns of a
    ``RegressionPrediction``'s ``[S, N]``, or of each tensor of a pair."""
    if isinstance(prediction, RegressionPrediction):
        return RegressionPrediction(prediction.mean[:, index], prediction.noise[:, index])
    if isinstance(prediction, ClassPrediction):
        return prediction.predictive[index]
    if isinstance(prediction, tuple):
        return tuple(as_tensor(t, "prediction")[index] for t in prediction)
    return as_tensor(prediction, "prediction")[index]


def split_conformal_trials(make, prediction, targets, *, trials: int = 100, n_calibration: int | None = None,
                           seed: int = 0) -> dict:
    """Split conformal over ``trials`` random calibration/test splits of one set of predictions.

    ``make(t)`` returns an uncalibrated :class:`ConformalClassifier` or :class:`ConformalRegressor`
    for trial ``t`` (its seed, say); ``prediction``: probabilities ``[N, C]`` (or a
    ``ClassPrediction``), a ``RegressionPrediction``, or a pair of ``[N]`` tensors; ``targets``
    ``[N]``; ``n_calibration``: the calibration points of a split (default half). Each split
    calibrates on its calibration points and measures coverage and size (mean set size, or mean
    interval width) on the rest (:func:`random_splits`).

    Returns ``coverage`` (the mean over the splits, which the guarantee bounds), ``coverage_se``
    (its standard error over the splits), ``coverage_min``, ``size``, ``guarantee_low`` and
    ``guarantee_high`` (``1 - alpha`` and ``1 - alpha + 1/(n + 1)``), ``calibration_size`` and
    ``trials``.

    Example (50 splits of 40 predictions, with 20 points calibrating each)::

        >>> import torch
        >>> from bayesdl.evaluation import ConformalClassifier, split_conformal_trials
        >>> _ = torch.manual_seed(0)
        >>> probs = torch.softmax(2 * torch.randn(40, 3), dim=1)
        >>> labels = torch.multinomial(probs, 1).squeeze(1)      # labels drawn from probs: calibrated
        >>> result = split_conformal_trials(lambda t: ConformalClassifier("aps", alpha=0.2, seed=t), probs,
        ...                                 labels, trials=50, n_calibration=20)
        >>> result["trials"], result["calibration_size"], round(result["guarantee_low"], 4)
        (50, 20, 0.8)
        >>> sorted(result)                                   # doctest: +NORMALIZE_WHITESPACE
        ['calibration_size', 'coverage', 'coverage_min', 'coverage_se', 'guarantee_high',
         'guarantee_low', 'size', 'trials']
    """
    if not callable(make):
        raise TypeError("make must be a function of the trial index returning an uncalibrated "
                        "ConformalClassifier or ConformalRegressor")
    targets = as_tensor(targets, "targets")
    n = targets.shape[0] if targets.dim() else 0
    n_cal = n // 2 if n_calibration is None else check_int(n_calibration, "n_calibration", minimum=1)
    coverage, size = [], []
    for t, (cal, test) in enumerate(random_splits(n, n_cal, trials, seed)):
        conformal = make(t)
        if isinstance(conformal, ConformalClassifier):
            conformal.calibrate(_subset(prediction, cal), targets[cal])
            sets = conformal.predict_sets(_subset(prediction, test))
            coverage.append(set_coverage(sets, targets[test]))
            size.append(mean_set_size(sets))
        elif isinstance(conformal, ConformalRegressor):
            conformal.calibrate(_subset(prediction, cal), targets[cal])
            metrics = conformal_interval_metrics(*conformal.predict_intervals(_subset(prediction, test)),
                                                 targets[test])
            coverage.append(metrics["coverage"])
            size.append(metrics["mean_width"])
        else:
            raise TypeError(f"make(t) must return a ConformalClassifier or ConformalRegressor, got "
                            f"{type(conformal).__name__}")
    values = torch.tensor(coverage, dtype=torch.float64)
    se = float(values.std() / math.sqrt(len(values))) if len(values) > 1 else 0.0
    return {"coverage": float(values.mean()), "coverage_se": se, "coverage_min": float(values.min()),
            "size": float(torch.tensor(size, dtype=torch.float64).mean()),
            "guarantee_low": 1 - conformal.alpha, "guarantee_high": 1 - conformal.alpha + 1 / (n_cal + 1),
            "calibration_size": n_cal, "trials": len(values)}
