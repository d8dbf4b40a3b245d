"""The one lab every study uses: "the posterior of this method spec for this seed", composed
as the registry declares, with the training cost behind each.

A study subclasses :class:`Lab` with what is its own -- its data splits and how it trains one
plain (not composed) posterior (:meth:`Lab.fit`: for the MNIST studies, a recipe trained
through the network cache; for UCI, a fit on one split) -- and the lab does the rest the same way
for every study:

- a method declared ``around_map`` (Laplace, SWAG) is fitted around the lab's posterior of the
  spec named by ``spec.around`` (the MAP) for the same seed, on :meth:`Lab.train_data`;
- an ensemble (``member`` declared: deep ensembles, MultiSWAG) gets its members, seeds
  ``seed .. seed + K - 1``, from this same lab (so from its cache), each the lab's spec of the
  member method (:meth:`Lab.spec`);
- :attr:`Lab.cost` records the seconds of training behind every fitted ``(spec, seed)``, members
  and MAPs included, whether trained now or served from a cache (a cached network counts what it
  cost when trained).

Where things go: a new study is a module of :mod:`bayesdl.experiments.studies` with its options
in the catalogue, built on a Lab; a new method is one file in :mod:`bayesdl.inference` plus
``register_method`` (declaring how it composes), and one :class:`MethodSpec` line in each study
that compares it; a new metric is a function in :mod:`bayesdl.evaluation`.
"""

from __future__ import annotations

import time
from collections.abc import Iterable

from bayesdl.inference import Posterior, approximate

from .methods import MethodSpec, specs_by_name

__all__ = ["Lab"]


class Lab:
    """Posteriors of method specs by seed, composed as the registry declares (see the module).

    ``specs`` are the specs the study refers to by name (rows, the MAP that Laplace is fitted
    around, the members of its ensembles); ``members`` is the size of an ensemble whose spec does
    not give ``members``.
    """

    members: int = 5

    def __init__(self, ctx, specs: Iterable[MethodSpec] = ()):
        self.ctx = ctx
        self.specs = specs_by_name(specs)
        #: seconds of training behind each fitted ``(spec name, seed)``, trained now or cached
        self.cost: dict[tuple[str, int], float] = {}
        self._fitted: dict[tuple[str, int], Posterior] = {}

    # ------------------------------------------------------------ what a study supplies
    def fit(self, spec: MethodSpec, seed: int) -> tuple[Posterior, float]:
        """A plain posterior of ``spec`` (neither an ensemble nor fitted around a MAP) for ``seed``
        and the seconds of training behind it."""
        raise NotImplementedError

    def train_data(self, spec: MethodSpec, seed: int):
        """The data a method fitted around a MAP is fitted to (a Dataset, DataLoader or tuple)."""
        raise NotImplementedError

    def around_map_options(self, spec: MethodSpec, seed: int) -> dict:
        """Options of a method fitted around a MAP, on top of ``map_posterior`` (default: the spec's)."""
        return dict(spec.options)

    # ------------------------------------------------------------ what every study shares
    def spec(self, which: MethodSpec | str) -> MethodSpec:
        """``which`` itself, or the lab's spec of that name, else the registered method of that
        name with no options of its own (so an ensemble's members and the MAP a Laplace is fitted
        around are the lab's specs of those names where it has them: the MAP row serves a deep
        ensemble)."""
        if isinstance(which, MethodSpec):
            return which
        return self.specs.get(which) or MethodSpec(which)  # ValueError for an unknown method

    def posterior(self, which: MethodSpec | str, seed: int | None = None) -> Posterior:
        """The posterior of the spec ``which`` (a spec, or the name of one of the lab's) for
        ``seed`` (default: the run's), fitted once per lab and then reused; records :attr:`cost`."""
        spec = self.spec(which)
        seed = self.ctx.seed if seed is None else seed
        key = (spec.name, seed)
        if key not in self._fitted:
            if spec.member is not None:
                posterior, cost = self._ensemble(spec, seed)
            elif spec.info.around_map:
                posterior, cost = self._around_map(spec, seed)
            else:
                posterior, cost = self.fit(spec, seed)
            self._fitted[key], self.cost[key] = posterior, cost
        return self._fitted[key]

    def costs(self, rows: dict[str, MethodSpec | str]) -> dict[str, float]:
        """Training seconds behind each row (``row -> spec``) at the run's seed."""
        return {row: round(self.cost[(self.spec(spec).name, self.ctx.seed)], 1) for row, spec in rows.items()}

    def _ensemble(self, spec: MethodSpec, seed: int) -> tuple[Posterior, float]:
        served = []

        def fit_member(method: str, member_seed: int) -> Posterior:
            member = self.spec(method)
            served.append((member.name, member_seed))
            return self.posterior(member, member_seed)

        options = {"members": self.members, **spec.options}
        options.setdefault("seeds", [seed + k for k in range(options["members"])])
        posterior = approximate(spec.method, None, None, **options, fit_member=fit_member)
        return posterior, sum(self.cost[k] for k in served)

    def _around_map(self, spec: MethodSpec, seed: int) -> tuple[Posterior, float]:
        base = self.posterior(spec.around, seed)
        data, options = self.train_data(spec, seed), self.around_map_options(spec, seed)
        start = time.perf_counter()
        posterior = approximate(spec.method, base.model, data, map_posterior=base, **options)
        # a method without a training phase of its own (Laplace) shares the MAP's history
        own = time.perf_counter() - start if posterior.history is base.history else posterior.history.seconds
        return posterior, self.cost[(spec.around, seed)] + own
