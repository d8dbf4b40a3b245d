"""``random-labels``: Zhang et al. (2017), "Understanding deep learning requires rethinking
generalization", answered by the evidence.

A LeNet (no dropout) is trained by Adam on a fixed subset of MNIST in which each label was
replaced, with probability ``p``, by a uniformly random class (``p`` = 0, 0.2, 0.5, 0.8, 1). The
network fits the training labels whatever ``p``; its test accuracy falls with ``p``; and the
Laplace approximation of the log marginal likelihood with the all-layer KFAC
(:class:`bayesdl.inference.KronLaplace`, prior precision by marginal likelihood) -- the week-1
tool for choosing between models -- should fall with ``p`` too, telling memorisation from
generalisation without a test set. Each (p, seed) is a verified JSON piece in the cache folder.
"""

from __future__ import annotations

import itertools
import sys

import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, TensorDataset

from bayesdl.evaluation.plotting import new_figure
from bayesdl.inference import laplace
from bayesdl.models import LeNet

from ..data import mnist_splits
from ..io import markdown_table, read_verified_json, write_verified_json
from ..registry import RunContext, StudyResult
from ..training import cache_folder, config_digest

PIECE_FORMAT = "bayesdl-random-labels-piece-v2"  # v2: epochs_run (pieces of v1 lack it)


def noisy_labels(y: torch.Tensor, p: float, seed: int) -> torch.Tensor:
    """Each label replaced with probability ``p`` by a uniform random class (Zhang et al.)."""
    g = torch.Generator().manual_seed(seed)
    replace = torch.rand(len(y), generator=g) < p
    return torch.where(replace, torch.randint(0, 10, (len(y),), generator=g), y)


def train_lenet(x, y, epochs: int, seed: int, device, fit_to: float | None = None,
                max_epochs: int | None = None) -> tuple[LeNet, int]:
    """A LeNet trained by Adam (lr 1e-3, batch 128) on ``(x, y)`` with cross-entropy for ``epochs``
    epochs, then (``fit_to``) an epoch at a time until its training accuracy is at least
    ``fit_to`` or ``max_epochs`` have run, as Zhang et al. train until the labels are fitted.
    Returns the network and the epochs run."""
    torch.manual_seed(seed)
    net = LeNet(dropout=None).to(device)
    optimizer = torch.optim.Adam(net.parameters(), lr=1e-3)
    loader = DataLoader(TensorDataset(x, y), batch_size=128, shuffle=True,
                        generator=torch.Generator().manual_seed(seed))
    ran, most = 0, epochs if fit_to is None else max(epochs, max_epochs or epochs)
    while ran < epochs or (ran < most and accuracy(net.eval(), x, y, device) < fit_to):
        net.train()
        for xb, yb in loader:
            optimizer.zero_grad()
            F.cross_entropy(net(xb.to(device)), yb.to(device)).backward()
            optimizer.step()
        ran += 1
    return net.eval(), ran


@torch.no_grad()
def accuracy(net, x, y, device) -> float:
    correct = sum(int((net(xb.to(device)).argmax(1).cpu() == yb).sum())
                  for xb, yb in zip(x.split(1000), y.split(1000)))
    return correct / len(y)


def piece(ctx, splits, p: float, seed: int) -> dict:
    """Train and test accuracy and the KFAC log marginal likelihood of one (p, seed)."""
    o = ctx.options
    settings = {"p": p, "seed": seed, "split_seed": ctx.seed, "train": o.train, "epochs": o.epochs,
                "hessian": o.hessian, "test": o.test}
    if o.fit_to is not None:
        settings.update(fit_to=o.fit_to, max_epochs=o.max_epochs)
    path = cache_folder(ctx) / "random-labels" / f"p{p:g}-seed{seed}-{config_digest(settings, length=10)}.json"
    try:
        return read_verified_json(path, PIECE_FORMAT)
    except FileNotFoundError:
        pass
    except ValueError as err:
        print(f"{err}; computing it again", file=sys.stderr)
    x, y = splits["train"].tensors
    x_test, y_test = splits["test"].tensors
    noisy = noisy_labels(y, p, seed)
    net, ran = train_lenet(x, noisy, o.epochs, seed, ctx.device, o.fit_to, o.max_epochs)
    la = laplace(net, "all", "kron", hessian=o.hessian, likelihood="categorical")
    la.fit(TensorDataset(x.to(ctx.device), noisy.to(ctx.device)), batch_size=256).optimize_prior_precision()
    result = {"train_accuracy": accuracy(net, x, noisy, ctx.device),
              "test_accuracy": accuracy(net, x_test, y_test, ctx.device),
              "log_marglik": la.log_marginal_likelihood(), "log_likelihood": la.log_likelihood_,
              "prior_precision": la.prior_precision, "replaced": float((noisy != y).double().mean()),
              "epochs_run": ran, "settings": settings}
    result["log_marglik_per_example"] = result["log_marglik"] / len(y)
    path.parent.mkdir(parents=True, exist_ok=True)
    write_verified_json(path, result, PIECE_FORMAT)
    return read_verified_json(path, PIECE_FORMAT)


def figure(ctx, results: dict) -> str:
    fig, axes = new_figure(ncols=3, size=(3.8, 3.4))
    panels = (("train_accuracy", "training accuracy (noisy labels, %)", 100),
              ("test_accuracy", "test accuracy (true labels, %)", 100),
              ("log_marglik_per_example", "KFAC Laplace log evidence per example (nats)", 1))
    for ax, (key, label, scale) in zip(axes[0], panels):
        for seed, rows in results.items():
            noise = sorted(rows, key=float)
            ax.plot([100 * float(p) for p in noise], [scale * rows[p][key] for p in noise], marker="o",
                    label=f"seed {seed}")
        if scale == 100:  # both accuracies on 0-100%: the flat training curve is the point
            ax.set_ylim(0, 102)
        ax.set_xlabel("labels replaced at random (%)")
        ax.set_title(label, fontsize=10)
        ax.grid(alpha=0.3)
    axes[0, 0].legend()
    return ctx.figure(fig, "random_labels.png")


def decreasing(rows: dict) -> bool:
    values = [rows[p]["log_marglik"] for p in sorted(rows, key=float)]
    return all(b < a for a, b in itertools.pairwise(values))


def run(ctx: RunContext) -> StudyResult:
    o = ctx.options
    torch.set_num_threads(max(1, min(torch.get_num_threads(), 2)))
    splits = mnist_splits(ctx.data_root, seed=ctx.seed, val_size=0, train_limit=o.train, test_limit=o.test,
                          download=ctx.download)
    results = {str(ctx.seed + s): {f"{p:g}": piece(ctx, splits, p, ctx.seed + s) for p in o.noise}
               for s in range(o.seeds)}
    for rows in results.values():
        for row in rows.values():
            row.pop("settings", None)
    verdicts = {seed: decreasing(rows) for seed, rows in results.items()}
    config = {"train": o.train, "test": o.test or 10_000, "epochs": o.epochs, "fit_to": o.fit_to,
              "max_epochs": o.max_epochs if o.fit_to is not None else None, "hessian": o.hessian,
              "noise": list(o.noise), "seeds": o.seeds, "split_seed": ctx.seed}
    return StudyResult(config=config, results={"runs": results, "evidence_strictly_decreasing": verdicts},
                       report=report(config, results, verdicts, figure(ctx, results)))


def report(config: dict, results: dict, verdicts: dict, fig: str) -> str:
    rows = [[seed, f"{100 * float(p):.0f}%", f"{100 * r['replaced']:.1f}", f"{r['epochs_run']}",
             f"{100 * r['train_accuracy']:.2f}", f"{100 * r['test_accuracy']:.2f}", f"{r['log_marglik']:.1f}", f"{r['log_marglik_per_example']:.4f}",
             f"{r['prior_precision']:.4g}"]
            for seed, runs in results.items() for p, r in runs.items()]
    table = markdown_table(["seed", "p", "labels changed (%)", "epochs", "train acc (%)", "test acc (%)", "log evidence",
                            "per example", "prior precision"], rows)
    lines = "\n".join(f"- seed {seed}: {'strictly decreasing' if ok else 'NOT strictly decreasing'}"
                      for seed, ok in verdicts.items())
    all_ok = all(verdicts.values()) and len(verdicts) >= 3
    schedule = (f"{config['epochs']} epochs, then on until the training accuracy reaches "
                f"{100 * config['fit_to']:g}% ({config['max_epochs']} epochs at most)"
                if config["fit_to"] is not None else f"{config['epochs']} epochs")
    return f"""# Random labels and the evidence (Zhang et al. 2017)

LeNet (no dropout), Adam lr 1e-3, batch 128, {schedule}, on a fixed subset of
{config['train']} MNIST training images whose labels were each replaced with probability p by a
uniformly random class; test accuracy on {config['test']} test images (true labels). The evidence
is the Laplace approximation of ln p(D) with the all-layer KFAC ({config['hessian']}), its prior
precision chosen by maximising it.

{table}

![random labels]({fig})

Evidence against the label noise:
{lines}

Target (strictly decreasing on every seed of 3): **{'meets' if all_ok else 'not shown'}**
({len(verdicts)} seed(s) run{'' if len(verdicts) >= 3 else '; 3 seeds: --set seeds=3'}).
Zhang et al.'s point is in the accuracy columns: the training accuracy stays high while the
test accuracy falls to chance; the evidence sees the difference from the training data alone.
"""
