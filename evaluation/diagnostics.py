"""ArviZ diagnostics of ``InferenceData``: summaries, convergence, LOO comparison, plots.

Pure functions of ArviZ data; no model runs here. Build the data from any posterior with
:func:`bayesdl.inference.to_inference_data` (posterior, posterior predictive, pointwise
log-likelihood, divergences), then:

- :func:`summary` (means, HDIs, R-hat, ESS), :func:`convergence` (the headline figures) and
  :func:`convergence_verdict` (whether they pass Vehtari et al.'s thresholds, in words);
- :func:`compare`: PSIS-LOO comparison of several methods;
- :func:`save` / :func:`load`: netCDF, written atomically;
- :func:`plot_rank`, :func:`plot_trace`.
"""

from __future__ import annotations

from bayesdl._warn import warn

__all__ = ["summary", "convergence", "convergence_verdict", "worst_components", "R_HAT_TARGET",
           "ESS_PER_CHAIN_TARGET", "compare", "save", "load", "plot_rank", "plot_trace"]


def summary(idata, var_names=None, max_components: int | None = 30, hdi_prob: float = 0.94):
    """``az.summary`` (means, HDIs, R-hat, ESS) of an ``InferenceData``.

    R-hat and ESS judge MCMC chains: with several chains every scalar component is summarised by
    ``az.summary``. For a single chain (independent draws of VI, MC dropout, Laplace) only the
    statistics are returned, with a ``UserWarning`` -- and, so that a network's posterior stays
    readable, only the first ``max_components`` scalar components (``None``: all of them):

    - components that are a point mass (every draw equal, e.g. the sites a guide keeps at a point)
      are left out of the table;
    - a component whose mean lies outside its own ``hdi_prob`` HDI (a two-point or bimodal
      marginal, such as a weight masked by dropout: a spike at 0 and one at ``w / (1 - p)``) has
      no meaningful HDI, so its HDI is left out (NaN) and its mean and sd kept.

    Both are listed in the warning and in ``table.attrs["notes"]``.
    """
    import arviz as az

    if not isinstance(idata, az.InferenceData):
        raise TypeError(
            f"summary needs arviz.InferenceData, got {type(idata).__name__}; build it from a posterior "
            "with bayesdl.inference.to_inference_data(posterior)"
        )
    if idata.posterior.sizes.get("chain", 1) >= 2:
        return az.summary(idata, var_names=var_names, hdi_prob=hdi_prob)
    table, notes = _single_chain_summary(idata, var_names, max_components, hdi_prob)
    warn(
        "R-hat and ESS need several MCMC chains; this posterior has one chain of independent draws "
        "(VI, MC dropout, Laplace, MAP), so only means, sds and HDIs are reported. Check such a "
        "posterior against a reference (NUTS) or by PSIS-LOO instead" + "".join(f". {n}" for n in notes))
    return table


def _single_chain_summary(idata, var_names, max_components, hdi_prob):
    """Mean, sd and HDI of the scalar components of a one-chain posterior; returns ``(table,
    notes)`` (see :func:`summary`)."""
    import arviz as az
    import numpy as np
    import pandas as pd

    post = idata.posterior if var_names is None else idata.posterior[list(var_names)]
    tail = round(100 * (1 - hdi_prob) / 2, 6)
    low_name, high_name = f"hdi_{tail:g}%", f"hdi_{100 - tail:g}%"
    rows, constant, degenerate, total = {}, [], [], 0
    for name, array in post.data_vars.items():
        values = np.asarray(array.values, dtype=float)
        shape = values.shape[2:]
        flat_values = values.reshape(-1, int(np.prod(shape, dtype=int)))
        for flat in range(flat_values.shape[1]):
            index = np.unravel_index(flat, shape) if shape else ()
            label = f"{name}[{', '.join(str(int(i)) for i in index)}]" if shape else name
            draws = flat_values[:, flat]
            total += 1
            if np.all(draws == draws[0]):
                constant.append(label)
                continue
            if max_components is not None and len(rows) >= max_components:
                continue
            mean, sd = float(draws.mean()), float(draws.std(ddof=1))
            low, high = (float(v) for v in az.hdi(draws, hdi_prob=hdi_prob))
            if not low <= mean <= high:
                degenerate.append(label)
                low = high = float("nan")
            rows[label] = {"mean": mean, "sd": sd, low_name: low, high_name: high}
    table = pd.DataFrame.from_dict(rows, orient="index", columns=["mean", "sd", low_name, high_name])
    notes = []
    varying = total - len(constant)
    if max_components is not None and varying > len(rows):
        notes.append(f"Summarised the first {len(rows)} of {varying} scalar components (max_components="
                     f"{max_components}; pass max_components=None for all)")
    if constant:
        notes.append(f"Left out {len(constant)} point-mass component{'s' if len(constant) != 1 else ''} "
                     f"(every draw equal: a site the guide keeps at a point), e.g. {constant[0]}")
    if degenerate:
        plural = "s" if len(degenerate) != 1 else ""
        notes.append(f"No HDI for {len(degenerate)} component{plural} whose mean "
                     f"lies outside its {hdi_prob:.0%} HDI (a two-point or bimodal marginal, such as a "
                     f"dropout-masked weight), e.g. {degenerate[0]}")
    table.attrs["notes"] = notes
    return table, notes


def convergence(idata, table=None) -> dict:
    """The headline convergence figures of an MCMC ``InferenceData``: ``max_r_hat`` and
    ``min_ess_bulk`` over every scalar component, and the number of ``divergences``.

    ``table`` is its ``az.summary`` if already computed (otherwise computed here).
    """
    table = summary(idata) if table is None else table
    diverging = int(idata.sample_stats["diverging"].sum()) if "sample_stats" in idata.groups() else 0
    return {"max_r_hat": float(table["r_hat"].max()), "min_ess_bulk": float(table["ess_bulk"].min()),
            "divergences": diverging}


#: Vehtari et al. (2021): trust MCMC draws when every R-hat is below 1.01 and every bulk ESS
#: is above 100 per chain.
R_HAT_TARGET = 1.01
ESS_PER_CHAIN_TARGET = 100


def convergence_verdict(figures: dict, num_chains: int) -> str:
    """One sentence on an MCMC run's :func:`convergence` figures: whether the chains converged by
    Vehtari et al.'s (2021) rule (R-hat < 1.01, bulk ESS > 100 per chain, no divergences) and,
    if not, what to do about it."""
    r_hat, ess, divergences = figures["max_r_hat"], figures["min_ess_bulk"], figures["divergences"]
    ess_target = ESS_PER_CHAIN_TARGET * num_chains
    head = (f"max R-hat {r_hat:.3f} (target < {R_HAT_TARGET}), min bulk ESS {ess:.0f} "
            f"(target > {ess_target}), {divergences} divergent transition{'s' if divergences != 1 else ''}")
    problems = []
    if not r_hat < R_HAT_TARGET:
        problems.append("the chains disagree (R-hat)")
    if not ess > ess_target:
        problems.append("too few effective draws (ESS)")
    if divergences:
        problems.append("divergences mark regions the sampler could not explore")
    if not problems:
        return f"{head}: the chains have converged by these criteria."
    return (f"{head}: **not converged** -- {'; '.join(problems)}. Run more warm-up and draws per chain "
            "(and, for divergences, a higher target acceptance probability) before using these draws as a "
            "reference; the numbers that depend on them are provisional.")


def worst_components(idata, count: int = 4):
    """The ``count`` scalar components of the posterior with the highest R-hat, as a new
    ``InferenceData`` with one scalar variable per component named like
    ``"fc2.weight[1, 3], R-hat 1.042"``
    (``[chains, draws]`` each) -- what a trace or rank plot of a network should show: a
    readable handful, chosen because they mix worst, rather than the first weights of a layer."""
    import arviz as az
    import numpy as np

    post = idata.posterior
    if post.sizes.get("chain", 1) < 2:
        raise ValueError("R-hat needs several chains; worst_components is for MCMC draws")
    r_hat = az.rhat(post)
    scored = []
    for name in r_hat.data_vars:
        values = np.asarray(r_hat[name].values)
        for flat in range(values.size):
            index = np.unravel_index(flat, values.shape) if values.ndim else ()
            value = float(values[index]) if values.ndim else float(values)
            scored.append((np.inf if np.isnan(value) else value, name, tuple(int(i) for i in index)))
    scored.sort(key=lambda item: -item[0])
    chosen = {}
    for value, name, index in scored[:count]:
        label = (f"{name}[{', '.join(map(str, index))}]" if index else name) + f", R-hat {value:.3f}"
        chosen[label] = np.asarray(post[name].values)[(slice(None), slice(None), *index)]
    return az.from_dict(posterior=chosen)


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


def _wrapped_title(name: str) -> str:
    """A component's name as a panel title: ``"w[1, 3], R-hat 1.04"`` on two lines."""
    return name.replace(", R-hat", "\nR-hat", 1)


def plot_rank(idata, var_names=None, max_vars: int = 6):
    """Rank plots (Vehtari et al. 2021) of up to ``max_vars`` scalar components, one per panel."""
    import arviz as az

    names = var_names or list(idata.posterior.data_vars)[:max_vars]
    fig, axes = _grid_axes(1, len(names), size=(3.4, 2.6))
    az.plot_rank(idata, var_names=names, ax=axes[0], coords=None)
    for ax, name in zip(axes[0], names):
        # ArviZ scales its fonts with the figure; long component names then run into each other.
        ax.set_title(_wrapped_title(name), fontsize="small")
        ax.set_xlabel("rank (all chains)", fontsize="small")
        ax.set_ylabel("chain", fontsize="small")
        ax.tick_params(labelsize="x-small")
    return fig


def plot_trace(idata, var_names=None, max_vars: int = 4):
    """Trace plots of up to ``max_vars`` scalar variables: per row, the density of each chain
    (left) and its draws (right), one colour per chain, a legend of the chains and the
    variable's name once per row."""
    import arviz as az
    import numpy as np

    names = var_names or list(idata.posterior.data_vars)[:max_vars]
    fig, axes = _grid_axes(len(names), 2, size=(4.2, 2.2))
    for row, name in zip(axes, names):
        values = np.asarray(idata.posterior[name].values, dtype=float)
        values = values.reshape(values.shape[0], values.shape[1], -1)[:, :, 0]  # scalar components
        density, trace = row
        for chain, draws in enumerate(values):
            color = f"C{chain % 10}"
            if np.ptp(draws) > 0:
                grid, pdf = az.kde(draws)
                density.plot(grid, pdf, color=color, linewidth=1.3)
            trace.plot(np.arange(len(draws)), draws, color=color, linewidth=0.9, alpha=0.85,
                       label=f"chain {chain}")
        density.set_ylabel(_wrapped_title(name), fontsize="small")
        density.set_yticks([])
        trace.set_ylabel("value", fontsize="small")
        trace.set_xlim(0, values.shape[1] - 1)
        for ax in row:
            ax.tick_params(labelsize="x-small")
    axes[0, 0].set_title("density per chain (kernel estimate)", fontsize="small")
    axes[0, 1].set_title("draws per chain", fontsize="small")
    axes[-1, 0].set_xlabel("value", fontsize="small")
    axes[-1, 1].set_xlabel("draw (after warm-up)", fontsize="small")
    chains = axes[0, 1].lines
    fig.legend(handles=chains, labels=[line.get_label() for line in chains], loc="outside lower center",
               ncols=min(8, len(chains)), fontsize="small")
    return fig
