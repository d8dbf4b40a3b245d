"""``influence``: Koh & Liang's (2017) checks of influence functions on MNIST.

1. Multinomial logistic regression (no intercept, L2 ``l2`` on the mean loss, i.e. ``delta = N l2``
   on the summed one), trained to its optimum by L-BFGS. For the test images of highest loss,
   the predicted change of their loss when a training point is removed,
   ``grad l_test^T H^-1 grad l_n`` (:class:`bayesdl.inference.Influence`, ``H`` by conjugate
   gradients on exact Hessian-vector products), against the actual change after removing each of
   the ``top`` most influential points and retraining (warm-started L-BFGS): Pearson r
   (target >= 0.95; the paper's Fig. 2 uses the top 500: ``--set top=500``).
2. A small CNN (:mod:`.cnn`): the same check where the loss is not convex, over the top 100, for
   each curvature (exact Hessian, GGN, KFAC, EK-FAC) and damping (target r >= 0.85).
3. Mislabelled examples: ``flip`` of the labels of a training subset are changed, the model
   retrained, and the training points ranked by self-influence ``grad l_n^T H^-1 grad l_n``
   (KFAC curvature) and by training loss; the share of the flipped labels in the top 10% / 20%.
4. The same with a LeNet (:mod:`.lenet`, all-layer EK-FAC) after ``lenet_epochs`` of Adam: once
   the network has memorised its flipped labels, the loss ranking loses them.

Every finished piece (the optimum, each test point's removals, the mislabel run) is a verified
JSON file in the cache folder, reused on a rerun with the same settings.
"""

from __future__ import annotations

import torch

from bayesdl.progress import track

from ...data import mnist_splits
from ...registry import RunContext, StudyResult
from ...training import cache_folder, config_digest
from .cnn import cnn_check, cnn_inputs
from .lenet import lenet_mislabel
from .logistic import cached, flat_images, lbfgs, mislabel_check, pearson, predicted_changes, retrained_change
from .report import (
    cnn_figure,
    influence_figure,
    lenet_mislabel_figure,
    mislabel_figure,
    report,
    scatter_figure,
)


def _optimum(ctx, x, y, delta: float, settings: dict) -> torch.Tensor:
    path = cache_folder(ctx) / "influence" / f"optimum-{config_digest(settings, length=10)}.json"
    piece = cached(path, lambda: {"theta": lbfgs(x, y, delta, tol=1e-9).tolist()}, settings)
    return torch.tensor(piece["theta"], dtype=torch.float64, device=x.device)


def _removals(ctx, theta, data, delta: float, settings: dict) -> dict:
    """Per chosen test image: predicted against actual loss changes of the top removals; the
    predictions and every retraining are pieces of their own (a killed run loses one retraining)."""
    o = ctx.options
    x, y, x_test, y_test = data
    losses = torch.nn.functional.cross_entropy(x_test @ theta.view(10, -1).T, y_test, reduction="none")
    out = {}
    for i in losses.argsort(descending=True)[: o.test_points].tolist():
        test = (x_test[i:i + 1], y_test[i:i + 1])
        key = {**settings, "test_index": i, "top": o.top}
        folder = cache_folder(ctx) / "influence" / f"removals-{config_digest(key, length=10)}"
        r = cached(folder / "predicted.json",
                   lambda test=test: predicted_changes(theta, x, y, *test, delta, o.top, ctx.progress), key)
        actual = []
        for step, n in enumerate(track(r["indices"], f"test image {i}: retraining", enabled=ctx.progress)):
            piece_key = {**key, "removed": n, "retrain_tol": o.retrain_tol}
            actual.append(cached(folder / f"retrained-{step:04d}-{n}.json", lambda n=n, test=test: retrained_change(
                theta, x, y, *test, delta, n, o.retrain_tol), piece_key)["actual"])
        out[str(i)] = {"indices": r["indices"], "predicted": r["predicted"], "actual": actual,
                       "test_loss": r["test_loss"], "pearson_r": pearson(r["predicted"], actual)}
    return out


def run(ctx: RunContext) -> StudyResult:
    torch.set_num_threads(max(1, min(torch.get_num_threads(), 2)))
    o = ctx.options
    train_limit = max(o.train or 60_000, o.cnn_train if "cnn" in o.parts else 0,
                      o.mislabel_train if "lenet" in o.parts else 0)
    splits = mnist_splits(ctx.data_root, seed=ctx.seed, val_size=0, train_limit=train_limit, download=ctx.download)
    results, figures = {}, {}
    config = {"parts": list(o.parts), "seed": ctx.seed}
    if "logistic" in o.parts:
        x, y = (t[: o.train].to(ctx.device) for t in flat_images(splits["train"]))
        x_test, y_test = (t.to(ctx.device) for t in flat_images(splits["test"]))
        delta = o.l2 * len(y)
        settings = {"seed": ctx.seed, "train": len(y), "l2": o.l2}
        theta = _optimum(ctx, x, y, delta, settings)
        accuracy = float(((x_test @ theta.view(10, -1).T).argmax(1) == y_test).double().mean())
        removals = _removals(ctx, theta, (x, y, x_test, y_test), delta, settings)
        m = min(o.mislabel_train, len(y))
        mis_settings = {**settings, "mislabel_train": m, "flip": o.flip, "retrain_tol": o.retrain_tol}
        path = cache_folder(ctx) / "influence" / f"mislabel-{config_digest(mis_settings, length=10)}.json"
        mislabel = cached(path, lambda: mislabel_check(x[:m], y[:m], o.l2 * m, o.flip, ctx.seed, o.retrain_tol),
                          mis_settings)
        mislabel.pop("settings")
        figures.update(scatter=scatter_figure(ctx, removals),
                       images=influence_figure(ctx, removals, x.cpu(), y.cpu(), x_test.cpu(), y_test.cpu()),
                       mislabel=mislabel_figure(ctx, mislabel))
        results.update(logistic_regression={"test_accuracy": accuracy, "delta": delta, "removals": removals},
                       mislabel=mislabel)
        config.update(train=len(y), l2=o.l2, delta=delta, top=o.top, test_points=o.test_points, mislabel_train=m,
                      flip=o.flip, retrain_tol=o.retrain_tol, curvature_removal="cg (exact Hessian-vector products)",
                      curvature_self_influence="kfac")
    if "cnn" in o.parts:
        (x, y), (x_test, y_test) = ((cnn_inputs(s.tensors[0][:limit]).to(ctx.device), s.tensors[1][:limit].to(ctx.device))
                                    for s, limit in ((splits["train"], o.cnn_train), (splits["test"], o.cnn_test)))
        results["cnn"] = cnn_check(ctx, x, y, x_test, y_test)
        figures["cnn"] = cnn_figure(ctx, results["cnn"])
        config.update(cnn_train=len(y), cnn_test=len(y_test), cnn_test_points=o.cnn_test_points, cnn_top=o.cnn_top,
                      cnn_select=o.cnn_select, cnn_l2=o.cnn_l2,
                      cnn_dampings=list(o.cnn_dampings), cnn_iterations=o.cnn_iterations,
                      cnn_retrain_iterations=o.cnn_retrain_iterations, cnn_tol=o.cnn_tol)
    if "lenet" in o.parts:
        x, y = (t[: o.mislabel_train] for t in splits["train"].tensors)
        results["lenet_mislabel"] = lenet_mislabel(ctx, x, y)
        figures["lenet_mislabel"] = lenet_mislabel_figure(ctx, results["lenet_mislabel"])
        config.update(mislabel_train=len(y), flip=o.flip, lenet_epochs=list(o.lenet_epochs))
    return StudyResult(config=config, results=results, report=report(config, results, figures))
