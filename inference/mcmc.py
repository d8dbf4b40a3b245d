"""NUTS (Pyro's MCMC) as the exact reference for models small enough to sample.

Bayesian linear and logistic regression, or an MLP with one small hidden layer on 2-D data:
the draws are the ground truth every approximation is compared against. Chains run one
after another with seeds ``seed, seed + 1, ...``, so results are reproducible and R-hat is
computed across genuinely independent chains.

For a :class:`bayesdl.models.BNN`, NUTS runs on a potential written directly over the flat weight
vector -- the model's log joint, ``-ln p(theta) - sum_n ln p(y_n | x_n, theta)`` -- instead
of replaying the Pyro model at every leapfrog step: the same density (tested against the
model's trace) with far less Python per gradient. Any other Pyro model runs as it is.
"""

from __future__ import annotations

import inspect
import math
import time
import warnings

import numpy as np
import pyro
import torch
from pyro.infer import MCMC, NUTS

from bayesdl.checks import check_int, check_probability
from bayesdl.models.bnn import bnn_of
from bayesdl.progress import is_terminal, progress_bar

from .posterior import Approximation, Draws, Posterior, _require_bnn, check_flag

__all__ = ["nuts", "MCMCSamples"]


class MCMCSamples(Approximation):
    """Draws of a model's latent sites, kept by chain: ``samples[site]`` is ``[chains, draws, ...]``.

    ``diverging`` ``[chains, draws]`` marks divergent transitions. ``sample_parameters(S)``
    returns ``S`` draws evenly spaced over all chains (with repetition when ``S`` exceeds the
    number of draws), so every prediction batch uses the same draws; ``draws()`` returns all of
    them by chain; the point estimate is their mean.

    :func:`nuts` returns one inside its :class:`Posterior`; draws of another sampler plug in the
    same way::

        >>> import numpy as np
        >>> import torch
        >>> import torch.nn as nn
        >>> from bayesdl.models import BNN
        >>> from bayesdl.inference import MCMCSamples, Posterior
        >>> model = BNN(nn.Linear(2, 1), likelihood="bernoulli")
        >>> samples = {"weight": torch.arange(12.0).reshape(2, 3, 1, 2),   # 2 chains x 3 draws
        ...            "bias": torch.zeros(2, 3, 1)}
        >>> posterior = Posterior(model, MCMCSamples(model, samples, np.zeros((2, 3), dtype=bool)))
        >>> posterior.fixed_draws, posterior.draws().num_chains
        (6, 2)
        >>> posterior.point_estimate()["weight"]                            # the mean of the draws
        tensor([[5., 6.]])
        >>> posterior.sample(3)["weight"][:, 0, 0]                          # evenly spaced over the draws
        tensor([ 0.,  4., 10.])
    """

    def __init__(self, model, samples: dict[str, torch.Tensor], diverging: np.ndarray,
                 seconds: float = 0.0):
        self.model = model
        self.chains = Draws(samples, torch.as_tensor(diverging, dtype=torch.bool))
        self.seconds = seconds

    @property
    def samples(self) -> dict[str, torch.Tensor]:
        return self.chains.samples

    @property
    def diverging(self) -> np.ndarray:
        return self.chains.diverging.numpy()

    @property
    def num_chains(self) -> int:
        return self.chains.num_chains

    @property
    def num_draws(self) -> int:
        return self.chains.num_draws

    @property
    def fixed_draws(self) -> int:
        return self.num_chains * self.num_draws

    def _indices(self, num_samples: int) -> torch.Tensor:
        return torch.linspace(0, self.fixed_draws - 1, num_samples).round().long()

    def sample_parameters(self, num_samples: int) -> dict[str, torch.Tensor]:
        index = self._indices(num_samples)
        return {name: value.reshape(-1, *value.shape[2:])[index] for name, value in self.samples.items()}

    def draw_bytes(self):
        return sum(value[0, 0].numel() * value.element_size() for value in self.samples.values())

    def point_estimate(self):
        return {name: value.mean((0, 1)) for name, value in self.samples.items()}

    def draws(self, num_samples):
        return self.chains

    def predictive_outputs(self, x, num_samples):
        bnn = _require_bnn(self.model)
        draws = self.sample_parameters(num_samples)
        return torch.stack([bnn.network(x, {k: v[s].to(x.device) for k, v in draws.items()})
                            for s in range(num_samples)])


def _bnn_potential(bnn, x, y, dataset_size=None):
    """``U(theta)`` over the flat weights of a BNN, and the weight count."""
    x, y = bnn.check_data(x, y)
    n = x.shape[0]
    scale = 1.0 if dataset_size is None else check_int(dataset_size, "dataset_size", minimum=n) / n
    inv_var = 1.0 / bnn.prior_scales.detach() ** 2
    constant = float(torch.log(bnn.prior_scales).sum()) + 0.5 * bnn.num_latent * math.log(2 * math.pi)
    likelihood = bnn.likelihood

    def potential(params):
        theta = params["theta"]
        log_prior = -0.5 * (theta * theta * inv_var).sum() - constant
        log_lik = likelihood.log_prob(bnn.network(x, theta), y).sum() * scale
        return -(log_prior + log_lik)

    return potential


def nuts(model, *args, num_samples: int = 500, warmup_steps: int = 500, num_chains: int = 4,
         seed: int = 0, progress: bool = True, target_accept_prob: float = 0.8,
         max_tree_depth: int = 10, jit_compile: bool = False, threads: int | None = 1,
         initial=None, **kwargs) -> Posterior:
    """Sample the posterior of a Pyro ``model(*args, **kwargs)`` with NUTS; return a ``Posterior``.

    ``num_chains`` chains of ``warmup_steps`` adaptation steps (step size and a diagonal
    mass matrix) and ``num_samples`` kept draws each. ``jit_compile=True`` traces the
    potential energy with the PyTorch JIT: about twice as fast for small models, but only for
    models whose control flow does not depend on the sampled values (not for BNNs, whose
    network runs through ``torch.func.functional_call``). Check convergence with
    :func:`bayesdl.evaluation.diagnostics.summary` of :func:`bayesdl.inference.to_inference_data`
    (R-hat, effective sample size).

    ``seed`` is an integer >= 0 (chain ``c`` uses ``seed + c``); ``target_accept_prob`` lies
    in (0, 1); ``max_tree_depth`` >= 1.

    What the defaults cost: ``num_chains * (warmup_steps + num_samples)`` = 4,000 NUTS
    iterations, each up to ``2 ** max_tree_depth`` gradient evaluations, run one chain after
    another. For Bayesian linear regression with two weights that is about 35 s on a 2-core CPU
    (``jit_compile=True`` about halves it); for small networks, budget by the gradient cost.
    Progress: Pyro's bar per chain on a terminal, a line per chain in a log.

    ``threads`` sets torch's intra-op threads while sampling (restored afterwards): models small
    enough for NUTS are made of tiny operations, for which one thread is fastest (a 2-16-2 MLP
    gradient on 200 points: 0.23 ms on one thread, 0.33 ms on two). ``None`` keeps the setting.

    For a BNN the model arguments are ``(x, y)`` (and optionally ``dataset_size``); chains start
    from weights drawn uniformly in [-2, 2] (Pyro's default initialisation), or from ``initial``:
    one ``{site: tensor}`` (e.g. a MAP's ``point_estimate()``) for every chain, or a list of
    ``num_chains`` of them, one per chain (e.g. the MAPs of different seeds, so the chains
    start in different modes and R-hat can see it). A learned noise scale of a Gaussian
    likelihood stays at its current value: only the weights are sampled.

    Example (a very short run: budget hundreds of draws in practice)::

        >>> import torch
        >>> import torch.nn as nn
        >>> from bayesdl.models import BNN
        >>> _ = torch.manual_seed(0)
        >>> x = torch.rand(8, 2); y = (x.sum(1) > 1).long()     # 8 points in [0, 1]^2, 2 classes
        >>> from bayesdl.inference import nuts
        >>> posterior = nuts(BNN(nn.Linear(2, 2)), x, y, num_samples=10, warmup_steps=10, num_chains=2,
        ...                  progress=False)
        >>> draws = posterior.draws()                   # every draw, kept by chain
        >>> draws.samples["weight"].shape, draws.diverging.shape, posterior.fixed_draws
        (torch.Size([2, 10, 2, 2]), torch.Size([2, 10]), 20)
        >>> posterior.predict(x[:3], num_samples=20).probs.shape
        torch.Size([20, 3, 2])
    """
    num_samples = check_int(num_samples, "num_samples", minimum=1)
    warmup_steps = check_int(warmup_steps, "warmup_steps", minimum=0)
    num_chains = check_int(num_chains, "num_chains", minimum=1)
    seed = check_int(seed, "seed", minimum=0)
    target_accept_prob = check_probability(target_accept_prob, "target_accept_prob", lower_inclusive=False)
    max_tree_depth = check_int(max_tree_depth, "max_tree_depth", minimum=1)
    progress = check_flag(progress, "progress")
    jit_compile = check_flag(jit_compile, "jit_compile")
    if threads is not None:
        threads = check_int(threads, "threads", minimum=1)
    if seed + num_chains > 2**32:  # chain c is seeded with seed + c, and numpy takes seeds < 2**32
        raise ValueError(f"seed must be < 2**32 - num_chains = {2**32 - num_chains}, got {seed}")
    if not callable(model):
        raise TypeError(f"model must be a Pyro model (a function) or a bayesdl.models.BNN, got "
                        f"{type(model).__name__}")
    bnn = bnn_of(model)
    if bnn is not None and jit_compile:
        raise ValueError("jit_compile is not available for BNN models (functional_call cannot be traced)")
    if bnn is not None:
        try:
            inspect.signature(_bnn_potential).bind(bnn, *args, **kwargs)
        except TypeError as err:
            raise TypeError(f"nuts of a BNN samples p(weights | x, y): pass nuts(model, x, y, ...), and "
                            f"optionally dataset_size=N ({err})") from None
    potential = _bnn_potential(bnn, *args, **kwargs) if bnn is not None else None
    starts = _initial_weights(bnn, initial, num_chains)
    previous_threads = torch.get_num_threads()
    if threads is not None:
        torch.set_num_threads(threads)
    try:
        options = {"target_accept_prob": target_accept_prob, "max_tree_depth": max_tree_depth}
        chains, diverging, seconds = _run_chains(model, bnn, potential, args, kwargs, num_samples,
                                                 warmup_steps, num_chains, seed, progress, jit_compile,
                                                 options, starts)
    finally:
        torch.set_num_threads(previous_threads)
    samples = {name: torch.stack([c[name] for c in chains]) for name in chains[0]}
    return Posterior(model, MCMCSamples(model, samples, np.stack(diverging), seconds))


def _initial_weights(bnn, initial, num_chains: int) -> list[torch.Tensor | None]:
    """The flat starting weights of each chain (None: Pyro's uniform initialisation)."""
    if initial is None:
        return [None] * num_chains
    if bnn is None:
        raise ValueError("initial is only available for bayesdl BNN models")
    per_chain = list(initial) if isinstance(initial, (list, tuple)) else [initial] * num_chains
    if len(per_chain) != num_chains:
        raise ValueError(f"initial holds {len(per_chain)} starting points for {num_chains} chains; "
                         "pass one dict for all chains or one per chain")
    sites = {s.name: s.shape for s in bnn.sites}
    starts = []
    for weights in per_chain:
        if isinstance(weights, dict) and set(weights) == set(sites):
            try:
                weights = {k: torch.as_tensor(v) for k, v in weights.items()}
            except (TypeError, ValueError, RuntimeError):  # strings, ragged lists
                weights = None
        if (not isinstance(weights, dict) or set(weights) != set(sites)
                or any(tuple(v.shape) != tuple(sites[k]) for k, v in weights.items())):
            raise ValueError("each starting point must be a {site: tensor} dict of the model's weights with "
                             "their shapes, e.g. posterior.point_estimate() of a MAP fit of the same model")
        flat = bnn.flatten(weights).detach()
        if not torch.isfinite(flat).all():
            raise ValueError("a starting point of NUTS holds a NaN or infinite weight")
        starts.append(flat.to(bnn.prior_scales))
    return starts


def _divergences(mcmc: MCMC) -> list[int]:
    """The indices of the divergent kept draws of a one-chain run: the record of the kernel's
    ``diagnostics()`` that ``MCMC`` keeps per chain. Not ``MCMC.diagnostics()``, which also computes
    R-hat and the ESS of every site -- unused here, and Pyro asserts that it has 4 draws or more, so
    ``num_samples`` of 1 to 3 failed there."""
    record = mcmc._diagnostics[0]
    if not isinstance(record, dict) or "divergences" not in record:  # a Pyro without that record
        return list(mcmc.diagnostics()["divergences"]["chain 0"])
    return list(record["divergences"])


def _run_chains(model, bnn, potential, args, kwargs, num_samples, warmup_steps, num_chains, seed, progress,
                jit_compile, options, starts):
    """Run the chains one after another; returns (draws per chain, divergence flags, seconds).

    On a terminal each chain shows Pyro's progress bar; elsewhere (a log file) one line per chain.
    """
    chains, diverging = [], []
    start = time.perf_counter()
    pyro_bar = progress and is_terminal()
    lines = progress_bar(num_chains, desc="NUTS", unit="chains", enabled=progress and not pyro_bar,
                         lines=num_chains)
    for chain in range(num_chains):
        pyro.set_rng_seed(seed + chain)
        if potential is not None:
            kernel = NUTS(potential_fn=potential, **options)
            theta = starts[chain]
            if theta is None:
                theta = torch.empty(bnn.num_latent, dtype=bnn.prior_scales.dtype,
                                    device=bnn.prior_scales.device).uniform_(-2, 2)
            initial = {"theta": theta.clone()}
            mcmc = MCMC(kernel, num_samples=num_samples, warmup_steps=warmup_steps, num_chains=1,
                        initial_params=initial, disable_progbar=not pyro_bar)
            mcmc.run()
            draws = bnn.unflatten(mcmc.get_samples()["theta"].detach())
        else:
            kernel = NUTS(model, jit_compile=jit_compile, ignore_jit_warnings=jit_compile, **options)
            mcmc = MCMC(kernel, num_samples=num_samples, warmup_steps=warmup_steps, num_chains=1,
                        disable_progbar=not pyro_bar)
            with warnings.catch_warnings():
                # Pyro's jit_compile calls torch.jit.trace, which torch marks as deprecated.
                warnings.filterwarnings("ignore", message=".*torch.jit.trace.*", category=FutureWarning)
                mcmc.run(*args, **kwargs)
            draws = {k: v.detach() for k, v in mcmc.get_samples().items()}
        chains.append(draws)
        flags = np.zeros(num_samples, dtype=bool)
        flags[_divergences(mcmc)] = True
        diverging.append(flags)
        lines.set_postfix(divergences=int(flags.sum()))
        lines.update()
    lines.close()
    return chains, diverging, time.perf_counter() - start
