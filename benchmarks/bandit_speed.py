"""Speed of the MC-dropout Thompson-sampling agent of the bandits study against plain PyTorch, in one run.

Two measurements on the showdown's network (one hidden layer of 50, dropout 0.2, two arms of the
mushroom bandit's 117 one-hot features; random contexts and masked rewards of the same shape):

1. **One retraining**: fit from scratch on ``n`` observed (context, arm, reward) rows, 100
   minibatch steps of 512 (Adam, lr 1e-2). ``bayesdl`` is :meth:`PosteriorAgent.fit` --
   ``approximate("dropout", ...)`` on a :class:`~bayesdl.models.BNN` with the
   :class:`~bayesdl.models.MaskedGaussian` likelihood -- followed by the ``sample(60)`` of the
   draws the agent uses until its next refit; ``plain`` the same network with ``nn.Dropout``,
   the masked Gaussian negative log-likelihood (learned noise scale, scaled to the data set) plus
   the prior's weight decay, the same optimiser, steps and batches.
2. **One decision step**: ``bayesdl`` is :meth:`PosteriorAgent.act` (one stored draw, run by
   ``Posterior.outputs_at`` on one context, the greedy arm); ``plain`` one forward pass of the
   plain network in training mode (one fresh dropout mask) on one context, and its argmax.

Rows are timed in interleaved rounds; medians are reported, as ratios bayesdl / plain. The machine
may be shared: ratios within one run are what count.

    python benchmarks/bandit_speed.py [--rounds 3] [--rows 1000] [--steps 100] [--decisions 200]
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import time

import torch
import torch.nn as nn

from bayesdl.experiments.bandits import PosteriorAgent, Schedule
from bayesdl.experiments.methods import MethodSpec
from bayesdl.models import BNN, MLP, MaskedGaussian

D, K, HIDDEN, P, PRIOR_SCALE = 117, 2, 50, 0.2, 1.0


def bandit_model(d: int, k: int):
    return BNN(MLP(d, HIDDEN, k), prior_scale=PRIOR_SCALE, likelihood=MaskedGaussian())


def data(rows: int):
    g = torch.Generator().manual_seed(0)
    x = (torch.rand(rows, D, generator=g) < 0.2).float()
    arms = torch.randint(K, (rows,), generator=g)
    y = torch.full((rows, K), math.nan)
    y[torch.arange(rows), arms] = torch.randn(rows, generator=g)
    return x, y, arms


def plain_fit(x, y, steps: int, batch_size: int, lr: float):
    """The same objective in plain PyTorch: masked Gaussian NLL (scaled by N / B) + weight decay."""
    net = nn.Sequential(nn.Linear(D, HIDDEN), nn.ReLU(), nn.Dropout(P), nn.Linear(HIDDEN, K))
    log_scale = nn.Parameter(torch.zeros(()))
    optimizer = torch.optim.Adam([*net.parameters(), log_scale], lr=lr)
    n, decay = len(x), (1 - P) / (2 * PRIOR_SCALE**2)
    g = torch.Generator().manual_seed(1)
    done = 0
    while done < steps:
        for index in torch.randperm(n, generator=g).split(batch_size):
            observed = ~torch.isnan(y[index])
            residual = torch.where(observed, y[index] - net(x[index]), torch.zeros(()))
            nll = (0.5 * (residual / log_scale.exp()) ** 2 + log_scale) * observed
            penalty = sum((w**2).sum() for w in net.parameters())
            loss = nll.sum() * n / len(index) + decay * penalty
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            done += 1
            if done == steps:
                break
    return net


def timed(function) -> float:
    start = time.perf_counter()
    function()
    return time.perf_counter() - start


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--rows", type=int, default=1000)
    parser.add_argument("--steps", type=int, default=100)
    parser.add_argument("--decisions", type=int, default=200)
    parser.add_argument("--out", default=None, help="write the timings as JSON here")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    x, y, arms = data(args.rows)
    schedule = Schedule(steps=args.steps, batch_size=512, lr=1e-2)
    agent = PosteriorAgent(MethodSpec("dropout", options={"p": P}), bandit_model, draws_per_fit=60)
    agent.reset(K, D, seed=0)
    for i in range(args.rows):
        agent.data.add(x[i], int(arms[i]), float(y[i, arms[i]]))
    steps_per_epoch = math.ceil(args.rows / schedule.batch_size)
    plain_steps = schedule.epochs(args.rows) * steps_per_epoch  # the same number of updates as the fit

    def bayesdl_fit():
        agent.fit(0, schedule)
        agent.refreshed(0)

    def bayesdl_decide():
        for t in range(args.decisions):
            agent.act(t, x[t % args.rows], torch.Generator().manual_seed(t))

    net = plain_fit(x, y, 1, 512, 1e-2)

    @torch.no_grad()
    def plain_decide():
        net.train()
        for t in range(args.decisions):
            int(net(x[t % args.rows][None])[0].argmax())

    rows = {"fit": {"bayesdl": [], "plain": []}, "decide": {"bayesdl": [], "plain": []}}
    for _ in range(args.rounds):
        rows["fit"]["bayesdl"].append(timed(bayesdl_fit))
        rows["fit"]["plain"].append(timed(lambda: plain_fit(x, y, plain_steps, 512, 1e-2)))
        rows["decide"]["bayesdl"].append(timed(bayesdl_decide) / args.decisions)
        rows["decide"]["plain"].append(timed(plain_decide) / args.decisions)
    result = {"rows": args.rows, "updates": plain_steps, "rounds": args.rounds, "seconds": rows,
              "medians": {k: {r: statistics.median(v) for r, v in row.items()} for k, row in rows.items()}}
    result["ratios"] = {k: m["bayesdl"] / m["plain"] for k, m in result["medians"].items()}
    print(f"one retraining ({args.rows} rows, {plain_steps} updates of 512): bayesdl "
          f"{result['medians']['fit']['bayesdl']:.3f} s, plain {result['medians']['fit']['plain']:.3f} s, "
          f"ratio {result['ratios']['fit']:.2f}")
    print(f"one decision step: bayesdl {1e3 * result['medians']['decide']['bayesdl']:.3f} ms, plain "
          f"{1e3 * result['medians']['decide']['plain']:.3f} ms, ratio {result['ratios']['decide']:.2f}")
    if args.out:
        with open(args.out, "w") as handle:
            json.dump(result, handle, indent=2)
    return result


if __name__ == "__main__":
    main()
