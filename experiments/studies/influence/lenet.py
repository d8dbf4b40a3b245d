"""Mislabelled examples found by a LeNet's self-influence (all-layer EK-FAC, kronfluence's curvature)
against its training loss, after a short and a long training: a network that has memorised its
flipped labels hides them from the loss ranking, which is where self-influence is meant to help."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from bayesdl.inference import influence

from ...training import cache_folder, config_digest
from ..random_labels import train_lenet
from .logistic import cached, flip_labels, found_shares

#: the prior precision ``delta`` of the curvature (Adam without weight decay: it only regularises the solve)
PRIOR_PRECISION = 1.0


def lenet_mislabel(ctx, x, y) -> dict:
    """One verified piece per training length of ``lenet_epochs``: the shares of the flipped labels
    found by EK-FAC self-influence and by training loss, and how well the network fits the noisy labels."""
    o = ctx.options
    flipped, noisy = flip_labels(y, o.flip, ctx.seed)
    out = {}
    for epochs in o.lenet_epochs:
        settings = {"seed": ctx.seed, "train": len(y), "flip": o.flip, "epochs": epochs,
                    "prior_precision": PRIOR_PRECISION, "curvature": "ekfac"}
        path = cache_folder(ctx) / "influence" / f"lenet-mislabel-{config_digest(settings, length=10)}.json"

        def compute(epochs=epochs):
            net, _ = train_lenet(x, noisy, epochs, ctx.seed, ctx.device)
            with torch.no_grad():  # one pass: the loss ranking and both accuracies
                logits = torch.cat([net(xb.to(ctx.device)).cpu() for xb in x.split(1000)])
            fits = logits.argmax(1) == noisy.cpu()
            inf = influence(net, (x.to(ctx.device), noisy.to(ctx.device)), "ekfac", likelihood="categorical",
                            prior_precision=PRIOR_PRECISION, progress=ctx.progress)
            return {"self_influence": found_shares(inf.self_influence(), flipped),
                    "training_loss": found_shares(F.cross_entropy(logits, noisy.cpu(), reduction="none"), flipped),
                    "train_accuracy_noisy": float(fits.double().mean()),
                    "flipped_fitted": float(fits[flipped.cpu()].double().mean())}

        piece = cached(path, compute, settings)
        piece.pop("settings")
        out[str(epochs)] = piece
    return {"runs": out, "flipped": len(flipped), "train": len(y)}
