"""The methods the benchmark compares, as data (:func:`method_specs`), and how one split of one
dataset is run for each (a spec's ``procedure``).

Every method runs through :func:`fit_and_score` -- its posterior from the split's lab
(:class:`~bayesdl.experiments.studies.uci.benchmark.SplitLab`: fitted with the benchmark's network
and epochs, or composed as the registry declares), scored at the test inputs -- except the two
with procedures of their own: MC dropout's grid search with its own network and prior
(:func:`mc_dropout`), and NUTS from MAP chains with Laplace's noise (:func:`nuts_from_maps`).
Adding a registered method is one :class:`UCIMethod` line in :func:`method_specs`.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from typing import TYPE_CHECKING

import numpy as np
import torch

from bayesdl.evaluation import (
    ConformalRegressor,
    mixture_quantiles,
    regression_metrics,
    required_calibration_size,
    split_conformal_trials,
)
from bayesdl.evaluation.regression import COVERAGE_LEVELS
from bayesdl.inference import approximate
from bayesdl.models import BNN, Gaussian, NormalPrior, RegressionPrediction

from ...methods import MethodSpec
from ...uci_data import UCIDataset, uci_split
from .config import NUTS_DATASETS, T_CHECKS, Settings, dropout_prior_scale, network

if TYPE_CHECKING:
    from .benchmark import Benchmark

__all__ = ["UCIMethod", "method_specs", "fit_and_score", "mc_dropout", "nuts_from_maps", "validation_scores"]


#: conformal scores beside the Bayesian intervals, and the random calibration/test halves of a
#: split's test points they are measured over
CONFORMAL_SCORES, CONFORMAL_TRIALS = ("absolute", "normalized", "cqr"), 100


def conformal_intervals(prediction: RegressionPrediction, y: torch.Tensor, seed: int) -> dict:
    """Split conformal intervals from the split's test predictive at each level of
    :data:`COVERAGE_LEVELS`: ``{score: {"coverage_50": {...}, ...}}`` with the mean coverage and
    width over :data:`CONFORMAL_TRIALS` random halves of the test points (calibration on one half,
    measured on the other; see :func:`bayesdl.evaluation.split_conformal_trials`). The base
    intervals are computed once: the predictive mean and standard deviation (aleatoric plus
    epistemic), and for CQR the mixture's quantiles. A level whose conformal quantile needs more
    calibration points than half the test set holds records why instead."""
    pair = (prediction.predictive_mean, prediction.variance.sqrt())
    results = {score: {} for score in CONFORMAL_SCORES}
    n_cal = len(y) // 2
    for level in COVERAGE_LEVELS:
        alpha, key = 1 - level, f"coverage_{round(100 * level)}"
        if n_cal < required_calibration_size(alpha):
            for score in CONFORMAL_SCORES:
                results[score][key] = {"skipped": f"needs {required_calibration_size(alpha)} calibration points, "
                                                  f"half the test set is {n_cal}"}
            continue
        quantiles = mixture_quantiles(prediction, [alpha / 2, 1 - alpha / 2])
        bases = {"absolute": pair, "normalized": pair, "cqr": (quantiles[0], quantiles[1])}
        for score in CONFORMAL_SCORES:
            results[score][key] = split_conformal_trials(lambda t, score=score, alpha=alpha: ConformalRegressor(
                score, alpha), bases[score], y, trials=CONFORMAL_TRIALS, seed=seed)
    return results


def fit_and_score(bench: Benchmark, spec: UCIMethod, data: UCIDataset, k: int) -> dict:
    """One split of a method with no procedure of its own: the split lab's posterior of ``spec``
    for the seed of salt ``fit`` (a plain method is fitted on the split; one declared around a MAP,
    or an ensemble, is composed by the lab), then ``samples`` predictions at the test inputs after
    seeding torch with salt ``predict``."""
    lab = bench.lab(data, k)
    posterior = lab.posterior(spec, bench.split_seed(k, spec.salts["fit"]))
    torch.manual_seed(bench.split_seed(k, spec.salts["predict"]))
    prediction, metrics = bench.score(posterior, lab.split, spec.samples or bench.s.other_samples)
    return {**metrics, "noise_scale": float(prediction.noise.mean()), "samples": prediction.num_samples,
            "conformal": conformal_intervals(prediction, lab.split.y_test_raw, bench.split_seed(k))}


@dataclass(frozen=True)
class UCIMethod(MethodSpec):
    """A method as the benchmark runs it: a :class:`MethodSpec` and what is the benchmark's own.

    ``salts``: the salts of the seeds it draws on split ``k`` (:meth:`Benchmark.split_seed`), by
    what they seed (for :func:`fit_and_score`: ``fit`` and ``predict``); ``samples``: posterior
    samples at the test inputs (None: ``Settings.other_samples``); ``datasets``: the only datasets
    it runs on (None: all), on their first ``max_splits`` splits at most (None: as many as the
    others); ``paper``: the row the paper reports (the paper's column, the verdicts and the
    fewer-passes table of the report); ``reference``: the row every method is compared with on
    the splits it ran on; ``color``: its colour on the figure (None: the next of matplotlib's);
    ``procedure(bench, spec, data, k) -> result``: how one split is run.
    """

    salts: dict[str, int] = field(default_factory=dict)
    samples: int | None = None
    datasets: tuple[str, ...] | None = None
    max_splits: int | None = None
    paper: bool = False
    reference: bool = False
    color: str | None = None
    procedure: Callable[..., dict] = fit_and_score


def method_specs(s: Settings) -> tuple[UCIMethod, ...]:
    """The benchmark's rows, in order, with what they take from the settings ``s``."""
    return (
        UCIMethod("dropout", salts={"search_fit": 1, "search_predict": 2, "fit": 3, "predict": 4},
                  samples=s.test_samples, paper=True, color="tab:blue", procedure=mc_dropout),
        UCIMethod("mean_field", salts={"fit": 5, "predict": 6}, samples=s.other_samples, color="tab:orange"),
        UCIMethod("laplace", options={"subset": "all", "structure": "full", "optimize_noise": True},
                  label="Laplace (full GGN)", salts={"fit": 7, "predict": 8}, samples=s.other_samples,
                  color="tab:green"),
        UCIMethod("nuts", options={"num_samples": s.nuts_draws, "warmup_steps": s.nuts_warmup,
                                   "num_chains": s.nuts_chains, "max_tree_depth": s.nuts_max_tree_depth,
                                   "progress": False},
                  label="NUTS (reference)", salts={"maps": 9, "nuts": 20}, datasets=NUTS_DATASETS,
                  max_splits=s.nuts_splits, reference=True, color="black",
                  procedure=partial(nuts_from_maps, noise_of="laplace")),
    )


# --------------------------------------------------------------- MC dropout (the paper's procedure)
def dropout_fit(bench: Benchmark, spec: UCIMethod, data: UCIDataset, split, p: float, tau: float, seed: int):
    """MC dropout at rate ``p`` on ``split``: noise ``tau^-1/2`` (original units) and Gal's prior."""
    torch.manual_seed(seed)
    noise = 1.0 / (math.sqrt(tau) * split.y_std)
    model = BNN(network(split.x_train.shape[1], data.n_hidden, p),
                prior=NormalPrior(dropout_prior_scale(p, split.y_std)), likelihood=Gaussian(scale=noise))
    options = {**bench.fit_options(data, seed), **spec.options, "p": p}
    return approximate(spec.method, model, (split.x_train, split.y_train), **options)


def validation_scores(bench: Benchmark, spec: UCIMethod, data: UCIDataset, k: int,
                      shared_tau: bool) -> dict[tuple[float, float], float]:
    """Validation log-likelihood of every (dropout rate, tau) of the paper's grid on split ``k``
    (see :meth:`Benchmark.validation_scores`); seeds of salts ``search_fit`` and ``search_predict``."""
    train = data.train_indices[k]
    cut = round((1 - bench.s.val_fraction) * len(train))
    validation = uci_split(data, k, train_rows=train[:cut], test_rows=train[cut:])
    middle = data.tau_values[len(data.tau_values) // 2]
    scores = {}
    for p in data.dropout_rates:
        fits = {}
        for tau in data.tau_values:
            train_tau = middle if shared_tau else tau
            if train_tau not in fits:
                posterior = dropout_fit(bench, spec, data, validation, p, train_tau,
                                        bench.split_seed(k, spec.salts["search_fit"]))
                torch.manual_seed(bench.split_seed(k, spec.salts["search_predict"]))
                fits[train_tau], _ = bench.score(posterior, validation, bench.s.val_samples)
            fitted = fits[train_tau]
            noisy = RegressionPrediction(fitted.mean, torch.full_like(fitted.noise, tau**-0.5))
            scores[(p, tau)] = float(noisy.log_likelihood(validation.y_test_raw).mean())
    return scores


def _searched_pair(bench: Benchmark, spec: UCIMethod, data: UCIDataset) -> tuple[float, float]:
    """The pair of the best mean validation LL over the first ``grid_splits`` splits (running
    those not saved yet, and repairing a damaged one: ``Benchmark.run`` verifies what it skips)."""
    for j in range(bench.s.grid_splits):
        bench.run([data.name], [spec], splits=range(j, j + 1))
    runs = [bench.result(data.name, spec, j) for j in range(bench.s.grid_splits)]
    keys = runs[0]["validation_log_likelihood"]
    searched = {key: float(np.mean([r["validation_log_likelihood"][key] for r in runs])) for key in keys}
    p, tau = (float(v.split("=")[1]) for v in max(searched, key=searched.get).split(","))
    return p, tau


def _at_fewer_samples(prediction: RegressionPrediction, y: torch.Tensor) -> dict[int, dict[str, float]]:
    """Test RMSE and LL from the first ``t`` of the passes, for each ``t`` of :data:`T_CHECKS` below their number."""
    by_t = {}
    for t in T_CHECKS:
        if t < prediction.num_samples:
            sub = type(prediction)(prediction.mean[:t], prediction.noise[:t])
            m = regression_metrics(sub, y)
            by_t[t] = {"rmse": m["rmse"], "log_likelihood": m["log_likelihood"]}
    return by_t


def mc_dropout(bench: Benchmark, spec: UCIMethod, data: UCIDataset, k: int) -> dict:
    """One split of MC dropout as the paper runs it: the pair (p, tau) of the best validation LL
    (searched on this split, or the pair of the first ``grid_splits``, or the middle of the grids
    when the grid is off), refitted on the whole training split, ``samples`` test passes."""
    s, scores = bench.s, {}
    if s.grid and (s.grid_splits is None or k < s.grid_splits):
        scores = validation_scores(bench, spec, data, k, s.shared_tau)
        p, tau = max(scores, key=scores.get)
    elif s.grid:  # the pair chosen on the first grid_splits splits
        p, tau = _searched_pair(bench, spec, data)
    else:
        p, tau = data.dropout_rates[len(data.dropout_rates) // 2], data.tau_values[len(data.tau_values) // 2]
    split = uci_split(data, k)
    posterior = dropout_fit(bench, spec, data, split, p, tau, bench.split_seed(k, spec.salts["fit"]))
    torch.manual_seed(bench.split_seed(k, spec.salts["predict"]))
    prediction, metrics = bench.score(posterior, split, spec.samples)
    return {**metrics, "p": p, "tau": tau,
            "validation_log_likelihood": {f"p={a:g},tau={b:g}": v for (a, b), v in scores.items()},
            "samples": prediction.num_samples,
            "metrics_at_fewer_samples": _at_fewer_samples(prediction, split.y_test_raw),
            "conformal": conformal_intervals(prediction, split.y_test_raw, bench.split_seed(k))}


# --------------------------------------------------------------- NUTS (the reference)
def nuts_from_maps(bench: Benchmark, spec: UCIMethod, data: UCIDataset, k: int, *, noise_of: str) -> dict:
    """One split of NUTS: ``num_chains`` chains, chain ``c`` started at the lab's ``spec.around``
    (the MAP) for the seed of salt ``maps + c``; the network of the others with the noise fixed at
    the value of the lab's spec ``noise_of`` (Laplace's marginal likelihood) around the first
    chain's MAP; the sampler's seed of salt ``nuts``. R-hat and ESS of the predictive means."""
    import arviz as az

    lab = bench.lab(data, k)
    chains, draws = spec.options["num_chains"], spec.options["num_samples"]
    seeds = [bench.split_seed(k, spec.salts["maps"] + c) for c in range(chains)]
    maps = [lab.posterior(spec.around, seed) for seed in seeds]
    around_first = lab.posterior(noise_of, seeds[0])
    noise = float(around_first.predict(lab.split.x_train[:1], num_samples=1).noise.mean())  # normalised units
    posterior = approximate(spec.method, bench.model(data, lab.split, noise=noise), lab.train, **spec.options,
                            seed=bench.split_seed(k, spec.salts["nuts"]), initial=[m.point_estimate() for m in maps])
    prediction, metrics = bench.score(posterior, lab.split, posterior.fixed_draws)
    by_chain = prediction.mean.reshape(chains, draws, -1).double().numpy()
    functions = az.convert_to_dataset({"f": by_chain})
    diverging = posterior.draws(posterior.fixed_draws).diverging
    return {**metrics, "noise_scale": noise * lab.split.y_std, "samples": prediction.num_samples,
            "chains": chains, "max_r_hat_predictions": float(az.rhat(functions)["f"].max()),
            "min_ess_bulk_predictions": float(az.ess(functions)["f"].min()),
            "divergences": int(diverging.sum()),
            "conformal": conformal_intervals(prediction, lab.split.y_test_raw, bench.split_seed(k))}
