"""``failure``: failure prediction on MNIST -- MCP, MC dropout, ConfidNet and the TCP oracle judged
by AUPR-error (course week 3; Corbiere et al. 2019), on the course's LeNet or the authors' setup."""

from __future__ import annotations

import numpy as np
import torch
from matplotlib.ticker import MaxNLocator

from bayesdl.evaluation import aupr_error, failure_metrics, negative_entropy, paired_bootstrap_difference
from bayesdl.evaluation.plotting import new_figure, plot_precision_recall
from bayesdl.inference import fit_confidnet

from ...io import markdown_table
from ...registry import RunContext, StudyResult
from ...training import cache_folder, config_digest
from .lab import MnistLab

#: ConfidNet's schedule on each network: (epochs, stochastic passes drawn). Corbiere et al.
#: train it up to 500 epochs with Adam at 1e-4 (their confs/selfconfid-classif.yaml); the
#: corbiere head takes 50 passes of its 128 features, about the memory of LeNet's 10 of 500.
CONFIDNET = {"lenet": (200, 10), "corbiere": (500, 50)}
#: Corbiere et al. (2019), Table 1, MNIST SmallConvNet: AUPR-error and FPR at 95% TPR (%)
CORBIERE_TABLE_1 = {"mcp": (35.05, 5.56), "mc_dropout": (38.50, 5.26), "confidnet": (45.89, 3.33)}
FAILURE_SCORES = ("mcp", "mc_dropout", "confidnet", "tcp_oracle")
_LEARNED = ("mcp", "mc_dropout", "confidnet")
_NETWORK_NAMES = {"lenet": "the course's LeNet", "corbiere": "Corbiere et al.'s SmallConvNet and training"}


def _confidnet(ctx, lab: MnistLab, posterior, seed: int, epochs: int, passes: int):
    """ConfidNet on the frozen classifier of ``seed`` (cached): a fitted
    :class:`bayesdl.inference.ConfidNet`."""
    recipe = lab.recipe("dropout", seed)
    schedule = config_digest({"epochs": epochs, "passes": passes, "lr": 1e-4, "batch": 128}, length=8)
    return fit_confidnet(posterior, lab.splits["train"], lab.splits["val"], epochs=epochs, passes=passes,
                         seed=seed, checkpoint=cache_folder(ctx) / f"{recipe.key()}-confidnet-{schedule}.pt",
                         device=ctx.device, progress=ctx.progress)


def _gaps(scores: dict, n_resamples: int, seed: int) -> dict:
    """AUPR-error of ConfidNet minus MCP's and MC dropout's, with 95% paired bootstrap intervals
    over the test images: with a few dozen errors in 10000 test images, AUPR-error moves by
    points when a handful of errors change rank; the interval says which differences the data
    can support."""
    reference = tuple(np.asarray(a) for a in scores["confidnet"])
    return {name: tuple(paired_bootstrap_difference(aupr_error, reference, tuple(np.asarray(a) for a in scores[name]),
                                                    n_resamples=n_resamples, seed=seed))
            for name in ("mcp", "mc_dropout")}


def _failure_seed(ctx: RunContext, lab: MnistLab, seed: int, confidnet_epochs: int, passes: int) -> dict:
    """Failure prediction with the MC-dropout classifier of ``seed``: every confidence's metrics,
    ConfidNet's history, the bootstrap gaps and the scores (for the figure)."""
    posterior = lab.network("dropout", seed)
    x, y = lab.splits["test"].tensors
    logits, features = lab.deterministic(posterior, x)
    probs = torch.softmax(logits, -1)
    correct = probs.argmax(-1) == y
    fitted = _confidnet(ctx, lab, posterior, seed, confidnet_epochs, passes)
    history = fitted.history
    with torch.no_grad():
        confidnet = fitted.head(features.to(ctx.device)).cpu()
    mc = lab.samples(posterior, x)
    mc_correct = mc.mean(0).argmax(-1) == y
    # Each confidence is judged on its own predictions, as in Corbiere et al.'s code: the
    # deterministic network for MCP, ConfidNet and the TCP oracle, the MC average for MC dropout.
    scores = {"mcp": (probs.max(-1).values, correct),
              "mc_dropout": (negative_entropy(mc), mc_correct),
              "confidnet": (confidnet, correct),
              "tcp_oracle": (probs.gather(1, y[:, None])[:, 0], correct)}
    results = {name: {**failure_metrics(confidence, ok), "errors": int((~ok).sum()),
                      "accuracy": float(ok.double().mean())} for name, (confidence, ok) in scores.items()}
    results["confidnet"]["best_epoch"] = history["best_epoch"]
    results["confidnet"]["train_seconds"] = round(history["seconds"], 1)
    results["mc_dropout"]["classifier_train_seconds"] = round(posterior.history.seconds, 1)
    gaps = _gaps({k: (c.numpy(), ok.numpy()) for k, (c, ok) in scores.items()},
                 n_resamples=200 if ctx.quick else 2000, seed=seed)
    for name, (value, low, high) in gaps.items():
        results["confidnet"].update({f"aupr_error_minus_{name}": value, f"aupr_error_minus_{name}_ci_low": low,
                                     f"aupr_error_minus_{name}_ci_high": high})
    return {"results": results, "history": history, "gaps": gaps, "scores": scores}


def _summary(per_seed: dict) -> dict:
    """Mean and standard deviation (ddof 1; 0 for one seed) over the seeds of every metric."""
    def sd(values):
        return np.std(values, ddof=1) if len(values) > 1 else 0.0

    return {stat: {name: {metric: float(fn([r[name][metric] for r in per_seed.values()]))
                          for metric in ("aupr_error", "aupr_success", "auroc", "fpr_at_95_tpr", "errors")}
                   for name in FAILURE_SCORES}
            for stat, fn in (("mean", np.mean), ("sd", sd))}


def run(ctx: RunContext) -> StudyResult:
    options = ctx.options
    networks = options.networks
    seeds = [ctx.seed + k for k in range(options.seeds)]
    results, configs, runs = {}, {}, {}
    for network in networks:
        lab = MnistLab(ctx, network)
        epochs, passes = (3, 2) if ctx.quick else CONFIDNET[network]
        epochs = epochs if options.confidnet_epochs is None else options.confidnet_epochs
        passes = passes if options.confidnet_passes is None else options.confidnet_passes
        runs[network] = {seed: _failure_seed(ctx, lab, seed, epochs, passes) for seed in seeds}
        per_seed = {f"seed{seed}": run["results"] for seed, run in runs[network].items()}
        results[network] = {**per_seed, **_summary(per_seed)}
        configs[network] = lab.config(confidnet_epochs=epochs, confidnet_passes=passes, seeds=seeds,
                                      test_errors={f"seed{s}": r["results"]["mcp"]["errors"]
                                                   for s, r in runs[network].items()})
    figure = _failure_figure(ctx, lab, runs)
    report = _report(lab.label, networks, seeds, results, runs, configs, figure)
    return StudyResult(config={"networks": configs, "seeds": seeds}, results=results, report=report)


def _failure_figure(ctx: RunContext, lab: MnistLab, runs: dict) -> str:
    """Per network: the precision-recall curves of the first seed, ConfidNet's validation curves."""
    fig, axes = new_figure(nrows=len(runs), ncols=2, size=(4.6, 3.8))
    for row, (network, by_seed) in enumerate(runs.items()):
        first = next(iter(by_seed))
        scores = by_seed[first]["scores"]
        plot_precision_recall({lab.label(k): (-c, ~ok) for k, (c, ok) in scores.items()}, ax=axes[row, 0],
                              title=f"{network}, seed {first}: errors as positives,\nranked by low confidence",
                              positive="errors")
        for seed, run in by_seed.items():
            history = run["history"]
            line, = axes[row, 1].plot(range(1, len(history["val_aupr_error"]) + 1), history["val_aupr_error"],
                                      label=f"seed {seed}")
            axes[row, 1].axvline(history["best_epoch"], color=line.get_color(), linestyle=":")
        axes[row, 1].set_xlabel("ConfidNet epoch (dotted: the one kept)")
        axes[row, 1].xaxis.set_major_locator(MaxNLocator(integer=True))
        axes[row, 1].set_ylabel("validation AUPR-error")
        axes[row, 1].set_title(f"{network}: ConfidNet model selection")
        axes[row, 1].legend(fontsize="small")
    return ctx.figure(fig, "failure_pr_curves.png")


def _cell(results, seeds, network, name, metric) -> str:
    """A metric in % of one network's confidence: mean +- sd over the seeds (or one seed's)."""
    mean = 100 * results[network]["mean"][name][metric]
    return f"{mean:.2f} +- {100 * results[network]['sd'][name][metric]:.2f}" if len(seeds) > 1 else f"{mean:.2f}"


def _network_section(label, network, seeds, results, runs, config) -> str:
    """One network's section: its setup, the table, the ranking, the seeds and the bootstrap gaps."""
    many = len(seeds) > 1

    def cell(name, metric):
        return _cell(results, seeds, network, name, metric)

    rows = [[label(k), cell(k, "aupr_error"), cell(k, "aupr_success"), cell(k, "auroc"), cell(k, "fpr_at_95_tpr"),
             f"{results[network]['mean'][k]['errors']:.1f}"] for k in FAILURE_SCORES]
    ranking = sorted(_LEARNED, key=lambda k: results[network]["mean"][k]["aupr_error"], reverse=True)
    per_seed = [[f"seed {s}"] + [100 * results[network][f"seed{s}"][k]["aupr_error"] for k in _LEARNED]
                + [results[network][f"seed{s}"]["mcp"]["errors"],
                   results[network][f"seed{s}"]["confidnet"]["best_epoch"],
                   results[network][f"seed{s}"]["mc_dropout"]["classifier_train_seconds"],
                   results[network][f"seed{s}"]["confidnet"]["train_seconds"]] for s in seeds]
    gap_lines = "\n".join(
        f"- seed {s}, ConfidNet minus {label(name)}: {100 * value:+.2f} points (95% interval "
        f"{100 * low:+.2f} to {100 * high:+.2f}; "
        + ("the interval excludes 0" if low > 0 or high < 0 else "the interval includes 0") + ")"
        for s, run in runs[network].items() for name, (value, low, high) in run["gaps"].items())
    return f"""## {network}: {_NETWORK_NAMES[network]}

{config['architecture']}; {config['optimizer']}; epochs: {config['epochs']}; {config['train_size']} training and
{config['val_size']} validation images. ConfidNet: {config['confidnet_epochs']} epochs (Adam, lr 1e-4, batch 128) on
{config['confidnet_passes']} stochastic passes of the classifier drawn once and cycled.
{'Mean +- standard deviation over the seeds ' + ', '.join(map(str, seeds)) if many else 'Seed ' + str(seeds[0])} (%):

{markdown_table(["confidence", "AUPR-error", "AUPR-success", "AUROC", "FPR @ 95% TPR", "errors"], rows)}

Ranking by mean AUPR-error: {' > '.join(label(k) for k in ranking)} (the course report: ConfidNet > MCP > MC
dropout; Corbiere et al.'s table: ConfidNet > MC dropout > MCP).

{markdown_table(["seed"] + [f"AUPR-error {label(k)}" for k in _LEARNED]
                + ["errors", "ConfidNet epoch kept", "classifier training (s)", "ConfidNet (s)"], per_seed, ".2f")}

AUPR-error differences, paired bootstrap over the test images:

{gap_lines}

"""


def _report(label, networks, seeds, results, runs, configs, figure) -> str:
    """The Markdown report: against the paper, then per network its table, seeds and gaps."""

    def cell(network, name, metric):
        return _cell(results, seeds, network, name, metric)

    sections = [_network_section(label, n, seeds, results, runs, configs[n]) for n in networks]
    paper = "\n".join(f"| {label(k)} | {a:.2f} | {f:.2f} | "
                       + " | ".join(cell(n, k, "aupr_error") + " / " + cell(n, k, "fpr_at_95_tpr") for n in networks)
                       + " |" for k, (a, f) in CORBIERE_TABLE_1.items())
    side = f"""| confidence | paper AUPR-error | paper FPR @ 95% | {' | '.join(f'{n}: AUPR-error / FPR @ 95%' for n in networks)} |
|---|---|---|{'---|' * len(networks)}
{paper}"""
    target = ""
    if "corbiere" in networks:
        target += (
            "\n\nThe corbiere setup follows the authors' public code (valeoai/ConfidNet: confs/exp_mnist.yaml, "
            "selfconfid-classif.yaml, small_convnet_mnist*.py) except: (1) the classifier is bayesdl's MC-dropout "
            "posterior (dropout guide), its weight decay the Gaussian prior whose objective term is that decay and "
            "SGD at lr / N on the summed objective -- plain PyTorch's steps exactly (tests/test_recipes.py); "
            f"(2) ConfidNet trains on {configs['corbiere']['confidnet_passes']} stochastic passes drawn once and cycled, "
            "not fresh masks every epoch; (3) the validation split is a random 10% drawn by the run's seed "
            "(one split for all the seeds of a run); (4) their second phase (fine-tuning a cloned encoder with "
            "dropout off) is not run: their published ConfidNet configuration is the first phase only.")
        mean = results["corbiere"]["mean"]
        met = mean["confidnet"]["aupr_error"] > max(mean["mcp"]["aupr_error"], mean["mc_dropout"]["aupr_error"])
        target += (f"\n\nOn the authors' setup ConfidNet's mean AUPR-error is {100 * mean['confidnet']['aupr_error']:.2f}, "
                  f"against MCP {100 * mean['mcp']['aupr_error']:.2f} and MC dropout "
                  f"{100 * mean['mc_dropout']['aupr_error']:.2f}: the paper's ordering (ConfidNet above both) is "
                  + ("reproduced on the mean (whether a seed's gap exceeds the test set's noise: the bootstrap intervals "
                     "below)." if met else "**not** reproduced -- reported as measured."))
    return f"""# Failure prediction on MNIST

Each confidence is judged on the errors of its own predictions (the deterministic network for
MCP, ConfidNet and the TCP oracle; the MC average of {configs[networks[0]]['posterior_samples']} passes for MC dropout,
whose confidence is minus the predictive entropy, as in Corbiere et al.'s code). ConfidNet
regresses the true-class probability from the frozen classifier's features at the input of its
last layer (MSE); as in the authors' code it trains on the classifier's stochastic passes
(dropout on), and the epoch is chosen by validation AUPR-error on the deterministic features
used at test time. The TCP oracle, which knows the label, is the upper bound.

Against Corbiere et al. (2019, Table 1, MNIST SmallConvNet):

{side}{target}

{''.join(sections)}
![]({figure})
"""
