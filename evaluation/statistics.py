"""Statistics of metrics over a finite test set: how much of a difference the data supports.

A metric computed on a test set is itself a random quantity -- another draw of test examples
would give another value. :func:`paired_bootstrap_difference` puts an interval on the
difference of one metric between two scorers evaluated on the *same* examples.

Example::

    >>> import numpy as np
    >>> from bayesdl.evaluation import aupr_error
    >>> rng = np.random.default_rng(0)
    >>> correct = rng.random(500) < 0.9
    >>> sharp = np.where(correct, 0.9, 0.6) + 0.1 * rng.random(500)   # separates errors well
    >>> noisy = rng.random(500)                                       # does not
    >>> d = paired_bootstrap_difference(aupr_error, (sharp, correct), (noisy, correct), n_resamples=200)
    >>> d.low <= d.value <= d.high
    True
"""

from __future__ import annotations

import numbers
from collections.abc import Callable, Sequence
from typing import NamedTuple

import numpy as np
import torch

__all__ = ["BootstrapDifference", "paired_bootstrap_difference"]


class BootstrapDifference(NamedTuple):
    """A difference of a metric between two scorers and its bootstrap interval.

    ``value`` is ``metric(*reference) - metric(*other)`` on the whole test set; ``low`` and
    ``high`` bound its percentile bootstrap interval. It unpacks as ``value, low, high``.

    :func:`paired_bootstrap_difference` returns one::

        >>> import numpy as np
        >>> from bayesdl.evaluation import BootstrapDifference, paired_bootstrap_difference
        >>> def accuracy(correct):
        ...     return float(np.mean(correct))
        >>> a = np.array([1, 1, 1, 0, 1, 1, 0, 1])          # per-example correctness of two classifiers
        >>> b = np.array([1, 0, 1, 0, 1, 0, 0, 1])
        >>> gap = paired_bootstrap_difference(accuracy, (a,), (b,), n_resamples=100)
        >>> isinstance(gap, BootstrapDifference), gap.value, gap.low <= gap.value <= gap.high
        (True, 0.25, True)
    """

    value: float
    low: float
    high: float


def _check_arrays(arrays, name: str) -> list[np.ndarray]:
    hint = f"{name} must be a tuple of per-example arrays [N], e.g. (confidence, correct)"
    if isinstance(arrays, (np.ndarray, torch.Tensor, str, bytes)) or not isinstance(arrays, Sequence):
        raise ValueError(f"{hint}, got {type(arrays).__name__}")
    if len(arrays) == 0:
        raise ValueError(f"{hint}, got an empty {type(arrays).__name__}")
    checked = []
    for i, array in enumerate(arrays):
        if isinstance(array, torch.Tensor):
            array = array.detach().cpu()
        array = np.asarray(array)
        if array.ndim != 1:
            raise ValueError(f"{hint}: {name}[{i}] has shape {array.shape}, not one value per example")
        checked.append(array)
    return checked


def paired_bootstrap_difference(metric: Callable[..., float], reference, other, *, n_resamples: int = 2000,
                                seed: int = 0, confidence: float = 0.95) -> BootstrapDifference:
    """``metric(*reference) - metric(*other)`` with its paired percentile bootstrap interval.

    ``reference`` and ``other`` are tuples of per-example arrays ``[N]`` over the same ``N``
    test examples, in the order ``metric`` takes them (e.g. ``(confidence, correct)`` for
    :func:`~bayesdl.evaluation.aupr_error`); ``metric(*arrays)`` returns a number. Each of
    ``n_resamples`` bootstrap replicates draws ``N`` example indices with replacement and
    recomputes the difference on them; the interval is the central ``confidence`` range of
    those replicates (the percentile method of scipy's :func:`scipy.stats.bootstrap`, with
    ``rng=np.random.default_rng(seed)``: the same seed gives the same interval).

    Why paired: both scorers are judged on the same examples, so one replicate resamples the
    *same* indices for both. Their differences then cancel the variation of the test set that
    they share (the hard examples are hard for both), and the interval is much narrower than
    that of two independent bootstraps -- it is the noise of the *difference* that decides
    whether one scorer is better.

    With a few dozen errors in thousands of test images, a ranking metric such as AUPR-error
    moves by points when a handful of errors change rank: an interval that contains 0 says the
    data does not support the difference. A metric that cannot be computed on some resample
    (e.g. one without errors) raises its own error.

    Returns a :class:`BootstrapDifference` ``(value, low, high)``. Raises ``ValueError``
    unless every array is 1-D with the same length ``N >= 2``, both tuples hold the same number
    of arrays, ``n_resamples`` is an integer ``>= 1`` and ``0 < confidence < 1``.

    Example (two confidences of the same classifier on its test set, ``correct`` ``[N]`` bool)::

        gap = paired_bootstrap_difference(aupr_error, (confidnet, correct), (mcp, correct))
        value, low, high = gap          # ConfidNet minus MCP, and its 95% interval
        supported = low > 0 or high < 0

    Runnable example (a confidence that ranks the errors last against one that ranks them at random)::

        >>> import numpy as np
        >>> from bayesdl.evaluation import aupr_error, paired_bootstrap_difference
        >>> rng = np.random.default_rng(0)
        >>> correct = rng.random(200) < 0.8
        >>> sharp = np.where(correct, 0.9, 0.5) + 0.05 * rng.random(200)
        >>> noisy = rng.random(200)
        >>> gap = paired_bootstrap_difference(aupr_error, (sharp, correct), (noisy, correct), n_resamples=100)
        >>> value, low, high = gap
        >>> round(value, 2), low <= value <= high, low > 0         # supported: the interval excludes 0
        (0.72, True, True)
    """
    from scipy.stats import bootstrap

    if not callable(metric):
        raise TypeError(f"metric must be a function of the arrays, got {type(metric).__name__}")
    reference = _check_arrays(reference, "reference")
    other = _check_arrays(other, "other")
    if len(reference) != len(other):
        raise ValueError(f"reference and other must hold the same number of arrays (the arguments of "
                         f"metric), got {len(reference)} and {len(other)}")
    data = reference + other
    lengths = [len(a) for a in data]
    if len(set(lengths)) != 1:
        raise ValueError(f"every array of reference and other must have one value per test example (the "
                         f"same length: the bootstrap is paired), got lengths {lengths[:len(reference)]} "
                         f"(reference) and {lengths[len(reference):]} (other)")
    if lengths[0] < 2:
        raise ValueError(f"a bootstrap needs at least 2 examples, got {lengths[0]}")
    if isinstance(n_resamples, bool) or not isinstance(n_resamples, numbers.Integral) or n_resamples < 1:
        raise ValueError(f"n_resamples must be an integer >= 1, got {n_resamples!r}")
    if (isinstance(confidence, bool) or not isinstance(confidence, numbers.Real)
            or not 0.0 < float(confidence) < 1.0):  # NaN fails too
        raise ValueError(f"confidence must be a number in (0, 1), e.g. 0.95, got {confidence!r}")
    if isinstance(seed, bool) or not isinstance(seed, numbers.Integral) or seed < 0:
        raise ValueError(f"seed must be a non-negative integer, got {seed!r}")
    k = len(reference)

    def difference(*arrays):
        return metric(*arrays[:k]) - metric(*arrays[k:])

    interval = bootstrap(data, difference, paired=True, vectorized=False, n_resamples=int(n_resamples),
                         confidence_level=float(confidence), method="percentile",
                         rng=np.random.default_rng(int(seed))).confidence_interval
    return BootstrapDifference(float(difference(*data)), float(interval.low), float(interval.high))
