"""Stochastic-gradient MCMC over the weights of a BNN: SGLD (and pSGLD), SGHMC, cyclical SG-MCMC.

The target is the posterior NUTS samples (:mod:`bayesdl.inference.mcmc`), tempered by ``T``,
``p_T(theta | D) ~ exp(-U(theta) / T)``, with the potential of the BNN's Pyro model::

    U(theta) = -ln p(theta) - sum_{n=1..N} ln p(y_n | x_n, theta)

estimated without bias on a minibatch ``B`` as ``fit``'s ELBO and the model's data plate scale
it (``dataset_size=N``)::

    U_B(theta) = -ln p(theta) - N / |B| sum_{n in B} ln p(y_n | x_n, theta)

(tested against the log joint of the model's trace). With ``g = grad U_B(theta)``,
``xi ~ N(0, I)`` and the step ``eta = lr / N`` -- ``lr`` is the step size of the *per-example*
objective ``U / N``, the scale of SGD's learning rates, as for SWAG -- one state and one update
per sampler, as in the ``posteriors`` library (``posteriors/sgmcmc/``)::

    SGLD  (Welling & Teh 2011):  theta <- theta - eta G g + sqrt(2 eta T G) xi
    SGHMC (Chen, Fox & Guestrin 2014), in the SGD-with-momentum form of Zhang et al. (2020):
           v <- (1 - alpha) v - eta G g + sqrt(2 alpha eta T G) xi,   theta <- theta + v

``alpha`` in (0, 1] is the friction (one minus SGD's momentum; the noise estimate B^ = 0).
``G = 1`` unless ``precondition=True``: then the RMSprop preconditioner of pSGLD (Li, Chen,
Carlson & Carin 2016), ``V <- beta V + (1 - beta) gbar^2`` over the per-example gradient
``gbar = g / N``, ``G = 1 / (lambda + sqrt(V))``, with the small ``Gamma`` correction term
dropped as in that paper's experiments.

Schedules and the sample collector (steps count minibatches, per chain):

- constant (``sgld``, ``sghmc``): ``eta`` fixed; after ``burn_in`` steps every ``thin``-th
  iterate is kept;
- cyclical (``csgmcmc``, Zhang, Li, Zhang, Chen & Wilson 2020, "Cyclical stochastic gradient
  MCMC for Bayesian deep learning"): ``K`` steps in ``M`` cycles of ``L = K // M`` steps (the
  last takes the remainder), ``eta_k = eta_0 / 2 (cos(pi r_k) + 1)`` with ``r_k`` the position
  in the cycle in [0, 1); while ``r_k < exploration`` (their ``beta``) the update runs without
  noise (SGD, or SGD with momentum); in the sampling phase after it the sampler runs, and the
  last ``samples_per_cycle`` iterates of each cycle, ``thin`` steps apart, are kept.

``num_chains`` chains run one after another (chain ``c`` seeded by ``seed + c``, started at the
network initialised afresh with that seed, or at ``initial``); the draws are held by chain, so
:meth:`~bayesdl.inference.Posterior.draws` gives ``[chains, draws, *shape]`` and
:func:`~bayesdl.inference.to_inference_data` gives R-hat and ESS of the weights and of the
predictions. A run saves a checkpoint (``checkpoint``) every ``checkpoint_every`` seconds at the
end of an epoch and at the end of each chain, and ``resume=True`` continues it exactly; a
non-finite potential or gradient stops it with :class:`~bayesdl.inference.NonFiniteLossError`
(as ``fit``), carrying the chains finished so far.
"""

from __future__ import annotations

import inspect as _inspect
import math
import os
import time
from dataclasses import dataclass

import torch

from bayesdl.checks import check_choice, check_device, check_int, check_positive, check_probability
from bayesdl.models.bnn import bnn_of
from bayesdl.progress import progress_bar

from ._data import as_loader, batch_to, check_batch, dataset_size_of
from .checkpoints import load_state, save_state, state_digest
from .ensemble import reinitialised
from .history import TrainingHistory
from .mcmc import MCMCSamples, _initial_weights
from .posterior import Draws, Posterior, check_flag
from .svi import NonFiniteLossError

__all__ = ["sgld", "sghmc", "csgmcmc", "sampling_run", "sample_potential", "SGMCMCSamples", "bnn_potential",
           "SGMCMC_CHECKPOINT_FORMAT"]

SGMCMC_CHECKPOINT_FORMAT = "bayesdl-sgmcmc-checkpoint-1"
_FIELDS = {"recipe": str, "chain": int, "epoch": int, "theta": torch.Tensor, "momentum": torch.Tensor,
           "square_average": torch.Tensor, "draws": torch.Tensor, "rng_state": torch.Tensor,
           "cuda_rng_state": torch.Tensor, "evaluations": int, "seconds": float}


class SGMCMCSamples(MCMCSamples):
    """The draws of an SG-MCMC run, ``samples[site]`` ``[chains, draws, *shape]`` (no divergences:
    these samplers have no accept step). Predicts, summarises and diagnoses as NUTS draws do;
    ``gradient_evaluations`` (minibatch gradients, all chains) and ``seconds`` are its cost.

    :func:`sgld`, :func:`sghmc` and :func:`csgmcmc` return one inside their :class:`Posterior`::

        >>> import torch
        >>> import torch.nn as nn
        >>> from bayesdl.models import BNN
        >>> _ = torch.manual_seed(0)
        >>> x = torch.rand(8, 2); y = (x.sum(1) > 1).long()     # 8 points in [0, 1]^2, 2 classes
        >>> from bayesdl.inference import sgld
        >>> posterior = sgld(BNN(nn.Linear(2, 2)), (x, y), epochs=4, batch_size=4, num_chains=2,
        ...                  progress=False)
        >>> draws = posterior.draws()          # no accept step: no divergences
        >>> draws.samples["weight"].shape, draws.diverging
        (torch.Size([2, 2, 2, 2]), None)
    """

    def __init__(self, model, samples: dict[str, torch.Tensor], seconds: float = 0.0,
                 gradient_evaluations: int = 0, sampler: str = ""):
        self.model = model
        self.chains = Draws(samples, None)
        self.seconds = seconds
        self.gradient_evaluations = gradient_evaluations
        self.sampler = sampler

    @property
    def diverging(self):
        return None


class _BNNPotential:
    """``U_B(theta, x, y)`` of :func:`bnn_potential`; :meth:`value_and_grad` is the samplers' hot path."""

    def __init__(self, bnn, dataset_size: int):
        self.bnn, self.dataset_size, self.likelihood = bnn, dataset_size, bnn.likelihood
        self.inv_var = 1.0 / bnn.prior_scales.detach() ** 2
        log_scales = float(torch.log(bnn.prior_scales).sum())
        self.constant = log_scales + 0.5 * bnn.num_latent * math.log(2 * math.pi)

    def _negative_log_likelihood(self, theta, x, y):
        weights = self.bnn.unflatten(theta)  # network() lays image weights out channels-last itself
        log_lik = self.likelihood.log_prob(self.bnn.network(x, weights), y).sum()
        return -log_lik * (self.dataset_size / x.shape[0])

    def _negative_log_prior(self, theta, scaled):
        """``-ln p(theta)`` given ``scaled = theta / s^2`` (the prior's gradient)."""
        return 0.5 * torch.dot(scaled, theta) + self.constant

    def __call__(self, theta, x, y):
        prior = self._negative_log_prior(theta, theta * self.inv_var.to(theta))
        return self._negative_log_likelihood(theta, x, y) + prior

    def value_and_grad(self, theta, x, y) -> tuple[torch.Tensor, torch.Tensor]:
        """``(U_B, grad U_B)`` at ``theta`` ``[D]`` (detached): autograd through the likelihood
        only, the normal prior's gradient ``theta / s^2`` added in closed form (no graph over the
        ``D`` weights for it)."""
        theta = theta.detach()
        leaf = theta.detach().requires_grad_(True)  # a leaf of its own: theta itself stays grad-free
        nll = self._negative_log_likelihood(leaf, x, y)
        (grad,) = torch.autograd.grad(nll, leaf)
        with torch.no_grad():
            scaled = theta * self.inv_var.to(theta)
            grad.add_(scaled)
            return nll.detach() + self._negative_log_prior(theta, scaled), grad


def bnn_potential(bnn, dataset_size: int):
    """``U_B(theta, x, y) = -ln p(theta) - N / |B| sum_B ln p(y | x, theta)`` over the flat weights
    ``theta`` ``[D]`` of a BNN (its normal prior, its likelihood at its current noise scale): the
    minibatch estimate of the potential NUTS samples, scaled as the data plate of the model.
    Differentiable in ``theta``; ``.value_and_grad(theta, x, y)`` gives ``(U_B, grad U_B)`` faster."""
    return _BNNPotential(bnn, dataset_size)


# ------------------------------------------------------------------ samplers: a state and an update
@dataclass
class _State:
    """A chain's state: the weights ``theta`` ``[D]``, SGHMC's velocity and pSGLD's ``V``."""

    theta: torch.Tensor
    momentum: torch.Tensor
    square_average: torch.Tensor


def _preconditioner(state: _State, grad: torch.Tensor, n_data: int, config) -> torch.Tensor | None:
    """pSGLD's ``G = 1 / (lambda + sqrt(V))`` after updating ``V`` with ``(g / N)^2``; None if off."""
    if not config.precondition:
        return None
    per_example = grad / n_data
    state.square_average.mul_(config.precondition_decay).addcmul_(
        per_example, per_example, value=1 - config.precondition_decay)
    return 1.0 / (config.precondition_eps + state.square_average.sqrt())


def _sgld_update(state: _State, grad, eta: float, noisy: bool, G, config) -> None:
    """``theta <- theta - eta G g + sqrt(2 eta T G) xi`` (no noise while exploring)."""
    step = grad if G is None else G * grad
    state.theta.sub_(step, alpha=eta)
    if noisy:
        scale = math.sqrt(2 * eta * config.temperature)
        noise = torch.randn_like(state.theta)
        state.theta.add_(noise * (scale if G is None else scale * G.sqrt()))


def _sghmc_update(state: _State, grad, eta: float, noisy: bool, G, config) -> None:
    """``v <- (1 - alpha) v - eta G g + sqrt(2 alpha eta T G) xi``, ``theta <- theta + v``."""
    alpha = config.friction
    v = state.momentum.mul_(1 - alpha)
    v.sub_(grad if G is None else G * grad, alpha=eta)
    if noisy:
        scale = math.sqrt(2 * alpha * eta * config.temperature)
        v.add_(torch.randn_like(v) * (scale if G is None else scale * G.sqrt()))
    state.theta.add_(v)


_UPDATES = {"sgld": _sgld_update, "sghmc": _sghmc_update}


# ------------------------------------------------------------------ schedule and collector
@dataclass(frozen=True)
class _Schedule:
    """Step size, noise and collection of step ``k`` (0-based) of a chain of ``steps`` steps."""

    steps: int
    eta: float
    burn_in: int
    thin: int
    cycles: int | None = None
    exploration: float = 0.0
    samples_per_cycle: int = 1

    def _cycle(self, k: int) -> tuple[int, int]:
        """(position in its cycle, that cycle's length)."""
        length = self.steps // self.cycles
        c = min(k // length, self.cycles - 1)
        last = self.steps - (self.cycles - 1) * length
        return k - c * length, (length if c < self.cycles - 1 else last)

    def at(self, k: int) -> tuple[float, bool, bool]:
        """``(eta_k, noisy, collect)``."""
        if self.cycles is None:
            return self.eta, True, k >= self.burn_in and (k + 1 - self.burn_in) % self.thin == 0
        pos, length = self._cycle(k)
        eta = self.eta / 2 * (math.cos(math.pi * pos / length) + 1)
        noisy = pos / length >= self.exploration
        left = length - 1 - pos
        return eta, noisy, noisy and left % self.thin == 0 and left // self.thin < self.samples_per_cycle

    def draws(self) -> int:
        return sum(self.at(k)[2] for k in range(self.steps))

    def check(self, method: str) -> None:
        """Refuse a schedule that keeps no draw, or a cycle too short for its collection."""
        if self.cycles is None:
            if self.burn_in >= self.steps:
                raise ValueError(f"{method}: burn_in={self.burn_in} steps is not below the {self.steps} "
                                 "steps of a chain (epochs x batches per epoch): lower burn_in or run more "
                                 "epochs")
            return
        if self.cycles > self.steps:
            raise ValueError(f"{method}: cycles={self.cycles} exceeds the {self.steps} steps of a chain")
        shortest = self.steps // self.cycles
        sampling = shortest - math.ceil(self.exploration * shortest)
        needed = (self.samples_per_cycle - 1) * self.thin + 1
        if sampling < needed:
            raise ValueError(
                f"{method}: a cycle of {shortest} steps has {sampling} sampling steps after its exploration "
                f"phase (exploration={self.exploration}), fewer than the {needed} that samples_per_cycle="
                f"{self.samples_per_cycle} draws {self.thin} steps apart need: lower exploration, "
                "samples_per_cycle or thin, use fewer cycles, or run more epochs")


@dataclass(frozen=True)
class _Config:
    sampler: str
    friction: float
    temperature: float
    precondition: bool
    precondition_decay: float
    precondition_eps: float


# ------------------------------------------------------------------ the public samplers
def sampling_run(*, epochs: int = 100, batch_size: int = 128, burn_in: int | None = None,
                 thin: int | None = None, num_chains: int = 4, seed: int = 0, initial=None,
                 dataset_size: int | None = None, shuffle: bool = True, device=None, progress: bool = True,
                 checkpoint=None, resume: bool = False, checkpoint_every: float = 60.0) -> dict:
    """The run options every SG-MCMC sampler takes, checked, as a dict.

    ``data`` (a DataLoader, a Dataset or a tuple ``(x, y)``) is batched by ``batch_size`` and
    reshuffled every epoch (``shuffle``); ``dataset_size`` is ``N`` (default: the data's length).
    Each of ``num_chains`` chains runs ``epochs`` passes over it; after ``burn_in`` steps
    (minibatches; default: half of a chain) every ``thin``-th iterate (default: one per epoch) is
    kept. ``seed`` >= 0: chain ``c`` draws its noise and batches with ``seed + c`` and starts at
    the network initialised afresh with that seed, or at ``initial`` (one ``{site: tensor}`` for
    every chain, or a list of one per chain). ``device``: where to sample. ``checkpoint`` (a
    path) is saved atomically at the end of an epoch once ``checkpoint_every`` seconds (>= 0) have
    passed since the last save, and at the end of every chain; ``resume=True`` continues the run
    it holds exactly (the same draws as an uninterrupted run).

    Example::

        >>> from bayesdl.inference import sampling_run
        >>> run = sampling_run(epochs=20, num_chains=2)
        >>> run["epochs"], run["num_chains"], run["burn_in"], run["batch_size"]  # burn_in None: half a chain
        (20, 2, None, 128)
        >>> sampling_run(epochs=0)
        Traceback (most recent call last):
        ...
        ValueError: epochs must be >= 1, got 0
    """
    o = {"epochs": check_int(epochs, "epochs", minimum=1),
         "batch_size": check_int(batch_size, "batch_size", minimum=1),
         "burn_in": None if burn_in is None else check_int(burn_in, "burn_in", minimum=0),
         "thin": None if thin is None else check_int(thin, "thin", minimum=1),
         "num_chains": check_int(num_chains, "num_chains", minimum=1),
         "seed": check_int(seed, "seed", minimum=0),
         "initial": initial,
         "dataset_size": None if dataset_size is None else check_int(dataset_size, "dataset_size", minimum=1),
         "shuffle": check_flag(shuffle, "shuffle"),
         "device": None if device is None else check_device(device),
         "progress": check_flag(progress, "progress"), "checkpoint": checkpoint,
         "resume": check_flag(resume, "resume"),
         "checkpoint_every": check_positive(checkpoint_every, "checkpoint_every", allow_zero=True)}
    if checkpoint is not None and not isinstance(checkpoint, (str, os.PathLike)):
        raise TypeError(f"checkpoint must be a file path (str or os.PathLike), got "
                        f"{type(checkpoint).__name__}")
    return o


def sgld(model, data, *, lr: float = 1e-3, temperature: float = 1.0, precondition: bool = False,
         precondition_decay: float = 0.99, precondition_eps: float = 1e-5, **run) -> Posterior:
    """SGLD (Welling & Teh 2011), or pSGLD with ``precondition=True`` (Li et al. 2016), over the
    weights of the BNN ``model`` fitted to ``data``: ``theta <- theta - eta G g + sqrt(2 eta T G) xi``
    (module docstring). ``lr`` > 0 is the per-example step size (``eta = lr / N`` on ``U``);
    ``temperature`` ``T`` > 0 tempers the posterior (1: the Bayes posterior); ``precondition_decay``
    (``beta`` in [0, 1)) and ``precondition_eps`` (``lambda`` > 0) set pSGLD's RMSprop average.
    ``run``: the options of :func:`sampling_run`. Returns the :class:`Posterior` of an
    :class:`SGMCMCSamples`, draws ``[num_chains, draws, *shape]``.

    Example (4 epochs of 2 minibatches per chain; after the burn-in of half a chain, one draw per
    epoch)::

        >>> import torch
        >>> import torch.nn as nn
        >>> from bayesdl.models import BNN
        >>> _ = torch.manual_seed(0)
        >>> x = torch.rand(8, 2); y = (x.sum(1) > 1).long()     # 8 points in [0, 1]^2, 2 classes
        >>> from bayesdl.inference import sgld
        >>> posterior = sgld(BNN(nn.Linear(2, 2)), (x, y), lr=1e-3, epochs=4, batch_size=4, num_chains=2,
        ...                  seed=0, progress=False)
        >>> posterior.draws().samples["weight"].shape               # [chains, draws, *shape]
        torch.Size([2, 2, 2, 2])
        >>> posterior.predict(x[:3], num_samples=4).probs.shape
        torch.Size([4, 3, 2])
    """
    config = _Config("sgld", 1.0, *_common(temperature, precondition, precondition_decay, precondition_eps))
    return _sample("sgld", model, data, config, lr, run)


def sghmc(model, data, *, lr: float = 1e-3, friction: float = 0.1, temperature: float = 1.0,
          precondition: bool = False, precondition_decay: float = 0.99, precondition_eps: float = 1e-5,
          **run) -> Posterior:
    """SGHMC (Chen et al. 2014) over the weights of the BNN ``model`` fitted to ``data``:
    ``v <- (1 - alpha) v - eta G g + sqrt(2 alpha eta T G) xi``, ``theta <- theta + v`` -- SGD with
    momentum ``1 - alpha`` plus the noise that makes it sample (module docstring). ``friction``
    ``alpha`` in (0, 1]; the other options as for :func:`sgld`; ``run``: those of :func:`sampling_run`.

    Example::

        >>> import torch
        >>> import torch.nn as nn
        >>> from bayesdl.models import BNN
        >>> _ = torch.manual_seed(0)
        >>> x = torch.rand(8, 2); y = (x.sum(1) > 1).long()     # 8 points in [0, 1]^2, 2 classes
        >>> from bayesdl.inference import sghmc
        >>> posterior = sghmc(BNN(nn.Linear(2, 2)), (x, y), lr=1e-3, friction=0.1, epochs=4, batch_size=4,
        ...                   num_chains=1, thin=1, progress=False)
        >>> posterior.draws().samples["bias"].shape                 # burn-in 4 of 8 steps, then every step
        torch.Size([1, 4, 2])
    """
    config = _Config("sghmc", _friction(friction), *_common(temperature, precondition, precondition_decay,
                                                            precondition_eps))
    return _sample("sghmc", model, data, config, lr, run)


def csgmcmc(model, data, *, lr: float = 0.5, base: str = "sghmc", friction: float = 0.1, cycles: int = 4,
            exploration: float = 0.8, samples_per_cycle: int = 3, temperature: float = 1.0,
            precondition: bool = False, precondition_decay: float = 0.99, precondition_eps: float = 1e-5,
            **run) -> Posterior:
    """Cyclical SG-MCMC (Zhang et al. 2020): ``base`` (``"sgld"`` for cSGLD, ``"sghmc"`` for cSGHMC)
    under the cosine step size of ``cycles`` cycles from ``lr`` (the per-example step size at the
    start of a cycle), noise-free during the first ``exploration`` fraction of each cycle (in
    [0, 1); the paper's ``beta``), keeping the last ``samples_per_cycle`` iterates of each cycle
    ``thin`` steps apart (default: one epoch). The run options (``run``) are those of
    :func:`sampling_run` but ``burn_in``: the cycles collect their own draws.

    Example (2 cycles of 4 steps, the last step of each kept)::

        >>> import torch
        >>> import torch.nn as nn
        >>> from bayesdl.models import BNN
        >>> _ = torch.manual_seed(0)
        >>> x = torch.rand(8, 2); y = (x.sum(1) > 1).long()     # 8 points in [0, 1]^2, 2 classes
        >>> from bayesdl.inference import csgmcmc
        >>> posterior = csgmcmc(BNN(nn.Linear(2, 2)), (x, y), lr=0.1, cycles=2, exploration=0.5,
        ...                     samples_per_cycle=1, epochs=4, batch_size=4, num_chains=1, progress=False)
        >>> posterior.draws().samples["weight"].shape
        torch.Size([1, 2, 2, 2])
    """
    if "burn_in" in run:
        raise TypeError("csgmcmc collects the end of every cycle's sampling phase: it takes no burn_in (use "
                        "exploration and samples_per_cycle)")
    base = check_choice(base, "base", tuple(_UPDATES))
    config = _Config(base, _friction(friction) if base == "sghmc" else 1.0,
                     *_common(temperature, precondition, precondition_decay, precondition_eps))
    cyclical = {"cycles": check_int(cycles, "cycles", minimum=1),
                "exploration": check_probability(exploration, "exploration"),
                "samples_per_cycle": check_int(samples_per_cycle, "samples_per_cycle", minimum=1)}
    return _sample("csgmcmc", model, data, config, lr, run, cyclical)


def _friction(friction) -> float:
    return check_probability(friction, "friction", upper_inclusive=True, lower_inclusive=False)


def _common(temperature, precondition, decay, eps) -> tuple:
    return (check_positive(temperature, "temperature"), check_flag(precondition, "precondition"),
            check_probability(decay, "precondition_decay"), check_positive(eps, "precondition_eps"))


def sample_potential(grad_potential, initial: torch.Tensor, *, steps: int, lr: float, sampler: str = "sgld",
                     friction: float = 0.1, temperature: float = 1.0, burn_in: int = 0, thin: int = 1,
                     cycles: int | None = None, exploration: float = 0.0,
                     samples_per_cycle: int = 1) -> tuple[torch.Tensor, int]:
    """The samplers of this module on any potential: ``grad_potential(theta)`` returns ``grad U``
    (exact or a stochastic estimate) at ``theta`` ``[C, D]`` (``C`` independent chains, one row
    each, as the updates act element by element), and the chains start at ``initial`` ``[C, D]``.
    ``lr`` is the step ``eta`` on ``U`` itself (no ``1 / N``); with ``cycles`` the cyclical
    schedule of :func:`csgmcmc` (``exploration``, ``samples_per_cycle``, ``thin``), else the
    constant one (``burn_in``, ``thin``). Noise from torch's global generator (seed it). Returns
    ``(draws [C, S, D], gradient evaluations per chain)``: what the toy studies sample with."""
    initial = torch.as_tensor(initial)
    if initial.dim() != 2 or not initial.is_floating_point():
        raise ValueError(f"initial must be a float tensor [chains, D], got shape {tuple(initial.shape)}")
    if not callable(grad_potential):
        raise TypeError("grad_potential must be a function theta [C, D] -> grad U [C, D]")
    sampler = check_choice(sampler, "sampler", tuple(_UPDATES))
    steps = check_int(steps, "steps", minimum=1)
    config = _Config(sampler, _friction(friction) if sampler == "sghmc" else 1.0,
                     check_positive(temperature, "temperature"), False, 0.99, 1e-5)
    cyclical = {} if cycles is None else {
        "cycles": check_int(cycles, "cycles", minimum=1),
        "exploration": check_probability(exploration, "exploration"),
        "samples_per_cycle": check_int(samples_per_cycle, "samples_per_cycle", minimum=1)}
    schedule = _Schedule(steps, check_positive(lr, "lr"), check_int(burn_in, "burn_in", minimum=0),
                         check_int(thin, "thin", minimum=1), **cyclical)
    schedule.check("sample_potential")
    state = _State(initial.clone(), torch.zeros_like(initial), torch.zeros_like(initial))
    update, kept = _UPDATES[sampler], []
    with torch.no_grad():
        for k in range(steps):
            eta, noisy, collect = schedule.at(k)
            update(state, grad_potential(state.theta), eta, noisy, None, config)
            if collect:
                kept.append(state.theta.clone())
    return torch.stack(kept, 1), steps


# ------------------------------------------------------------------ the run
def _sample(method: str, model, data, config: _Config, lr, run: dict,
            cyclical: dict | None = None) -> Posterior:
    """Check everything, then run the chains (resuming a checkpoint) and hold their draws."""
    lr = check_positive(lr, "lr")
    try:
        o = sampling_run(**run)
    except TypeError as err:
        if "unexpected keyword" not in str(err):
            raise
        options = sorted(_inspect.signature(sampling_run).parameters)
        raise TypeError(f"{method} takes no option {str(err).split('argument ')[-1]}; its run options are "
                        f"those of sampling_run: {options}") from None
    bnn = bnn_of(model)
    if bnn is None:
        raise TypeError(f"{method} samples the weights of a bayesdl.models.BNN; got {type(model).__name__} "
                        "(wrap the network: BNN(net, likelihood=...))")
    if o["device"] is not None:
        bnn.to(o["device"])
    checked = isinstance(data, tuple) and len(data) == 2
    if checked:  # tensors: checked once here (one network pass on two examples), not batch by batch
        data = _checked_tensors(bnn, *data)
    loader = as_loader(data, o["batch_size"], o["shuffle"])
    n_data = dataset_size_of(loader, o["dataset_size"])
    per_epoch = len(loader)
    steps = o["epochs"] * per_epoch
    thin = o["thin"] or per_epoch
    burn_in = steps // 2 if o["burn_in"] is None else o["burn_in"]
    schedule = _Schedule(steps, lr / n_data, burn_in, thin, **(cyclical or {}))
    schedule.check(method)
    starts = _initial_weights(bnn, o["initial"], o["num_chains"])
    run_ = _Run(method, model, bnn, loader, n_data, config, schedule, o, starts)
    run_.checked = checked
    return run_.execute()


def _checked_tensors(bnn, x, y) -> tuple[torch.Tensor, torch.Tensor]:
    """``(x, y)`` checked as ``fit`` checks every batch (shapes, finite inputs, targets the outputs
    can take), at the cost of one network pass on two examples."""
    x_, y_ = as_loader((x, y), 1, False).dataset.tensors
    bnn.check_data(x_[:2], y_[:2])
    with torch.no_grad():
        out_shape = bnn.network(bnn.check_inputs(x_[:1]), bnn.initial_values()).shape[1:]
    return check_batch(bnn, x_, y_, out_shape, "the data")


class _Run:
    """One SG-MCMC run: the chains one after another, the checkpoint, the NaN guard."""

    def __init__(self, method, model, bnn, loader, n_data, config, schedule, options, starts):
        self.model = model
        self.method, self.bnn, self.loader, self.n_data = method, bnn, loader, n_data
        self.config, self.schedule, self.o, self.starts = config, schedule, options, starts
        self.potential = bnn_potential(bnn, n_data)
        self.update = _UPDATES[config.sampler]
        self.reference = bnn.prior_scales
        self.per_epoch = len(loader)
        self.draws: list[torch.Tensor] = []  # kept iterates [D] (CPU), chain after chain
        self.evaluations, self.seconds = 0, 0.0
        self.recipe = state_digest([method, repr(config), repr(schedule), [s.name for s in bnn.sites],
                                    [list(s.shape) for s in bnn.sites], n_data, self.per_epoch,
                                    {k: options[k] for k in ("epochs", "num_chains", "seed")},
                                    [t if t is not None else "fresh" for t in starts]])

    def _start(self, chain: int) -> _State:
        torch.manual_seed(self.o["seed"] + chain)
        theta = self.starts[chain]
        if theta is None:
            theta = reinitialised(self.bnn, self.o["seed"] + chain).initial_values()
        theta = theta.detach().to(self.reference).clone()
        return _State(theta, torch.zeros_like(theta), torch.zeros_like(theta))

    def execute(self) -> Posterior:
        chain, epoch, state = 0, 0, None
        path = self.o["checkpoint"]
        if path is not None and self.o["resume"] and os.path.exists(path):
            chain, epoch, state = self._load(path)
        per_chain = self.schedule.draws()
        total = (self.o["num_chains"] - chain) * (self.o["epochs"] * self.per_epoch) - epoch * self.per_epoch
        bar = progress_bar(total, desc=self.method, unit="step", enabled=self.o["progress"])
        last_save = time.perf_counter()
        try:
            for c in range(chain, self.o["num_chains"]):
                state = self._start(c) if state is None else state
                for e in range(epoch, self.o["epochs"]):
                    clock = time.perf_counter()
                    self._epoch(c, e, state)
                    self.seconds += time.perf_counter() - clock
                    bar.update(self.per_epoch)
                    finished = e + 1 == self.o["epochs"]
                    due = time.perf_counter() - last_save >= self.o["checkpoint_every"]
                    if path is not None and (finished or due):
                        self._save(path, c + 1 if finished else c, 0 if finished else e + 1, state)
                        last_save = time.perf_counter()
                state, epoch = None, 0
        finally:
            bar.close()
        return self._posterior(per_chain, self.o["num_chains"])

    def _epoch(self, chain: int, epoch: int, state: _State) -> None:
        bnn, device = self.bnn, self.reference.device
        for step, batch in enumerate(self.loader):
            x, y = batch_to(batch, device)
            where = f"chain {chain + 1}, epoch {epoch + 1}, batch {step + 1}"
            if not self.checked:
                if not hasattr(self, "out_shape"):
                    x, y = bnn.check_data(x, y)
                    with torch.no_grad():
                        self.out_shape = bnn.network(x[:1], bnn.initial_values()).shape[1:]
                x, y = check_batch(bnn, x, y, self.out_shape, where)
            k = epoch * self.per_epoch + step
            eta, noisy, collect = self.schedule.at(k)
            value, grad = self.potential.value_and_grad(state.theta, x, y)
            self.evaluations += 1
            # one check, one sync: a sum is finite only if every term is (NaN and Inf propagate; a
            # sum of finite terms that overflows float32 is flagged too, no state to go on from)
            if not math.isfinite(float(value + grad.sum())):
                self._non_finite(where, chain)
            with torch.no_grad():
                G = _preconditioner(state, grad, self.n_data, self.config)
                self.update(state, grad, eta, noisy, G, self.config)
            if collect:
                self.draws.append(state.theta.detach().to("cpu", copy=True))

    def _non_finite(self, where: str, chain: int):
        per_chain = self.schedule.draws()
        finished = self._posterior(per_chain, chain) if chain > 0 and per_chain else None
        raise NonFiniteLossError(
            f"{self.method}: the potential or its gradient became NaN/Inf at {where}; sampling stopped "
            f"(error.posterior holds the {chain} chain(s) finished before, or None). Lower lr, check the "
            "data for extreme values, or use precondition=True", finished)

    def _posterior(self, per_chain: int, chains: int) -> Posterior:
        flat = torch.stack(self.draws[: per_chain * chains]).reshape(chains, per_chain, -1)
        samples = self.bnn.unflatten(flat)
        approximation = SGMCMCSamples(self.bnn, {k: v.contiguous() for k, v in samples.items()},
                                      self.seconds, self.evaluations, self.method)
        history = TrainingHistory(dataset_size=self.n_data, seconds=self.seconds)  # the cost; no ELBO
        return Posterior(self.model, approximation, history, method=self.method)

    def _save(self, path, chain: int, epoch: int, state: _State) -> None:
        D = self.bnn.num_latent
        cuda = self.reference.device.type == "cuda"
        save_state(path, {
            "recipe": self.recipe, "chain": chain, "epoch": epoch,
            "theta": state.theta.detach().cpu(), "momentum": state.momentum.cpu(),
            "square_average": state.square_average.cpu(),
            "draws": torch.stack(self.draws) if self.draws else torch.zeros(0, D),
            "rng_state": torch.get_rng_state(),
            "cuda_rng_state": torch.cuda.get_rng_state(self.reference.device) if cuda else torch.zeros(0),
            "evaluations": self.evaluations, "seconds": float(self.seconds)}, SGMCMC_CHECKPOINT_FORMAT)

    def _load(self, path) -> tuple[int, int, _State | None]:
        state = load_state(path, SGMCMC_CHECKPOINT_FORMAT, _FIELDS, finite=("theta", "momentum", "draws"),
                           what="SG-MCMC checkpoint")
        if state["recipe"] != self.recipe:
            raise ValueError(f"{path} is the checkpoint of another SG-MCMC run (other sampler, options, data "
                             "size or network): delete it, point checkpoint elsewhere, or pass resume=False")
        self.draws = list(state["draws"].unbind(0))
        self.evaluations, self.seconds = state["evaluations"], state["seconds"]
        torch.set_rng_state(state["rng_state"])
        if state["cuda_rng_state"].numel():
            torch.cuda.set_rng_state(state["cuda_rng_state"], self.reference.device)
        if state["epoch"] == 0:  # a chain finished: the next starts afresh
            return state["chain"], 0, None
        move = {"device": self.reference.device, "dtype": self.reference.dtype}
        chain_state = _State(state["theta"].to(**move), state["momentum"].to(**move),
                             state["square_average"].to(**move))
        return state["chain"], state["epoch"], chain_state


