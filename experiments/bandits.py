"""Contextual bandits by Thompson sampling from any approximate posterior (Riquelme et al. 2018,
"Deep Bayesian Bandits Showdown").

A problem (:class:`BanditProblem`) is ``T`` contexts with the reward of every arm at each and its
expectation. An agent, at step ``t``, sees context ``x_t``, pulls an arm, observes only that arm's
reward, and is scored by the pseudo-regret ``max_k E[r_tk] - E[r_{t,a_t}]`` (cumulated: the
regret against the optimal policy). The agents:

- :class:`PosteriorAgent` -- any method of the registry, as a :class:`MethodSpec`: the network
  predicts the reward of every arm (a multi-output regression,
  :class:`~bayesdl.models.MaskedGaussian`: only the pulled arm's reward enters the likelihood),
  refitted from scratch every ``retrain_every`` steps by :func:`bayesdl.inference.approximate`, on
  the rewards standardised by their mean and standard deviation so far (a positive affine map: the
  greedy arm is unchanged; a network refitted from scratch in 100 Adam steps cannot reach the
  wheel's reward of 50 in raw units). At each step it draws ONE joint weight sample -- one dropout
  mask, one mean-field draw, one SWAG draw, one ensemble member -- and acts greedily under it
  (Thompson sampling). The draws come through the Posterior's public calls: ``sample(M)`` right
  after each fit (``M = draws_per_fit``), then at each step one of them chosen uniformly at
  random, run by ``outputs_at``: each step's draw is a draw of the posterior (two steps between
  fits may share one of the ``M``), for an ensemble of ``K`` members dividing ``M`` a uniformly
  random member. The loop never asks which method it runs.
- :class:`LinFullPostAgent` -- a :class:`~bayesdl.models.NormalInverseGammaRegression` per arm on
  the raw context with an intercept (the showdown's ``LinFullPost``: ``lambda = 0.25``, ``a0 = b0 = 6``);
- :class:`NeuralLinearAgent` -- the same per-arm regression on the last-layer features of a network
  trained by MAP on the schedule (the showdown's ``NeuralLinear``), the regressions updated every step;
- :class:`EpsilonGreedyAgent` -- the MAP network's greedy arm, a uniform arm with probability ``epsilon``;
- :class:`UniformAgent`.

Every agent first pulls each arm ``initial_pulls`` times (round robin, as the showdown). All
randomness of a run is derived from ``(seed, step)``, so a run is a deterministic function of its
seed: :func:`run_agent` saves each finished run (verified JSON, :func:`write_verified_json`) and
serves it on a rerun; an interrupted run recomputes to the same decisions.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from bayesdl.checks import as_tensor, check_finite, check_int, check_positive, check_probability
from bayesdl.inference import approximate
from bayesdl.models import NormalInverseGammaRegression
from bayesdl.models.bnn import bnn_of
from bayesdl.models.masked_likelihood import MaskedGaussian

from .io import read_verified_json, write_verified_json
from .methods import MethodSpec

__all__ = ["BanditProblem", "BanditRecord", "Schedule", "PosteriorAgent", "LinFullPostAgent",
           "NeuralLinearAgent", "EpsilonGreedyAgent", "UniformAgent", "run_bandit", "run_agent"]

RECORD_FORMAT = "bayesdl-bandit-run-1"


@dataclass(frozen=True)
class BanditProblem:
    """``contexts`` ``[T, d]``, the realised ``rewards`` ``[T, K]`` of every arm and their
    ``expected`` values ``[T, K]`` (what the regret is measured with). Checked at construction."""

    contexts: torch.Tensor
    rewards: torch.Tensor
    expected: torch.Tensor
    name: str = "bandit"

    def __post_init__(self):
        contexts = check_finite(as_tensor(self.contexts, "contexts", dtype=torch.float32), "contexts")
        rewards = check_finite(as_tensor(self.rewards, "rewards", dtype=torch.float64), "rewards")
        expected = check_finite(as_tensor(self.expected, "expected", dtype=torch.float64), "expected")
        if contexts.dim() != 2 or contexts.shape[0] == 0:
            raise ValueError(f"contexts must have shape [T, d] with T >= 1, got {tuple(contexts.shape)}")
        if rewards.dim() != 2 or rewards.shape[0] != contexts.shape[0] or rewards.shape[1] < 2:
            raise ValueError(f"rewards must have shape [T, K] with T = {contexts.shape[0]} contexts and "
                             f"K >= 2 arms, got {tuple(rewards.shape)}")
        if expected.shape != rewards.shape:
            raise ValueError(f"expected must have the shape of rewards {tuple(rewards.shape)}, got "
                             f"{tuple(expected.shape)}")
        for name, value in (("contexts", contexts), ("rewards", rewards), ("expected", expected)):
            object.__setattr__(self, name, value)

    @property
    def num_arms(self) -> int:
        return self.rewards.shape[1]

    def __len__(self) -> int:
        return self.contexts.shape[0]


@dataclass(frozen=True)
class Schedule:
    """When and how the networks are trained (the showdown's defaults): ``initial_pulls`` of each
    arm, a fit every ``retrain_every`` steps, each of ``steps`` minibatch updates (the showdown's
    ``training_epochs``, which its code runs as minibatch steps; converted here to
    ``ceil(steps / batches per epoch)`` epochs), ``batch_size``, ``lr`` (Adam)."""

    initial_pulls: int = 2
    retrain_every: int = 50
    steps: int = 100
    batch_size: int = 512
    lr: float = 1e-2

    def __post_init__(self):
        check_int(self.initial_pulls, "initial_pulls", minimum=1)
        check_int(self.retrain_every, "retrain_every", minimum=1)
        check_int(self.steps, "steps", minimum=1)
        check_int(self.batch_size, "batch_size", minimum=1)
        check_positive(self.lr, "lr")

    def epochs(self, n: int) -> int:
        """Epochs of ``n`` examples making at least :attr:`steps` minibatch updates."""
        return max(1, math.ceil(self.steps / math.ceil(n / self.batch_size)))

    def retrains(self, t: int, num_arms: int) -> bool:
        """Whether the agent refits after observing step ``t`` (0-based): at the end of the initial
        pulls and after every ``retrain_every`` steps."""
        done = t + 1
        return done == self.initial_pulls * num_arms or (done > self.initial_pulls * num_arms
                                                         and done % self.retrain_every == 0)


def _seed(seed: int, step: int, part: int) -> int:
    return (seed * 1_000_003 + step * 101 + part) % (2**31 - 1)


class _Observations:
    """The contexts seen, pulled arms and rewards so far."""

    def __init__(self, num_arms: int):
        self.num_arms, self.x, self.arms, self.rewards = num_arms, [], [], []

    def add(self, x: torch.Tensor, arm: int, reward: float) -> None:
        self.x.append(x)
        self.arms.append(arm)
        self.rewards.append(reward)

    def masked(self) -> tuple[torch.Tensor, torch.Tensor]:
        """``(x [n, d], y [n, K])``: ``y`` the observed reward at the pulled arm, standardised
        (``(r - mean) / std`` over the rewards seen; a positive affine map, so the greedy arm of
        any prediction is the same in either unit), NaN elsewhere."""
        x = torch.stack(self.x)
        rewards = torch.tensor(self.rewards, dtype=torch.float64)
        scale = float(rewards.std()) if len(rewards) > 1 else 0.0
        standard = (rewards - rewards.mean()) / (scale if scale > 0 else 1.0)
        y = torch.full((len(self.arms), self.num_arms), math.nan)
        y[torch.arange(len(self.arms)), torch.tensor(self.arms)] = standard.to(torch.float32)
        return x, y

    def of_arm(self, arm: int, features: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The rows of ``features`` ``[n, D]`` where ``arm`` was pulled, and their rewards."""
        if not self.arms:
            return features[:0], torch.zeros(0, dtype=torch.float64)
        rows = torch.tensor(self.arms, dtype=torch.long).eq(arm)
        return features[rows], torch.tensor(self.rewards, dtype=torch.float64)[rows]


class _Agent:
    """Base: ``act(t, x, generator) -> arm`` and ``observe(t, x, arm, reward)``."""

    label = "agent"

    def reset(self, num_arms: int, dimension: int, seed: int) -> None:
        self.num_arms, self.dimension, self.seed = num_arms, dimension, seed
        self.data = _Observations(num_arms)
        self.train_seconds = 0.0

    def act(self, t: int, x: torch.Tensor, generator: torch.Generator) -> int:
        raise NotImplementedError

    def observe(self, t: int, x: torch.Tensor, arm: int, reward: float, schedule: Schedule) -> None:
        self.data.add(x, arm, reward)


class UniformAgent(_Agent):
    """Pulls a uniformly random arm."""

    label = "Uniform"

    def act(self, t, x, generator):
        return int(torch.randint(self.num_arms, (), generator=generator))


def _bandit_model(model_fn: Callable, dimension: int, num_arms: int):
    model = model_fn(dimension, num_arms)
    bnn = bnn_of(model)
    if bnn is None or not isinstance(bnn.likelihood, MaskedGaussian):
        raise TypeError("model_fn(d, K) must return a bayesdl.models.BNN with a MaskedGaussian likelihood "
                        f"(the rewards of the K arms, one observed per step), got {type(model).__name__}")
    return model


class _NetworkAgent(_Agent):
    """An agent with a network refitted from scratch on the schedule: ``spec`` fitted by
    :func:`approximate` to the masked rewards seen so far."""

    def __init__(self, spec: MethodSpec, model_fn: Callable, device=None):
        if not isinstance(spec, MethodSpec):
            raise TypeError(f"spec must be a MethodSpec, got {type(spec).__name__}")
        if not callable(model_fn) or isinstance(model_fn, torch.nn.Module):
            raise TypeError("model_fn must be a function (d, K) -> BNN building a fresh model, not a model")
        self.spec, self.model_fn, self.device = spec, model_fn, device
        self.label = spec.label

    def reset(self, num_arms, dimension, seed):
        super().reset(num_arms, dimension, seed)
        self.posterior = None

    def fit(self, t: int, schedule: Schedule):
        x, y = self.data.masked()
        clock = time.perf_counter()
        torch.manual_seed(_seed(self.seed, t, 0))
        model = _bandit_model(self.model_fn, self.dimension, self.num_arms)
        offered = {"seed": _seed(self.seed, t, 1), "progress": False, "device": self.device}
        run = {k: v for k, v in offered.items() if k in self.spec.info.run_options and v is not None}
        train = {"epochs": schedule.epochs(len(x)), "batch_size": schedule.batch_size, "lr": schedule.lr}
        train = {k: v for k, v in train.items() if k in self.spec.info.options and k not in self.spec.options}
        self.posterior = approximate(self.spec.method, model, (x, y), **run, **train, **self.spec.options)
        self.train_seconds += time.perf_counter() - clock
        return self.posterior

    def observe(self, t, x, arm, reward, schedule):
        super().observe(t, x, arm, reward, schedule)
        if schedule.retrains(t, self.num_arms):
            self.fit(t, schedule)
            self.refreshed(t)

    def refreshed(self, t: int) -> None:
        """Called after each fit."""


class PosteriorAgent(_NetworkAgent):
    """Thompson sampling from the posterior of ``spec`` (see the module notes): ``model_fn(d, K)``
    builds a fresh :class:`~bayesdl.models.BNN` with a :class:`~bayesdl.models.MaskedGaussian`
    likelihood; ``draws_per_fit`` joint draws are taken after each fit and one is used per step."""

    def __init__(self, spec: MethodSpec, model_fn: Callable, draws_per_fit: int = 60, device=None):
        super().__init__(spec, model_fn, device)
        self.draws_per_fit = check_int(draws_per_fit, "draws_per_fit", minimum=1)

    def refreshed(self, t):
        torch.manual_seed(_seed(self.seed, t, 2))
        self.weights = self.posterior.sample(self.draws_per_fit)

    def act(self, t, x, generator):
        if self.posterior is None:
            return t % self.num_arms
        pick = int(torch.randint(self.draws_per_fit, (), generator=generator))
        with torch.no_grad():
            draw = {site: values[pick:pick + 1] for site, values in self.weights.items()}
            outputs = self.posterior.outputs_at(x[None], draw)
        return int(outputs.reshape(-1, self.num_arms)[0].argmax())


class EpsilonGreedyAgent(_NetworkAgent):
    """The greedy arm of ``spec``'s point estimate (``point_outputs``), or with probability
    ``epsilon`` a uniform arm."""

    def __init__(self, spec: MethodSpec, model_fn: Callable, epsilon: float = 0.05, device=None):
        super().__init__(spec, model_fn, device)
        self.epsilon = check_probability(epsilon, "epsilon")
        self.label = f"{spec.label}, epsilon-greedy ({self.epsilon:g})"

    def act(self, t, x, generator):
        explore = float(torch.rand((), generator=generator)) < self.epsilon
        arm = int(torch.randint(self.num_arms, (), generator=generator))
        if self.posterior is None or explore:
            return t % self.num_arms if self.posterior is None else arm
        with torch.no_grad():
            return int(self.posterior.point_outputs(x[None]).reshape(-1)[: self.num_arms].argmax())


class _LinearThompson:
    """Thompson sampling with one Normal-inverse-Gamma regression per arm on given features."""

    def __init__(self, num_arms: int, lambda_prior: float, a0: float, b0: float):
        self.models = [NormalInverseGammaRegression(lambda_prior=lambda_prior, a0=a0, b0=b0)
                       for _ in range(num_arms)]

    def refit(self, data: _Observations, features: torch.Tensor) -> None:
        """Fit every arm to its rows of ``features`` ``[n, D]`` (one per observation)."""
        for arm, model in enumerate(self.models):
            model.fit(*data.of_arm(arm, features))

    def add(self, arm: int, z: torch.Tensor, reward: float) -> None:
        self.models[arm].partial_fit(z[None], torch.tensor([reward], dtype=torch.float64))

    def act(self, z: torch.Tensor, generator: torch.Generator) -> int:
        values = [float(model.sample(1, generator)[0][0] @ z.to(torch.float64)) for model in self.models]
        return int(np.argmax(values))


def _with_intercept(x: torch.Tensor) -> torch.Tensor:
    return torch.cat([x, torch.ones(*x.shape[:-1], 1, dtype=x.dtype)], -1)


class LinFullPostAgent(_Agent):
    """Per-arm Bayesian linear regression on ``[x, 1]`` with a Normal-inverse-Gamma prior, updated
    every step, Thompson sampling (the showdown's LinFullPost)."""

    label = "LinFullPost"

    def __init__(self, lambda_prior: float = 0.25, a0: float = 6.0, b0: float = 6.0):
        NormalInverseGammaRegression(lambda_prior=lambda_prior, a0=a0, b0=b0)  # checks them
        self.thompson_options = (lambda_prior, a0, b0)

    def reset(self, num_arms, dimension, seed):
        super().reset(num_arms, dimension, seed)
        self.linear = _LinearThompson(num_arms, *self.thompson_options)
        self.linear.refit(self.data, torch.zeros(0, dimension + 1, dtype=torch.float64))

    def act(self, t, x, generator):
        return self.linear.act(_with_intercept(x), generator)

    def observe(self, t, x, arm, reward, schedule):
        super().observe(t, x, arm, reward, schedule)
        self.linear.add(arm, _with_intercept(x).to(torch.float64), reward)


class NeuralLinearAgent(_NetworkAgent):
    """Per-arm Normal-inverse-Gamma regression on the last-layer features (``point_features``) of
    ``spec``'s network (a MAP), refitted on the schedule; the regressions are updated every step."""

    def __init__(self, spec: MethodSpec, model_fn: Callable, lambda_prior: float = 0.25, a0: float = 6.0,
                 b0: float = 6.0, device=None):
        super().__init__(spec, model_fn, device)
        NormalInverseGammaRegression(lambda_prior=lambda_prior, a0=a0, b0=b0)  # checks them
        self.thompson_options = (lambda_prior, a0, b0)
        self.label = "NeuralLinear"

    def reset(self, num_arms, dimension, seed):
        super().reset(num_arms, dimension, seed)
        self.linear = None

    def _features(self, x: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            return _with_intercept(self.posterior.point_features(x)[1].detach().cpu().to(torch.float64))

    def refreshed(self, t):
        self.linear = _LinearThompson(self.num_arms, *self.thompson_options)
        self.linear.refit(self.data, self._features(torch.stack(self.data.x)))

    def observe(self, t, x, arm, reward, schedule):
        refits = schedule.retrains(t, self.num_arms)
        super().observe(t, x, arm, reward, schedule)
        if self.linear is not None and not refits:
            self.linear.add(arm, self._features(x[None])[0], reward)

    def act(self, t, x, generator):
        if self.linear is None:
            return t % self.num_arms
        return self.linear.act(self._features(x[None])[0], generator)


@dataclass
class BanditRecord:
    """One run: the ``arms`` pulled ``[T]``, their realised ``rewards``, the pseudo-``regret`` of
    each step, and the seconds spent training and deciding."""

    agent: str
    seed: int
    arms: list
    rewards: list
    regret: list
    train_seconds: float
    decide_seconds: float

    @property
    def cumulative_regret(self) -> np.ndarray:
        return np.cumsum(self.regret)


def run_bandit(agent: _Agent, problem: BanditProblem, seed: int, schedule: Schedule | None = None,
               stop_after: int | None = None) -> BanditRecord:
    """Run ``agent`` on ``problem`` with ``seed``: pull, observe, refit on ``schedule``. ``stop_after``
    (tests) stops after that many steps, returning the partial record."""
    if not isinstance(agent, _Agent):
        raise TypeError("agent must be one of the agents of bayesdl.experiments.bandits, got "
                        f"{type(agent).__name__}")
    if not isinstance(problem, BanditProblem):
        raise TypeError(f"problem must be a BanditProblem, got {type(problem).__name__}")
    seed = check_int(seed, "seed", minimum=0)
    schedule = Schedule() if schedule is None else schedule
    if not isinstance(schedule, Schedule):
        raise TypeError(f"schedule must be a Schedule, got {type(schedule).__name__}")
    agent.reset(problem.num_arms, problem.contexts.shape[1], seed)
    arms, rewards, regret, decide = [], [], [], 0.0
    best = problem.expected.max(1).values
    for t in range(len(problem) if stop_after is None else min(stop_after, len(problem))):
        x = problem.contexts[t]
        clock = time.perf_counter()
        if t < schedule.initial_pulls * problem.num_arms:  # round robin first, as the showdown
            arm = t % problem.num_arms
        else:
            arm = agent.act(t, x, torch.Generator().manual_seed(_seed(seed, t, 3)))
        decide += time.perf_counter() - clock
        reward = float(problem.rewards[t, arm])
        agent.observe(t, x, arm, reward, schedule)
        arms.append(arm)
        rewards.append(reward)
        regret.append(float(best[t] - problem.expected[t, arm]))
    return BanditRecord(agent.label, seed, arms, rewards, regret, agent.train_seconds, decide)


def run_agent(agent: _Agent, problem: BanditProblem, seed: int, path, schedule: Schedule | None = None
              ) -> BanditRecord:
    """:func:`run_bandit`, saved to ``path`` (verified JSON) when finished, and read from it (verified)
    instead of rerun when it is there; a damaged file is recomputed."""
    path = Path(path)
    if path.exists():
        try:
            return BanditRecord(**read_verified_json(path, RECORD_FORMAT))
        except (ValueError, TypeError) as err:
            import warnings

            warnings.warn(f"recomputing {path}: {err}", stacklevel=2)
    record = run_bandit(agent, problem, seed, schedule)
    path.parent.mkdir(parents=True, exist_ok=True)
    write_verified_json(path, record.__dict__, RECORD_FORMAT)
    return record
