"""Regression metrics of a posterior predictive: RMSE, test log-likelihood, interval coverage.

All take a :class:`~bayesdl.predictions.RegressionPrediction` (samples first, ``mean``/``noise``
``[S, N]``) and targets ``y`` ``[N]`` in the same units.
"""

from __future__ import annotations

import numbers
from collections.abc import Iterable

import numpy as np
import torch

from bayesdl.checks import check_probability
from bayesdl.predictions import RegressionPrediction

__all__ = ["rmse", "interval_coverage", "regression_metrics", "COVERAGE_LEVELS"]

#: The central-interval levels whose coverage the UCI study reports.
COVERAGE_LEVELS = (0.5, 0.9, 0.95)


def _check_prediction(prediction) -> RegressionPrediction:
    if not isinstance(prediction, RegressionPrediction):
        raise TypeError(f"prediction must be a RegressionPrediction (from Posterior.predict on a regression "
                        f"model), got {type(prediction).__name__}")
    return prediction


def _check_levels(levels) -> list[float]:
    """``levels`` as a list of floats in (0, 1): a sequence (list, tuple, 1-D array) of numbers,
    or one number for a single level."""
    if isinstance(levels, (torch.Tensor, np.ndarray)) and levels.ndim == 0:
        levels = levels.item()
    if isinstance(levels, numbers.Real) and not isinstance(levels, bool):
        levels = [levels]
    elif isinstance(levels, (str, bytes, dict)) or not isinstance(levels, Iterable):
        raise TypeError(f"levels must be a number or a sequence of numbers in (0, 1) such as (0.5, 0.9), "
                        f"got {type(levels).__name__}")
    checked = []
    for level in levels:
        if isinstance(level, (torch.Tensor, np.ndarray)) and level.ndim == 0:
            level = level.item()
        if isinstance(level, bool) or not isinstance(level, numbers.Real):
            raise TypeError(f"levels must be numbers in (0, 1), got an element {level!r} of type "
                            f"{type(level).__name__}")
        if not 0 < float(level) < 1:  # NaN fails too
            raise ValueError(f"levels must lie in (0, 1) (probabilities of central intervals), got {level!r}")
        checked.append(check_probability(level, "level"))
    return checked


def rmse(prediction: RegressionPrediction, y) -> float:
    """Root mean squared error of the predictive mean, ``sqrt(1/N sum_n (y_n - E[y_n])^2)``.

    Example::

        >>> import torch
        >>> from bayesdl.evaluation import RegressionPrediction
        >>> prediction = RegressionPrediction(torch.tensor([[0.0, 1.0, 2.0], [0.2, 1.2, 2.2]]),
        ...                                   torch.full((2, 3), 0.5))        # S = 2 samples, N = 3
        >>> y = torch.tensor([0.1, 1.1, 3.5])
        >>> from bayesdl.evaluation import rmse
        >>> round(rmse(prediction, y), 4)          # predictive means 0.1, 1.1, 2.1: sqrt(1.4^2 / 3)
        0.8083
    """
    prediction = _check_prediction(prediction)
    y = prediction.check_targets(y)
    return float(torch.sqrt(((y - prediction.predictive_mean) ** 2).mean()))


def interval_coverage(prediction: RegressionPrediction, y, levels=COVERAGE_LEVELS) -> dict[float, float]:
    """Fraction of targets inside the central ``level`` interval of the predictive mixture, for
    each level: ``mean_n [ |F(y_n) - 1/2| <= level / 2 ]`` with ``F`` the predictive CDF
    (:meth:`RegressionPrediction.cdf`). A calibrated predictive covers a fraction ``level``.
    The interval itself, ``(lower, upper)`` with ``lower <= y_n <= upper`` exactly when
    ``|F(y_n) - 1/2| <= level / 2``, is :meth:`RegressionPrediction.interval` (the same mixture
    CDF, inverted); plot it with :func:`~bayesdl.evaluation.plotting.plot_predictive_interval`.

    ``levels``: a sequence of numbers in (0, 1), or one number for a single level.

    Example::

        >>> import torch
        >>> from bayesdl.evaluation import RegressionPrediction
        >>> prediction = RegressionPrediction(torch.tensor([[0.0, 1.0, 2.0], [0.2, 1.2, 2.2]]),
        ...                                   torch.full((2, 3), 0.5))        # S = 2 samples, N = 3
        >>> y = torch.tensor([0.1, 1.1, 3.5])
        >>> from bayesdl.evaluation import interval_coverage
        >>> interval_coverage(prediction, y, levels=(0.5, 0.95))    # the third target is far out
        {0.5: 0.6666666666666666, 0.95: 0.6666666666666666}
    """
    prediction = _check_prediction(prediction)
    levels = _check_levels(levels)
    pit = prediction.cdf(y)
    return {level: float(((pit - 0.5).abs() <= level / 2).double().mean()) for level in levels}


def regression_metrics(prediction: RegressionPrediction, y, levels=COVERAGE_LEVELS) -> dict[str, float]:
    """``rmse``, ``log_likelihood`` (mean over examples of the predictive log density, as in Gal &
    Ghahramani 2016), ``coverage_<pct>`` for each level, and the mean ``aleatoric``,
    ``epistemic`` and total predictive ``variance``. ``levels``: as :func:`interval_coverage`;
    two levels may not share a key (0.9 and 0.901 would both be ``coverage_90``).

    Example::

        >>> import torch
        >>> from bayesdl.evaluation import RegressionPrediction
        >>> prediction = RegressionPrediction(torch.tensor([[0.0, 1.0, 2.0], [0.2, 1.2, 2.2]]),
        ...                                   torch.full((2, 3), 0.5))        # S = 2 samples, N = 3
        >>> y = torch.tensor([0.1, 1.1, 3.5])
        >>> from bayesdl.evaluation import regression_metrics
        >>> metrics = regression_metrics(prediction, y, levels=(0.9,))
        >>> {name: round(value, 4) for name, value in metrics.items()}   # doctest: +NORMALIZE_WHITESPACE
        {'rmse': 0.8083, 'log_likelihood': -1.5027, 'coverage_90': 0.6667,
         'aleatoric': 0.25, 'epistemic': 0.01, 'variance': 0.26}
    """
    prediction = _check_prediction(prediction)
    levels, keys = _check_levels(levels), {}
    for level in levels:
        key = f"coverage_{round(100 * level)}"
        if keys.get(key, level) != level:
            raise ValueError(f"levels {keys[key]} and {level} would both be reported as {key}; "
                             "pass levels that differ in whole percent")
        keys[key] = level
    metrics = {"rmse": rmse(prediction, y),
               "log_likelihood": float(prediction.log_likelihood(y).mean())}
    for level, value in interval_coverage(prediction, y, levels).items():
        metrics[f"coverage_{round(100 * level)}"] = value
    metrics["aleatoric"] = float(prediction.aleatoric.mean())
    metrics["epistemic"] = float(prediction.epistemic.mean())
    metrics["variance"] = float(prediction.variance.mean())
    return metrics
