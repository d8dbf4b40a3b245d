"""Checkpoints of ``fit``: saved atomically after every epoch, loaded without running any code.

A checkpoint holds the guide's and the model's learned parameters, the optimizer and scheduler
states, the epoch, the training history, the RNG state and the input shape; it names the guide
class and the latent sites it was saved for, so loading it into another network or guide fails
with a clear message instead of a shape error. It carries a SHA-256 digest of its content,
checked on every load with the content itself (:func:`load_state`, the one loader of every
checkpoint and cache file): a corrupted, truncated or tampered file is a clear ``ValueError``,
never a silently wrong network.
"""

from __future__ import annotations

import hashlib
import pickle

import torch

from bayesdl.atomic import atomic_path
from bayesdl.models.bnn import bnn_of

from .guides import BNNGuide
from .history import TrainingHistory
from .posterior import Posterior

__all__ = ["load_checkpoint", "verify_checkpoint", "save_state", "load_state", "state_digest",
           "CHECKPOINT_FORMAT"]

CHECKPOINT_FORMAT = "bayesdl-checkpoint-2"  # 2: with a SHA-256 digest of its content

#: what a checkpoint of ``fit`` holds, and the type of each entry
_CHECKPOINT_FIELDS = {
    "input_shape": list, "guide_class": str, "sites": list, "guide_state": dict, "model_state": dict,
    "optimizer_state": dict, "scheduler_state": dict, "epoch": int, "history": dict, "seed": int,
    "rng_state": torch.Tensor,
}


def state_digest(state) -> str:
    """SHA-256 of the content of a state -- nested dicts, lists and tuples of tensors (dtype,
    shape and bytes) and plain values -- independent of how the file stores it."""
    digest = hashlib.sha256()

    def feed(value):
        if isinstance(value, torch.Tensor):
            t = value.detach().cpu().contiguous()
            digest.update(f"T{t.dtype}{tuple(t.shape)}:".encode())
            digest.update(t.reshape(-1).view(torch.uint8).numpy().tobytes())
        elif isinstance(value, dict):
            digest.update(f"D{len(value)}:".encode())
            for key, item in value.items():
                feed(key)
                feed(item)
        elif isinstance(value, (list, tuple)):
            digest.update(f"{type(value).__name__[0]}{len(value)}:".encode())
            for item in value:
                feed(item)
        else:
            digest.update(repr((type(value).__name__, value)).encode())

    feed(state)
    return digest.hexdigest()


def save_state(path, state: dict, kind: str) -> None:
    """Save ``state`` (tensors and plain values) atomically as a ``kind`` file, with a SHA-256
    digest of its content that :func:`load_state` verifies."""
    state = {"format": kind, **state}
    state["sha256"] = state_digest(state)
    with atomic_path(path) as tmp:
        torch.save(state, tmp)


def load_state(path, kind: str, fields: dict[str, type], finite: tuple[str, ...] = (),
               what: str = "bayesdl checkpoint") -> dict:
    """The one loader of the library's checkpoints and caches: read a file of :func:`save_state`.

    Loads with ``torch.load(weights_only=True)`` -- no code in the file is ever run -- and raises
    ``ValueError``, saying what is wrong, unless the file is a ``kind`` file whose digest matches
    its content (a flipped bit, a truncated or edited file fail here), holds every entry of
    ``fields`` with its type, and has only finite values in the tensors under the ``finite``
    entries. ``what`` names such a file in the messages. ``FileNotFoundError`` when there is
    no file.
    """
    fix = "delete it and train again"
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise
    except pickle.UnpicklingError as err:  # torch's message advises weights_only=False: never pass it on
        why = ("it holds objects other than tensors and plain values, which are never loaded as they could "
               "run code" if "Unsupported global" in str(err) else "it cannot be unpickled")
        raise ValueError(f"{path} is not a readable {what} ({why}); it may be corrupted or tampered with "
                         f"-- {fix}") from None
    except Exception as err:  # a corrupt zip, a truncated file, not a torch file at all
        raise ValueError(f"{path} is not a readable {what} ({type(err).__name__}: {err}); it may be "
                         f"corrupted or truncated -- {fix}") from None
    if not isinstance(state, dict) or state.get("format") != kind:
        found = state.get("format") if isinstance(state, dict) else type(state).__name__
        raise ValueError(f"{path} is not a {what} of this version (format {found!r}, expected {kind!r}); "
                         f"{fix}")
    stored = state.pop("sha256", None)
    if stored != state_digest(state):
        why = "has no digest" if stored is None else "does not match its SHA-256 digest"
        raise ValueError(f"{path} {why}: its content was corrupted or altered after it was written; {fix}")
    missing = [key for key in fields if key not in state]
    if missing:
        raise ValueError(f"{path} lacks the entries {missing} of a {what}; {fix}")
    wrong = [f"{key} ({type(state[key]).__name__}, not {kind_.__name__})" for key, kind_ in fields.items()
             if not isinstance(state[key], kind_) or (kind_ is int and isinstance(state[key], bool))]
    if wrong:
        raise ValueError(f"{path} has entries of the wrong type: {', '.join(wrong)}; {fix}")
    for key in finite:
        bad = _non_finite_tensors(state[key], key)
        if bad:
            raise ValueError(f"{path} holds non-finite (NaN/Inf) values in {', '.join(bad[:4])}"
                             f"{'...' if len(bad) > 4 else ''}; {fix}")
    return state


def _non_finite_tensors(value, name: str) -> list[str]:
    if isinstance(value, torch.Tensor):
        return [name] if value.is_floating_point() and not bool(torch.isfinite(value).all()) else []
    if isinstance(value, dict):
        return [bad for key, item in value.items() for bad in _non_finite_tensors(item, f"{name}.{key}")]
    if isinstance(value, (list, tuple)):
        return [bad for i, item in enumerate(value) for bad in _non_finite_tensors(item, f"{name}[{i}]")]
    return []


def checkpoint_state(model, guide, optimizer, scheduler, epoch, history, seed, input_shape) -> dict:
    """Everything ``fit`` needs to resume, and ``load_checkpoint`` to rebuild the posterior."""
    bnn = bnn_of(model)
    return {
        "input_shape": list(input_shape),
        "guide_class": type(guide).__name__,
        "sites": [[s.name, list(s.shape)] for s in bnn.sites] if bnn is not None else [],
        "guide_state": guide.state_dict(),
        "model_state": model.state_dict() if isinstance(model, torch.nn.Module) else {},
        "optimizer_state": optimizer.state_dict(),
        "scheduler_state": scheduler.state_dict() if scheduler is not None else {},
        "epoch": epoch,
        "history": history.as_dict(),
        "seed": -1 if seed is None else seed,
        "rng_state": torch.get_rng_state(),
    }


def save_checkpoint(path, state) -> None:
    save_state(path, state, CHECKPOINT_FORMAT)


def verify_checkpoint(path) -> dict:
    """The content of a checkpoint of ``fit``, verified: its digest, every entry with its type,
    finite weights, a consistent epoch and history (``ValueError`` otherwise)."""
    state = load_state(path, CHECKPOINT_FORMAT, _CHECKPOINT_FIELDS, finite=("guide_state", "model_state"))
    if state["epoch"] < 0:
        raise ValueError(f"{path} records epoch {state['epoch']}; a checkpoint's epoch is >= 0")
    unknown = sorted(set(state["history"]) - set(TrainingHistory.__dataclass_fields__))
    if unknown:
        raise ValueError(f"{path} has a training history with unknown entries {unknown}; delete it and "
                         "train again")
    return state


def read_checkpoint(path, model, guide) -> dict:
    state = verify_checkpoint(path)
    if state["guide_class"] != type(guide).__name__:
        raise ValueError(
            f"{path} was saved from a {state['guide_class']}, not a {type(guide).__name__}; "
            "build the same guide to load it"
        )
    bnn = bnn_of(model)
    sites = [[s.name, list(s.shape)] for s in bnn.sites] if bnn is not None else []
    if state["sites"] != sites:
        raise ValueError(
            f"{path} was saved for a network with other latent weights; its sites are "
            f"{[n for n, _ in state['sites']][:6]}..., this model's are {[n for n, _ in sites][:6]}..."
        )
    return state


def resume(path, model, guide, optimizer, scheduler) -> tuple[TrainingHistory, int]:
    """Load a verified checkpoint into ``model``, ``guide``, the optimizer, the scheduler and
    torch's RNG; returns the training history and the number of epochs done."""
    state = read_checkpoint(path, model, guide)
    restore(state, model, guide)
    try:
        optimizer.load_state_dict(state["optimizer_state"])
        if scheduler is not None and state["scheduler_state"]:
            scheduler.load_state_dict(state["scheduler_state"])
        torch.set_rng_state(state["rng_state"])
        history = TrainingHistory(**state["history"])
    except (ValueError, KeyError, TypeError, RuntimeError) as err:
        raise ValueError(f"{path} does not fit this training (optimizer, scheduler or random state: "
                         f"{type(err).__name__}: {err}); delete it or pass resume=False") from None
    return history, state["epoch"]


def restore(state, model, guide) -> None:
    try:
        guide.load_state_dict(state["guide_state"])
        if isinstance(model, torch.nn.Module):
            model.load_state_dict(state["model_state"])
    except RuntimeError as err:
        raise ValueError(f"the checkpoint does not fit this model and guide: {err}") from None


def load_checkpoint(path, model, guide) -> Posterior:
    """Load the guide (and learned model parameters) saved by ``fit(..., checkpoint=path)``.

    Loads with ``torch.load(weights_only=True)``, so no code in the file is ever run. A file
    that is corrupt (its digest does not match), tampered with (entries missing or of the wrong
    type, non-finite weights), or saved for another guide or network raises ``ValueError``.
    The guide is set up from the input shape the checkpoint records, so it can draw weights at
    once. Returns the :class:`Posterior` with its training history.

    Example::

        >>> import torch
        >>> import torch.nn as nn
        >>> from bayesdl.models import BNN
        >>> _ = torch.manual_seed(0)
        >>> x = torch.rand(8, 2); y = (x.sum(1) > 1).long()     # 8 points in [0, 1]^2, 2 classes
        >>> import os
        >>> import tempfile
        >>> from bayesdl.inference import MAPGuide, fit, load_checkpoint
        >>> model = BNN(nn.Linear(2, 2))
        >>> with tempfile.TemporaryDirectory() as folder:
        ...     path = os.path.join(folder, "map.pt")
        ...     trained = fit(model, MAPGuide(model), (x, y), epochs=2, checkpoint=path, progress=False)
        ...     loaded = load_checkpoint(path, model, MAPGuide(model))
        >>> len(loaded.history.epoch_elbo), torch.equal(loaded.point_estimate()["weight"],
        ...                                             trained.point_estimate()["weight"])
        (2, True)
    """
    state = read_checkpoint(path, model, guide)
    restore(state, model, guide)
    shape = state.get("input_shape")
    if shape and isinstance(guide, BNNGuide):  # e.g. the dropout guide maps its masks to the weights
        reference = bnn_of(model).prior_scales
        guide.setup(torch.zeros(2, *shape, dtype=reference.dtype, device=reference.device))
    return Posterior(model, guide, TrainingHistory(**state["history"]))
