"""The cost of an SGHMC epoch against a plain PyTorch SGD-with-momentum epoch, in one run.

Both rows train the same LeNet (no dropout) on the same images with the same batches (batch
128): the plain row is ``torch.optim.SGD(momentum=0.9)`` on the mean cross-entropy plus the
prior's weight decay -- SGHMC's update without its noise -- and the ``sghmc`` row is
``bayesdl.inference.sghmc`` (one chain; the flat-weight potential, its gradient, the update
with noise, the NaN guard, the collector keeping one draw an epoch). A second plain row runs
in channels-last layout, as bayesdl does for images on the CPU, so the ratio is taken to the
faster of the two. Rows are timed in interleaved rounds of ``--epochs`` epochs; medians and
ratios are reported.

    python benchmarks/sgmcmc_speed.py [--data-root DIR] [--train 10000] [--rounds 3] [--device cuda]

Without ``--data-root`` the images are random (the speed does not depend on their content).
Target (2-core CPU): an SGHMC epoch <= 1.1x the plain SGD epoch.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time

import torch
import torch.nn.functional as F

from bayesdl.inference import sghmc
from bayesdl.models import BNN, LeNet
from bayesdl.runtime import retain_freed_memory

TARGET = 1.1
LR, MOMENTUM, BATCH, PRIOR = 0.01, 0.9, 128, 1.0


def _images(args) -> tuple[torch.Tensor, torch.Tensor]:
    if args.data_root is None:
        g = torch.Generator().manual_seed(0)
        x = torch.rand(args.train, 1, 28, 28, generator=g)
        return x, torch.randint(0, 10, (args.train,), generator=g)
    from bayesdl.experiments.data import load_images

    data = load_images("mnist", args.data_root, train=True, limit=args.train)
    return data.tensors


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def plain_epochs(x, y, epochs: int, channels_last: bool, device) -> float:
    """``epochs`` of SGD with momentum on mean CE + ||w||^2 / (2 N s^2): seconds."""
    torch.manual_seed(0)
    layout = torch.channels_last if channels_last else torch.contiguous_format
    net = LeNet(dropout=None).to(device, memory_format=layout)
    opt = torch.optim.SGD(net.parameters(), lr=LR, momentum=MOMENTUM, weight_decay=1.0 / (len(x) * PRIOR**2))
    _sync(device)
    start = time.perf_counter()
    for _ in range(epochs):
        order = torch.randperm(len(x), device=device)
        for index in order.split(BATCH):
            opt.zero_grad(set_to_none=True)
            F.cross_entropy(net(x[index].contiguous(memory_format=layout)), y[index]).backward()
            opt.step()
    _sync(device)
    return time.perf_counter() - start


def sghmc_epochs(x, y, epochs: int, device) -> float:
    """``epochs`` of one SGHMC chain at the same step (``lr``, friction ``1 - momentum``): seconds."""
    model = BNN(LeNet(dropout=None), prior_scale=PRIOR).to(device)
    _sync(device)
    start = time.perf_counter()
    sghmc(model, (x, y), lr=LR, friction=1 - MOMENTUM, epochs=epochs, batch_size=BATCH, num_chains=1,
          burn_in=0, progress=False, device=device)
    _sync(device)
    return time.perf_counter() - start


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-root", default=None)
    parser.add_argument("--train", type=int, default=10000)
    parser.add_argument("--epochs", type=int, default=2, help="epochs per timed round")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--json", default=None)
    args = parser.parse_args(argv)
    device = torch.device(args.device)
    if device.type == "cpu":
        retain_freed_memory()
    x, y = (t.to(device) for t in _images(args))
    rows = {"plain": lambda: plain_epochs(x, y, args.epochs, False, device),
            "plain_channels_last": lambda: plain_epochs(x, y, args.epochs, True, device),
            "sghmc": lambda: sghmc_epochs(x, y, args.epochs, device)}
    rows["plain"]()  # warm-up: allocator, oneDNN kernels
    times = {name: [] for name in rows}
    for _ in range(args.rounds):
        for name, run in rows.items():
            times[name].append(run() / args.epochs)
    table = {name: {"epoch_s": statistics.median(values)} for name, values in times.items()}
    floor = min(table["plain"]["epoch_s"], table["plain_channels_last"]["epoch_s"])
    for row in table.values():
        row["ratio_to_plain"] = row["epoch_s"] / floor
    print("| row | epoch (s) | ratio to the faster plain row |\n|---|---|---|")
    for name, row in table.items():
        print(f"| {name} | {row['epoch_s']:.3f} | {row['ratio_to_plain']:.3f} |")
    ratio = table["sghmc"]["ratio_to_plain"]
    verdict = "met" if ratio <= TARGET else "missed"
    print(f"sghmc epoch: {ratio:.3f}x plain SGD (target <= {TARGET}x: {verdict}); "
          f"{args.train} images, batch {BATCH}, {args.rounds} rounds of {args.epochs} epochs, {device}")
    result = {"table": table, "target": TARGET, "train": args.train, "device": str(device),
              "threads": torch.get_num_threads()}
    if args.json:
        with open(args.json, "w") as f:
            json.dump(result, f, indent=2)
    return result


if __name__ == "__main__":
    main(sys.argv[1:])
