"""Training the networks the MNIST studies share, cached by configuration.

A trained network is identified by a hash of everything that determines it (method,
architecture, recipe, seed, data split). It is trained through the method registry
(:func:`bayesdl.inference.approximate`) with a checkpoint in the cache folder, so a second study
asking for the same network loads it instead of retraining, and an interrupted training
resumes where it stopped. Each entry is locked while it is trained (a second run asking for
it waits, then loads it), verified by its SHA-256 digest when it is loaded (a damaged entry
is trained again), and temporaries of killed writers are cleaned up.
"""

from __future__ import annotations

import copy
import hashlib
import json
import math
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, TensorDataset

from bayesdl._warn import warn
from bayesdl.atomic import atomic_path, file_lock, remove_stale_temporaries
from bayesdl.checks import check_int, check_positive
from bayesdl.inference import METHODS, Posterior, approximate, distributed, exponential_decay
from bayesdl.inference.checkpoints import load_state, save_state, verify_checkpoint
from bayesdl.models import BNN, LeNet, NormalPrior, SmallConvNet
from bayesdl.progress import track

__all__ = ["NetworkRecipe", "train_network", "train_plain", "cache_folder", "config_digest"]


def config_digest(config: dict, length: int = 12) -> str:
    """A short hex digest of a JSON-able configuration, independent of key order: the name of
    the cache entries that configuration determines."""
    return hashlib.sha256(json.dumps(config, sort_keys=True).encode()).hexdigest()[:length]


#: The networks a recipe can name: the course's Caffe LeNet, and Corbiere et al.'s MNIST
#: classifier (``SmallConvNet``, the network of their failure-prediction table).
NETWORKS = ("lenet", "corbiere")
OPTIMIZERS = ("adam", "sgd")
#: Fields added after the first cache entries were written: they enter the cache key only when
#: they differ from their defaults, so every entry of an earlier run keeps its name.
_LATER_FIELDS = {"network": "lenet", "optimizer": "adam", "momentum": 0.0, "weight_decay": None}


@dataclass(frozen=True)
class NetworkRecipe:
    """Everything that determines a trained network of the MNIST studies.

    ``network`` is ``"lenet"`` (dropout slots by ``placement``, rate ``p``) or ``"corbiere"``
    (:class:`bayesdl.models.SmallConvNet`, its own rates 0.25 and 0.5: ``p`` must be None).
    ``optimizer`` is ``"adam"`` or ``"sgd"`` (with ``momentum``), at rate ``lr`` on the mean
    loss per example, as in plain PyTorch. ``weight_decay`` (optional) replaces ``prior_scale``:
    the Gaussian prior whose term in the objective *is* that weight decay, site by site (see
    :func:`weight_decay_prior`), so a recipe written for plain PyTorch trains the same way.
    """

    method: str  # an SVI method of bayesdl.inference.METHODS (dropout, mean_field, map), or "plain" PyTorch
    placement: str = "all"
    p: float | None = 0.5
    prior_scale: float = 1.0
    epochs: int = 10
    lr: float = 1e-3
    final_lr: float | None = None  # exponential decay to this rate over the epochs
    batch_size: int = 128
    seed: int = 0
    train_size: int = 55000
    split_seed: int = 0
    network: str = "lenet"
    optimizer: str = "adam"
    momentum: float = 0.0
    weight_decay: float | None = None

    def __post_init__(self):
        if self.network not in NETWORKS:
            raise ValueError(f"network must be one of {NETWORKS}, got {self.network!r}")
        if self.optimizer not in OPTIMIZERS:
            raise ValueError(f"optimizer must be one of {OPTIMIZERS}, got {self.optimizer!r}")
        if self.network == "corbiere" and self.p is not None:
            raise ValueError("the corbiere network has its own dropout rates (0.25, 0.5): pass p=None")
        if self.network == "lenet" and self.p is None:
            raise ValueError("a lenet recipe needs its dropout rate p")
        if self.momentum and self.optimizer != "sgd":
            raise ValueError(f"momentum is an option of sgd, not of {self.optimizer}")

    def key(self) -> str:
        config = {k: v for k, v in asdict(self).items() if k not in _LATER_FIELDS or v != _LATER_FIELDS[k]}
        return f"{self.network}-{self.method}-{config_digest(config)}"

    def build(self) -> torch.nn.Module:
        """The untrained network (seed the generator first for reproducible weights)."""
        if self.network == "corbiere":
            return SmallConvNet()
        return LeNet(dropout=self.placement, p=self.p)

    def model(self) -> BNN:
        """The network as a Pyro model, with its prior (see :func:`weight_decay_prior`)."""
        net = self.build()
        if self.weight_decay is None:
            return BNN(net, prior_scale=self.prior_scale)
        return BNN(net, prior=weight_decay_prior(net, self.method, self.weight_decay, self.train_size))

    def make_optimizer(self) -> Callable | None:
        """``params -> optimizer`` for :func:`bayesdl.inference.fit` (None: its default Adam at
        ``lr``). bayesdl's objective is summed over the training set, N times the mean loss per
        example of plain PyTorch, so SGD takes the rate ``lr / N``: the steps are then those of
        plain PyTorch at ``lr``, momentum included. (Adam is invariant to that scale.)"""
        if self.optimizer == "adam":
            return None
        rate, momentum = self.lr / self.train_size, self.momentum
        return lambda params: torch.optim.SGD(params, lr=rate, momentum=momentum)

    def scheduler(self):
        if self.final_lr is None or self.epochs == 0:
            return None
        return exponential_decay(self.lr, self.final_lr, self.epochs)


def weight_decay_prior(net: torch.nn.Module, method: str, weight_decay: float,
                       train_size: int) -> NormalPrior:
    """The Gaussian prior under which ``method``'s objective on ``net`` carries exactly plain
    PyTorch's ``weight_decay`` (``grad += weight_decay * w`` on every parameter).

    Per example, a prior ``N(0, s^2)`` adds ``|w|^2 / (2 N s^2)`` to a MAP objective: weight
    decay ``1 / (N s^2)``, so ``s = 1 / sqrt(weight_decay N)``. The dropout guide's prior term
    of a weight whose inputs are dropped at rate ``p`` is ``1 / (1 - p)`` times that (see
    :class:`bayesdl.inference.DropoutGuide`), so those weights take ``s / sqrt(1 - p)``. (For
    mean-field VI the prior is the same ``s``; its KL is not a weight decay.)
    """
    weight_decay = check_positive(weight_decay, "weight_decay")
    base = 1.0 / math.sqrt(weight_decay * check_int(train_size, "train_size", minimum=1))
    guide = METHODS[method].guide
    # which dropout rate acts on which site: the guide maps it on a pass (MNIST-shaped inputs)
    rates = guide.prior_rates(BNN(copy.deepcopy(net)), torch.zeros(2, 1, 28, 28)) if guide else {}
    return NormalPrior(base, layer_scales={site: base / math.sqrt(1.0 - p) for site, p in rates.items()})


def cache_folder(ctx) -> Path:
    """The run's cache folder: ``--cache-dir``, else ``.cache`` beside the output folder.

    Temporary files left by runs that were killed while writing an entry are removed here.
    """
    folder = ctx.cache_dir or ctx.folder.final.parent / ".cache"
    folder.mkdir(parents=True, exist_ok=True)
    remove_stale_temporaries(folder)
    return folder


@contextmanager
def cache_entry(ctx, recipe: NetworkRecipe, verify: Callable[[Path], object]) -> Iterator[Path]:
    """The cache path of ``recipe``'s network, locked for the block: a second run that asks for
    the same network while the first trains it waits, then loads it instead of training it too.
    An entry whose checkpoint fails its verification (digest, content; see
    :func:`bayesdl.inference.checkpoints.load_state`) is reported and removed, so it is trained
    again. ``verify(path)`` raises ``ValueError`` for a damaged entry."""
    folder = cache_folder(ctx)
    path = folder / f"{recipe.key()}.pt"

    def waiting():
        print(f"waiting for another run that is training {path.name} in {folder}", file=sys.stderr,
              flush=True)

    if not distributed.is_writer():  # rank 0 holds the lock and checks the entry for every rank
        yield path
        return
    with file_lock(folder / f"{recipe.key()}.lock", on_wait=waiting):
        if path.exists():
            try:
                verify(path)
            except ValueError as err:
                warn(f"cache entry {path.name} is damaged and is trained again: {err}")
                path.unlink()
                path.with_suffix(".done").unlink(missing_ok=True)
        yield path


def _loader(train: TensorDataset, recipe: NetworkRecipe) -> DataLoader:
    return DataLoader(train, batch_size=recipe.batch_size, shuffle=True)


def train_network(recipe: NetworkRecipe, train: TensorDataset, ctx) -> tuple[Posterior, float]:
    """The posterior of ``recipe``'s network (an SVI method of the registry), trained or loaded
    from the cache.

    The network's dropout slots keep their rates (``recipe.p`` for LeNet). A finished
    checkpoint is resumed with nothing left to train: the posterior and the random state are
    those the training left. Returns the posterior (with its training history) and the seconds
    spent training here (0 when it came from the cache).
    """
    if recipe.method not in METHODS:
        raise ValueError(f"unknown method {recipe.method!r}; choose one of {sorted(METHODS)}")
    if len(train) != recipe.train_size:
        raise ValueError(f"the recipe is for {recipe.train_size} training images, got {len(train)}")
    torch.manual_seed(recipe.seed)
    model = recipe.model()
    with cache_entry(ctx, recipe, verify_checkpoint) as path:
        done = path.with_suffix(".done")
        cached = done.exists()
        start = time.perf_counter()
        posterior = approximate(recipe.method, model, _loader(train, recipe), epochs=recipe.epochs,
                                lr=recipe.lr, optimizer=recipe.make_optimizer(), scheduler=recipe.scheduler(),
                                seed=recipe.seed, device=ctx.device, checkpoint=path, resume=True,
                                progress=ctx.progress)
        seconds = 0.0 if cached else time.perf_counter() - start
        if distributed.is_writer():  # the checkpoint too is rank 0's alone
            with atomic_path(done) as tmp:
                tmp.write_text(json.dumps(asdict(recipe)))
    return posterior, seconds


def _supervised_epoch(module, loader, opt, batch_loss, device) -> float:
    """One epoch of plain supervised training of ``module``; ``batch_loss(inputs, targets)``
    gives a minibatch's mean loss. Returns the mean loss per example."""
    module.train()
    total, count = 0.0, 0
    for inputs, targets in loader:
        inputs, targets = inputs.to(device), targets.to(device)
        opt.zero_grad()
        loss = batch_loss(inputs, targets)
        loss.backward()
        opt.step()
        total += float(loss.detach()) * len(targets)
        count += len(targets)
    return total / count


def train_plain(recipe: NetworkRecipe, train: TensorDataset, ctx) -> tuple[torch.nn.Module, dict]:
    """The recipe's network trained with plain PyTorch dropout (cross-entropy; the recipe's
    optimizer, with ``weight_decay`` as torch's), cached.

    The baseline is plain PyTorch on purpose: in a data-parallel run every rank trains it whole.

    Returns the network (in eval mode) and ``{"seconds": ..., "epoch_loss": [...]}``.
    """
    torch.manual_seed(recipe.seed)
    net = recipe.build().to(ctx.device)
    with cache_entry(ctx, recipe, _verify_plain) as path:
        if path.exists():
            state = _verify_plain(path)
            try:
                net.load_state_dict(state["net"])
            except RuntimeError as err:
                raise ValueError(f"cache entry {path} does not fit this network: {err}; delete it") from None
            return net.eval(), {"seconds": 0.0, "epoch_loss": state["epoch_loss"]}
        torch.manual_seed(recipe.seed)
        loader = _loader(train, recipe)
        params, decay = net.parameters(), recipe.weight_decay or 0.0
        if recipe.optimizer == "sgd":
            opt = torch.optim.SGD(params, lr=recipe.lr, momentum=recipe.momentum, weight_decay=decay)
        else:
            opt = torch.optim.Adam(params, lr=recipe.lr, weight_decay=decay)
        sched = recipe.scheduler()(opt) if recipe.scheduler() else None
        losses = []
        start = time.perf_counter()
        for _ in track(range(recipe.epochs), desc="plain PyTorch", unit="epoch", enabled=ctx.progress):
            losses.append(_supervised_epoch(net, loader, opt, lambda x, y: F.cross_entropy(net(x), y),
                                            ctx.device))
            if sched is not None:
                sched.step()
        seconds = time.perf_counter() - start
        if distributed.is_writer():
            save_state(path, {"net": net.state_dict(), "epoch_loss": losses}, _PLAIN_FORMAT)
    return net.eval(), {"seconds": seconds, "epoch_loss": losses}


_PLAIN_FORMAT = "bayesdl-plain-network-1"


def _verify_plain(path) -> dict:
    return load_state(path, _PLAIN_FORMAT, {"net": dict, "epoch_loss": list}, finite=("net",),
                      what="cached plain network")
