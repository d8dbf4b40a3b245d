"""``bdl run bandits``: Thompson sampling with Bayesian networks on the showdown's bandits
(Riquelme et al. 2018): the mushroom bandit and the wheel bandit at several ``delta``.

The agents (:mod:`bayesdl.experiments.bandits`): every method spec of :data:`SPECS` as a
Thompson sampler (MC dropout, mean-field VI, a deep ensemble, SWAG), LinFullPost, NeuralLinear,
the MAP network epsilon-greedy, uniform. The showdown's hyper-parameters: one hidden layer of 50,
dropout keep 0.8, a refit every 50 steps of 100 minibatch steps of 512, 2 initial pulls per arm;
LinFullPost and NeuralLinear ``lambda = 0.25``, ``a0 = b0 = 6``. Each finished (problem, agent,
seed) run is saved in the cache folder (verified JSON) and served on a rerun.
"""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass
from functools import partial

import torch

from ...bandit_data import mushroom_bandit, wheel_bandit
from ...bandits import (
    EpsilonGreedyAgent,
    LinFullPostAgent,
    NeuralLinearAgent,
    PosteriorAgent,
    Schedule,
    UniformAgent,
    run_agent,
)
from ...methods import MethodSpec
from ...registry import RunContext, StudyResult
from ...training import cache_folder, config_digest
from .dqn import dqn_runs, dqn_summary
from .report import report

#: the Thompson samplers: a method spec per row (the SVI options on top of the schedule's)
SPECS = (
    MethodSpec("dropout", options={"p": 0.2}),
    MethodSpec("mean_field"),
    MethodSpec("deep_ensemble", options={"members": 3}),
    MethodSpec("swag", options={"swag_epochs": 10}),
)
#: the network behind NeuralLinear and epsilon-greedy
MAP = MethodSpec("map")


@dataclass(frozen=True)
class Row:
    """A row of the study and the showdown's algorithm it is set beside (None: none)."""

    name: str
    showdown: str | None = None


ROWS = (Row("dropout", "Dropout"), Row("mean_field", "BBB"), Row("deep_ensemble"), Row("swag"),
        Row("linfullpost", "LinFullPost"), Row("neural_linear", "NeuralLinear"), Row("epsilon_greedy"),
        Row("uniform", "Uniform"))


def _model_fn(hidden: int, prior_scale: float):
    from bayesdl.models import BNN, MLP, MaskedGaussian

    def build(d: int, k: int):
        return BNN(MLP(d, hidden, k), prior_scale=prior_scale, likelihood=MaskedGaussian())

    return build


def _agents(o, device) -> dict:
    """Row name -> agent, for the rows the options ask for."""
    build = _model_fn(o.hidden, o.prior_scale)
    agents = {spec.name: PosteriorAgent(spec, build, device=device) for spec in SPECS}
    agents.update(linfullpost=LinFullPostAgent(o.lambda_prior, o.a0, o.b0),
                  neural_linear=NeuralLinearAgent(MAP, build, o.lambda_prior, o.a0, o.b0, device=device),
                  epsilon_greedy=EpsilonGreedyAgent(MAP, build, o.epsilon, device=device),
                  uniform=UniformAgent())
    return {name: agents[name] for name in o.agents}


def _problems(ctx: RunContext, o) -> list[tuple[str, int, object]]:
    """``(problem key, seed, make)`` of every run: mushroom over its seeds, the wheel at each delta."""
    runs = []
    if "mushroom" in o.parts:
        runs += [("mushroom", ctx.seed + i, partial(mushroom_bandit, ctx.data_root, o.contexts, ctx.seed + i))
                 for i in range(o.seeds)]
    if "wheel" in o.parts:
        for delta in o.deltas:
            runs += [(f"wheel-{delta:g}", ctx.seed + i, partial(wheel_bandit, delta, o.wheel_contexts, ctx.seed + i))
                     for i in range(o.wheel_seeds)]
    return runs


def run(ctx: RunContext) -> StudyResult:
    o = ctx.options
    if ctx.device.type == "cpu":
        torch.set_num_threads(1)
    schedule = Schedule(o.initial_pulls, o.retrain_every, o.train_steps, o.batch_size, o.lr)
    agents = _agents(o, ctx.device)
    folder = cache_folder(ctx) / "bandits"
    shared = {k: v for k, v in dataclasses.asdict(o).items()
              if k not in ("parts", "agents", "seeds", "wheel_seeds", "deltas", "time_budget")
              and not k.startswith("dqn") and k not in ("q_dropout", "warmup", "replay", "target_every", "decay")}
    records, seconds, start = {}, {}, time.perf_counter()
    for key, seed, make in _problems(ctx, o):
        problem = None
        for name, agent in agents.items():
            path = folder / f"{key}-{name}-seed{seed}-{config_digest({**shared, 'key': key, 'seed': seed})}.json"
            if o.time_budget is not None and time.perf_counter() - start > o.time_budget and not path.exists():
                continue  # the budget is spent: report the saved runs only
            problem = problem or make()
            clock = time.perf_counter()
            records[(key, name, seed)] = run_agent(agent, problem, seed, path, schedule)
            seconds[(key, name, seed)] = time.perf_counter() - clock
            if ctx.progress:
                print(f"bandits: {key} {name} seed {seed}: regret {sum(records[(key, name, seed)].regret):.0f} "
                      f"({seconds[(key, name, seed)]:.0f} s)", flush=True)
    labels = {name: agent.label for name, agent in agents.items()}
    dqn = dqn_summary(ctx, o, dqn_runs(ctx, o, folder)) if "dqn" in o.parts else None
    return report(ctx, o, records, labels, {row.name: row.showdown for row in ROWS}, dqn)
