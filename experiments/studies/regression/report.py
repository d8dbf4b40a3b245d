"""The report of the week-1 study."""

from __future__ import annotations

from bayesdl.evaluation.diagnostics import convergence_verdict

from .constants import BETA, SIGMA


def render_report(r, figures, n, num_chains) -> str:
    li, lc, gb = r["linear_interval"], r["linear_clusters"], r["gaussian_basis"]
    svi, mc = r["svi_mean_field"], r["nuts"]
    return f"""# Week 1 - Bayesian linear regression

{n} noisy training points per setting; noise sigma = {SIGMA}, beta = 1/(2 sigma^2) = {BETA:g}.

## Linear basis, data on one interval
![]({figures['linear_interval']})

The predictive variance is {li['mean_variance_over_data_range']:.4f} on average over the data
range and {li['variance_at_grid_edges']:.3f} at the edges of the plot: it grows
quadratically away from the data, as the course expects.

## Linear basis, two separated clusters
![]({figures['linear_clusters']})

The variance is smallest at x = {lc['argmin_variance']:.3f}, *between* the clusters where
there is no data (barycenter of the inputs: {lc['barycenter']:.3f}). With a flat prior
(alpha = 0) and beta = 1 the minimum sits at x = {lc['argmin_variance_flat_prior']:.4f},
the barycenter, as derived in the report's question 1.5: a linear model cannot be
uncertain inside the convex hull of its data.

## Gaussian basis (9 centers on [0, 1], scale 0.1), beta = 12.5
![]({figures['gaussian_basis']})

Far from the centers every feature vanishes, and the predictive variance at the plot edges
is {gb['variance_at_grid_edges']:.4f}, the noise level 1/beta = {1 / BETA:.2f}: this model
is *not* more uncertain far from the data (report, questions 2.4-2.5).

## Model selection by the evidence (beyond the course)
![]({figures['evidence']})

Maximising the evidence over (alpha, beta) for each polynomial degree on the sinusoid data
selects degree {r['evidence']['best_degree']}.

## The same model in Pyro
Top: the closed-form predictive (filled band) under each Pyro fit (lines); bottom: the ratio of
their predictive variances, 1 where they agree.

![]({figures['pyro']})

| method | max abs error, posterior mean | max rel. error, posterior std | max rel. error, predictive variance |
|---|---|---|---|
| SVI, mean-field Normal guide | {svi['posterior_mean_max_abs_error']:.4f} | {svi['posterior_std_max_rel_error']:.3f} | {svi['predictive_variance_max_rel_error']:.3f} |
| NUTS, {num_chains} chains | {mc['posterior_mean_max_abs_error']:.4f} | {mc['posterior_std_max_rel_error']:.3f} | {mc['predictive_variance_max_rel_error']:.3f} |

NUTS convergence (ArviZ, {num_chains} chains): {convergence_verdict(mc, num_chains)} Both recover the closed form; the mean-field guide can
only match it because this posterior is nearly uncorrelated (inputs centred on 0), and a
mean-field Gaussian under-estimates the variance of correlated posteriors.

The replicated data of the NUTS posterior against the observed targets (ArviZ):

![]({figures['ppc']})
"""
