"""Speed on the user's path: a plain ``nn.Module`` of the user's, the public API, a fresh process.

bayesdl's other speed benchmark (``bnn_speed.py``) trains bayesdl's own ``LeNet`` inside one
process that opted in to :func:`bayesdl.runtime.retain_freed_memory`. A user's script differs on
all three counts (issue 35), so this benchmark measures exactly that:

- the network is LeNet-5 (6/16 channels) written as a user writes it: ``nn.Sequential`` with two
  ``nn.Dropout(0.5)``, nothing of bayesdl inside;
- every row trains on the same images through the same ``DataLoader`` (``TensorDataset``, batch
  128, shuffled), Adam at lr 1e-3, and uses the public API only
  (``approximate(method, BNN(net), loader, epochs=1)``; ``Posterior.predict`` with T = 20);
- every row runs in a fresh Python process (``--worker``), rows alternate over ``--rounds`` and
  medians are reported, as ratios to plain PyTorch in the same allocator state;
- both allocator states: ``default`` (nothing opted in, as in a user's script) and ``retain``
  (:func:`~bayesdl.runtime.retain_freed_memory` called first, as ``bdl`` does).

Rows: ``plain`` (the user's training loop: cross-entropy, Adam; prediction: a loop of T
dropout passes), ``dropout`` (the dropout guide), ``map``, ``mean_field`` (the default estimator)
and ``mean_field_linear`` (``local_reparameterization="linear"``). After the epoch each
row reports its test NLL (real MNIST with ``--data-root``; else random images, where it means
nothing), so speed is read beside one-epoch quality.

    python benchmarks/user_path_speed.py --data-root ../shared/data [--train 10000] [--rounds 3]

Targets (issue 35, 2-core CPU): dropout <= 1.0x, MAP <= 1.05x, mean-field <= 1.4x, dropout
predict (T = 20) <= 0.8x; peak memory <= 1.3x plain.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROWS = ("plain", "dropout", "map", "mean_field", "mean_field_linear")
#: Each bayesdl row's method and options (``mean_field_linear``: local reparameterization in the
#: dense layers only, the convolutions' weights drawn once per minibatch; see mean_field_estimators.py).
METHODS = {"dropout": ("dropout", {"p": None}), "map": ("map", {}), "mean_field": ("mean_field", {}),
           "mean_field_linear": ("mean_field", {"local_reparameterization": "linear"})}
STATES = ("default", "retain")
TARGETS = {"dropout": 1.0, "map": 1.05, "mean_field": 1.4, "predict dropout": 0.8, "memory": 1.3}
T = 20


def user_lenet():
    """LeNet-5 as a user writes it: plain torch modules, two ``nn.Dropout``."""
    from torch import nn

    return nn.Sequential(
        nn.Conv2d(1, 6, 5, padding=2), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(6, 16, 5), nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(),
        nn.Linear(400, 120), nn.ReLU(), nn.Dropout(0.5),
        nn.Linear(120, 84), nn.ReLU(), nn.Dropout(0.5), nn.Linear(84, 10))


def _data(args):
    import torch

    if args.data_root:
        from bayesdl.experiments.data import load_images

        train = load_images("mnist", args.data_root, train=True, limit=args.train).tensors
        test = load_images("mnist", args.data_root, train=False, limit=args.predict).tensors
        return train, test
    g = torch.Generator().manual_seed(0)
    make = lambda n: (torch.randn(n, 1, 28, 28, generator=g), torch.randint(0, 10, (n,), generator=g))  # noqa: E731
    return make(args.train), make(args.predict)


def worker(row: str, state: str, args) -> dict:
    """One row in this (fresh) process: a warm-up epoch on 512 images, then one timed epoch and a
    timed T-pass prediction; the test NLL after the epoch; the peak RSS of the process."""
    if state == "retain":
        from bayesdl.runtime import retain_freed_memory

        retain_freed_memory()
    import torch
    import torch.nn.functional as F
    from torch.utils.data import DataLoader, TensorDataset

    from bayesdl.inference import approximate
    from bayesdl.models import BNN
    from bayesdl.runtime import peak_memory_mib

    torch.set_num_threads(args.threads)
    (x, y), (x_test, y_test) = _data(args)
    torch.manual_seed(0)
    net = user_lenet()

    def loader(n):
        torch.manual_seed(1)
        return DataLoader(TensorDataset(x[:n], y[:n]), batch_size=128, shuffle=True)

    if row == "plain":
        opt = torch.optim.Adam(net.parameters(), lr=1e-3)

        def epoch(data):
            net.train()
            for xb, yb in data:
                opt.zero_grad()
                F.cross_entropy(net(xb), yb).backward()
                opt.step()

        @torch.no_grad()
        def predict():
            net.train()  # dropout on: the plain MC-dropout loop
            return torch.stack([torch.softmax(net(x_test), -1) for _ in range(T)])
    else:
        model = BNN(net, prior_scale=1.0, likelihood="categorical")
        state_of = {}

        def epoch(data):
            method, options = METHODS[row]
            state_of["posterior"] = approximate(method, model, data, epochs=1, lr=1e-3, seed=0,
                                                progress=False, dataset_size=len(y), **options)

        def predict():
            return state_of["posterior"].predict(x_test, num_samples=T).probs

    epoch(loader(512))  # warm-up: allocator, lazy set-up
    start = time.perf_counter()
    epoch(loader(len(y)))
    seconds = time.perf_counter() - start
    start = time.perf_counter()
    probs = predict()
    predict_seconds = time.perf_counter() - start
    nll = float(-probs.mean(0).clamp_min(1e-12).log().gather(1, y_test[:, None]).mean())
    return {"epoch_s": seconds, "predict_s": predict_seconds, "nll": nll, "peak_rss_mib": peak_memory_mib()}


def _spawn(row: str, state: str, args) -> dict:
    command = [sys.executable, __file__, "--worker", row, "--state", state, "--train", str(args.train),
               "--predict", str(args.predict), "--threads", str(args.threads)]
    if args.data_root:
        command += ["--data-root", str(args.data_root)]
    env = {**os.environ, "BAYESDL_RETAIN_MEMORY": "1"}
    done = subprocess.run(command, capture_output=True, text=True, env=env, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"row {row} ({state}) failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data-root", default=os.environ.get("BAYESDL_DATA"))
    parser.add_argument("--train", type=int, default=10000, help="training images per epoch")
    parser.add_argument("--predict", type=int, default=2000, help="test images predicted with T = 20")
    parser.add_argument("--rounds", type=int, default=3, help="alternating rounds (each row a fresh process)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--states", nargs="*", default=list(STATES), choices=STATES)
    parser.add_argument("--json", default=None, help="also write the results to this file")
    parser.add_argument("--worker", choices=ROWS, help=argparse.SUPPRESS)
    parser.add_argument("--state", choices=STATES, default="default", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        print(json.dumps(worker(args.worker, args.state, args)))
        return {}
    runs = {(state, row): [] for state in args.states for row in ROWS}
    for r in range(args.rounds):
        for state in args.states:
            for row in ROWS:
                runs[(state, row)].append(_spawn(row, state, args))
        print(f"round {r + 1}/{args.rounds} done", file=sys.stderr, flush=True)
    median = {key: {k: statistics.median(run[k] for run in values) for k in values[0]}
              for key, values in runs.items()}
    source = "MNIST" if args.data_root else "random images"
    print(f"\nA user's LeNet-5 (nn.Sequential, two nn.Dropout), {args.train} {source}, batch 128, Adam; "
          f"predict T = {T} on {args.predict}; each row a fresh process, medians of {args.rounds} rounds, "
          f"{args.threads} threads\n")
    print("| allocator | row | epoch (s) | x plain | predict (s) | x plain | test NLL | peak RSS (MiB) "
          "| x plain |")
    print("|---|---|---|---|---|---|---|---|---|")
    table, checks = {}, {}
    for state in args.states:
        base = median[(state, "plain")]
        for row in ROWS:
            m = median[(state, row)]
            entry = {**m, "epoch_ratio": m["epoch_s"] / base["epoch_s"],
                     "predict_ratio": m["predict_s"] / base["predict_s"],
                     "memory_ratio": m["peak_rss_mib"] / base["peak_rss_mib"]}
            table[f"{state}/{row}"] = entry
            print(f"| {state} | {row} | {m['epoch_s']:.2f} | {entry['epoch_ratio']:.2f} | "
                  f"{m['predict_s']:.2f} | {entry['predict_ratio']:.2f} | {m['nll']:.3f} | "
                  f"{m['peak_rss_mib']:.0f} | {entry['memory_ratio']:.2f} |")
        for row in ROWS[1:]:
            checks[f"{state}: {row}"] = (table[f"{state}/{row}"]["epoch_ratio"], TARGETS[METHODS[row][0]])
        checks[f"{state}: predict dropout"] = (table[f"{state}/dropout"]["predict_ratio"],
                                               TARGETS["predict dropout"])
        checks[f"{state}: memory"] = (max(table[f"{state}/{r}"]["memory_ratio"] for r in ROWS[1:]),
                                      TARGETS["memory"])
    print()
    for name, (value, target) in checks.items():
        print(f"{name}: {value:.2f}x  (target <= {target}x)  {'meets' if value <= target else 'MISSES'}")
    result = {"table": table, "checks": {k: v for k, (v, _) in checks.items()}, "targets": TARGETS,
              "setup": {"train": args.train, "predict": args.predict, "rounds": args.rounds,
                        "threads": args.threads, "data": source}}
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2))
    return result


if __name__ == "__main__":
    main()
