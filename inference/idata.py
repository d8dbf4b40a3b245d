"""Any ``Posterior`` as ArviZ ``InferenceData``.

:func:`to_inference_data` builds the groups

- ``posterior``: the weights (all of them, or for big networks the last sites that fit in
  ``max_weights``; always a chosen subset with ``var_names``), with named dims such as
  ``fc1_out`` / ``fc1_in``;
- ``posterior_predictive``: replicated targets ``y_rep`` drawn at each weight draw;
- ``log_likelihood``: ``ln p(y_n | theta_s)`` per draw and observation (for PSIS-LOO);
- ``observed_data``: the targets; plus ``sample_stats.diverging`` for MCMC.

MCMC draws keep their chains; draws from a variational or Laplace posterior are independent
and form one chain (R-hat is then meaningless, the ESS equals the number of draws:
:func:`bayesdl.evaluation.diagnostics.summary` then reports the statistics only, and says so). The
predictive groups are computed from *joint weight draws* (``Posterior.draws``), which is what
LOO needs: one parameter value per draw for every observation, through the predictive the
posterior really uses (``Posterior.outputs_at``: a Laplace approximation's linearised network).

Summaries, convergence figures, LOO comparisons and plots of the result live in
:mod:`bayesdl.evaluation.diagnostics`, which runs no model.
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np
import torch

from bayesdl._warn import warn
from bayesdl.checks import check_int
from bayesdl.progress import track

from .posterior import Posterior, check_flag, check_result_size

__all__ = ["to_inference_data", "DEFAULT_DRAWS"]


def _weight_dims(name: str, shape: tuple[int, ...]) -> list[str]:
    module = name.rsplit(".", 1)[0] if "." in name else name
    kind = name.rsplit(".", 1)[-1]
    if kind == "weight" and len(shape) >= 2:
        return [f"{module}_out", f"{module}_in"] + [f"{module}_k{i}" for i in range(len(shape) - 2)]
    if kind == "bias" and len(shape) == 1:
        return [f"{module}_out"]
    return [f"{name}_dim_{i}" for i in range(len(shape))]


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


#: Draws taken from a posterior that draws afresh (VI, MC dropout, Laplace) when not told.
DEFAULT_DRAWS = 200


def _point_mass_sites(draws: dict) -> list[str]:
    """Sites whose draws are all equal (e.g. the layers a dropout guide keeps at ``M``)."""
    return [name for name, value in draws.items()
            if value.shape[0] * value.shape[1] > 1 and bool((value == value[:1, :1]).all())]


def _check_var_names(var_names) -> list[str] | None:
    if var_names is None:
        return None
    if isinstance(var_names, str):  # one site, as ArviZ takes it
        return [var_names]
    names = list(var_names) if isinstance(var_names, Iterable) else None
    if names is None or not all(isinstance(v, str) for v in names):
        raise TypeError(f"var_names must be a site name or a list of them, e.g. ['head.weight'], got "
                        f"{var_names!r}")
    if not names:
        raise ValueError("var_names is empty; pass the sites to keep, or None for the default choice")
    return names


@torch.no_grad()
def to_inference_data(posterior: Posterior, x=None, y=None, num_samples: int | None = None, var_names=None,
                      max_weights: int = 5000, seed: int = 0, progress: bool = True):
    """The posterior as ``arviz.InferenceData``; with ``x`` and ``y``, the predictive groups too.

    ``num_samples`` defaults by the kind of posterior: all the draws MCMC holds (``num_samples``
    is then ignored), one draw of a point mass (MAP), and :data:`DEFAULT_DRAWS` (200)
    independent draws of the others. The predictive groups cost one network pass over ``x``
    per draw (a LeNet on 300 images: about 0.1 s a draw on a 2-core CPU), shown by a progress
    bar when ``progress``. ``seed`` fixes the replicated targets.

    Sites whose draws are all equal -- the layers a dropout guide keeps at a point, the
    weights of a MAP -- have no spread, R-hat or ESS: they are left out of the ``posterior``
    group (listed in its ``point_mass_sites`` attribute) with a ``UserWarning``, except for a
    point-mass posterior, whose one draw is kept as it is.

    Checked first: ``x`` and ``y`` come together (both or neither), ``num_samples`` and
    ``max_weights`` are integers >= 1, ``var_names`` one site name or a non-empty list of them,
    ``seed`` >= 0; predictive groups above :data:`~bayesdl.inference.posterior.MAX_RESULT_BYTES`
    are refused before any draw.

    Example::

        >>> import torch
        >>> import torch.nn as nn
        >>> from bayesdl.models import BNN
        >>> _ = torch.manual_seed(0)
        >>> x = torch.rand(8, 2); y = (x.sum(1) > 1).long()     # 8 points in [0, 1]^2, 2 classes
        >>> from bayesdl.inference import MeanFieldGuide, Posterior, to_inference_data
        >>> model = BNN(nn.Linear(2, 2))
        >>> posterior = Posterior(model, MeanFieldGuide(model))
        >>> idata = to_inference_data(posterior, x, y, num_samples=4, progress=False)
        >>> sorted(idata.groups())
        ['log_likelihood', 'observed_data', 'posterior', 'posterior_predictive']
        >>> idata.posterior["weight"].shape, idata.log_likelihood["y"].shape   # (chain, draw, ...)
        ((1, 4, 2, 2), (1, 4, 8))
    """
    import arviz as az

    if not isinstance(posterior, Posterior):
        raise TypeError(f"to_inference_data needs a bayesdl Posterior, got {type(posterior).__name__}")
    if (x is None) != (y is None):
        missing = "y" if y is None else "x"
        raise ValueError(f"the predictive groups need x and y together, but {missing} is missing: pass "
                         "both (to_inference_data(posterior, x, y)) for log_likelihood and "
                         "posterior_predictive, or neither for the posterior draws alone")
    if num_samples is not None:
        num_samples = check_int(num_samples, "num_samples", minimum=1)
    max_weights = check_int(max_weights, "max_weights", minimum=1)
    seed = check_int(seed, "seed", minimum=0)
    progress = check_flag(progress, "progress")
    var_names = _check_var_names(var_names)
    if num_samples is None:
        num_samples = 1 if posterior.is_point_mass else DEFAULT_DRAWS
    if x is not None:
        x, y = posterior.bnn.check_data(x, y)
        count = posterior.fixed_draws or num_samples
        check_result_size(2 * count * x.shape[0] * 4, "to_inference_data",
                          f"log_likelihood and posterior_predictive: 2 x {count:,} draws x {x.shape[0]:,} "
                          "observations x 4 bytes",
                          "ask for fewer draws (num_samples) or pass fewer observations")
    draws = posterior.draws(num_samples)
    samples = {k: v.detach().cpu() for k, v in draws.samples.items()}
    constant = [] if posterior.is_point_mass else _point_mass_sites(samples)
    if constant and var_names is None:
        warn(
            f"{len(constant)} site(s) of this {posterior.method} posterior are point masses (all draws "
            f"equal: {', '.join(constant)}); they have no spread, R-hat or ESS and are left out of the "
            "posterior group")
        samples = {k: v for k, v in samples.items() if k not in constant}
    chosen = _select(samples, var_names, max_weights)
    dims = {name: _weight_dims(name, tuple(value.shape[2:])) for name, value in chosen.items()}
    groups = {"posterior": {k: v.numpy() for k, v in chosen.items()}}
    if draws.diverging is not None:
        groups["sample_stats"] = {"diverging": draws.diverging.cpu().numpy().astype(bool)}
    if x is not None:
        bnn = posterior.bnn
        generator = torch.Generator().manual_seed(seed)
        log_lik = torch.empty(draws.num_chains, draws.num_draws, x.shape[0])
        replicated = torch.empty(draws.num_chains, draws.num_draws, x.shape[0])
        passes = track(posterior.outputs_by_draw(x, draws), desc="to_inference_data", unit="draw",
                       total=draws.num_chains * draws.num_draws, enabled=progress)
        for c, d, output in passes:  # one pass serves both groups
            log_lik[c, d] = bnn.likelihood.log_prob(output, y).cpu()
            replicated[c, d] = bnn.likelihood.sample_targets(output, generator)
        groups["log_likelihood"] = {"y": log_lik.numpy()}
        groups["posterior_predictive"] = {"y": replicated.numpy()}
        groups["observed_data"] = {"y": y.detach().cpu().double().numpy()}
        dims["y"] = ["obs"]
    idata = az.from_dict(**groups, dims=dims)
    idata.posterior.attrs["method"] = posterior.method
    idata.posterior.attrs["sites"] = ", ".join(chosen)
    idata.posterior.attrs["point_mass_sites"] = ", ".join(constant)
    return idata
