"""ArviZ diagnostics of ``InferenceData``: summaries, convergence, LOO comparison, plots.

Pure functions of ArviZ data; no model runs here. Build the data from any posterior with
:func:`bayesdl.inference.to_inference_data` (posterior, posterior predictive, pointwise
log-likelihood, divergences), then:

- :func:`summary` (means, HDIs, R-hat, ESS) and :func:`convergence` (the headline figures);
- :func:`compare`: PSIS-LOO comparison of several methods;
- :func:`save` / :func:`load`: netCDF, written atomically;
- :func:`plot_rank`, :func:`plot_trace`.
"""

from __future__ import annotations

__all__ = ["summary", "convergence", "compare", "save", "load", "plot_rank", "plot_trace"]


def summary(idata, var_names=None):
    """``az.summary`` (means, HDIs, R-hat, ESS) of an ``InferenceData``."""
    import arviz as az

    if not isinstance(idata, az.InferenceData):
        raise TypeError(
            f"summary needs arviz.InferenceData, got {type(idata).__name__}; build it from a posterior "
            "with bayesdl.inference.to_inference_data(posterior)"
        )
    return az.summary(idata, var_names=var_names)


def convergence(idata, table=None) -> dict:
    """The headline convergence figures of an MCMC ``InferenceData``: ``max_r_hat`` and
    ``min_ess_bulk`` over every scalar component, and the number of ``divergences``.

    ``table`` is its ``az.summary`` if already computed (otherwise computed here).
    """
    table = summary(idata) if table is None else table
    diverging = int(idata.sample_stats["diverging"].sum()) if "sample_stats" in idata.groups() else 0
    return {"max_r_hat": float(table["r_hat"].max()), "min_ess_bulk": float(table["ess_bulk"].min()),
            "divergences": diverging}


def compare(idatas: dict, ic: str = "loo"):
    """``az.compare`` of several methods' ``InferenceData`` (with log-likelihoods), by PSIS-LOO."""
    import arviz as az

    missing = [name for name, idata in idatas.items() if "log_likelihood" not in idata.groups()]
    if missing:
        raise ValueError(f"{missing} have no log_likelihood group; build them with "
                         "bayesdl.inference.to_inference_data(posterior, x, y)")
    return az.compare(idatas, ic=ic)


def save(idata, path) -> None:
    """Write ``InferenceData`` to netCDF atomically."""
    from bayesdl.atomic import atomic_path

    with atomic_path(path) as tmp:
        idata.to_netcdf(str(tmp))


def load(path):
    """Read ``InferenceData`` written by :func:`save`."""
    import arviz as az

    return az.from_netcdf(str(path))


def _grid_axes(rows, cols, size=(3.2, 2.4)):
    from .plotting import new_figure

    return new_figure(ncols=cols, nrows=rows, size=size)


def plot_rank(idata, var_names=None, max_vars: int = 6):
    """Rank plots (Vehtari et al. 2021) of up to ``max_vars`` scalar components, one per panel."""
    import arviz as az

    names = var_names or list(idata.posterior.data_vars)[:max_vars]
    fig, axes = _grid_axes(1, len(names))
    az.plot_rank(idata, var_names=names, ax=axes[0], coords=None)
    return fig


def plot_trace(idata, var_names=None, max_vars: int = 4):
    """Trace plots (density and draws per chain) of up to ``max_vars`` variables."""
    import arviz as az

    names = var_names or list(idata.posterior.data_vars)[:max_vars]
    fig, axes = _grid_axes(len(names), 2, size=(4.2, 2.2))
    az.plot_trace(idata, var_names=names, axes=axes, compact=True)
    return fig
