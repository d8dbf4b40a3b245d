"""Regression metrics of a posterior predictive: RMSE, test log-likelihood, interval coverage.

All take a :class:`~bayesdl.predictions.RegressionPrediction` (samples first, ``mean``/``noise``
``[S, N]``) and targets ``y`` ``[N]`` in the same units.
"""

from __future__ import annotations

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


def rmse(prediction: RegressionPrediction, y) -> float:
    """Root mean squared error of the predictive mean, ``sqrt(1/N sum_n (y_n - E[y_n])^2)``."""
    prediction = _check_prediction(prediction)
    y = prediction.check_targets(y)
    return float(torch.sqrt(((y - prediction.predictive_mean) ** 2).mean()))


def interval_coverage(prediction: RegressionPrediction, y, levels=COVERAGE_LEVELS) -> dict[float, float]:
    """Fraction of targets inside the central ``level`` interval of the predictive mixture, for
    each level: ``mean_n [ |F(y_n) - 1/2| <= level / 2 ]`` with ``F`` the predictive CDF
    (:meth:`RegressionPrediction.cdf`). A calibrated predictive covers a fraction ``level``."""
    prediction = _check_prediction(prediction)
    pit = prediction.cdf(y)
    levels = [check_probability(level, "level") for level in levels]
    return {level: float(((pit - 0.5).abs() <= level / 2).double().mean()) for level in levels}


def regression_metrics(prediction: RegressionPrediction, y, levels=COVERAGE_LEVELS) -> dict[str, float]:
    """``rmse``, ``log_likelihood`` (mean over examples of the predictive log density, as in Gal &
    Ghahramani 2016), ``coverage_<pct>`` for each level, and the mean ``aleatoric``,
    ``epistemic`` and total predictive ``variance``."""
    prediction = _check_prediction(prediction)
    metrics = {"rmse": rmse(prediction, y),
               "log_likelihood": float(prediction.log_likelihood(y).mean())}
    for level, value in interval_coverage(prediction, y, levels).items():
        metrics[f"coverage_{round(100 * level)}"] = value
    metrics["aleatoric"] = float(prediction.aleatoric.mean())
    metrics["epistemic"] = float(prediction.epistemic.mean())
    metrics["variance"] = float(prediction.variance.mean())
    return metrics
