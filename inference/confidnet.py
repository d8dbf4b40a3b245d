"""ConfidNet (Corbiere et al. 2019): a head that predicts whether a classifier is right.

A small MLP reads the frozen classifier's penultimate features and regresses the true-class
probability (TCP) with an MSE loss; its output is a confidence score for failure prediction,
judged by :func:`bayesdl.evaluation.aupr_error` (errors as positives).

- :func:`fit_confidnet`: from a MC-dropout :class:`~bayesdl.inference.Posterior` and its training
  and validation data to a fitted :class:`ConfidNet`, whose :meth:`~ConfidNet.confidence` scores
  new inputs;
- :func:`train_confidnet`: the training loop itself, on any ``stochastic_passes`` function (a
  classifier that is not a bayesdl posterior).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from pathlib import Path

import torch
import torch.nn.functional as F
from torch.utils.data import BatchSampler, DataLoader, RandomSampler, TensorDataset

from bayesdl.checks import check_int, check_positive
from bayesdl.progress import track

from .checkpoints import load_state, save_state

__all__ = ["ConfidNet", "fit_confidnet", "train_confidnet"]

_CONFIDNET_FORMAT = "bayesdl-confidnet-1"


class ConfidNet:
    """A fitted ConfidNet: the head on a posterior's point-estimate features.

    ``head`` is the :class:`bayesdl.models.ConfidNetHead` (eval mode), ``history`` its training
    (``val_aupr_error`` and ``train_mse`` per epoch, ``best_epoch``, ``seconds``). Build one with
    :func:`fit_confidnet` (its example fits one); the head can also be used on features directly:

    >>> import torch
    >>> from bayesdl.models import ConfidNetHead
    >>> head = ConfidNetHead(8, hidden=(4,)).eval()
    >>> ConfidNet(None, head, {"val_aupr_error": [0.3], "train_mse": [0.1], "best_epoch": 1})
    ConfidNet(epochs=1, best_epoch=1)
    >>> head(torch.zeros(3, 8)).shape
    torch.Size([3])
    """

    def __init__(self, posterior, head: torch.nn.Module, history: dict):
        self.posterior, self.head, self.history = posterior, head, history

    @torch.no_grad()
    def confidence(self, x: torch.Tensor, batch_size: int = 1000) -> torch.Tensor:
        """Confidence ``[N]`` in (0, 1) that the deterministic network (dropout off: the
        :meth:`~bayesdl.inference.Posterior.point_outputs` prediction) classifies each input
        right; higher is more confident."""
        _, features = self.posterior.point_features(x, batch_size=batch_size)
        return self.head(features).cpu()

    def __repr__(self) -> str:
        return (f"ConfidNet(epochs={len(self.history['val_aupr_error'])}, "
                f"best_epoch={self.history.get('best_epoch')})")


def _tensors(data, name: str) -> tuple[torch.Tensor, torch.Tensor]:
    if isinstance(data, TensorDataset) and len(data.tensors) == 2:
        return data.tensors
    if isinstance(data, (tuple, list)) and len(data) == 2 and all(isinstance(t, torch.Tensor) for t in data):
        return data[0], data[1]
    raise TypeError(f"{name} must be a TensorDataset(x, y) or a tuple (x, y) of tensors, "
                    f"got {type(data).__name__}")


def _stochastic_passes(posterior) -> Callable:
    """``(inputs, count) -> (outputs [P, B, C], features [P, B, H])``: ``count`` stochastic passes
    of the posterior's classifier (for MC dropout, per-example masks as in training) and the
    penultimate features each computed on the way."""
    bnn = posterior.bnn

    def passes(inputs, count):
        with bnn.capture_features() as captured:
            outputs = posterior.predictive_outputs(inputs, num_samples=count, batch_size=len(inputs))
        # The passes may run one at a time, or several as one pass over a repeated batch (a shared
        # deterministic prefix): either way the last count x B captured rows are the passes' features
        # in pass-major order (before them: a first call's one-time checks of the network).
        rows = torch.cat(captured)[-count * len(inputs):]
        return outputs, rows.view(count, len(inputs), -1)

    return passes


def fit_confidnet(posterior, train, val, *, epochs: int = 200, lr: float = 1e-4, batch_size: int = 128,
                  passes: int = 10, hidden: Sequence[int] = (400, 400, 400, 400), seed: int = 0,
                  checkpoint=None, save_every: int = 10, device=None, progress: bool = True) -> ConfidNet:
    """ConfidNet on the frozen classifier of ``posterior`` (a categorical BNN posterior; MC
    dropout in the paper), trained on ``train`` and selected on ``val`` (each a
    ``TensorDataset(x, y)`` or a tuple ``(x, y)``).

    The targets come from ``passes`` stochastic passes of the classifier over ``train``, drawn
    once (see :func:`train_confidnet`); the epoch kept is the one with the best AUPR-error on
    ``val``, scored on the deterministic network's features, as at test time. Corbiere et al.
    train up to 500 epochs with Adam at ``lr = 1e-4``; ``hidden`` is the head's widths (theirs:
    four layers of 400). ``checkpoint`` (a path) makes the training resumable. Returns a
    :class:`ConfidNet`.

    Example::

        >>> import torch
        >>> from torch.utils.data import TensorDataset
        >>> from bayesdl.inference import approximate, fit_confidnet
        >>> from bayesdl.models import BNN, MLP
        >>> _ = torch.manual_seed(0)
        >>> x = torch.randn(200, 2); y = (x[:, 0] > 0).long()
        >>> posterior = approximate("dropout", BNN(MLP(2, 32, 2, dropout=0.5)), (x, y), epochs=5,
        ...                         batch_size=50, progress=False)
        >>> train, val = TensorDataset(x[:150], y[:150]), TensorDataset(x[150:], y[150:])
        >>> confidnet = fit_confidnet(posterior, train, val, epochs=3, passes=2, hidden=(16,), progress=False)
        >>> confidnet.confidence(x[:4]).shape, len(confidnet.history["val_aupr_error"])
        (torch.Size([4]), 3)
    """
    from bayesdl.models import Categorical

    bnn = posterior.bnn
    if not isinstance(bnn.likelihood, Categorical):
        raise ValueError("ConfidNet predicts the true-class probability of a classifier: the posterior's "
                         f"likelihood must be categorical, got {type(bnn.likelihood).__name__}")
    x_train, y_train = _tensors(train, "train")
    x_val, y_val = _tensors(val, "val")
    if device is None:
        device = next(iter(bnn.buffers()), torch.empty(0)).device
    val_logits, val_features = posterior.point_features(x_val, batch_size=1000)
    val_correct = (val_logits.argmax(-1).cpu() == y_val.cpu())
    head, history = train_confidnet(_stochastic_passes(posterior), TensorDataset(x_train, y_train),
                                    val_features, val_correct, epochs=epochs, lr=lr, batch_size=batch_size,
                                    seed=seed, passes=passes, hidden=hidden, checkpoint=checkpoint,
                                    save_every=save_every, device=device, progress=progress)
    return ConfidNet(posterior, head, history)


def train_confidnet(stochastic_passes, train: TensorDataset, val_features: torch.Tensor,
                    val_correct: torch.Tensor, *, epochs: int = 200, lr: float = 1e-4,
                    batch_size: int = 128, seed: int = 0, passes: int = 10,
                    hidden: Sequence[int] = (400, 400, 400, 400), checkpoint=None, save_every: int = 10,
                    device="cpu", progress: bool = True):
    """ConfidNet's training loop: a head regressing the true-class probability (TCP) from the
    frozen classifier's features, with an MSE loss.

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

    Example, with a stand-in classifier whose TCP is ``sigmoid(3 x_0)``::

        >>> import torch
        >>> from torch.utils.data import TensorDataset
        >>> def passes(x, count):  # features perturbed per pass, as dropout would
        ...     features = x + 0.1 * torch.randn(count, *x.shape)
        ...     return torch.stack([3 * features[..., 0], torch.zeros(count, len(x))], -1), features
        >>> _ = torch.manual_seed(0)
        >>> x, x_val = torch.randn(300, 4), torch.randn(100, 4)
        >>> head, history = train_confidnet(passes, TensorDataset(x, torch.zeros(300, dtype=torch.long)),
        ...                                 x_val, x_val[:, 0] > 0, epochs=3, passes=2, hidden=(16,),
        ...                                 progress=False)
        >>> head(x_val).shape, sorted(history)
        (torch.Size([100]), ['best_epoch', 'seconds', 'train_mse', 'val_aupr_error'])
    """
    from bayesdl.models import ConfidNetHead

    check_int(passes, "passes", minimum=1)
    check_int(epochs, "epochs", minimum=1)
    check_int(batch_size, "batch_size", minimum=1)
    check_int(save_every, "save_every", minimum=1)
    check_positive(lr, "lr")
    if len(val_features) != len(val_correct):
        raise ValueError(f"val_features holds {len(val_features)} examples but val_correct "
                         f"{len(val_correct)}: pass one correctness flag per validation example")
    checkpoint = None if checkpoint is None else Path(checkpoint)
    device = torch.device(device)
    torch.manual_seed(seed)
    head = ConfidNetHead(val_features.shape[1], hidden=hidden).to(device)
    opt = torch.optim.Adam(head.parameters(), lr=lr)
    rng, history, best, best_state = _resume(checkpoint, head, opt, epochs)
    start_epoch = len(history["val_aupr_error"])
    clock = time.perf_counter()
    if start_epoch < epochs:
        bank = _bank(stochastic_passes, train, passes, device, progress, rng)
    val_features = val_features.to(device)  # once, not at every epoch's validation
    for epoch in track(range(start_epoch, epochs), desc="ConfidNet", unit="epoch", enabled=progress):
        score = _epoch(head, opt, bank[epoch % passes], batch_size, val_features, val_correct, history,
                       device)
        if score > best:
            best, best_state = score, {k: v.detach().clone() for k, v in head.state_dict().items()}
        if checkpoint is not None and ((epoch + 1) % save_every == 0 or epoch + 1 == epochs):
            history["seconds"] += time.perf_counter() - clock
            clock = time.perf_counter()
            _save(checkpoint, head, opt, best_state, history)
    if checkpoint is None:
        history["seconds"] += time.perf_counter() - clock
    head.load_state_dict(best_state)
    history["best_epoch"] = int(max(range(epochs), key=lambda i: history["val_aupr_error"][i])) + 1
    return head.eval(), history


def _resume(checkpoint: Path | None, head, opt, epochs: int):
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


def _bank(stochastic_passes, train: TensorDataset, passes: int, device, progress: bool,
          rng: torch.Tensor | None) -> list[TensorDataset]:
    """``passes`` stochastic passes of the frozen classifier over ``train``, drawn once: per pass,
    ``(features, TCP target)`` of every example. Then ``rng``, a resumed training's random state,
    is restored (when given), so that the epochs continue the random stream where they stopped."""
    bank = [([], []) for _ in range(passes)]
    with torch.no_grad():
        for x, y in track(DataLoader(train, batch_size=1000, shuffle=False), desc="ConfidNet targets",
                          unit="batch", enabled=progress):
            logits, feats = stochastic_passes(x.to(device), passes)
            labels = y.to(device)[None, :, None].expand(passes, -1, 1)
            tcp = torch.softmax(logits, -1).gather(2, labels)
            for k in range(passes):
                bank[k][0].append(feats[k])
                bank[k][1].append(tcp[k, :, 0])
    bank = [TensorDataset(torch.cat(f), torch.cat(t)) for f, t in bank]
    if rng is not None:
        torch.set_rng_state(rng)
    return bank


def _epoch(head, opt, data: TensorDataset, batch_size: int, val_features, val_correct, history: dict,
           device) -> float:
    """One ConfidNet epoch on one pass ``data``: MSE training of ``head`` on the TCP targets, then
    its AUPR-error on the validation split; both are appended to ``history``. Returns the latter."""
    from bayesdl.evaluation import aupr_error

    # Whole minibatches indexed at once: far cheaper than collating examples one by one.
    loader = DataLoader(data, sampler=BatchSampler(RandomSampler(data), batch_size, drop_last=False),
                        batch_size=None)
    head.train()
    total, count = 0.0, 0
    for feats, tcp in loader:
        feats, tcp = feats.to(device), tcp.to(device)
        opt.zero_grad()
        loss = F.mse_loss(head(feats), tcp)
        loss.backward()
        opt.step()
        total += float(loss.detach()) * len(tcp)
        count += len(tcp)
    history["train_mse"].append(total / count)
    head.eval()
    with torch.no_grad():
        confidence = head(val_features).cpu()
    score = aupr_error(confidence, val_correct)
    history["val_aupr_error"].append(score)
    return score


def _save(checkpoint: Path, head, opt, best_state, history: dict) -> None:
    """Save a ConfidNet training atomically: its head, best head, optimizer, history and random state."""
    save_state(checkpoint, {"head": head.state_dict(), "best": best_state, "optimizer": opt.state_dict(),
                            "history": history, "rng": torch.get_rng_state()}, _CONFIDNET_FORMAT)
