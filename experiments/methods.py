"""Methods as data: a :class:`MethodSpec` is a method as a study uses it.

A study names the methods it compares as specs -- its row name, the registered method
(:data:`bayesdl.inference.METHODS`), the options it is fitted with, a display label -- and hands
them to its lab (:class:`bayesdl.experiments.lab.Lab`), which fits them. How a method composes
(fitted around a MAP, an ensemble of which member) is declared by the registry's
:class:`~bayesdl.inference.MethodInfo` and read from :attr:`MethodSpec.info`, never inferred from a
method's name or its option names. Adding a registered method to a study is one spec line::

    SPECS = (MethodSpec("map"), MethodSpec("mc_dropout", "dropout"),
             MethodSpec("laplace", options={"subset": "last_layer", "structure": "kron"}),
             MethodSpec("swag"))
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

from bayesdl.inference import METHODS, MethodInfo

__all__ = ["MethodSpec", "specs_by_name", "labels_of"]


@dataclass(frozen=True)
class MethodSpec:
    """A method as a study uses it.

    ``name`` is the study's row (its key in ``metrics.json``); ``method`` the registered method
    (default: ``name``); ``options`` are passed to :func:`bayesdl.inference.approximate` (on top
    of what the lab supplies: the data, a recipe's training options, the MAP it is built around);
    ``label`` names it on figures and in reports (default: the registry's label); ``around``
    names the spec of the MAP a method declared ``around_map`` is fitted around (default:
    ``"map"``).
    """

    name: str
    method: str | None = None
    options: dict = field(default_factory=dict)
    label: str | None = None
    around: str = "map"

    def __post_init__(self):
        method = self.name if self.method is None else self.method
        if method not in METHODS:
            raise ValueError(f"unknown inference method {method!r} (method spec {self.name!r}); "
                             f"choose one of {sorted(METHODS)}")
        object.__setattr__(self, "method", method)
        object.__setattr__(self, "options", dict(self.options))
        if self.label is None:
            object.__setattr__(self, "label", METHODS[method].label)

    @property
    def info(self) -> MethodInfo:
        """The registry's declaration of the method: its options and how it composes."""
        return METHODS[self.method]

    @property
    def member(self) -> str | None:
        """The registered method of each member, for an ensemble (else None)."""
        return self.info.member_of(self.options)


def specs_by_name(specs: Iterable[MethodSpec]) -> dict[str, MethodSpec]:
    """``{spec.name: spec}``, refusing two specs of one name."""
    table: dict[str, MethodSpec] = {}
    for spec in specs:
        if spec.name in table:
            raise ValueError(f"two method specs are named {spec.name!r}")
        table[spec.name] = spec
    return table


def labels_of(specs: Iterable[MethodSpec]) -> dict[str, str]:
    """``{spec.name: spec.label}``: the display names of a study's rows."""
    return {spec.name: spec.label for spec in specs}
