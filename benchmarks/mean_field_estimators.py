"""Mean-field VI's three gradient estimators: speed, gradient variance and one-epoch quality.

``MeanFieldGuide(local_reparameterization=...)`` (issue 35) chooses which layers draw their
pre-activations per example (Kingma et al.'s local reparameterization) and which draw their weights
once per minibatch:

- ``all``: ``Linear`` and ``Conv`` layers per example (the default);
- ``linear``: ``Linear`` layers per example, each convolution's weights once per minibatch;
- ``none``: every weight tensor once per minibatch (Blundell et al. 2015).

All three estimate the same ELBO without bias; they differ in cost and in gradient variance. On a
user's LeNet-5 (``nn.Sequential`` with two ``nn.Dropout``; the network of ``user_path_speed.py``)
this script measures, in one process:

1. **speed**: one training epoch of each estimator and of plain PyTorch (cross-entropy, Adam), the
   rows alternated over ``--rounds``, medians, as ratios to plain;
2. **quality**: the test NLL of the posterior predictive (T = 20) after that one epoch, every
   estimator from the same initial weights and batch order;
3. **gradient variance**: at one common state (``--warm-epochs`` of the default estimator), the
   variance over ``--repeats`` noise draws of the ELBO's gradient on one fixed minibatch, summed
   over the coordinates of the convolutions' and of the dense layers' variational parameters
   (``loc`` and ``log_scale``), as ratios to ``all``. The minibatch is fixed, so this is the
   variance the estimator adds, not the minibatch's.

    python benchmarks/mean_field_estimators.py --data-root ../shared/data [--train 10000] [--rounds 3]

Target (issue 35, 2-core CPU): a mean-field epoch at <= 1.4x plain PyTorch, read beside its
one-epoch NLL and gradient variance.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from user_path_speed import T, _data, user_lenet  # the same network and data

ESTIMATORS = ("all", "linear", "none")


def _loader(x, y, seed=1):
    import torch
    from torch.utils.data import DataLoader, TensorDataset

    torch.manual_seed(seed)
    return DataLoader(TensorDataset(x, y), batch_size=128, shuffle=True)


def _nll(probs, y) -> float:
    return float(-probs.clamp_min(1e-12).log().gather(1, y[:, None]).mean())


def speed_and_quality(args, train, test) -> dict:
    """Epoch seconds (median over rounds) and one-epoch test NLL of plain and each estimator."""
    import torch
    import torch.nn.functional as F

    from bayesdl.inference import approximate
    from bayesdl.models import BNN

    (x, y), (x_test, y_test) = train, test

    def plain():
        torch.manual_seed(0)
        net = user_lenet()
        opt = torch.optim.Adam(net.parameters(), lr=1e-3)
        net.train()
        start = time.perf_counter()
        for xb, yb in _loader(x, y):
            opt.zero_grad()
            F.cross_entropy(net(xb), yb).backward()
            opt.step()
        seconds = time.perf_counter() - start
        net.eval()
        with torch.no_grad():
            return seconds, _nll(torch.softmax(net(x_test), -1), y_test)

    def mean_field(estimator):
        def run():
            torch.manual_seed(0)
            model = BNN(user_lenet(), prior_scale=1.0, likelihood="categorical")
            start = time.perf_counter()
            posterior = approximate("mean_field", model, _loader(x, y), epochs=1, lr=1e-3, seed=0,
                                    progress=False, local_reparameterization=estimator)
            seconds = time.perf_counter() - start
            return seconds, _nll(posterior.predict(x_test, num_samples=T).probs.mean(0), y_test)
        return run

    rows = {"plain": plain, **{f"mean_field[{e}]": mean_field(e) for e in ESTIMATORS}}
    for run in rows.values():  # warm-up of every path (allocator, lazy set-up)
        run()
    times = {name: [] for name in rows}
    nll = {}
    for r in range(args.rounds):
        for name, run in rows.items():
            seconds, nll[name] = run()
            times[name].append(seconds)
        print(f"round {r + 1}/{args.rounds} done", file=sys.stderr, flush=True)
    epoch = {name: statistics.median(t) for name, t in times.items()}
    return {name: {"epoch_s": epoch[name], "x_plain": epoch[name] / epoch["plain"], "test_nll": nll[name]}
            for name in rows}


def gradient_variance(args, train) -> dict:
    """Summed per-coordinate gradient variance of each estimator at one common state."""
    import torch
    from torch import nn

    from bayesdl.inference import BNNElbo, MeanFieldGuide, fit
    from bayesdl.models import BNN

    x, y = train
    torch.manual_seed(0)
    model = BNN(user_lenet(), prior_scale=1.0, likelihood="categorical")
    trained = MeanFieldGuide(model)
    fit(model, trained, _loader(x, y), epochs=args.warm_epochs, lr=1e-3, seed=0, progress=False)
    state = trained.state_dict()
    xb, yb = x[:128], y[:128]
    conv = torch.zeros(model.num_latent, dtype=torch.bool)
    for site, chunk in zip(model.sites, conv.split(model.site_sizes)):
        module = model.net.get_submodule(site.module_name) if site.module_name else model.net
        chunk.fill_(isinstance(module, nn.Conv2d))
    elbo = BNNElbo()
    out = {}
    for estimator in ESTIMATORS:
        guide = MeanFieldGuide(model, local_reparameterization=estimator)
        guide.load_state_dict(state)
        grads = []
        torch.manual_seed(2)
        for _ in range(args.repeats):
            ll, kl = elbo.terms(model, guide, xb, yb, dataset_size=len(y))
            grad = torch.autograd.grad(-(ll - kl), [guide.loc, guide.log_scale])
            grads.append(torch.stack(grad))
        variance = torch.stack(grads).var(0)  # [2, D]: loc, log_scale
        out[estimator] = {f"{part} {group}": float(variance[i][mask].sum())
                          for i, part in enumerate(("loc", "log_scale"))
                          for group, mask in (("conv", conv), ("dense", ~conv))}
    return out


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data-root", default=os.environ.get("BAYESDL_DATA"))
    parser.add_argument("--train", type=int, default=10000, help="training images per epoch")
    parser.add_argument("--predict", type=int, default=2000, help="test images for the one-epoch NLL")
    parser.add_argument("--rounds", type=int, default=3, help="alternating timed rounds")
    parser.add_argument("--warm-epochs", type=int, default=2, help="epochs of 'all' before the variance")
    parser.add_argument("--repeats", type=int, default=32, help="noise draws per gradient variance")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--json", default=None, help="also write the results to this file")
    args = parser.parse_args(argv)

    import torch

    torch.set_num_threads(args.threads)
    train, test = _data(args)
    speed = speed_and_quality(args, train, test)
    variance = gradient_variance(args, train)
    source = "MNIST" if args.data_root else "random images (NLL meaningless)"
    print(f"\nA user's LeNet-5, {len(train[1])} {source}, batch 128, Adam lr 1e-3, {args.threads} threads; "
          f"epochs: medians of {args.rounds} alternated rounds; NLL: T = {T} on {len(test[1])} test images\n")
    print("| row | epoch (s) | x plain | one-epoch test NLL |")
    print("|---|---|---|---|")
    for name, row in speed.items():
        print(f"| {name} | {row['epoch_s']:.2f} | {row['x_plain']:.2f} | {row['test_nll']:.3f} |")
    groups = list(variance["all"])
    print(f"\nGradient variance at one state ({args.warm_epochs} epochs of 'all'), one fixed minibatch of "
          f"128, {args.repeats} noise draws; summed over coordinates, x 'all'\n")
    print("| estimator | " + " | ".join(groups) + " |")
    print("|---|" + "---|" * len(groups))
    for estimator, row in variance.items():
        cells = " | ".join(f"{row[g]:.3g} ({row[g] / variance['all'][g]:.2f}x)" for g in groups)
        print(f"| {estimator} | {cells} |")
    results = {"speed": speed, "gradient_variance": variance, "train": len(train[1]), "rounds": args.rounds}
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2))
    return results


if __name__ == "__main__":
    main()
