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

import hashlib
import json
import sys
import time
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch.utils.data import BatchSampler, DataLoader, RandomSampler, TensorDataset

from bayesdl.atomic import atomic_path, file_lock, remove_stale_temporaries
from bayesdl.checks import check_int
from bayesdl.inference import METHODS, Posterior, approximate, distributed, exponential_decay
from bayesdl.inference.checkpoints import load_state, save_state, verify_checkpoint
from bayesdl.models import BNN, LeNet
from bayesdl.progress import track

__all__ = ["LeNetRecipe", "train_lenet", "train_plain", "cache_folder", "config_digest"]


def config_digest(config: dict, length: int = 12) -> str:
    """A short hex digest of a JSON-able configuration, independent of key order: the name of
    the cache entries that configuration determines."""
    return hashlib.sha256(json.dumps(config, sort_keys=True).encode()).hexdigest()[:length]


@dataclass(frozen=True)
class LeNetRecipe:
    """Everything that determines a trained LeNet."""

    method: str  # an SVI method of bayesdl.inference.METHODS (dropout, mean_field, map), or "plain" PyTorch
    placement: str = "all"
    p: float = 0.5
    prior_scale: float = 1.0
    epochs: int = 10
    lr: float = 1e-3
    final_lr: float | None = None  # exponential decay to this rate over the epochs
    batch_size: int = 128
    seed: int = 0
    train_size: int = 55000
    split_seed: int = 0

    def key(self) -> str:
        return f"lenet-{self.method}-{config_digest(asdict(self))}"

    def scheduler(self):
        if self.final_lr is None or self.epochs == 0:
            return None
        return exponential_decay(self.lr, self.final_lr, self.epochs)


def cache_folder(ctx) -> Path:
    """The run's cache folder: ``--cache-dir``, else ``.cache`` beside the output folder.

    Temporary files left by runs that were killed while writing an entry are removed here.
    """
    folder = ctx.cache_dir or ctx.folder.final.parent / ".cache"
    folder.mkdir(parents=True, exist_ok=True)
    remove_stale_temporaries(folder)
    return folder


@contextmanager
def cache_entry(ctx, recipe: LeNetRecipe, verify: Callable[[Path], object]) -> Iterator[Path]:
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
                warnings.warn(f"cache entry {path.name} is damaged and is trained again: {err}", stacklevel=3)
                path.unlink()
                path.with_suffix(".done").unlink(missing_ok=True)
        yield path


def _loader(train: TensorDataset, recipe: LeNetRecipe) -> DataLoader:
    return DataLoader(train, batch_size=recipe.batch_size, shuffle=True)


def train_lenet(recipe: LeNetRecipe, train: TensorDataset, ctx) -> tuple[Posterior, float]:
    """A LeNet posterior for ``recipe`` (an SVI method of the registry), trained or loaded from
    the cache.

    The network's dropout slots have rate ``recipe.p``, which the dropout guide keeps. A
    finished checkpoint is resumed with nothing left to train: the posterior and the random
    state are those the training left. Returns the posterior (with its training history) and
    the seconds spent training here (0 when it came from the cache).
    """
    if recipe.method not in METHODS:
        raise ValueError(f"unknown method {recipe.method!r}; choose one of {sorted(METHODS)}")
    torch.manual_seed(recipe.seed)
    model = BNN(LeNet(dropout=recipe.placement, p=recipe.p), prior_scale=recipe.prior_scale)
    with cache_entry(ctx, recipe, verify_checkpoint) as path:
        done = path.with_suffix(".done")
        cached = done.exists()
        start = time.perf_counter()
        posterior = approximate(recipe.method, model, _loader(train, recipe), epochs=recipe.epochs,
                                lr=recipe.lr, scheduler=recipe.scheduler(), seed=recipe.seed,
                                device=ctx.device, checkpoint=path, resume=True, progress=ctx.progress)
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


def train_plain(recipe: LeNetRecipe, train: TensorDataset, ctx) -> tuple[LeNet, dict]:
    """The same LeNet trained with plain PyTorch dropout (Adam, cross-entropy), cached.

    The baseline is plain PyTorch on purpose: in a data-parallel run every rank trains it whole.

    Returns the network (in eval mode) and ``{"seconds": ..., "epoch_loss": [...]}``.
    """
    torch.manual_seed(recipe.seed)
    net = LeNet(dropout=recipe.placement, p=recipe.p).to(ctx.device)
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
        opt = torch.optim.Adam(net.parameters(), lr=recipe.lr)
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


def train_confidnet(stochastic_pass, train: TensorDataset, val_features: torch.Tensor,
                    val_correct: torch.Tensor, ctx, epochs: int = 200, lr: float = 1e-4,
                    batch_size: int = 128, seed: int = 0, passes: int = 10):
    """ConfidNet (Corbiere et al. 2019): a head regressing the true-class probability (TCP)
    from the frozen classifier's features, with an MSE loss.

    ``stochastic_pass(x) -> (logits [B, C], features [B, H])`` runs the frozen classifier as it
    runs in training -- for MC dropout, with its dropout masks on, as in the authors' code
    (their learner keeps the network in train mode): the TCP target and the features of an
    example come from the same stochastic pass, so the training set supplies low-TCP examples
    even though the classifier fits it almost perfectly. The epoch kept is the one with the
    best AUPR-error on the validation split, whose ``val_features`` come from the
    deterministic network used at test time.

    ConfidNet needs hundreds of epochs (the authors train up to 500; on MNIST its test
    AUPR-error was still rising after 100). Since the classifier is frozen, ``passes``
    stochastic passes over the training set are drawn once, and epoch ``e`` trains on pass
    ``e mod passes``: each epoch then costs the head alone, not a pass of the classifier.
    (Memory: ``passes x N x H`` floats, 1.1 GB for 10 passes of LeNet's 500 features on 55,000
    images.)

    Returns ``(head in eval mode, {"val_aupr_error": [...], "train_mse": [...], "best_epoch"})``.
    """
    from bayesdl.evaluation import aupr_error
    from bayesdl.models import ConfidNetHead

    check_int(passes, "passes", minimum=1)
    torch.manual_seed(seed)
    bank = []
    with torch.no_grad():
        for _ in track(range(passes), desc="ConfidNet targets", unit="pass", enabled=ctx.progress):
            features, tcp = [], []
            for x, y in DataLoader(train, batch_size=1000, shuffle=False):
                logits, feats = stochastic_pass(x.to(ctx.device))
                features.append(feats)
                tcp.append(torch.softmax(logits, -1).gather(1, y.to(ctx.device)[:, None])[:, 0])
            bank.append(TensorDataset(torch.cat(features), torch.cat(tcp)))
    head = ConfidNetHead(val_features.shape[1]).to(ctx.device)
    opt = torch.optim.Adam(head.parameters(), lr=lr)
    val_features = val_features.to(ctx.device)  # once, not at every epoch's validation

    def mse_to_tcp(feats, tcp):
        return F.mse_loss(head(feats), tcp)

    history = {"val_aupr_error": [], "train_mse": []}
    best, best_state = -1.0, None
    for epoch in track(range(epochs), desc="ConfidNet", unit="epoch", enabled=ctx.progress):
        data = bank[epoch % passes]
        # Whole minibatches indexed at once: far cheaper than collating examples one by one.
        loader = DataLoader(data, sampler=BatchSampler(RandomSampler(data), batch_size, drop_last=False),
                            batch_size=None)
        history["train_mse"].append(_supervised_epoch(head, loader, opt, mse_to_tcp, ctx.device))
        head.eval()
        with torch.no_grad():
            confidence = head(val_features).cpu()
        score = aupr_error(confidence, val_correct)
        history["val_aupr_error"].append(score)
        if score > best:
            best, best_state = score, {k: v.detach().clone() for k, v in head.state_dict().items()}
    head.load_state_dict(best_state)
    history["best_epoch"] = int(max(range(epochs), key=lambda i: history["val_aupr_error"][i])) + 1
    return head.eval(), history
