"""NUTS (Pyro's MCMC) as the exact reference for models small enough to sample.

Bayesian linear and logistic regression, or an MLP with one small hidden layer on 2-D data:
the draws are the ground truth every approximation is compared against. Chains run one
after another with seeds ``seed, seed + 1, ...``, so results are reproducible and R-hat is
computed across genuinely independent chains.
"""

from __future__ import annotations

import time
import warnings

import numpy as np
import pyro
import torch
from pyro.infer import MCMC, NUTS

from bayesdl.checks import check_int
from models.bnn import bnn_of

from .posterior import Posterior

__all__ = ["nuts", "MCMCSamples"]


class MCMCSamples:
    """Draws of a model's latent sites, kept by chain: ``samples[site]`` is ``[chains, draws, ...]``.

    ``diverging`` ``[chains, draws]`` marks divergent transitions. ``sample_parameters(S)``
    returns ``S`` draws evenly spaced over all chains (with repetition when ``S`` exceeds the
    number of draws), so every prediction batch uses the same draws.
    """

    def __init__(self, model, samples: dict[str, torch.Tensor], diverging: np.ndarray,
                 seconds: float = 0.0):
        self.model = model
        self.samples = samples
        self.diverging = diverging
        self.seconds = seconds

    @property
    def num_chains(self) -> int:
        return next(iter(self.samples.values())).shape[0]

    @property
    def num_draws(self) -> int:
        return next(iter(self.samples.values())).shape[1]

    def _indices(self, num_samples: int) -> torch.Tensor:
        total = self.num_chains * self.num_draws
        return torch.linspace(0, total - 1, num_samples).round().long()

    def sample_parameters(self, num_samples: int) -> dict[str, torch.Tensor]:
        index = self._indices(num_samples)
        return {name: value.reshape(-1, *value.shape[2:])[index] for name, value in self.samples.items()}

    def predictive_outputs(self, x, num_samples):
        bnn = bnn_of(self.model)
        if bnn is None:
            raise TypeError("predict needs a models.BNN model; use sample() for the latent draws")
        draws = self.sample_parameters(num_samples)
        return torch.stack([bnn.network(x, {k: v[s].to(x.device) for k, v in draws.items()})
                            for s in range(num_samples)])


def nuts(model, *args, num_samples: int = 500, warmup_steps: int = 500, num_chains: int = 4,
         seed: int = 0, progress: bool = True, target_accept_prob: float = 0.8,
         max_tree_depth: int = 10, jit_compile: bool = False, **kwargs) -> Posterior:
    """Sample the posterior of a Pyro ``model(*args, **kwargs)`` with NUTS; return a ``Posterior``.

    ``num_chains`` chains of ``warmup_steps`` adaptation steps (step size and a diagonal
    mass matrix) and ``num_samples`` kept draws each. ``jit_compile=True`` traces the
    potential energy with the PyTorch JIT: about twice as fast for small models, but only for
    models whose control flow does not depend on the sampled values. Check convergence with
    :func:`evaluation.diagnostics.summary` (R-hat, effective sample size).
    """
    num_samples = check_int(num_samples, "num_samples", minimum=1)
    warmup_steps = check_int(warmup_steps, "warmup_steps", minimum=0)
    num_chains = check_int(num_chains, "num_chains", minimum=1)
    chains, diverging = [], []
    start = time.perf_counter()
    for chain in range(num_chains):
        pyro.set_rng_seed(seed + chain)
        kernel = NUTS(model, target_accept_prob=target_accept_prob, max_tree_depth=max_tree_depth,
                      jit_compile=jit_compile, ignore_jit_warnings=jit_compile)
        mcmc = MCMC(kernel, num_samples=num_samples, warmup_steps=warmup_steps, num_chains=1,
                    disable_progbar=not progress)
        with warnings.catch_warnings():
            # Pyro's jit_compile calls torch.jit.trace, which torch marks as deprecated.
            warnings.filterwarnings("ignore", message=".*torch.jit.trace.*", category=FutureWarning)
            mcmc.run(*args, **kwargs)
        chains.append({k: v.detach() for k, v in mcmc.get_samples().items()})
        flags = np.zeros(num_samples, dtype=bool)
        flags[mcmc.diagnostics()["divergences"]["chain 0"]] = True
        diverging.append(flags)
    samples = {name: torch.stack([c[name] for c in chains]) for name in chains[0]}
    approximation = MCMCSamples(model, samples, np.stack(diverging), time.perf_counter() - start)
    return Posterior(model, approximation)
