"""The catalogue of studies: names, descriptions and where each study's code lives.

Kept free of heavy imports, so that ``bdl --help`` and ``bdl list`` start at once: a study's
module (and torch, Pyro, ArviZ, matplotlib with it) is imported only when the study runs.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass

__all__ = ["StudyInfo", "STUDIES", "load_study"]


@dataclass(frozen=True)
class StudyInfo:
    """A study: what it does, what it reproduces, and its run function ``module:function``
    (in :mod:`bayesdl.experiments.studies`), called as ``run(ctx) -> StudyResult``."""

    name: str
    description: str
    reproduces: str
    entry: str
    needs_data: bool = False
    #: names of the study's options (``bdl run NAME --set KEY=VALUE``); the study parses and checks
    #: their values before any work (see its docstring)
    options: tuple[str, ...] = ()


#: the options of the MNIST week-3 studies: a reduced run (every network trained ``epochs``
#: epochs instead of 50, ``samples`` posterior samples per prediction instead of 100)
REDUCED_RUN = ("epochs", "samples")

_ALL = (
    StudyInfo("regression", "Bayesian linear regression: closed form, evidence, Pyro SVI and NUTS",
              "course week 1 (polynomial and Gaussian bases, predictive variance, barycenter result)",
              "regression:run"),
    StudyInfo("logistic-2d", "Bayesian logistic regression on 2-D separable data: MAP, Laplace, mean-field VI, NUTS",
              "course week 2, part 1 (MAP is overconfident far from the data; Laplace and VI are not)",
              "week2:run_logistic"),
    StudyInfo("two-moons", "An MLP on two moons: MAP, mean-field VI, MC dropout, Laplace, NUTS",
              "course week 2, part 2 (mean-field VI vs MC dropout; uncertainty maps)",
              "week2:run_two_moons"),
    StudyInfo("mnist-guides", "LeNet 'all' on MNIST: dropout and mean-field guides vs plain PyTorch dropout",
              "Gal & Ghahramani 2016 lenet-all; the BNN quality targets (10 epochs, full training set)",
              "mnist_guides:run", needs_data=True),
    StudyInfo("mnist-dropout", "LeNet with MC dropout on MNIST: accuracy, uncertainty measures, uncertain digits",
              "course week 3: MC dropout (p = 0.5, T = 50/100), variation ratio / entropy / MI, rotated digit",
              "mnist:run_dropout", needs_data=True, options=REDUCED_RUN),
    StudyInfo("calibration", "Calibration on MNIST: reliability diagrams, ECE, NLL, Brier; temperature scaling",
              "course week 3 (Guo et al. 2017): MAP, MC dropout, mean-field VI, Laplace, before/after temperature",
              "mnist:run_calibration", needs_data=True, options=REDUCED_RUN),
    StudyInfo("failure", "Failure prediction on MNIST: MCP, MC dropout, ConfidNet, TCP oracle (AUPR-error)",
              "course week 3 (Corbiere et al. 2019): which confidence separates errors from correct predictions",
              "mnist:run_failure", needs_data=True,
              options=(*REDUCED_RUN, "networks", "seeds", "confidnet_epochs", "confidnet_passes")),
    StudyInfo("ood", "OOD detection: MNIST against Kuzushiji-MNIST and Fashion-MNIST (MCP, MC dropout, ODIN, Laplace)",
              "course week 3 (Liang et al. 2018; Laplace Redux): AUROC, AUPR, FPR at 95% TPR per OOD set",
              "mnist:run_ood", needs_data=True, options=REDUCED_RUN),
    StudyInfo("active-learning", "Deep Bayesian active learning on MNIST: BALD, variation ratios, max entropy, "
              "mean STD, random; BatchBALD",
              "course applications (Gal, Islam & Ghahramani 2017, Table 1; Kirsch et al. 2019): labels to reach "
              "10% / 5% test error",
              "active_learning:run", needs_data=True,
              options=("functions", "seeds", "epochs", "max_labels", "candidates", "num_samples",
                       "batchbald", "num_configurations", "test_size", "time_budget")),
    StudyInfo("uci", "UCI regression (9 sets, standard splits): MC dropout, mean-field VI, Laplace; NUTS on yacht",
              "Gal & Ghahramani 2016 Table 1: test RMSE and LL; aleatoric/epistemic split; interval coverage",
              "uci:run", needs_data=True, options=("dataset", "splits")),
)

#: name -> study, in the course's order (the order ``bdl list`` shows)
STUDIES: dict[str, StudyInfo] = {study.name: study for study in _ALL}


def load_study(name: str) -> Callable:
    """The run function of study ``name``, importing its module."""
    if name not in STUDIES:
        raise ValueError(f"unknown study {name!r}; `bdl list` shows the studies: {list(STUDIES)}")
    module, function = STUDIES[name].entry.split(":")
    return getattr(importlib.import_module(f"bayesdl.experiments.studies.{module}"), function)
