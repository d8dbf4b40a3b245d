"""LeNet "all" on MNIST: the dropout guide and the mean-field guide against plain PyTorch.

The quality check of the BNN machinery (Gal & Ghahramani 2016's lenet-all): the same
network, trained for the same epochs on the full 60,000 training images, as

- ``plain``: plain PyTorch dropout training (Adam on the cross-entropy), the baseline;
- ``dropout``: :class:`bayesdl.inference.DropoutGuide` (MC dropout as VI, per-example masks);
- ``mean_field``: :class:`bayesdl.inference.MeanFieldGuide` (local reparameterization).

The two bayesdl methods go through the method registry and the ``Posterior``; the baseline
is plain PyTorch on purpose.

Each is evaluated on the 10,000 test images deterministically (dropout off / posterior
mean weights) and with ``T = 100`` posterior samples, over several seeds.
"""

from __future__ import annotations

import statistics

import numpy as np
import torch
from matplotlib.ticker import MaxNLocator

from bayesdl.evaluation import calibration_metrics
from bayesdl.evaluation.plotting import new_figure

from ..data import mnist_splits
from ..lab import Lab
from ..methods import MethodSpec, labels_of
from ..registry import RunContext, StudyResult
from ..training import NetworkRecipe, train_network, train_plain

BASELINE = "plain"  # plain PyTorch, on purpose not a method of the registry
#: the bayesdl methods compared with it: one spec each (a new guide's method is one more line)
GUIDES = (MethodSpec("dropout", label="dropout guide"), MethodSpec("mean_field", label="mean-field guide"))
METHODS = (BASELINE, *(spec.name for spec in GUIDES))
#: Human names on the figure and in the report.
LABELS = {BASELINE: "plain PyTorch dropout", **labels_of(GUIDES)}


class _GuidesLab(Lab):
    """The guides' LeNets, each trained by its recipe through the network cache."""

    def __init__(self, ctx, train, epochs: int):
        super().__init__(ctx, GUIDES)
        self.train, self.epochs = train, epochs

    def fit(self, spec: MethodSpec, seed: int):
        recipe = NetworkRecipe(method=spec.method, epochs=self.epochs, seed=seed, train_size=len(self.train))
        posterior, _ = train_network(recipe, self.train, self.ctx)
        return posterior, posterior.history.seconds


@torch.no_grad()
def _plain_probs(net, x, samples, device, batch=1000):
    """Deterministic and MC-dropout probabilities of a plain network."""
    det, mc = [], []
    for chunk in x.split(batch):
        chunk = chunk.to(device)
        net.eval()
        det.append(torch.softmax(net(chunk), -1))
        net.train()
        mc.append(torch.stack([torch.softmax(net(chunk), -1) for _ in range(samples)]).mean(0))
    net.eval()
    return torch.cat(det), torch.cat(mc)


def _metrics(probs, labels) -> dict:
    m = calibration_metrics(probs.cpu(), labels)
    return {"accuracy": m["accuracy"], "nll": m["nll"], "ece": m["ece"]}


def _summary(rows: list[dict]) -> dict:
    """Mean (and sd over several seeds) of every metric of a method's runs."""
    summary = {}
    for key in rows[0]:
        values = [r[key] for r in rows]
        summary[key] = statistics.fmean(values)
        if len(values) > 1:
            summary[f"{key}_std"] = statistics.stdev(values)
    summary["seeds"] = len(rows)
    summary["per_seed_mc_accuracy"] = [r["mc_accuracy"] for r in rows]
    summary["per_seed_deterministic_accuracy"] = [r["deterministic_accuracy"] for r in rows]
    return summary


def _train_and_score(ctx, train, x_test, y_test, seeds, epochs, samples):
    """Every method on every seed: per-run metrics, NLL curves and (guides) KL curves."""
    runs: dict[str, list[dict]] = {m: [] for m in METHODS}
    curves: dict[str, list] = {m: [] for m in METHODS}  # expected NLL per example, per epoch
    kls: dict[str, list] = {spec.name: [] for spec in GUIDES}  # KL per example, per epoch
    lab = _GuidesLab(ctx, train, epochs)

    def record(method, det, mc, seconds, curve):
        row = {f"deterministic_{k}": v for k, v in _metrics(det, y_test).items()}
        row.update({f"mc_{k}": v for k, v in _metrics(mc, y_test).items()})
        row["train_seconds"] = seconds
        runs[method].append(row)
        curves[method].append(curve)

    for seed in seeds:
        recipe = NetworkRecipe(method=BASELINE, epochs=epochs, seed=seed, train_size=len(train))
        net, info = train_plain(recipe, train, ctx)
        record(BASELINE, *_plain_probs(net, x_test, samples, ctx.device), info["seconds"], info["epoch_loss"])
        for spec in GUIDES:
            posterior = lab.posterior(spec, seed)
            with torch.no_grad():
                det = torch.softmax(posterior.point_outputs(x_test, batch_size=1000), -1)
            mc = posterior.predict(x_test, num_samples=samples).predictive
            history = posterior.history
            record(spec.name, det, mc, lab.cost[(spec.name, seed)],
                   [-e / history.dataset_size for e in history.epoch_log_likelihood])
            kls[spec.name].append([k / history.dataset_size for k in history.epoch_kl])
    return runs, curves, kls


def run(ctx: RunContext) -> StudyResult:
    quick = ctx.quick
    seeds = [ctx.seed] if quick else [ctx.seed + i for i in range(3)]
    epochs = 1 if quick else 10
    samples = 10 if quick else 100
    splits = mnist_splits(ctx.data_root, seed=0, val_size=0,
                          train_limit=2000 if quick else None, test_limit=1000 if quick else None)
    train, test = splits["train"], splits["test"]
    runs, curves, kls = _train_and_score(ctx, train, *test.tensors, seeds, epochs, samples)
    results = {method: _summary(rows) for method, rows in runs.items()}
    figure = ctx.figure(_figure(results, curves, kls, samples, len(seeds)), "guides.png")
    config = {"epochs": epochs, "seeds": seeds, "mc_samples": samples, "train_size": len(train),
              "test_size": len(test), "optimizer": "Adam, constant lr 1e-3, batch 128", "prior_scale": 1.0,
              "dropout_p": 0.5, "placement": "all"}
    report = _report(results, figure, samples, len(seeds), epochs, len(train))
    return StudyResult(config=config, results=results, report=report)


def _figure(results: dict, curves: dict, kls: dict, samples: int, n_seeds: int):
    """Training curves (expected NLL, KL) and the test errors of every method."""
    fig, axes = new_figure(ncols=3, size=(4.6, 3.6))
    ax_curve, ax_kl, ax_acc = axes[0]
    colors = dict(zip(METHODS, ("tab:gray", "tab:blue", "tab:orange")))
    for method in METHODS:
        label = LABELS[method]
        for i, curve in enumerate(curves[method]):
            ax_curve.plot(range(1, len(curve) + 1), curve, color=colors[method], alpha=0.8, marker="o",
                          markersize=3, label=label if i == 0 else None)  # markers: one epoch is a point
        for i, curve in enumerate(kls.get(method, [])):
            ax_kl.plot(range(1, len(curve) + 1), curve, color=colors[method], alpha=0.8, marker="o",
                       markersize=3, label=label if i == 0 else None)
    ax_curve.set_yscale("log")
    ax_curve.set_xlabel("epoch")
    ax_curve.set_ylabel("nats per training example")
    ax_curve.set_title("Expected negative log-likelihood")
    ax_curve.legend(fontsize="x-small")
    ax_kl.set_xlabel("epoch")
    for ax in (ax_curve, ax_kl):
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax_kl.set_ylabel("nats per training example")
    ax_kl.set_title("KL(q || prior) / N\n(dropout: -E log prior, incl. its constant)")
    ax_kl.legend(fontsize="x-small")
    positions = np.arange(len(METHODS))
    for offset, kind, color in ((-0.18, "deterministic", "tab:gray"), (0.18, "mc", "tab:green")):
        errors = [100 * (1 - results[m][f"{kind}_accuracy"]) for m in METHODS]
        spread = [100 * results[m].get(f"{kind}_accuracy_std", 0.0) for m in METHODS]
        ax_acc.bar(positions + offset, errors, width=0.36, yerr=spread, color=color,
                   label="deterministic" if kind == "deterministic" else f"MC, T = {samples}")
    ax_acc.set_xticks(positions, [LABELS[m].replace(" ", "\n", 1) for m in METHODS], fontsize="small")
    ax_acc.set_ylabel("test error (%)")
    ax_acc.set_title(f"Test error, mean +- sd over {n_seeds} seed(s)")
    ax_acc.legend(fontsize="x-small")
    return fig


def _report(r, figure, samples, n_seeds, epochs, n_train) -> str:
    def pct(method, key):
        value = 100 * r[method][key]
        std = r[method].get(f"{key}_std")
        return f"{value:.2f}" + (f" +- {100 * std:.2f}" if std is not None else "")

    rows = "\n".join(
        f"| {LABELS[m]} | {pct(m, 'deterministic_accuracy')} | {pct(m, 'mc_accuracy')} | "
        f"{r[m]['mc_nll']:.4f} | {100 * r[m]['mc_ece']:.2f} | {r[m]['train_seconds'] / epochs:.1f} |"
        for m in METHODS)
    dropout_vs_plain = r["dropout"]["mc_accuracy"] - r["plain"]["deterministic_accuracy"]
    return f"""# LeNet "all" on MNIST: guides against plain PyTorch dropout

{epochs} epoch(s) on {n_train} training images, {n_seeds} seed(s); test accuracy in %, mean +- sd.

![]({figure})

| method | deterministic acc. | MC acc. (T = {samples}) | MC NLL | MC ECE (%) | s / epoch |
|---|---|---|---|---|---|
{rows}

- Dropout guide, MC: {100 * r['dropout']['mc_accuracy']:.2f}% (full-run target >= 99.0%); against plain
  PyTorch dropout evaluated as usual (deterministic): {100 * dropout_vs_plain:+.2f} points.
- Mean-field guide, MC: {100 * r['mean_field']['mc_accuracy']:.2f}% (full-run target >= 98.5%).
- Seconds per epoch include everything the method does per step (the ELBO's KL, checks); a
  network loaded from the cache counts what it cost when trained (plain PyTorch's shows 0).
"""
