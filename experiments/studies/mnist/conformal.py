"""The conformal section of the calibration study: prediction sets with guaranteed coverage on
top of every method's predictive (THR, APS, RAPS; Angelopoulos et al. 2021).

The test set's predictive probabilities of a method are split at random, ``trials`` times, into
a calibration half and a test half; each split calibrates a
:class:`~bayesdl.evaluation.ConformalClassifier` on one half and scores its sets on the other.
The mean coverage over the splits must lie in ``[1 - alpha, 1 - alpha + 1/(n + 1)]`` (``n`` the
calibration size) up to its Monte-Carlo error, whatever the method -- the guarantee; what the
methods differ in is the size of the sets that reach it.
"""

from __future__ import annotations

import torch

from bayesdl.evaluation import ConformalClassifier, split_conformal_trials
from bayesdl.evaluation.plotting import new_figure

from ...io import markdown_table

SCORES = ("thr", "aps", "raps")
ALPHAS = (0.01, 0.05, 0.1)
#: Monte-Carlo tolerance of the "within the guarantee" verdict, in standard errors of the mean
#: coverage over the splits (the splits share points, so this is a loose yardstick, not a test)
TOLERANCE_SE = 3.0
SCORE_NAMES = {"thr": "THR (LAC)", "aps": "APS", "raps": "RAPS (k_reg 1, lambda 0.01)"}


def conformal_cell(probs: torch.Tensor, labels: torch.Tensor, score: str, alpha: float, trials: int,
                   seed: int) -> dict:
    """Coverage and mean set size of ``score`` at ``alpha`` over ``trials`` random half splits."""
    cell = split_conformal_trials(lambda t: ConformalClassifier(score, alpha, seed=seed + t), probs, labels,
                                  trials=trials, seed=seed)
    cell["set_size"] = cell.pop("size")
    slack = TOLERANCE_SE * cell["coverage_se"]
    cell["within_guarantee"] = cell["guarantee_low"] - slack <= cell["coverage"] <= cell["guarantee_high"] + slack
    return cell


def conformal_results(predictive: dict[str, torch.Tensor], labels: torch.Tensor, trials: int, seed: int) -> dict:
    """``{row: {score: {"alpha_A": cell}}}`` for the test predictive ``[N, C]`` of every row."""
    return {row: {score: {f"alpha_{alpha:g}": conformal_cell(probs, labels, score, alpha, trials, seed)
                          for alpha in ALPHAS} for score in SCORES}
            for row, probs in predictive.items()}


def conformal_figure(ctx, label, results: dict) -> str:
    """Mean set size against alpha, one panel per score, one line per method."""
    from matplotlib.ticker import FormatStrFormatter, NullFormatter

    fig, axes = new_figure(ncols=len(SCORES), size=(3.6, 3.0))
    for col, (ax, score) in enumerate(zip(axes[0], SCORES)):
        for row, by_score in results.items():
            sizes = [by_score[score][f"alpha_{a:g}"]["set_size"] for a in ALPHAS]
            ax.plot(ALPHAS, sizes, "o-", label=label(row))
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.yaxis.set_major_formatter(FormatStrFormatter("%g"))
        ax.yaxis.set_minor_formatter(FormatStrFormatter("%g"))
        ax.xaxis.set_minor_formatter(NullFormatter())
        ax.set_xticks(ALPHAS, [f"{a:g}" for a in ALPHAS])
        ax.set_xlabel("alpha (sets cover >= 1 - alpha)")
        ax.set_ylabel("mean set size (labels)")
        ax.set_title(f"{SCORE_NAMES[score]}", fontsize="small")
        if col == 0:
            ax.legend(fontsize="x-small")
    fig.suptitle("Conformal prediction sets on MNIST: the size that buys guaranteed coverage")
    return ctx.figure(fig, "conformal_set_sizes.png")


def conformal_report(label, results: dict, figure: str) -> str:
    """The section of the report: a table per score, the verdicts, the smallest sets at 0.01."""
    first = next(iter(next(iter(results.values())).values()))["alpha_0.01"]
    tables = []
    for score in SCORES:
        rows = [[label(row)] + [f"{100 * c['coverage']:.2f} / {c['set_size']:.3f}"
                                for c in (by_score[score][f"alpha_{a:g}"] for a in ALPHAS)]
                for row, by_score in results.items()]
        tables.append(f"**{SCORE_NAMES[score]}**\n\n" + markdown_table(
            ["method"] + [f"alpha {a:g}: coverage (%) / mean set size" for a in ALPHAS], rows))
    cells = [c for by_score in results.values() for by_alpha in by_score.values() for c in by_alpha.values()]
    within = sum(c["within_guarantee"] for c in cells)
    smallest = {score: min(results, key=lambda r: results[r][score]["alpha_0.01"]["set_size"]) for score in SCORES}
    return f"""## Conformal prediction sets (split conformal, Angelopoulos et al. 2021)

Each method's test predictive probabilities split at random {first['trials']} times into
{first['calibration_size']} calibration and {first['calibration_size']} (or one more) test images; the sets of each split are
scored on its test half. Guarantee: mean coverage in [1 - alpha, 1 - alpha + 1/(n + 1)] with
n = {first['calibration_size']}. Cells within it (up to {TOLERANCE_SE:g} standard errors of the mean over the splits):
{within} of {len(cells)}. APS and RAPS randomised (exact coverage; a set may be empty).

{chr(10).join(t + chr(10) for t in tables)}
Smallest mean sets at alpha = 0.01 (99% guaranteed coverage): {'; '.join(f"{SCORE_NAMES[s]}: {label(r)} "
f"({results[r][s]['alpha_0.01']['set_size']:.3f} labels)" for s, r in smallest.items())}.

![]({figure})
"""
