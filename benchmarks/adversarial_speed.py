"""Speed of a PGD attack on an MC-dropout posterior against plain PyTorch, in one run.

The work (issue 31): PGD in the L-infinity ball, 10 steps, on 1,000 MNIST-sized images, the
gradient of every step taken through the MC-dropout predictive with ``T = 20`` masks, on the
LeNet "all" of the studies (dropout after both conv blocks and fc 500, p = 0.5).

- ``bayesdl``: :func:`bayesdl.inference.pgd` on a ``Posterior`` of the dropout guide (through
  :meth:`~bayesdl.inference.Posterior.predictive_log_probs`);
- ``plain``: plain PyTorch -- the same LeNet as an ``nn.Module`` with ``nn.Dropout`` on, a hand
  loop over the 20 masks per step (``log`` of the mean softmax), the same projected steps.

Both use the same images, labels, weights, epsilon 0.1 and step 0.025, zero start. Rows are
timed in interleaved rounds, medians reported; the ratio ``bayesdl / plain`` is the number
(target <= 0.8). The machine may be shared: ratios within one run are what count.

    python benchmarks/adversarial_speed.py [--images 1000] [--samples 20] [--steps 10] [--rounds 3]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time

import torch
import torch.nn as nn
import torch.nn.functional as F

from bayesdl.inference import DropoutGuide, Posterior, pgd
from bayesdl.models import BNN
from bayesdl.models.networks import LeNet
from bayesdl.runtime import retain_freed_memory

TARGET = 0.8
EPSILON, STEP = 0.1, 0.025
MEAN, STD = 0.1307, 0.3081


class PlainLeNet(nn.Module):
    """The LeNet "all" of :class:`bayesdl.models.networks.LeNet` with ``nn.Dropout`` in its slots."""

    def __init__(self, source: LeNet, p: float = 0.5):
        super().__init__()
        self.conv1, self.conv2, self.fc1, self.fc2 = source.conv1, source.conv2, source.fc1, source.fc2
        self.drop = nn.Dropout(p)

    def forward(self, x):
        h = self.drop(F.relu(F.max_pool2d(self.conv1(x), 2)))
        h = self.drop(F.relu(F.max_pool2d(self.conv2(h), 2)))
        return self.fc2(self.drop(F.relu(self.fc1(h.flatten(1)))))


def plain_pgd(net: nn.Module, x, y, samples: int, steps: int, batch: int = 256) -> torch.Tensor:
    """PGD from ``x`` (zero start): per step, the loss ``-ln (1/T sum_t softmax(f_t(x))_y)`` over a
    hand loop of ``samples`` dropout masks, a signed step, the projection and the clipping."""
    net.train()
    out = []
    for xb, yb in zip(x.split(batch), y.split(batch)):
        current = xb.clone()
        for _ in range(steps):
            pixels = current.clone().requires_grad_(True)
            inputs = (pixels - MEAN) / STD
            probs = torch.stack([torch.softmax(net(inputs), -1) for _ in range(samples)]).mean(0)
            loss = -probs.gather(1, yb[:, None]).clamp_min(1e-30).log().sum()
            (grad,) = torch.autograd.grad(loss, pixels)
            moved = current + STEP * grad.sign()
            current = (xb + (moved - xb).clamp(-EPSILON, EPSILON)).clamp(0, 1)
        out.append(current)
    return torch.cat(out)


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--images", type=int, default=1000)
    parser.add_argument("--samples", type=int, default=20)
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--threads", type=int, default=int(os.environ.get("OMP_NUM_THREADS", "1")))
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--json", default=None, help="also write the results to this file")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    if device.type == "cpu":
        retain_freed_memory()
    torch.manual_seed(0)
    x = torch.rand(args.images, 1, 28, 28, device=device)
    y = torch.randint(0, 10, (args.images,), device=device)
    net = LeNet(dropout="all", p=0.5).to(device)
    plain = PlainLeNet(LeNet(dropout="all", p=0.5)).to(device)
    plain.load_state_dict({k: v for k, v in net.state_dict().items()}, strict=False)
    model = BNN(net, prior_scale=1.0)
    posterior = Posterior(model, DropoutGuide(model))

    def ours():
        return pgd(posterior, x, y, EPSILON, steps=args.steps, step_size=STEP, random_start=False,
                   num_samples=args.samples, normalization=(MEAN, STD))

    def theirs():
        return plain_pgd(plain, x, y, args.samples, args.steps)

    rows = {"bayesdl": ours, "plain": theirs}
    times = {name: [] for name in rows}
    for _ in range(args.rounds):
        for name, fn in rows.items():
            if device.type == "cuda":
                torch.cuda.synchronize()
            start = time.perf_counter()
            result = fn()
            if device.type == "cuda":
                torch.cuda.synchronize()
            times[name].append(time.perf_counter() - start)
            assert float((result - x).abs().max()) <= EPSILON + 1e-6 and 0 <= float(result.min())
    median = {name: statistics.median(t) for name, t in times.items()}
    ratio = median["bayesdl"] / median["plain"]
    summary = {"images": args.images, "samples": args.samples, "steps": args.steps, "rounds": args.rounds,
               "threads": args.threads, "device": str(device), "seconds": median,
               "ratio_bayesdl_to_plain": ratio, "target": TARGET, "met": ratio <= TARGET}
    print(f"PGD, {args.steps} steps, T = {args.samples}, {args.images} images ({device}, {args.threads} "
          f"thread(s), median of {args.rounds}): bayesdl {median['bayesdl']:.2f} s, plain PyTorch "
          f"{median['plain']:.2f} s, ratio {ratio:.2f}x (target <= {TARGET}x: "
          f"{'met' if ratio <= TARGET else 'not met'})")
    if args.json:
        with open(args.json, "w") as handle:
            json.dump(summary, handle, indent=1)
    return summary


if __name__ == "__main__":
    main()
