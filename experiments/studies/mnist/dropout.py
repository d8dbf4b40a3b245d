"""``mnist-dropout``: LeNet with MC dropout on MNIST -- accuracy, uncertainty measures, uncertain
digits and a rotated digit (course week 3)."""

from __future__ import annotations

import math

import numpy as np
import torch

from bayesdl.evaluation import (
    calibration_metrics,
    failure_metrics,
    mutual_information,
    predictive_entropy,
    variation_ratio,
)
from bayesdl.evaluation.plotting import new_figure
from bayesdl.inference import Posterior

from ...data import MNIST_MEAN, MNIST_STD
from ...io import markdown_table
from ...registry import RunContext, StudyResult
from .lab import MnistLab, accuracy


def _rotate(image: torch.Tensor, angle: float) -> torch.Tensor:
    from torchvision.transforms.functional import rotate

    raw = image * MNIST_STD + MNIST_MEAN
    turned = rotate(raw, angle, fill=0.0)
    return (turned - MNIST_MEAN) / MNIST_STD


def _digit_panel(ctx, title, images, mc_labels, probs, indices, name):
    """Each digit with the histogram of the labels its MC passes predicted."""
    cols = 6
    rows = math.ceil(len(indices) / cols)
    fig, axes = new_figure(ncols=cols, nrows=2 * rows, size=(1.9, 1.6))
    for k, index in enumerate(indices):
        r, c = 2 * (k // cols), k % cols
        axes[r, c].imshow((images[index, 0] * MNIST_STD + MNIST_MEAN).numpy(), cmap="gray_r")
        axes[r, c].set_xticks([])
        axes[r, c].set_yticks([])
        axes[r, c].set_title(f"#{int(index)} pred {int(probs[index].argmax())}", fontsize="x-small")
        counts = torch.bincount(mc_labels[:, index], minlength=10)
        axes[r + 1, c].bar(range(10), counts.numpy(), color="tab:blue")
        axes[r + 1, c].set_xticks(range(10))
        axes[r + 1, c].tick_params(labelsize=6)
        axes[r + 1, c].set_ylim(0, mc_labels.shape[0])
        axes[r + 1, c].set_xlabel("predicted label", fontsize=6, labelpad=1)
        if c == 0:
            axes[r + 1, c].set_ylabel("MC passes", fontsize=6)
    for k in range(len(indices), rows * cols):
        axes[2 * (k // cols), k % cols].axis("off")
        axes[2 * (k // cols) + 1, k % cols].axis("off")
    fig.suptitle(title)
    return ctx.figure(fig, name)


def _rotation_figure(ctx, lab: MnistLab, posterior: Posterior, image: torch.Tensor, label: int):
    angles = np.linspace(0, 100, 11)
    batch = torch.stack([_rotate(image, float(a)) for a in angles])
    torch.manual_seed(ctx.seed)
    logits = posterior.predictive_outputs(batch, num_samples=lab.s.samples).cpu()  # [T, A, C]
    probs = torch.softmax(logits, -1)
    predicted = probs.mean(0).argmax(-1)
    classes = sorted(set(predicted.tolist()) | {label})
    fig, axes = new_figure(ncols=1, nrows=3, size=(9.0, 2.6))
    strip = torch.cat([b[0] * MNIST_STD + MNIST_MEAN for b in batch], dim=1)
    axes[0, 0].imshow(strip.numpy(), cmap="gray_r")
    axes[0, 0].set_xticks(14 + 28 * np.arange(len(angles)), [f"{a:.0f} deg" for a in angles], fontsize="x-small")
    axes[0, 0].set_yticks([])
    axes[0, 0].set_title(f"digit {label} rotated; predicted labels (MC mean): {predicted.tolist()}")
    colors = dict(zip(classes, ("tab:blue", "tab:orange", "tab:green", "tab:red", "tab:purple", "tab:brown")))
    for ax, values, name in ((axes[1, 0], logits, "softmax input (logit)"), (axes[2, 0], probs, "softmax output")):
        for c in classes:
            jitter = np.random.default_rng(c).normal(0, 0.6, size=values.shape[0])
            for a, angle in enumerate(angles):
                ax.scatter(angle + jitter, values[:, a, c].numpy(), s=3, alpha=0.35, color=colors.get(c, "gray"),
                           label=f"class {c}" if a == 0 else None)
        ax.set_ylabel(name)
        ax.legend(fontsize="x-small", markerscale=3, loc="best")
    axes[2, 0].set_xlabel(f"rotation angle (deg); {lab.s.samples} stochastic passes per angle")
    return ctx.figure(fig, "rotated_digit.png"), predicted.tolist()




def _measures(mc: torch.Tensor) -> dict[str, torch.Tensor]:
    return {"variation_ratio": variation_ratio(mc), "predictive_entropy": predictive_entropy(mc),
            "mutual_information": mutual_information(mc)}


def _uncertainty(measures: dict, wrong: torch.Tensor) -> dict:
    """Each measure's mean over correct and wrong digits, and its AUROC for the errors."""
    uncertainty = {}
    for name, values in measures.items():
        uncertainty[f"mean_{name}_correct"] = float(values[~wrong].mean())
        uncertainty[f"mean_{name}_wrong"] = float(values[wrong].mean()) if bool(wrong.any()) else float("nan")
        if bool(wrong.any()) and not bool(wrong.all()):
            uncertainty[f"auroc_errors_{name}"] = failure_metrics(-values, ~wrong)["auroc"]
    uncertainty["digits_with_nonzero_variation_ratio"] = int((measures["variation_ratio"] > 0).sum())
    return uncertainty


def _errors(det: torch.Tensor, mc: torch.Tensor, y: torch.Tensor) -> dict:
    """Test error, NLL and ECE of the deterministic network and of MC dropout (T/2 and T passes)."""
    t_full, t_half = mc.shape[0], mc.shape[0] // 2
    half, mc_mean = mc[:t_half].mean(0), mc.mean(0)

    def nll_ece(probs):
        return {k: v for k, v in calibration_metrics(probs, y).items() if k in ("nll", "ece")}

    return {"deterministic": {"accuracy": accuracy(det, y), "error": 1 - accuracy(det, y), **nll_ece(det)},
            "mc_dropout": {f"accuracy_t{t_half}": accuracy(half, y), f"error_t{t_half}": 1 - accuracy(half, y),
                           f"accuracy_t{t_full}": accuracy(mc_mean, y), f"error_t{t_full}": 1 - accuracy(mc_mean, y),
                           **nll_ece(mc_mean)}}


def _histograms(ctx, measures: dict, wrong: torch.Tensor) -> str:
    """Each measure's histogram over the correct and the wrong test digits."""
    fig, axes = new_figure(ncols=3, size=(3.6, 2.8))
    for ax, (name, values) in zip(axes[0], measures.items()):
        bins = np.linspace(0, float(values.max()) + 1e-6, 30)
        ax.hist(values[~wrong].numpy(), bins=bins, alpha=0.6, density=True, label="correct")
        if bool(wrong.any()):
            ax.hist(values[wrong].numpy(), bins=bins, alpha=0.6, density=True, label="wrong")
        ax.set_yscale("log")
        ax.set_title(name.replace("_", " "), fontsize="small")
        ax.set_xlabel("variation ratio" if name == "variation_ratio" else f"{name.replace('_', ' ')} (nats)")
        ax.set_ylabel("density (log scale)")
        ax.legend(title="test digits", fontsize="x-small", title_fontsize="x-small")
    return ctx.figure(fig, "uncertainty_histograms.png")


def run(ctx: RunContext) -> StudyResult:
    lab = MnistLab(ctx)
    x, y = lab.splits["test"].tensors
    posterior = lab.network("dropout")
    logits, _ = lab.deterministic(posterior, x)
    mc = lab.samples(posterior, x)
    mc_mean, t_full = mc.mean(0), mc.shape[0]
    measures, wrong = _measures(mc), mc_mean.argmax(-1) != y
    results = {**_errors(torch.softmax(logits, -1), mc, y), "uncertainty": _uncertainty(measures, wrong)}
    # variation ratio first, entropy breaks ties
    order = torch.argsort(measures["variation_ratio"] * 10 + measures["predictive_entropy"], descending=True)
    mc_labels = mc.argmax(-1)
    figures = {
        "most": _digit_panel(ctx, f"Most uncertain test digits (variation ratio, T = {t_full})", x, mc_labels,
                             mc_mean, order[:12].tolist(), "most_uncertain.png"),
        "least": _digit_panel(ctx, "Least uncertain test digits", x, mc_labels, mc_mean,
                              order.flip(0)[:12].tolist(), "least_uncertain.png")}
    ones = (y == 1).nonzero()[:, 0]
    figures["rotation"], rotated_labels = _rotation_figure(ctx, lab, posterior, x[int(ones[0])], 1)
    results["rotated_digit"] = {"predicted_labels": rotated_labels}
    figures["histograms"] = _histograms(ctx, measures, wrong)
    return StudyResult(config=lab.config(mc_samples=[t_full // 2, t_full]), results=results,
                       report=_report(results, list(measures), t_full, figures))


def _report(results: dict, measures: list[str], t_full: int, figures: dict) -> str:
    t_half = t_full // 2
    d, m, uncertainty = results["deterministic"], results["mc_dropout"], results["uncertainty"]
    rotated_labels = results["rotated_digit"]["predicted_labels"]
    mc_better = m[f"error_t{t_full}"] <= d["error"]
    return f"""# MC dropout on MNIST (LeNet "all", p = 0.5)

| prediction | test error (%) | NLL | ECE (%) |
|---|---|---|---|
| deterministic (dropout off) | {100 * d['error']:.2f} | {d['nll']:.4f} | {100 * d['ece']:.2f} |
| MC dropout, T = {t_half} | {100 * m[f'error_t{t_half}']:.2f} | | |
| MC dropout, T = {t_full} | {100 * m[f'error_t{t_full}']:.2f} | {m['nll']:.4f} | {100 * m['ece']:.2f} |

MC averaging {'does not increase' if mc_better else 'increases'} the test error
({100 * m[f'error_t{t_full}']:.2f}% vs {100 * d['error']:.2f}%); full-run target: at most 0.6% with T = 100
(Gal & Ghahramani report about 0.5% for lenet-all).

## Uncertainty of every test digit
Mean over correctly / wrongly classified digits, and how well each measure ranks the errors
(AUROC, errors as positives):

{markdown_table(["measure", "correct", "wrong", "AUROC for errors"],
                [[k.replace("_", " "), uncertainty[f"mean_{k}_correct"], uncertainty[f"mean_{k}_wrong"],
                  uncertainty.get(f"auroc_errors_{k}", float("nan"))] for k in measures], ".4f")}

![]({figures['histograms']})

## Most and least uncertain digits
Each digit with the histogram of the labels predicted by its {t_full} MC passes.

![]({figures['most']})

![]({figures['least']})

## A rotated digit
Softmax inputs and outputs of {t_full} stochastic passes while a "1" turns; the predicted
labels go {rotated_labels}. Where the prediction changes, the passes spread out: the
network is uncertain about digits it has never seen in that orientation.

![]({figures['rotation']})
"""
