"""``fit``: minibatch stochastic variational inference.

One loop for every guide: a :class:`bayesdl.inference.guides.BNNGuide` trained with
:class:`bayesdl.inference.BNNElbo` (the default), or any Pyro model and guide (``AutoNormal``, a
hand-written guide) with any Pyro ELBO. It keeps the ELBO history and its parts, stops
cleanly on a non-finite loss, saves and resumes checkpoints, and is deterministic by seed.
Its loop options (epochs, learning rate, checkpoint, ...) are given flat, as keywords, or as
one :class:`FitConfig`; both run the same code and give the same numbers.

Pyro's own ``SVI`` keeps one torch optimizer per parameter tensor (``pyro.optim``); here a
single ``torch.optim`` optimizer takes every parameter, which is both faster and lets
users pass any torch optimizer.
"""

from __future__ import annotations

import dataclasses
import inspect
import math
import os
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass

import pyro
import torch

from bayesdl._warn import warn
from bayesdl.checks import check_device, check_int, check_positive
from bayesdl.models.bnn import bnn_of
from bayesdl.progress import progress_bar

from . import distributed
from ._data import as_loader, batch_to, check_batch, dataset_size_of
from .checkpoints import checkpoint_state, save_checkpoint
from .checkpoints import resume as resume_checkpoint
from .elbo import BNNElbo
from .guides import BNNGuide
from .history import TrainingHistory
from .posterior import Posterior, check_flag

__all__ = ["fit", "FitConfig", "exponential_decay", "NonFiniteLossError"]


class NonFiniteLossError(FloatingPointError):
    """The loss or its gradient became NaN/Inf; ``posterior`` holds the last finite state.

    Example (a learning rate far too large)::

        >>> import torch
        >>> import torch.nn as nn
        >>> from bayesdl.models import BNN
        >>> _ = torch.manual_seed(0)
        >>> x = torch.rand(8, 2); y = (x.sum(1) > 1).long()     # 8 points in [0, 1]^2, 2 classes
        >>> from bayesdl.inference import MAPGuide, NonFiniteLossError, fit
        >>> model = BNN(nn.Linear(2, 2))
        >>> def huge_steps(params):
        ...     return torch.optim.SGD(params, lr=1e30)
        >>> try:
        ...     fit(model, MAPGuide(model), (x, y), epochs=5, optimizer=huge_steps, progress=False)
        ... except NonFiniteLossError as error:
        ...     weights = error.posterior.point_estimate()["weight"]
        ...     print(str(error).split(";")[0])
        ...     print("last finite weights kept:", bool(torch.isfinite(weights).all()))
        the loss became NaN/Inf at epoch 2, step 1
        last finite weights kept: True
    """

    def __init__(self, message: str, posterior: Posterior):
        super().__init__(message)
        self.posterior = posterior


def _parameters(*modules) -> list[torch.nn.Parameter]:
    seen, params = set(), []
    for module in modules:
        if isinstance(module, torch.nn.Module):
            for p in module.parameters():
                if p.requires_grad and id(p) not in seen:
                    seen.add(id(p))
                    params.append(p)
    return params


def exponential_decay(lr: float, final_lr: float, epochs: int):
    """A ``scheduler`` for :func:`fit`: the learning rate decays exponentially from ``lr`` to
    ``final_lr`` over ``epochs`` epochs (``ExponentialLR``, ``gamma = (final_lr / lr) ** (1 / epochs)``).

    Example::

        >>> import torch
        >>> from bayesdl.inference import exponential_decay
        >>> make_scheduler = exponential_decay(1e-2, 1e-4, epochs=2)    # pass it as fit(scheduler=...)
        >>> optimizer = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=1e-2)
        >>> scheduler = make_scheduler(optimizer)
        >>> rates = []
        >>> for epoch in range(2):
        ...     optimizer.step()
        ...     scheduler.step()
        ...     rates.append(round(optimizer.param_groups[0]["lr"], 8))
        >>> rates
        [0.001, 0.0001]
    """
    check_positive(lr, "lr")
    check_positive(final_lr, "final_lr")
    gamma = (final_lr / lr) ** (1.0 / max(check_int(epochs, "epochs", minimum=0), 1))
    return lambda opt: torch.optim.lr_scheduler.ExponentialLR(opt, gamma)


@dataclass(frozen=True)
class FitConfig:
    """The loop options of :func:`fit` as one value: how to train, apart from what (model,
    guide, data) and where across processes (``fabric``).

    Every field means what the keyword of the same name means for :func:`fit` and has the same
    default; values are checked here, at construction, with the errors ``fit`` gives (a
    ``ValueError`` or ``TypeError`` naming the option). A config is frozen: derive variants with
    :meth:`replace` (or ``dataclasses.replace``). ``callbacks`` is kept as a tuple.

        >>> config = FitConfig(epochs=20, lr=1e-2, batch_size=64, seed=0, progress=False)
        >>> posterior = fit(model, MeanFieldGuide(model), (x, y), config)      # doctest: +SKIP
        >>> longer = config.replace(epochs=40)           # the same run, twice as long
        >>> approximate("laplace", model, (x, y), map_training=config)      # doctest: +SKIP

    ``fit(model, guide, data, config)`` is exactly ``fit(model, guide, data, epochs=20, lr=1e-2,
    batch_size=64, seed=0, progress=False)``: the same random draws, steps and checkpoints.
    """

    epochs: int = 10
    lr: float = 1e-3
    batch_size: int = 128
    elbo: object = None
    optimizer: Callable[[Iterable], torch.optim.Optimizer] | None = None
    scheduler: Callable[[torch.optim.Optimizer], object] | None = None
    kl_weight: float = 1.0
    num_particles: int = 1
    dataset_size: int | None = None
    seed: int | None = None
    device: str | torch.device | None = None
    checkpoint: str | os.PathLike | None = None
    resume: bool = False
    callbacks: Iterable[Callable] = ()
    progress: bool = True
    shuffle: bool = True

    def __post_init__(self):
        checked = {
            "epochs": check_int(self.epochs, "epochs", minimum=0),
            "lr": check_positive(self.lr, "lr"),
            "batch_size": check_int(self.batch_size, "batch_size", minimum=1),
            "kl_weight": check_positive(self.kl_weight, "kl_weight", allow_zero=True),
            "num_particles": check_int(self.num_particles, "num_particles", minimum=1),
            "callbacks": _check_callbacks(self.callbacks),
            "resume": check_flag(self.resume, "resume"),
            "progress": check_flag(self.progress, "progress"),
            "shuffle": check_flag(self.shuffle, "shuffle"),
        }
        if self.dataset_size is not None:
            checked["dataset_size"] = check_int(self.dataset_size, "dataset_size", minimum=1)
        if self.seed is not None:
            checked["seed"] = check_int(self.seed, "seed", minimum=0)
        if self.device is not None:
            check_device(self.device)  # kept as given: fit compares it with a launched Fabric's
        for name, what in _FACTORIES.items():
            value = getattr(self, name)
            if value is not None and not callable(value):
                raise TypeError(f"{name} must be a function {what}; got a {type(value).__name__}")
        if self.elbo is not None and (isinstance(self.elbo, type)
                                      or not callable(getattr(self.elbo, "differentiable_loss", None))):
            raise TypeError(f"elbo must be a Pyro ELBO instance with a differentiable_loss, such as "
                            f"pyro.infer.Trace_ELBO() (None: BNNElbo), got {self.elbo!r}")
        if self.checkpoint is not None and not isinstance(self.checkpoint, (str, os.PathLike)):
            raise TypeError(f"checkpoint must be a file path (str or os.PathLike), got "
                            f"{type(self.checkpoint).__name__}")
        for name, value in checked.items():
            object.__setattr__(self, name, value)

    def replace(self, **changes) -> FitConfig:
        """A copy with ``changes`` (checked like a new config), e.g. ``config.replace(epochs=5)``."""
        return dataclasses.replace(self, **changes)


_OPTIONS = tuple(f.name for f in dataclasses.fields(FitConfig))

#: the options that are functions building a part of the loop, and what each must be
_FACTORIES = {
    "optimizer": "params -> torch optimizer, e.g. lambda params: torch.optim.SGD(params, lr=0.1)",
    "scheduler": "optimizer -> torch LR scheduler, e.g. exponential_decay(1e-3, 1e-5, epochs)",
}


def _check_callbacks(callbacks) -> tuple[Callable, ...]:
    if callable(callbacks) or isinstance(callbacks, (str, bytes)) or not isinstance(callbacks, Iterable):
        raise TypeError(f"callbacks must be a list of functions callback(epoch, history), got "
                        f"{type(callbacks).__name__}; wrap a single one in a list: callbacks=[callback]")
    callbacks = tuple(callbacks)
    for callback in callbacks:
        if not callable(callback):
            raise TypeError(f"callbacks must be functions callback(epoch, history), got a "
                            f"{type(callback).__name__}")
    return callbacks


def _gather(config: FitConfig | None, options: dict, caller: str = "fit", name: str = "config") -> FitConfig:
    """The loop options of one call as a FitConfig: ``config``, or the flat ``options`` (fit's
    keywords) gathered into one; both at once is a TypeError saying what to pass."""
    unknown = [key for key in options if key not in _OPTIONS]
    if unknown:
        raise TypeError(f"{caller}() got an unexpected keyword argument {unknown[0]!r}")
    if config is None:
        return FitConfig(**options)
    if not isinstance(config, FitConfig):
        hint = f" (build one: {name}=FitConfig(**options))" if isinstance(config, dict) else ""
        raise TypeError(f"{name} must be a FitConfig{hint}, got {type(config).__name__}")
    if options:
        flat = sorted(options)
        raise TypeError(f"{caller} got both {name}= and the flat fit options {flat}: pass one of them, e.g. "
                        f"{name}={name}.replace({', '.join(f'{key}=...' for key in flat)})")
    return config


def _options_of(config: FitConfig) -> dict:
    """The fields of ``config`` that differ from the defaults, as flat keywords of ``fit``."""
    changed = {}
    for f in dataclasses.fields(config):
        value = getattr(config, f.name)
        if not (value is f.default or (type(value) is type(f.default) and value == f.default)):
            changed[f.name] = value
    return changed


def fit(model, guide, data, config: FitConfig | None = None, *, fabric=None, **options) -> Posterior:
    """Fit ``guide`` to the posterior of ``model`` by minibatch SVI; return the ``Posterior``.

    The loop options -- ``epochs`` to ``shuffle`` below -- are given either flat, as keywords, or
    as one :class:`FitConfig` ``config`` (``fit(model, guide, data, FitConfig(epochs=20,
    seed=0))``), not both; either way they are checked before anything runs.

    Parameters
    ----------
    model, guide:
        A :class:`bayesdl.models.BNN` and one of its guides (trained with :class:`BNNElbo`), or any
        Pyro model and guide with ``elbo`` given (e.g. ``pyro.infer.Trace_ELBO()``). The
        model is called as ``model(x, y)`` -- plus ``dataset_size=N`` for a BNN.
    data:
        A ``DataLoader`` of ``(x, y)`` batches, a map-style ``Dataset`` of ``(x, y)`` pairs
        (``TensorDataset``, a torchvision dataset) or a tuple ``(x, y)`` of tensors; the last two
        are batched here by ``batch_size`` and shuffled by ``seed``.
    config:
        A :class:`FitConfig` holding the options below (default: the flat keywords, each
        defaulting as shown in the signature).
    epochs, lr:
        Passes over the data; learning rate of the default Adam optimizer. ``epochs=0`` trains
        nothing and warns (``UserWarning``), unless a checkpoint is resumed: the guide is returned
        as it was initialised (or loaded).
    elbo:
        The objective (default :class:`BNNElbo` for BNN guides).
    optimizer:
        ``params -> torch optimizer`` (default ``torch.optim.Adam(params, lr)``).
    scheduler:
        ``optimizer -> torch LR scheduler``, stepped after every epoch, e.g.
        ``exponential_decay(1e-3, 1e-5, epochs)`` or
        ``lambda opt: torch.optim.lr_scheduler.ExponentialLR(opt, 0.99)``.
    kl_weight, num_particles:
        Passed to the default :class:`BNNElbo` (see its notes on both).
    dataset_size:
        Number of training examples (default ``len(loader.dataset)``).
    seed:
        Makes shuffling, initial draws and noise reproducible: two runs with the same seed
        give identical parameters.
    device:
        Where to train (``"cpu"``, ``"cuda"``); model and guide are moved there.
    checkpoint, resume:
        Save model, guide, optimizer and history atomically after every epoch; with
        ``resume=True`` an existing checkpoint is loaded and training continues after its
        last epoch.
    callbacks:
        Called as ``callback(epoch, history)`` after each epoch.
    progress:
        Show progress: a tqdm bar on a terminal; when stderr is not a terminal (a log file),
        a line per epoch instead, at most about ten per run (:mod:`bayesdl.progress`).
    shuffle:
        Reshuffle a ``Dataset`` or tuple ``(x, y)`` every epoch (a ``DataLoader`` keeps its own
        sampler).
    fabric:
        A launched ``lightning.fabric.Fabric`` to train data-parallel on (default: the one
        :func:`bayesdl.inference.distributed.launch` started, if any). Each rank trains on its
        own shard of every epoch (``batch_size`` stays the batch of one step, split over the
        ranks), scales its log-likelihood by the full dataset size and draws its own noise;
        gradients are averaged, so the ELBO estimate is that of one process on the union
        batch. Only rank 0 writes the checkpoint. See :mod:`bayesdl.inference.distributed`.

    On a CPU, convolutional networks train about 15% faster when freed tensor memory stays in
    the process heap: call :func:`bayesdl.runtime.retain_freed_memory` once at the start of a
    program to opt in (the ``bdl`` studies and the benchmarks do).

    Raises
    ------
    NonFiniteLossError
        When the loss or a gradient becomes NaN/Inf. The guide and model are put back to the
        parameters of the last step whose loss and gradients were finite (a step that made
        the parameters themselves non-finite is undone too), and the error carries that
        posterior.
    TypeError, ValueError
        For a bad option (naming it), or ``config`` given together with flat loop options.
    ValueError
        For bad data, naming the epoch and batch when it is found during training (inputs
        that are NaN/Inf, labels out of range).

    Example::

        >>> import torch
        >>> import torch.nn as nn
        >>> from bayesdl.models import BNN
        >>> _ = torch.manual_seed(0)
        >>> x = torch.rand(8, 2); y = (x.sum(1) > 1).long()     # 8 points in [0, 1]^2, 2 classes
        >>> from bayesdl.inference import FitConfig, MeanFieldGuide, fit
        >>> model = BNN(nn.Linear(2, 2))
        >>> posterior = fit(model, MeanFieldGuide(model), (x, y), epochs=3, lr=1e-2, batch_size=4, seed=0,
        ...                 progress=False)
        >>> len(posterior.history.elbo), len(posterior.history.epoch_elbo)    # 2 steps per epoch
        (6, 3)
        >>> posterior.predict(x[:3], num_samples=5).probs.shape
        torch.Size([5, 3, 2])
        >>> config = FitConfig(epochs=3, lr=1e-2, batch_size=4, seed=0, progress=False)
        >>> again = fit(model, MeanFieldGuide(model), (x, y), config)     # the same options: the same run
        >>> again.history.elbo == posterior.history.elbo
        True
    """
    trainer = _Trainer(model, guide, _gather(config, options), fabric)
    trainer.prepare(data)
    if trainer.config.epochs == 0 and trainer.start_epoch == 0:  # no checkpoint loaded either
        warn(
            "fit got epochs=0: nothing was trained, and the posterior is the guide at its initialisation; "
            "pass epochs >= 1 to train it (to load a finished run, pass its checkpoint with resume=True and "
            "the run's epochs, or use load_checkpoint)")
    try:
        for epoch in range(trainer.start_epoch, trainer.config.epochs):
            first_step = len(trainer.history.elbo)
            trainer.parallel.start_epoch(epoch)  # data-parallel: this epoch's shard, this rank's noise
            for step, batch in enumerate(trainer.loader):
                trainer.step(epoch, step, batch)
            trainer.end_epoch(epoch, first_step)
    finally:
        trainer.parallel.end_epoch()
        trainer.bar.close()
    if trainer.start_epoch < trainer.config.epochs:
        _check_noise(trainer)
    return trainer.posterior


def _check_noise(trainer: _Trainer) -> None:
    """Warn when the likelihood's noise model disagrees with the last epoch's data term (a fixed
    Gaussian scale far from the residuals, or a learned one not there yet): no extra pass."""
    history = trainer.history
    if trainer.bnn is None or not history.epoch_log_likelihood or not trainer.parallel.is_writer:
        return
    message = trainer.bnn.likelihood.noise_mismatch(history.epoch_log_likelihood[-1] / trainer.n_data)
    if message:
        warn(message)


def _fit_signature() -> inspect.Signature:
    """fit's signature as help() and register_method see it: every option of FitConfig a keyword."""
    parameter = inspect.Parameter
    params = [parameter(name, parameter.POSITIONAL_OR_KEYWORD) for name in ("model", "guide", "data")]
    params.append(parameter("config", parameter.POSITIONAL_OR_KEYWORD, default=None,
                            annotation="FitConfig | None"))
    params += [parameter(f.name, parameter.KEYWORD_ONLY, default=f.default, annotation=f.type)
               for f in dataclasses.fields(FitConfig)]
    params.append(parameter("fabric", parameter.KEYWORD_ONLY, default=None))
    return inspect.Signature(params, return_annotation="Posterior")


fit.__signature__ = _fit_signature()


class _Trainer:
    """One run of :func:`fit`: :meth:`prepare` once, :meth:`step` per minibatch, :meth:`end_epoch`
    after each epoch. Every random draw happens in the order of the phases, so a seed gives
    the same run however the options were passed."""

    def __init__(self, model, guide, config: FitConfig, fabric):
        self.model, self.guide, self.config, self.fabric = model, guide, config, fabric
        self.bnn = bnn_of(model)
        if isinstance(guide, BNNGuide) and self.bnn is not None and guide.model is not self.bnn:
            raise ValueError(f"the {type(guide).__name__} was built for another model than the one passed to "
                             f"fit: build it with this model ({type(guide).__name__}(model)), or pass the "
                             "model it was built for")
        self.model_kwargs = {}

    # ------------------------------------------------------------- preparation
    def prepare(self, data) -> None:
        """Seed, the loader (sharded under a Fabric), the objective, the device, the guide's
        set-up, optimizer and scheduler, the resumed checkpoint and the progress bar."""
        config = self.config
        if config.seed is not None:
            pyro.set_rng_seed(config.seed)
        loader = as_loader(data, config.batch_size, config.shuffle)
        self.n_data = dataset_size_of(loader, config.dataset_size)
        self.parallel = distributed.training(self.fabric)
        self.loader = self.parallel.shard(loader, config.seed)
        self.elbo, self.structured = self._objective()
        self.device = self._place()
        x0 = self._set_up_guide()
        self.input_shape = x0.shape[1:]
        self._optimizer()
        self.history, self.start_epoch = TrainingHistory(dataset_size=self.n_data), 0
        path = config.checkpoint
        if path is not None and config.resume and self.parallel.checkpoint_exists(path):
            self.history, self.start_epoch = resume_checkpoint(path, self.model, self.guide, self.opt,
                                                               self.sched)
        self.posterior = Posterior(self.model, self.guide, self.history)
        # The parameters at the last step whose loss and gradients were finite: a step can turn them
        # non-finite (a learning rate far too large) before any loss shows it, so the error keeps these.
        self.last_finite = [p.detach().clone() for p in self.params]
        self.step_loss, self.opt = self.parallel.setup(
            distributed.ElboStep(self.model, self.guide, self.elbo, self.structured, self.n_data,
                                 self.model_kwargs), self.opt)
        steps_per_epoch = len(self.loader) if hasattr(self.loader, "__len__") else None
        total = None if steps_per_epoch is None else steps_per_epoch * (config.epochs - self.start_epoch)
        self.bar = progress_bar(total, desc=f"fit {type(self.guide).__name__}", unit="step",
                                enabled=config.progress and self.parallel.is_writer)
        self.clock = time.perf_counter()

    def _objective(self):
        """The ELBO to minimise (default :class:`BNNElbo`) and whether it is structured."""
        elbo = self.config.elbo
        structured = elbo is None or isinstance(elbo, BNNElbo)
        if elbo is None:
            if self.bnn is None or not isinstance(self.guide, BNNGuide):
                raise TypeError(
                    "fit's default objective needs a bayesdl.models.BNN and a bayesdl guide; for other Pyro "
                    "models or guides pass elbo=pyro.infer.Trace_ELBO()"
                )
            elbo = BNNElbo(num_particles=self.config.num_particles, kl_weight=self.config.kl_weight)
        return elbo, structured

    def _place(self):
        """The training device (a launched Fabric's, the one asked for, or the BNN's); model
        and guide are moved there."""
        device, parallel = self.config.device, self.parallel
        if parallel.device is not None:
            if device is not None and torch.device(device).type != parallel.device.type:
                raise ValueError(f"device={device!r}, but the launched Fabric trains on {parallel.device}")
            device = parallel.device
        if device is not None:
            device = check_device(device)
            for module in (self.bnn, self.guide):
                if isinstance(module, torch.nn.Module):
                    module.to(device)
        elif self.bnn is not None:
            device = self.bnn.prior_scales.device
        return device

    def _set_up_guide(self) -> torch.Tensor:
        """Check the first batch and set up lazily-built guides (autoguides, the dropout guide's
        masks) on it, before the optimizer sees their parameters; return its inputs."""
        try:
            first = next(iter(self.loader))
        except StopIteration:
            raise ValueError("the training loader yields no batch; pass at least one example") from None
        x0, y0 = batch_to(first, self.device)
        if self.bnn is not None:
            x0, y0 = self.bnn.check_data(x0, y0)
            with torch.no_grad():
                self.out_shape = self.bnn.network(x0[:1], self.bnn.initial_values()).shape[1:]
            self.model_kwargs = {"dataset_size": self.n_data}
        with torch.no_grad(), pyro.poutine.block():
            if isinstance(self.guide, BNNGuide):
                self.guide.setup(x0)
            else:
                self.guide(x0, y0, **self.model_kwargs)
        return x0

    def _optimizer(self) -> None:
        """The trainable parameters, the optimizer (default Adam) and the scheduler."""
        config = self.config
        self.params = _parameters(self.guide, self.bnn if self.bnn is not None else self.model)
        if not self.params:
            raise ValueError("the guide has no trainable parameters")
        self.opt = (config.optimizer(self.params) if config.optimizer is not None
                    else torch.optim.Adam(self.params, lr=config.lr))
        self.sched = config.scheduler(self.opt) if config.scheduler is not None else None

    # ------------------------------------------------------------- one minibatch
    def step(self, epoch: int, step: int, batch) -> None:
        """One optimizer step on ``batch``: loss, backward, the NaN guard, the step, the record."""
        x, y = batch_to(batch, self.device)
        if self.bnn is not None:
            x, y = check_batch(self.bnn, x, y, self.out_shape, f"epoch {epoch + 1}, batch {step + 1}")
        opt, params, parallel = self.opt, self.params, self.parallel
        opt.zero_grad(set_to_none=True)
        loss, log_lik, kl = self.step_loss(x, y)
        value, log_lik, kl = parallel.values(loss, log_lik, kl)  # the ranks' mean
        if not math.isfinite(value):
            _non_finite("loss", epoch, step, self.posterior, params, self.last_finite)
        parallel.backward(loss)
        grads = [p.grad for p in params if p.grad is not None]
        if grads and not torch.isfinite(torch.nn.utils.get_total_norm(grads)):
            opt.zero_grad(set_to_none=True)
            _non_finite("gradient", epoch, step, self.posterior, params, self.last_finite)
        with torch.no_grad():
            torch._foreach_copy_(self.last_finite, params)
        opt.step()
        history = self.history
        history.elbo.append(-value)
        if log_lik is not None:
            history.log_likelihood.append(log_lik)
            history.kl.append(kl)
        self.bar.update()
        if step % 20 == 0:
            self.bar.set_postfix(epoch=epoch + 1, **self._per_example(-value, log_lik, kl))

    def _per_example(self, elbo: float, log_lik: float | None, kl: float | None) -> dict:
        """What the progress line shows, per training example (display only): ``nll/ex``, the
        expected negative log-likelihood, and ``kl/ex``, the KL to the prior (``-log prior`` for
        MAP), when the structured ELBO gives them -- the data term is what falls while training
        goes well, and the KL of a large network (its prior's normalising constant) would drown
        it in the ELBO -- else ``elbo_per_example``."""
        if log_lik is None or kl is None:
            return {"elbo_per_example": elbo / self.n_data}
        return {"nll/ex": -log_lik / self.n_data, "kl/ex": kl / self.n_data}

    # ------------------------------------------------------------- end of an epoch
    def end_epoch(self, epoch: int, first_step: int) -> None:
        """The epoch's history and progress line, the scheduler step, the callbacks, then the
        checkpoint (rank 0 alone writes; after the callbacks, which may draw random numbers)."""
        config, history = self.config, self.history
        self.parallel.end_epoch()
        history.end_epoch(first_step)
        terms = (history.epoch_log_likelihood[-1], history.epoch_kl[-1]) if history.epoch_kl else (None, None)
        self.bar.epoch(epoch, config.epochs, **self._per_example(history.epoch_elbo[-1], *terms))
        if self.sched is not None:
            self.sched.step()
        history.seconds += time.perf_counter() - self.clock
        self.clock = time.perf_counter()
        for callback in config.callbacks:
            callback(epoch, history)
        if config.checkpoint is not None and self.parallel.is_writer:
            save_checkpoint(config.checkpoint, checkpoint_state(self.model, self.guide, self.opt, self.sched,
                                                                epoch + 1, history, config.seed,
                                                                self.input_shape))


def _non_finite(what, epoch, step, posterior, params, last_finite):
    """Put back the parameters of the last finite step, then raise."""
    with torch.no_grad():
        for param, value in zip(params, last_finite):
            param.copy_(value)
            param.grad = None
    raise NonFiniteLossError(
        f"the {what} became NaN/Inf at epoch {epoch + 1}, step {step + 1}; training stopped and "
        "the guide keeps its last finite parameters (error.posterior). Lower the learning rate, "
        "check the data for extreme values, or use a smaller init_scale",
        posterior,
    )
