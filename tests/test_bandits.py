"""The Thompson-sampling loop: regret growth, resume to the same decisions, problems, bad input."""

from __future__ import annotations

import json
import warnings

import numpy as np
import pytest
import torch

from bayesdl.experiments import bandits
from bayesdl.experiments.bandit_data import MUSHROOM_FILE, mushroom_bandit, read_mushrooms, wheel_bandit
from bayesdl.experiments.bandits import (
    BanditProblem,
    EpsilonGreedyAgent,
    LinFullPostAgent,
    NeuralLinearAgent,
    PosteriorAgent,
    Schedule,
    UniformAgent,
    run_agent,
    run_bandit,
)
from bayesdl.experiments.methods import MethodSpec
from bayesdl.models import BNN, MLP, MaskedGaussian


def two_armed(steps: int, seed: int) -> BanditProblem:
    """Arms N(0, 1) and N(1, 1), no context (one constant feature)."""
    g = torch.Generator().manual_seed(seed)
    means = torch.tensor([0.0, 1.0], dtype=torch.float64)
    rewards = means + torch.randn(steps, 2, generator=g, dtype=torch.float64)
    return BanditProblem(torch.zeros(steps, 1), rewards, means.expand(steps, 2))


def small_net(d, k):
    return BNN(MLP(d, 8, k), prior_scale=1.0, likelihood=MaskedGaussian())


def test_thompson_regret_grows_sublinearly_and_uniform_linearly():
    """600 steps, 3 seeds: uniform pays 1/2 per step in both halves; Thompson sampling with the
    Normal-inverse-Gamma posterior pays far less in the second half than in the first."""
    halves = {"thompson": [], "uniform": []}
    for seed in range(3):
        problem = two_armed(600, seed)
        for name, agent in (("thompson", LinFullPostAgent(lambda_prior=0.25, a0=1.0, b0=1.0)),
                            ("uniform", UniformAgent())):
            regret = np.asarray(run_bandit(agent, problem, seed).regret)
            halves[name].append((regret[:300].sum(), regret[300:].sum()))
    uniform, thompson = np.mean(halves["uniform"], 0), np.mean(halves["thompson"], 0)
    # uniform: Binomial(300, 1/2) pulls of the bad arm per half, sd about 8.7 -- within 4 sd of 150
    assert np.all(np.abs(uniform - 150) < 35)
    assert thompson[1] < 0.5 * thompson[0]
    assert thompson.sum() < 0.1 * uniform.sum()


@pytest.mark.slow
def test_a_posterior_agent_learns_the_two_armed_bandit():
    """MC dropout Thompson sampling (refit every 50 steps) beats uniform, and its regret per step
    falls: the last 100 steps cost less than the first 100."""
    problem = two_armed(300, 0)
    schedule = Schedule(retrain_every=50, steps=30, batch_size=64, lr=3e-2)
    agent = PosteriorAgent(MethodSpec("dropout", options={"p": 0.2}), small_net, draws_per_fit=50)
    regret = np.asarray(run_bandit(agent, problem, 0, schedule).regret)
    uniform = np.asarray(run_bandit(UniformAgent(), problem, 0, schedule).regret)
    assert regret.sum() < 0.5 * uniform.sum()
    assert regret[-100:].sum() < regret[:100].sum()


def test_an_interrupted_run_resumes_to_the_same_decisions(tmp_path, monkeypatch):
    """A run is a function of its seed: one stopped half-way and restarted makes the decisions of an
    uninterrupted one; a finished run is saved (verified) and served; a damaged file is recomputed."""
    g = torch.Generator().manual_seed(0)
    contexts = torch.randn(50, 3, generator=g)
    expected = torch.stack([contexts[:, 0], -contexts[:, 0]], 1).double()
    problem = BanditProblem(contexts, expected + 0.1 * torch.randn(50, 2, generator=g).double(), expected)
    schedule = Schedule(retrain_every=20, steps=5, batch_size=32)

    def agent():
        return PosteriorAgent(MethodSpec("dropout", options={"p": 0.2}), small_net, draws_per_fit=10)

    uninterrupted = run_bandit(agent(), problem, 3, schedule)
    partial = run_bandit(agent(), problem, 3, schedule, stop_after=30)
    assert partial.arms == uninterrupted.arms[:30]
    path = tmp_path / "run.json"
    resumed = run_agent(agent(), problem, 3, path, schedule)
    assert resumed.arms == uninterrupted.arms and resumed.regret == uninterrupted.regret

    monkeypatch.setattr(bandits, "run_bandit", lambda *a, **k: pytest.fail("a saved run was recomputed"))
    assert run_agent(agent(), problem, 3, path, schedule).arms == uninterrupted.arms
    monkeypatch.undo()

    stored = json.loads(path.read_text())
    stored["arms"][0] = 1 - stored["arms"][0]
    path.write_text(json.dumps(stored))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        again = run_agent(agent(), problem, 3, path, schedule)
    assert any("digest" in str(w.message) for w in caught)
    assert again.arms == uninterrupted.arms


def test_every_agent_runs_and_is_deterministic():
    problem = wheel_bandit(0.5, 60, seed=1)
    schedule = Schedule(retrain_every=25, steps=3, batch_size=32)
    for make in (lambda: NeuralLinearAgent(MethodSpec("map"), small_net),
                 lambda: EpsilonGreedyAgent(MethodSpec("map"), small_net, epsilon=0.1),
                 lambda: PosteriorAgent(MethodSpec("deep_ensemble", options={"members": 2}), small_net),
                 lambda: LinFullPostAgent()):
        first, second = (run_bandit(make(), problem, 0, schedule) for _ in range(2))
        assert first.arms == second.arms and len(first.arms) == 60
        assert set(first.arms) <= set(range(5))


def test_the_wheel_bandit_has_the_showdowns_structure():
    problem = wheel_bandit(0.9, 5000, seed=0)
    radius = problem.contexts.norm(dim=1)
    assert float(radius.max()) <= 1.0
    best = problem.expected.argmax(1)
    inside = radius <= 0.9
    assert torch.all(best[inside] == 0) and torch.all(problem.expected[inside, 0] == 1.2)
    x = problem.contexts[~inside]
    quadrant = torch.where(x[:, 0] > 0, torch.where(x[:, 1] > 0, 1, 2), torch.where(x[:, 1] > 0, 3, 4))
    assert torch.equal(best[~inside], quadrant)
    assert float((problem.rewards - problem.expected).std()) == pytest.approx(0.01, rel=0.05)
    with pytest.raises(ValueError, match="delta"):
        wheel_bandit(1.0)


def test_bad_input_is_refused(tmp_path):
    with pytest.raises(ValueError, match="K >= 2"):
        BanditProblem(torch.zeros(3, 2), torch.zeros(3, 1), torch.zeros(3, 1))
    with pytest.raises(ValueError, match="shape of rewards"):
        BanditProblem(torch.zeros(3, 2), torch.zeros(3, 2), torch.zeros(3, 3))
    with pytest.raises(TypeError, match="MethodSpec"):
        PosteriorAgent("dropout", small_net)
    with pytest.raises(TypeError, match="function"):
        PosteriorAgent(MethodSpec("dropout"), small_net(2, 2))
    with pytest.raises(TypeError, match="agent"):
        run_bandit(object(), two_armed(5, 0), 0)
    with pytest.raises(ValueError, match="retrain_every"):
        Schedule(retrain_every=0)
    gaussian = PosteriorAgent(MethodSpec("map"), lambda d, k: BNN(MLP(d, 4, k), likelihood="gaussian"))
    with pytest.raises(TypeError, match="MaskedGaussian"):
        run_bandit(gaussian, two_armed(10, 0), 0, Schedule(initial_pulls=1, retrain_every=2, steps=1))


def test_an_unexpected_mushroom_value_is_refused(tmp_path):
    (tmp_path / "mushroom").mkdir()
    row = "p,x,s,n,t,p,f,c,n,k,e,e,s,s,w,w,p,w,o,p,k,s,u"
    (tmp_path / MUSHROOM_FILE).write_text(row + "\n" + row.replace("p,x,s", "p,q,s", 1) + "\n")
    with pytest.raises(ValueError, match=":2: attribute 1 must be one of"):
        read_mushrooms(tmp_path)
    (tmp_path / MUSHROOM_FILE).write_text("x" + row[1:] + "\n")
    with pytest.raises(ValueError, match="class must be"):
        read_mushrooms(tmp_path)
    with pytest.raises(FileNotFoundError, match="agaricus"):
        read_mushrooms(tmp_path / "nowhere")


@pytest.mark.data
def test_the_mushroom_bandit_follows_the_reward_rule(data_root):
    edible, features = read_mushrooms(data_root)
    assert features.shape == (8124, 117) and int(edible.sum()) == 4208
    assert np.all(features.sum(1) == 22)
    problem = mushroom_bandit(data_root, 2000, seed=0)
    eat, expected = problem.rewards[:, 0], problem.expected[:, 0]
    assert set(expected.tolist()) == {5.0, -15.0}
    assert torch.all(eat[expected == 5.0] == 5.0)
    poison = eat[expected == -15.0]
    assert set(poison.tolist()) == {5.0, -35.0}
    assert float((poison == -35.0).double().mean()) == pytest.approx(0.5, abs=0.05)
    assert torch.all(problem.rewards[:, 1] == 0) and torch.all(problem.expected[:, 1] == 0)
