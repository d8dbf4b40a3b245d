"""Training and prediction speed of the guides against plain PyTorch, in one run.

Every row trains the same LeNet (dropout "all") on the same MNIST images with the same
DataLoader (batch 128, Adam). Rows are timed in interleaved rounds and reported as medians
and as ratios to plain PyTorch dropout, the floor. Peak memory is the resident-set high
water mark of one training epoch, measured in a fresh subprocess per row.

    python benchmarks/bnn_speed.py --data-root ../shared/data [--train 10000] [--rounds 5] [--device cuda]

On a GPU (``--device cuda``) the images live on the device, minibatches are indexed whole, every
timing waits for the device, and peak memory is the device's allocation high-water mark.

Rows:
- ``plain``           plain PyTorch, ``nn.Dropout`` (the floor);
- ``plain_channels_last`` plain PyTorch, ``nn.Dropout``, model and images in channels-last
  layout (what bayesdl does for images on the CPU; shows how much of the gain is layout);
- ``plain_fastmask``  plain PyTorch with bayesdl's ``bayesdl.models.Dropout`` (same model, faster masks);
- ``dropout``         ``DropoutGuide`` through ``bayesdl.inference.fit``;
- ``mean_field``      ``MeanFieldGuide`` through ``bayesdl.inference.fit``;
- ``map``             ``MAPGuide`` through ``bayesdl.inference.fit``;
- ``pyro_autonormal`` the naive Pyro way: a ``PyroModule`` LeNet with ``PyroSample`` priors,
  ``AutoNormal``, ``Trace_ELBO`` and ``pyro.optim.Adam`` in ``pyro.infer.SVI``.

Targets (2-core CPU): dropout epoch <= 1.15x plain; mean-field epoch <= 1.6x plain; dropout
``predict`` with 100 samples <= 1.2x a plain loop of 100 dropout passes; peak memory <= 1.3x.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import statistics
import sys
import time
from pathlib import Path

import pyro
import pyro.distributions as dist
import torch
import torch.nn as nn
import torch.nn.functional as F
from pyro.infer import SVI, Predictive, Trace_ELBO
from pyro.infer.autoguide import AutoNormal
from pyro.nn import PyroSample
from pyro.nn.module import to_pyro_module_
from torch.utils.data import BatchSampler, DataLoader, RandomSampler

from bayesdl.experiments.data import load_images
from bayesdl.inference import DropoutGuide, MAPGuide, MeanFieldGuide, Posterior, fit
from bayesdl.models import BNN, LeNet
from bayesdl.runtime import retain_freed_memory

TARGETS = {"train dropout": 1.15, "train mean_field": 1.6, "predict dropout": 1.2, "memory": 1.3}
ROWS = ("plain", "plain_channels_last", "plain_fastmask", "dropout", "mean_field", "map",
        "pyro_autonormal")


def torch_dropout_lenet() -> LeNet:
    """LeNet "all" with torch's own nn.Dropout in every slot."""
    net = LeNet(dropout="all")
    for name, module in list(net.named_children()):
        if isinstance(module, nn.Dropout):
            setattr(net, name, nn.Dropout(module.p))
    return net


class PlainTrainer:
    def __init__(self, net, channels_last=False):
        self.format = torch.channels_last if channels_last else torch.contiguous_format
        self.net = net.to(memory_format=self.format)
        self.opt = torch.optim.Adam(net.parameters(), lr=1e-3)

    def epoch(self, loader):
        self.net.train()
        for x, y in loader:
            self.opt.zero_grad()
            F.cross_entropy(self.net(x.contiguous(memory_format=self.format)), y).backward()
            self.opt.step()

    @torch.no_grad()
    def predict(self, x, num_samples):
        """The plain MC-dropout loop: dropout on, softmax of each pass, stacked [S, N, C]."""
        self.net.train()
        x = x.contiguous(memory_format=self.format)
        return torch.stack([torch.softmax(self.net(x), -1) for _ in range(num_samples)])


class GuideTrainer:
    def __init__(self, guide_cls):
        self.model = BNN(LeNet(dropout="all"), prior_scale=1.0).to(DEVICE)
        self.guide = guide_cls(self.model).to(DEVICE)

    def epoch(self, loader):
        fit(self.model, self.guide, loader, epochs=1, lr=1e-3, progress=False)

    def predict(self, x, num_samples):
        return Posterior(self.model, self.guide).predict(x, num_samples=num_samples).probs


class PyroAutoNormalTrainer:
    """The naive Pyro way (Pyro's tutorials): PyroModule + PyroSample + AutoNormal + SVI."""

    def __init__(self, dataset_size):
        net = LeNet(dropout=None).to(DEVICE)
        to_pyro_module_(net)
        for module in net.modules():
            for name, p in list(module.named_parameters(recurse=False)):
                zero = torch.zeros((), device=p.device)
                setattr(module, name, PyroSample(dist.Normal(zero, 1.0).expand(p.shape).to_event(p.dim())))
        self.net = net
        self.size = dataset_size
        pyro.clear_param_store()
        self.guide = AutoNormal(self.model)
        self.svi = SVI(self.model, self.guide, pyro.optim.Adam({"lr": 1e-3}), Trace_ELBO())

    def model(self, x, y=None):
        logits = self.net(x)
        with pyro.plate("data", size=self.size, subsample=torch.arange(x.shape[0], device=x.device)):
            pyro.sample("obs", dist.Categorical(logits=logits), obs=y)
        return logits

    def epoch(self, loader):
        for x, y in loader:
            self.svi.step(x, y)

    @torch.no_grad()
    def predict(self, x, num_samples):
        predictive = Predictive(self.model, guide=self.guide, num_samples=num_samples,
                                return_sites=["_RETURN"])
        return torch.softmax(predictive(x)["_RETURN"], -1)


DEVICE = torch.device("cpu")  # --device


def make(row, dataset_size):
    if row == "plain":
        return PlainTrainer(torch_dropout_lenet().to(DEVICE))
    if row == "plain_channels_last":
        return PlainTrainer(torch_dropout_lenet().to(DEVICE), channels_last=True)
    if row == "plain_fastmask":
        return PlainTrainer(LeNet(dropout="all").to(DEVICE))
    if row == "pyro_autonormal":
        return PyroAutoNormalTrainer(dataset_size)
    return GuideTrainer({"dropout": DropoutGuide, "mean_field": MeanFieldGuide, "map": MAPGuide}[row])


def _loader(x, y, seed):
    torch.manual_seed(seed)
    data = torch.utils.data.TensorDataset(x, y)
    if DEVICE.type == "cuda":  # images on the device: index whole minibatches, no per-image collation
        batches = BatchSampler(RandomSampler(data), batch_size=128, drop_last=False)
        return DataLoader(data, sampler=batches, batch_size=None)
    return DataLoader(data, batch_size=128, shuffle=True)


def _clock() -> float:
    if DEVICE.type == "cuda":
        torch.cuda.synchronize()
    return time.perf_counter()


def cuda_peak_memory(row, x, y) -> float:
    """The device's allocation high-water mark (MiB) over one training epoch of ``row``."""
    trainer = make(row, len(y))
    trainer.epoch(_loader(x[:256], y[:256], 0))
    torch.cuda.synchronize()
    torch.cuda.reset_peak_memory_stats()
    trainer.epoch(_loader(x, y, 0))
    torch.cuda.synchronize()
    return torch.cuda.max_memory_allocated() / 2**20


def _rss_peak_mib() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def _memory_worker(row, x, y, queue):
    torch.set_num_threads(2)
    retain_freed_memory()
    trainer = make(row, len(y))
    loader = _loader(x, y, 0)
    trainer.epoch(_loader(x[:256], y[:256], 0))  # warm-up: allocator, lazy set-up
    Path("/proc/self/clear_refs").write_text("5")  # reset the high-water mark
    trainer.epoch(loader)
    queue.put(_rss_peak_mib())


def peak_memory(row, x, y) -> float:
    ctx = mp.get_context("spawn")
    queue = ctx.Queue()
    proc = ctx.Process(target=_memory_worker, args=(row, x, y, queue))
    proc.start()
    value = queue.get()
    proc.join()
    return value


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data-root", default=os.environ.get("BAYESDL_DATA"))
    parser.add_argument("--train", type=int, default=10000, help="training images per epoch")
    parser.add_argument("--predict", type=int, default=2000, help="test images to predict")
    parser.add_argument("--samples", type=int, default=100, help="posterior samples in prediction")
    parser.add_argument("--rounds", type=int, default=5, help="interleaved training rounds")
    parser.add_argument("--predict-rounds", type=int, default=3, help="interleaved prediction rounds")
    parser.add_argument("--rows", nargs="*", default=list(ROWS), choices=ROWS)
    parser.add_argument("--json", default=None, help="also write the results to this file")
    parser.add_argument("--device", default="cpu", help="cpu (default) or cuda")
    args = parser.parse_args(argv)
    global DEVICE
    DEVICE = torch.device(args.device)

    torch.set_num_threads(min(2, torch.get_num_threads()))
    retain_freed_memory()  # the same allocator settings for every row, the floor included
    train = load_images("mnist", args.data_root, train=True, limit=args.train)
    test = load_images("mnist", args.data_root, train=False, limit=args.predict)
    x, y = (t.to(DEVICE) for t in train.tensors)
    x_test = test.tensors[0].to(DEVICE)

    trainers = {row: make(row, len(y)) for row in args.rows}
    for trainer in trainers.values():  # warm-up and lazy set-up
        trainer.epoch(_loader(x[:256], y[:256], 0))
        trainer.predict(x_test[:64], 2)

    epoch_times = {row: [] for row in args.rows}
    predict_times = {row: [] for row in args.rows}
    for r in range(args.rounds):
        for row, trainer in trainers.items():
            loader = _loader(x, y, r)
            start = _clock()
            trainer.epoch(loader)
            epoch_times[row].append(_clock() - start)
        if r >= args.predict_rounds:
            continue
        for row, trainer in trainers.items():
            start = _clock()
            probs = trainer.predict(x_test, args.samples)
            predict_times[row].append(_clock() - start)
            assert probs.shape == (args.samples, len(x_test), 10)
        print(f"round {r + 1}/{args.rounds} done", file=sys.stderr, flush=True)

    measure = cuda_peak_memory if DEVICE.type == "cuda" else peak_memory
    memory = {row: measure(row, x, y) for row in args.rows}
    base = "plain"
    table = {}
    for row in args.rows:
        train_s = statistics.median(epoch_times[row])
        predict_s = statistics.median(predict_times[row])
        table[row] = {
            "epoch_s": train_s,
            "epoch_ratio": train_s / statistics.median(epoch_times[base]),
            "predict_s": predict_s,
            "predict_ratio": predict_s / statistics.median(predict_times[base]),
            "peak_rss_mib": memory[row],
            "memory_ratio": memory[row] / memory[base],
        }
    print(f"\nLeNet 'all' on {len(y)} MNIST images, batch 128; predict {args.samples} samples on "
          f"{len(x_test)} images; medians of {args.rounds} (training) and {args.predict_rounds} "
          f"(prediction) interleaved rounds, "
          f"{torch.get_num_threads()} threads, on {DEVICE}\n")
    memory_kind = "peak CUDA memory" if DEVICE.type == "cuda" else "peak RSS"
    print(f"| row | epoch (s) | x plain | predict (s) | x plain | {memory_kind} (MiB) | x plain |")
    print("|---|---|---|---|---|---|---|")
    for row, v in table.items():
        print(f"| {row} | {v['epoch_s']:.2f} | {v['epoch_ratio']:.2f} | {v['predict_s']:.2f} | "
              f"{v['predict_ratio']:.2f} | {v['peak_rss_mib']:.0f} | {v['memory_ratio']:.2f} |")
    checks = {}
    if "dropout" in table:
        checks["train dropout"] = table["dropout"]["epoch_ratio"]
        checks["predict dropout"] = table["dropout"]["predict_ratio"]
    if "mean_field" in table:
        checks["train mean_field"] = table["mean_field"]["epoch_ratio"]
    guide_rows = [r for r in ("dropout", "mean_field", "map") if r in table]
    if guide_rows:
        checks["memory"] = max(table[r]["memory_ratio"] for r in guide_rows)
    print()
    for name, value in checks.items():
        verdict = "meets" if value <= TARGETS[name] else "MISSES"
        print(f"{name}: {value:.2f}x  (target <= {TARGETS[name]}x)  {verdict}")
    result = {"table": table, "checks": checks, "targets": TARGETS,
              "setup": {"train": len(y), "predict": len(x_test), "samples": args.samples,
                        "rounds": args.rounds, "threads": torch.get_num_threads(), "device": str(DEVICE),
                        "torch": torch.__version__, "pyro": pyro.__version__}}
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2))
    return result


if __name__ == "__main__":
    main()
