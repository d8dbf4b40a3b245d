"""``calibration``: reliability diagrams, ECE, NLL and Brier of every method on MNIST, before and
after temperature scaling (course week 3; Guo et al. 2017), and conformal prediction sets with
guaranteed coverage on top of every method's predictive (:mod:`.conformal`)."""

from __future__ import annotations

import torch

from bayesdl.evaluation import calibration_metrics, fit_temperature, reliability_bins
from bayesdl.evaluation.plotting import new_figure, plot_reliability_diagram

from ...io import markdown_table
from ...registry import RunContext, StudyResult
from .conformal import conformal_figure, conformal_report, conformal_results
from .lab import (
    SWAG_COLLECTIONS,
    SWAG_LR,
    SWAG_RANK,
    MnistLab,
    against_the_ensemble,
    at_the_ensemble_cost,
    sgmcmc_description,
)

#: the rows of the study: row name (in metrics.json) -> the lab's method spec. A new registered
#: method is one more line (after its spec in lab.specs, if it needs options of its own).
ROWS = {"map": "map", "mc_dropout": "dropout", "mean_field": "mean_field", "laplace": "laplace",
        "deep_ensemble": "deep_ensemble", "multiswag": "multiswag", "sghmc": "sghmc", "csghmc": "csgmcmc"}
#: the SG-MCMC rows, held against the deep ensemble at its training cost
SAMPLERS = ("csghmc", "sghmc")


def _calibrate(lab: MnistLab, posterior) -> tuple[dict, object, object, torch.Tensor]:
    """The row's metrics before and after temperature scaling, its reliability bins, and its
    test predictive ``[N, C]``."""
    x_val, y_val = lab.splits["val"].tensors
    x, y = lab.splits["test"].tensors
    draws = 1 if posterior.is_point_mass else lab.s.samples
    val = lab.samples(posterior, x_val, draws).mean(0)
    test = lab.samples(posterior, x, draws).mean(0)
    temperature = fit_temperature(val.clamp_min(1e-12).log(), y_val)
    scaled = torch.softmax(test.clamp_min(1e-12).log() / temperature, -1)
    m0, m1 = calibration_metrics(test, y), calibration_metrics(scaled, y)
    metrics = {**m0, "temperature": temperature, **{f"{k}_after": v for k, v in m1.items()}}
    return metrics, reliability_bins(test, y), reliability_bins(scaled, y), test


def _diagrams(ctx, lab: MnistLab, results: dict, before: dict, after: dict) -> str:
    fig, axes = new_figure(ncols=len(results), nrows=2, size=(3.3, 3.2))
    for col, name in enumerate(results):
        label = lab.label(ROWS[name])
        plot_reliability_diagram(before[name], ax=axes[0, col], title=f"{label}\nbefore temperature scaling",
                                 legend=col == 0)
        plot_reliability_diagram(after[name], ax=axes[1, col], legend=False,
                                 title=f"{label}\nafter scaling, T = {results[name]['temperature']:.2f}")
    return ctx.figure(fig, "reliability_diagrams.png")


def run(ctx: RunContext) -> StudyResult:
    lab = MnistLab(ctx)
    posteriors = {row: lab.posterior(spec) for row, spec in ROWS.items()}
    costs = lab.costs(ROWS)
    results, before, after, predictive = {}, {}, {}, {}
    for name, posterior in posteriors.items():
        results[name], before[name], after[name], predictive[name] = _calibrate(lab, posterior)
    diagrams = _diagrams(ctx, lab, results, before, after)
    versus = against_the_ensemble(lab, {k: r["nll"] for k, r in results.items()}, ROWS, "deep_ensemble", 0.005,
                                  higher_is_better=False, unit="nats of NLL")
    versus += "\n\n" + at_the_ensemble_cost(lab, {k: r["nll"] for k, r in results.items()}, ROWS, SAMPLERS,
                                            "deep_ensemble", 0.005, higher_is_better=False, unit="nats of NLL")
    conformal = conformal_results(predictive, lab.splits["test"].tensors[1], ctx.options.conformal_trials, ctx.seed)
    for name, by_score in conformal.items():
        results[name]["conformal"] = by_score

    def label(row):
        return lab.label(ROWS[row])

    section = conformal_report(label, conformal, conformal_figure(ctx, label, conformal))
    report = _report(ctx, lab, results, costs, versus, diagrams) + "\n" + section
    return StudyResult(config=lab.config(n_bins=15, training_cost_seconds=costs,
                                         conformal_trials=ctx.options.conformal_trials), results=results,
                       report=report)


def _report(ctx, lab: MnistLab, results: dict, costs: dict, versus: str, diagrams: str) -> str:
    rows = [[lab.label(ROWS[name]), *(f"{100 * r[k]:.2f}" for k in ("accuracy", "ece", "ece_after")), r["nll"],
             r["nll_after"], r["brier"], r["brier_after"], r["temperature"], f"{costs[name]:.0f}"]
            for name, r in results.items()]
    best = min(results, key=lambda k: results[k]["ece_after"])
    return f"""# Calibration on MNIST

Predictive probabilities on the {len(lab.splits['test'])} test images ({lab.s.samples} posterior samples for the
sampled methods); temperature scaling (Guo et al. 2017) fitted by NLL on the {len(lab.splits['val'])}
validation images, applied to the log predictive probabilities, so it serves every method.

{markdown_table(["method", "accuracy (%)", "ECE (%)", "ECE after (%)", "NLL", "NLL after", "Brier", "Brier after",
                 "temperature", "training (s)"], rows, ".4f")}

deep_ensemble: {lab.s.members} MAP LeNets (seeds {ctx.seed} to {ctx.seed + lab.s.members - 1}; the first is the map
row); multiswag: SWAG from each of them ({lab.s.swag_epochs} SGD epoch(s), momentum 0.9, lr {SWAG_LR:g}, rank
{SWAG_RANK}, {SWAG_COLLECTIONS} collections), both sampled evenly across members.
{sgmcmc_description(lab)} Training seconds are those of every network behind a row (cached networks count what they cost when trained;
the machine is a shared 2-core CPU).

{versus}

ECE with 15 equal-width bins. After temperature scaling the best ECE is {100 * results[best]['ece_after']:.2f}%
({lab.label(ROWS[best])}); full-run target: at most 1%. Methods whose temperature is above 1 were over-confident,
below 1 under-confident.

![]({diagrams})
"""
