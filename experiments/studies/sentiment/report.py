"""The sentiment study's summary (mean and standard error over seeds), its figure (test RMSE against
epochs, the paper's figure) and its report. Rows are named and drawn as their specs say."""

from __future__ import annotations

import math

import numpy as np
from matplotlib.ticker import MaxNLocator

from bayesdl.evaluation import new_figure

from ...io import markdown_table

__all__ = ["summarise", "curve_figure", "render_report", "METRICS"]

#: the final metrics summarised over seeds
METRICS = ("rmse", "nll", "coverage_50", "coverage_90", "coverage_95", "aleatoric", "epistemic", "train_seconds")


def _mean_se(values) -> tuple[float, float]:
    """Mean and standard error (``sd / sqrt(n)``, ``ddof = 1``; 0 for one value)."""
    values = np.asarray(values, dtype=float)
    se = float(values.std(ddof=1) / math.sqrt(len(values))) if len(values) > 1 else 0.0
    return float(values.mean()), se


def summarise(results: dict, specs) -> dict:
    """``{row: {metric: {"mean", "se", "per_seed"}, "best_epoch_rmse": ..., "uncertain": ...}}`` and
    the paper's ranking, from ``results[row][seed]`` (the final results of each seed)."""
    summary = {}
    for spec in specs:
        runs = results[spec.name]
        row = {m: dict(zip(("mean", "se"), _mean_se([r[m] for r in runs.values()])),
                       per_seed={str(s): r[m] for s, r in runs.items()}) for m in METRICS}
        best = [min(point["test_rmse"] for point in r["curve"]) for r in runs.values()]
        row["best_epoch_rmse"] = dict(zip(("mean", "se"), _mean_se(best)))
        row["uncertain"] = next(iter(runs.values()))["uncertain"]
        summary[spec.name] = row
    rmse = {name: row["rmse"]["mean"] for name, row in summary.items()}
    first = specs[0].name  # the paper's row: variational dropout
    summary["ranking"] = {f"{first}_below_{spec.name}": rmse[first] < rmse[spec.name] for spec in specs[1:]}
    cover = summary[first]["coverage_95"]["mean"]
    summary["ranking"][f"{first}_coverage_95_in_93_97"] = 0.93 <= cover <= 0.97
    return summary


def curve_figure(results: dict, specs, epochs: int):
    """Test RMSE (rating units) against epochs: each seed thin, the mean over seeds bold."""
    fig, axes = new_figure(size=(6.4, 4.2))
    ax = axes[0, 0]
    for spec in specs:
        curves = [[p["test_rmse"] for p in r["curve"]] for r in results[spec.name].values()]
        for curve in curves:
            ax.plot(range(1, len(curve) + 1), curve, color=spec.color, alpha=0.3, linewidth=0.8)
        length = min(len(c) for c in curves)
        mean = np.mean([c[:length] for c in curves], axis=0)
        ax.plot(range(1, length + 1), mean, color=spec.color, linewidth=2, label=spec.label, marker=".")
    ax.set_xlabel("epoch")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_ylabel("test RMSE (rating units, 0-1 scale)")
    seeds = len(next(iter(results.values())))
    ax.set_title(f"Test error by epoch (bold: mean of {seeds} seed{'s' if seeds > 1 else ''})", fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    return fig


def _cell(entry: dict, scale: float = 1.0, digits: int = 4) -> str:
    return f"{entry['mean'] * scale:.{digits}f} ± {entry['se'] * scale:.{digits}f}"


def _tables(summary: dict, results: dict, specs) -> tuple[str, str]:
    rows = [[spec.label, _cell(summary[spec.name]["rmse"]), _cell(summary[spec.name]["best_epoch_rmse"]),
             _cell(summary[spec.name]["nll"], digits=3),
             *[_cell(summary[spec.name][f"coverage_{c}"], 100, 1) for c in (50, 90, 95)],
             _cell(summary[spec.name]["aleatoric"], 1e3, 2), _cell(summary[spec.name]["epistemic"], 1e3, 3),
             f"{summary[spec.name]['train_seconds']['mean']:.0f}"] for spec in specs]
    main = markdown_table(["row", "final test RMSE", "best-epoch RMSE", "test NLL", "cover 50%", "cover 90%",
                           "cover 95%", "aleatoric (1e-3)", "epistemic (1e-3)", "train s / seed"], rows)
    per_seed = [[spec.label, seed, f"{r['rmse']:.4f}", f"{r['nll']:.3f}", f"{100 * r['coverage_95']:.1f}",
                 f"{r['train_seconds']:.0f}", f"{r['predict_seconds']:.0f}"]
                for spec in specs for seed, r in results[spec.name].items()]
    return main, markdown_table(["row", "seed", "test RMSE", "NLL", "cover 95%", "train s", "predict s"], per_seed)


def _reviews(summary: dict, spec) -> str:
    lines = []
    for which, title in (("most", "Most uncertain"), ("least", "Least uncertain")):
        lines.append(f"**{title} test chunks ({spec.label}, first seed)**\n")
        rows = [[f"{r['rating']:.2f}", f"{r['mean']:.2f}", f"{r['sd']:.3f}", f"{r['epistemic_sd']:.3f}",
                 r["text"].replace("|", "/") + " ..."] for r in summary[spec.name]["uncertain"][which]]
        lines.append(markdown_table(["rating", "predicted", "sd", "epistemic sd", "text (first 30 tokens)"], rows))
        lines.append("")
    return "\n".join(lines)


def render_report(summary: dict, results: dict, specs, options, figure: str) -> str:
    main, per_seed = _tables(summary, results, specs)
    ranking = "\n".join(f"- `{key}`: {'yes' if value else 'no'}" for key, value in summary["ranking"].items())
    return f"""# Sentiment regression with an LSTM (Gal & Ghahramani 2016b, sec. 5.1)

Pang & Lee's scale reviews (four critics), chunks of at most {options.max_length} tokens,
{options.vocabulary:,} words, last 20% of the shuffled reviews as test. Network: embedding
{options.embedding}, LSTM {options.hidden}, dense output; dropout rate {options.p} on every slot of the
dropout rows; weight decay {options.weight_decay:g} as the prior; Adam (lr {options.lr:g}), batch 128,
{options.epochs} epochs; final test metrics from T = {options.samples} passes (rating units, 0-1 scale).
The paper's schedule is `--set epochs=250 embedding=128 hidden=128`.

Mean ± standard error over the seeds (aleatoric and epistemic: mean predictive variances, x 1e-3):

{main}

Targets (variational dropout below naive dropout and below no dropout in final test RMSE; its 95%
intervals covering 93-97% of the test ratings):

{ranking}

![test RMSE by epoch]({figure})

Each epoch's test RMSE on the figure is from {"one pass with dropout off (the weight-averaged network)"
    if options.curve_samples == 0 else f"{options.curve_samples} MC passes"}; the table's final RMSE from
{options.samples} MC passes.

Per seed:

{per_seed}

{_reviews(summary, specs[0])}
"""
