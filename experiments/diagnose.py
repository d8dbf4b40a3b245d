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

from bayesdl.evaluation.diagnostics import compare, convergence, load, plot_rank, summary

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
        if idata.posterior.sizes["chain"] < 2:
            continue
        table = summary(idata)
        worst = table.sort_values("r_hat", ascending=False).head(max_rows)
        body = [[index, float(r["mean"]), float(r["sd"]), float(r["r_hat"]), float(r["ess_bulk"]),
                 float(r["ess_tail"])] for index, r in worst.iterrows()]
        figures = convergence(idata, table)
        headline = (f"max R-hat {figures['max_r_hat']:.4f}, min bulk ESS {figures['min_ess_bulk']:.0f}, "
                    f"{figures['divergences']} divergent transitions")
        lines += [f"## {name}: convergence ({len(table)} scalar components, worst R-hat first)", "",
                  headline, "",
                  markdown_table(["component", "mean", "sd", "r_hat", "ess_bulk", "ess_tail"], body), ""]
        if plots is not None:
            names = list(idata.posterior.data_vars)[-2:]
            path = Path(plots) / f"rank_{name}.png"
            save_figure(plot_rank(idata, var_names=names), path)
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


def loo_comparison(idatas: dict):
    """``az.compare`` (PSIS-LOO) of the methods' InferenceData: ``(table, Markdown table)``.

    ArviZ's Pareto-k warnings are not printed: the table has a column for them.
    """
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        table = compare(idatas)
    rows = [[name, int(r["rank"]), float(r["elpd_loo"]), float(r["p_loo"]), float(r["elpd_diff"]),
             float(r["weight"]), "yes" if r["warning"] else "no"] for name, r in table.iterrows()]
    headers = ["method", "rank", "elpd_loo", "p_loo", "elpd_diff", "weight", "Pareto k warning"]
    return table, markdown_table(headers, rows, ".2f")
