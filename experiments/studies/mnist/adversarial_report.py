"""Figures and report of the ``adversarial`` study (:mod:`.adversarial`): accuracy against the
radius per method, detection AUROC against the radius per score, a grid of attacked digits, and
the targets of the issue checked with numbers."""

from __future__ import annotations

from bayesdl.evaluation.plotting import new_figure

from ...data import MNIST_MEAN, MNIST_STD
from ...io import markdown_table

#: perturbations on the figures and in the tables, in order, with their names
SHOWN = {"fgsm": "FGSM, white-box", "pgd": "PGD, white-box", "transfer_fgsm": "FGSM from the MAP (transfer)",
         "transfer_pgd": "PGD from the MAP (transfer)", "uniform_noise": "uniform noise (control)"}
SCORE_NAMES = {"mcp": "MCP", "entropy": "-entropy", "mutual_information": "-MI"}
#: the noise control: a detector whose AUROC on noise stays in this range detects attacks, not noise
NOISE_RANGE = (0.5, 0.7)


def _series(results, row, kind, metric, epsilons):
    cells = results[row][kind]
    keys = [f"{e:g}" for e in epsilons]
    return [cells[k][metric] for k in keys], [cells[k][f"{metric}_sd"] for k in keys]


def accuracy_figure(ctx, results: dict, labels: dict, epsilons) -> str:
    """One panel per perturbation: accuracy (%) against epsilon, one line per method (+- sd over seeds)."""
    fig, axes = new_figure(ncols=len(SHOWN), size=(3.5, 3.3))
    for ax, (kind, title) in zip(axes[0], SHOWN.items()):
        for row, label in labels.items():
            mean, sd = _series(results, row, kind, "accuracy", epsilons)
            ax.errorbar(epsilons, [100 * m for m in mean], yerr=[100 * s for s in sd], marker="o", ms=4,
                        capsize=2, label=label)
        ax.set(title=title, xlabel="epsilon (L-inf, pixels in [0, 1])", ylabel="test accuracy (%)", ylim=(-2, 102))
        ax.grid(alpha=0.3)
    axes[0, -1].legend(fontsize=7, loc="lower left")  # the noise panel: its lines stay high
    return ctx.figure(fig, "accuracy_vs_epsilon.png")


def detection_figure(ctx, results: dict, labels: dict, epsilons) -> str:
    """Rows: perturbations; columns: methods; lines: detection AUROC of each score against epsilon."""
    kinds = ("fgsm", "pgd", "transfer_pgd", "uniform_noise")
    fig, axes = new_figure(ncols=len(labels), nrows=len(kinds), size=(2.9, 2.4))
    for i, kind in enumerate(kinds):
        for j, (row, label) in enumerate(labels.items()):
            ax = axes[i, j]
            for score, name in SCORE_NAMES.items():
                mean, sd = _series(results, row, kind, f"auroc_{score}", epsilons)
                ax.errorbar(epsilons, mean, yerr=sd, marker="o", ms=3, capsize=2, label=name)
            ax.axhline(0.5, color="grey", lw=0.8, ls=":")
            ax.set(ylim=(0.3, 1.02), title=f"{label}\n{SHOWN[kind]}", xlabel="epsilon" if i == len(kinds) - 1 else None)
            ax.title.set_fontsize(8)
            ax.grid(alpha=0.3)
        axes[i, 0].set_ylabel("AUROC, clean vs perturbed")
    axes[0, 0].legend(fontsize=7, loc="lower right")
    return ctx.figure(fig, "detection_auroc_vs_epsilon.png")


def digits_figure(ctx, digits: dict, label: str) -> str:
    """Rows: epsilons; columns: digits; each PGD image with its prediction, probability, entropy and MI."""
    by_eps = digits["by_epsilon"]
    count = len(digits["labels"])
    fig, axes = new_figure(ncols=count, nrows=len(by_eps), size=(1.75, 2.0))
    for i, (epsilon, shown) in enumerate(by_eps.items()):
        for j in range(count):
            ax = axes[i, j]
            ax.imshow(shown["images"][j], cmap="gray", vmin=0, vmax=1)
            ax.set_xticks([])
            ax.set_yticks([])
            wrong = shown["predicted"][j] != digits["labels"][j]
            ax.set_title(f"pred {shown['predicted'][j]} (p {shown['probability'][j]:.2f})\n"
                         f"H {shown['entropy'][j]:.2f}, MI {shown['mi'][j]:.2f}", fontsize=7,
                         color="tab:red" if wrong else "black")
            if j == 0:
                ax.set_ylabel(f"eps {epsilon:g}", fontsize=8)
    fig.suptitle(f"PGD against {label}'s predictive (true labels {digits['labels']}; red: misclassified; "
                 "H, MI in nats)", fontsize=8)
    return ctx.figure(fig, "adversarial_digits.png")


def _cell(cell: dict, metric: str, scale: float = 1.0, seeds: int = 1) -> str:
    mean = scale * cell[metric]
    return f"{mean:.1f} +- {scale * cell[f'{metric}_sd']:.1f}" if seeds > 1 else f"{mean:.1f}"


def _tables(results, labels, epsilons, seeds) -> str:
    keys = [f"{e:g}" for e in epsilons]
    parts = []
    for kind, title in SHOWN.items():
        rows = [[label] + [_cell(results[row][kind][k], "accuracy", 100, seeds) for k in keys]
                for row, label in labels.items()]
        parts.append(f"**Accuracy (%), {title}**\n\n" + markdown_table(["method", *[f"eps {k}" for k in keys]], rows))
    for kind in ("fgsm", "pgd", "transfer_pgd", "uniform_noise"):
        rows = [[f"{label}: {name}"] + [_cell(results[row][kind][k], f"auroc_{score}", 100, seeds) for k in keys[1:]]
                for row, label in labels.items() for score, name in SCORE_NAMES.items()]
        parts.append(f"**Detection AUROC (%), clean vs {SHOWN[kind]}**\n\n"
                     + markdown_table(["method: score", *[f"eps {k}" for k in keys[1:]]], rows))
    return "\n\n".join(parts)


def _targets(results, labels, epsilons) -> list[str]:
    """The issue's targets, each a line with its numbers."""
    lines, mid = [], [e for e in epsilons if 0.1 <= e <= 0.3]
    for kind in ("fgsm", "pgd", "transfer_pgd"):
        cells = results["mc_dropout"][kind]
        pairs = [(e, cells[f"{e:g}"]["auroc_mutual_information"], cells[f"{e:g}"]["auroc_entropy"]) for e in mid]
        above = all(mi > h for _, mi, h in pairs)
        lines.append(f"- MC dropout, {SHOWN[kind]}: MI AUROC {'above' if above else 'NOT above'} entropy AUROC at every "
                     "eps in 0.1-0.3 -- " + "; ".join(f"eps {e:g}: MI {100 * mi:.1f}% vs entropy {100 * h:.1f}%"
                                                     for e, mi, h in pairs))
    for kind in ("transfer_fgsm", "transfer_pgd"):
        worse = [f"{labels[row]} at eps {k} ({100 * c['accuracy']:.1f}% < MAP {100 * results['map'][kind][k]['accuracy']:.1f}%)"
                 for row in labels if row != "map" for k, c in results[row][kind].items()
                 if k != "0" and c["accuracy"] < results["map"][kind][k]["accuracy"]]
        lines.append(f"- {SHOWN[kind]}: every Bayesian method at or above the MAP's accuracy at every eps > 0 -- "
                     + ("met" if not worse else "not met: " + "; ".join(worse)))
    if 0.1 in epsilons:
        for kind in ("fgsm", "pgd"):
            ens, map_ = results["deep_ensemble"][kind]["0.1"]["accuracy"], results["map"][kind]["0.1"]["accuracy"]
            lines.append(f"- Deep ensemble vs MAP, {SHOWN[kind]} at eps 0.1: {100 * ens:.1f}% vs {100 * map_:.1f}% -- "
                         + ("met (above)" if ens > map_ else "not met"))
    noisy = [f"{labels[row]} {name} ({100 * results[row]['uniform_noise'][k][f'auroc_{score}']:.1f}% at eps {k})"
             for row in labels for score, name in SCORE_NAMES.items()
             for k in results[row]["uniform_noise"] if k != "0"
             and not NOISE_RANGE[0] - 0.05 <= results[row]["uniform_noise"][k][f"auroc_{score}"] <= NOISE_RANGE[1]]
    lines.append(f"- Noise control: detectors whose AUROC on uniform noise leaves {NOISE_RANGE[0]:.2f}-{NOISE_RANGE[1]:.2f} "
                 "(0.45 allowed for chance): " + ("none" if not noisy else "; ".join(noisy)))
    return lines


def report(lab, results: dict, labels: dict, seeds: list[int], figures: dict) -> str:
    epsilons, attack = lab.epsilons, lab.attack
    return f"""# Adversarial examples against Bayesian posteriors on MNIST (Smith & Gal 2018)

{len(lab.labels)} test images (a fixed random subset, seed {lab.ctx.seed}) attacked in pixel space ([0, 1],
the networks see (pixel - {MNIST_MEAN}) / {MNIST_STD}), L-infinity radii eps in
{", ".join(f"{e:g}" for e in epsilons)}. White-box attacks take their gradient through each method's own
posterior predictive: the mean over T = {attack['samples']} fresh draws (MC dropout masks, mean-field weights),
the linearised (GLM) predictive of the last-layer Laplace approximation with T draws, the mixture of the deep
ensemble's {lab.s.members} members, one pass of the MAP. FGSM is one signed step; PGD {attack['steps']} steps of
2.5 eps / {attack['steps']} from a uniform random start. Transfer: the MAP's own white-box images applied to every
method. Control: uniform noise in [-eps, eps]. Scores from {lab.s.samples} posterior samples: MCP (max mean
probability), minus the predictive entropy, minus the mutual information (nats); detection AUROC takes the clean
images as positives (0.5: chance; the MAP's MI is 0 everywhere, so its MI AUROC is 0.5 by construction).
Networks: the MNIST recipes, {lab.s.epochs} epoch(s), seeds {", ".join(map(str, seeds))} (mean +- sd over seeds;
an ensemble of seed s has members s .. s + {lab.s.members - 1}).

## Targets

{chr(10).join(_targets(results, labels, epsilons))}

## Tables

{_tables(results, labels, epsilons, len(seeds))}

AUPR-in, AUPR-out and FPR at 95% TPR of every cell are in metrics.json (`mean` and `per_seed`).

![]({figures['accuracy']})

![]({figures['detection']})

![]({figures['digits']})
"""
