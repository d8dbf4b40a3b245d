"""``fit``: minibatch stochastic variational inference.

One loop for every guide: a :class:`bayesdl.inference.guides.BNNGuide` trained with
:class:`bayesdl.inference.BNNElbo` (the default), or any Pyro model and guide (``AutoNormal``, a
hand-written guide) with any Pyro ELBO. It keeps the ELBO history and its parts, stops
cleanly on a non-finite loss, saves and resumes checkpoints, and is deterministic by seed.

Pyro's own ``SVI`` keeps one torch optimizer per parameter tensor (``pyro.optim``); here a
single ``torch.optim`` optimizer takes every parameter, which is both faster and lets
users pass any torch optimizer.
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Callable, Iterable

import pyro
import torch

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
from .posterior import Posterior

__all__ = ["fit", "exponential_decay", "NonFiniteLossError"]


class NonFiniteLossError(FloatingPointError):
    """The loss or its gradient became NaN/Inf; ``posterior`` holds the last finite state."""

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
    ``final_lr`` over ``epochs`` epochs (``ExponentialLR``, ``gamma = (final_lr / lr) ** (1 / epochs)``)."""
    check_positive(lr, "lr")
    check_positive(final_lr, "final_lr")
    gamma = (final_lr / lr) ** (1.0 / max(check_int(epochs, "epochs", minimum=0), 1))
    return lambda opt: torch.optim.lr_scheduler.ExponentialLR(opt, gamma)


def fit(model, guide, data, *, epochs: int = 10, lr: float = 1e-3, batch_size: int = 128,
        elbo=None, optimizer: Callable[[Iterable], torch.optim.Optimizer] | None = None,
        scheduler: Callable[[torch.optim.Optimizer], object] | None = None,
        kl_weight: float = 1.0, num_particles: int = 1, dataset_size: int | None = None,
        seed: int | None = None, device: str | torch.device | None = None,
        checkpoint: str | os.PathLike | None = None, resume: bool = False,
        callbacks: Iterable[Callable] = (), progress: bool = True,
        shuffle: bool = True, fabric=None) -> Posterior:
    """Fit ``guide`` to the posterior of ``model`` by minibatch SVI; return the ``Posterior``.

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
    epochs, lr:
        Passes over the data; learning rate of the default Adam optimizer.
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
    ValueError
        For bad data, naming the epoch and batch when it is found during training (inputs
        that are NaN/Inf, labels out of range).
    """
    epochs = check_int(epochs, "epochs", minimum=0)
    lr = check_positive(lr, "lr")
    batch_size = check_int(batch_size, "batch_size", minimum=1)
    if seed is not None:
        seed = check_int(seed, "seed", minimum=0)
        pyro.set_rng_seed(seed)
    loader = as_loader(data, batch_size, shuffle)
    n_data = dataset_size_of(loader, dataset_size)
    parallel = distributed.training(fabric)
    loader = parallel.shard(loader, seed)
    bnn = bnn_of(model)
    structured = elbo is None or isinstance(elbo, BNNElbo)
    if elbo is None:
        if bnn is None or not isinstance(guide, BNNGuide):
            raise TypeError(
                "fit's default objective needs a bayesdl.models.BNN and a bayesdl guide; for other Pyro "
                "models or guides pass elbo=pyro.infer.Trace_ELBO()"
            )
        elbo = BNNElbo(num_particles=num_particles, kl_weight=kl_weight)
    if parallel.device is not None:
        if device is not None and torch.device(device).type != parallel.device.type:
            raise ValueError(f"device={device!r}, but the launched Fabric trains on {parallel.device}")
        device = parallel.device
    if device is not None:
        device = check_device(device)
        for module in (bnn, guide):
            if isinstance(module, torch.nn.Module):
                module.to(device)
    elif bnn is not None:
        device = bnn.prior_scales.device

    try:
        first = next(iter(loader))
    except StopIteration:
        raise ValueError("the training loader yields no batch; pass at least one example") from None
    x0, y0 = batch_to(first, device)
    if bnn is not None:
        x0, y0 = bnn.check_data(x0, y0)
        with torch.no_grad():
            out_shape = bnn.network(x0[:1], bnn.initial_values()).shape[1:]
    model_kwargs = {"dataset_size": n_data} if bnn is not None else {}
    # Set up lazily-built guides (autoguides, the dropout guide's masks) before the optimizer.
    with torch.no_grad(), pyro.poutine.block():
        if isinstance(guide, BNNGuide):
            guide.setup(x0)
        else:
            guide(x0, y0, **model_kwargs)
    params = _parameters(guide, bnn if bnn is not None else model)
    if not params:
        raise ValueError("the guide has no trainable parameters")
    opt = optimizer(params) if optimizer is not None else torch.optim.Adam(params, lr=lr)
    sched = scheduler(opt) if scheduler is not None else None

    history = TrainingHistory(dataset_size=n_data)
    start_epoch = 0
    if checkpoint is not None and resume and parallel.checkpoint_exists(checkpoint):
        history, start_epoch = resume_checkpoint(checkpoint, model, guide, opt, sched)

    posterior = Posterior(model, guide, history)
    # The parameters at the last step whose loss and gradients were finite: a step can turn them
    # non-finite (a learning rate far too large) before any loss shows it, so the error keeps these.
    last_finite = [p.detach().clone() for p in params]
    step_loss, opt = parallel.setup(
        distributed.ElboStep(model, guide, elbo, structured, n_data, model_kwargs), opt)
    steps_per_epoch = len(loader) if hasattr(loader, "__len__") else None
    total = None if steps_per_epoch is None else steps_per_epoch * (epochs - start_epoch)
    bar = progress_bar(total, desc=f"fit {type(guide).__name__}", unit="step",
                       enabled=progress and parallel.is_writer)
    clock = time.perf_counter()
    try:
        for epoch in range(start_epoch, epochs):
            first_step = len(history.elbo)
            parallel.start_epoch(epoch)  # data-parallel: this epoch's shard, this rank's noise
            for step, batch in enumerate(loader):
                x, y = batch_to(batch, device)
                if bnn is not None:
                    x, y = check_batch(bnn, x, y, out_shape, f"epoch {epoch + 1}, batch {step + 1}")
                opt.zero_grad(set_to_none=True)
                loss, log_lik, kl = step_loss(x, y)
                value, log_lik, kl = parallel.values(loss, log_lik, kl)  # the ranks' mean
                if not math.isfinite(value):
                    _non_finite("loss", epoch, step, posterior, params, last_finite)
                parallel.backward(loss)
                grads = [p.grad for p in params if p.grad is not None]
                if grads and not torch.isfinite(torch.nn.utils.get_total_norm(grads)):
                    opt.zero_grad(set_to_none=True)
                    _non_finite("gradient", epoch, step, posterior, params, last_finite)
                with torch.no_grad():
                    torch._foreach_copy_(last_finite, params)
                opt.step()
                history.elbo.append(-value)
                if log_lik is not None:
                    history.log_likelihood.append(log_lik)
                    history.kl.append(kl)
                bar.update()
                if step % 20 == 0:
                    bar.set_postfix(epoch=epoch + 1, elbo_per_example=f"{-value / n_data:.4f}")
            parallel.end_epoch()
            history._end_epoch(first_step)
            bar.epoch(epoch, epochs, elbo_per_example=history.epoch_elbo[-1] / n_data)
            if sched is not None:
                sched.step()
            history.seconds += time.perf_counter() - clock
            clock = time.perf_counter()
            for callback in callbacks:
                callback(epoch, history)
            # Rank 0 alone writes; after the callbacks, which may draw random numbers.
            if checkpoint is not None and parallel.is_writer:
                save_checkpoint(checkpoint, checkpoint_state(model, guide, opt, sched, epoch + 1, history,
                                                             seed, x0.shape[1:]))
    finally:
        parallel.end_epoch()
        bar.close()
    return posterior


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
