"""Acquisition functions for active learning: which unlabelled points to label next.

Pure functions of posterior-predictive samples ``probs`` ``[S, N, C]`` (``S`` MC dropout
passes or weight draws, ``N`` pool points, ``C`` classes), built on the uncertainty measures of
:mod:`bayesdl.evaluation.uncertainty`. Every score is "higher = acquire first", shape ``[N]``,
entropies in nats. Following Gal, Islam & Ghahramani (2017), "Deep Bayesian Active Learning
with Image Data", sec. 3, with :math:`\\bar p_c = \\frac1S \\sum_s p_{sc}`:

- ``bald``             :math:`\\mathbb H[\\bar p] - \\frac1S\\sum_s \\mathbb H[p_s]`, the mutual
  information between the label and the weights (Houlsby et al. 2011);
- ``variation_ratios`` :math:`1 - f_{c^*}/S`, the share of passes not voting for the modal label;
- ``max_entropy``      :math:`\\mathbb H[\\bar p]`, the predictive entropy;
- ``mean_std``         :math:`\\frac1C\\sum_c \\sqrt{\\overline{p_c^2} - \\bar p_c^{\\,2}}`, the mean over
  classes of the standard deviation of the class probability across passes (Kampffmeyer
  et al. 2016);
- ``random``           uniform scores: acquisition at random, the baseline.

Taking the top ``k`` of a score acquires ``k`` points that may be informative for the same
reason (near-duplicates). :func:`batchbald` (Kirsch, van Amersfoort & Gal 2019) instead picks
the batch greedily by the mutual information between the *joint* labels of the batch and the
weights. :func:`acquire` selects a batch with either.

Example::

    >>> import torch
    >>> probs = torch.tensor([[[1.0, 0.0], [0.5, 0.5]],
    ...                       [[0.0, 1.0], [0.5, 0.5]]])   # S = 2 passes, N = 2 points
    >>> [round(float(v), 4) for v in bald(probs)]           # passes disagree on point 0 only
    [0.6931, 0.0]
    >>> acquire("max_entropy", probs, 1).tolist()           # both are ln 2: the first wins ties
    [0]
"""

from __future__ import annotations

import numbers
from collections.abc import Callable
from dataclasses import dataclass

import torch

from bayesdl.checks import check_int

from ._inputs import check_probs
from .uncertainty import _entropy, mutual_information, predictive_entropy, variation_ratio

__all__ = ["bald", "variation_ratios", "max_entropy", "mean_std", "random_scores", "batchbald",
           "BatchSelection", "acquire", "ACQUISITION_FUNCTIONS"]


def bald(probs) -> torch.Tensor:
    """BALD, the mutual information ``I[y; w | x] = H[mean_s p_s] - mean_s H[p_s]``, ``[N]``.

    Example::

        >>> import torch
        >>> probs = torch.tensor([[[1.0, 0.0], [0.9, 0.1], [0.5, 0.5]],
        ...                       [[0.0, 1.0], [0.9, 0.1], [0.5, 0.5]]])   # S = 2 passes, N = 3 points
        >>> from bayesdl.evaluation import bald
        >>> [round(v, 4) for v in bald(probs).tolist()]       # the passes disagree on point 0 only
        [0.6931, 0.0, 0.0]
    """
    return mutual_information(probs)


def variation_ratios(probs) -> torch.Tensor:
    """Variation ratios ``1 - f_mode / S`` of the labels voted by the passes, ``[N]``.

    Example::

        >>> import torch
        >>> probs = torch.tensor([[[1.0, 0.0], [0.9, 0.1], [0.5, 0.5]],
        ...                       [[0.0, 1.0], [0.9, 0.1], [0.5, 0.5]]])   # S = 2 passes, N = 3 points
        >>> from bayesdl.evaluation import variation_ratios
        >>> variation_ratios(probs)
        tensor([0.5000, 0.0000, 0.5000])
    """
    return variation_ratio(probs)


def max_entropy(probs) -> torch.Tensor:
    """Max entropy: the predictive entropy ``H[mean_s p_s]`` in nats, ``[N]``.

    Example::

        >>> import torch
        >>> probs = torch.tensor([[[1.0, 0.0], [0.9, 0.1], [0.5, 0.5]],
        ...                       [[0.0, 1.0], [0.9, 0.1], [0.5, 0.5]]])   # S = 2 passes, N = 3 points
        >>> from bayesdl.evaluation import max_entropy
        >>> [round(v, 4) for v in max_entropy(probs).tolist()]   # high for disagreement and for ties alike
        [0.6931, 0.3251, 0.6931]
    """
    return predictive_entropy(probs)


def mean_std(probs) -> torch.Tensor:
    """Mean STD: ``(1/C) sum_c sqrt(E_s[p_c^2] - E_s[p_c]^2)``, ``[N]`` (population standard
    deviation over the ``S`` passes, averaged over the classes).

    Example::

        >>> import torch
        >>> probs = torch.tensor([[[1.0, 0.0], [0.9, 0.1], [0.5, 0.5]],
        ...                       [[0.0, 1.0], [0.9, 0.1], [0.5, 0.5]]])   # S = 2 passes, N = 3 points
        >>> from bayesdl.evaluation import mean_std
        >>> mean_std(probs)                      # the spread of the probabilities across passes
        tensor([0.5000, 0.0000, 0.0000])
    """
    probs = check_probs(probs, ndim=3)
    variance = (probs.square().mean(0) - probs.mean(0).square()).clamp_min(0.0)
    return variance.sqrt().mean(-1)


def _check_generator(generator) -> torch.Generator | None:
    """``generator`` if it is None or a CPU ``torch.Generator`` (the draws are made on the CPU,
    then moved to the device of ``probs``), else a ``TypeError``/``ValueError``."""
    if generator is None:
        return None
    if not isinstance(generator, torch.Generator):
        hint = (f"; use torch.Generator().manual_seed({generator})"
                if isinstance(generator, numbers.Integral) and not isinstance(generator, bool) else "")
        raise TypeError(f"generator must be a torch.Generator (or None), got "
                        f"{type(generator).__name__}{hint}")
    if generator.device.type != "cpu":
        raise ValueError(f"generator must be a CPU generator (the random draws are made on the CPU, then "
                         f"moved to the device of probs), got one on {generator.device}; "
                         "use torch.Generator()")
    return generator


def random_scores(probs, generator: torch.Generator | None = None) -> torch.Tensor:
    """Uniform random scores ``[N]`` (the samples are only checked and sized): random acquisition.
    ``generator``: a CPU ``torch.Generator`` or None.

    Example::

        >>> import torch
        >>> probs = torch.tensor([[[1.0, 0.0], [0.9, 0.1], [0.5, 0.5]],
        ...                       [[0.0, 1.0], [0.9, 0.1], [0.5, 0.5]]])   # S = 2 passes, N = 3 points
        >>> from bayesdl.evaluation import random_scores
        >>> scores = random_scores(probs, generator=torch.Generator().manual_seed(0))
        >>> scores.shape, bool(((0 <= scores) & (scores < 1)).all())
        (torch.Size([3]), True)
        >>> torch.equal(scores, random_scores(probs, generator=torch.Generator().manual_seed(0)))
        True
    """
    generator = _check_generator(generator)
    probs = check_probs(probs, ndim=3)
    return torch.rand(probs.shape[1], generator=generator, dtype=probs.dtype).to(probs.device)


#: name -> score function ``probs [S, N, C] -> [N]`` (``random`` also takes a ``generator``)
ACQUISITION_FUNCTIONS: dict[str, Callable[..., torch.Tensor]] = {
    "bald": bald,
    "variation_ratios": variation_ratios,
    "max_entropy": max_entropy,
    "mean_std": mean_std,
    "random": random_scores,
}


#: the keyword options :func:`acquire` passes on to :func:`batchbald`
_BATCHBALD_OPTIONS = ("num_configurations", "exact_limit", "chunk")


@dataclass(frozen=True)
class BatchSelection:
    """A batch chosen by :func:`batchbald`: ``indices`` ``[k]`` in the order they were picked, and
    ``scores`` ``[k]``, the estimated ``I[y_1, ..., y_j; w]`` of the first ``j`` picks.

    :func:`batchbald` returns one::

        >>> import torch
        >>> a, b = [1.0, 0.0], [0.0, 1.0]
        >>> probs = torch.tensor([[a, a, a], [b, b, a], [a, a, b], [b, b, b]])   # S = 4 passes, N = 3
        >>> from bayesdl.evaluation import batchbald
        >>> selection = batchbald(probs, 2)
        >>> selection.indices                 # in the order picked
        tensor([0, 2])
        >>> [round(v, 4) for v in selection.scores.tolist()]   # I[y_1..y_j; w] of the first j picks
        [0.6931, 1.3863]
    """

    indices: torch.Tensor
    scores: torch.Tensor


def _joint_entropies(configs: torch.Tensor, weights: torch.Tensor | None, probs: torch.Tensor,
                     chunk: int) -> torch.Tensor:
    """``H[y_batch, y_n]`` for every candidate ``n``, ``[N]``.

    ``configs`` ``[K, S]`` holds ``prod_i p_s(y_i^k)`` over the points already chosen for each of
    ``K`` label configurations ``y^k``. Exact (``weights`` is None): the configurations are all
    ``C^b`` of them and ``H = -sum_{k,y} p(y^k, y) ln p(y^k, y)`` with
    ``p(y^k, y) = mean_s configs[k, s] p_s(y)``. Sampled: ``y^k ~ p(y_batch)`` and
    ``weights[k] = 1 / (K p(y^k))``, so ``H ~= -sum_k weights[k] sum_y p(y^k, y) ln p(y^k, y)``
    (Kirsch et al. 2019, sec. 3.2).
    """
    num_samples, n, c = probs.shape
    flat = probs.reshape(num_samples, n * c)
    out = probs.new_empty(n)
    step = max(1, chunk // (configs.shape[0] * c))
    for start in range(0, n, step):
        stop = min(n, start + step)
        joint = (configs @ flat[:, start * c:stop * c]).div_(num_samples)  # [K, n' * C]
        terms = torch.special.xlogy(joint, joint).view(configs.shape[0], stop - start, c).sum(-1)
        if weights is not None:
            terms = terms * weights[:, None]
        out[start:stop] = -terms.sum(0)
    return out


def batchbald(probs, batch_size: int, num_configurations: int = 10_000,
              generator: torch.Generator | None = None, exact_limit: int | None = None,
              chunk: int = 2**23) -> BatchSelection:
    """BatchBALD (Kirsch, van Amersfoort & Gal 2019): a batch of ``batch_size`` pool points
    chosen greedily by the mutual information between their joint labels and the weights::

        a({x_1..x_b}) = H[y_1, ..., y_b] - sum_i E_w H[y_i | w]
        H[y_1..y_b]   = -sum_{y_1..y_b} p(y_1..y_b) ln p(y_1..y_b),
        p(y_1..y_b)   = (1/S) sum_s prod_i p_s(y_i)

    Step ``j`` adds the candidate that maximises ``a`` of the batch so far plus that candidate
    (a greedy ``1 - 1/e`` approximation, ``a`` being submodular). The joint entropy is exact
    while the points chosen so far have at most ``exact_limit`` (default:
    ``num_configurations``) label configurations ``C^(j-1)``; beyond, it is estimated from
    ``num_configurations`` configurations sampled from ``p(y_1..y_(j-1))`` by importance
    weighting (the paper's estimator; it used 10,000).
    With ``batch_size = 1`` it is BALD. Computed in float64; ``generator`` fixes the sampled
    configurations; ``chunk`` bounds the elements of one intermediate (memory).

    ``probs`` ``[S, N, C]``; returns a :class:`BatchSelection` (indices in the order picked).

    **Cost.** Step ``j`` scores every pool point against ``min(C^(j-1), num_configurations)``
    configurations of the points chosen so far: about ``batch_size x N x S x num_configurations``
    float64 multiply-adds in all, so seconds to tens of seconds on a CPU for a pool of 1,000 points,
    100 samples and a batch of 10 (BALD, :func:`acquire`, is ``N x S x C``: milliseconds). Score
    a random subset of the pool (the active-learning loop's ``candidates``) to bound it.

    Example (points 0 and 1 are copies, point 2 splits the passes another way: BALD scores all
    three ln 2 and takes the copies, BatchBALD takes one copy and point 2)::

        >>> import torch
        >>> a, b = [1.0, 0.0], [0.0, 1.0]
        >>> probs = torch.tensor([[a, a, a], [b, b, a], [a, a, b], [b, b, b]])   # S = 4 passes, N = 3
        >>> from bayesdl.evaluation import bald, batchbald
        >>> [round(v, 4) for v in bald(probs).tolist()]
        [0.6931, 0.6931, 0.6931]
        >>> selection = batchbald(probs, 2)
        >>> selection.indices.tolist(), [round(v, 4) for v in selection.scores.tolist()]   # ln 2, ln 4
        ([0, 2], [0.6931, 1.3863])
    """
    probs = check_probs(probs, ndim=3).double()
    num_samples, n, c = probs.shape
    generator = _check_generator(generator)
    batch_size = check_int(batch_size, "batch_size", minimum=1)
    if batch_size > n:
        raise ValueError(f"batch_size ({batch_size}) is larger than the pool ({n} points)")
    num_configurations = check_int(num_configurations, "num_configurations", minimum=1)
    if exact_limit is None:
        exact_limit = num_configurations
    exact_limit = check_int(exact_limit, "exact_limit", minimum=1)
    chunk = check_int(chunk, "chunk", minimum=1)
    conditional = _entropy(probs).mean(0)  # E_w H[y_n | w], [N]
    chosen: list[int] = []
    scores: list[float] = []
    configs, weights = probs.new_ones(1, num_samples), None  # no point chosen: one empty configuration
    available = torch.ones(n, dtype=torch.bool, device=probs.device)
    chosen_conditional = 0.0
    for _ in range(batch_size):
        gain = _joint_entropies(configs, weights, probs, chunk) - conditional - chosen_conditional
        gain = gain.masked_fill(~available, -torch.inf)
        best = int(gain.argmax())
        chosen.append(best)
        scores.append(float(gain[best]))
        available[best] = False
        chosen_conditional += float(conditional[best])
        if len(chosen) == batch_size:
            break
        if configs.shape[0] * c <= exact_limit and weights is None:  # stay exact
            configs = (configs[:, None, :] * probs[:, best, :].T[None]).reshape(-1, num_samples)
        else:
            configs, weights = _sampled_configurations(probs[:, chosen, :], num_configurations, generator)
    return BatchSelection(torch.tensor(chosen, dtype=torch.long), torch.tensor(scores, dtype=torch.float64))


def _sampled_configurations(chosen: torch.Tensor, count: int, generator: torch.Generator | None):
    """``count`` label configurations of the chosen points ``[S, b, C]`` drawn from their joint
    predictive ``p(y_1..y_b) = mean_s prod_i p_s(y_i)``: a draw ``s`` then independent labels.

    Returns ``configs [count, S]`` (``prod_i p_s(y_i^m)`` for every ``s``) and the importance
    weights ``1 / (count p(y^m))``.
    """
    num_samples, b, c = chosen.shape
    device = chosen.device
    draw = torch.randint(num_samples, (count,), generator=generator).to(device)
    uniform = torch.rand(count, b, 1, generator=generator, dtype=chosen.dtype).to(device)
    cdf = chosen[draw].cumsum(-1)  # [count, b, C]
    labels = (uniform > cdf).sum(-1).clamp_max(c - 1)  # inverse-CDF sampling, [count, b]
    picked = chosen.permute(1, 2, 0)[torch.arange(b, device=device), labels]  # [count, b, S]
    configs = picked.prod(1)
    return configs, 1.0 / (count * configs.mean(1))


def acquire(function: str, probs, batch_size: int, generator: torch.Generator | None = None,
            **options) -> torch.Tensor:
    """Indices ``[batch_size]`` of the pool points to label next, best first.

    ``function`` is a name of :data:`ACQUISITION_FUNCTIONS` (the top ``batch_size`` scores;
    ties go to the lower index) or ``"batchbald"`` (:func:`batchbald`, which takes ``options``).
    ``generator`` (a CPU ``torch.Generator`` or None) drives the random choices (``random``,
    BatchBALD's sampled configurations); it is checked whatever the function.

    Example::

        >>> import torch
        >>> probs = torch.tensor([[[1.0, 0.0], [0.9, 0.1], [0.5, 0.5]],
        ...                       [[0.0, 1.0], [0.9, 0.1], [0.5, 0.5]]])   # S = 2 passes, N = 3 points
        >>> from bayesdl.evaluation import acquire
        >>> acquire("bald", probs, 2)               # ties (points 1 and 2 score 0) go to the lower index
        tensor([0, 1])
        >>> acquire("max_entropy", probs, 2)        # an exact tie (point 2) is uncertain too
        tensor([0, 2])
        >>> acquire("random", probs, 2, generator=torch.Generator().manual_seed(0)).shape
        torch.Size([2])
    """
    if not isinstance(function, str):
        raise TypeError(f"function must be the name of an acquisition function, one of "
                        f"{sorted([*ACQUISITION_FUNCTIONS, 'batchbald'])}, got {type(function).__name__}")
    batch_size = check_int(batch_size, "batch_size", minimum=1)
    generator = _check_generator(generator)
    if function == "batchbald":
        unknown = sorted(set(options) - set(_BATCHBALD_OPTIONS))
        if unknown:
            raise TypeError(f"batchbald takes the options {sorted(_BATCHBALD_OPTIONS)}, got unknown "
                            f"{unknown}")
        return batchbald(probs, batch_size, generator=generator, **options).indices
    if function not in ACQUISITION_FUNCTIONS:
        raise ValueError(f"unknown acquisition function {function!r}; choose one of "
                         f"{sorted([*ACQUISITION_FUNCTIONS, 'batchbald'])}")
    if options:
        raise TypeError(f"acquisition function {function!r} takes no options, got {sorted(options)}")
    scores = (random_scores(probs, generator) if function == "random"
              else ACQUISITION_FUNCTIONS[function](probs))
    if batch_size > scores.shape[0]:
        raise ValueError(f"batch_size ({batch_size}) is larger than the pool ({scores.shape[0]} points)")
    # A stable descending sort: equal scores keep the pool order, so ties go to the lower index.
    return torch.sort(scores.cpu(), descending=True, stable=True).indices[:batch_size]
