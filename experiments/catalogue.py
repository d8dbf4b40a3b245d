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
#: the rows of the sentiment study (its specs' names, in its order)
SENTIMENT_ROWS = ("variational", "naive", "map", "mean_field")
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


#: the L-infinity radii of the adversarial study, in pixels of [0, 1] (Smith & Gal 2018's range)
ADVERSARIAL_EPSILONS = (0.0, 0.05, 0.1, 0.2, 0.3)


def _epsilons(text: str) -> tuple[float, ...]:
    """Comma-separated radii in [0, 1], e.g. ``0,0.1,0.3``."""
    try:
        values = tuple(sorted({float(item) for item in text.split(",") if item.strip()}))
    except ValueError:
        raise ValueError("give comma-separated numbers in [0, 1], e.g. 0,0.1,0.3") from None
    if not values or any(not 0 <= v <= 1 for v in values):
        raise ValueError(f"the radii must be numbers in [0, 1] (pixels), got {text!r}")
    return values


@dataclass(frozen=True)
class AdversarialOptions(ReducedRunOptions):
    """A reduced run of the MNIST recipes by default (3 epochs); the paper's schedule is
    ``--set epochs=50 --set samples=100 --set images=none``."""

    epochs: int | None = option("epochs of every network (the recipes' full schedule: 50; quick 1)", 3, quick=None)
    samples: int | None = option("posterior samples behind each score (the recipes': 100; quick 10)", 20,
                                 quick=None)
    seeds: int = option("networks of seeds seed .. seed + N - 1 per method; the mean is reported", 3, quick=1)
    images: int | None = option("a fixed random subset of the test set is attacked (none: all of it)", 1000,
                                quick=60)
    attack_samples: int = option("posterior draws T behind each attack gradient", 20, quick=4)
    steps: int = option("PGD steps (step 2.5 eps / steps, random start)", 10, quick=3)
    epsilons: tuple[float, ...] = option("comma-separated L-infinity radii in pixels of [0, 1]",
                                         ADVERSARIAL_EPSILONS, parse=_epsilons)


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
class SentimentOptions(StudyOptions):
    """The sentiment study (Gal & Ghahramani 2016, sec. 5.1); the paper's schedule:
    ``--set epochs=250 embedding=128 hidden=128``."""

    rows: tuple[str, ...] = option(
        "comma-separated rows: variational, naive (dropout), map (no dropout), mean_field", SENTIMENT_ROWS,
        choices=SENTIMENT_ROWS, message="rows must be a comma-separated subset of {choices}, got {text!r}")
    seeds: int = option("runs of seeds seed .. seed + N - 1 (each its own shuffle, split and init)", 3, quick=1)
    epochs: int = option("training epochs of every row (the paper: 250)", 15, quick=2)
    embedding: int = option("word-embedding size (the paper: 128)", 32, quick=8)
    hidden: int = option("LSTM hidden size (the paper: 128)", 32, quick=8)
    samples: int = option("MC passes of the final test prediction (the paper: T = 50)", 50, quick=5)
    curve_samples: int = option("MC passes of each epoch's test RMSE (0: one pass with dropout off)", 0,
                                quick=0, minimum=0)
    reviews: int | None = option("the first N shuffled reviews (none: all 5,006)", None, quick=250, minimum=10)
    vocabulary: int = option("most frequent words kept (the paper: 20,000)", 20_000, quick=2000)
    max_length: int = option("tokens per chunk of a review (the paper: 200)", 200, quick=40)
    p: float = option("dropout rate of every slot (the paper: 0.25)", 0.25, minimum=0)
    weight_decay: float = option("weight decay taken as the prior (the paper: 1e-4)", 1e-4, minimum=0)
    lr: float = option("Adam's learning rate", 1e-3, minimum=0)


#: the rows of the bandits study: its method specs' names, then the baselines (experiments/studies/bandits)
BANDIT_AGENTS = ("dropout", "mean_field", "deep_ensemble", "swag", "linfullpost", "neural_linear",
                 "epsilon_greedy", "uniform")
#: the wheel bandit's exploration parameters of the showdown
WHEEL_DELTAS = (0.5, 0.7, 0.9, 0.95, 0.99)


def _deltas(text: str) -> tuple[float, ...]:
    values = tuple(float(v) for v in text.split(",") if v.strip())
    if not values or not all(0 < v < 1 for v in values):
        raise ValueError(f"deltas must be comma-separated numbers in (0, 1), got {text!r}")
    return values


@dataclass(frozen=True)
class BanditOptions(StudyOptions):
    """The bandits study (Riquelme et al. 2018); the showdown's schedule is the default."""

    parts: tuple[str, ...] = option("comma-separated parts: mushroom, wheel, dqn (the dropout Q-network)",
                                    ("mushroom", "wheel", "dqn"), choices=("mushroom", "wheel", "dqn"))
    agents: tuple[str, ...] = option("comma-separated agents", BANDIT_AGENTS, choices=BANDIT_AGENTS,
                                     quick=("dropout", "linfullpost", "neural_linear", "uniform"))
    seeds: int = option("mushroom seeds seed .. seed + N - 1", 5, quick=1)
    contexts: int = option("mushroom contexts per seed (at most 8,124)", 2000, quick=100)
    wheel_seeds: int = option("wheel seeds per delta", 2, quick=1)
    wheel_contexts: int = option("wheel contexts per seed", 1000, quick=100)
    deltas: tuple[float, ...] = option("comma-separated wheel deltas in (0, 1)", WHEEL_DELTAS, quick=(0.5,),
                                       parse=_deltas)
    hidden: int = option("hidden units of the one-hidden-layer networks", 50)
    initial_pulls: int = option("initial round-robin pulls per arm", 2)
    retrain_every: int = option("steps between refits of a network", 50, quick=40)
    train_steps: int = option("minibatch steps per refit (the showdown's training_epochs)", 100, quick=10)
    batch_size: int = option("minibatch size", 512)
    lr: float = option("Adam's learning rate", 1e-2, minimum=0)
    prior_scale: float = option("Gaussian prior scale of every weight", 1.0, minimum=0)
    lambda_prior: float = option("LinFullPost / NeuralLinear prior precision lambda", 0.25, minimum=0)
    a0: float = option("inverse-Gamma prior shape a0", 6.0, minimum=0)
    b0: float = option("inverse-Gamma prior scale b0", 6.0, minimum=0)
    epsilon: float = option("epsilon of the epsilon-greedy agent", 0.05, minimum=0)
    time_budget: float | None = option("seconds after which no new run starts (0: report the saved runs only)",
                                       None, minimum=0)
    dqn_steps: int = option("CartPole environment steps per DQN run", 20_000, quick=300)
    dqn_seeds: int = option("DQN seeds per agent", 5, quick=1)
    q_dropout: float = option("dropout rate of the Q-network", 0.1, minimum=0)
    warmup: int = option("environment steps of uniform actions before the first DQN update", 500, quick=100, minimum=0)
    replay: int = option("replay buffer size", 10_000)
    target_every: int = option("DQN updates between target-network synchronisations", 500, quick=50)
    decay: int = option("steps over which epsilon decays from 1 to 0.05", 10_000, quick=200)


@dataclass(frozen=True)
class ModesOptions(StudyOptions):
    """SGLD vs cyclical SGLD on a mixture of 25 Gaussians (Zhang et al. 2020's multimodal toy)."""

    seeds: int = option("chains of seeds seed .. seed + N - 1 per sampler (the target: their mean)", 3)
    steps: int = option("gradient evaluations of each chain, the same for both samplers", 50000, quick=4000)
    cycles: int = option("cosine cycles of cyclical SGLD", 30, quick=4)
    lr_sgld: float = option("SGLD's constant step on U", 0.01, minimum=None)
    lr_cyclical: float = option("cyclical SGLD's step at the start of each cycle", 0.1, minimum=None)
    exploration: float = option("noise-free fraction at the start of each cycle", 0.0, minimum=0)
    sigma: float = option("standard deviation of each of the 25 Gaussians", 0.25, minimum=None)
    gradient_noise: float = option("sd of the N(0, s^2) noise added to each gradient component", 1.0, minimum=0)
    thin: int = option("keep every N-th iterate", 10)


def _epochs_list(text: str) -> tuple[int, ...]:
    values = tuple(int(v) for v in text.split(",") if v.strip())
    if not values or min(values) < 1:
        raise ValueError(f"lenet_epochs must be comma-separated positive integers, got {text!r}")
    return values


def _dampings(text: str) -> tuple[float, ...]:
    values = tuple(float(v) for v in text.split(",") if v.strip())
    if not values or any(not v >= 0 for v in values):
        raise ValueError(f"dampings must be comma-separated numbers >= 0, got {text!r}")
    return values


@dataclass(frozen=True)
class InfluenceOptions(StudyOptions):
    train: int | None = option("training images of the logistic regression (none: all 60,000)", 10_000,
                               quick=1000, minimum=100)
    test_points: int = option("test images of highest loss whose influences are checked", 2, quick=1)
    top: int = option("most influential training points removed and retrained, per test image (the paper: 500)",
                      100, quick=8)
    l2: float = option("L2 coefficient on the mean loss (the paper: 0.01)", 0.01, minimum=0)
    retrain_tol: float = option("L-BFGS gradient tolerance of each retraining, times N", 1e-6, minimum=0)
    mislabel_train: int = option("training images of the mislabel-detection run", 5000, quick=500, minimum=20)
    flip: float = option("share of their labels flipped to another class", 0.1, minimum=0)
    parts: tuple[str, ...] = option("comma-separated parts: logistic (removals and mislabels), cnn (the CNN check), "
                                    "lenet (mislabels found by a LeNet's EK-FAC self-influence)",
                                    ("logistic", "cnn", "lenet"), choices=("logistic", "cnn", "lenet"))
    lenet_epochs: tuple[int, ...] = option("comma-separated Adam epochs of the LeNet of the lenet part (one run "
                                           "each, on mislabel_train images)", (5, 20, 60), quick=(1,),
                                           parse=_epochs_list)
    cnn_train: int = option("training images of the CNN check", 500, quick=100, minimum=20)
    cnn_test: int = option("test images searched for the one of highest loss (CNN check)", 1000, quick=100)
    cnn_test_points: int = option("test images of highest loss whose removals the CNN check retrains", 2, quick=1,
                                  minimum=1)
    cnn_top: int = option("removals retrained in the CNN check (the authors' notebook: 100)", 100, quick=4)
    cnn_l2: float = option("L2 coefficient of the CNN on the mean loss", 1e-3, minimum=0)
    cnn_dampings: tuple[float, ...] = option("comma-separated dampings of the CNN's curvature, per example",
                                             (0.0, 0.001, 0.01), quick=(0.0, 0.01), parse=_dampings)
    cnn_select: str = option("curvature whose largest predicted influences pick the CNN's removals",
                             "exact", choices=("exact", "ggn", "kfac", "ekfac"))
    cnn_iterations: int = option("L-BFGS iterations at most for the CNN optimum", 2000, quick=100)
    cnn_retrain_iterations: int = option("L-BFGS iterations of each CNN retraining (and of the baseline)", 200,
                                         quick=50)
    cnn_tol: float = option("L-BFGS gradient tolerance of the CNN, times N", 1e-7, minimum=0)


def _accuracy(text: str) -> float | None:
    if text.strip().lower() == "none":
        return None
    value = float(text)
    if not 0 < value <= 1:
        raise ValueError(f"fit_to must be a training accuracy in (0, 1], or none, got {text!r}")
    return value


def _noise_levels(text: str) -> tuple[float, ...]:
    values = tuple(float(v) for v in text.split(",") if v.strip())
    if not values or any(not 0 <= v <= 1 for v in values):
        raise ValueError(f"noise must be comma-separated probabilities in [0, 1], got {text!r}")
    return values


@dataclass(frozen=True)
class RandomLabelsOptions(StudyOptions):
    train: int = option("fixed MNIST training subset", 2000, quick=200, minimum=10)
    test: int | None = option("test images (none: all 10,000)", None, quick=500)
    noise: tuple[float, ...] = option("comma-separated probabilities that a label is replaced at random",
                                      (0.0, 0.2, 0.5, 0.8, 1.0), quick=(0.0, 0.5, 1.0), parse=_noise_levels)
    seeds: int = option("runs of seeds seed .. seed + N - 1 (the target: 3)", 1)
    epochs: int = option("Adam epochs of every network (at least)", 60, quick=3)
    fit_to: float | None = option("then train on, an epoch at a time, until the training accuracy on the noisy labels "
                                  "is at least this (Zhang et al. train to fit; none: stop after epochs)", 0.999,
                                  quick=None, parse=_accuracy)
    max_epochs: int = option("epochs at most when training to fit_to", 300, minimum=1)
    hessian: str = option("KFAC curvature: ggn (exact Fisher) or mc (one sampled label)", "ggn",
                          choices=("ggn", "mc"))


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
    StudyInfo("sentiment", "Sentiment regression with an LSTM: variational vs naive dropout, MAP, mean-field VI",
              "Gal & Ghahramani 2016b (variational RNN dropout), sec. 5.1: test RMSE against epochs on Pang & "
              "Lee's movie reviews; NLL, interval coverage, aleatoric/epistemic split",
              "sentiment:run", needs_data=True, options=SentimentOptions, quick_cost="8 CPU s",
              full_cost="1,528 s on one thread of an idle 2-core CPU (3 seeds x 4 rows x 15 epochs)"),
    StudyInfo("bandits", "Contextual bandits by Thompson sampling from every posterior: mushroom and wheel bandits",
              "Riquelme et al. 2018 (Deep Bayesian Bandits Showdown): cumulative regret of dropout, mean-field, "
              "ensembles, SWAG, LinFullPost, NeuralLinear against uniform and epsilon-greedy",
              "bandits:run", needs_data=True, options=BanditOptions),
    StudyInfo("adversarial", "Adversarial examples on MNIST: FGSM and PGD on each posterior's predictive, transfer "
              "from the MAP, detection by MCP, entropy and MI",
              "Smith & Gal 2018 (course robustness lecture): accuracy under attack; MI detects attacks better "
              "than entropy for MC dropout",
              "mnist.adversarial:run", needs_data=True, options=AdversarialOptions, uses_torchvision=True,
              quick_cost="36 CPU s", full_cost="estimated 2 h of one core for 3 seeds (half of it mean-field VI's "
              "attacks), from per-piece rates; not yet measured end to end"),
    StudyInfo("influence", "Influence functions on MNIST: predicted vs actual loss change of removals "
              "(logistic regression), mislabelled examples by self-influence",
              "Koh & Liang 2017 (course robustness lecture): Pearson r of predicted and retrained loss changes; "
              "flipped labels found in the top 10% / 20% of self-influence against the loss ranking",
              "influence:run", needs_data=True, options=InfluenceOptions, uses_torchvision=True),
    StudyInfo("random-labels", "LeNet on MNIST with 0-100% random labels: training and test accuracy, and the "
              "all-layer KFAC Laplace evidence",
              "Zhang et al. 2017 (rethinking generalization; course robustness lecture): the network fits random "
              "labels, the evidence falls with the noise",
              "random_labels:run", needs_data=True, options=RandomLabelsOptions, uses_torchvision=True),
    StudyInfo("sgmcmc-modes", "SGLD vs cyclical SGLD on a 2-D mixture of 25 Gaussians: modes visited at equal "
              "gradient evaluations",
              "Zhang et al. 2020 (cyclical SG-MCMC), multimodal toy: cSGLD visits far more modes than SGLD",
              "sgmcmc_modes:run", options=ModesOptions, quick_cost="13-19 CPU s",
              full_cost="about 3 min on 2 loaded cores (193 s)"),
)

#: name -> study, in the course's order (the order ``bdl list`` shows)
STUDIES: dict[str, StudyInfo] = {study.name: study for study in _ALL}


def load_study(name: str) -> Callable:
    """The run function of study ``name``, importing its module."""
    if name not in STUDIES:
        raise ValueError(f"unknown study {name!r}; `bdl list` shows the studies: {list(STUDIES)}")
    module, function = STUDIES[name].entry.split(":")
    return getattr(importlib.import_module(f"bayesdl.experiments.studies.{module}"), function)
