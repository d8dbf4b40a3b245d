"""Sentiment regression with a recurrent network (Gal & Ghahramani 2016b, "A theoretically grounded
application of dropout in recurrent neural networks", sec. 5.1).

Pang & Lee's movie reviews, the paper's protocol (:mod:`bayesdl.experiments.text_data`): chunks of
at most 200 tokens, 20,000 words, the last 20% of the shuffled reviews as the test set, ratings
standardised on the training part. The network (:class:`bayesdl.models.RecurrentRegressor`):
embedding -> LSTM -> dropout -> dense output, from the last state; Gaussian likelihood with a
learned noise scale; weight decay as the prior (:func:`weight_decay_prior`); Adam, batch 128. Rows
(:data:`SPECS`):

- ``variational``: the dropout guide on the variational LSTM (masks tied across time steps, on the
  recurrent state too, word types dropped per sequence), rate ``p`` on every slot;
- ``naive``: the dropout guide on the naive LSTM (a new mask per time step on the inputs, none
  on the recurrent state), rate ``p``;
- ``map``: no dropout (a MAP estimate with the same prior);
- ``mean_field``: mean-field VI on the network without dropout.

Each ``(row, seed)`` trains one epoch at a time through the registry with a checkpoint in the
study cache (``--cache-dir``), and after every epoch the test RMSE (rating units) is written to a
verified JSON file there, so an interrupted run resumes at its last epoch and a longer run
(``--set epochs=250``) continues the shorter one. After the last epoch: ``samples`` MC passes at
the test chunks give RMSE, NLL, 50/90/95% interval coverage and the aleatoric/epistemic split.
"""

from __future__ import annotations

import copy
import math
import time
from dataclasses import asdict, dataclass

import torch

from bayesdl.evaluation import regression_metrics
from bayesdl.inference import METHODS, Posterior, approximate
from bayesdl.models import BNN, Gaussian, NormalPrior, RecurrentRegressor

from ...io import read_verified_json, write_verified_json
from ...lab import Lab
from ...methods import MethodSpec
from ...registry import RunContext, StudyResult
from ...text_data import SentimentSplit, load_reviews, sentiment_split
from ...training import cache_folder, config_digest
from .report import curve_figure, render_report, summarise

__all__ = ["run", "SentimentMethod", "SPECS", "SentimentLab", "weight_decay_prior", "uncertain_reviews"]

CURVE_FORMAT, FINAL_FORMAT = "bayesdl-sentiment-curve-1", "bayesdl-sentiment-final-1"


@dataclass(frozen=True)
class SentimentMethod(MethodSpec):
    """A row: a :class:`MethodSpec` and its network -- ``variant`` of the LSTM and whether its
    dropout slots are on (at the study's rate ``p``) -- and its colour on the figure."""

    variant: str = "variational"
    dropout: bool = False
    color: str = "black"


SPECS = (
    SentimentMethod("variational", "dropout", label="variational dropout (tied masks)", variant="variational",
                    dropout=True, color="tab:blue"),
    SentimentMethod("naive", "dropout", label="naive dropout (per-step masks)", variant="naive", dropout=True,
                    color="tab:orange"),
    SentimentMethod("map", label="no dropout (MAP)", color="tab:red"),
    SentimentMethod("mean_field", label="mean-field VI", color="tab:green"),
)


def weight_decay_prior(net: torch.nn.Module, method: str, weight_decay: float, train_size: int,
                       probe: torch.Tensor) -> NormalPrior:
    """The Gaussian prior whose term in ``method``'s objective is plain PyTorch's ``weight_decay``
    on the mean loss per example: ``s = 1 / sqrt(weight_decay N)``, and ``s / sqrt(1 - p)`` for a
    weight whose inputs (or rows) a slot of rate ``p`` drops -- the dropout guide's prior term is
    ``||M||^2 / (2 s^2 (1 - p))``. Which slot masks which weight is the guide's own mapping
    (``prior_rates``) on a pass of ``probe`` (token ids ``[2, L]``)."""
    base = 1.0 / math.sqrt(weight_decay * train_size)
    guide = METHODS[method].guide
    rates = guide.prior_rates(BNN(copy.deepcopy(net)), probe) if guide is not None else {}
    return NormalPrior(base, layer_scales={site: base / math.sqrt(1.0 - p) for site, p in rates.items()})


def uncertain_reviews(prediction, split: SentimentSplit, count: int = 5) -> dict:
    """The ``count`` test chunks of largest and of smallest predictive standard deviation (rating
    units): text (its first 30 tokens), rating, predictive mean and standard deviation, epistemic
    standard deviation."""
    sd = prediction.variance.sqrt()
    order = torch.argsort(sd, descending=True).tolist()

    def row(i):
        return {"text": " ".join(split.texts_test[i].split()[:30]), "rating": float(split.rating_test[i]),
                "mean": float(prediction.predictive_mean[i]), "sd": float(sd[i]),
                "epistemic_sd": float(prediction.epistemic[i].sqrt())}

    return {"most": [row(i) for i in order[:count]], "least": [row(i) for i in order[::-1][:count]]}


class SentimentLab(Lab):
    """The posteriors of the rows for each seed: a seed's own shuffle and split, one epoch at a time
    with a checkpoint and a per-epoch test RMSE in the cache (see the module notes)."""

    def __init__(self, ctx: RunContext, folder):
        super().__init__(ctx, SPECS)
        self.o, self.folder, self.reviews = ctx.options, folder, load_reviews(ctx.data_root)
        self.splits: dict[int, SentimentSplit] = {}
        self.curves: dict[tuple[str, int], list] = {}

    def split(self, seed: int) -> SentimentSplit:
        if seed not in self.splits:
            o = self.o
            self.splits[seed] = sentiment_split(self.reviews, seed, o.vocabulary, o.max_length, limit=o.reviews)
        return self.splits[seed]

    def model(self, spec: SentimentMethod, split: SentimentSplit) -> BNN:
        o = self.o
        p = o.p if spec.dropout else 0.0
        net = RecurrentRegressor(split.vocab_size, o.embedding, o.hidden, variant=spec.variant, p_embedding=p,
                                 p_input=p, p_hidden=p, p_output=p)
        prior = weight_decay_prior(net, spec.method, o.weight_decay, len(split.x_train), split.x_train[:2])
        return BNN(net, prior=prior, likelihood=Gaussian())

    def _curve_point(self, posterior: Posterior, split: SentimentSplit) -> float:
        """Test RMSE (rating units) of the current posterior: dropout off, or ``curve_samples`` passes."""
        if self.o.curve_samples > 0:
            mean = posterior.predict(split.x_test, self.o.curve_samples, batch_size=512).predictive_mean
        else:
            with torch.no_grad():
                mean = posterior.point_outputs(split.x_test, batch_size=512).squeeze(-1)
        return float(((split.y_mean + split.y_std * mean - split.rating_test) ** 2).mean().sqrt())

    def fit(self, spec: SentimentMethod, seed: int) -> tuple[Posterior, float]:
        split, o = self.split(seed), self.o
        path = self.folder / f"{spec.name}-seed{seed}"
        curve_path = path.with_suffix(".curve.json")
        curve = read_verified_json(curve_path, CURVE_FORMAT)["curve"] if curve_path.exists() else []
        torch.manual_seed(seed)
        model = self.model(spec, split)
        posterior = None
        for epoch in range(len(curve) + 1, o.epochs + 1):
            posterior = approximate(spec.method, model, (split.x_train, split.y_train), **spec.options,
                                    epochs=epoch, lr=o.lr, batch_size=128, seed=seed, progress=False,
                                    checkpoint=path.with_suffix(".pt"), resume=True)
            done = len(posterior.history.epoch_elbo)
            curve.append({"epoch": done, "test_rmse": self._curve_point(posterior, split),
                          "seconds": round(posterior.history.seconds, 2)})
            write_verified_json(curve_path, {"curve": curve}, CURVE_FORMAT)
            if self.ctx.progress:
                print(f"sentiment {spec.name} seed {seed}: epoch {done}/{o.epochs} test RMSE "
                      f"{curve[-1]['test_rmse']:.4f} ({curve[-1]['seconds']:.0f} s)", flush=True)
        if posterior is None:  # every epoch done before: load the last checkpoint
            posterior = approximate(spec.method, model, (split.x_train, split.y_train), **spec.options,
                                    epochs=o.epochs, lr=o.lr, batch_size=128, seed=seed, progress=False,
                                    checkpoint=path.with_suffix(".pt"), resume=True)
        self.curves[(spec.name, seed)] = curve[:o.epochs]
        return posterior, posterior.history.seconds

    def result(self, spec: SentimentMethod, seed: int) -> dict:
        """The row's final metrics for ``seed`` (computed once, then read from the cache)."""
        path = self.folder / f"{spec.name}-seed{seed}.final-e{self.o.epochs}-T{self.o.samples}.json"
        if path.exists():
            return read_verified_json(path, FINAL_FORMAT)
        posterior, split = self.posterior(spec, seed), self.split(seed)
        torch.manual_seed(seed + 1000)
        start = time.perf_counter()
        prediction = posterior.predict(split.x_test, self.o.samples, batch_size=512)
        prediction = prediction.affine(split.y_mean, split.y_std)
        metrics = regression_metrics(prediction, split.rating_test)
        result = {**metrics, "nll": -metrics["log_likelihood"], "noise_scale": float(prediction.noise.mean()),
                  "train_seconds": round(self.cost[(spec.name, seed)], 1),
                  "predict_seconds": round(time.perf_counter() - start, 1),
                  "curve": self.curves[(spec.name, seed)], "test_chunks": len(split.x_test),
                  "train_chunks": len(split.x_train), "uncertain": uncertain_reviews(prediction, split)}
        write_verified_json(path, result, FINAL_FORMAT)
        return result


def run(ctx: RunContext) -> StudyResult:
    """Options (:class:`~bayesdl.experiments.catalogue.SentimentOptions`): ``rows``, ``seeds``, ``epochs``,
    ``embedding``, ``hidden``, ``samples``, ``curve_samples``, ``reviews``, ``vocabulary``,
    ``max_length``, ``p``, ``weight_decay``, ``lr``."""
    o = ctx.options
    # what changes no row's result stays out of the cache key: a longer or wider run reuses the rows
    recipe = {k: v for k, v in asdict(o).items() if k not in ("rows", "seeds", "epochs", "samples")}
    folder = cache_folder(ctx) / f"sentiment-{config_digest(recipe)}"
    folder.mkdir(parents=True, exist_ok=True)
    lab = SentimentLab(ctx, folder)
    seeds = [ctx.seed + k for k in range(o.seeds)]
    specs = [spec for spec in SPECS if spec.name in o.rows]
    results = {spec.name: {seed: lab.result(spec, seed) for seed in seeds} for spec in specs}
    summary = summarise(results, specs)
    figure = ctx.figure(curve_figure(results, specs, o.epochs), "test_rmse_by_epoch.png")
    config = {"options": asdict(o), "seeds": seeds, "rows": [spec.name for spec in specs], "cache": str(folder)}
    return StudyResult(config, summary, render_report(summary, results, specs, o, figure))
