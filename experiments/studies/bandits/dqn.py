"""The dropout Q-network (Gal 2016, thesis sec. 5.1; the course's last application slide): DQN on
gymnasium's CartPole-v1 with Thompson sampling -- one dropout mask drawn at the start of each
episode and held for the whole episode, the greedy action under it -- against epsilon-greedy.

The Q-network is a plain MC-dropout MLP (4 - 64 - 64 - 2, ReLU, dropout ``p`` after each hidden
layer) trained by DQN with per-example masks: a replay buffer, one minibatch update per
environment step after a warm-up, a target network synchronised every ``target_every`` updates.
The SVI path (``approximate("dropout", ...)``) is not used: one call fits a fresh guide, and
per-step updates through it cost one ``fit`` per step (``benchmarks/bandit_speed.py`` measures
one refit of 100 updates at 1.7x plain PyTorch plus the set-up of a fit), so the network here is
the dropout network itself, as in Gal's experiment. Epsilon-greedy acts with dropout off and
``epsilon`` decaying linearly from 1 to 0.05 over the first ``decay`` steps.

Both agents act uniformly at random during the ``warmup`` steps that fill the replay buffer before
the first update (the ``learning_starts`` of DQN implementations). Acting greedily there instead, a
Thompson agent whose untrained network preferred one action filled its buffer with that action only;
the other action's Q-value was then never trained, its dropout spread stayed small, and on 3 of 5
seeds the agent pushed the same way for 20,000 steps (episodes of 9.35 steps; measured at stop 40).

Each (agent, seed) run is saved (verified JSON) and served on a rerun.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn as nn

from ...io import read_verified_json, write_verified_json

FORMAT = "bayesdl-dqn-run-2"  # 2: uniform actions during the warm-up (runs of format 1 are recomputed)
AGENTS = {"thompson": "Thompson sampling (one dropout mask per episode)",
          "epsilon_greedy": "epsilon-greedy (1 -> 0.05)"}
SOLVED = 475.0  # CartPole-v1's reward threshold
LEARNING = 100.0  # a moving mean of 100 (a fifth of the maximum): when an agent has started to learn


class QNetwork(nn.Module):
    """``Q(s, .)`` ``[N, A]``; ``masks`` (two ``[1, 64]`` tensors) fix the dropout masks, else each
    example draws its own (training) or none (``dropout=False``)."""

    def __init__(self, states: int, actions: int, hidden: int, p: float):
        super().__init__()
        self.first, self.second, self.out = nn.Linear(states, hidden), nn.Linear(hidden, hidden), nn.Linear(hidden, actions)
        self.p = p

    def masks(self, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        keep = 1 - self.p
        return tuple((torch.rand(1, self.first.out_features, generator=generator) < keep).float() / keep
                     for _ in range(2))

    def forward(self, s, masks=None, dropout: bool = True):
        h = torch.relu(self.first(s))
        h = h * masks[0] if masks is not None else nn.functional.dropout(h, self.p, dropout)
        h = torch.relu(self.second(h))
        h = h * masks[1] if masks is not None else nn.functional.dropout(h, self.p, dropout)
        return self.out(h)


class _Replay:
    """A ring buffer of the last ``size`` transitions (s, a, r, s', terminated), as arrays."""

    def __init__(self, size: int, states: int):
        self.s, self.s2 = np.zeros((size, states), np.float32), np.zeros((size, states), np.float32)
        self.a, self.r, self.done = np.zeros(size, np.int64), np.zeros(size, np.float32), np.zeros(size, np.float32)
        self.size, self.count = size, 0

    def add(self, s, a, r, s2, done) -> None:
        i = self.count % self.size
        self.s[i], self.a[i], self.r[i], self.s2[i], self.done[i] = s, a, r, s2, done
        self.count += 1

    def batch(self, n: int, generator: torch.Generator):
        index = torch.randint(min(self.count, self.size), (n,), generator=generator).numpy()
        return tuple(torch.from_numpy(part[index]) for part in (self.s, self.a, self.r, self.s2, self.done))


def _update(net, target, optimizer, replay, batch, gamma, generator):
    """One DQN minibatch update on the ``replay`` buffer."""
    s, a, r, s2, done = replay.batch(batch, generator)
    with torch.no_grad():
        best = target(s2, dropout=False).max(1).values
        y = r + gamma * (1 - done) * best
    q = net(s).gather(1, a[:, None])[:, 0]
    loss = nn.functional.smooth_l1_loss(q, y)
    optimizer.zero_grad()
    loss.backward()
    optimizer.step()


def run_dqn(agent: str, seed: int, o) -> dict:
    """One run: episode returns and the training batches done at the end of each episode."""
    import gymnasium

    torch.manual_seed(seed)
    generator = torch.Generator().manual_seed(seed)
    env = gymnasium.make("CartPole-v1")
    net = QNetwork(4, 2, 64, o.q_dropout)
    target = QNetwork(4, 2, 64, o.q_dropout)
    target.load_state_dict(net.state_dict())
    optimizer = torch.optim.Adam(net.parameters(), lr=1e-3)
    replay = _Replay(o.replay, 4)
    returns, batches, updates, steps, episode = [], [], 0, 0, 0
    while steps < o.dqn_steps:
        state, _ = env.reset(seed=seed * 10_000 + episode)
        masks = net.masks(generator) if agent == "thompson" else None
        total, done = 0.0, False
        while not done and steps < o.dqn_steps:
            action = _act(net, agent, state, masks, steps, o, generator)
            next_state, reward, terminated, truncated, _ = env.step(action)
            replay.add(state, action, reward, next_state, terminated)
            state, total, steps, done = next_state, total + reward, steps + 1, terminated or truncated
            if steps > o.warmup:
                _update(net, target, optimizer, replay, 64, 0.99, generator)
                updates += 1
                if updates % o.target_every == 0:
                    target.load_state_dict(net.state_dict())
        returns.append(total)
        batches.append(updates)
        episode += 1
    return {"agent": agent, "seed": seed, "returns": returns, "batches": batches}


@torch.no_grad()
def _act(net, agent, state, masks, steps, o, generator) -> int:
    if steps < o.warmup:  # the warm-up fills the replay buffer with uniform actions, for both agents
        return int(torch.randint(2, (), generator=generator))
    s = torch.as_tensor(state, dtype=torch.float32)[None]
    if agent == "thompson":
        return int(net(s, masks=masks).argmax())
    epsilon = max(0.05, 1 - 0.95 * steps / o.decay)
    if float(torch.rand((), generator=generator)) < epsilon:
        return int(torch.randint(2, (), generator=generator))
    return int(net(s, dropout=False).argmax())


def dqn_runs(ctx, o, folder) -> dict:
    """Every (agent, seed) run, from the cache folder where saved."""
    from ...training import config_digest

    runs = {}
    key = config_digest({k: getattr(o, k) for k in ("dqn_steps", "q_dropout", "warmup", "replay", "target_every",
                                                    "decay")})
    for seed in range(ctx.seed, ctx.seed + o.dqn_seeds):
        for agent in AGENTS:
            path = folder / f"dqn-{agent}-seed{seed}-{key}.json"
            try:
                runs[(agent, seed)] = read_verified_json(path, FORMAT)
            except (FileNotFoundError, ValueError):
                runs[(agent, seed)] = run_dqn(agent, seed, o)
                folder.mkdir(parents=True, exist_ok=True)
                write_verified_json(path, runs[(agent, seed)], FORMAT)
            if ctx.progress:
                r = runs[(agent, seed)]["returns"]
                print(f"bandits: dqn {agent} seed {seed}: {len(r)} episodes, last 10 mean {np.mean(r[-10:]):.0f}",
                      flush=True)
    return runs


def _curve(run, grid):
    """Episode return against training batches, as a step function on ``grid``; a moving mean of 10."""
    returns = np.convolve(run["returns"], np.ones(10) / 10, mode="full")[: len(run["returns"])]
    counts = np.minimum(np.arange(1, len(returns) + 1), 10)
    returns = returns * 10 / counts
    index = np.searchsorted(run["batches"], grid, side="right") - 1
    return np.where(index >= 0, returns[np.clip(index, 0, None)], np.nan)


def _first(grid, curve, level) -> int | None:
    """The first training-batch count of ``grid`` where ``curve`` reaches ``level`` (None: never)."""
    return int(grid[np.argmax(curve >= level)]) if np.any(curve >= level) else None


def dqn_summary(ctx, o, runs) -> tuple[dict, str | None, str]:
    """Results, the figure (average reward against training batches, log x) and a table."""
    from bayesdl.evaluation.plotting import new_figure

    from ...io import markdown_table

    grid = np.unique(np.geomspace(10, max(o.dqn_steps - o.warmup, 11), 200).astype(int))
    fig, axes = new_figure(size=(7, 4.5))
    ax, results, rows = axes[0, 0], {}, []
    for agent, label in AGENTS.items():
        seeds = [r for (a, _), r in runs.items() if a == agent]
        curves = np.array([_curve(r, grid) for r in seeds])
        mean = np.nanmean(curves, 0)
        ax.plot(grid, mean, label=label)
        reached = [_first(grid, c, SOLVED) for c in curves]
        learning = [_first(grid, c, LEARNING) for c in curves]
        final = [float(np.mean(r["returns"][-10:])) for r in seeds]
        results[agent] = {"final_mean": float(np.mean(final)), "final_per_seed": final,
                          "batches_to_solved_per_seed": reached, "batches_to_100_per_seed": learning,
                          "batches_to_100_of_the_mean": _first(grid, mean, LEARNING), "peak_of_the_mean": float(np.nanmax(mean)),
                          "episodes": [len(r["returns"]) for r in seeds]}
        rows.append([label, f"{np.mean(final):.0f} +- {np.std(final, ddof=1) / np.sqrt(len(final)):.0f}"
                     if len(final) > 1 else f"{final[0]:.0f}", f"{np.nanmax(mean):.0f}", str(_first(grid, mean, LEARNING)),
                     str(learning), str(reached), len(seeds)])
    ax.axhline(SOLVED, color="grey", ls="--", lw=0.8)
    ax.set_xscale("log")
    ax.set_xlabel("training batches")
    ax.set_ylabel("average reward (episode return, moving mean of 10)")
    ax.set_title(f"CartPole-v1: dropout Q-network, mean over {o.dqn_seeds} seed(s)")
    ax.legend(fontsize=8)
    name = ctx.figure(fig, "dqn_average_reward.png")
    table = markdown_table(["agent", "return, last 10 episodes", "peak of the mean curve",
                            "batches to 100, mean curve", "batches to 100, per seed", "batches to 475, per seed",
                            "seeds"], rows)
    return results, name, table
