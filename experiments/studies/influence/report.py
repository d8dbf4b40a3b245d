"""Figures and the report of the ``influence`` study."""

from __future__ import annotations

import torch

from bayesdl.evaluation.plotting import new_figure

from ...io import markdown_table


def scatter_figure(ctx, removals: dict) -> str:
    """Predicted against actual change of the test loss, one panel per test image."""
    fig, axes = new_figure(ncols=len(removals), size=(4.0, 3.8))
    for ax, (index, r) in zip(axes[0], removals.items()):
        low = min(min(r["predicted"]), min(r["actual"]))
        high = max(max(r["predicted"]), max(r["actual"]))
        ax.plot([low, high], [low, high], color="0.6", lw=1, label="y = x")
        ax.scatter(r["actual"], r["predicted"], s=12, alpha=0.7)
        ax.set_xlabel("actual change of the test loss\n(retrained without the point)")
        ax.set_ylabel("predicted (influence function)")
        ax.set_title(f"test image {index}: top {len(r['actual'])}, r = {r['pearson_r']:.3f}")
        ax.legend(loc="upper left")
    return ctx.figure(fig, "predicted_vs_actual.png")


def influence_figure(ctx, removals: dict, x, y, x_test, y_test, per_row: int = 5) -> str:
    """Each test image with the training images whose removal would raise its loss most (they
    help it) and lower it most (they hurt it)."""
    fig, axes = new_figure(ncols=1 + 2 * per_row, nrows=len(removals), size=(1.25, 1.5))
    for row, (index, r) in zip(axes, removals.items()):
        i = int(index)
        order = torch.tensor(r["predicted"]).argsort(descending=True)
        indices = torch.tensor(r["indices"])
        helpful, harmful = indices[order[:per_row]], indices[order.flip(0)[:per_row]]
        row[0].imshow(x_test[i].view(28, 28), cmap="gray_r")
        row[0].set_title(f"test, y={int(y_test[i])}", fontsize=8, color="tab:blue")
        for ax, n, kind in [*[(a, n, "helps") for a, n in zip(row[1:1 + per_row], helpful)],
                            *[(a, n, "hurts") for a, n in zip(row[1 + per_row:], harmful)]]:
            ax.imshow(x[int(n)].view(28, 28), cmap="gray_r")
            ax.set_title(f"{kind}, y={int(y[int(n)])}", fontsize=8,
                         color="tab:green" if kind == "helps" else "tab:red")
        for ax in row:
            ax.set_xticks([])
            ax.set_yticks([])
    fig.suptitle("Most influential training images among the top removals (helps: removing it raises "
                 "the test loss)", fontsize=9)
    return ctx.figure(fig, "influential_images.png")


def _mislabel_panel(ax, run: dict, flipped: int, train: int, title: str, curvature: str) -> None:
    for key, label in (("self_influence", f"self-influence ({curvature})"), ("training_loss", "training loss")):
        shares = run[key]
        ax.plot([100 * float(s) for s in shares], [100 * v for v in shares.values()], marker="o", label=label)
    ax.plot([0, 100 * flipped / train, 50], [0, 100, 100], color="0.6", ls="--", lw=1, label="perfect ranking")
    ax.set_xlabel("training points inspected (%)")
    ax.set_ylabel("flipped labels found (%)")
    ax.set_title(title, fontsize=10)
    ax.legend(loc="lower right")


def mislabel_figure(ctx, mislabel: dict) -> str:
    """Share of the flipped labels found against the share of the training set inspected."""
    fig, axes = new_figure(size=(4.6, 3.6))
    _mislabel_panel(axes[0, 0], mislabel, mislabel["flipped"], mislabel["train"],
                    f"{mislabel['flipped']} of {mislabel['train']} labels flipped", "KFAC")
    return ctx.figure(fig, "mislabel_detection.png")


def lenet_mislabel_figure(ctx, lenet: dict) -> str:
    """The LeNet's mislabel detection, a panel per training length."""
    runs = lenet["runs"]
    fig, axes = new_figure(ncols=len(runs), size=(4.2, 3.6))
    for ax, (epochs, run) in zip(axes[0], runs.items()):
        _mislabel_panel(ax, run, lenet["flipped"], lenet["train"],
                        f"LeNet, {epochs} epochs: fits {100 * run['flipped_fitted']:.0f}% of the flipped", "EK-FAC")
    return ctx.figure(fig, "lenet_mislabel_detection.png")


def cnn_figure(ctx, cnn: dict) -> str:
    """The CNN check: predicted against actual, a row per test image, a panel per curvature at its
    best damping for that image."""
    curvatures = list(dict.fromkeys(r["curvature"] for r in cnn["images"][0]["rows"].values()))
    fig, axes = new_figure(nrows=len(cnn["images"]), ncols=len(curvatures), size=(3.6, 3.3))
    for ax_row, image in zip(axes, cnn["images"]):
        actual = image["actual"]
        for ax, curvature in zip(ax_row, curvatures):
            scored = [r for r in image["rows"].values() if r["curvature"] == curvature and r["pearson_r"] is not None]
            if not scored:
                ax.set_axis_off()
                continue
            row = max(scored, key=lambda r: r["pearson_r"])
            low, high = min(*row["predicted"], *actual), max(*row["predicted"], *actual)
            ax.plot([low, high], [low, high], color="0.6", lw=1, label="y = x")
            ax.scatter(actual, row["predicted"], s=12, alpha=0.7)
            ax.set_xlabel("actual change of the test loss")
            ax.set_ylabel("predicted")
            ax.set_title(f"image {image['test_index']}: {curvature}, damping {row['damping']:g}, r = "
                         f"{row['pearson_r']:.3f}", fontsize=8)
            ax.legend(loc="upper left", fontsize=7)
    fig.suptitle(f"CNN: the top {len(cnn['images'][0]['actual'])} removals of each test image, retrained "
                 "(each curvature at its best damping)", fontsize=9)
    return ctx.figure(fig, "cnn_predicted_vs_actual.png")


def report(config: dict, results: dict, figures: dict) -> str:
    sections = ["# Influence functions on MNIST (Koh & Liang 2017)"]
    if "logistic_regression" in results:
        sections.append(_logistic_section(config, results, figures))
    if "cnn" in results:
        sections.append(_cnn_section(config, results["cnn"], figures["cnn"]))
    if "mislabel" in results:
        sections.append(_mislabel_section(results["mislabel"], figures["mislabel"]))
    if "lenet_mislabel" in results:
        sections.append(_lenet_mislabel_section(results["lenet_mislabel"], figures["lenet_mislabel"]))
    return "\n\n".join(sections) + "\n"


def _logistic_section(config: dict, results: dict, figures: dict) -> str:
    lr = results["logistic_regression"]
    rows = [[index, f"{r['test_loss']:.3f}", len(r["actual"]), f"{r['pearson_r']:.4f}",
             "meets" if r["pearson_r"] >= 0.95 else "MISSES"] for index, r in lr["removals"].items()]
    table = markdown_table(["test image", "its loss", "removals", "Pearson r", "target r >= 0.95"], rows)
    return f"""## Logistic regression: predicted against actual loss changes

Multinomial logistic regression without intercept on {config['train']} MNIST training images,
L2 {config['l2']} on the mean loss (delta = {config['delta']:g} on the summed loss), trained by L-BFGS; test
accuracy {100 * lr['test_accuracy']:.2f}%. For each of the {config['test_points']} test images of highest loss, the
{config['top']} training points of largest predicted influence were each removed and the model retrained
(L-BFGS warm-started at the optimum, gradient tolerance {config['retrain_tol']:g} N). The prediction is
`grad l_test^T H^-1 grad l_n` with `H^-1` by conjugate gradients on exact Hessian-vector products.

{table}

![predicted vs actual]({figures['scatter']})

![influential images]({figures['images']})"""


def _cnn_section(config: dict, cnn: dict, figure: str) -> str:
    images = cnn["images"]

    def cell(image, key):
        r = image["rows"][key]["pearson_r"]
        return "not positive definite" if r is None else f"**{r:.3f}**" if r >= 0.85 else f"{r:.3f}"

    rows = [[r["curvature"], f"{r['damping']:g}", *(cell(image, key) for image in images), f"{r['seconds']:.1f}"]
            for key, r in images[0]["rows"].items()]
    table = markdown_table(["curvature", "damping (per example)",
                            *(f"r, image {image['test_index']}" for image in images), "seconds to predict"], rows)
    described = "; ".join(f"image {image['test_index']} (loss {image['test_loss']:.3f}; the retrained full data moved "
                          f"it by {image['baseline_drift']:.2g})" for image in images)
    return f"""## A small CNN: the non-convex case

A CNN with smooth activations on 14 x 14 average-pooled images (conv 6 - softplus - avg-pool -
conv 10 - softplus - avg-pool - dense; {cnn['weights']} weights, float64) on {config['cnn_train']} training images,
L2 {config['cnn_l2']:g} on the mean loss, trained by full-batch L-BFGS ({cnn['train_seconds']:.0f} s; final gradient
max-norm {cnn['gradient_max']:.2g} N); test accuracy {100 * cnn['test_accuracy']:.2f}% on {config['cnn_test']} test images.
For each of the {len(images)} test images of highest loss -- {described} -- the {len(images[0]['actual'])}
training points of largest predicted influence under the {cnn['selected_by']['curvature']} curvature (damping
{cnn['selected_by']['damping']:g}) were each removed and the network retrained by L-BFGS warm-started at the
optimum ({config['cnn_retrain_iterations']} iterations at most), the actual change measured against the full data
retrained from the optimum by the same budget; every curvature and damping is scored on those
removals (damping lambda per example: `H + N lambda I`; "seconds to predict" includes the
curvature's fit, shared by its dampings and test images). Pearson r (target r >= 0.85 in bold):

{table}

![CNN predicted vs actual]({figure})"""


def _mislabel_verdict(run: dict) -> str:
    """The target: at least 80% of the flipped labels in the top 10% of self-influence, above the loss."""
    top10 = run["self_influence"]["0.1"]
    return "meets" if top10 >= 0.8 and top10 > run["training_loss"]["0.1"] else "MISSES"


def _mislabel_section(mis: dict, figure: str) -> str:
    mrows = [[f"{100 * float(s):.0f}%", f"{100 * mis['self_influence'][s]:.1f}", f"{100 * mis['training_loss'][s]:.1f}"]
             for s in mis["self_influence"]]
    mtable = markdown_table(["inspected", "self-influence finds (%)", "training loss finds (%)"], mrows)
    top10 = mis["self_influence"]["0.1"]
    verdict = _mislabel_verdict(mis)
    return f"""## Mislabelled examples

{mis['flipped']} of {mis['train']} training labels flipped to another class; the retrained model fits
{100 * mis['train_accuracy_noisy']:.1f}% of the noisy labels. Training points ranked by self-influence
`grad l_n^T H^-1 grad l_n` (KFAC curvature of the one layer) and by training loss (the baseline):

{mtable}

Target: at least 80% of the flipped labels in the top 10% of self-influence, above the loss
ranking: **{verdict}** ({100 * top10:.1f}% against {100 * mis['training_loss']['0.1']:.1f}%).

![mislabel detection]({figure})"""


def _lenet_mislabel_section(lenet: dict, figure: str) -> str:
    rows = [[epochs, f"{100 * r['train_accuracy_noisy']:.1f}", f"{100 * r['flipped_fitted']:.1f}",
             *(f"{100 * r[key][s]:.1f}" for s in ("0.1", "0.2") for key in ("self_influence", "training_loss"))]
            for epochs, r in lenet["runs"].items()]
    table = markdown_table(["Adam epochs", "fits noisy labels (%)", "fits the flipped (%)",
                            "top 10%: self-influence", "top 10%: loss", "top 20%: self-influence", "top 20%: loss"],
                           rows)
    verdicts = ", ".join(f"{epochs} epochs **{_mislabel_verdict(r)}**" for epochs, r in lenet["runs"].items())
    return f"""## Mislabelled examples, LeNet (all-layer EK-FAC)

{lenet['flipped']} of {lenet['train']} labels flipped; a LeNet (no dropout, Adam lr 1e-3, batch 128)
trained on them for each length; training points ranked by self-influence with the all-layer
EK-FAC (prior precision 1) and by training loss. Shares of the flipped labels found (%):

{table}

Target (at least 80% in the top 10%, above the loss ranking): {verdicts}.

![LeNet mislabel detection]({figure})"""
