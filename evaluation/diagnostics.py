"""ArviZ diagnostics for any ``Posterior``.

:func:`to_inference_data` turns a posterior into ``arviz.InferenceData`` with the groups

- ``posterior``: the weights (all of them, or for big networks the last sites that fit in
  ``max_weights``; always a chosen subset with ``var_names``), with named dims such as
  ``fc1_out`` / ``fc1_in``;
- ``posterior_predictive``: replicated targets ``y_rep`` drawn at each weight draw;
- ``log_likelihood``: ``ln p(y_n | theta_s)`` per draw and observation (for PSIS-LOO);
- ``observed_data``: the targets; plus ``sample_stats.diverging`` for MCMC.

MCMC draws keep their chains; draws from a variational or Laplace posterior are independent
and form one chain (R-hat is then meaningless, the ESS equals the number of draws). The
predictive groups are computed from *joint weight draws* (``posterior.sample``), which is
what LOO needs: one parameter value per draw for every observation. An approximation whose
predictive is not the network at the drawn weights says so with an ``outputs_at(x, draws)``
method -- a Laplace approximation predicts through the linearised network (GLM), and its
log-likelihoods must judge that predictive, not the far worse one of the raw network.

Works on any object with ``model`` (a :class:`bayesdl.models.BNN` for the predictive groups),
``sample(S)`` and ``approximation``; this module imports nothing from ``inference``.
"""

from __future__ import annotations

import numpy as np
import torch

__all__ = ["to_inference_data", "summary", "convergence", "compare", "save", "load", "plot_rank",
           "plot_trace"]


def _is_bnn(model) -> bool:
    return all(hasattr(model, a) for a in ("network", "likelihood", "sites"))


def _weight_dims(name: str, shape: tuple[int, ...]) -> list[str]:
    module = name.rsplit(".", 1)[0] if "." in name else name
    kind = name.rsplit(".", 1)[-1]
    if kind == "weight" and len(shape) >= 2:
        return [f"{module}_out", f"{module}_in"] + [f"{module}_k{i}" for i in range(len(shape) - 2)]
    if kind == "bias" and len(shape) == 1:
        return [f"{module}_out"]
    return [f"{name}_dim_{i}" for i in range(len(shape))]


def _draws_by_chain(posterior, num_samples: int) -> dict[str, torch.Tensor]:
    """``{site: [chains, draws, ...]}``: MCMC chains as they are, other draws as one chain."""
    chains = getattr(posterior.approximation, "samples", None)
    if chains is not None:
        return {k: v.detach().cpu() for k, v in chains.items()}
    return {k: v.detach().cpu()[None] for k, v in posterior.sample(num_samples).items()}


def _select(draws: dict, var_names, max_weights: int) -> dict:
    if var_names is not None:
        missing = sorted(set(var_names) - set(draws))
        if missing:
            raise ValueError(f"var_names {missing} are not latent sites; available: {sorted(draws)}")
        return {k: draws[k] for k in var_names}
    kept, total = [], 0
    for name in reversed(list(draws)):  # the last layers first: they are what people look at
        size = int(np.prod(draws[name].shape[2:]))
        if kept and total + size > max_weights:
            break
        kept.append(name)
        total += size
    return {k: draws[k] for k in reversed(kept)}


@torch.no_grad()
def to_inference_data(posterior, x=None, y=None, num_samples: int = 500, var_names=None,
                      max_weights: int = 5000, seed: int = 0):
    """The posterior as ``arviz.InferenceData``; with ``x`` and ``y``, the predictive groups too.

    ``num_samples`` draws are taken from non-MCMC posteriors (MCMC keeps all its draws).
    """
    import arviz as az

    draws = _draws_by_chain(posterior, num_samples)
    chosen = _select(draws, var_names, max_weights)
    dims = {name: _weight_dims(name, tuple(value.shape[2:])) for name, value in chosen.items()}
    groups = {"posterior": {k: v.numpy() for k, v in chosen.items()}}
    diverging = getattr(posterior.approximation, "diverging", None)
    if diverging is not None:
        groups["sample_stats"] = {"diverging": np.asarray(diverging, dtype=bool)}
    model = posterior.model
    if x is not None and y is not None:
        if not _is_bnn(model):
            raise TypeError("the predictive groups need a bayesdl.models.BNN model; call without x and y")
        x = model.check_inputs(x)
        x, y = model.check_data(x, y)
        chains, per_chain = next(iter(draws.values())).shape[:2]
        generator = torch.Generator().manual_seed(seed)
        log_lik = torch.empty(chains, per_chain, x.shape[0])
        replicated = torch.empty(chains, per_chain, x.shape[0])
        outputs_at = getattr(posterior.approximation, "outputs_at", None)
        for c in range(chains):
            chain = {k: v[c].to(x.device) for k, v in draws.items()}
            if outputs_at is not None:
                chain_outputs = outputs_at(x, chain)
            else:
                chain_outputs = (model.network(x, {k: v[d] for k, v in chain.items()})
                                 for d in range(per_chain))
            for d, output in enumerate(chain_outputs):
                log_lik[c, d] = model.likelihood.log_prob(output, y).cpu()
                prediction = model.likelihood.predict(output)
                if isinstance(prediction, tuple):
                    mean, noise = prediction
                    replicated[c, d] = (mean + noise * torch.randn(mean.shape, generator=generator)).cpu()
                else:
                    labels = torch.multinomial(prediction.cpu(), 1, generator=generator)[:, 0]
                    replicated[c, d] = labels.float()
        groups["log_likelihood"] = {"y": log_lik.numpy()}
        groups["posterior_predictive"] = {"y": replicated.numpy()}
        groups["observed_data"] = {"y": y.detach().cpu().double().numpy()}
        dims["y"] = ["obs"]
    idata = az.from_dict(**groups, dims=dims)
    idata.posterior.attrs["method"] = type(posterior.approximation).__name__
    idata.posterior.attrs["sites"] = ", ".join(chosen)
    return idata


def summary(source, var_names=None, num_samples: int = 500):
    """``az.summary`` (means, HDIs, R-hat, ESS) of a posterior or an ``InferenceData``."""
    import arviz as az

    if isinstance(source, az.InferenceData):
        idata = source
    else:
        idata = to_inference_data(source, num_samples=num_samples, var_names=var_names)
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
        raise ValueError(f"{missing} have no log_likelihood group; build them with to_inference_data(x=, y=)")
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
