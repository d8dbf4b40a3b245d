"""Evaluation: pure functions of posterior-predictive samples.

No training happens here. Inputs are tensors (numpy arrays are accepted), samples first:
``probs`` is ``[S, N, C]`` for the uncertainty summaries and ``[N, C]`` (the predictive
mean) for calibration. Entropies and mutual information are in nats. Confidence scores
are "higher = more confident / more in-distribution" everywhere. The regression metrics take
a typed :class:`~bayesdl.predictions.RegressionPrediction`; the typed predictions live in
:mod:`bayesdl.predictions` and are re-exported here. :func:`paired_bootstrap_difference` puts
an interval on the difference of a metric between two scorers on the same test examples.
:mod:`~bayesdl.evaluation.conformal` turns the predictive of any method into conformal sets
(classification) and intervals (regression) with a finite-sample coverage guarantee.

Nothing here imports :mod:`bayesdl.models`, :mod:`bayesdl.inference` or
:mod:`bayesdl.experiments` (tests/test_structure.py checks it).
"""

if __name__ != "bayesdl.evaluation":  # e.g. `import evaluation` with the repository root on sys.path
    raise ImportError(
        f"this folder is the package bayesdl.evaluation: import it as `bayesdl.evaluation`, not `{__name__}` "
        "(one file must never be importable under two names)"
    )

from bayesdl.predictions import ClassPrediction, Prediction, RegressionPrediction

from .acquisition import (
    ACQUISITION_FUNCTIONS,
    BatchSelection,
    acquire,
    bald,
    batchbald,
    max_entropy,
    mean_std,
    random_scores,
    variation_ratios,
)
from .calibration import (
    ReliabilityBins,
    apply_temperature,
    brier_score,
    calibration_metrics,
    expected_calibration_error,
    fit_temperature,
    maximum_calibration_error,
    negative_log_likelihood,
    reliability_bins,
)
from .conformal import (
    ConformalClassifier,
    ConformalRegressor,
    StratifiedCoverage,
    class_conditional_coverage,
    classification_scores,
    conformal_interval_metrics,
    conformal_quantile,
    conformal_set_metrics,
    mean_set_size,
    mixture_quantiles,
    prediction_intervals,
    prediction_sets,
    random_splits,
    regression_scores,
    required_calibration_size,
    set_coverage,
    size_stratified_coverage,
    split_conformal_trials,
)
from .ood import max_probability, negative_entropy, negative_mutual_information, odin_scores, tune_odin
from .plotting import (
    grid_inputs,
    new_figure,
    plot_precision_recall,
    plot_predictive_interval,
    plot_probability_map,
    plot_reliability_diagram,
    plot_roc,
)
from .ranking import aupr_error, failure_metrics, fpr_at_tpr, ood_metrics
from .regression import interval_coverage, regression_metrics, rmse
from .statistics import BootstrapDifference, paired_bootstrap_difference
from .uncertainty import expected_entropy, mutual_information, predictive_entropy, variation_ratio

__all__ = [
    "variation_ratio",
    "predictive_entropy",
    "expected_entropy",
    "mutual_information",
    "bald",
    "variation_ratios",
    "max_entropy",
    "mean_std",
    "random_scores",
    "batchbald",
    "BatchSelection",
    "acquire",
    "ACQUISITION_FUNCTIONS",
    "ReliabilityBins",
    "reliability_bins",
    "expected_calibration_error",
    "maximum_calibration_error",
    "negative_log_likelihood",
    "brier_score",
    "calibration_metrics",
    "fit_temperature",
    "apply_temperature",
    "failure_metrics",
    "aupr_error",
    "ood_metrics",
    "fpr_at_tpr",
    "max_probability",
    "negative_entropy",
    "negative_mutual_information",
    "odin_scores",
    "tune_odin",
    "rmse",
    "interval_coverage",
    "regression_metrics",
    "conformal_quantile",
    "required_calibration_size",
    "classification_scores",
    "prediction_sets",
    "mixture_quantiles",
    "regression_scores",
    "prediction_intervals",
    "ConformalClassifier",
    "random_splits",
    "split_conformal_trials",
    "ConformalRegressor",
    "StratifiedCoverage",
    "set_coverage",
    "mean_set_size",
    "size_stratified_coverage",
    "class_conditional_coverage",
    "conformal_set_metrics",
    "conformal_interval_metrics",
    "paired_bootstrap_difference",
    "BootstrapDifference",
    "Prediction",
    "ClassPrediction",
    "RegressionPrediction",
    "new_figure",
    "plot_reliability_diagram",
    "plot_precision_recall",
    "plot_roc",
    "plot_predictive_interval",
    "grid_inputs",
    "plot_probability_map",
]
