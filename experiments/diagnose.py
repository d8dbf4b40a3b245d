"""``bdl diagnose RUN_DIR``: a saved run's ArviZ diagnostics again, without refitting.

Studies save each method's InferenceData as ``inference_<method>.nc`` in their output folder.
This checks the folder's files against its manifest, reads them back and reports, per method,
the draws it holds; for multi-chain (MCMC) runs ``az.summary`` with R-hat and effective sample
sizes; across the methods with a posterior and a log-likelihood, the PSIS-LOO comparison
``az.compare``; and, on request, rank plots.
"""

from __future__ import annotations

import warnings
from pathlib import Path

from bayesdl.evaluation.diagnostics import (
    compare,
    convergence,
    convergence_verdict,
    load,
    plot_rank,
    summary,
    worst_components,
)

from .io import markdown_table, save_figure, verify_run_folder

__all__ = ["diagnose", "loo_comparison"]


def diagnose(run_dir, plots=None, max_rows: int = 12) -> str:
    """The diagnostics of the run in ``run_dir`` as Markdown; rank plots into ``plots`` if given."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise FileNotFoundError(f"{run_dir} is not a folder; pass the --out folder of a `bdl run`")
    listed = verify_run_folder(run_dir)  # ValueError if a file changed since the run
    files = sorted(run_dir.glob("inference_*.nc"))
    if listed:  # only this run's files, never strays copied in later
        files = [f for f in files if f.name in listed]
    if not files:
        raise FileNotFoundError(
            f"no ArviZ data (inference_<method>.nc) in {run_dir}; the regression, logistic-2d and "
            "two-moons studies save it"
        )
    idatas = {f.stem.removeprefix("inference_"): _load(f) for f in files}
    lines = [f"# Diagnostics of {run_dir}", ""]
    rows = []
    for name, idata in idatas.items():
        post = idata.posterior
        rows.append([name, post.attrs.get("method", "?"), int(post.sizes["chain"]), int(post.sizes["draw"]),
                     ", ".join(idata.groups())])
    lines += [markdown_table(["method", "approximation", "chains", "draws", "groups"], rows), ""]
    for name, idata in idatas.items():
        chains = int(idata.posterior.sizes["chain"])
        if chains < 2:
            continue
        table = summary(idata)
        worst = table.sort_values("r_hat", ascending=False).head(max_rows)
        body = [[index, float(r["mean"]), float(r["sd"]), f"{float(r['r_hat']):.3f}",
                 f"{float(r['ess_bulk']):.0f}", f"{float(r['ess_tail']):.0f}"]
                for index, r in worst.iterrows()]
        figures = convergence(idata, table)
        lines += [f"## {name}: convergence ({len(table)} scalar components, worst R-hat first)", "",
                  convergence_verdict(figures, chains), "",
                  markdown_table(["component", "mean", "sd", "R-hat", "bulk ESS", "tail ESS"], body), ""]
        if plots is not None:
            path = Path(plots) / f"rank_{name}.png"
            worst_few = worst_components(idata, count=4)
            fig = plot_rank(worst_few)
            fig.suptitle(f"{name}: rank plots of the {len(worst_few.posterior.data_vars)} components with "
                         "the highest R-hat")
            save_figure(fig, path)
            lines += [f"rank plot: {path}", ""]
    with_lik = {k: v for k, v in idatas.items()
                if "log_likelihood" in v.groups() and v.posterior.sizes["draw"] > 1}
    if len(with_lik) > 1:
        lines += ["## PSIS-LOO comparison", "", loo_comparison(with_lik)[1], ""]
    return "\n".join(lines)


def _load(path):
    """ArviZ data from ``path``, or ``ValueError`` if the file cannot be read as such."""
    try:
        idata = load(path)
        idata.posterior  # noqa: B018 -- every saved run has one
    except Exception as err:  # netCDF/HDF5 raise OSError, ValueError, KeyError, AttributeError...
        raise ValueError(f"cannot read {path} as ArviZ data ({type(err).__name__}: {err}); the file is "
                         "truncated or damaged -- run the study again") from None
    return idata


def loo_comparison(idatas: dict, labels: dict | None = None):
    """``az.compare`` (PSIS-LOO) of the methods' InferenceData: ``(table, Markdown)``.

    The Markdown is the table -- methods under ``labels`` (their human names) if given -- with,
    per method, how many observations have a Pareto k above 0.7, where the PSIS estimate of
    their leave-one-out density is unreliable; when there are any, a sentence says what it
    means and what to do. ArviZ's own warnings are not printed.
    """
    import arviz as az

    labels = labels or {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        table = compare(idatas)
        bad = {name: int((az.loo(idatas[name], pointwise=True).pareto_k.values > 0.7).sum())
               for name in table.index}
    rows = [[labels.get(name, name), int(r["rank"]), float(r["elpd_loo"]), float(r["p_loo"]),
             float(r["elpd_diff"]), float(r["weight"]),
             f"{bad[name]} of {idatas[name].log_likelihood.sizes['obs']}"]
            for name, r in table.iterrows()]
    headers = ["method", "rank", "elpd_loo", "p_loo", "elpd_diff", "weight", "Pareto k > 0.7"]
    markdown = markdown_table(headers, rows, ".2f")
    if any(bad.values()):
        markdown += ("\n\nObservations with Pareto k > 0.7 have unreliable PSIS-LOO terms (Vehtari et al. "
                     "2017): their posterior changes too much when they are left out for importance "
                     "sampling to correct. With few posterior draws (quick runs) or flexible networks "
                     "this is common; use more draws, or exact K-fold cross-validation, before reading "
                     "small elpd differences as a ranking.")
    return table, markdown
