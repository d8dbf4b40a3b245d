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
# # Week 2 -- Bayesian neural networks
#
# The second practical session with `bayesdl`'s public API. Part 1: Bayesian logistic
# regression on a linearly separable 2-D set, by MAP, Laplace and variational inference
# (questions 1.1-1.3). Part 2: an MLP on two moons by mean-field VI and MC dropout
# (question 2.1). Beyond the course, NUTS samples each posterior as the reference.
#
# Every method is `approximate(name, model, data, **options)` and returns a `Posterior`;
# the maps below are drawn the same way for all of them.
#
# `BAYESDL_NOTEBOOK_SMALL=1` runs everything at a tiny size (CI does, in seconds);
# `BAYESDL_NOTEBOOK_FIGURES=DIR` says where the figures are saved (default `figures/week2`). At
# full size it took 11 minutes on a busy 2-core CPU, most of it NUTS on the MLP's 82 weights.

# %%
import os
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import torch
import torch.nn as nn

from bayesdl.evaluation import grid_inputs, mutual_information, plot_probability_map
from bayesdl.experiments.data import linear_blobs, two_moons
from bayesdl.inference import approximate
from bayesdl.models import BNN, MLP

SMALL = os.environ.get("BAYESDL_NOTEBOOK_SMALL") == "1"
FIGURES = Path(os.environ.get("BAYESDL_NOTEBOOK_FIGURES", "figures/week2"))
FIGURES.mkdir(parents=True, exist_ok=True)
SAMPLES = 20 if SMALL else 200  # posterior samples per prediction
torch.manual_seed(0)

# %% [markdown]
# One picture per posterior: $p(y = 1 \mid x, \mathcal D)$ over a grid reaching far beyond
# the data, with the training points: `grid_inputs` makes the grid, the posterior predicts on
# it, `plot_probability_map` draws the predictive (or its entropy, or the mutual information).

# %%
def probability_map(ax, posterior, x, y, extent, title, num_samples=SAMPLES, colorbar=False):
    grid = grid_inputs(extent, resolution=30 if SMALL else 80)
    prediction = posterior.predict(grid, num_samples=num_samples)
    plot_probability_map(grid, prediction, x, y, ax=ax, title=title, colorbar=colorbar)

# %% [markdown]
# ## Part 1 -- Bayesian logistic regression
#
# `BNN(nn.Linear(2, 1), likelihood="bernoulli")` is logistic regression with a standard
# Normal prior on the three weights. Full-batch training: one step per epoch.

# %%
n = 40 if SMALL else 100
x, y = linear_blobs(n, seed=0)
steps = 300 if SMALL else 2000
svi = {"epochs": steps, "lr": 0.05, "batch_size": n, "shuffle": False, "seed": 0, "progress": False}
logistic = BNN(nn.Linear(2, 1), prior_scale=1.0, likelihood="bernoulli")

# %% [markdown]
# ### Questions 1.1-1.2: the MAP, and the Laplace approximation around it
#
# The MAP is a point mass: its $p(y \mid x)$ depends only on the distance to the separating
# line, so it stays near 0 or 1 however far from the data. Laplace puts a Gaussian at the MAP
# with the inverse Hessian of the negative log posterior as covariance; its predictive
# grows uncertain away from the data.

# %%
map_posterior = approximate("map", logistic, (x, y), **svi)
laplace = approximate("laplace", logistic, (x, y), map_posterior=map_posterior,
                      subset="all", structure="full")

fig, axes = plt.subplots(1, 2, figsize=(10, 4.2), layout="constrained")
probability_map(axes[0], map_posterior, x, y, 12, "MAP")
probability_map(axes[1], laplace, x, y, 12, "Laplace (full Hessian)", colorbar=True)
fig.savefig(FIGURES / "q1_2_map_laplace.png", dpi=100)

# %% [markdown]
# ### Question 1.3: variational inference
#
# Mean-field Gaussian VI: a Normal guide with independent weights, fitted by maximising the
# ELBO. Its predictive looks like Laplace's; its training differs -- the weights are random
# during training, so the ELBO is a noisy estimate (Fig. 6 of the report).

# %%
mean_field = approximate("mean_field", logistic, (x, y), init_scale=0.1, **svi)

fig, axes = plt.subplots(1, 2, figsize=(10, 4.2), layout="constrained")
probability_map(axes[0], mean_field, x, y, 12, "mean-field VI", colorbar=True)
history = mean_field.history
axes[1].plot(np.array(history.epoch_elbo) / n, label="ELBO / N")
axes[1].plot(-np.array(history.epoch_kl) / n, label="- KL / N")
axes[1].set(xscale="log", xlabel="epoch (one full-batch step)", ylabel="nats per example",
            title="mean-field VI: training")
axes[1].legend()
fig.savefig(FIGURES / "q1_3_variational.png", dpi=100)

# %% [markdown]
# ### NUTS, the reference
#
# Three weights are few enough to sample the exact posterior.

# %%
nuts_options = {"num_samples": 100 if SMALL else 600, "warmup_steps": 100 if SMALL else 600,
                "num_chains": 1 if SMALL else 2, "seed": 0, "progress": False}
reference = approximate("nuts", logistic, (x, y), **nuts_options)

far = torch.tensor([[10.0, 10.0], [-10.0, -10.0], [10.0, -10.0], [-10.0, 10.0]])  # the corners of the map
for name, posterior in {"MAP": map_posterior, "Laplace": laplace, "mean-field VI": mean_field,
                        "NUTS": reference}.items():
    confidence = posterior.predictive_probs(far).max(-1).values.mean()
    print(f"{name:14s} confidence far from the data: {confidence:.3f}")

fig, ax = plt.subplots(figsize=(5, 4.2), layout="constrained")
probability_map(ax, reference, x, y, 12, "NUTS", colorbar=True)
fig.savefig(FIGURES / "nuts_logistic.png", dpi=100)

# %% [markdown]
# ## Part 2 -- an MLP on two moons
#
# ### Question 2.1: mean-field VI against MC dropout
#
# MC dropout is variational inference with Bernoulli masks on the units (Gal & Ghahramani
# 2016): `approximate("dropout", ...)` trains the network with dropout and predicts with it on.
# Compare its map with mean-field VI's, and with NUTS's. With few passes the MC dropout map
# is noisy: each input draws its own masks.

# %%
n = 60 if SMALL else 200
x, y = two_moons(n, noise=0.15, seed=0)
steps = 200 if SMALL else 3000
svi = {"epochs": steps, "lr": 0.02, "batch_size": n, "shuffle": False, "seed": 0, "progress": False}
mlp = BNN(MLP(2, 16, 2, dropout=0.2), prior_scale=1.0, likelihood="categorical")

vi = approximate("mean_field", mlp, (x, y), init_scale=0.05, **svi)
dropout = approximate("dropout", mlp, (x, y), p=0.2, **svi)
draws = 30 if SMALL else 300
moons_nuts = approximate("nuts", mlp, (x, y), num_samples=draws, warmup_steps=draws,
                         num_chains=1 if SMALL else 2, max_tree_depth=5 if SMALL else 8, seed=0,
                         progress=False)

fig, axes = plt.subplots(1, 4, figsize=(19, 4.2), layout="constrained")
probability_map(axes[0], vi, x, y, 6, "mean-field VI")
probability_map(axes[1], dropout, x, y, 6, "MC dropout (p = 0.2)")
probability_map(axes[2], dropout, x, y, 6, "MC dropout, 10 passes only", num_samples=10)
probability_map(axes[3], moons_nuts, x, y, 6, "NUTS", colorbar=True)
fig.savefig(FIGURES / "q2_1_vi_vs_dropout.png", dpi=100)

# %% [markdown]
# How uncertain each is far from the data, and how much of it is about the weights (the
# mutual information, in nats; `predict` returns the `[S, N, C]` samples):

# %%
far = torch.tensor([[5.0, 5.0], [-5.0, -5.0], [5.0, -5.0], [-5.0, 5.0]])
for name, posterior in {"mean-field VI": vi, "MC dropout": dropout, "NUTS": moons_nuts}.items():
    probs = posterior.predict(far, num_samples=SAMPLES).probs
    print(f"{name:14s} confidence far {probs.mean(0).max(-1).values.mean():.3f}, "
          f"MI far {mutual_information(probs).mean():.3f} nats")
