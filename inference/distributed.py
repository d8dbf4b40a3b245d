"""Past one process: data-parallel ``fit`` and sharded ``Posterior.predict`` through Lightning Fabric.

The engine is Lightning's :class:`lightning.fabric.Fabric` over ``torch.distributed`` (DDP;
several nodes through ``num_nodes`` or ``torchrun``), an optional extra::

    pip install -e ".[distributed]"

Without it -- or without a launched Fabric -- nothing here is used and ``fit`` and ``predict``
run in one process exactly as before.

The program runs once per device (SPMD, as under ``torchrun``), with the same seed and data on
every rank::

    from bayesdl.inference import approximate, distributed

    distributed.launch(devices=2, accelerator="cpu")         # re-runs this script once per extra device
    posterior = approximate("dropout", model, (x, y), epochs=10, batch_size=128, seed=0)
    probs = posterior.predict(x_test, num_samples=100).probs  # the same [S, N, C] on every rank
    if distributed.is_writer():                               # rank 0 alone writes
        torch.save(probs, "probs.pt")

or, in a notebook or a test, ``distributed.launch(main, devices=2, strategy="ddp_fork")`` runs
``main()`` on every rank and returns rank 0's result.

**What is data-parallel, and why the ELBO stays unbiased.** ``fit`` gives each of the ``R``
ranks its own shard of every epoch (a ``DistributedSampler``; ``batch_size`` stays the batch
of one optimisation step, each rank taking ``ceil(batch_size / R)`` of it). Rank ``r`` scales
its local log-likelihood by the full dataset size, as one process does::

    L_r = N / |B_r| * sum_{n in B_r} ln p(y_n | x_n, W_n)  -  KL(q || p),

and DDP averages the gradients, so with equal shards ``mean_r grad L_r`` is the gradient of one
process's estimate on the union batch ``B = U_r B_r``: the same unbiased ELBO estimator and
the same optimisation, each step's work split over ``R`` ranks. The recorded ELBO is the mean of the
ranks' estimates (that of the union batch). Each rank draws its own dropout masks and weight
noise -- its own stream ``SeedSequence([seed, rank, epoch])`` -- while the generator outside
``fit`` stays the same on every rank, so code that runs on every rank gives the same result.

``Posterior.predict`` (and ``predictive_outputs``) splits its inputs into ``R`` contiguous
shards, predicts each on its rank with that rank's own noise, and gathers the samples in input
order: every rank gets the whole ``[S, N, ...]``. Under a launched Fabric it is a collective:
call it on every rank, or inside :func:`single_process`.

**What stays single-process.** The Laplace curvature pass and NUTS are not data-parallel; with
several ranks each computes them whole (same data and seed, same result) and
:func:`bayesdl.inference.approximate` says so. Only rank 0 writes checkpoints (``fit``) and the
studies' results and figures (:func:`is_writer`).
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch import nn
from torch.utils.data import BatchSampler, DataLoader, IterableDataset, RandomSampler

from bayesdl._warn import warn

if TYPE_CHECKING:  # lightning is an optional extra; imported only where a Fabric is built
    from lightning.fabric import Fabric

__all__ = ["launch", "current", "is_writer", "world_size", "single_process", "shard_map",
           "STRATEGIES", "PRECISIONS", "DistributedUnavailableError"]

#: The DDP strategies fit's data parallelism is written for (Lightning's names): ``ddp`` starts one
#: process per extra device by re-running the script (or runs under ``torchrun``); ``ddp_spawn`` and
#: ``ddp_fork`` run a function in new processes (notebooks, tests).
STRATEGIES = ("ddp", "ddp_spawn", "ddp_fork")
#: Lightning's precision settings fit supports: float32, mixed bfloat16 (recent GPUs, CPUs), float64.
#: Not "16-mixed": float16 needs loss scaling, whose overflowing steps fit's NaN guard would stop on.
PRECISIONS = ("32-true", "bf16-mixed", "64-true")

_ACTIVE: Fabric | None = None
_WARNED: set[str] = set()


class DistributedUnavailableError(ImportError):
    """Lightning is not installed (the ``distributed`` extra)."""


def _fabric_class():
    try:
        from lightning.fabric import Fabric
    except ImportError:
        raise DistributedUnavailableError(
            "training on several devices or nodes needs Lightning: pip install -e \".[distributed]\" "
            "(or pip install lightning)"
        ) from None
    return Fabric


def launch(function: Callable | None = None, *args, devices: int = 1, num_nodes: int = 1,
           strategy: str = "ddp", precision: str = "32-true", accelerator: str = "cpu", **kwargs) -> Any:
    """Start the ranks and make their :class:`~lightning.fabric.Fabric` the one ``fit`` and
    ``predict`` use.

    Without ``function``: ``strategy="ddp"`` re-runs the current script once per extra local
    device (Lightning's launcher; under ``torchrun`` the processes exist already and nothing is
    started), activates the Fabric in every process and returns it. With ``function``: runs
    ``function(*args, **kwargs)`` on every rank with the Fabric active and returns rank 0's
    result (``ddp_spawn`` / ``ddp_fork`` start the processes; use these in notebooks and tests).

    ``devices`` is the number of processes per node, ``num_nodes`` the number of nodes (every
    node runs the same command with ``MASTER_ADDR``, ``MASTER_PORT`` and ``NODE_RANK`` set, or
    runs under ``torchrun``); ``accelerator`` is ``"cpu"`` (gloo) or ``"cuda"`` (NCCL);
    ``precision`` one of :data:`PRECISIONS`; ``strategy`` one of :data:`STRATEGIES`, or a
    Lightning ``DDPStrategy`` instance (e.g. ``DDPStrategy(find_unused_parameters=True)`` for a
    guide that leaves some parameters out of a step).
    """
    devices = _positive(devices, "devices")
    num_nodes = _positive(num_nodes, "num_nodes")
    if isinstance(strategy, str) and strategy not in STRATEGIES:
        raise ValueError(f"strategy must be one of {STRATEGIES} (data-parallel DDP), got {strategy!r}")
    if precision not in PRECISIONS:
        hint = (" (float16 needs loss scaling, whose overflowing steps fit's NaN guard stops on; use "
                "bf16-mixed)" if precision.startswith("16") else "")
        raise ValueError(f"precision must be one of {PRECISIONS}, got {precision!r}{hint}")
    if accelerator not in ("cpu", "cuda", "gpu", "auto"):
        raise ValueError(f"accelerator must be 'cpu' or 'cuda', got {accelerator!r}")
    Fabric = _fabric_class()
    torchrun_world = int(os.environ.get("WORLD_SIZE", "1") if "TORCHELASTIC_RUN_ID" in os.environ else 1)
    if torchrun_world != devices * num_nodes and torchrun_world > 1:
        raise ValueError(
            f"torchrun started {torchrun_world} processes, but devices x num_nodes = "
            f"{devices} x {num_nodes}; pass the same numbers: --devices = --nproc-per-node, "
            "--num-nodes = --nnodes"
        )
    single = devices * num_nodes == 1 and isinstance(strategy, str)
    try:
        fabric = Fabric(accelerator=accelerator, devices=devices, num_nodes=num_nodes,
                        strategy="auto" if single else strategy, precision=precision)
    except (ValueError, RuntimeError, TypeError) as err:  # e.g. more GPUs than the machine has
        raise ValueError(f"Lightning cannot start {devices} x {num_nodes} {accelerator} ranks: {err}") \
            from None
    if function is None:
        fabric.launch()
        _activate(fabric)
        return fabric
    return fabric.launch(_run_active, function, *args, **kwargs)


def _run_active(fabric, function, *args, **kwargs):
    global _ACTIVE
    previous, _ACTIVE = _ACTIVE, fabric
    try:
        return function(*args, **kwargs)
    finally:
        _ACTIVE = previous


def _activate(fabric) -> None:
    global _ACTIVE
    _ACTIVE = fabric


def _positive(value, name) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{name} must be a positive integer, got {value!r}")
    return value


def current() -> Fabric | None:
    """The Fabric ``fit`` and ``predict`` use (launched by :func:`launch`), or ``None``."""
    return _ACTIVE


def world_size() -> int:
    """The number of ranks (1 without a launched Fabric)."""
    return 1 if _ACTIVE is None else _ACTIVE.world_size


def is_writer() -> bool:
    """Whether this process writes results: rank 0, or the only process."""
    return _ACTIVE is None or _ACTIVE.is_global_zero


@contextmanager
def single_process():
    """Within this block ``fit`` and ``predict`` run in this process alone, whatever was launched
    (e.g. a prediction made on rank 0 only)."""
    global _ACTIVE
    previous, _ACTIVE = _ACTIVE, None
    try:
        yield
    finally:
        _ACTIVE = previous


def warn_not_data_parallel(method: str, reason: str) -> None:
    """Say once, on rank 0, that ``method`` runs whole on every rank."""
    ranks = world_size()
    if ranks > 1 and method not in _WARNED:
        _WARNED.add(method)
        if is_writer():
            warn(
                f"{method} is not data-parallel ({reason}): each of the {ranks} processes computes it whole, "
                "with the same result. Only the SVI methods (fit) and Posterior.predict use the devices; "
                f"run {method} without --devices to spare the others")


def _stream_seed(*entropy: int) -> int:
    """An independent 63-bit seed for the stream named by ``entropy`` (NumPy's SeedSequence)."""
    return int(np.random.SeedSequence([int(e) % 2**63 for e in entropy]).generate_state(2, np.uint64)[0] >> 1)


class _ForkedRNG:
    """Swap torch's generators for a per-rank stream, and back (``torch.random.fork_rng`` as calls)."""

    def __init__(self, device: torch.device):
        self.cuda = device.type == "cuda"
        self.device = device
        self.saved = None

    def enter(self, seed: int) -> None:
        if self.saved is None:
            cuda_state = torch.cuda.get_rng_state(self.device) if self.cuda else None
            self.saved = (torch.get_rng_state(), cuda_state)
        torch.manual_seed(seed)

    def exit(self) -> None:
        if self.saved is not None:
            cpu_state, cuda_state = self.saved
            torch.set_rng_state(cpu_state)
            if cuda_state is not None:
                torch.cuda.set_rng_state(cuda_state, self.device)
            self.saved = None


def shard_map(compute: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor, dim: int = 1) -> torch.Tensor:
    """``compute(x)`` with the rows of ``x`` ``[N, ...]`` split over the ranks.

    Rank ``r`` computes ``compute`` on its contiguous shard of ``ceil(N / R)`` rows (the last
    padded with copies of row 0), with its own random stream; the outputs, whose dimension
    ``dim`` runs over the rows, are gathered in input order on every rank and the padding
    dropped. Without a launched Fabric (or with one rank) this is ``compute(x)``.
    """
    fabric = _ACTIVE
    if fabric is None or fabric.world_size == 1:
        return compute(x)
    ranks, rank = fabric.world_size, fabric.global_rank
    n = x.shape[0]
    per = math.ceil(n / ranks)
    if per * ranks != n:
        x = torch.cat([x, x[:1].expand(per * ranks - n, *x.shape[1:])])
    base = fabric.broadcast(int(torch.randint(2**62, ())))  # advances every rank's generator alike
    rng = _ForkedRNG(fabric.device)
    rng.enter(_stream_seed(base, rank))
    try:
        local = compute(x[rank * per:(rank + 1) * per]).contiguous()
    finally:
        rng.exit()
    gathered = fabric.all_gather(local)  # [R, ..., per, ...]
    parts = gathered.unbind(0)
    return torch.cat(parts, dim=dim).narrow(dim, 0, n)


# ------------------------------------------------------------------------------------- training
class ElboStep(nn.Module):
    """One minibatch of ``fit``'s objective as a module -- what DDP wraps, as in Pyro's
    ``svi_lightning`` example. ``forward(x, y) -> (loss, log_likelihood, kl)`` (the last two
    ``None`` for a generic Pyro ELBO, which reports its total only)."""

    def __init__(self, model, guide, elbo, structured: bool, dataset_size: int, model_kwargs: dict):
        super().__init__()
        # Submodules, so that DDP sees every trained parameter; plain objects otherwise.
        for name, part in (("guide", guide), ("model", model)):
            if isinstance(part, nn.Module):
                self.add_module(name, part)
            else:
                self.__dict__[name] = part
        self.elbo = elbo
        self.structured = structured
        self.dataset_size = dataset_size
        self.model_kwargs = model_kwargs

    def forward(self, x, y):
        if self.structured:
            log_lik, kl = self.elbo.terms(self.model, self.guide, x, y, self.dataset_size)
            return self.elbo.kl_weight * kl - log_lik, log_lik, kl
        return self.elbo.differentiable_loss(self.model, self.guide, x, y, **self.model_kwargs), None, None


class LocalTraining:
    """``fit`` in one process: the loader as given, ``loss.backward()``, local values."""

    is_writer = True
    world_size = 1
    device = None

    def shard(self, loader: DataLoader, seed: int | None) -> DataLoader:
        return loader

    def setup(self, step: ElboStep, optimizer):
        return step, optimizer

    def values(self, *tensors) -> list[float]:
        """The floats of the loss and its parts (``None`` parts stay ``None``), in one sync."""
        present = [t.detach() for t in tensors if t is not None]
        numbers = iter(torch.stack(present).tolist())
        return [None if t is None else next(numbers) for t in tensors]

    def backward(self, loss) -> None:
        loss.backward()

    def checkpoint_exists(self, path) -> bool:
        return os.path.exists(path)

    def start_epoch(self, epoch: int) -> None:
        pass

    def end_epoch(self) -> None:
        pass


class DataParallelTraining(LocalTraining):
    """``fit`` on every rank of a launched Fabric: sharded data, DDP-averaged gradients, the
    ranks' mean loss, per-rank noise streams, rank 0 alone writing."""

    def __init__(self, fabric):
        self.fabric = fabric
        self.world_size = fabric.world_size
        self.rank = fabric.global_rank
        self.is_writer = fabric.is_global_zero
        self.device = fabric.device
        self.rng = _ForkedRNG(fabric.device)
        self.sampler = None
        self.base = 0

    def shard(self, loader: DataLoader, seed: int | None) -> DataLoader:
        from torch.utils.data.distributed import DistributedSampler

        # Every rank must shuffle alike and draw its noise from a known stream: one base seed.
        self.base = self.fabric.broadcast(seed if seed is not None else int(torch.randint(2**62, ())))
        # A loader over a batch sampler (as_loader's tuples: whole batches indexed at once) is
        # sharded the same way, keeping its batching.
        batched = loader.batch_size is None and isinstance(loader.sampler, BatchSampler)
        batch_size = loader.sampler.batch_size if batched else loader.batch_size
        order = loader.sampler.sampler if batched else loader.sampler
        drop_last = loader.sampler.drop_last if batched else loader.drop_last
        if isinstance(loader.dataset, IterableDataset) or batch_size is None:
            raise ValueError(
                "data-parallel fit shards a map-style dataset by index: pass a tuple (x, y) or a DataLoader "
                "built with batch_size=... over a dataset with __getitem__ and __len__"
            )
        self.sampler = DistributedSampler(loader.dataset, num_replicas=self.world_size, rank=self.rank,
                                          shuffle=isinstance(order, RandomSampler),
                                          seed=self.base % 2**63, drop_last=drop_last)
        per_rank = math.ceil(batch_size / self.world_size)
        if batched:
            return DataLoader(loader.dataset, sampler=BatchSampler(self.sampler, per_rank, drop_last),
                              batch_size=None, collate_fn=loader.collate_fn)
        return DataLoader(loader.dataset, batch_size=per_rank, sampler=self.sampler,
                          num_workers=loader.num_workers, collate_fn=loader.collate_fn,
                          pin_memory=loader.pin_memory, drop_last=loader.drop_last,
                          worker_init_fn=loader.worker_init_fn,
                          persistent_workers=loader.persistent_workers)

    def setup(self, step: ElboStep, optimizer):
        return self.fabric.setup(step, optimizer)

    def values(self, *tensors) -> list[float]:
        present = [t.detach() for t in tensors if t is not None]
        mean = self.fabric.all_reduce(torch.stack(present).double(), reduce_op="mean")
        numbers = iter(mean.tolist())
        return [None if t is None else next(numbers) for t in tensors]

    def backward(self, loss) -> None:
        self.fabric.backward(loss)

    def checkpoint_exists(self, path) -> bool:
        # Every rank must make the same choice; rank 0's file system decides.
        return bool(self.fabric.broadcast(os.path.exists(path)))

    def start_epoch(self, epoch: int) -> None:
        self.sampler.set_epoch(epoch)
        self.rng.enter(_stream_seed(self.base, self.rank, epoch))

    def end_epoch(self) -> None:
        self.rng.exit()


def training(fabric=None) -> LocalTraining:
    """How ``fit`` runs: on ``fabric`` (default: the launched one) when there is one, else in
    this process."""
    fabric = fabric if fabric is not None else _ACTIVE
    return LocalTraining() if fabric is None else DataParallelTraining(fabric)
