"""Summaries of predictive uncertainty from posterior-predictive samples.

All functions take ``probs`` of shape ``[S, N, C]``: ``S`` stochastic passes (MC dropout
masks, weight draws, ensemble members, ...), ``N`` examples, ``C`` classes, probabilities
along the last axis. They return a tensor of shape ``[N]``. Entropies are in nats.

Following Gal (2016, ch. 3.3) with :math:`\\bar p_c = \\frac1S \\sum_s p_{s c}`:

- variation ratio     :math:`1 - f_{c^*} / S`, with :math:`f_{c^*}` the number of passes
  voting for the modal label;
- predictive entropy  :math:`\\mathbb H[\\bar p] = -\\sum_c \\bar p_c \\ln \\bar p_c`;
- expected entropy    :math:`\\frac1S \\sum_s \\mathbb H[p_s]` (aleatoric part);
- mutual information  :math:`\\mathbb H[\\bar p] - \\frac1S \\sum_s \\mathbb H[p_s]`
  (BALD, the epistemic part).

Example::

    >>> import torch
    >>> certain = torch.tensor([[[1.0, 0.0]]] * 4)            # 4 passes all say (1, 0)
    >>> split = torch.tensor([[[1.0, 0.0]], [[0.0, 1.0]]] * 2)  # passes alternate
    >>> flat = torch.full((4, 1, 2), 0.5)                      # every pass says (0.5, 0.5)
    >>> [round(float(mutual_information(p)), 4) for p in (certain, split, flat)]
    [0.0, 0.6931, 0.0]
"""

from __future__ import annotations

import torch

from ._inputs import check_probs

__all__ = ["variation_ratio", "predictive_entropy", "expected_entropy", "mutual_information"]


def _entropy(probs: torch.Tensor) -> torch.Tensor:
    """Shannon entropy in nats along the last axis, with 0 ln 0 = 0."""
    return -torch.special.xlogy(probs, probs).sum(-1)


def variation_ratio(probs) -> torch.Tensor:
    """Variation ratio ``1 - f_mode / S`` of the labels voted by ``S`` passes, shape ``[N]``.

    Each pass votes for its argmax label. A pass whose maximum is shared by ``k`` classes
    (an exact tie, e.g. ``(0.5, 0.5)``) gives each of them ``1/k`` of a vote rather than
    favouring the lowest class index, so ``S`` passes of ``(0.5, 0.5)`` have a variation
    ratio of 0.5, like passes that alternate between ``(1, 0)`` and ``(0, 1)``.
    The value lies in ``[0, 1 - 1/C]``.

    Example::

        >>> import torch
        >>> probs = torch.tensor([[[1.0, 0.0], [0.9, 0.1], [0.5, 0.5]],
        ...                       [[0.0, 1.0], [0.9, 0.1], [0.5, 0.5]]])   # S = 2 passes, N = 3 points
        >>> from bayesdl.evaluation import variation_ratio
        >>> variation_ratio(probs)          # the passes disagree on point 0; point 2 is an exact tie
        tensor([0.5000, 0.0000, 0.5000])
    """
    probs = check_probs(probs, ndim=3)
    is_max = probs == probs.amax(-1, keepdim=True)
    votes = is_max.to(probs.dtype) / is_max.sum(-1, keepdim=True)
    modal_count = votes.sum(0).amax(-1)
    return 1.0 - modal_count / probs.shape[0]


def predictive_entropy(probs) -> torch.Tensor:
    """Entropy of the mean predictive distribution, ``H[mean_s p_s]``, in nats, shape ``[N]``.

    Example::

        >>> import torch
        >>> probs = torch.tensor([[[1.0, 0.0], [0.9, 0.1], [0.5, 0.5]],
        ...                       [[0.0, 1.0], [0.9, 0.1], [0.5, 0.5]]])   # S = 2 passes, N = 3 points
        >>> from bayesdl.evaluation import predictive_entropy
        >>> [round(v, 4) for v in predictive_entropy(probs).tolist()]   # ln 2 = 0.6931 at most
        [0.6931, 0.3251, 0.6931]
    """
    probs = check_probs(probs, ndim=3)
    return _entropy(probs.mean(0))


def expected_entropy(probs) -> torch.Tensor:
    """Mean entropy of the individual passes, ``mean_s H[p_s]``, in nats, shape ``[N]``.

    Example::

        >>> import torch
        >>> probs = torch.tensor([[[1.0, 0.0], [0.9, 0.1], [0.5, 0.5]],
        ...                       [[0.0, 1.0], [0.9, 0.1], [0.5, 0.5]]])   # S = 2 passes, N = 3 points
        >>> from bayesdl.evaluation import expected_entropy
        >>> [round(v, 4) for v in expected_entropy(probs).tolist()]     # point 0: each pass is certain
        [0.0, 0.3251, 0.6931]
    """
    probs = check_probs(probs, ndim=3)
    return _entropy(probs).mean(0)


def mutual_information(probs) -> torch.Tensor:
    """Mutual information between the label and the weights (BALD), in nats, shape ``[N]``.

    ``I[y, w | x] = H[mean_s p_s] - mean_s H[p_s]``. It is non-negative by Jensen's
    inequality; rounding can make it slightly negative, so it is clamped at 0.

    Example (predictive entropy = expected entropy + mutual information)::

        >>> import torch
        >>> probs = torch.tensor([[[1.0, 0.0], [0.9, 0.1], [0.5, 0.5]],
        ...                       [[0.0, 1.0], [0.9, 0.1], [0.5, 0.5]]])   # S = 2 passes, N = 3 points
        >>> from bayesdl.evaluation import mutual_information
        >>> [round(v, 4) for v in mutual_information(probs).tolist()]   # only point 0 is epistemic
        [0.6931, 0.0, 0.0]
    """
    probs = check_probs(probs, ndim=3)
    # clamp_min keeps the sign of an exact -0.0 (identical passes); + 0.0 makes it 0.0
    return (_entropy(probs.mean(0)) - _entropy(probs).mean(0)).clamp_min(0.0) + 0.0
