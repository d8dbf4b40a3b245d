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
from torch.utils.data import BatchSampler, DataLoader, RandomSampler, TensorDataset

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


_CONFIDNET_FORMAT = "bayesdl-confidnet-1"


def train_confidnet(stochastic_passes, train: TensorDataset, val_features: torch.Tensor,
                    val_correct: torch.Tensor, ctx, epochs: int = 200, lr: float = 1e-4,
                    batch_size: int = 128, seed: int = 0, passes: int = 10, checkpoint: Path | None = None,
                    save_every: int = 10):
    """ConfidNet (Corbiere et al. 2019): a head regressing the true-class probability (TCP)
    from the frozen classifier's features, with an MSE loss.

    ``stochastic_passes(x, P) -> (logits [P, B, C], features [P, B, H])`` runs the frozen
    classifier ``P`` times as it runs in training -- for MC dropout, with its dropout masks on,
    as in the authors' code (their learner keeps the network in train mode): the TCP target and
    the features of an example come from the same stochastic pass, so the training set supplies
    low-TCP examples even though the classifier fits it almost perfectly. The epoch kept is the
    one with the best AUPR-error on the validation split, whose ``val_features`` come from the
    deterministic network used at test time.

    ConfidNet needs hundreds of epochs (the authors train up to 500; on MNIST its test
    AUPR-error was still rising after 100). Since the classifier is frozen, ``passes``
    stochastic passes over the training set are drawn once (all ``P`` per batch, so a network
    with a deterministic trunk computes it once), and epoch ``e`` trains on pass ``e mod
    passes``: each epoch then costs the head alone, not a pass of the classifier. (Memory:
    ``passes x N x H`` floats, 1.1 GB for 10 passes of LeNet's 500 features on 55,000 images.)

    With ``checkpoint`` (a path), the head, its optimizer, the best head so far, the history and
    the random state are saved atomically every ``save_every`` epochs and at the end; a rerun
    resumes there (the passes are drawn again from ``seed``: the same ones), and a finished
    checkpoint is loaded without training.

    Returns ``(head in eval mode, {"val_aupr_error": [...], "train_mse": [...], "best_epoch",
    "seconds"})``; ``seconds`` counts drawing the passes and training, over every run that
    built this head.
    """
    from bayesdl.models import ConfidNetHead

    check_int(passes, "passes", minimum=1)
    check_int(epochs, "epochs", minimum=1)
    torch.manual_seed(seed)
    head = ConfidNetHead(val_features.shape[1]).to(ctx.device)
    opt = torch.optim.Adam(head.parameters(), lr=lr)
    rng, history, best, best_state = _resume_confidnet(checkpoint, head, opt, epochs)
    start_epoch = len(history["val_aupr_error"])
    clock = time.perf_counter()
    if start_epoch < epochs:
        bank = _confidnet_bank(stochastic_passes, train, passes, ctx, rng)
    val_features = val_features.to(ctx.device)  # once, not at every epoch's validation
    for epoch in track(range(start_epoch, epochs), desc="ConfidNet", unit="epoch", enabled=ctx.progress):
        score = _confidnet_epoch(head, opt, bank[epoch % passes], batch_size, val_features, val_correct,
                                 history, ctx.device)
        if score > best:
            best, best_state = score, {k: v.detach().clone() for k, v in head.state_dict().items()}
        if checkpoint is not None and ((epoch + 1) % save_every == 0 or epoch + 1 == epochs):
            history["seconds"] += time.perf_counter() - clock
            clock = time.perf_counter()
            _save_confidnet(checkpoint, head, opt, best_state, history)
    if checkpoint is None:
        history["seconds"] += time.perf_counter() - clock
    head.load_state_dict(best_state)
    history["best_epoch"] = int(max(range(epochs), key=lambda i: history["val_aupr_error"][i])) + 1
    return head.eval(), history


def _resume_confidnet(checkpoint: Path | None, head, opt, epochs: int):
    """The start of a ConfidNet training: ``(random state, history, best AUPR-error, best head)``,
    ``(None, empty history, -1, None)`` without a checkpoint on disk; a checkpoint's head and
    optimizer state are loaded into ``head`` and ``opt``. A checkpoint of more than ``epochs``
    epochs is an error."""
    if checkpoint is None or not checkpoint.exists():
        return None, {"val_aupr_error": [], "train_mse": [], "seconds": 0.0}, -1.0, None
    state = load_state(checkpoint, _CONFIDNET_FORMAT, {"head": dict, "best": dict, "optimizer": dict,
                                                       "history": dict, "rng": torch.Tensor},
                       what="ConfidNet checkpoint")
    head.load_state_dict(state["head"])
    opt.load_state_dict(state["optimizer"])
    history = state["history"]
    start_epoch = len(history["val_aupr_error"])
    if start_epoch > epochs:
        raise ValueError(f"{checkpoint} holds {start_epoch} ConfidNet epochs, more than the {epochs} asked: "
                         "pass the epochs it was trained for, or another checkpoint path")
    return state["rng"], history, max(history["val_aupr_error"]), state["best"]


def _confidnet_bank(stochastic_passes, train: TensorDataset, passes: int, ctx,
                    rng: torch.Tensor | None) -> list[TensorDataset]:
    """``passes`` stochastic passes of the frozen classifier over ``train``, drawn once: per pass,
    ``(features, TCP target)`` of every example. Then ``rng``, a resumed training's random state,
    is restored (when given), so that the epochs continue the random stream where they stopped."""
    bank = [([], []) for _ in range(passes)]
    with torch.no_grad():
        for x, y in track(DataLoader(train, batch_size=1000, shuffle=False), desc="ConfidNet targets",
                          unit="batch", enabled=ctx.progress):
            logits, feats = stochastic_passes(x.to(ctx.device), passes)
            labels = y.to(ctx.device)[None, :, None].expand(passes, -1, 1)
            tcp = torch.softmax(logits, -1).gather(2, labels)
            for k in range(passes):
                bank[k][0].append(feats[k])
                bank[k][1].append(tcp[k, :, 0])
    bank = [TensorDataset(torch.cat(f), torch.cat(t)) for f, t in bank]
    if rng is not None:
        torch.set_rng_state(rng)
    return bank


def _confidnet_epoch(head, opt, data: TensorDataset, batch_size: int, val_features, val_correct,
                     history: dict, device) -> float:
    """One ConfidNet epoch on one pass ``data``: MSE training of ``head`` on the TCP targets, then
    its AUPR-error on the validation split; both are appended to ``history``. Returns the latter."""
    from bayesdl.evaluation import aupr_error

    # Whole minibatches indexed at once: far cheaper than collating examples one by one.
    loader = DataLoader(data, sampler=BatchSampler(RandomSampler(data), batch_size, drop_last=False),
                        batch_size=None)

    def mse_to_tcp(feats, tcp):
        return F.mse_loss(head(feats), tcp)

    history["train_mse"].append(_supervised_epoch(head, loader, opt, mse_to_tcp, device))
    head.eval()
    with torch.no_grad():
        confidence = head(val_features).cpu()
    score = aupr_error(confidence, val_correct)
    history["val_aupr_error"].append(score)
    return score


def _save_confidnet(checkpoint: Path, head, opt, best_state, history: dict) -> None:
    """Save a ConfidNet training atomically: its head, best head, optimizer, history and random state."""
    save_state(checkpoint, {"head": head.state_dict(), "best": best_state, "optimizer": opt.state_dict(),
                            "history": history, "rng": torch.get_rng_state()}, _CONFIDNET_FORMAT)
