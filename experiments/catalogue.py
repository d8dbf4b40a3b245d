"""The catalogue of studies: names, descriptions, options and where each study's code lives.

Kept free of heavy imports, so that ``bdl --help`` and ``bdl list`` start at once: a study's
module (and torch, Pyro, ArviZ, matplotlib with it) is imported only when the study runs.

A new study is one entry here (with its options, declared once as a :class:`StudyOptions`
dataclass) and one module in :mod:`bayesdl.experiments.studies` whose ``run(ctx)`` reads
``ctx.options``; see :mod:`bayesdl.experiments.options`.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass

from .options import NoOptions, StudyOptions, option

__all__ = ["StudyInfo", "STUDIES", "load_study"]

#: the acquisition functions the active-learning study compares (Gal et al. 2017, Table 1)
ACQUISITION_FUNCTIONS = ("bald", "variation_ratios", "max_entropy", "mean_std", "random")
#: the active-learning protocol's initial labels (2 per class, 10 MNIST classes) and points acquired
#: per step: the minima of max_labels and candidates (the study's INITIAL_PER_CLASS, ACQUISITION_SIZE)
AL_INITIAL_LABELS, AL_ACQUISITION_SIZE = 20, 10
#: the nine UCI regression sets of Gal & Ghahramani (2016), smallest first (the order the study runs)
UCI_DATASETS = ("yacht", "bostonHousing", "energy", "concrete", "wine-quality-red", "kin8nm",
                "power-plant", "naval-propulsion-plant", "protein-tertiary-structure")
#: the networks of the failure study: the course's LeNet and Corbiere et al.'s SmallConvNet
FAILURE_NETWORKS = ("corbiere", "lenet")


@dataclass(frozen=True)
class ReducedRunOptions(StudyOptions):
    """A reduced run of the MNIST week-3 studies: fewer epochs and posterior samples."""

    epochs: int | None = option("epochs of every network (default: the recipe's, 50; quick 1)")
    samples: int | None = option("posterior samples per prediction (default 100; quick 10)")


@dataclass(frozen=True)
class CalibrationOptions(ReducedRunOptions):
    conformal_trials: int = option("random calibration/test splits of the test set per conformal cell", 100,
                                   quick=20)


@dataclass(frozen=True)
class FailureOptions(ReducedRunOptions):
    networks: tuple[str, ...] = option(
        "comma-separated: lenet (the course's), corbiere (Corbiere et al.'s setup)", ("lenet",),
        choices=FAILURE_NETWORKS, message="networks must be a comma-separated list of {choices}, got {text!r}")
    seeds: int = option("classifiers of seeds seed .. seed + N - 1, each with its ConfidNet", 1)
    confidnet_epochs: int | None = option("ConfidNet's epochs (default: lenet 200, corbiere 500; quick 3)")
    confidnet_passes: int | None = option("stochastic classifier passes ConfidNet trains on (default: lenet 10, "
                                          "corbiere 50; quick 2)")


@dataclass(frozen=True)
class ActiveLearningOptions(StudyOptions):
    functions: tuple[str, ...] = option(
        "comma-separated acquisition functions", ACQUISITION_FUNCTIONS, choices=ACQUISITION_FUNCTIONS,
        message=f"functions must be a comma-separated subset of {list(ACQUISITION_FUNCTIONS)}, got {{text!r}}")
    seeds: int = option("runs of seeds seed .. seed + N - 1 per function", 3, quick=1)
    epochs: int = option("training epochs at every step", 50, quick=10)
    max_labels: int = option(
        "labels at which a run stops", 1000, quick=40, minimum=AL_INITIAL_LABELS + 1,
        message=f"option {{name}} must be more than the {AL_INITIAL_LABELS} initial labels (2 per class x 10), "
                f"at least {AL_INITIAL_LABELS + 1}, for a step to acquire anything; got {{text!r}}")
    candidates: int | None = option(
        "random pool points scored per step (none: the whole pool)", 2000, quick=100, minimum=AL_ACQUISITION_SIZE,
        message=f"option {{name}} must be at least the {AL_ACQUISITION_SIZE} points acquired per step, or none, "
                f"got {{text!r}}")
    num_samples: int = option("MC dropout samples per scored point", 20, quick=5)
    batchbald: bool = option("also run BatchBALD against BALD (true/false)", True)
    num_configurations: int = option("BatchBALD's sampled configurations", 10_000, quick=500)
    test_size: int | None = option("a fixed random subset of the test set (none: all 10,000)", None, quick=300)
    time_budget: float | None = option(
        "seconds after which no step starts (0: report the saved records only)", None, minimum=0,
        message="option {name} must be positive or 0 (report the saved records only), got {text!r}")


@dataclass(frozen=True)
class UCIOptions(StudyOptions):
    dataset: str = option("one UCI set, or all (quick mode: yacht)", "all", choices=("all", *UCI_DATASETS),
                          message="unknown UCI dataset {text!r}; choose one of {choices}")
    splits: int | None = option("the first N standard splits (none: all)", None, quick=2)


@dataclass(frozen=True)
class StudyInfo:
    """A study: what it does, what it reproduces, and its run function ``module:function``
    (in :mod:`bayesdl.experiments.studies`), called as ``run(ctx) -> StudyResult``."""

    name: str
    description: str
    reproduces: str
    entry: str
    needs_data: bool = False
    #: the study's options (``bdl run NAME --set KEY=VALUE``), parsed and checked before any work
    options: type[StudyOptions] = NoOptions
    #: whether the study imports torchvision (``bdl`` checks the torch/torchvision pair before it runs)
    uses_torchvision: bool = False
    #: roughly what ``--quick`` takes (the README's "What `--quick` takes"), or "unknown"
    quick_cost: str = "unknown"
    #: roughly what the full run takes (the README's "Results of the full runs"), or "unknown"
    full_cost: str = "unknown"


_ALL = (
    StudyInfo("regression", "Bayesian linear regression: closed form, evidence, Pyro SVI and NUTS",
              "course week 1 (polynomial and Gaussian bases, predictive variance, barycenter result)",
              "regression:run", quick_cost="20-29 CPU s", full_cost="about a minute on a laptop CPU"),
    StudyInfo("logistic-2d", "Bayesian logistic regression on 2-D separable data: MAP, Laplace, mean-field VI, NUTS",
              "course week 2, part 1 (MAP is overconfident far from the data; Laplace and VI are not)",
              "week2:run_logistic", quick_cost="23-38 CPU s"),
    StudyInfo("two-moons", "An MLP on two moons: MAP, mean-field VI, MC dropout, Laplace, NUTS",
              "course week 2, part 2 (mean-field VI vs MC dropout; uncertainty maps)",
              "week2:run_two_moons", quick_cost="45-57 CPU s"),
    StudyInfo("mnist-guides", "LeNet 'all' on MNIST: dropout and mean-field guides vs plain PyTorch dropout",
              "Gal & Ghahramani 2016 lenet-all; the BNN quality targets (10 epochs, full training set)",
              "mnist_guides:run", needs_data=True, uses_torchvision=True, quick_cost="53 CPU s"),
    StudyInfo("mnist-dropout", "LeNet with MC dropout on MNIST: accuracy, uncertainty measures, uncertain digits",
              "course week 3: MC dropout (p = 0.5, T = 50/100), variation ratio / entropy / MI, rotated digit",
              "mnist.dropout:run", needs_data=True, options=ReducedRunOptions, uses_torchvision=True,
              quick_cost="27 CPU s"),
    StudyInfo("calibration", "Calibration on MNIST: reliability diagrams, ECE, NLL, Brier; temperature scaling",
              "course week 3 (Guo et al. 2017): MAP, MC dropout, mean-field VI, Laplace, before/after temperature",
              "mnist.calibration:run", needs_data=True, options=CalibrationOptions, uses_torchvision=True,
              quick_cost="49 CPU s",
              full_cost="over 3 h on 2 cores (training: ensemble 9,652 s, MC dropout 1,159 s)"),
    StudyInfo("failure", "Failure prediction on MNIST: MCP, MC dropout, ConfidNet, TCP oracle (AUPR-error)",
              "course week 3 (Corbiere et al. 2019): which confidence separates errors from correct predictions",
              "mnist.failure:run", needs_data=True, options=FailureOptions, uses_torchvision=True,
              quick_cost="33 CPU s",
              full_cost="about 35-45 min per lenet seed, 2.4-2.7 h per corbiere seed (one core)"),
    StudyInfo("ood", "OOD detection: MNIST against Kuzushiji-MNIST and Fashion-MNIST (MCP, MC dropout, ODIN, Laplace)",
              "course week 3 (Liang et al. 2018; Laplace Redux): AUROC, AUPR, FPR at 95% TPR per OOD set",
              "mnist.ood:run", needs_data=True, options=ReducedRunOptions, uses_torchvision=True,
              quick_cost="36 CPU s"),
    StudyInfo("active-learning", "Deep Bayesian active learning on MNIST: BALD, variation ratios, max entropy, "
              "mean STD, random; BatchBALD",
              "course applications (Gal, Islam & Ghahramani 2017, Table 1; Kirsch et al. 2019): labels to reach "
              "10% / 5% test error",
              "active_learning:run", needs_data=True, options=ActiveLearningOptions, uses_torchvision=True,
              full_cost="about 11.6 core-hours (40 min per function and seed)"),
    StudyInfo("uci", "UCI regression (9 sets, standard splits): MC dropout, mean-field VI, Laplace; NUTS on yacht",
              "Gal & Ghahramani 2016 Table 1: test RMSE and LL; aleatoric/epistemic split; interval coverage",
              "uci:run", needs_data=True, options=UCIOptions,
              full_cost="about 1.9 h on 2 cores (6,700 s; MC dropout alone about 34 min)"),
)

#: name -> study, in the course's order (the order ``bdl list`` shows)
STUDIES: dict[str, StudyInfo] = {study.name: study for study in _ALL}


def load_study(name: str) -> Callable:
    """The run function of study ``name``, importing its module."""
    if name not in STUDIES:
        raise ValueError(f"unknown study {name!r}; `bdl list` shows the studies: {list(STUDIES)}")
    module, function = STUDIES[name].entry.split(":")
    return getattr(importlib.import_module(f"bayesdl.experiments.studies.{module}"), function)
