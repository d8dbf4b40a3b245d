"""The benchmark's constants and settings: the paper's numbers, how much to run, Gal's prior and
the paper's network."""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch.nn as nn

from bayesdl.models import Dropout

#: Gal & Ghahramani 2016, Table 1, MC dropout: (RMSE, its SE, test LL, its SE).
PAPER = {
    "bostonHousing": (2.97, 0.19, -2.46, 0.06),
    "concrete": (5.23, 0.12, -3.04, 0.02),
    "energy": (1.66, 0.04, -1.99, 0.02),
    "kin8nm": (0.10, 0.00, 0.95, 0.01),
    "naval-propulsion-plant": (0.01, 0.00, 3.80, 0.01),
    "power-plant": (4.02, 0.04, -2.80, 0.01),
    "protein-tertiary-structure": (4.36, 0.01, -2.89, 0.00),
    "wine-quality-red": (0.62, 0.01, -0.93, 0.01),
    "yacht": (1.11, 0.09, -1.55, 0.03),
}

#: the datasets NUTS runs on (the smallest: 308 rows, 6 inputs)
NUTS_DATASETS = ("yacht",)
#: Gal's prior length-scale in the paper's code.
LENGTHSCALE = 1e-2
#: Sample counts at which the test metrics of MC dropout are also computed (prefixes of the T passes).
T_CHECKS = (10, 100, 1000)


@dataclass(frozen=True)
class Settings:
    """How much of the benchmark to run. ``splits``: the first ``splits`` splits (None: all)."""

    splits: int | None = None
    epochs: int | None = None          # None: the dataset's n_epochs
    test_samples: int = 10_000         # T for MC dropout at test time
    val_samples: int = 200             # T on the validation part (grid search)
    other_samples: int = 1000          # posterior samples of mean-field VI and Laplace
    grid: bool = True                  # False: the middle of each grid, no search
    shared_tau: bool = True            # grid search: one network per dropout rate (see validation_scores)
    grid_splits: int | None = None     # search on the first grid_splits splits only (None: every split)
    min_steps: int = 2000              # at least this many steps (the paper's 40 epochs are 120 on yacht)
    val_fraction: float = 0.2
    batch_size: int = 128
    lr: float = 1e-3
    nuts_splits: int = 3               # NUTS on the first nuts_splits splits of NUTS_DATASETS
    nuts_chains: int = 2
    nuts_warmup: int = 200
    nuts_draws: int = 200              # kept draws per chain
    nuts_max_tree_depth: int = 8       # at most 255 leapfrog steps per draw


def quick_settings() -> Settings:
    return Settings(splits=2, epochs=5, test_samples=200, val_samples=50, other_samples=100, grid=False,
                    min_steps=0, nuts_splits=1, nuts_warmup=10, nuts_draws=10)


def dropout_prior_scale(p: float, y_std: float, lengthscale: float = LENGTHSCALE) -> float:
    """The prior scale ``s`` for which the dropout ELBO with noise precision ``tau`` (targets in
    original units, normalised by ``y_std``) is the paper's loss up to a constant factor.

    Keras loss: ``MSE + l^2 (1 - p) / (2 N tau) ||W||^2`` on normalised targets. The dropout
    ELBO per example with noise ``sigma^2 = 1 / (tau y_std^2)`` (normalised units) and prior
    ``N(0, s^2)`` is ``MSE / (2 sigma^2) + ||W||^2 / (2 N s^2 (1 - p))`` (see ``DropoutGuide``);
    multiplying it by ``2 sigma^2`` and matching the weight decay gives
    ``s^2 = 2 / (l^2 (1 - p)^2 y_std^2)`` -- independent of ``tau``.
    """
    return math.sqrt(2.0) / (lengthscale * (1.0 - p) * y_std)


def network(d_in: int, hidden: int, p: float) -> nn.Module:
    """The paper's net: dropout on the inputs and on the hidden layer (slots inactive at p = 0)."""
    return nn.Sequential(Dropout(p), nn.Linear(d_in, hidden), nn.ReLU(), Dropout(p), nn.Linear(hidden, 1))
