"""Speed of deep Bayesian active learning against plain PyTorch, in one run.

Two measurements on the CNN of Gal, Islam & Ghahramani (2017) (:class:`bayesdl.models.DBALCNN`):

1. **Scoring the pool**: MC dropout probabilities of 10,000 MNIST images with ``T = 20``.
   ``bayesdl`` is ``Posterior.predict`` with the dropout guide, which runs the deterministic
   trunk (both convolutions and the pooling) once per batch and only the head 20 times;
   ``plain`` is a plain PyTorch loop of 20 full passes with ``nn.Dropout`` on (the floor a user
   writes); ``plain_channels_last`` the same loop in channels-last layout; ``bayesdl_uncached``
   the dropout guide with ``cache_trunk = False`` (20 full passes). The cached samples are
   checked to be identical to the uncached ones for the same seed. Target: bayesdl <= 0.3x plain.
2. **One acquisition step**: train from scratch on 200 labelled images (50 epochs, batch 128,
   Adam, the paper's weight decay), test, score 2,000 candidates with ``T = 20``, take the top
   10 BALD scores. ``bayesdl`` is one :meth:`ActiveLearning.step` of the study's loop;
   ``plain`` the same step written in plain PyTorch. Target: bayesdl <= 1.5x plain.

Rows are timed in interleaved rounds; medians are reported. The machine may be shared: ratios
within one run are what count.

    python benchmarks/active_learning_speed.py --data-root ../shared/data [--rounds 3]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.utils.data import DataLoader, TensorDataset

from bayesdl.experiments.active_learning import WEIGHT_DECAY_C, ActiveLearning, dbal_model
from bayesdl.experiments.data import load_images
from bayesdl.inference import DropoutGuide, Posterior
from bayesdl.models import DBALCNN
from bayesdl.runtime import retain_freed_memory

TARGETS = {"score pool": 0.3, "acquisition step": 1.5}
T, POOL, LABELLED, CANDIDATES, EPOCHS, TEST = 20, 10_000, 200, 2000, 50, 1000


def plain_net(channels_last: bool = False) -> DBALCNN:
    """The same CNN with torch's own nn.Dropout in both slots."""
    net = DBALCNN()
    net.drop_conv, net.drop_fc = nn.Dropout(0.25), nn.Dropout(0.5)
    return net.to(memory_format=torch.channels_last) if channels_last else net


@torch.no_grad()
def plain_mc(net: nn.Module, x: torch.Tensor, samples: int, channels_last: bool = False) -> torch.Tensor:
    """``samples`` full stochastic passes, ``[S, N, C]`` probabilities."""
    net.train()
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    return torch.stack([torch.cat([torch.softmax(net(b), -1) for b in x.split(1024)])
                        for _ in range(samples)])


def plain_step(x_lab, y_lab, x_cand, x_test, y_test, seed: int, epochs: int = EPOCHS):
    """One acquisition step in plain PyTorch: train, test, score, top-10 BALD."""
    torch.manual_seed(seed)
    net = plain_net()
    decay = WEIGHT_DECAY_C / len(y_lab)
    opt = torch.optim.Adam(net.parameters(), lr=1e-3)
    loader = DataLoader(TensorDataset(x_lab, y_lab), batch_size=128, shuffle=True)
    for _ in range(epochs):
        net.train()
        for xb, yb in loader:
            opt.zero_grad()
            loss = F.cross_entropy(net(xb), yb) + decay * net.fc1.weight.square().sum()
            loss.backward()
            opt.step()
    net.eval()
    with torch.no_grad():
        error = float((net(x_test).argmax(-1) != y_test).float().mean())
    probs = plain_mc(net, x_cand, T)
    mean = probs.mean(0)
    expected_entropy = -(probs * probs.clamp_min(1e-12).log()).sum(-1).mean(0)
    bald = -(mean * mean.clamp_min(1e-12).log()).sum(-1) - expected_entropy
    return error, bald.topk(10).indices


def bayesdl_step(train, initial, test, seed: int, epochs: int = EPOCHS, candidates: int = CANDIDATES):
    loop = ActiveLearning(dbal_model, method="dropout", acquisition="bald", acquisition_size=10,
                          max_labels=len(initial) + 10, candidates=candidates, num_samples=T, seed=seed,
                          method_options={"epochs": epochs, "lr": 1e-3, "batch_size": 128, "p": None})
    record = loop.start(train, initial, None)
    return loop.step(record, train, test)


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data-root", default=os.environ.get("BAYESDL_DATA"))
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--out", default=None, help="write the results as JSON here")
    parser.add_argument("--pool", type=int, default=POOL, help="images scored in part 1")
    parser.add_argument("--labelled", type=int, default=LABELLED, help="labelled images of the step")
    parser.add_argument("--epochs", type=int, default=EPOCHS, help="training epochs of the step")
    parser.add_argument("--candidates", type=int, default=CANDIDATES, help="candidates scored by the step")
    parser.add_argument("--test", type=int, default=TEST, help="test images of the step")
    args = parser.parse_args(argv)
    retain_freed_memory()
    data = load_images("mnist", args.data_root, train=True)
    x_all, y_all = data.tensors
    pool = x_all[:args.pool]

    # ---- 1. scoring the pool
    torch.manual_seed(0)
    model = dbal_model()
    guide = DropoutGuide(model, p=None)
    posterior = Posterior(model, guide, method="dropout")
    nets = {"plain": plain_net(), "plain_channels_last": plain_net(channels_last=True)}
    for net in nets.values():
        net.load_state_dict(plain_net().state_dict())

    def bayesdl_cached():
        guide.cache_trunk = True
        return posterior.predict(pool, num_samples=T).probs

    def bayesdl_uncached():
        guide.cache_trunk = False
        return posterior.predict(pool, num_samples=T).probs

    rows = {"plain": lambda: plain_mc(nets["plain"], pool, T),
            "plain_channels_last": lambda: plain_mc(nets["plain_channels_last"], pool, T, channels_last=True),
            "bayesdl": bayesdl_cached, "bayesdl_uncached": bayesdl_uncached}
    torch.manual_seed(1)
    cached = bayesdl_cached()
    torch.manual_seed(1)
    identical = bool(torch.equal(cached, bayesdl_uncached()))
    times = {row: [] for row in rows}
    for _ in range(args.rounds):
        for row, fn in rows.items():
            start = time.perf_counter()
            fn()
            times[row].append(time.perf_counter() - start)
    score = {row: statistics.median(v) for row, v in times.items()}

    # ---- 2. one acquisition step
    order = torch.randperm(len(y_all), generator=torch.Generator().manual_seed(0))
    initial = order[:args.labelled].tolist()
    test = load_images("mnist", args.data_root, train=False, limit=args.test)
    x_lab, y_lab = x_all[initial], y_all[initial]
    x_cand = x_all[order[args.labelled:args.labelled + args.candidates]]
    step_times = {"plain": [], "bayesdl": []}
    step_errors = {}
    for r in range(args.rounds):
        start = time.perf_counter()
        step_errors["plain"], _ = plain_step(x_lab, y_lab, x_cand, *test.tensors, seed=r, epochs=args.epochs)
        step_times["plain"].append(time.perf_counter() - start)
        start = time.perf_counter()
        record = bayesdl_step(data, initial, test, seed=r, epochs=args.epochs, candidates=args.candidates)
        step_times["bayesdl"].append(time.perf_counter() - start)
        step_errors["bayesdl"] = record.test_error[-1]
    step = {row: statistics.median(v) for row, v in step_times.items()}
    phases = record.seconds[-1]

    print(f"Scoring {len(pool)} images with T = {T} (median of {args.rounds} rounds):")
    print("| row | seconds | ratio to plain |\n|---|---|---|")
    for row, seconds in score.items():
        print(f"| {row} | {seconds:.2f} | {seconds / score['plain']:.3f} |")
    print(f"cached samples identical to uncached for the same seed: {identical}")
    print(f"\nOne acquisition step ({args.labelled} labels, {args.epochs} epochs, "
          f"{args.candidates} candidates, T = {T}):")
    print("| row | seconds | ratio to plain | test error |\n|---|---|---|---|")
    for row, seconds in step.items():
        print(f"| {row} | {seconds:.2f} | {seconds / step['plain']:.3f} | {step_errors[row]:.3f} |")
    print("bayesdl step phases (last round): " + ", ".join(f"{k} {v:.2f} s" for k, v in phases.items()))
    checks = {"score pool": score["bayesdl"] / score["plain"],
              "acquisition step": step["bayesdl"] / step["plain"]}
    for name, value in checks.items():
        verdict = "met" if value <= TARGETS[name] else "NOT met"
        print(f"{name}: {value:.3f}x  (target <= {TARGETS[name]}x)  {verdict}")
    result = {"score_seconds": score, "step_seconds": step, "step_errors": step_errors,
              "identical": identical, "checks": checks, "targets": TARGETS, "rounds": args.rounds,
              "torch_threads": torch.get_num_threads()}
    if args.out:
        from bayesdl.experiments.io import write_json

        write_json(args.out, result)
    return result


if __name__ == "__main__":
    sys.exit(0 if main() else 1)
