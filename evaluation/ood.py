"""Out-of-distribution scores. Higher means more in-distribution, like every score here.

From posterior-predictive samples ``probs`` ``[S, N, C]`` (or ``[N, C]``):

- :func:`max_probability`: the maximum class probability (MCP, Hendrycks & Gimpel 2017);
- :func:`negative_entropy`: minus the predictive entropy;
- :func:`negative_mutual_information`: minus the mutual information (epistemic part).

And ODIN (Liang, Li & Srikant 2018), which needs the network itself:
:func:`odin_scores` computes ``max_c softmax(f(x~) / T)`` at the input nudged against the
gradient of the loss of its own prediction, ``x~ = x - eps * sign(-grad_x ln S_y(x; T))``;
:func:`tune_odin` picks ``(T, eps)`` on a tuning split, which must not be the split the
scores are reported on.

Example::

    >>> import torch
    >>> probs = torch.tensor([[[0.9, 0.1]], [[0.7, 0.3]]])
    >>> round(float(max_probability(probs)), 4)
    0.8
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import torch

from bayesdl.checks import as_tensor, check_choice, check_finite, check_int, check_nonempty, check_positive

from ._inputs import check_probs
from .ranking import ood_metrics
from .uncertainty import mutual_information, predictive_entropy

__all__ = ["max_probability", "negative_entropy", "negative_mutual_information", "odin_scores", "tune_odin",
           "ODIN_TEMPERATURES", "ODIN_EPSILONS"]

ODIN_TEMPERATURES = (1.0, 2.0, 5.0, 10.0, 20.0, 50.0, 100.0, 200.0, 500.0, 1000.0)
ODIN_EPSILONS = tuple(round(0.0002 * i, 4) for i in range(21))  # 0 .. 0.004, as in Liang et al.


def _as_samples(probs) -> torch.Tensor:
    probs = as_tensor(probs, "probs")
    return check_probs(probs[None] if probs.dim() == 2 else probs, ndim=3)


def max_probability(probs) -> torch.Tensor:
    """Maximum of the mean predictive probabilities, ``[N]``.

    Example::

        >>> import torch
        >>> probs = torch.tensor([[[0.9, 0.1], [0.6, 0.4]],
        ...                       [[0.7, 0.3], [0.2, 0.8]]])   # S = 2 passes, N = 2 inputs
        >>> from bayesdl.evaluation import max_probability
        >>> max_probability(probs)                   # of the mean (0.8, 0.2) and (0.4, 0.6)
        tensor([0.8000, 0.6000])
        >>> max_probability(probs.mean(0))           # [N, C] works too
        tensor([0.8000, 0.6000])
    """
    return _as_samples(probs).mean(0).max(-1).values


def negative_entropy(probs) -> torch.Tensor:
    """Minus the predictive entropy (nats), ``[N]``.

    Example::

        >>> import torch
        >>> probs = torch.tensor([[[0.9, 0.1], [0.6, 0.4]],
        ...                       [[0.7, 0.3], [0.2, 0.8]]])   # S = 2 passes, N = 2 inputs
        >>> from bayesdl.evaluation import negative_entropy
        >>> [round(v, 4) for v in negative_entropy(probs).tolist()]   # the second input is less sure
        [-0.5004, -0.673]
    """
    return -predictive_entropy(_as_samples(probs))


def negative_mutual_information(probs) -> torch.Tensor:
    """Minus the mutual information between label and weights (nats), ``[N]``.

    Example::

        >>> import torch
        >>> probs = torch.tensor([[[0.9, 0.1], [0.6, 0.4]],
        ...                       [[0.7, 0.3], [0.2, 0.8]]])   # S = 2 passes, N = 2 inputs
        >>> from bayesdl.evaluation import negative_mutual_information
        >>> [round(v, 4) for v in negative_mutual_information(probs).tolist()]   # the passes disagree on 1
        [-0.0324, -0.0863]
    """
    return -mutual_information(_as_samples(probs))


def odin_scores(logits_fn: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor, temperature: float,
                epsilon: float | Sequence[float], input_scale: float = 1.0, batch_size: int = 500):
    """ODIN scores ``[N]`` of inputs ``x`` for a network ``logits_fn`` (Liang et al. 2018).

    ``epsilon`` is the perturbation size in the units of the raw pixels; ``input_scale`` is
    the factor by which those units were divided when normalising ``x`` (e.g. the dataset
    standard deviation), so the step in ``x`` is ``epsilon / input_scale``. Given a sequence
    of epsilons, returns ``{epsilon: scores}``, reusing one input gradient for all of them.

    ``x`` ``[N, ...]`` (tensor or array) must be non-empty and finite; ``temperature`` and
    ``input_scale`` > 0; epsilons >= 0; ``logits_fn`` must return finite logits ``[B, C]``.

    Example (a linear classifier as the network)::

        >>> import torch
        >>> from bayesdl.evaluation import odin_scores
        >>> _ = torch.manual_seed(0)
        >>> net = torch.nn.Linear(2, 3)
        >>> x = torch.randn(4, 2)
        >>> scores = odin_scores(net, x, temperature=10.0, epsilon=0.01)
        >>> scores.shape, bool(((1 / 3 <= scores) & (scores <= 1)).all())
        (torch.Size([4]), True)
        >>> by_epsilon = odin_scores(net, x, temperature=10.0, epsilon=[0.0, 0.01])   # one gradient
        >>> sorted(by_epsilon), torch.equal(by_epsilon[0.01], scores)
        ([0.0, 0.01], True)
    """
    temperature = check_positive(temperature, "temperature")
    single = isinstance(epsilon, str) or np.ndim(epsilon) == 0 if not isinstance(epsilon, torch.Tensor) \
        else epsilon.dim() == 0
    epsilons = _check_epsilons([epsilon] if single else epsilon)
    input_scale = check_positive(input_scale, "input_scale")
    batch_size = check_int(batch_size, "batch_size", minimum=1)
    if not callable(logits_fn):
        raise TypeError(f"logits_fn must be a callable x -> logits [N, C], got {type(logits_fn).__name__}")
    x = as_tensor(x, "x")
    check_nonempty(x, "x")
    x = check_finite(x if x.is_floating_point() else x.to(torch.get_default_dtype()), "x")
    scores = {e: [] for e in epsilons}
    for chunk in x.split(batch_size):
        chunk = chunk.detach().clone().requires_grad_(True)
        with torch.enable_grad():
            logits = _logits(logits_fn, chunk) / temperature
            loss = torch.nn.functional.cross_entropy(logits, logits.argmax(-1))
            (grad,) = torch.autograd.grad(loss, chunk)
        logits = logits.detach()
        step = grad.sign() / input_scale
        with torch.no_grad():
            for e in epsilons:
                out = logits if e == 0 else _logits(logits_fn, chunk.detach() - e * step) / temperature
                scores[e].append(torch.softmax(out, -1).max(-1).values)
    result = {e: torch.cat(s) for e, s in scores.items()}
    return result[epsilons[0]] if single else result


def _check_epsilons(values) -> list[float]:
    epsilons = [check_positive(e, "epsilon", allow_zero=True) for e in values]
    if not epsilons:
        raise ValueError("epsilon is an empty sequence; pass at least one perturbation size (0 for none)")
    return epsilons


def _logits(logits_fn, x: torch.Tensor) -> torch.Tensor:
    """``logits_fn(x)``, checked: a finite ``[B, C]`` floating tensor with ``C >= 2``."""
    logits = logits_fn(x)
    if not isinstance(logits, torch.Tensor):
        raise TypeError(f"logits_fn must return a torch tensor of logits [N, C], got {type(logits).__name__}")
    if logits.dim() != 2 or logits.shape[0] != x.shape[0] or logits.shape[1] < 2:
        raise ValueError(f"logits_fn must return logits of shape [N, C] with C >= 2 for inputs of shape "
                         f"{tuple(x.shape)}, got shape {tuple(logits.shape)}")
    return check_finite(logits, "the logits of logits_fn")


def tune_odin(logits_fn, x_in: torch.Tensor, x_out: torch.Tensor, input_scale: float = 1.0,
              temperatures: Sequence[float] = ODIN_TEMPERATURES, epsilons: Sequence[float] = ODIN_EPSILONS,
              criterion: str = "fpr_at_95_tpr") -> dict:
    """Grid search of ``(T, eps)`` on a tuning split (in-distribution ``x_in``, OOD ``x_out``).

    Liang et al. minimise the FPR at 95% TPR; ``criterion="auroc"`` maximises the AUROC.
    Returns ``{"temperature", "epsilon", criterion, "grid": [...]}``.

    Example (a small grid; the defaults are the paper's)::

        >>> import torch
        >>> from bayesdl.evaluation import tune_odin
        >>> _ = torch.manual_seed(0)
        >>> net = torch.nn.Linear(2, 3)
        >>> x_in, x_out = torch.randn(20, 2) * 3, torch.randn(20, 2) * 0.1
        >>> best = tune_odin(net, x_in, x_out, temperatures=(1.0, 10.0), epsilons=(0.0, 0.01))
        >>> sorted(best), len(best["grid"])
        (['epsilon', 'fpr_at_95_tpr', 'grid', 'temperature'], 4)
        >>> best["fpr_at_95_tpr"] == min(point["fpr_at_95_tpr"] for point in best["grid"])
        True
    """
    check_choice(criterion, "criterion", ("fpr_at_95_tpr", "auroc"))
    temperatures = [check_positive(t, "temperature") for t in temperatures]
    if not temperatures:
        raise ValueError("temperatures is empty; pass at least one temperature, e.g. ODIN_TEMPERATURES")
    epsilons = _check_epsilons(epsilons)
    lower_is_better = criterion == "fpr_at_95_tpr"
    grid, best = [], None
    for temperature in temperatures:
        s_in = odin_scores(logits_fn, x_in, temperature, epsilons, input_scale)
        s_out = odin_scores(logits_fn, x_out, temperature, epsilons, input_scale)
        for epsilon in epsilons:
            value = ood_metrics(s_in[epsilon], s_out[epsilon])[criterion]
            grid.append({"temperature": temperature, "epsilon": float(epsilon), criterion: value})
            if best is None or (value < best[criterion] if lower_is_better else value > best[criterion]):
                best = grid[-1]
    return {**best, "grid": grid}
