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
name       what it fits; its own options (the SVI methods also take every option of ``fit``:
           flat, or as one ``config=FitConfig(...)``)
========== =============================================================================
map        ``MAPGuide`` by ``fit``: a point mass at the MAP
mean_field ``MeanFieldGuide`` by ``fit``; ``init_scale``, ``local_reparameterization`` (``"all"``,
           ``"linear"``, ``"none"``: which layers draw pre-activations per example)
dropout    ``DropoutGuide`` by ``fit`` (MC dropout as VI); ``p`` (default: each slot's own rate);
           or, around a network trained with plain PyTorch passed as ``model`` (Baal's
           ``MCDropoutModule``; ``data`` unused, nothing trained), its dropout layers active at
           prediction (with ``likelihood``, default ``"categorical"``, and ``prior_scale``)
laplace    ``fit_laplace`` around ``map_posterior``, or around a MAP trained by ``fit`` as
           ``map_training=FitConfig(...)`` says (or the same options flat), or around a
           network trained with plain PyTorch passed as ``model`` (with ``likelihood``,
           ``prior_scale``); ``subset``, ``structure``, ``hessian``, ``optimize_prior``
           (``"marglik"``: marginal likelihood; ``"validation"``: the NLL on ``val_data`` over a
           log grid; True, the default: validation when ``val_data`` is given, else marginal
           likelihood; False), ``curvature_batch_size``, ``optimize_noise`` (Gaussian regression)
nuts       ``nuts`` on ``data = (x, y)``; every option of ``nuts``
swag       ``fit_swag`` (SWAG, Maddox et al. 2019) from ``map_posterior``, or from a MAP
           trained as ``map_training`` (or the flat ``fit`` options) says;
           ``swag_epochs``, ``swag_lr``, ``swag_momentum``, ``rank``, ``collect_every``,
           ``burn_in``, ``swag_checkpoint``. The run options (``seed``, ``device``,
           ``progress``, ``batch_size``, ``dataset_size``, ``shuffle``, ``resume``) of the
           MAP's training are the SWAG phase's too; with ``map_posterior`` they are given flat
ensemble   ``fit_ensemble``: ``members`` posteriors of the method ``member``, fitted
           independently (``seeds``; ``member_options``; or ``fit_member(method, seed)``)
deep_      ``members`` MAP networks (Lakshminarayanan et al. 2017); ``seeds``,
ensemble   ``fit_member``, and every option of ``fit`` (or ``config``) for each member
multiswag  ``members`` SWAGs (Wilson & Izmailov 2020); ``seeds``, ``fit_member``, and every
           option of ``swag`` but ``map_posterior``
sgld       ``sgld`` (SGLD; pSGLD with ``precondition=True``) on minibatch gradients of NUTS's
           potential; ``lr``, ``temperature``, ``precondition*`` and every option of ``sampling_run``
sghmc      ``sghmc`` (SGHMC): the options of ``sgld`` and ``friction``
csgmcmc    ``csgmcmc`` (cyclical SG-MCMC, Zhang et al. 2020): ``base`` (``"sgld"``, ``"sghmc"``),
           ``cycles``, ``exploration``, ``samples_per_cycle``, and those of ``sghmc`` but ``burn_in``
========== =============================================================================

A ``FitConfig``'s ``seed`` (in ``config`` or ``map_training``) is where the seeds start, as
the flat ``seed``: for an ensemble member ``k`` gets ``seed + k``.

Under a launched Fabric (:mod:`bayesdl.inference.distributed`) the SVI methods train
data-parallel; ``laplace`` (its curvature pass) and ``nuts`` are single-process: every rank
computes them whole, and :func:`approximate` warns once.
"""

from __future__ import annotations

import copy
import inspect
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import torch

from bayesdl.checks import check_int, check_positive
from bayesdl.models.bnn import BNN, bnn_of
from bayesdl.models.networks import dropout_modules

from . import distributed
from .ensemble import Ensemble, _signature, reinitialised
from .guides import DropoutGuide, MAPGuide, MeanFieldGuide
from .laplace import check_fit_options, fit_laplace
from .laplace import check_options as check_laplace_options
from .mcmc import nuts
from .posterior import Approximation, Posterior
from .sgmcmc import csgmcmc, sampling_run, sghmc, sgld
from .svi import FitConfig, _gather, _options_of, fit
from .swag import SHARED_FIT_OPTIONS, fit_swag
from .swag import check_phase as check_swag_phase

__all__ = ["approximate", "register_method", "METHODS", "MethodInfo", "fit_ensemble"]


@dataclass(frozen=True)
class MethodInfo:
    """A registered method: its factory ``(model, data, **options) -> Posterior``, a one-line
    description, the options it accepts, and -- for a method that does not train data-parallel
    under a launched Fabric -- why it runs whole in every process.

    How the method composes is declared here, so that no caller infers it from option names:
    ``around_map`` -- it is fitted around a MAP posterior (``map_posterior``; Laplace, SWAG);
    ``member`` -- it is an ensemble whose members are posteriors of that registered method
    (``fit_member(method, seed)`` may serve them; see :meth:`member_of`); ``guide`` -- the guide
    class an SVI method trains by ``fit`` (None for the others); ``checkpoint_option`` -- the
    option through which it saves and resumes a training phase of its own (``checkpoint`` for
    the SVI methods, ``swag_checkpoint`` for SWAG; None for a method without one); ``label`` --
    its name on figures and in reports.

    Every registered method has one, in :data:`METHODS`::

        >>> from bayesdl.inference import METHODS
        >>> info = METHODS["swag"]
        >>> info.name, info.label, info.around_map, info.is_ensemble, info.checkpoint_option
        ('swag', 'SWAG', True, False, 'swag_checkpoint')
        >>> {"rank", "swag_epochs", "map_posterior"} <= info.options
        True
        >>> METHODS["multiswag"].member_of(), sorted(METHODS["dropout"].run_options)
        ('swag', ['device', 'progress', 'seed'])
        >>> METHODS["nuts"].single_process
        'Markov chains are sequential, and NUTS runs on the full data'
    """

    name: str
    factory: Callable[..., Posterior]
    description: str
    options: frozenset[str]
    single_process: str | None = None
    label: str = ""
    around_map: bool = False
    member: str | None = None
    guide: type | None = None
    checkpoint_option: str | None = None

    @property
    def is_ensemble(self) -> bool:
        return self.member is not None

    @property
    def run_options(self) -> frozenset[str]:
        """Which options of a run (:data:`RUN_OPTIONS`: ``seed``, ``device``, ``progress``) the
        method takes when it fits from the data alone (no ``map_posterior``, no ``fit_member``):
        what a loop that fits any method (active learning, bandits) may hand it."""
        return self.options & RUN_OPTIONS

    def member_of(self, options: dict | None = None) -> str | None:
        """The registered method of the members, given the options the method is called with
        (``ensemble`` takes it as its ``member`` option); None for a method that is no ensemble."""
        if self.member is None:
            return None
        return (options or {}).get("member", self.member)


#: name -> method, in registration order
METHODS: dict[str, MethodInfo] = {}
#: the options of a run that a loop fitting any method hands on (see :attr:`MethodInfo.run_options`)
RUN_OPTIONS = frozenset({"seed", "device", "progress"})


def _keywords(function) -> set[str]:
    return {name for name, p in inspect.signature(function).parameters.items()
            if p.kind in (p.KEYWORD_ONLY, p.POSITIONAL_OR_KEYWORD)}


def register_method(name: str, description: str, *,
                    passes_to: Callable | tuple[Callable, ...] | None = None,
                    single_process: str | None = None, label: str | None = None,
                    around_map: bool = False, member: str | None = None, guide: type | None = None,
                    checkpoint_option: str | None = None, without: tuple[str, ...] = ()):
    """Decorator registering ``factory(model, data, **options) -> Posterior`` under ``name``.

    The options it accepts are its own keyword parameters, plus those of ``passes_to`` (e.g.
    ``fit``, or a tuple of functions) when it forwards ``**options`` there, less those named in
    ``without`` (an option of a shared function that this method does not take);
    :func:`approximate` refuses any other. ``single_process`` says why the method is not
    data-parallel, if it is not (methods built on ``fit`` are). ``label`` (default: the name),
    ``around_map``, ``member``, ``guide`` and ``checkpoint_option`` declare how the method composes (see
    :class:`MethodInfo`): a method fitted around a MAP takes ``map_posterior``, an ensemble
    ``fit_member``. A method passing its options to ``fit`` resumes through ``checkpoint``.

    Example (a MAP trained by SGD with momentum, under a new name)::

        >>> import torch
        >>> import torch.nn as nn
        >>> from bayesdl.models import BNN
        >>> _ = torch.manual_seed(0)
        >>> x = torch.rand(8, 2); y = (x.sum(1) > 1).long()     # 8 points in [0, 1]^2, 2 classes
        >>> from bayesdl.inference import METHODS, MAPGuide, approximate, fit, register_method
        >>> @register_method("map_sgd", "MAP by SGD with momentum", passes_to=fit)
        ... def map_sgd(model, data, *, momentum=0.9, **fit_options):
        ...     def sgd(params):
        ...         return torch.optim.SGD(params, lr=1e-3, momentum=momentum)
        ...     return fit(model, MAPGuide(model), data, optimizer=sgd, **fit_options)
        >>> sorted(METHODS["map_sgd"].options & {"momentum", "epochs", "seed"})
        ['epochs', 'momentum', 'seed']
        >>> posterior = approximate("map_sgd", BNN(nn.Linear(2, 2)), (x, y), momentum=0.5, epochs=1,
        ...                         progress=False)
        >>> posterior.method, posterior.is_point_mass
        ('map_sgd', True)
        >>> del METHODS["map_sgd"]                  # leave the registry as it was
    """
    if not isinstance(name, str) or not name:
        raise ValueError("a method needs a non-empty name")
    if member is not None and member not in METHODS:
        raise ValueError(f"the members of {name!r} must be a registered method, got {member!r}")

    def decorate(factory):
        options = _keywords(factory) - {"model", "data"}
        targets = () if passes_to is None else passes_to if isinstance(passes_to, tuple) else (passes_to,)
        for target in targets:
            options |= _keywords(target) - {"model", "guide", "data"}
        unknown = sorted(set(without) - options)
        if unknown:
            raise ValueError(f"method {name!r}: without names options it would not take anyway: {unknown}")
        options -= set(without)
        resumes = checkpoint_option or ("checkpoint" if fit in targets and guide is not None else None)
        missing = [option for option, declared in (("map_posterior", around_map), ("fit_member", member),
                                                   (resumes, resumes)) if declared and option not in options]
        if missing:
            raise TypeError(f"method {name!r} is declared as composed but takes no {missing}")
        METHODS[name] = MethodInfo(name, factory, description, frozenset(options), single_process,
                                   label or name, around_map, member, guide, resumes)
        return factory

    return decorate


def approximate(method: str, model, data, **options) -> Posterior:
    """Fit the approximate posterior ``method`` of ``model`` to ``data``; see the module table.

    ``data`` is what the method fits to: a ``DataLoader`` of ``(x, y)`` or a tuple ``(x, y)``.
    Raises ``ValueError`` for an unknown method and ``TypeError`` for an option the method does
    not take, naming the ones it does.

    Example::

        >>> import torch
        >>> import torch.nn as nn
        >>> from bayesdl.models import BNN
        >>> _ = torch.manual_seed(0)
        >>> x = torch.rand(8, 2); y = (x.sum(1) > 1).long()     # 8 points in [0, 1]^2, 2 classes
        >>> from bayesdl.inference import approximate
        >>> model = BNN(nn.Linear(2, 2), prior_scale=1.0)
        >>> posterior = approximate("mean_field", model, (x, y), epochs=2, lr=1e-2, seed=0, progress=False)
        >>> posterior.method, posterior.predict(x[:3], num_samples=4).probs.shape
        ('mean_field', torch.Size([4, 3, 2]))
        >>> approximate("mean_field", model, (x, y), epoch=2)      # doctest: +ELLIPSIS
        Traceback (most recent call last):
        ...
        TypeError: method 'mean_field' takes no option ['epoch']; its options: [...]
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


def _map_training(method: str, map_posterior, map_training, fit_options: dict, shared=frozenset(),
                  hint: str = "") -> tuple[FitConfig, object]:
    """How a method fitted around a MAP trains that MAP: ``map_training``, or its flat ``fit``
    options gathered into one :class:`FitConfig`, and the ``fabric`` to train on. With
    ``map_posterior`` only the ``shared`` options (those of the method's own run) may be given.
    Contradicting combinations are a ``TypeError`` that says what to pass."""
    options = dict(fit_options)
    if "config" in options:
        raise TypeError(f"{method} is told how to train its MAP by map_training=FitConfig(...), not config=")
    if map_posterior is not None:
        if map_training is not None:
            raise TypeError("map_training says how to train the MAP, but map_posterior was given: pass "
                            "map_posterior to start from a trained MAP, or map_training to train one")
        training = sorted(set(options) - shared)
        if training:
            raise TypeError(f"options {training} train the MAP, but map_posterior was given{hint}")
    fabric = options.pop("fabric", None)  # where to train, not how: no FitConfig field
    return _gather(map_training, options, method, "map_training"), fabric  # both at once: a TypeError


def _check_map_posterior(method: str, model, map_posterior, accepted=Posterior) -> None:
    """``map_posterior`` (when given) is a fitted posterior of ``model``'s network (an instance of
    ``accepted``): a TypeError for anything else, a ValueError for the MAP of another architecture --
    before any work."""
    if map_posterior is None:
        return
    if not isinstance(map_posterior, accepted):
        raise TypeError(f"map_posterior must be a Posterior of the MAP, e.g. approximate('map', model, "
                        f"data), got {type(map_posterior).__name__}")
    if bnn_of(model) is not None and bnn_of(map_posterior.model) is not None and (
            _signature(model) != _signature(map_posterior.model)):
        raise ValueError(f"map_posterior is the MAP of another network than model (other latent weights "
                         f"or likelihood); {method} is fitted around the MAP of model: pass the MAP of this "
                         "model, or leave map_posterior out to train one")


def _spread(options: dict, name: str, method: str, fit_member) -> dict:
    """``options`` with the FitConfig ``options[name]`` spread into the flat ``fit`` options it
    sets: an ensemble passes each member its own ``seed`` (the config's plus ``k``) flat, so the
    members see exactly the flat call. Unchanged when ``fit_member`` serves the members (then
    :func:`fit_ensemble` refuses every option, naming it)."""
    config = options.get(name)
    if config is None or fit_member is not None:
        return options
    rest = {key: value for key, value in options.items() if key != name}
    flat = {key: value for key, value in rest.items() if key in FitConfig.__dataclass_fields__}
    _gather(config, flat, method, name)  # a FitConfig and no flat fit option besides, else a TypeError
    return {**rest, **_options_of(config)}


@register_method("map", "MAP estimate: a point mass (MAPGuide by SVI)", passes_to=fit, label="MAP",
                 guide=MAPGuide)
def _map(model, data, **fit_options) -> Posterior:
    return fit(model, MAPGuide(model), data, **fit_options)


@register_method("mean_field", "mean-field Gaussian VI with local reparameterization", passes_to=fit,
                 label="mean-field VI", guide=MeanFieldGuide)
def _mean_field(model, data, *, init_scale: float = 1e-3, local_reparameterization: str = "all",
                **fit_options) -> Posterior:
    guide = MeanFieldGuide(model, init_scale=init_scale, local_reparameterization=local_reparameterization)
    return fit(model, guide, data, **fit_options)


@register_method("dropout", "MC dropout as variational inference (Bernoulli masks)", passes_to=fit,
                 label="MC dropout", guide=DropoutGuide)
def _dropout(model, data, *, p: float | None = None, likelihood=None, prior_scale: float | None = None,
             **fit_options) -> Posterior:
    if bnn_of(model) is None and isinstance(model, torch.nn.Module):
        return _trained_dropout(model, p, likelihood, prior_scale, fit_options)
    if likelihood is not None:
        raise TypeError("likelihood is for a plain network; a BNN model already has its likelihood")
    if prior_scale is not None:
        raise TypeError("prior_scale is for a plain network; a BNN model has its prior (set it when building "
                        "the BNN: BNN(net, prior_scale=...))")
    return fit(model, DropoutGuide(model, p=p), data, **fit_options)


def _trained_dropout(net: torch.nn.Module, p, likelihood, prior_scale, fit_options: dict) -> Posterior:
    """MC dropout around a network trained with plain PyTorch (Baal's ``MCDropoutModule``): its
    weights are the point of a :class:`DropoutGuide` on a copy of it, nothing is trained, and the
    predictive runs the copy in eval mode with its dropout layers active (their own rates, or
    ``p``). The user's network is not changed."""
    if fit_options:
        raise TypeError(f"a trained network is not retrained; options {sorted(fit_options)} train one: pass "
                        "the trained nn.Module alone (with p, likelihood, prior_scale), or wrap it as a BNN "
                        "(BNN(net, ...)) to train MC dropout as VI with fit's options")
    if not dropout_modules(net):
        raise ValueError(
            f"{type(net).__name__} has no dropout layer (nn.Dropout), so MC dropout has nowhere to draw "
            "masks (p cannot add one): add dropout layers and train the network with them, or use "
            "approximate('laplace', net, data, likelihood=...) for the uncertainty of a network without "
            "dropout"
        )
    prior_scale = 1.0 if prior_scale is None else check_positive(prior_scale, "prior_scale")
    # A copy: BNN turns the network's parameters into buffers, and the user's network must stay trainable.
    # Eval mode: batch norm uses its running statistics; the guide switches on the dropout layers only.
    model = BNN(copy.deepcopy(net).eval(), prior_scale=prior_scale,
                likelihood="categorical" if likelihood is None else likelihood)
    guide = DropoutGuide(model, p=p)  # its point starts at the network's trained weights
    if not bool(torch.isfinite(guide.weights).all()):
        raise ValueError("the network's weights hold NaN or Inf: train it again before MC dropout")
    guide.requires_grad_(False)
    return Posterior(model, guide)


@register_method("laplace", "Laplace approximation around the MAP", passes_to=fit, label="Laplace",
                 around_map=True,
                 single_process="its curvature pass runs over the whole training set in one process")
def _laplace(model, data, *, map_posterior: Posterior | None = None, map_training: FitConfig | None = None,
             subset: str = "all", structure: str = "full", hessian: str = "ggn",
             optimize_prior: bool | str = True, curvature_batch_size: int = 256, optimize_noise: bool = False,
             likelihood=None, prior_scale: float | None = None, val_data=None, **fit_options) -> Posterior:
    # Laplace's own options first: a typo must not cost a MAP training.
    check_laplace_options(subset, structure, hessian)
    check_fit_options(optimize_prior, optimize_noise, curvature_batch_size, "curvature_batch_size",
                      val_data=val_data)
    if bnn_of(model) is None and isinstance(model, torch.nn.Module):
        # A network trained with plain PyTorch: its weights are the MAP (laplace-torch's main use).
        if map_posterior is not None or map_training is not None or fit_options:
            raise TypeError("a plain network is its own MAP: pass neither map_posterior nor training options")
        return fit_laplace(model, data, subset, structure, hessian=hessian, optimize_prior=optimize_prior,
                           batch_size=curvature_batch_size, optimize_noise=optimize_noise,
                           likelihood=likelihood, prior_scale=prior_scale, val_data=val_data)
    if likelihood is not None:
        raise TypeError("likelihood is for a plain network; a BNN model already has its likelihood")
    if prior_scale is not None:
        raise TypeError("prior_scale is for a plain network; a BNN model has its prior (set it when building "
                        "the BNN: BNN(net, prior_scale=...))")
    # fit_laplace also takes the MAP's approximation itself (a MAPGuide)
    _check_map_posterior("laplace", model, map_posterior, accepted=(Posterior, Approximation))
    config, fabric = _map_training("laplace", map_posterior, map_training, fit_options)
    if map_posterior is None:
        map_posterior = fit(model, MAPGuide(model), data, config, fabric=fabric)
    return fit_laplace(map_posterior, data, subset, structure, hessian=hessian, optimize_prior=optimize_prior,
                       batch_size=curvature_batch_size, optimize_noise=optimize_noise, val_data=val_data)


@register_method("nuts", "NUTS (exact reference for small models)", passes_to=nuts, label="NUTS",
                 single_process="Markov chains are sequential, and NUTS runs on the full data")
def _nuts(model, data, **nuts_options) -> Posterior:
    if not (isinstance(data, tuple) and len(data) == 2):
        raise TypeError(f"nuts samples the full-data posterior: pass data as a tuple (x, y), got "
                        f"{type(data).__name__}")
    return nuts(model, *data, **nuts_options)


@register_method("swag", "SWAG: a Gaussian from the moments of SGD iterates (Maddox et al. 2019)",
                 passes_to=fit, label="SWAG", around_map=True, checkpoint_option="swag_checkpoint")
def _swag(model, data, *, map_posterior: Posterior | None = None, map_training: FitConfig | None = None,
          swag_epochs: int = 10, swag_lr: float = 0.01, swag_momentum: float = 0.9, rank: int = 20,
          collect_every: int | None = None, burn_in: int = 0, swag_checkpoint=None,
          **fit_options) -> Posterior:
    # the SWAG phase's options first: a typo must not cost a MAP training
    check_swag_phase(swag_epochs, swag_lr, swag_momentum, rank, collect_every, burn_in, prefix="swag_")
    _check_map_posterior("swag", model, map_posterior)
    config, fabric = _map_training(
        "swag", map_posterior, map_training, fit_options, shared=SHARED_FIT_OPTIONS,
        hint="; the SWAG phase takes swag_epochs, swag_lr, swag_momentum, swag_checkpoint")
    if map_posterior is None:
        map_posterior = fit(model, MAPGuide(model), data, config, fabric=fabric)
    # The run options (seed, device, batch_size, ...) are the SWAG phase's too; given or not,
    # each is passed with its value, a default being fit_swag's own.
    shared = {name: getattr(config, name) for name in sorted(SHARED_FIT_OPTIONS)}
    return fit_swag(map_posterior, data, epochs=swag_epochs, lr=swag_lr, momentum=swag_momentum, rank=rank,
                    collect_every=collect_every, burn_in=burn_in, checkpoint=swag_checkpoint, **shared)


def fit_ensemble(model, data, method: str = "map", members: int = 5, seeds: Sequence[int] | None = None,
                 fit_member: Callable[[str, int], Posterior] | None = None, **member_options) -> Posterior:
    """Fit ``members`` posteriors of the registered ``method`` independently and return their
    mixture (an :class:`Ensemble` inside a :class:`Posterior`).

    Member ``k`` has seed ``seeds[k]`` (default ``seed + k``, with ``seed`` from
    ``member_options`` or 0). By default it is ``approximate(method, reinitialised(model,
    seed_k), data, seed=seed_k, **member_options)``; ``fit_member(method, seed_k)`` replaces
    that (a study serving members from its cache; ``model`` and ``data`` are then unused) and
    must return the member's :class:`Posterior`. ``method`` is no ensemble itself (an ensemble
    of ensembles is one ensemble with more members).

    Example (a deep ensemble of two MAP networks)::

        >>> import torch
        >>> import torch.nn as nn
        >>> from bayesdl.models import BNN
        >>> _ = torch.manual_seed(0)
        >>> x = torch.rand(8, 2); y = (x.sum(1) > 1).long()     # 8 points in [0, 1]^2, 2 classes
        >>> from bayesdl.inference import fit_ensemble
        >>> posterior = fit_ensemble(BNN(nn.Linear(2, 2)), (x, y), "map", members=2, epochs=1, progress=False)
        >>> posterior.method, posterior.predict(x[:3], num_samples=4).probs.shape
        ('ensemble of map', torch.Size([4, 3, 2]))
    """
    if not isinstance(method, str):
        raise TypeError(f"method must be the name of a registered method, e.g. 'map', got "
                        f"{type(method).__name__}")
    if method not in METHODS:
        raise ValueError(f"unknown member method {method!r}; choose one of {sorted(METHODS)}")
    if METHODS[method].is_ensemble:
        plain = sorted(name for name, info in METHODS.items() if not info.is_ensemble)
        raise ValueError(f"the member method {method!r} is itself an ensemble; an ensemble of L ensembles of "
                         f"K members is one ensemble of members=K * L members of its member method "
                         f"({METHODS[method].member_of()!r}): pass that, or one of {plain}")
    if isinstance(members, bool) or not isinstance(members, int) or members < 1:
        raise ValueError(f"members (K) must be a whole number >= 1, got {members!r}")
    if fit_member is not None and not callable(fit_member):
        raise TypeError(f"fit_member must be a function (method, seed) -> Posterior fitting one member, got "
                        f"{type(fit_member).__name__}")
    base = check_int(member_options.pop("seed", 0), "seed", minimum=0)
    if seeds is None:
        seeds = [base + k for k in range(members)]
    elif isinstance(seeds, (str, bytes)) or not isinstance(seeds, Sequence):
        raise TypeError(f"seeds must be a list of {members} integers, one per member, got "
                        f"{type(seeds).__name__}")
    seeds = [check_int(s, "seed", minimum=0) for s in seeds]
    if len(seeds) != members:
        raise ValueError(f"{members} members need {members} seeds, got {len(seeds)}")
    if len(set(seeds)) != len(seeds):
        raise ValueError(f"members need distinct seeds (equal seeds give equal members), got {seeds}")
    if fit_member is None:
        takes_seed = "seed" in METHODS[method].options

        def fit_member(name, seed):
            extra = {"seed": seed} if takes_seed else {}
            return approximate(name, reinitialised(model, seed), data, **extra, **member_options)
    elif member_options:
        raise TypeError(f"options {sorted(member_options)} fit the members, but fit_member was given")
    fitted = []
    for seed in seeds:
        member = fit_member(method, seed)
        if not isinstance(member, Posterior):
            raise TypeError(f"fit_member({method!r}, {seed}) returned a {type(member).__name__}, not a "
                            "Posterior: it must return the fitted member, e.g. approximate(method, model, "
                            "data, seed=seed)")
        fitted.append(member)
    return Posterior(fitted[0].model, Ensemble(fitted), method=f"ensemble of {method}")


@register_method("ensemble", "independently fitted members of any registered method, as one mixture",
                 label="ensemble", member="map")
def _ensemble(model, data, *, member: str = "map", members: int = 5, seeds=None, fit_member=None,
              member_options: dict | None = None) -> Posterior:
    if member_options is not None and not isinstance(member_options, Mapping):
        raise TypeError(f"member_options must be a dict of the members' options (e.g. {{'epochs': 10}}), got "
                        f"{type(member_options).__name__}")
    return fit_ensemble(model, data, member, members, seeds, fit_member, **(member_options or {}))


@register_method("deep_ensemble", "deep ensemble: K MAP networks from independent initialisations",
                 passes_to=fit, label="deep ensemble", member="map")
def _deep_ensemble(model, data, *, members: int = 5, seeds=None, fit_member=None, **fit_options) -> Posterior:
    fit_options = _spread(fit_options, "config", "deep_ensemble", fit_member)
    return fit_ensemble(model, data, "map", members, seeds, fit_member, **fit_options)


@register_method("multiswag", "MultiSWAG: an ensemble of K SWAGs (Wilson & Izmailov 2020)",
                 passes_to=(_swag, fit), label="MultiSWAG", member="swag")
def _multiswag(model, data, *, members: int = 5, seeds=None, fit_member=None, **swag_options) -> Posterior:
    if "map_posterior" in swag_options:
        raise TypeError("multiswag fits one MAP per member; it takes no map_posterior (use swag for one)")
    swag_options = _spread(swag_options, "map_training", "multiswag", fit_member)
    return fit_ensemble(model, data, "swag", members, seeds, fit_member, **swag_options)


_SGMCMC = "Markov chains are sequential: each chain runs whole in one process"


@register_method("sgld", "SGLD / pSGLD: Langevin dynamics on minibatch gradients (Welling & Teh 2011)",
                 passes_to=(sgld, sampling_run), label="SGLD", checkpoint_option="checkpoint",
                 single_process=_SGMCMC)
def _sgld(model, data, **options) -> Posterior:
    return sgld(model, data, **options)


@register_method("sghmc", "SGHMC: Hamiltonian dynamics with friction on minibatch gradients "
                 "(Chen et al. 2014)",
                 passes_to=(sghmc, sampling_run), label="SGHMC", checkpoint_option="checkpoint",
                 single_process=_SGMCMC)
def _sghmc(model, data, **options) -> Posterior:
    return sghmc(model, data, **options)


@register_method("csgmcmc", "cyclical SG-MCMC: cosine step-size cycles, draws at each cycle's end "
                 "(Zhang et al. 2020)", passes_to=(csgmcmc, sampling_run), label="cyclical SG-MCMC",
                 checkpoint_option="checkpoint", single_process=_SGMCMC, without=("burn_in",))
def _csgmcmc(model, data, **options) -> Posterior:
    return csgmcmc(model, data, **options)  # no burn_in: the cycles collect their own draws
