"""Koh & Liang's check on a small CNN (the non-convex case, their Sec. 5.1 and the authors'
notebook, r = 0.875 over the top 100): predicted against actual change of a test loss when a
training point is removed and the network retrained, for each curvature and damping.

The network is small and smooth (softplus, average pooling, so that its Hessian exists everywhere)
and reads the images average-pooled to 14 x 14: every removal is a full-batch retraining in
float64, and this keeps a hundred of them within minutes on two cores. It is trained to an optimum
of ``R(theta) = sum_n CE_n + delta/2 ||theta||^2`` (``delta = N l2``) by full-batch L-BFGS; a
removal is retrained by L-BFGS warm-started at that optimum. For each of the ``cnn_test_points``
test images of highest loss, the removals are the ``top`` training points of largest predicted
influence under ``cnn_select`` (default the exact Hessian, the paper's curvature, at the smallest
damping at which it is positive definite); every curvature (``exact``, ``ggn``, ``kfac``,
``ekfac``) and damping is scored on the same removals.
L-BFGS may stop at its iteration cap short of the tolerance, and a warm-started retraining would
then go on optimising whatever was removed: the actual change is measured against the full data
retrained from the optimum by the same L-BFGS budget (Koh & Liang's protocol for the CNN). Every
piece (the optimum, each curvature's predictions, each retraining) is a verified JSON file: a killed
run resumes.
"""

from __future__ import annotations

import time

import torch
import torch.nn as nn

from bayesdl.inference import Influence
from bayesdl.models import BNN
from bayesdl.progress import track

from ...training import cache_folder, config_digest
from .logistic import cached, pearson

CURVATURES = ("exact", "ggn", "kfac", "ekfac")


def cnn_inputs(x: torch.Tensor) -> torch.Tensor:
    """MNIST images ``[N, 1, 28, 28]`` average-pooled to ``[N, 1, 14, 14]``, float64."""
    return nn.functional.avg_pool2d(x.double(), 2)


def cnn_model(device="cpu") -> BNN:
    """A small CNN with smooth activations on 14 x 14 images: 1,010 weights, float64."""
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(1, 6, 3), nn.Softplus(), nn.AvgPool2d(2), nn.Conv2d(6, 10, 3), nn.Softplus(),
                        nn.AvgPool2d(2), nn.Flatten(), nn.Linear(10 * 2 * 2, 10))
    return BNN(net, likelihood="categorical").double().to(device)


def _objective(model, theta, x, y, delta: float):
    return nn.functional.cross_entropy(model.network(x, theta), y, reduction="sum") + 0.5 * delta * (theta @ theta)


def lbfgs(model, x, y, delta: float, start, max_iter: int, tol: float) -> torch.Tensor:
    """The optimum of the objective by full-batch L-BFGS from ``start``; stops when the
    gradient's max-norm is below ``tol`` times ``N`` or after ``max_iter`` iterations."""
    theta = start.clone().requires_grad_(True)
    optimizer = torch.optim.LBFGS([theta], lr=1, max_iter=max_iter, history_size=50, tolerance_grad=tol * len(y),
                                  tolerance_change=1e-15, line_search_fn="strong_wolfe")

    def closure():
        optimizer.zero_grad()
        loss = _objective(model, theta, x, y, delta)
        loss.backward()
        return loss

    optimizer.step(closure)
    return theta.detach()


def _test_loss(model, theta, x, y) -> float:
    with torch.no_grad():
        return float(nn.functional.cross_entropy(model.network(x, theta), y, reduction="sum"))


def _predictions(model, theta, train, tests, delta: float, dampings, folder, settings: dict) -> dict:
    """``(curvature, damping) -> {"predicted": [M, N] or None, "seconds", "error"}`` for the ``M`` test
    points: one cached piece per curvature, its curvature fitted once and swept over the dampings
    (:meth:`~bayesdl.inference.Influence.with_damping`). A damping at which the exact Hessian is not
    positive definite gives no prediction, and says why."""
    out = {}
    for curvature in CURVATURES:
        def predict(curvature=curvature):
            clock = time.perf_counter()  # built at the largest damping, which the exact Hessian passes first
            try:
                inf = Influence(model, theta, train, curvature, prior_precision=delta, batch_size=1024,
                                damping=max(dampings) * len(train[1]))
            except ValueError as err:  # the exact Hessian, indefinite even then
                return {"dampings": {f"{d:g}": {"predicted": None, "error": str(err),
                                                "seconds": time.perf_counter() - clock} for d in dampings}}
            fit_seconds = time.perf_counter() - clock
            rows = {}
            for damping in dampings:
                clock = time.perf_counter()
                try:
                    scores = inf.with_damping(damping * len(train[1])).loss_change_on_removal(tests).tolist()
                    rows[f"{damping:g}"] = {"predicted": scores, "error": None}
                except ValueError as err:
                    rows[f"{damping:g}"] = {"predicted": None, "error": str(err)}
                rows[f"{damping:g}"]["seconds"] = fit_seconds + time.perf_counter() - clock
            return {"dampings": rows}

        piece = cached(folder / f"predicted-{curvature}-{config_digest(settings, length=8)}.json", predict,
                       {**settings, "curvature": curvature, "dampings": list(dampings)})
        for damping in dampings:
            out[(curvature, damping)] = piece["dampings"][f"{damping:g}"]
    return out


def _selected(predictions: dict, curvature: str, dampings) -> float:
    """The smallest damping at which ``curvature`` predicts (the exact Hessian may not, undamped)."""
    usable = [d for d in sorted(dampings) if predictions[(curvature, d)]["predicted"] is not None]
    if not usable:
        raise ValueError(f"cnn_select={curvature!r} gives no prediction at any of cnn_dampings={list(dampings)}: "
                         f"{predictions[(curvature, max(dampings))]['error']}")
    return usable[0]


def cnn_check(ctx, x, y, x_test, y_test) -> dict:
    """Train (or load) the optimum, pick the ``cnn_test_points`` test images of highest loss,
    predict with every curvature and damping, retrain each image's ``top`` removals; Pearson r of each."""
    o = ctx.options
    model = cnn_model(x.device)
    delta = o.cnn_l2 * len(y)
    settings = {"seed": ctx.seed, "train": len(y), "l2": o.cnn_l2, "iterations": o.cnn_iterations, "tol": o.cnn_tol}
    folder = cache_folder(ctx) / "influence" / f"cnn-{config_digest(settings, length=10)}"

    def optimum():
        clock = time.perf_counter()
        theta = lbfgs(model, x, y, delta, model.initial_values().double(), o.cnn_iterations, o.cnn_tol)
        theta.requires_grad_(True)
        gradient = torch.autograd.grad(_objective(model, theta, x, y, delta), theta)[0]
        return {"theta": theta.detach().tolist(), "seconds": time.perf_counter() - clock,
                "gradient_max": float(gradient.abs().max()) / len(y)}

    piece = cached(folder / "optimum.json", optimum, settings)
    theta = torch.tensor(piece["theta"], dtype=torch.float64, device=x.device)
    with torch.no_grad():
        logits = model.network(x_test, theta)
    losses = nn.functional.cross_entropy(logits, y_test, reduction="none")
    chosen = losses.argsort(descending=True)[: o.cnn_test_points].tolist()
    predictions = _predictions(model, theta, (x, y), (x_test[chosen], y_test[chosen]), delta, o.cnn_dampings,
                               folder, {**settings, "test_indices": chosen})
    select = (o.cnn_select, _selected(predictions, o.cnn_select, o.cnn_dampings))
    retrain_settings = {**settings, "iterations": o.cnn_retrain_iterations}
    base = torch.tensor(cached(folder / "retrained-none.json", lambda: {"theta": lbfgs(
        model, x, y, delta, theta, o.cnn_retrain_iterations, o.cnn_tol).tolist()},
        {**retrain_settings, "removed": None})["theta"], dtype=torch.float64, device=x.device)
    images = []
    for m, i in enumerate(chosen):
        test = (x_test[i:i + 1], y_test[i:i + 1])
        reference = torch.tensor(predictions[select]["predicted"][m])
        indices = reference.abs().argsort(descending=True)[: o.cnn_top].tolist()
        base_loss = _test_loss(model, base, *test)
        actual = []
        for step, n in enumerate(track(indices, f"CNN, test image {i}: retraining", enabled=ctx.progress)):
            def retrain(n=n, test=test, base_loss=base_loss):
                keep = torch.arange(len(y), device=y.device) != n
                theta_n = lbfgs(model, x[keep], y[keep], delta, theta, o.cnn_retrain_iterations, o.cnn_tol)
                return {"actual": _test_loss(model, theta_n, *test) - base_loss}

            actual.append(cached(folder / f"retrained-{i}-{step:04d}-{n}.json", retrain,
                                 {**retrain_settings, "test_index": i, "removed": n})["actual"])
        rows = {}
        for (curvature, damping), p in predictions.items():
            predicted = None if p["predicted"] is None else [p["predicted"][m][n] for n in indices]
            rows[f"{curvature}@{damping:g}"] = {
                "curvature": curvature, "damping": damping, "predicted": predicted, "seconds": p["seconds"],
                "pearson_r": None if predicted is None else pearson(predicted, actual), "error": p["error"]}
        start_loss = _test_loss(model, theta, *test)
        images.append({"test_index": i, "test_loss": start_loss, "baseline_drift": base_loss - start_loss,
                       "indices": indices, "actual": actual, "rows": rows})
    accuracy = float((logits.argmax(1) == y_test).double().mean())
    return {"images": images, "test_accuracy": accuracy, "train_seconds": piece["seconds"],
            "gradient_max": piece["gradient_max"], "delta": delta, "weights": model.num_latent,
            "selected_by": {"curvature": select[0], "damping": select[1]}}
