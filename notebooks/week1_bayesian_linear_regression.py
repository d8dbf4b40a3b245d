# ---
# jupyter:
#   jupytext:
#     text_representation:
#       extension: .py
#       format_name: percent
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [markdown]
# # Week 1 -- Bayesian linear regression
#
# The first practical session, question by question, with `bayesdl`'s public API: the
# closed-form posterior and predictive of a Bayesian linear model (Bishop, PRML 3.3), on a
# linear basis and on a Gaussian basis, and the evidence (PRML 3.4).
#
# The model: $y = \Phi(x)^\top w + \varepsilon$, prior $w \sim \mathcal N(0, \alpha^{-1} I)$,
# noise $\varepsilon \sim \mathcal N(0, \beta^{-1})$. The posterior is
# $\mathcal N(\mu, \Sigma)$ with $\Sigma^{-1} = \alpha I + \beta \Phi^\top \Phi$ and
# $\mu = \beta \Sigma \Phi^\top y$; the predictive variance at $x$ is
# $\sigma^2(x) = 1/\beta + \Phi(x)^\top \Sigma \Phi(x)$.
#
# `BAYESDL_NOTEBOOK_SMALL=1` runs everything at a tiny size (CI does, in seconds);
# `BAYESDL_NOTEBOOK_FIGURES=DIR` says where the figures are saved (default `figures/week1`). At
# full size it took 110 s on a busy 2-core CPU, most of it NUTS.

# %%
import os
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import torch

from bayesdl.inference import nuts
from bayesdl.models import BayesianLinearRegression, GaussianBasis, PolynomialBasis

SMALL = os.environ.get("BAYESDL_NOTEBOOK_SMALL") == "1"
FIGURES = Path(os.environ.get("BAYESDL_NOTEBOOK_FIGURES", "figures/week1"))
FIGURES.mkdir(parents=True, exist_ok=True)
rng = np.random.default_rng(0)
N = 12 if SMALL else 25
SIGMA = 0.2
BETA = 1 / (2 * SIGMA**2)  # = 12.5, the course's noise precision

# %% [markdown]
# ## Questions 1.1-1.4: the predictive distribution on the two synthetic sets
#
# A line $y = -0.3 + 0.5 x$ plus noise, observed either on one interval $[-1, 1]$ or on two
# clusters $[-3, -1] \cup [1, 3]$. `PolynomialBasis(1)` is $\Phi(x) = (1, x)$; `fit` computes
# the posterior, `predict` the predictive mean and variance (PRML 3.58-3.59).

# %%
def line(x):
    return -0.3 + 0.5 * x + rng.normal(0, SIGMA, size=x.shape)


x_interval = rng.uniform(-1, 1, N)
x_clusters = np.concatenate([rng.uniform(-3, -1, N // 2), rng.uniform(1, 3, N // 2)])
grid = np.linspace(-8, 8, 401)

fig, axes = plt.subplots(2, 2, figsize=(10, 6.5), sharex=True, sharey="row", layout="constrained")
for (ax, ax_var), x, title in zip(axes.T, (x_interval, x_clusters), ("one interval", "two clusters")):
    y = line(x)
    blr = BayesianLinearRegression(PolynomialBasis(1), alpha=2.0, beta=BETA).fit(x, y)
    mean, variance = blr.predict(grid)
    ax.fill_between(grid, mean - 2 * variance.sqrt(), mean + 2 * variance.sqrt(), alpha=0.25,
                    label=r"$\pm 2\sigma$")
    ax.plot(grid, mean, label="predictive mean")
    ax.scatter(x, y, s=12, color="black", label="training data")
    ax.set(title=f"linear basis, {title}", ylabel="y")
    ax_var.plot(grid, variance, label=r"predictive variance $\sigma^2(x)$")
    ax_var.plot(x, np.full_like(x, 1 / BETA), "|", color="black", markersize=10, label="training inputs")
    ax_var.axvline(grid[variance.argmin()], color="tab:red", linestyle=":", label="minimum")
    ax_var.set(yscale="log", xlabel="x", ylabel="predictive variance")
axes[0, 0].legend()
axes[1, 1].legend()
fig.savefig(FIGURES / "q1_4_predictive_distribution.png", dpi=100)

# %% [markdown]
# On one interval the variance grows away from the data. On two clusters it is smallest
# *between* them (the dotted line), where there is no data at all.

# %% [markdown]
# ## Question 1.5: the variance is minimal at the barycenter
#
# With $\alpha = 0$ (a flat prior) and $\beta = 1$, $\sigma^2(x)$ is a parabola in $x$ whose
# minimum is at $\bar x = \frac1N \sum_i x_i$ (the report derives it). Checked numerically:

# %%
flat = BayesianLinearRegression(PolynomialBasis(1), alpha=0.0, beta=1.0).fit(x_clusters, line(x_clusters))
fine = np.linspace(-3, 3, 60001)
_, flat_variance = flat.predict(fine)
print(f"barycenter {x_clusters.mean():.4f}, "
      f"argmin of the predictive variance {fine[flat_variance.argmin()]:.4f}")

fig, ax = plt.subplots(figsize=(5, 3.5), layout="constrained")
ax.plot(fine, flat_variance, label=r"$\sigma^2(x)$, $\alpha = 0$, $\beta = 1$")
ax.axvline(x_clusters.mean(), color="tab:red", linestyle=":", label="barycenter of the inputs")
ax.set(xlabel="x", ylabel="predictive variance")
ax.legend()
fig.savefig(FIGURES / "q1_5_barycenter.png", dpi=100)

# %% [markdown]
# ## Questions 2.1-2.5: a Gaussian basis, and the limit $1/\beta$
#
# A sinusoid on $[0, 1]$, nine Gaussian features $\exp(-(x - \mu_j)^2 / 2 s^2)$ with centres
# on $[0, 1]$ and $s = 0.1$. Far from the data every feature vanishes, so
# $\Phi(x)^\top \Sigma \Phi(x) \to 0$ and $\sigma^2(x) \to 1/\beta = 0.08$.

# %%
x_sine = rng.uniform(0, 1, N)
y_sine = np.sin(2 * np.pi * x_sine) + rng.normal(0, SIGMA, N)
basis = GaussianBasis(np.linspace(0, 1, 9), scale=0.1)
blr = BayesianLinearRegression(basis, alpha=0.05, beta=BETA).fit(x_sine, y_sine)
grid = np.linspace(-1, 2, 401)
mean, variance = blr.predict(grid)

fig, (ax, ax_var) = plt.subplots(1, 2, figsize=(10, 3.8), layout="constrained")
ax.fill_between(grid, mean - 2 * variance.sqrt(), mean + 2 * variance.sqrt(), alpha=0.25,
                label=r"$\pm 2\sigma$")
ax.plot(grid, mean, label="predictive mean")
ax.scatter(x_sine, y_sine, s=12, color="black", label="training data")
ax.set(title="Gaussian basis, beta = 12.5", xlabel="x", ylabel="y")
ax.legend()
ax_var.plot(grid, variance, label="predictive variance")
ax_var.axhline(1 / BETA, color="gray", linestyle="--", label=f"1 / beta = {1 / BETA:g}")
ax_var.set(xlabel="x", ylabel=r"$\sigma^2(x)$")
ax_var.legend()
fig.savefig(FIGURES / "q2_4_gaussian_basis.png", dpi=100)
print(f"variance at the edges of the grid: {variance[0]:.4f}, {variance[-1]:.4f}; 1/beta = {1 / BETA:.4f}")

# %% [markdown]
# ## Beyond the course: the evidence picks the model
#
# `log_evidence()` is $\ln p(y \mid \alpha, \beta)$ (PRML 3.86); `maximize_evidence` also
# fits $\alpha$ and $\beta$ by the fixed-point iterations of PRML 3.92-3.95. On the sinusoid the
# evidence of a polynomial basis peaks at a moderate degree (PRML fig. 3.14).

# %%
degrees = list(range(0, min(10, N - 4)))
evidence = [BayesianLinearRegression(PolynomialBasis(d)).maximize_evidence(x_sine, y_sine).log_evidence()
            for d in degrees]
print("degree with the highest evidence:", degrees[int(np.argmax(evidence))])

fig, ax = plt.subplots(figsize=(5, 3.5), layout="constrained")
ax.plot(degrees, evidence, "o-")
ax.set(xlabel="polynomial degree", ylabel=r"log evidence $\ln p(y \mid \alpha, \beta)$",
       title="model selection by the evidence")
fig.savefig(FIGURES / "evidence.png", dpi=100)

# %% [markdown]
# ## Beyond the course: the same model sampled by NUTS
#
# `blr.model` is the same model as a Pyro program; `nuts` samples its weights, and the
# sampled posterior mean agrees with the closed form $\mu$.

# %%
line_blr = BayesianLinearRegression(PolynomialBasis(1), alpha=2.0, beta=BETA)
y_interval = line(x_interval)
line_blr.fit(x_interval, y_interval)
posterior = nuts(line_blr.model, torch.as_tensor(x_interval), torch.as_tensor(y_interval),
                 num_samples=100 if SMALL else 500, warmup_steps=100 if SMALL else 500,
                 num_chains=1 if SMALL else 2, seed=0, progress=False)
print("NUTS mean of w:  ", posterior.sample(1000)["w"].mean(0).numpy().round(3))
print("closed-form mean:", line_blr.posterior_mean_.numpy().round(3))
