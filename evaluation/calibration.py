"""Calibration: reliability bins, ECE/MCE, NLL, Brier score, temperature scaling.

These take the *predictive* probabilities ``probs`` of shape ``[N, C]`` -- for a sampled
posterior, the mean over passes ``probs.mean(0)`` -- and integer ``labels`` of shape ``[N]``.

Binning follows Guo et al. (2017), "On calibration of modern neural networks": ``M``
equal-width bins, bin ``m`` holding the predictions whose confidence (max probability)
lies in ``((m-1)/M, m/M]``;

.. math::

    \\mathrm{ECE} = \\sum_m \\frac{|B_m|}{N} |\\mathrm{acc}(B_m) - \\mathrm{conf}(B_m)|,
    \\qquad \\mathrm{MCE} = \\max_m |\\mathrm{acc}(B_m) - \\mathrm{conf}(B_m)|.

Example::

    >>> import torch
    >>> probs = torch.tensor([[0.9, 0.1], [0.9, 0.1], [0.6, 0.4], [0.3, 0.7]])
    >>> labels = torch.tensor([0, 1, 0, 1])
    >>> round(expected_calibration_error(probs, labels, n_bins=10), 4)
    0.375
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from scipy.optimize import minimize_scalar

from bayesdl.checks import as_tensor, check_finite, check_int, check_labels, check_positive

from ._inputs import check_probs

__all__ = [
    "ReliabilityBins",
    "reliability_bins",
    "expected_calibration_error",
    "maximum_calibration_error",
    "negative_log_likelihood",
    "brier_score",
    "calibration_metrics",
    "fit_temperature",
    "apply_temperature",
]


def _check_probs_and_labels(probs, labels) -> tuple[torch.Tensor, torch.Tensor]:
    """``probs`` ``[N, C]`` and ``labels`` ``[N]`` checked, on the CPU (the metrics are CPU
    reductions to floats, so predictions left on a GPU, and labels on another device, work)."""
    probs = check_probs(probs, ndim=2).cpu()
    return probs, check_labels(labels, probs.shape[1], probs.shape[0]).cpu()


@dataclass(frozen=True)
class ReliabilityBins:
    """Data of a reliability diagram: per equal-width confidence bin, shapes ``[M]``.

    ``accuracy`` and ``confidence`` are NaN for empty bins (``count == 0``).

    :func:`reliability_bins` returns one::

        >>> import torch
        >>> probs = torch.tensor([[0.9, 0.1], [0.9, 0.1], [0.6, 0.4], [0.3, 0.7]])   # [N, C]
        >>> labels = torch.tensor([0, 1, 0, 1])
        >>> from bayesdl.evaluation import reliability_bins
        >>> bins = reliability_bins(probs, labels, n_bins=5)       # edges 0, 0.2, ..., 1
        >>> bins.count
        tensor([0, 0, 1, 1, 2])
        >>> bins.accuracy                                          # NaN in the empty bins
        tensor([   nan,    nan, 1.0000, 1.0000, 0.5000], dtype=torch.float64)
        >>> round(bins.ece, 4), round(bins.mce, 4)
        (0.375, 0.4)
    """

    edges: torch.Tensor  # [M + 1], 0 .. 1
    accuracy: torch.Tensor
    confidence: torch.Tensor
    count: torch.Tensor  # int64

    @property
    def gaps(self) -> torch.Tensor:
        """``|acc - conf|`` per bin, 0 for empty bins."""
        return torch.nan_to_num((self.accuracy - self.confidence).abs(), nan=0.0)

    @property
    def ece(self) -> float:
        """Expected calibration error: bin gaps weighted by the fraction of examples."""
        return float((self.count.to(self.gaps.dtype) * self.gaps).sum() / self.count.sum())

    @property
    def mce(self) -> float:
        """Maximum calibration error over the non-empty bins."""
        return float(self.gaps[self.count > 0].max())


def reliability_bins(probs, labels, n_bins: int = 15) -> ReliabilityBins:
    """Per-bin accuracy, mean confidence and count of the predictions, for ``n_bins`` bins.

    Example::

        >>> import torch
        >>> probs = torch.tensor([[0.9, 0.1], [0.9, 0.1], [0.6, 0.4], [0.3, 0.7]])   # [N, C]
        >>> labels = torch.tensor([0, 1, 0, 1])
        >>> from bayesdl.evaluation import reliability_bins
        >>> bins = reliability_bins(probs, labels, n_bins=5)
        >>> bins.edges.tolist()
        [0.0, 0.2, 0.4, 0.6, 0.8, 1.0]
        >>> bins.count.tolist(), [round(v, 4) for v in bins.confidence[2:].tolist()]
        ([0, 0, 1, 1, 2], [0.6, 0.7, 0.9])
    """
    n_bins = check_int(n_bins, "n_bins", minimum=1)
    probs, labels = _check_probs_and_labels(probs, labels)
    confidence, predicted = probs.max(-1)
    # Bin in the dtype of the input, so a confidence equal to an edge (0.6 in float32,
    # say) falls in the bin that edge closes, as the definition asks.
    inner = torch.linspace(0.0, 1.0, n_bins + 1, dtype=probs.dtype)[1:-1]
    # bucketize(right=False) gives i with inner[i-1] < conf <= inner[i].
    index = torch.bucketize(confidence, inner, right=False)
    confidence = confidence.double()
    correct = (predicted == labels).double()
    edges = torch.linspace(0.0, 1.0, n_bins + 1, dtype=torch.float64)
    count = torch.bincount(index, minlength=n_bins)
    sum_conf = torch.zeros(n_bins, dtype=torch.float64).index_add_(0, index, confidence)
    sum_acc = torch.zeros(n_bins, dtype=torch.float64).index_add_(0, index, correct)
    denom = count.double()
    empty = torch.full_like(denom, float("nan"))
    accuracy = torch.where(count > 0, sum_acc / denom, empty)
    mean_conf = torch.where(count > 0, sum_conf / denom, empty)
    return ReliabilityBins(edges=edges, accuracy=accuracy, confidence=mean_conf, count=count)


def expected_calibration_error(probs, labels, n_bins: int = 15) -> float:
    """ECE of ``probs`` ``[N, C]`` against ``labels`` ``[N]`` with ``n_bins`` equal-width bins.

    Example::

        >>> import torch
        >>> probs = torch.tensor([[0.9, 0.1], [0.9, 0.1], [0.6, 0.4], [0.3, 0.7]])   # [N, C]
        >>> labels = torch.tensor([0, 1, 0, 1])
        >>> from bayesdl.evaluation import expected_calibration_error
        >>> round(expected_calibration_error(probs, labels, n_bins=5), 4)   # (0.4 + 0.3 + 2 x 0.4) / 4
        0.375
    """
    return reliability_bins(probs, labels, n_bins).ece


def maximum_calibration_error(probs, labels, n_bins: int = 15) -> float:
    """MCE: the largest ``|acc - conf|`` over the non-empty bins.

    Example::

        >>> import torch
        >>> probs = torch.tensor([[0.9, 0.1], [0.9, 0.1], [0.6, 0.4], [0.3, 0.7]])   # [N, C]
        >>> labels = torch.tensor([0, 1, 0, 1])
        >>> from bayesdl.evaluation import maximum_calibration_error
        >>> round(maximum_calibration_error(probs, labels, n_bins=5), 4)    # the 0.6 bin is 100% right
        0.4
    """
    return reliability_bins(probs, labels, n_bins).mce


def negative_log_likelihood(probs, labels) -> float:
    """Mean ``-ln p(y_n)`` over the examples, in nats.

    A probability that underflowed to 0 is read as the smallest positive float of its
    dtype, so one hopeless prediction gives a large finite loss instead of Inf.

    Example::

        >>> import torch
        >>> probs = torch.tensor([[0.9, 0.1], [0.9, 0.1], [0.6, 0.4], [0.3, 0.7]])   # [N, C]
        >>> labels = torch.tensor([0, 1, 0, 1])
        >>> from bayesdl.evaluation import negative_log_likelihood
        >>> round(negative_log_likelihood(probs, labels), 4)   # -(ln 0.9 + ln 0.1 + ln 0.6 + ln 0.7) / 4
        0.8189
    """
    probs, labels = _check_probs_and_labels(probs, labels)
    picked = probs.gather(1, labels[:, None]).squeeze(1).double()
    return float(-torch.log(picked.clamp_min(torch.finfo(probs.dtype).tiny)).mean())


def brier_score(probs, labels) -> float:
    """Multi-class Brier score ``mean_n sum_c (p_nc - 1[y_n = c])^2`` (Brier 1950), in [0, 2].

    Example::

        >>> import torch
        >>> probs = torch.tensor([[0.9, 0.1], [0.9, 0.1], [0.6, 0.4], [0.3, 0.7]])   # [N, C]
        >>> labels = torch.tensor([0, 1, 0, 1])
        >>> from bayesdl.evaluation import brier_score
        >>> round(brier_score(probs, labels), 4)       # (0.02 + 1.62 + 0.32 + 0.18) / 4
        0.535
    """
    probs, labels = _check_probs_and_labels(probs, labels)
    probs = probs.double()
    onehot = torch.nn.functional.one_hot(labels, probs.shape[1]).double()
    return float(((probs - onehot) ** 2).sum(-1).mean())


def calibration_metrics(probs, labels, n_bins: int = 15) -> dict[str, float]:
    """Accuracy, ECE, MCE, NLL and Brier score of ``probs`` ``[N, C]`` in one dict.

    Example::

        >>> import torch
        >>> probs = torch.tensor([[0.9, 0.1], [0.9, 0.1], [0.6, 0.4], [0.3, 0.7]])   # [N, C]
        >>> labels = torch.tensor([0, 1, 0, 1])
        >>> from bayesdl.evaluation import calibration_metrics
        >>> {name: round(value, 4) for name, value in calibration_metrics(probs, labels, n_bins=5).items()}
        {'accuracy': 0.75, 'ece': 0.375, 'mce': 0.4, 'nll': 0.8189, 'brier': 0.535}
    """
    bins = reliability_bins(probs, labels, n_bins)
    probs, labels = _check_probs_and_labels(probs, labels)
    return {
        "accuracy": float((probs.argmax(-1) == labels).double().mean()),
        "ece": bins.ece,
        "mce": bins.mce,
        "nll": negative_log_likelihood(probs, labels),
        "brier": brier_score(probs, labels),
    }


def _check_logits(logits, name: str = "logits") -> torch.Tensor:
    logits = as_tensor(logits, name)
    if logits.dim() != 2 or logits.shape[1] < 2:
        raise ValueError(f"{name} must have shape [N, C] with C >= 2, got {tuple(logits.shape)}")
    if logits.shape[0] == 0:
        raise ValueError(f"{name} is empty; pass at least one example")
    return check_finite(logits.double(), name)


def _check_bounds(bounds) -> tuple[float, float]:
    """``bounds`` of :func:`fit_temperature` as ``(low, high)`` floats with ``0 < low < high``."""
    if isinstance(bounds, (torch.Tensor, np.ndarray)):
        bounds = bounds.tolist() if bounds.ndim == 1 else bounds
    if not isinstance(bounds, Sequence) or isinstance(bounds, (str, bytes)):
        raise TypeError(f"bounds must be a pair (low, high) of temperatures such as (0.05, 20.0), "
                        f"got {type(bounds).__name__}")
    if len(bounds) != 2:
        raise ValueError(f"bounds must be a pair (low, high) of temperatures, got {len(bounds)} "
                         f"value{'s' if len(bounds) != 1 else ''}: {tuple(bounds)}")
    low, high = (check_positive(value, f"bounds[{i}]") for i, value in enumerate(bounds))
    if not low < high:
        raise ValueError(f"bounds must satisfy 0 < low < high, got {tuple(bounds)}; pass (low, high) in "
                         "increasing order")
    return low, high


def fit_temperature(logits, labels, bounds: tuple[float, float] = (0.05, 20.0)) -> float:
    """Temperature ``T`` minimising the NLL of ``softmax(logits / T)`` (Guo et al. 2017).

    ``logits`` ``[N, C]`` are the validation-set scores: network logits, or for a sampled
    posterior the log of the mean predictive probabilities (``probs.mean(0).log()``), so
    the same scaling applies to any method. The NLL is convex in ``1/T``, so a bounded
    scalar search on ``ln T`` finds the global minimum inside ``bounds``, a pair
    ``(low, high)`` of finite temperatures with ``0 < low < high`` (a tuple, list or array of
    two numbers).

    Example (over-confident logits: the NLL is lowest at a temperature above 1)::

        >>> import torch
        >>> from bayesdl.evaluation import fit_temperature
        >>> logits = torch.tensor([[4.0, 0.0], [4.0, 0.0], [4.0, 0.0], [0.0, 4.0]])
        >>> labels = torch.tensor([0, 0, 1, 1])                      # 3 of 4 right, at 98% confidence
        >>> round(fit_temperature(logits, labels), 2)                # softmax(4 / T) = 3/4: T = 4 / ln 3
        3.64
    """
    logits = _check_logits(logits)
    labels = check_labels(labels, logits.shape[1], logits.shape[0])
    low, high = _check_bounds(bounds)
    x = logits.cpu().numpy()
    y = labels.cpu().numpy()

    def nll(log_t: float) -> float:
        scaled = x / np.exp(log_t)
        top = scaled.max(1, keepdims=True)
        lse = np.log(np.exp(scaled - top).sum(1)) + top[:, 0]
        return float(np.mean(lse - scaled[np.arange(len(y)), y]))

    result = minimize_scalar(nll, bounds=(np.log(low), np.log(high)), method="bounded",
                             options={"xatol": 1e-6})
    return float(np.exp(result.x))


def apply_temperature(logits, temperature: float) -> torch.Tensor:
    """``softmax(logits / temperature)``, shape ``[N, C]``.

    Example::

        >>> import torch
        >>> from bayesdl.evaluation import apply_temperature
        >>> logits = torch.tensor([[4.0, 0.0]])
        >>> apply_temperature(logits, 1.0).round(decimals=4), apply_temperature(logits, 4.0).round(decimals=4)
        (tensor([[0.9820, 0.0180]], dtype=torch.float64), tensor([[0.7311, 0.2689]], dtype=torch.float64))
    """
    logits = _check_logits(logits)
    temperature = check_positive(temperature, "temperature")
    return torch.softmax(logits / temperature, dim=-1)
