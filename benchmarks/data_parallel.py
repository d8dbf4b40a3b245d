"""Wall time of one data-parallel ``fit`` epoch against the same epoch in one process.

The same LeNet "all" with the dropout guide, the same MNIST images, the same global batch
(128: 64 per rank on two ranks), trained by ``bayesdl.inference.fit`` in one process and on two
gloo ranks of this machine through Lightning Fabric (``ddp_fork``); rounds alternate the two and
the medians are reported, with their ratio. Each rank runs with ``cores / ranks`` threads.

    python benchmarks/data_parallel.py --data-root ../shared/data [--train 4096] [--rounds 3]

On a GPU machine pass ``--accelerator cuda --devices N``. Needs ``pip install -e ".[distributed]"``.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

import torch

from bayesdl.experiments.data import load_images
from bayesdl.inference import DropoutGuide, distributed, fit
from bayesdl.models import BNN, LeNet
from bayesdl.runtime import retain_freed_memory


def epoch_seconds(x, y, epochs: int, device: str | None = None) -> float:
    """Seconds per epoch of the dropout guide on ``(x, y)`` after a one-epoch warm-up."""
    torch.manual_seed(0)
    model = BNN(LeNet(dropout="all"), prior_scale=1.0)
    guide = DropoutGuide(model)
    fit(model, guide, (x[:512], y[:512]), epochs=1, batch_size=128, seed=0, progress=False, device=device)
    start = time.perf_counter()
    fit(model, guide, (x, y), epochs=epochs, batch_size=128, seed=0, progress=False, device=device)
    return (time.perf_counter() - start) / epochs


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data-root", default=os.environ.get("BAYESDL_DATA"))
    parser.add_argument("--train", type=int, default=4096, help="training images")
    parser.add_argument("--epochs", type=int, default=1, help="timed epochs per round")
    parser.add_argument("--rounds", type=int, default=3, help="alternating rounds")
    parser.add_argument("--devices", type=int, default=2, help="ranks of the data-parallel run")
    parser.add_argument("--accelerator", default="cpu", help="cpu (gloo) or cuda (NCCL)")
    args = parser.parse_args(argv)
    retain_freed_memory()
    x, y = load_images("mnist", args.data_root, train=True, limit=args.train).tensors
    device = "cuda" if args.accelerator == "cuda" else None
    one, many = [], []
    for r in range(args.rounds):
        one.append(epoch_seconds(x, y, args.epochs, device))
        many.append(distributed.launch(epoch_seconds, x, y, args.epochs, devices=args.devices,
                                       strategy="ddp_fork" if args.accelerator == "cpu" else "ddp_spawn",
                                       accelerator=args.accelerator))
        print(f"round {r + 1}: one process {one[-1]:.2f} s, {args.devices} ranks {many[-1]:.2f} s",
              flush=True)
    result = {"one_process_s": statistics.median(one), "data_parallel_s": statistics.median(many),
              "devices": args.devices, "train": len(y), "threads_one_process": torch.get_num_threads()}
    result["speed_up"] = result["one_process_s"] / result["data_parallel_s"]
    print(f"\nLeNet 'all', dropout guide, {len(y)} images, global batch 128: one epoch in one process "
          f"{result['one_process_s']:.2f} s, on {args.devices} ranks {result['data_parallel_s']:.2f} s "
          f"(x{result['speed_up']:.2f}); medians of {args.rounds} alternating rounds")
    return result


if __name__ == "__main__":
    main()
