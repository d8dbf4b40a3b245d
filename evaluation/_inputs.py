"""Validation of the arrays metrics take: probability tensors, scores, binary flags.

Labels are checked by ``bayesdl.checks.check_labels``, shared with the models.
"""

from __future__ import annotations

import torch

from bayesdl.checks import as_tensor, check_finite, check_nonempty, check_same_length


def _sum_tolerance(dtype: torch.dtype) -> float:
    """How far from 1 a probability vector of ``dtype`` may sum (rounding of a softmax)."""
    return max(1e-4, 10 * torch.finfo(dtype).eps)


def check_probs(probs, name: str = "probs", *, ndim: int) -> torch.Tensor:
    """Return ``probs`` as a floating tensor with ``ndim`` dims, probabilities along the last.

    Raises ``ValueError`` for a wrong rank, an empty set, non-finite or negative entries,
    or rows that do not sum to 1 (within the rounding of the dtype).
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
