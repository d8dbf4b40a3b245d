"""Validation of the arrays metrics take: probability tensors, scores, binary flags.

Labels are checked by ``bayesdl.checks.check_labels``, shared with the models; probabilities by
``bayesdl.predictions.check_probs``, shared with :class:`~bayesdl.predictions.ClassPrediction`
(one check, so a prediction and a metric accept exactly the same arrays).
"""

from __future__ import annotations

import torch

from bayesdl.checks import as_tensor, check_finite, check_nonempty, check_same_length
from bayesdl.predictions import check_probs

__all__ = ["check_probs", "check_scores", "check_binary"]


def check_scores(scores, name: str) -> torch.Tensor:
    """Return a non-empty, finite 1-D float tensor of scores."""
    scores = as_tensor(scores, name)
    if scores.dim() != 1:
        raise ValueError(f"{name} must have shape [N], got shape {tuple(scores.shape)}")
    check_nonempty(scores, name)
    scores = scores.double() if not scores.is_floating_point() else scores
    return check_finite(scores, name)


def check_binary(values, name: str, n: int) -> torch.Tensor:
    """Return a bool tensor of shape [n] from booleans or 0/1 values."""
    values = as_tensor(values, name)
    if values.dim() != 1:
        raise ValueError(f"{name} must have shape [N], got shape {tuple(values.shape)}")
    if values.dtype != torch.bool:
        if not bool(((values == 0) | (values == 1)).all()):
            raise ValueError(f"{name} must be booleans or 0/1 values")
        values = values.bool()
    check_same_length(values, torch.empty(n), (name, "the scores"))
    return values
