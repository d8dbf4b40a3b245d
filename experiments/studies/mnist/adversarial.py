"""``adversarial``: adversarial examples against the MNIST posteriors (the course's robustness
lecture; Smith & Gal 2018, "Understanding measures of uncertainty for adversarial example detection").

FGSM and PGD (L-infinity, pixels in [0, 1]) on a fixed random subset of the test set, white-box
against each method's own posterior predictive (:mod:`bayesdl.inference.attacks`, through
``Posterior.predictive_log_probs``), and transferred from the MAP; uniform noise of the same size
as the control. Per method, perturbation and radius: the accuracy, and how well MCP, minus the
predictive entropy and minus the mutual information tell the perturbed images from the clean
ones (AUROC, AUPR, FPR at 95% TPR: :func:`bayesdl.evaluation.ood_metrics`). Every finished piece
(seed, method, perturbation, radius) is kept in the network cache folder, verified when read, so
a stopped run resumes where it stopped.
"""

from __future__ import annotations

import sys

import numpy as np
import torch

from bayesdl.evaluation import max_probability, negative_entropy, negative_mutual_information, ood_metrics
from bayesdl.inference import fgsm, pgd, random_perturbation

from ...data import MNIST_MEAN, MNIST_STD
from ...io import read_verified_json, write_verified_json
from ...registry import RunContext, StudyResult
from ...training import cache_folder, config_digest
from .adversarial_report import accuracy_figure, detection_figure, digits_figure, report
from .lab import MnistLab

#: the rows: row name (in metrics.json) -> the lab's method spec (the MAP first: the transfer source)
ROWS = {"map": "map", "mc_dropout": "dropout", "deep_ensemble": "deep_ensemble", "laplace": "laplace",
        "mean_field": "mean_field"}
#: the row whose white-box images are transferred to every row
SOURCE = "map"
#: the detection scores of posterior-predictive samples [S, N, C] (higher: more like a clean input)
SCORES = {"mcp": max_probability, "entropy": negative_entropy, "mutual_information": negative_mutual_information}
#: perturbation -> (how it is made, whose predictive the attack takes its gradient through)
PERTURBATIONS = {"fgsm": ("fgsm", "own"), "pgd": ("pgd", "own"), "transfer_fgsm": ("fgsm", "source"),
                 "transfer_pgd": ("pgd", "source"), "uniform_noise": ("uniform", None)}
PIECE_FORMAT = "bayesdl-adversarial-piece-1"
NORMALIZATION = (MNIST_MEAN, MNIST_STD)


class AdversarialLab(MnistLab):
    """The MNIST lab with the attacked subset in pixels and the study's pieces on disk."""

    def __init__(self, ctx: RunContext):
        super().__init__(ctx)
        options = ctx.options
        x, y = self.splits["test"].tensors
        count = len(y) if options.images is None else min(options.images, len(y))
        order = torch.randperm(len(y), generator=torch.Generator().manual_seed(ctx.seed))[:count]
        # the networks see (pixel - mean) / std; attacks move and clip pixels in [0, 1]
        self.pixels = (x[order] * MNIST_STD + MNIST_MEAN).clamp(0.0, 1.0)
        self.labels = y[order]
        self.epsilons = options.epsilons
        self.attack = {"samples": options.attack_samples, "steps": options.steps}
        self._sources: dict[tuple, torch.Tensor] = {}

    def scores_of(self, posterior, pixels: torch.Tensor) -> dict:
        """Accuracy and every score (lists over the images) of the predictive at ``pixels`` (a point
        mass from its one pass, so that its mutual information is exactly 0, not rounding noise)."""
        draws = 1 if posterior.is_point_mass else self.s.samples
        probs = self.samples(posterior, (pixels - MNIST_MEAN) / MNIST_STD, draws)
        correct = probs.mean(0).argmax(-1) == self.labels
        return {"accuracy": float(correct.double().mean()),
                "scores": {name: score(probs).tolist() for name, score in SCORES.items()}}

    def perturb(self, row: str, kind: str, epsilon: float, seed: int, pixels=None, labels=None) -> torch.Tensor:
        """The images of ``kind`` at radius ``epsilon`` for ``row``'s networks of ``seed`` (default:
        the attacked subset), seeded by (seed, attack, radius) alone, so a transfer is the source's
        own white-box images."""
        how, whose = PERTURBATIONS[kind]
        pixels = self.pixels if pixels is None else pixels
        labels = self.labels if labels is None else labels
        salt = int(config_digest({"seed": seed, "how": how, "epsilon": epsilon}, length=8), 16)
        generator = torch.Generator().manual_seed(salt)
        torch.manual_seed(salt)
        if whose is None:
            return random_perturbation(pixels, epsilon, kind=how, generator=generator)
        posterior = self.posterior(ROWS[row] if whose == "own" else ROWS[SOURCE], seed)
        common = {"num_samples": self.attack["samples"], "normalization": NORMALIZATION}
        if how == "fgsm":
            return fgsm(posterior, pixels, labels, epsilon, **common)
        return pgd(posterior, pixels, labels, epsilon, steps=self.attack["steps"], generator=generator, **common)

    def source_images(self, kind: str, epsilon: float, seed: int) -> torch.Tensor:
        """The source's white-box images, made once per run (every row is attacked with them)."""
        key = (kind, epsilon, seed)
        if key not in self._sources:
            self._sources[key] = self.perturb(SOURCE, kind, epsilon, seed)
        return self._sources[key]

    def piece(self, row: str, kind: str, epsilon: float, seed: int) -> dict:
        """One finished piece, from the cache (verified) or computed and saved."""
        spec = self.spec(ROWS[row])
        # the network behind the row: its own, an ensemble's members', or the MAP a method is built around
        network = spec.member or (self.spec(spec.around).method if spec.info.around_map else spec.method)
        settings = {"row": row, "spec": ROWS[row], "options": spec.options, "kind": kind, "epsilon": epsilon,
                    "seed": seed, "recipe": self.recipe(network, seed).key(),
                    "samples": self.s.samples, "images": len(self.labels), "split_seed": self.ctx.seed,
                    **self.attack}
        if self.posterior(ROWS[row], seed).is_point_mass:  # scored from its one pass (see scores_of)
            settings["point_mass_once"] = True
        if epsilon == 0:  # every perturbation of radius 0 is the clean subset
            settings.update(kind="clean", epsilon=0.0)
        path = cache_folder(self.ctx) / "adversarial" / f"{row}-{settings['kind']}-{epsilon:g}-seed{seed}-" \
                                                        f"{config_digest(settings, length=10)}.json"
        try:
            return read_verified_json(path, PIECE_FORMAT)
        except FileNotFoundError:
            pass
        except ValueError as err:  # damaged: computed again
            print(f"{err}; computing it again", file=sys.stderr)
        if epsilon == 0:
            pixels = self.pixels
        elif PERTURBATIONS[kind][1] == "source":
            pixels = self.source_images(PERTURBATIONS[kind][0], epsilon, seed)
        else:
            pixels = self.perturb(row, kind, epsilon, seed)
        result = {**self.scores_of(self.posterior(ROWS[row], seed), pixels), "settings": settings}
        path.parent.mkdir(parents=True, exist_ok=True)
        write_verified_json(path, result, PIECE_FORMAT)
        return result


def _detection(clean: dict, perturbed: dict) -> dict:
    """Every score's AUROC, AUPR-in/out and FPR at 95% TPR, the clean images as positives."""
    out = {}
    for name in SCORES:
        metrics = ood_metrics(torch.tensor(clean["scores"][name]), torch.tensor(perturbed["scores"][name]))
        out.update({f"{metric}_{name}": value for metric, value in metrics.items()})
    return out


def _row_results(lab: AdversarialLab, row: str, seed: int) -> dict:
    """``{kind: {epsilon: metrics}}`` of one row and seed, piece by piece."""
    clean = lab.piece(row, "clean", 0.0, seed)
    results = {}
    for kind in PERTURBATIONS:
        cells = {}
        for epsilon in lab.epsilons:
            piece = clean if epsilon == 0 else lab.piece(row, kind, epsilon, seed)
            cells[f"{epsilon:g}"] = {"accuracy": piece["accuracy"], **_detection(clean, piece)}
        results[kind] = cells
        print(f"adversarial: seed {seed}, {row}, {kind} done", file=sys.stderr, flush=True)
    return results


def _all_results(lab: AdversarialLab, seeds: list[int]) -> dict[int, dict]:
    """``{seed: {row: {kind: {epsilon: metrics}}}}``, row by row over the seeds (the source first),
    so that a stopped run has finished whole rows."""
    done = {(row, seed): _row_results(lab, row, seed) for row in ROWS for seed in seeds}
    return {seed: {row: done[(row, seed)] for row in ROWS} for seed in seeds}


def _aggregate(per_seed: dict[int, dict]) -> dict:
    """Mean and standard deviation (ddof 1; 0 for one seed) over the seeds of every metric."""
    first = next(iter(per_seed.values()))
    out = {}
    for row, kinds in first.items():
        out[row] = {}
        for kind, cells in kinds.items():
            out[row][kind] = {}
            for eps, metrics in cells.items():
                cell = {}
                for metric in metrics:
                    values = np.array([per_seed[s][row][kind][eps][metric] for s in per_seed])
                    cell[metric] = float(values.mean())
                    cell[f"{metric}_sd"] = float(values.std(ddof=1)) if len(values) > 1 else 0.0
                out[row][kind][eps] = cell
    return out


def _digits(lab: AdversarialLab, row: str, count: int = 6) -> dict:
    """PGD images of the first ``count`` attacked digits for ``row`` at every radius, with the
    predictive's class, its probability, entropy and mutual information."""
    from bayesdl.evaluation import mutual_information, predictive_entropy

    pixels, labels = lab.pixels[:count], lab.labels[:count]
    posterior = lab.posterior(ROWS[row])
    shown = {}
    for epsilon in lab.epsilons:
        images = pixels if epsilon == 0 else lab.perturb(row, "pgd", epsilon, lab.ctx.seed, pixels, labels)
        probs = lab.samples(posterior, (images - MNIST_MEAN) / MNIST_STD, 1 if posterior.is_point_mass else None)
        mean = probs.mean(0)
        shown[epsilon] = {"images": images[:, 0].numpy(), "predicted": mean.argmax(-1).tolist(),
                          "probability": mean.max(-1).values.tolist(),
                          "entropy": predictive_entropy(probs).tolist(), "mi": mutual_information(probs).tolist()}
    return {"labels": labels.tolist(), "by_epsilon": shown}


def run(ctx: RunContext) -> StudyResult:
    lab = AdversarialLab(ctx)
    seeds = [ctx.seed + k for k in range(ctx.options.seeds)]
    per_seed = _all_results(lab, seeds)
    results = _aggregate(per_seed)
    labels = {row: lab.label(spec) for row, spec in ROWS.items()}
    figures = {"accuracy": accuracy_figure(ctx, results, labels, lab.epsilons),
               "detection": detection_figure(ctx, results, labels, lab.epsilons),
               "digits": digits_figure(ctx, _digits(lab, "mc_dropout"), labels["mc_dropout"])}
    config = lab.config(seeds=seeds, attacked_images=len(lab.labels), epsilons=list(lab.epsilons),
                        attack_samples=lab.attack["samples"], pgd_steps=lab.attack["steps"],
                        pgd_step_size="2.5 epsilon / steps", normalization=list(NORMALIZATION))
    text = report(lab, results, labels, seeds, figures)
    return StudyResult(config=config, results={"mean": results, "per_seed": per_seed}, report=text)
