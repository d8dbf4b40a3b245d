"""The benchmark's summary over the saved splits (:func:`summarise`), its tables, figure and
report (:func:`render_report`). Rows are named and drawn as their specs say (``label``,
``color``, ``paper``, ``reference``); what a row's runs hold beyond the common metrics (NUTS's
chain diagnostics, MC dropout's chosen pair and fewer-pass metrics) is summarised where they hold it.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable
from pathlib import Path

import numpy as np

from bayesdl.evaluation import new_figure
from bayesdl.evaluation.regression import COVERAGE_LEVELS

from ...io import markdown_table
from ...methods import specs_by_name
from .benchmark import read_split
from .config import NUTS_DATASETS, PAPER, T_CHECKS, Settings
from .specs import CONFORMAL_TRIALS, UCIMethod, method_specs

__all__ = ["summarise", "render_report", "coverage_figure", "against_reference"]

#: per-split keys that some runs hold (NUTS's chain diagnostics), and how a summary combines them
COMBINED_OVER_SPLITS = {"max_r_hat_predictions": max, "min_ess_bulk_predictions": min, "divergences": sum}
#: the metrics every run holds, summarised by their mean and standard error over the splits
METRICS = ("rmse", "log_likelihood", *[f"coverage_{round(100 * lv)}" for lv in COVERAGE_LEVELS],
           "aleatoric", "epistemic")


def _load(folder: Path, dataset: str, method: str, splits: int | None = None) -> list[dict]:
    """The saved results of ``method`` on ``dataset``: every split, or the first ``splits``, each
    verified (:func:`~.benchmark.read_split`: ``ValueError`` naming a damaged file)."""
    name = re.compile(rf"{re.escape(method)}_(\d+)\.json")
    found = sorted((int(match.group(1)), path) for path in (folder / dataset).glob(f"{method}_*.json")
                   if (match := name.fullmatch(path.name)))
    return [read_split(path) for k, path in found if splits is None or k < splits]


def _mean_se(values) -> tuple[float, float]:
    values = np.asarray(values, dtype=float)
    se = values.std(ddof=1) / math.sqrt(len(values)) if len(values) > 1 else float("nan")
    return float(values.mean()), float(se)


def _at_fewer_samples(runs: list[dict]) -> dict[str, dict[str, float]]:
    """Mean test LL and RMSE from the first ``t`` passes, and the largest change of a split's LL."""
    fewer = {}
    for t in T_CHECKS:
        pairs = [(r["metrics_at_fewer_samples"][str(t)], r) for r in runs
                 if str(t) in r.get("metrics_at_fewer_samples", {})]
        if pairs:
            fewer[str(t)] = {"log_likelihood": _mean_se([a["log_likelihood"] for a, _ in pairs])[0],
                             "rmse": _mean_se([a["rmse"] for a, _ in pairs])[0],
                             "max_abs_ll_change": max(abs(a["log_likelihood"] - r["log_likelihood"])
                                                      for a, r in pairs)}
    return fewer


#: the tolerance of a split's "within the guarantee": standard errors of its mean over the halves
CONFORMAL_TOLERANCE_SE = 3.0


def _conformal_summary(runs: list[dict]) -> dict:
    """Per conformal score and level: the mean over the splits of each split's mean coverage and
    width (over its random halves), and how many splits lie within the guarantee (up to
    :data:`CONFORMAL_TOLERANCE_SE` standard errors of their mean over the halves)."""
    summary = {}
    for score, by_level in runs[0]["conformal"].items():
        for level in by_level:
            cells = [r["conformal"][score][level] for r in runs]
            if any("skipped" in c for c in cells):
                summary.setdefault(score, {})[level] = {"skipped": cells[0].get("skipped", "")}
                continue
            within = sum(c["guarantee_low"] - CONFORMAL_TOLERANCE_SE * c["coverage_se"] <= c["coverage"]
                         <= c["guarantee_high"] + CONFORMAL_TOLERANCE_SE * c["coverage_se"] for c in cells)
            summary.setdefault(score, {})[level] = {
                "coverage": float(np.mean([c["coverage"] for c in cells])),
                "width": float(np.mean([c["size"] for c in cells])),
                "guarantee_low": cells[0]["guarantee_low"],
                "guarantee_high": float(np.mean([c["guarantee_high"] for c in cells])),
                "splits_within_guarantee": int(within), "splits": len(cells)}
    return summary


def _entry(runs: list[dict]) -> dict:
    """The summary of one method's saved runs on one dataset."""
    entry = {"splits": len(runs), "split_indices": [int(r["split"]) for r in runs],
             "seconds": round(sum(r["seconds"] for r in runs), 1)}
    for key in METRICS:
        entry[key], entry[f"{key}_se"] = _mean_se([r[key] for r in runs])
    for key, combine in COMBINED_OVER_SPLITS.items():
        if all(key in r for r in runs):
            entry[key] = combine(r[key] for r in runs)
    if all("p" in r and "tau" in r for r in runs):  # MC dropout's pair of the grids
        entry["chosen"] = [f"p={r['p']:g},tau={r['tau']:g}" for r in runs]
    if any("metrics_at_fewer_samples" in r for r in runs):
        entry["metrics_at_fewer_samples"] = _at_fewer_samples(runs)
    if all("conformal" in r for r in runs):  # splits saved before the conformal intervals have none
        entry["conformal"] = _conformal_summary(runs)
    return entry


def summarise(folder: Path, datasets, methods: Iterable[UCIMethod | str], splits: int | None = None) -> dict:
    """``{dataset: {method: {metric: mean, metric_se: SE, splits: n, ...}}}`` over the saved splits
    (the first ``splits`` of them, if given: a run asked for fewer splits than the cache holds);
    ``methods`` are specs or their names."""
    names = [getattr(method, "name", method) for method in methods]
    summary = {}
    for name in datasets:
        for method in names:
            runs = _load(folder, name, method, splits)
            if runs:
                summary.setdefault(name, {})[method] = _entry(runs)
    return summary


def _pm(mean, se, fmt=".2f") -> str:
    return f"{mean:{fmt}} +- {se:{fmt}}" if math.isfinite(se) else f"{mean:{fmt}}"


def _verdict(r: dict, paper: tuple) -> str:
    rmse_ok = r["rmse"] <= paper[0] + max(paper[1], np.nan_to_num(r["rmse_se"]))
    ll_ok = r["log_likelihood"] >= paper[2] - max(paper[3], np.nan_to_num(r["log_likelihood_se"]))
    cov_ok = abs(r["coverage_95"] - 0.95) <= 0.02
    return (f"RMSE {'met' if rmse_ok else 'missed'}, LL {'met' if ll_ok else 'missed'}, "
            f"95% coverage {'met' if cov_ok else 'missed'}")


def _results_table(summary: dict, specs: dict[str, UCIMethod]) -> str:
    rows = []
    for name, by_method in summary.items():
        paper = PAPER[name]
        for method, r in by_method.items():
            spec, fmt = specs[method], ".3f" if paper[0] < 1 else ".2f"
            rows.append([name, spec.label, f"{r['splits']}", _pm(r["rmse"], r["rmse_se"], fmt),
                         _pm(r["log_likelihood"], r["log_likelihood_se"]),
                         _pm(paper[0], paper[1], fmt) + " / " + _pm(paper[2], paper[3]) if spec.paper else "",
                         _verdict(r, paper) if spec.paper else ""])
    return markdown_table(["dataset", "method", "splits", "test RMSE", "test LL", "paper (MC dropout) RMSE / LL",
                           "targets: within one SE (the larger of ours and the paper's) or better; "
                           "95% coverage within 2 points"], rows)


def _coverage_table(summary: dict, specs: dict[str, UCIMethod]) -> str:
    rows = []
    for name, by_method in summary.items():
        for method, r in by_method.items():
            rows.append([name, specs[method].label] + [
                _pm(100 * r[f"coverage_{round(100 * lv)}"], 100 * r[f"coverage_{round(100 * lv)}_se"], ".1f")
                for lv in COVERAGE_LEVELS] + [f"{r['aleatoric']:.4g}", f"{r['epistemic']:.4g}",
                                              f"{r['epistemic'] / (r['aleatoric'] + r['epistemic']):.2f}"])
    return markdown_table(["dataset", "method"] + [f"{round(100 * lv)}% interval (%)" for lv in COVERAGE_LEVELS]
                          + ["aleatoric var", "epistemic var", "epistemic share"], rows)


def _fewer_table(summary: dict, specs: dict[str, UCIMethod]) -> str:
    """The paper's row at fewer test passes (prefixes of the same passes), where it was measured."""
    rows = []
    for name, by_method in summary.items():
        for method, r in by_method.items():
            if not (specs[method].paper and r.get("metrics_at_fewer_samples")):
                continue
            fewer_at = {int(t): v for t, v in r["metrics_at_fewer_samples"].items()}
            cells = [f"{fewer_at[t]['log_likelihood']:.3f} (max change {fewer_at[t]['max_abs_ll_change']:.3f})"
                     if t in fewer_at else "" for t in T_CHECKS]
            rows.append([name, *cells, f"{r['log_likelihood']:.3f}"])
    if not rows:
        return ""
    return markdown_table(["dataset", *[f"LL at T = {t}" for t in T_CHECKS], "LL at all T (reported)"], rows)


def _convergence_row(name: str, reference: dict) -> list[str]:
    converged = reference["max_r_hat_predictions"] <= 1.01
    return [name, "NUTS convergence", "", "", "", "",
            f"max R-hat of the predictions {reference['max_r_hat_predictions']:.3f}, min bulk ESS "
            f"{reference['min_ess_bulk_predictions']:.0f}, {reference['divergences']} divergences"
            + ("" if converged else " -- not converged: the chains stay in the modes they started in, "
               "so this is a mixture of local posteriors, not the exact one")]


def against_reference(folder: Path, summary: dict, specs: Iterable[UCIMethod]) -> str:
    """Every method on the splits the reference row (NUTS) ran on, beside it: means over those
    splits only; then the reference's chain diagnostics, where its runs hold them."""
    by_name = specs_by_name(specs)
    rows = []
    for name, by_method in summary.items():
        for row, reference in by_method.items():
            if not by_name[row].reference:
                continue
            splits = set(reference["split_indices"])
            for method in by_method:
                runs = [r for r in _load(folder, name, method) if int(r["split"]) in splits]
                if len(runs) < len(splits):
                    continue
                cells = [float(np.mean([r[key] for r in runs]))
                         for key in ("rmse", "log_likelihood", "coverage_95", "epistemic")]
                rows.append([name, by_name[method].label, f"{len(runs)}", f"{cells[0]:.3f}", f"{cells[1]:.3f}",
                             f"{100 * cells[2]:.1f}", f"{cells[3]:.4g}"])
            if "max_r_hat_predictions" in reference:
                rows.append(_convergence_row(name, reference))
    if not rows:
        return ""
    return markdown_table(["dataset", "method", "splits", "test RMSE", "test LL", "95% coverage (%)",
                           "epistemic var"], rows)


def coverage_figure(summary: dict, specs: Iterable[UCIMethod]):
    """Observed against nominal coverage of the central predictive intervals, one panel per dataset."""
    by_name = specs_by_name(specs)
    names = list(summary)
    cols = min(3, len(names))
    rows = math.ceil(len(names) / cols)
    fig, axes = new_figure(ncols=cols, nrows=rows, size=(3.2, 2.9))
    levels = np.array(COVERAGE_LEVELS)
    lowest = min(r[f"coverage_{round(100 * lv)}"] for by_method in summary.values() for r in by_method.values()
                 for lv in COVERAGE_LEVELS)
    for i, name in enumerate(names):
        ax = axes[i // cols, i % cols]
        ax.plot([0.4, 1.0], [0.4, 1.0], color="gray", lw=0.8, ls="--")
        for method, r in summary[name].items():
            obs = [r[f"coverage_{round(100 * lv)}"] for lv in levels]
            err = [r[f"coverage_{round(100 * lv)}_se"] for lv in levels]
            ax.errorbar(levels, obs, yerr=np.nan_to_num(err), marker="o", ms=4, capsize=2,
                        color=by_name[method].color, label=f"{by_name[method].label} ({r['splits']} splits)")
        ax.set_title(name, fontsize="small")
        ax.set_xlim(0.4, 1.0)
        ax.set_ylim(min(0.4, lowest - 0.05), 1.02)  # one scale for all panels, no empty band below
        ax.set_xlabel("nominal coverage", fontsize="x-small")
        ax.set_ylabel("observed coverage", fontsize="x-small")
        ax.legend(fontsize="xx-small", loc="lower right")
    for j in range(len(names), rows * cols):
        axes[j // cols, j % cols].axis("off")
    return fig


def _conformal_table(summary: dict, specs: dict[str, UCIMethod]) -> str:
    """Per dataset, method and level: the Bayesian interval's coverage beside the conformal ones'."""
    rows, cells, within, skipped = [], 0, 0, ""
    for name, by_method in summary.items():
        for method, r in by_method.items():
            if "conformal" not in r:
                continue
            for lv in COVERAGE_LEVELS:
                key = f"coverage_{round(100 * lv)}"
                row = [name, specs[method].label, f"{round(100 * lv)}%", f"{100 * r[key]:.1f}"]
                for by_level in r["conformal"].values():
                    c = by_level[key]
                    if "skipped" in c:
                        row.append("-- (too few points)")
                        skipped = c["skipped"]
                        continue
                    cells, within = cells + 1, within + (c["splits_within_guarantee"] == c["splits"])
                    row.append(f"{100 * c['coverage']:.1f} / {c['width']:.3g}"
                               + ("" if c["splits_within_guarantee"] == c["splits"]
                                  else f" ({c['splits_within_guarantee']}/{c['splits']} splits within)"))
                rows.append(row)
    if not rows:
        return ""
    header = ["dataset", "method", "level", "Bayesian coverage (%)",
              *[f"{score}: coverage (%) / width" for score in next(r["conformal"] for b in summary.values()
                                                                   for r in b.values() if "conformal" in r)]]
    note = f" A dash: {skipped} (the quantile at that level would be infinite)." if skipped else ""
    return (f"(Dataset, method, level, score) cells whose every split lies within the guarantee: {within} of "
            f"{cells}.{note}\n\n" + markdown_table(header, rows))


def render_report(summary: dict, settings: Settings, figure: str, seconds: float, folder: Path,
                  specs: Iterable[UCIMethod] | None = None) -> str:
    """The Markdown report of a summary (:func:`summarise`) of the finished splits; ``specs``
    name its rows (default: :func:`method_specs` of ``settings``)."""
    by_name = specs_by_name(method_specs(settings) if specs is None else specs)
    table, coverage = _results_table(summary, by_name), _coverage_table(summary, by_name)
    fewer, reference = _fewer_table(summary, by_name), against_reference(folder, summary, by_name.values())
    conformal = _conformal_table(summary, by_name)
    epochs = settings.epochs or "the dataset's n_epochs (40; protein 20)"
    return f"""# UCI regression benchmark (Gal & Ghahramani 2016, Table 1)

One hidden layer (50 units, protein 100), Adam lr {settings.lr:g}, batch {settings.batch_size},
epochs: {epochs}, but at least {settings.min_steps} steps. MC dropout: dropout rate and tau chosen
on the last {100 * settings.val_fraction:.0f}% of each training split{'' if settings.grid else ' (grid off: middle values)'}
(T = {settings.val_samples}; {'one network per rate scored at every tau' if settings.shared_tau else 'one network per pair'};
{'on every split' if settings.grid_splits is None else f'searched on the first {settings.grid_splits} split(s) only, that pair used on the others'}),
refitted on the whole split, T = {settings.test_samples} test passes. Mean-field VI and Laplace:
{settings.other_samples} posterior samples. Mean +- standard error over the splits finished (ddof 1).

{table}

## Coverage of the central predictive intervals (mean over splits, %), and the variance split

Aleatoric: expected noise variance; epistemic: variance of the sampled means (original units
squared, mean over test points and splits).

{coverage}

![coverage]({figure})

## Conformal intervals beside the Bayesian ones

Split conformal on each split's test predictive: {CONFORMAL_TRIALS} random halves of the test points,
one to calibrate and one to measure (mean coverage and width over the halves, then over the
splits). Scores: absolute residual (mean +- q), residual over the predictive standard deviation
(aleatoric plus epistemic), and CQR on the quantiles of the Bayesian mixture. Guarantee of each
split: coverage in [1 - alpha, 1 - alpha + 1/(n + 1)], n half the test points, up to
{CONFORMAL_TOLERANCE_SE:g} standard errors of the mean over the halves.

{conformal or '(not measured: the splits were saved before the conformal intervals)'}

## Against NUTS on {', '.join(NUTS_DATASETS)}

Every method on the splits NUTS ran on ({settings.nuts_chains} chains of {settings.nuts_warmup} warm-up and
{settings.nuts_draws} kept draws, tree depth at most {settings.nuts_max_tree_depth}, each chain from the MAP of its own seed; same network and N(0, 1) prior
as mean-field VI and Laplace, noise fixed at Laplace's marginal-likelihood value). R-hat and ESS are
of the predictive means at the test points (weights are not identifiable).

{reference or '(NUTS did not run on these datasets)'}

## Do fewer than 10,000 test passes matter? (MC dropout, test LL from prefixes of the same passes)

{fewer or '(quick mode: not measured)'}

_Time spent in this invocation on new splits: {seconds:.0f} s (finished splits are reused)._
"""
