"""Ensembles of posteriors: ``K`` independently fitted members, predicting as their mixture.

    p(y | x, D) ~= 1/K sum_k p_k(y | x, D)

where each ``p_k`` is a member's own predictive: a MAP network (a deep ensemble,
Lakshminarayanan et al. 2017), an MC-dropout network, a Laplace approximation (a mixture of
Laplace approximations, Eschenhagen et al. 2021), SWAG (MultiSWAG, Wilson & Izmailov 2020),
or any other registered method. Members differ by their seed (initialisation, data order,
noise) and are fitted independently.

Draws are stratified over the members: of ``S`` draws, draw ``s`` comes from member
``s mod K``, so every member gets ``S // K`` or one more, and with ``S`` a multiple of ``K`` the
sample is an equal-weight mixture exactly. :class:`Ensemble` answers every call of the
:class:`~bayesdl.inference.Posterior` seam through its members' own calls; weights given to
``outputs_at`` must keep that layout (as ``sample`` and ``draws`` return them), since a member
may predict through its own linearisation (Laplace).
"""

from __future__ import annotations

import copy
from collections.abc import Iterable, Sequence

import torch

from bayesdl.checks import check_int
from bayesdl.models.bnn import bnn_of

from .posterior import Approximation, Posterior, log_mean_probabilities

__all__ = ["Ensemble", "reinitialised"]


class Ensemble(Approximation):
    """The uniform mixture of ``members`` (fitted :class:`Posterior` objects of one architecture).

    ``point_estimate()`` is the first member's: averaging the weights of networks from
    different modes gives no meaningful network.

    Example (two MAP networks from different initialisations; :func:`fit_ensemble` fits them)::

        >>> import torch
        >>> import torch.nn as nn
        >>> from bayesdl.models import BNN
        >>> _ = torch.manual_seed(0)
        >>> x = torch.rand(8, 2); y = (x.sum(1) > 1).long()     # 8 points in [0, 1]^2, 2 classes
        >>> from bayesdl.inference import Ensemble, Posterior, approximate, reinitialised
        >>> model = BNN(nn.Linear(2, 2))
        >>> members = [approximate("map", reinitialised(model, seed), (x, y), epochs=1, seed=seed,
        ...                        progress=False) for seed in (0, 1)]
        >>> ensemble = Ensemble(members)
        >>> ensemble.size, ensemble.counts(5)                 # of 5 draws, 3 from member 0
        (2, [3, 2])
        >>> mixture = Posterior(model, ensemble)
        >>> samples = mixture.predict(x[:3], num_samples=4).probs
        >>> torch.equal(samples[0], samples[2]), torch.equal(samples[0], samples[1])  # draws alternate
        (True, False)
    """

    def __init__(self, members: Sequence[Posterior]):
        if isinstance(members, (Posterior, str, bytes)) or not isinstance(members, Iterable):
            hint = "; wrap one in a list: Ensemble([posterior])" if isinstance(members, Posterior) else ""
            raise TypeError(f"members must be a list of Posteriors, got a {type(members).__name__}{hint}")
        members = tuple(members)
        if not members:
            raise ValueError("an ensemble needs at least one member")
        for member in members:
            if not isinstance(member, Posterior):
                raise TypeError(f"ensemble members must be bayesdl Posteriors, got {type(member).__name__}")
        first = members[0]
        signature = _signature(first.model)
        for k, member in enumerate(members[1:], start=1):
            if _signature(member.model) != signature:
                raise ValueError(
                    f"member {k} has another architecture or likelihood than member 0; an ensemble mixes "
                    "posteriors of one network"
                )
        self.members = members
        self.model = first.model

    @property
    def size(self) -> int:
        return len(self.members)

    @property
    def is_point_mass(self) -> bool:
        return self.size == 1 and self.members[0].is_point_mass

    def counts(self, num_samples: int) -> list[int]:
        """Draws per member out of ``num_samples`` (member ``k`` has draws ``k, k + K, ...``)."""
        return [len(range(k, num_samples, self.size)) for k in range(self.size)]

    def _interleave(self, parts: list[torch.Tensor | None], num_samples: int) -> torch.Tensor:
        """``[S, ...]`` with row ``s`` from ``parts[s mod K]``."""
        first = next(p for p in parts if p is not None)
        out = first.new_empty((num_samples, *first.shape[1:]))
        for k, part in enumerate(parts):
            if part is not None:
                out[k::self.size] = part
        return out

    def sample_parameters(self, num_samples):
        counts = self.counts(num_samples)
        draws = [member.sample(n) if n else None for member, n in zip(self.members, counts)]
        names = next(d for d in draws if d is not None)
        return {name: self._interleave([None if d is None else d[name] for d in draws], num_samples)
                for name in names}

    def point_estimate(self):
        return self.members[0].point_estimate()

    def predictive_outputs(self, x, num_samples):
        parts = [member.predictive_outputs(x, n, batch_size=x.shape[0]) if n else None
                 for member, n in zip(self.members, self.counts(num_samples))]
        return self._interleave(parts, num_samples)

    def predictive_log_probs(self, x, link_approx="mc", num_samples=20):
        """The mixture ``ln sum_k (S_k / S) p_k(y | x)`` ``[N, C]`` of the members' own
        predictives (member ``k`` with its ``S_k`` of the ``S`` draws), differentiable in ``x``."""
        counts = self.counts(num_samples)
        parts = [(member.predictive_log_probs(x, n, link_approx), n)
                 for member, n in zip(self.members, counts) if n]
        weights = torch.tensor([n / num_samples for _, n in parts], dtype=parts[0][0].dtype)
        return log_mean_probabilities(torch.stack([p for p, _ in parts]), weights)

    def outputs_at(self, x, weights):
        num_samples = next(iter(weights.values())).shape[0]
        parts = [member.outputs_at(x, {name: w[k::self.size] for name, w in weights.items()}) if n else None
                 for k, (member, n) in enumerate(zip(self.members, self.counts(num_samples)))]
        return self._interleave(parts, num_samples)

    def __repr__(self) -> str:
        return f"Ensemble({self.size} x {self.members[0].method})"


def _signature(model):
    bnn = bnn_of(model)
    if bnn is None:
        return (type(model).__name__,)
    return (tuple((s.name, tuple(s.shape)) for s in bnn.sites), type(bnn.likelihood).__name__)


def reinitialised(model, seed: int):
    """A copy of the :class:`~bayesdl.models.BNN` ``model`` whose network is initialised afresh
    with ``seed``: every layer's own ``reset_parameters()`` (the latent weights included), drawn
    without touching the global random state. Layers without ``reset_parameters`` keep their
    values.

    Example::

        >>> import torch
        >>> import torch.nn as nn
        >>> from bayesdl.models import BNN
        >>> from bayesdl.inference import reinitialised
        >>> model = BNN(nn.Linear(2, 2))
        >>> a, b, again = reinitialised(model, 1), reinitialised(model, 2), reinitialised(model, 1)
        >>> torch.equal(a.initial_values(), again.initial_values())     # the seed fixes it
        True
        >>> torch.equal(a.initial_values(), b.initial_values()), a is model
        (False, False)
    """
    bnn = bnn_of(model)
    if bnn is None:
        raise TypeError(
            "an ensemble initialises each member afresh from a bayesdl.models.BNN; pass one, or pass "
            "fit_member=(method, seed) -> Posterior to build the members yourself"
        )
    seed = check_int(seed, "seed", minimum=0)
    if seed >= 2**64:
        raise ValueError(f"seed must be < 2**64 (torch's seeds are 64-bit), got {seed}")
    member = copy.deepcopy(bnn)
    with torch.random.fork_rng(devices=[]), torch.no_grad():
        torch.manual_seed(seed)
        for module in member.net.modules():
            reset = getattr(module, "reset_parameters", None)
            if callable(reset):
                reset()
    return member
