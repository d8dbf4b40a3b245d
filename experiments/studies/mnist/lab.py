"""The lab of the MNIST studies: splits, recipes, the method specs, cached networks, predictions."""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

import torch

from bayesdl.inference import Posterior, approximate

from ...data import mnist_splits
from ...lab import Lab
from ...methods import MethodSpec
from ...registry import RunContext
from ...training import NetworkRecipe, cache_folder, config_digest, train_network

#: SWAG's settings (Maddox et al. 2019): SGD with momentum 0.9 at a constant learning rate from
#: the MAP, K = 20 deviation columns, 20 collections spread over the SWAG phase
SWAG_LR, SWAG_RANK, SWAG_COLLECTIONS = 0.01, 20, 20
#: Corbiere et al.'s training of their MNIST classifier (their code's confs/exp_mnist.yaml):
#: SGD at lr 1e-3, momentum 0.9, weight decay 1e-4, batch 128, 100 epochs, 10% of the
#: training images for validation.
CORBIERE = {"lr": 1e-3, "momentum": 0.9, "weight_decay": 1e-4, "epochs": 100, "val_fraction": 0.1}

#: Human names of the scores and datasets on figures and in reports (methods: their specs' labels).
LABELS = {"mcp": "MCP (max softmax)", "mc_dropout": "MC dropout", "entropy": "MC dropout: -entropy", "mutual_information": "MC dropout: -MI",
          "odin": "ODIN", "confidnet": "ConfidNet", "tcp_oracle": "TCP oracle (knows the label)",
          "kmnist": "Kuzushiji-MNIST", "fashion_mnist": "Fashion-MNIST",
          "deep_ensemble_entropy": "deep ensemble: -entropy", "deep_ensemble_mi": "deep ensemble: -MI",
          "multiswag_entropy": "MultiSWAG: -entropy", "multiswag_mi": "MultiSWAG: -MI",
          "sghmc_entropy": "SGHMC: -entropy", "sghmc_mi": "SGHMC: -MI", "csghmc_entropy": "cSGHMC: -entropy",
          "csghmc_mi": "cSGHMC: -MI"}


def sci(value: float) -> str:
    """``1e-3`` rather than ``0.001`` or ``1e-05``."""
    mantissa, exponent = f"{value:.0e}".split("e")
    return f"{mantissa}e{int(exponent)}" if float(mantissa) * 10 ** int(exponent) == value else f"{value:g}"


@dataclass(frozen=True)
class Settings:
    epochs: int
    final_lr: float | None
    samples: int
    val_size: int
    train_limit: int | None
    test_limit: int | None
    ood_limit: int | None
    ood_tuning: int
    members: int = 5  # networks in an ensemble
    network: str = "lenet"  # a network of bayesdl.experiments.training.NETWORKS

    @property
    def swag_epochs(self) -> int:
        """SWAG's SGD phase after the MAP training: a fifth of the MAP's epochs (at least one)."""
        return max(1, self.epochs // 5)


def settings_of(ctx: RunContext, network: str = "lenet") -> Settings:
    """The schedule of a full run (or a quick one), for ``network``, with a reduced run's options."""
    if ctx.quick:
        settings = Settings(epochs=1, final_lr=1e-3, samples=10, val_size=500, train_limit=2000, test_limit=1000,
                            ood_limit=600, ood_tuning=200)
    else:
        settings = Settings(epochs=50, final_lr=1e-5, samples=100, val_size=5000, train_limit=None,
                            test_limit=None, ood_limit=None, ood_tuning=1000)
    if network == "corbiere":
        settings = replace(settings, network=network, final_lr=None,
                           epochs=settings.epochs if ctx.quick else CORBIERE["epochs"],
                           val_size=settings.val_size if ctx.quick else round(60000 * CORBIERE["val_fraction"]))
    # a reduced run (--set epochs=N --set samples=S): fewer epochs for every network alike, fewer draws
    epochs, samples = getattr(ctx.options, "epochs", None), getattr(ctx.options, "samples", None)
    return replace(settings, epochs=settings.epochs if epochs is None else epochs,
                   samples=settings.samples if samples is None else samples)


def swag_options(s: Settings, train_size: int, batch_size: int = 128) -> dict:
    """SWAG's phase from the MAP: :data:`SWAG_LR`, momentum 0.9, :data:`SWAG_RANK` columns,
    :data:`SWAG_COLLECTIONS` collections spread over ``s.swag_epochs`` epochs."""
    steps = s.swag_epochs * math.ceil(train_size / batch_size)
    return {"swag_epochs": s.swag_epochs, "swag_lr": SWAG_LR, "swag_momentum": 0.9, "rank": SWAG_RANK,
            "collect_every": max(1, steps // SWAG_COLLECTIONS)}


#: SG-MCMC on the LeNet (Zhang et al. 2020's SGHMC form, friction 0.1 = SGD momentum 0.9, batch 128,
#: temperature 1): one chain for the deep ensemble's budget (``members x epochs`` epochs). SGHMC at a
#: constant step after a burn-in of one member's epochs, :data:`SGMCMC_DRAWS` draws spread over the
#: rest; cSGHMC one cosine cycle per member, each keeping :data:`SAMPLES_PER_CYCLE` draws from its
#: last fifth. Steps (per-example scale) chosen by 1-3 epoch trials on the full training set:
#: SGHMC at 0.05 / 0.1 / 0.2 reached 97.9 / 97.7 / 93.6% after one epoch; cSGHMC from 0.1 / 0.2
#: 98.6 / 97.1% after three (0.5 did not train).
SGHMC_LR, CSGHMC_LR, FRICTION = 0.05, 0.1, 0.1
SGMCMC_DRAWS, SAMPLES_PER_CYCLE, EXPLORATION = 20, 3, 0.8


def sgmcmc_options(s: Settings, train_size: int, batch_size: int = 128) -> tuple[dict, dict]:
    """The options of the ``sghmc`` and ``csgmcmc`` rows: see :data:`SGHMC_LR`."""
    per_epoch = math.ceil(train_size / batch_size)
    epochs = s.members * s.epochs
    steps, burn_in = epochs * per_epoch, s.epochs * per_epoch
    common = {"friction": FRICTION, "epochs": epochs, "batch_size": batch_size, "num_chains": 1}
    sampling = int(steps // s.members * (1 - EXPLORATION))
    return ({**common, "lr": SGHMC_LR, "burn_in": burn_in, "thin": max(1, (steps - burn_in) // SGMCMC_DRAWS)},
            {**common, "lr": CSGHMC_LR, "cycles": s.members, "exploration": EXPLORATION,
             "samples_per_cycle": SAMPLES_PER_CYCLE, "thin": max(1, sampling // SAMPLES_PER_CYCLE)})


def specs(s: Settings, train_size: int) -> tuple[MethodSpec, ...]:
    """The methods the MNIST studies compare, by the names their rows and scores refer to."""
    sghmc, csghmc = sgmcmc_options(s, train_size)
    return (MethodSpec("map"), MethodSpec("dropout"), MethodSpec("mean_field"),
            MethodSpec("laplace", options={"subset": "last_layer", "structure": "kron", "curvature_batch_size": 512},
                       label="Laplace (last layer, KFAC)"),
            MethodSpec("swag", options=swag_options(s, train_size)),
            MethodSpec("deep_ensemble", label=f"deep ensemble ({s.members} MAP)"),
            MethodSpec("multiswag"), MethodSpec("sghmc", options=sghmc),
            MethodSpec("csgmcmc", options=csghmc, label="cSGHMC"))


def is_sampler(spec: MethodSpec) -> bool:
    """Whether ``spec`` is a sampler's (SG-MCMC: neither trained by ``fit``, nor fitted around a
    MAP, nor an ensemble)."""
    return spec.info.guide is None and not spec.info.around_map and spec.member is None


class MnistLab(Lab):
    """Data, cached networks and predictions shared by the MNIST studies, for one network
    architecture (``"lenet"``, the course's, or ``"corbiere"``: see :data:`CORBIERE`)."""

    def __init__(self, ctx: RunContext, network: str = "lenet"):
        self.s = settings_of(ctx, network)
        self.splits = mnist_splits(ctx.data_root, seed=ctx.seed, val_size=self.s.val_size,
                                   train_limit=self.s.train_limit, test_limit=self.s.test_limit,
                                   download=ctx.download)
        super().__init__(ctx, specs(self.s, len(self.splits["train"])))
        self.members = self.s.members
        self.train_seconds: dict[str, float] = {}

    def label(self, name: str) -> str:
        """The display name of a method spec, a score or a dataset."""
        if name in self.specs:
            return self.specs[name].label
        return LABELS.get(name, name.replace("_", " "))

    def recipe(self, method: str, seed: int | None = None) -> NetworkRecipe:
        common = dict(method=method, epochs=self.s.epochs, seed=self.ctx.seed if seed is None else seed,
                      train_size=len(self.splits["train"]), split_seed=self.ctx.seed)
        if self.s.network == "corbiere":
            return NetworkRecipe(network="corbiere", p=None, lr=CORBIERE["lr"], optimizer="sgd",
                                 momentum=CORBIERE["momentum"], weight_decay=CORBIERE["weight_decay"], **common)
        return NetworkRecipe(placement="all", p=0.5, lr=1e-3, final_lr=self.s.final_lr, **common)

    def network(self, method: str, seed: int | None = None) -> Posterior:
        """The cached network of the SVI ``method``'s recipe for ``seed`` (trained if missing)."""
        recipe = self.recipe(method, seed)
        posterior, seconds = train_network(recipe, self.splits["train"], self.ctx)
        self._record(method, recipe.seed, seconds)
        return posterior

    def _record(self, name: str, seed: int, seconds: float) -> None:
        """The training seconds of ``name`` for ``seed`` in :attr:`train_seconds` (the run's seed unsuffixed)."""
        self.train_seconds[name if seed == self.ctx.seed else f"{name}_seed{seed}"] = round(seconds, 1)

    def sampled(self, spec: MethodSpec, seed: int) -> Posterior:
        """The SG-MCMC run of ``spec`` for ``seed`` on the recipe's model, resumed from (or saved
        to) its checkpoint in the cache, named by the recipe and a digest of the spec's options (the
        checkpoint is verified on load; its seconds are the run's, so a served run counts its cost)."""
        recipe = self.recipe(spec.method, seed)
        entry = cache_folder(self.ctx) / f"{recipe.key()}-{config_digest(spec.options, length=8)}.pt"
        posterior = approximate(spec.method, recipe.model(), self.splits["train"], **spec.options, seed=seed,
                                device=self.ctx.device, progress=self.ctx.progress, checkpoint=entry, resume=True)
        self._record(spec.name, seed, posterior.history.seconds)
        return posterior

    # the Lab's hooks: SVI methods through the network cache, samplers through their checkpoints;
    # around the MAP on the training set
    def fit(self, spec: MethodSpec, seed: int) -> tuple[Posterior, float]:
        posterior = self.sampled(spec, seed) if is_sampler(spec) else self.network(spec.method, seed)
        return posterior, posterior.history.seconds

    def train_data(self, spec: MethodSpec, seed: int):
        return self.splits["train"]

    def around_map_options(self, spec: MethodSpec, seed: int) -> dict:
        """The spec's options; a method with a training phase of its own (SWAG) is seeded and
        resumes from a cache entry named by the MAP's recipe and a digest of those options."""
        options = dict(spec.options)
        if spec.info.checkpoint_option is not None:
            key = self.recipe(self.spec(spec.around).method, seed).key()
            entry = cache_folder(self.ctx) / f"{key}-{spec.method}-{config_digest(spec.options, length=8)}.pt"
            options.update(seed=seed, device=self.ctx.device, progress=self.ctx.progress, resume=True,
                           **{spec.info.checkpoint_option: entry})
        return options

    def deterministic(self, posterior: Posterior, x: torch.Tensor, batch: int = 1000):
        """Logits ``[N, C]`` and penultimate features ``[N, H]`` at the point estimate (on the CPU)."""
        logits, features = posterior.point_features(x, batch_size=batch)
        return logits.cpu(), features.cpu()

    def samples(self, posterior: Posterior, x: torch.Tensor, num_samples: int | None = None) -> torch.Tensor:
        """Posterior-predictive probabilities ``[S, N, C]`` (on the CPU).

        Seeded by the run's seed at each call, so a study gives the same numbers whether its
        networks were just trained (which draws random numbers) or loaded from the cache.
        """
        torch.manual_seed(self.ctx.seed)
        count = num_samples or self.s.samples
        if posterior.fixed_draws is not None:  # a sampler's draws: each once, not repeated to make up S
            count = min(count, posterior.fixed_draws)
        prediction = posterior.predict(x, num_samples=count, progress=self.ctx.progress)
        return prediction.probs.cpu()

    def config(self, **extra) -> dict:
        if self.s.network == "corbiere":
            network = {"optimizer": f"SGD, lr {sci(CORBIERE['lr'])}, momentum {CORBIERE['momentum']}, "
                                    f"weight decay {sci(CORBIERE['weight_decay'])} (as the equivalent Gaussian "
                                    "prior), batch 128",
                       "architecture": "SmallConvNet (Corbiere et al.) conv 32@3x3 - conv 64@3x3 - max-pool - "
                                       "dropout 0.25 - fc 128 - dropout 0.5 - fc 10"}
        else:
            lr, final = 1e-3, self.s.final_lr
            schedule = (f"lr {sci(lr)} decaying exponentially to {sci(final)}" if final != lr
                        else f"constant lr {sci(lr)}")
            network = {"optimizer": f"Adam, {schedule}, batch 128", "prior_scale": 1.0,
                       "architecture": "LeNet (Caffe) 20-50-500, dropout 'all' p = 0.5"}
        return {"epochs": self.s.epochs, **network, "ensemble_members": self.s.members,
                "swag": {"epochs": self.s.swag_epochs, "lr": SWAG_LR, "momentum": 0.9, "rank": SWAG_RANK,
                         "collections": SWAG_COLLECTIONS},
                "sgmcmc": {name: spec.options for name, spec in self.specs.items() if is_sampler(spec)},
                "posterior_samples": self.s.samples, "train_size": len(self.splits["train"]),
                "val_size": len(self.splits["val"]), "test_size": len(self.splits["test"]),
                "train_seconds": self.train_seconds, **extra}


def sgmcmc_description(lab: MnistLab) -> str:
    """What the SG-MCMC rows are, for the reports."""
    sghmc, csghmc = lab.spec("sghmc").options, lab.spec("csgmcmc").options
    return (f"SGHMC and cSGHMC (Zhang et al. 2020): one chain each of {sghmc['epochs']} epochs, the deep "
            f"ensemble's budget ({lab.s.members} x {lab.s.epochs}), friction {FRICTION:g} (momentum "
            f"{1 - FRICTION:g}), batch {sghmc['batch_size']}, temperature 1, the LeNet's N(0, 1) prior; SGHMC at the constant step "
            f"{SGHMC_LR:g} (per example), a burn-in of {lab.s.epochs} epoch(s), a draw every {sghmc['thin']} "
            f"steps after it; cSGHMC {csghmc['cycles']} cosine cycles from {CSGHMC_LR:g}, {SAMPLES_PER_CYCLE} "
            f"draws {csghmc['thin']} steps apart at the end of each (no noise in the first "
            f"{EXPLORATION:.0%} of a cycle). Every draw is used once in the predictive.")


def accuracy(probs, labels) -> float:
    return float((probs.argmax(-1) == labels).double().mean())


def _gap(value: float, reference: float, higher_is_better: bool) -> float:
    """How far ``value`` is behind ``reference`` (negative: ahead)."""
    return (reference - value) if higher_is_better else (value - reference)


def _behind_or_ahead(gap: float, unit: str) -> str:
    return f"{'behind' if gap > 0 else 'ahead'} by {abs(gap):.4g} {unit}"


def against_the_ensemble(lab: MnistLab, values: dict[str, float], rows: dict[str, str], reference: str,
                         tolerance: float, higher_is_better: bool, unit: str) -> str:
    """Which single-network rows come within ``tolerance`` of the ensemble row ``reference``
    at a fifth of its training cost (``rows``: row -> the lab's spec behind it).

    Costs are measured seconds on a shared machine, so "a fifth" allows 10% of timing noise:
    a single MAP network of the ensemble's recipe must qualify whatever the noise.
    """
    costs = lab.costs(rows)
    ref, total = values[reference], costs[reference]
    single = [r for r in values if lab.spec(rows[r]).member is None and not is_sampler(lab.spec(rows[r]))]
    gap = {r: _gap(values[r], ref, higher_is_better) for r in single}

    def describe(r):
        return f"{r} ({_behind_or_ahead(gap[r], unit)}, {costs[r] / total:.2f} of the cost)"

    close = [r for r in single if gap[r] <= tolerance and costs[r] <= 1.1 * total / 5]
    nearest = min(single, key=gap.get)
    verdict = (f"{', '.join(describe(r) for r in close)}" if close
               else f"none; the closest is {describe(nearest)}")
    return (f"Single-network methods within {tolerance:g} {unit} of {reference} ({ref:.4g}; "
            f"{total:.0f} s of training) at a fifth of its training cost: {verdict}.")


def at_the_ensemble_cost(lab: MnistLab, values: dict[str, float], rows: dict[str, str], samplers: tuple[str, ...],
                         reference: str, tolerance: float, higher_is_better: bool, unit: str) -> str:
    """Whether each SG-MCMC row of ``samplers`` comes within ``tolerance`` of the ensemble row
    ``reference`` at at most its training cost (measured seconds; 10% allowed for timing noise,
    as the runs are budgeted in equal epochs)."""
    costs = lab.costs(rows)
    ref, total = values[reference], costs[reference]
    parts = []
    for row in samplers:
        gap = _gap(values[row], ref, higher_is_better)
        met = gap <= tolerance and costs[row] <= 1.1 * total
        parts.append(f"{lab.label(row)} {values[row]:.4g}, {_behind_or_ahead(gap, unit)} at "
                     f"{costs[row] / total:.2f} of its cost ({'met' if met else 'not met'})")
    return (f"SG-MCMC against {lab.label(reference)} ({ref:.4g}; {total:.0f} s of training; target: within "
            f"{tolerance:g} {unit} at at most its cost): {'; '.join(parts)}.")
