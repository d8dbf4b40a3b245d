"""Koh & Liang's checks on multiclass logistic regression on MNIST: the objective, its LBFGS
optimum, leave-out retraining, and the pieces of the study saved as verified JSON (resumable)."""

from __future__ import annotations

import sys

import numpy as np
import torch
import torch.nn as nn

from bayesdl.inference import Influence, KronLaplace
from bayesdl.models import BNN

from ...io import read_verified_json, write_verified_json

PIECE_FORMAT = "bayesdl-influence-piece-v1"


def flat_images(dataset) -> tuple[torch.Tensor, torch.Tensor]:
    """``(x [N, 784] float64 in [0, 1], y [N])`` of an MNIST TensorDataset."""
    x, y = dataset.tensors
    return x.reshape(len(x), -1).double(), y


def logistic_model(device="cpu") -> BNN:
    """Multinomial logistic regression without intercept (Koh & Liang's ``W`` only), as a BNN."""
    return BNN(nn.Linear(784, 10, bias=False), likelihood="categorical").double().to(device)


def objective(theta, x, y, delta: float):
    """``R(theta) = sum_n CE(W x_n, y_n) + delta/2 ||W||^2``, ``theta = vec(W)`` ``[7840]``:
    Koh & Liang's ``mean CE + l2/2 ||W||^2`` times ``N`` (``delta = N l2``)."""
    logits = x @ theta.view(10, -1).T
    return nn.functional.cross_entropy(logits, y, reduction="sum") + 0.5 * delta * (theta @ theta)


def lbfgs(x, y, delta: float, start=None, max_iter: int = 500, tol: float = 1e-6) -> torch.Tensor:
    """The optimum of :func:`objective` by full-batch L-BFGS (torch, strong-Wolfe line search),
    warm-started at ``start``; stops when the gradient's max-norm is below ``tol`` times ``N``."""
    theta = (torch.zeros(7840, dtype=torch.float64, device=x.device) if start is None
             else start.clone()).requires_grad_(True)
    optimizer = torch.optim.LBFGS([theta], lr=1, max_iter=max_iter, history_size=50,
                                  tolerance_grad=tol * len(y), tolerance_change=1e-14,
                                  line_search_fn="strong_wolfe")

    def closure():
        optimizer.zero_grad()
        loss = objective(theta, x, y, delta)
        loss.backward()
        return loss

    optimizer.step(closure)
    return theta.detach()


def test_loss(theta, x, y) -> float:
    """``CE(W x, y)`` of one test point (no regulariser)."""
    return float(nn.functional.cross_entropy(x @ theta.view(10, -1).T, y, reduction="sum"))


def cached(path, compute, settings: dict):
    """The piece at ``path`` if it is there, verified, with the same settings; else computed by
    ``compute()`` (a dict) and written atomically."""
    try:
        piece = read_verified_json(path, PIECE_FORMAT)
        if piece.get("settings") == settings:
            return piece
    except FileNotFoundError:
        pass
    except ValueError as err:
        print(f"{err}; computing it again", file=sys.stderr)
    piece = {**compute(), "settings": settings}
    path.parent.mkdir(parents=True, exist_ok=True)
    write_verified_json(path, piece, PIECE_FORMAT)
    return read_verified_json(path, PIECE_FORMAT)


def predicted_changes(theta, x, y, x_test, y_test, delta: float, top: int, progress: bool) -> dict:
    """For one test point: the predicted change of its loss when each training point is removed,
    ``grad l_test^T H^-1 grad l_n`` (``H`` by CG on exact Hessian-vector products); the ``top``
    most influential points (by ``|prediction|``), their predictions, and the test loss."""
    inf = Influence(logistic_model(x.device), theta, (x, y), "cg", prior_precision=delta, batch_size=8192,
                    cg_tol=1e-10, progress=progress)
    predicted = inf.loss_change_on_removal((x_test, y_test))[0].cpu()
    order = predicted.abs().argsort(descending=True)[:top]
    return {"indices": order.tolist(), "predicted": predicted[order].tolist(),
            "test_loss": test_loss(theta, x_test, y_test)}


def retrained_change(theta, x, y, x_test, y_test, delta: float, n: int, tol: float) -> dict:
    """The actual change of the test loss when training point ``n`` is removed and the model
    retrained (L-BFGS warm-started at ``theta``)."""
    keep = torch.arange(len(y), device=y.device) != n
    theta_n = lbfgs(x[keep], y[keep], delta, start=theta, tol=tol)
    return {"actual": test_loss(theta_n, x_test, y_test) - test_loss(theta, x_test, y_test)}


def pearson(a, b) -> float:
    return float(np.corrcoef(a, b)[0, 1])


def flip_labels(y: torch.Tensor, fraction: float, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """``(indices flipped, noisy labels)``: ``fraction`` of the labels changed to another class, uniformly."""
    g = torch.Generator().manual_seed(seed)
    flipped = torch.randperm(len(y), generator=g)[: round(fraction * len(y))]
    noisy = y.cpu().clone()
    noisy[flipped] = (noisy[flipped] + torch.randint(1, 10, (len(flipped),), generator=g)) % 10
    return flipped, noisy.to(y.device)


def found_shares(score: torch.Tensor, flipped: torch.Tensor,
                 shares=(0.05, 0.1, 0.15, 0.2, 0.3, 0.4, 0.5)) -> dict:
    """The share of the ``flipped`` points among the top ``s`` of the ranking by ``score``, per ``s``."""
    n = len(score)
    is_flipped = torch.zeros(n, dtype=torch.bool)
    is_flipped[flipped.cpu()] = True
    ranked = is_flipped[score.cpu().argsort(descending=True)]
    return {f"{s:g}": float(ranked[: round(s * n)].sum()) / len(flipped) for s in shares}


def mislabel_check(x, y, delta: float, fraction: float, seed: int, tol: float) -> dict:
    """Flip ``fraction`` of the labels (to another class, uniformly), retrain, rank the training
    points by self-influence (KFAC of the logistic regression's one layer) and by training loss;
    the share of the flipped labels found in the top 10%, 20%, ... of each ranking."""
    n = len(y)
    flipped, noisy = flip_labels(y, fraction, seed)
    theta = lbfgs(x, noisy, delta, tol=tol)
    model = logistic_model(x.device)
    curvature = KronLaplace(model, theta, prior_precision=delta).fit((x, noisy), batch_size=4096)
    self_inf = Influence(model, theta, (x, noisy), curvature, batch_size=1024).self_influence()
    self_inf = self_inf.cpu()
    losses = nn.functional.cross_entropy(x @ theta.view(10, -1).T, noisy, reduction="none").cpu()
    return {"self_influence": found_shares(self_inf, flipped), "training_loss": found_shares(losses, flipped),
            "flipped": len(flipped),
            "train": n, "train_accuracy_noisy": float(((x @ theta.view(10, -1).T).argmax(1) == noisy)
                                                      .double().mean())}
