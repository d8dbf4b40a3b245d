# ---
# jupyter:
#   jupytext:
#     text_representation:
#       extension: .py
#       format_name: percent
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [markdown]
# # Week 3 -- Applications of uncertainty: MC dropout, failure prediction, OOD detection
#
# The third practical session with `bayesdl`'s public API, on MNIST:
#
# - **I.** LeNet with MC dropout: the most and least uncertain test digits, and the
#   histogram of the labels the passes predict for single examples;
# - **II.** failure prediction: is this prediction wrong? MCP, MC dropout and ConfidNet;
# - **III.** out-of-distribution detection, MNIST against Kuzushiji-MNIST: MCP, MC dropout
#   and ODIN.
#
# It reads MNIST and KMNIST from the torchvision root `BAYESDL_DATA` (nothing is
# downloaded). `BAYESDL_NOTEBOOK_SMALL=1` runs everything at a tiny size (CI does: 2,000
# training images, one epoch); `BAYESDL_NOTEBOOK_FIGURES=DIR` says where the figures are
# saved (default `figures/week3`). At full size it trains LeNet for 20 epochs on 55,000 images and
# ConfidNet for 100 epochs: budget tens of minutes on a CPU.

# %%
import os
from pathlib import Path

import matplotlib.pyplot as plt
import torch
from torch.utils.data import DataLoader

from bayesdl.evaluation import (
    failure_metrics,
    max_probability,
    negative_entropy,
    odin_scores,
    ood_metrics,
    plot_precision_recall,
    plot_reliability_diagram,
    reliability_bins,
    tune_odin,
    variation_ratio,
)
from bayesdl.experiments.data import MNIST_STD, load_images, mnist_splits
from bayesdl.inference import approximate, fit_confidnet
from bayesdl.models import BNN, LeNet

SMALL = os.environ.get("BAYESDL_NOTEBOOK_SMALL") == "1"
FIGURES = Path(os.environ.get("BAYESDL_NOTEBOOK_FIGURES", "figures/week3"))
FIGURES.mkdir(parents=True, exist_ok=True)
ROOT = os.environ["BAYESDL_DATA"]
EPOCHS = 1 if SMALL else 20
T = 10 if SMALL else 100  # MC dropout passes
torch.manual_seed(0)

splits = mnist_splits(ROOT, seed=0, val_size=500 if SMALL else 5000, train_limit=2000 if SMALL else None,
                      test_limit=1000 if SMALL else None)
x_train, y_train = splits["train"].tensors
x_val, y_val = splits["val"].tensors
x_test, y_test = splits["test"].tensors
print({name: len(split) for name, split in splits.items()})

# %% [markdown]
# ## I. MC dropout on MNIST
#
# LeNet with dropout (p = 0.5) before its last layer, trained as variational inference with
# Bernoulli masks (`"dropout"`); `predict` runs `T` passes with the masks on and returns
# `probs` `[T, N, 10]`.

# %%
model = BNN(LeNet(dropout="last", p=0.5), prior_scale=1.0, likelihood="categorical")
posterior = approximate("dropout", model, DataLoader(splits["train"], batch_size=128, shuffle=True),
                        epochs=EPOCHS, lr=1e-3, seed=0, progress=False)
probs = posterior.predict(x_test, num_samples=T).probs  # [T, N, 10]
mean_probs = probs.mean(0)
correct = mean_probs.argmax(-1) == y_test
print(f"test accuracy (MC mean of {T} passes): {correct.float().mean():.4f}")

# %% [markdown]
# ### I.1 The most confident and the most uncertain digits
#
# Ranked by the variation ratio $1 - f_{c^*}/T$, the share of passes that disagree with the
# modal label (`predictive_entropy` and `mutual_information` rank them much the same way).

# %%
vr = variation_ratio(probs)
order = torch.argsort(vr + 1e-3 * torch.rand(len(vr)))  # ties broken at random
fig, axes = plt.subplots(2, 8, figsize=(12, 3.6), layout="constrained")
for row, (indices, name) in enumerate(((order[:8], "confident"), (order.flip(0)[:8], "uncertain"))):
    for ax, i in zip(axes[row], indices):
        ax.imshow(x_test[i, 0], cmap="gray_r")
        ax.set_title(f"{name}: pred {int(mean_probs[i].argmax())}\nVR {vr[i]:.2f}", fontsize="small")
        ax.axis("off")
fig.savefig(FIGURES / "i1_confident_uncertain.png", dpi=100)

# %% [markdown]
# Single examples: the histogram of the label each of the `T` passes predicts -- a Dirac for
# a digit the network is sure of, flat for an ambiguous one, and (where there is one) a
# misclassified digit.

# %%
examples = {"most confident": order[0], "most uncertain": order[-1]}
if (~correct).any():
    examples["misclassified"] = torch.nonzero(~correct)[0, 0]
fig, axes = plt.subplots(2, len(examples), figsize=(3.5 * len(examples), 5.5), layout="constrained")
for col, (name, i) in enumerate(examples.items()):
    axes[0, col].imshow(x_test[i, 0], cmap="gray_r")
    axes[0, col].set_title(f"{name} (label {int(y_test[i])})")
    axes[0, col].axis("off")
    axes[1, col].bar(range(10), torch.bincount(probs[:, i].argmax(-1), minlength=10))
    axes[1, col].set(xticks=range(10), ylim=(0, T), xlabel="predicted label", ylabel=f"passes (of {T})")
fig.savefig(FIGURES / "i1_histograms.png", dpi=100)

# %% [markdown]
# Calibration of the MC dropout predictive, as a reliability diagram (accuracy against
# confidence per bin; the title carries the ECE):

# %%
plot_reliability_diagram(reliability_bins(mean_probs, y_test, n_bins=10), title="MC dropout, MNIST test") \
    .savefig(FIGURES / "reliability.png", dpi=100, bbox_inches="tight")

# %% [markdown]
# ## II. Failure prediction
#
# A confidence score should rank the wrong predictions below the right ones. Three scores
# (higher = more confident): MCP, the maximum softmax probability of the deterministic network
# (dropout off, `point_outputs`); MC dropout's negative predictive entropy; and ConfidNet
# (Corbiere et al. 2019), a small MLP on the frozen network's penultimate features trained to
# regress the true-class probability (TCP) with an MSE loss: `fit_confidnet` draws its targets
# from stochastic passes of the MC-dropout network over the training set, as the authors do, and
# keeps the epoch with the best AUPR-error on the validation split.

# %%
confidnet = fit_confidnet(posterior, splits["train"], splits["val"], epochs=2 if SMALL else 100,
                          passes=2 if SMALL else 10, progress=False)

# %% [markdown]
# ### II.1-II.2 AUPR-error of each score
#
# `failure_metrics(confidence, correct)` gives the AUPR with the errors as positives
# (`aupr_error`, the paper's main metric), AUPR-success, AUROC and the FPR at 95% TPR; the
# figure shows the precision-recall curves of the errors (ranked by `-confidence`).

# %%
logits_test, _ = posterior.point_features(x_test)
correct_point = logits_test.argmax(-1) == y_test
with torch.no_grad():
    confidence = {"MCP": max_probability(torch.softmax(logits_test, -1)),
                  "MC dropout": negative_entropy(probs),
                  "ConfidNet": confidnet.confidence(x_test)}
# MC dropout predicts with the MC mean; MCP and ConfidNet judge the deterministic network's predictions
is_correct = {"MCP": correct_point, "MC dropout": correct, "ConfidNet": correct_point}
for name, score in confidence.items():
    print(f"{name:11s}", {k: round(v, 4) for k, v in failure_metrics(score, is_correct[name]).items()})
curves = {name: (-score, ~is_correct[name]) for name, score in confidence.items()}
plot_precision_recall(curves, title="Failure prediction: errors as positives", positive="errors") \
    .savefig(FIGURES / "ii_failure_precision_recall.png", dpi=100, bbox_inches="tight")

# %% [markdown]
# ## III. Out-of-distribution detection
#
# Kuzushiji-MNIST digits (Japanese characters) are images the network has never seen the like
# of. A score separates them from MNIST test digits if it is higher on MNIST. ODIN (Liang et
# al. 2018) divides the logits by a temperature and nudges the input against the gradient of
# the loss; `tune_odin` picks the temperature and the step on a small tuning split (MNIST
# validation images and KMNIST images kept out of the evaluation).

# %%
x_ood = load_images("kmnist", ROOT, train=False, limit=1200 if SMALL else None).tensors[0]
x_tune, x_ood = x_ood[:200], x_ood[200:]
tuning = tune_odin(posterior.point_outputs, x_val[:200], x_tune, input_scale=MNIST_STD,
                   temperatures=(1.0, 1000.0) if SMALL else (1.0, 10.0, 100.0, 1000.0),
                   epsilons=(0.0, 0.002) if SMALL else (0.0, 0.0005, 0.001, 0.002, 0.004))
print("ODIN:", {k: tuning[k] for k in ("temperature", "epsilon")})


def ood_scores(x):
    with torch.no_grad():
        mcp = max_probability(torch.softmax(posterior.point_outputs(x), -1))
        mc_dropout = negative_entropy(posterior.predict(x, num_samples=T).probs)
    odin = odin_scores(posterior.point_outputs, x, tuning["temperature"], tuning["epsilon"], MNIST_STD)
    return {"MCP": mcp, "MC dropout (entropy)": mc_dropout, "ODIN": odin}


score_in, score_out = ood_scores(x_test), ood_scores(x_ood)
for name in score_in:
    print(f"{name:21s}", {k: round(v, 4) for k, v in ood_metrics(score_in[name], score_out[name]).items()})

# %% [markdown]
# ### III.1 Precision-recall curves of OOD detection (KMNIST images as positives)

# %%
is_ood = torch.cat([torch.zeros(len(x_test), dtype=torch.bool), torch.ones(len(x_ood), dtype=torch.bool)])
curves = {name: (-torch.cat([score_in[name], score_out[name]]), is_ood) for name in score_in}
plot_precision_recall(curves, title="MNIST against Kuzushiji-MNIST", positive="KMNIST images") \
    .savefig(FIGURES / "iii_ood_precision_recall.png", dpi=100, bbox_inches="tight")
