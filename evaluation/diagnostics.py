"""ArviZ diagnostics for any ``Posterior``.

:func:`to_inference_data` turns a posterior into ``arviz.InferenceData``; :func:`summary`
gives ``az.summary`` (means, HDIs, R-hat, effective sample sizes). MCMC draws keep their
chains; draws from a variational or Laplace posterior are independent and form one chain
(R-hat is then meaningless, the ESS equals the number of draws).
"""

from __future__ import annotations

import arviz as az
import numpy as np

__all__ = ["to_inference_data", "summary"]


def _draws_by_chain(posterior, num_samples: int, var_names=None) -> dict[str, np.ndarray]:
    """``{site: [chains, draws, ...]}`` from MCMC chains or from ``posterior.sample``."""
    chains = getattr(posterior.approximation, "samples", None)
    if chains is not None:
        draws = {k: v.cpu().numpy() for k, v in chains.items()}
    else:
        draws = {k: v.cpu().numpy()[None] for k, v in posterior.sample(num_samples).items()}
    if var_names is not None:
        missing = sorted(set(var_names) - set(draws))
        if missing:
            raise ValueError(f"var_names {missing} are not latent sites; available: {sorted(draws)}")
        draws = {k: draws[k] for k in var_names}
    return draws


def to_inference_data(posterior, num_samples: int = 1000, var_names=None) -> az.InferenceData:
    """The posterior draws as ``InferenceData`` (group ``posterior``, plus ``sample_stats``
    with ``diverging`` for MCMC)."""
    draws = _draws_by_chain(posterior, num_samples, var_names)
    stats = {}
    diverging = getattr(posterior.approximation, "diverging", None)
    if diverging is not None:
        stats["diverging"] = np.asarray(diverging, dtype=bool)
    return az.from_dict(posterior=draws, sample_stats=stats or None)


def summary(posterior, var_names=None, num_samples: int = 1000):
    """``az.summary`` of the posterior's latent sites (a pandas DataFrame)."""
    return az.summary(to_inference_data(posterior, num_samples, var_names))
