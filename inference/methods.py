"""The one place that knows the inference methods: names to factories returning a ``Posterior``.

    >>> posterior = approximate("mean_field", model, loader, epochs=10, lr=1e-3)   # doctest: +SKIP
    >>> laplace = approximate("laplace", model, loader, map_posterior=map_posterior,
    ...                       subset="last_layer", structure="kron")              # doctest: +SKIP

Every factory is called as ``factory(model, data, **options)`` and returns a
:class:`~bayesdl.inference.Posterior` whose ``method`` is the registered name. Studies and the
command line pick methods by name here, so adding a method (an ensemble, SWAG) touches
:mod:`bayesdl.inference` only: :func:`register_method` adds it, and every study that loops over
method names can use it.

========== =============================================================================
name       what it fits; its own options (the SVI methods also take every option of ``fit``)
========== =============================================================================
map        ``MAPGuide`` by ``fit``: a point mass at the MAP
mean_field ``MeanFieldGuide`` by ``fit``; ``init_scale``
dropout    ``DropoutGuide`` by ``fit`` (MC dropout as VI); ``p`` (default: each slot's own rate)
laplace    ``fit_laplace`` around ``map_posterior`` (fitted with ``fit``'s options if not
           given), or around a network trained with plain PyTorch passed as ``model``
           (with ``likelihood``, ``prior_scale``); ``subset``, ``structure``, ``hessian``,
           ``optimize_prior``, ``curvature_batch_size``, ``optimize_noise`` (Gaussian regression)
nuts       ``nuts`` on ``data = (x, y)``; every option of ``nuts``
swag       ``fit_swag`` (SWAG, Maddox et al. 2019) from ``map_posterior`` (fitted with
           ``fit``'s options if not given); ``swag_epochs``, ``swag_lr``, ``swag_momentum``,
           ``rank``, ``collect_every``, ``burn_in``, ``swag_checkpoint``
ensemble   ``fit_ensemble``: ``members`` posteriors of the method ``member``, fitted
           independently (``seeds``; ``member_options``; or ``fit_member(method, seed)``)
deep_      ``members`` MAP networks (Lakshminarayanan et al. 2017); ``seeds``,
ensemble   ``fit_member``, and every option of ``fit`` for each member
multiswag  ``members`` SWAGs (Wilson & Izmailov 2020); ``seeds``, ``fit_member``, and every
           option of ``swag`` but ``map_posterior``
========== =============================================================================

Under a launched Fabric (:mod:`bayesdl.inference.distributed`) the SVI methods train
data-parallel; ``laplace`` (its curvature pass) and ``nuts`` are single-process: every rank
computes them whole, and :func:`approximate` warns once.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from dataclasses import dataclass

import torch

from bayesdl.models.bnn import bnn_of

from . import distributed
from .ensemble import fit_ensemble
from .guides import DropoutGuide, MAPGuide, MeanFieldGuide
from .laplace import fit_laplace
from .mcmc import nuts
from .posterior import Posterior
from .svi import fit
from .swag import SHARED_FIT_OPTIONS, fit_swag

__all__ = ["approximate", "register_method", "METHODS", "MethodInfo"]


@dataclass(frozen=True)
class MethodInfo:
    """A registered method: its factory ``(model, data, **options) -> Posterior``, a one-line
    description, the options it accepts, and -- for a method that does not train data-parallel
    under a launched Fabric -- why it runs whole in every process."""

    name: str
    factory: Callable[..., Posterior]
    description: str
    options: frozenset[str]
    single_process: str | None = None


#: name -> method, in registration order
METHODS: dict[str, MethodInfo] = {}


def _keywords(function) -> set[str]:
    return {name for name, p in inspect.signature(function).parameters.items()
            if p.kind in (p.KEYWORD_ONLY, p.POSITIONAL_OR_KEYWORD)}


def register_method(name: str, description: str, *,
                    passes_to: Callable | tuple[Callable, ...] | None = None,
                    single_process: str | None = None):
    """Decorator registering ``factory(model, data, **options) -> Posterior`` under ``name``.

    The options it accepts are its own keyword parameters, plus those of ``passes_to`` (e.g.
    ``fit``, or a tuple of functions) when it forwards ``**options`` there; :func:`approximate`
    refuses any other. ``single_process`` says why the method is not data-parallel, if it is not
    (methods built on ``fit`` are).
    """
    if not isinstance(name, str) or not name:
        raise ValueError("a method needs a non-empty name")

    def decorate(factory):
        options = _keywords(factory) - {"model", "data"}
        targets = () if passes_to is None else passes_to if isinstance(passes_to, tuple) else (passes_to,)
        for target in targets:
            options |= _keywords(target) - {"model", "guide", "data"}
        METHODS[name] = MethodInfo(name, factory, description, frozenset(options), single_process)
        return factory

    return decorate


def approximate(method: str, model, data, **options) -> Posterior:
    """Fit the approximate posterior ``method`` of ``model`` to ``data``; see the module table.

    ``data`` is what the method fits to: a ``DataLoader`` of ``(x, y)`` or a tuple ``(x, y)``.
    Raises ``ValueError`` for an unknown method and ``TypeError`` for an option the method does
    not take, naming the ones it does.
    """
    if method not in METHODS:
        raise ValueError(f"unknown inference method {method!r}; choose one of {sorted(METHODS)}")
    info = METHODS[method]
    unknown = sorted(set(options) - info.options)
    if unknown:
        raise TypeError(f"method {method!r} takes no option {unknown}; its options: {sorted(info.options)}")
    if info.single_process is not None:
        distributed.warn_not_data_parallel(method, info.single_process)
    posterior = info.factory(model, data, **options)
    posterior.method = method
    return posterior


@register_method("map", "MAP estimate: a point mass (MAPGuide by SVI)", passes_to=fit)
def _map(model, data, **fit_options) -> Posterior:
    return fit(model, MAPGuide(model), data, **fit_options)


@register_method("mean_field", "mean-field Gaussian VI with local reparameterization", passes_to=fit)
def _mean_field(model, data, *, init_scale: float = 1e-3, **fit_options) -> Posterior:
    return fit(model, MeanFieldGuide(model, init_scale=init_scale), data, **fit_options)


@register_method("dropout", "MC dropout as variational inference (Bernoulli masks)", passes_to=fit)
def _dropout(model, data, *, p: float | None = None, **fit_options) -> Posterior:
    return fit(model, DropoutGuide(model, p=p), data, **fit_options)


@register_method("laplace", "Laplace approximation around the MAP", passes_to=fit,
                 single_process="its curvature pass runs over the whole training set in one process")
def _laplace(model, data, *, map_posterior: Posterior | None = None, subset: str = "all",
             structure: str = "full", hessian: str = "ggn", optimize_prior: bool = True,
             curvature_batch_size: int = 256, optimize_noise: bool = False, likelihood=None,
             prior_scale: float = 1.0, **fit_options) -> Posterior:
    if bnn_of(model) is None and isinstance(model, torch.nn.Module):
        # A network trained with plain PyTorch: its weights are the MAP (laplace-torch's main use).
        if map_posterior is not None or fit_options:
            raise TypeError("a plain network is its own MAP: pass neither map_posterior nor training options")
        return fit_laplace(model, data, subset, structure, hessian=hessian, optimize_prior=optimize_prior,
                           batch_size=curvature_batch_size, optimize_noise=optimize_noise,
                           likelihood=likelihood, prior_scale=prior_scale)
    if likelihood is not None:
        raise TypeError("likelihood is for a plain network; a BNN model already has its likelihood")
    if map_posterior is None:
        map_posterior = fit(model, MAPGuide(model), data, **fit_options)
    elif fit_options:
        raise TypeError(f"options {sorted(fit_options)} train the MAP, but map_posterior was given")
    return fit_laplace(map_posterior, data, subset, structure, hessian=hessian, optimize_prior=optimize_prior,
                       batch_size=curvature_batch_size, optimize_noise=optimize_noise)


@register_method("nuts", "NUTS (exact reference for small models)", passes_to=nuts,
                 single_process="Markov chains are sequential, and NUTS runs on the full data")
def _nuts(model, data, **nuts_options) -> Posterior:
    if not (isinstance(data, tuple) and len(data) == 2):
        raise TypeError(f"nuts samples the full-data posterior: pass data as a tuple (x, y), got "
                        f"{type(data).__name__}")
    return nuts(model, *data, **nuts_options)


@register_method("swag", "SWAG: a Gaussian from the moments of SGD iterates (Maddox et al. 2019)",
                 passes_to=fit)
def _swag(model, data, *, map_posterior: Posterior | None = None, swag_epochs: int = 10,
          swag_lr: float = 0.01, swag_momentum: float = 0.9, rank: int = 20,
          collect_every: int | None = None, burn_in: int = 0, swag_checkpoint=None,
          **fit_options) -> Posterior:
    shared = {k: v for k, v in fit_options.items() if k in SHARED_FIT_OPTIONS}
    if map_posterior is None:
        map_posterior = fit(model, MAPGuide(model), data, **fit_options)
    elif set(fit_options) - SHARED_FIT_OPTIONS:
        raise TypeError(f"options {sorted(set(fit_options) - SHARED_FIT_OPTIONS)} train the MAP, but "
                        "map_posterior was given; the SWAG phase takes swag_epochs, swag_lr, swag_momentum, "
                        "swag_checkpoint")
    return fit_swag(map_posterior, data, epochs=swag_epochs, lr=swag_lr, momentum=swag_momentum, rank=rank,
                    collect_every=collect_every, burn_in=burn_in, checkpoint=swag_checkpoint, **shared)


@register_method("ensemble", "independently fitted members of any registered method, as one mixture")
def _ensemble(model, data, *, member: str = "map", members: int = 5, seeds=None, fit_member=None,
              member_options: dict | None = None) -> Posterior:
    return fit_ensemble(model, data, member, members, seeds, fit_member, **(member_options or {}))


@register_method("deep_ensemble", "deep ensemble: K MAP networks from independent initialisations",
                 passes_to=fit)
def _deep_ensemble(model, data, *, members: int = 5, seeds=None, fit_member=None, **fit_options) -> Posterior:
    return fit_ensemble(model, data, "map", members, seeds, fit_member, **fit_options)


@register_method("multiswag", "MultiSWAG: an ensemble of K SWAGs (Wilson & Izmailov 2020)",
                 passes_to=(_swag, fit))
def _multiswag(model, data, *, members: int = 5, seeds=None, fit_member=None, **swag_options) -> Posterior:
    if "map_posterior" in swag_options:
        raise TypeError("multiswag fits one MAP per member; it takes no map_posterior (use swag for one)")
    return fit_ensemble(model, data, "swag", members, seeds, fit_member, **swag_options)
