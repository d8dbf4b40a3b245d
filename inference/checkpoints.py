"""Checkpoints of ``fit``: saved atomically after every epoch, loaded without running any code.

A checkpoint holds the guide's and the model's learned parameters, the optimizer and scheduler
states, the epoch, the training history, the RNG state and the input shape; it names the guide
class and the latent sites it was saved for, so loading it into another network or guide fails
with a clear message instead of a shape error.
"""

from __future__ import annotations

import torch

from bayesdl.atomic import atomic_path
from bayesdl.models.bnn import bnn_of

from .guides import BNNGuide
from .history import TrainingHistory
from .posterior import Posterior

__all__ = ["load_checkpoint", "CHECKPOINT_FORMAT"]

CHECKPOINT_FORMAT = "bayesdl-checkpoint-1"


def checkpoint_state(model, guide, optimizer, scheduler, epoch, history, seed, input_shape) -> dict:
    """Everything ``fit`` needs to resume, and ``load_checkpoint`` to rebuild the posterior."""
    bnn = bnn_of(model)
    return {
        "format": CHECKPOINT_FORMAT,
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
    with atomic_path(path) as tmp:
        torch.save(state, tmp)


def read_checkpoint(path, model, guide) -> dict:
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise
    except Exception as err:  # unpickling refused or corrupt file
        raise ValueError(
            f"{path} is not a readable bayesdl checkpoint ({type(err).__name__}: {err}); it may "
            "be corrupted or tampered with -- delete it and train again"
        ) from None
    if not isinstance(state, dict) or state.get("format") != CHECKPOINT_FORMAT:
        raise ValueError(f"{path} is not a bayesdl checkpoint (format {CHECKPOINT_FORMAT!r} expected)")
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
    that is corrupt, tampered with, or saved for another guide or network raises
    ``ValueError``. The guide is set up from the input shape the checkpoint records, so it can
    draw weights at once. Returns the :class:`Posterior` with its training history.
    """
    state = read_checkpoint(path, model, guide)
    restore(state, model, guide)
    shape = state.get("input_shape")
    if shape and isinstance(guide, BNNGuide):  # e.g. the dropout guide maps its masks to the weights
        reference = bnn_of(model).prior_scales
        guide.setup(torch.zeros(2, *shape, dtype=reference.dtype, device=reference.device))
    return Posterior(model, guide, TrainingHistory(**state["history"]))
