"""Ranking metrics for confidence scores: failure prediction and OOD detection.

Convention for every score in the library: **higher means more confident / more
in-distribution**. The curves and areas come from scikit-learn.

Failure prediction (Corbiere et al. 2019, "Addressing failure prediction by learning model
confidence"): does the confidence separate correct predictions from errors?

OOD detection (Hendrycks & Gimpel 2017; Liang et al. 2018): does the score separate
in-distribution inputs from out-of-distribution ones?

Example::

    >>> conf = [0.9, 0.8, 0.7, 0.6]
    >>> correct = [True, True, False, True]
    >>> m = failure_metrics(conf, correct)
    >>> round(m["auroc"], 4), round(m["aupr_error"], 4)
    (0.6667, 0.5)
"""

from __future__ import annotations

import numpy as np
import torch
from sklearn.metrics import average_precision_score, roc_auc_score, roc_curve

from bayesdl.checks import check_probability

from ._inputs import check_binary, check_scores

__all__ = ["failure_metrics", "aupr_error", "ood_metrics", "fpr_at_tpr"]


def fpr_at_tpr(positive, scores, tpr: float = 0.95) -> float:
    """False-positive rate at the highest threshold that accepts >= ``tpr`` of the positives.

    Inputs are accepted when ``score >= threshold``. ``positive`` ``[N]`` is boolean (or 0/1),
    ``scores`` ``[N]`` finite, ``tpr`` in (0, 1]; both classes must be present (``ValueError``
    otherwise: with no negatives the FPR is undefined).

    Example::

        >>> from bayesdl.evaluation import fpr_at_tpr
        >>> positive = [True, True, True, False, False]
        >>> scores = [0.9, 0.8, 0.3, 0.5, 0.1]
        >>> fpr_at_tpr(positive, scores, tpr=0.6)    # the threshold 0.8 accepts 2 of 3 positives, no negative
        0.0
        >>> fpr_at_tpr(positive, scores, tpr=1.0)    # accepting all positives (0.3) accepts one negative
        0.5
    """
    tpr = check_probability(tpr, "tpr", upper_inclusive=True, lower_inclusive=False)
    scores = check_scores(scores, "scores")
    positive = check_binary(positive, "positive", scores.shape[0]).numpy()
    _both_classes(positive, "the false-positive rate at a TPR", "at least one positive and one negative "
                  f"example is needed, got {int(positive.sum())} positive out of {len(positive)}")
    fpr_curve, tpr_curve, _ = roc_curve(positive, scores.double().numpy(), drop_intermediate=False)
    index = int(np.searchsorted(tpr_curve, tpr - 1e-12, side="left"))
    return float(fpr_curve[min(index, len(fpr_curve) - 1)])


def _both_classes(positive: np.ndarray, what: str, hint: str) -> None:
    if positive.all() or not positive.any():
        raise ValueError(f"cannot compute {what}: {hint}")


def failure_metrics(confidence, correct) -> dict[str, float]:
    """How well ``confidence`` ``[N]`` separates correct predictions from errors.

    Returns a dict with

    - ``aupr_error``: average precision with the *errors* as positives, ranked by low
      confidence (the main metric of Corbiere et al.);
    - ``aupr_success``: average precision with the correct predictions as positives;
    - ``auroc``: area under the ROC curve of correct vs wrong;
    - ``fpr_at_95_tpr``: fraction of errors still accepted at the threshold that
      accepts 95% of the correct predictions.

    Needs at least one correct and one wrong prediction.

    Example::

        >>> from bayesdl.evaluation import failure_metrics
        >>> confidence = [0.9, 0.8, 0.7, 0.6]
        >>> correct = [True, True, False, True]            # the error is not the least confident
        >>> {name: round(value, 4) for name, value in failure_metrics(confidence, correct).items()}
        {'aupr_error': 0.5, 'aupr_success': 0.9167, 'auroc': 0.6667, 'fpr_at_95_tpr': 1.0}
    """
    conf, ok = _failure_inputs(confidence, correct, "failure metrics")
    return {
        "aupr_error": _aupr_error(conf, ok),
        "aupr_success": float(average_precision_score(ok, conf)),
        "auroc": float(roc_auc_score(ok, conf)),
        "fpr_at_95_tpr": fpr_at_tpr(ok, conf, 0.95),
    }


def aupr_error(confidence, correct) -> float:
    """``failure_metrics(confidence, correct)["aupr_error"]`` alone: the average precision with
    the errors as positives, ranked by low confidence -- for loops such as a bootstrap, where
    the other three metrics would be wasted work.

    Example::

        >>> from bayesdl.evaluation import aupr_error
        >>> aupr_error([0.9, 0.8, 0.7, 0.6], [True, True, True, False])   # the error ranked last: perfect
        1.0
        >>> round(aupr_error([0.9, 0.8, 0.7, 0.6], [True, True, False, True]), 4)
        0.5
    """
    return _aupr_error(*_failure_inputs(confidence, correct, "AUPR-error"))


def _failure_inputs(confidence, correct, what: str) -> tuple[np.ndarray, np.ndarray]:
    confidence = check_scores(confidence, "confidence")
    correct = check_binary(correct, "correct", confidence.shape[0])
    conf, ok = confidence.double().numpy(), correct.numpy()
    _both_classes(ok, what, "at least one correct and one wrong prediction is needed, got "
                  f"{int(ok.sum())} correct out of {len(ok)}")
    return conf, ok


def _aupr_error(conf: np.ndarray, ok: np.ndarray) -> float:
    return float(average_precision_score(~ok, -conf))


def ood_metrics(score_in, score_out) -> dict[str, float]:
    """How well a score separates in-distribution inputs from OOD inputs.

    ``score_in`` ``[N_in]`` and ``score_out`` ``[N_out]`` are the scores of the two sets
    (higher = more in-distribution). Returns a dict with

    - ``auroc``: area under the ROC curve, in-distribution as positives;
    - ``aupr_in``: average precision with the in-distribution set as positives;
    - ``aupr_out``: average precision with the OOD set as positives (ranked by -score);
    - ``fpr_at_95_tpr``: fraction of OOD inputs accepted at the threshold that accepts
      95% of the in-distribution inputs.

    Example (scores such as :func:`~bayesdl.evaluation.max_probability`; higher = in-distribution)::

        >>> from bayesdl.evaluation import ood_metrics
        >>> score_in = [0.9, 0.8, 0.95, 0.6]
        >>> score_out = [0.5, 0.7, 0.55]
        >>> {name: round(value, 4) for name, value in ood_metrics(score_in, score_out).items()}
        {'auroc': 0.9167, 'aupr_in': 0.95, 'aupr_out': 0.9167, 'fpr_at_95_tpr': 0.3333}
    """
    score_in = check_scores(score_in, "score_in").double()
    score_out = check_scores(score_out, "score_out").double()
    scores = torch.cat([score_in, score_out]).numpy()
    is_in = np.concatenate([np.ones(len(score_in), bool), np.zeros(len(score_out), bool)])
    return {
        "auroc": float(roc_auc_score(is_in, scores)),
        "aupr_in": float(average_precision_score(is_in, scores)),
        "aupr_out": float(average_precision_score(~is_in, -scores)),
        "fpr_at_95_tpr": fpr_at_tpr(is_in, scores, 0.95),
    }
