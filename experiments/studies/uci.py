"""The UCI regression benchmark (Gal & Ghahramani 2016, Table 1): MC dropout, mean-field VI and
Laplace on nine datasets, with the predictive variance split into aleatoric and epistemic parts.

The paper's setup, from its code (``yaringal/DropoutUncertaintyExps``):

- one hidden layer of 50 ReLU units (protein 100), dropout on the inputs and on the hidden
  layer; inputs and targets normalised on the training rows of each split;
- Adam (lr 1e-3), batch 128, the dataset's ``n_epochs`` -- but at least ``min_steps`` = 2,000
  steps (a deviation: the paper's 40 epochs are 120 steps on yacht, where our network is then
  still untrained, test RMSE 9.6 against the paper's 1.11);
- MC dropout's objective: the squared error plus Gal's weight decay
  ``l^2 (1 - p) / (2 N tau) ||W||^2`` with length-scale ``l = 1e-2``, i.e. the dropout ELBO
  with a fixed noise precision ``tau`` (in the units of the targets) and a Gaussian prior
  whose scale is chosen to give that weight decay (:func:`dropout_prior_scale`);
- the dropout rate ``p`` and ``tau`` chosen on the paper's grids by the log-likelihood on a
  validation part (the last 20%) of each training split (T = 200 passes there); the network is
  then refitted on the whole training split with the chosen pair. By default one network per
  rate serves every tau in the search (:meth:`Benchmark.validation_scores`);
- ``T`` = 10,000 stochastic test passes; test RMSE of the MC mean and test log-likelihood
  ``logsumexp_t ln N(y | y_t, 1 / tau) - ln T``, in the original units.

Mean-field VI (local reparameterization, prior ``N(0, 1)`` on normalised data, learned noise)
and Laplace (full GGN over all weights around a MAP, prior precision and noise scale by the
marginal likelihood, linearised predictive) get the same network without dropout and the same
epochs. Every method is scored by the same functions of its ``RegressionPrediction``.

NUTS is the reference on the smallest set (:data:`NUTS_DATASETS`, the first ``nuts_splits``
splits): the same network and prior as mean-field VI and Laplace, the noise fixed at the value
Laplace's marginal likelihood picks (an empirical-Bayes reference: NUTS samples the weights
only), ``nuts_chains`` chains each started at the MAP of its own seed, so that chains sitting in
different modes show in the R-hat of the predictions (weight-space R-hat says nothing for a
network, whose weights can be permuted).

Each (dataset, method, split) result is written to the study cache (``--cache-dir``, default
``.cache`` beside the output folder; see :func:`split_folder`) as soon as it is done; a rerun
skips the finished ones, so an interrupted run resumes.
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn

from bayesdl.evaluation import new_figure, regression_metrics
from bayesdl.evaluation.regression import COVERAGE_LEVELS
from bayesdl.inference import approximate
from bayesdl.models import BNN, Dropout, Gaussian, NormalPrior, RegressionPrediction

from ..io import markdown_table, write_json
from ..registry import RunContext, StudyResult
from ..training import cache_folder, config_digest
from ..uci_data import UCI_DATASETS, UCIDataset, load_uci, uci_split

#: Gal & Ghahramani 2016, Table 1, MC dropout: (RMSE, its SE, test LL, its SE).
PAPER = {
    "bostonHousing": (2.97, 0.19, -2.46, 0.06),
    "concrete": (5.23, 0.12, -3.04, 0.02),
    "energy": (1.66, 0.04, -1.99, 0.02),
    "kin8nm": (0.10, 0.00, 0.95, 0.01),
    "naval-propulsion-plant": (0.01, 0.00, 3.80, 0.01),
    "power-plant": (4.02, 0.04, -2.80, 0.01),
    "protein-tertiary-structure": (4.36, 0.01, -2.89, 0.00),
    "wine-quality-red": (0.62, 0.01, -0.93, 0.01),
    "yacht": (1.11, 0.09, -1.55, 0.03),
}

METHODS = ("dropout", "mean_field", "laplace", "nuts")
LABELS = {"dropout": "MC dropout", "mean_field": "mean-field VI", "laplace": "Laplace (full GGN)",
          "nuts": "NUTS (reference)"}
#: the method whose numbers the paper reports (its row gets the paper's column and verdicts)
PAPER_METHOD = "dropout"
#: the datasets NUTS runs on (the smallest: 308 rows, 6 inputs)
NUTS_DATASETS = ("yacht",)
#: Gal's prior length-scale in the paper's code.
LENGTHSCALE = 1e-2
#: Sample counts at which the test metrics of MC dropout are also computed (prefixes of the T passes).
T_CHECKS = (10, 100, 1000)


@dataclass(frozen=True)
class Settings:
    """How much of the benchmark to run. ``splits``: the first ``splits`` splits (None: all)."""

    splits: int | None = None
    epochs: int | None = None          # None: the dataset's n_epochs
    test_samples: int = 10_000         # T for MC dropout at test time
    val_samples: int = 200             # T on the validation part (grid search)
    other_samples: int = 1000          # posterior samples of mean-field VI and Laplace
    grid: bool = True                  # False: the middle of each grid, no search
    shared_tau: bool = True            # grid search: one network per dropout rate (see validation_scores)
    grid_splits: int | None = None     # search on the first grid_splits splits only (None: every split)
    min_steps: int = 2000              # at least this many steps (the paper's 40 epochs are 120 on yacht)
    val_fraction: float = 0.2
    batch_size: int = 128
    lr: float = 1e-3
    nuts_splits: int = 3               # NUTS on the first nuts_splits splits of NUTS_DATASETS
    nuts_chains: int = 2
    nuts_warmup: int = 200
    nuts_draws: int = 200              # kept draws per chain
    nuts_max_tree_depth: int = 8       # at most 255 leapfrog steps per draw


def quick_settings() -> Settings:
    return Settings(splits=2, epochs=5, test_samples=200, val_samples=50, other_samples=100, grid=False,
                    min_steps=0, nuts_splits=1, nuts_warmup=10, nuts_draws=10)


def dropout_prior_scale(p: float, y_std: float, lengthscale: float = LENGTHSCALE) -> float:
    """The prior scale ``s`` for which the dropout ELBO with noise precision ``tau`` (targets in
    original units, normalised by ``y_std``) is the paper's loss up to a constant factor.

    Keras loss: ``MSE + l^2 (1 - p) / (2 N tau) ||W||^2`` on normalised targets. The dropout
    ELBO per example with noise ``sigma^2 = 1 / (tau y_std^2)`` (normalised units) and prior
    ``N(0, s^2)`` is ``MSE / (2 sigma^2) + ||W||^2 / (2 N s^2 (1 - p))`` (see ``DropoutGuide``);
    multiplying it by ``2 sigma^2`` and matching the weight decay gives
    ``s^2 = 2 / (l^2 (1 - p)^2 y_std^2)`` -- independent of ``tau``.
    """
    return math.sqrt(2.0) / (lengthscale * (1.0 - p) * y_std)


def _network(d_in: int, hidden: int, p: float) -> nn.Module:
    """The paper's net: dropout on the inputs and on the hidden layer (slots inactive at p = 0)."""
    return nn.Sequential(Dropout(p), nn.Linear(d_in, hidden), nn.ReLU(), Dropout(p), nn.Linear(hidden, 1))


class Benchmark:
    """Runs (dataset, method, split) units, each saved to ``folder/<dataset>/<method>_<k>.json``."""

    def __init__(self, root, folder: Path, settings: Settings, seed: int = 0, log=print):
        self.root, self.folder, self.s, self.seed, self.log = root, Path(folder), settings, seed, log

    def path(self, dataset: str, method: str, split: int) -> Path:
        return self.folder / dataset / f"{method}_{split:02d}.json"

    def splits_of(self, data: UCIDataset, method: str | None = None) -> range:
        """The split indices run for ``method``: the first ``splits`` (all by default); NUTS only
        on :data:`NUTS_DATASETS`, the first ``nuts_splits`` of them."""
        count = data.num_splits if self.s.splits is None else min(self.s.splits, data.num_splits)
        if method == "nuts":
            count = min(count, self.s.nuts_splits) if data.name in NUTS_DATASETS else 0
        return range(count)

    def run(self, datasets, methods, splits: range | None = None) -> None:
        """Run every (dataset, method, split) not saved yet; ``splits`` limits the split indices."""
        for name in datasets:
            data = load_uci(name, self.root)
            for method in methods:
                for k in self.splits_of(data, method):
                    if splits is not None and k not in splits:
                        continue
                    path = self.path(name, method, k)
                    if path.exists():
                        continue
                    start = time.perf_counter()
                    result = getattr(self, f"_{method}")(data, k)
                    result["split"] = k
                    result["seconds"] = round(time.perf_counter() - start, 2)
                    write_json(path, result)
                    self.log(f"{name} {method} split {k}: RMSE {result['rmse']:.3f} LL "
                             f"{result['log_likelihood']:.3f} ({result['seconds']:.0f} s)")

    # --------------------------------------------------------------- helpers
    def _epochs(self, data: UCIDataset) -> int:
        return self.s.epochs or data.n_epochs

    def _fit_options(self, data: UCIDataset, seed: int) -> dict:
        """``fit`` options: the dataset's epochs, or more where that is fewer than ``min_steps`` steps."""
        epochs = self._epochs(data)
        if self.s.min_steps:
            steps_per_epoch = math.ceil(len(data.train_indices[0]) / self.s.batch_size)
            epochs = max(epochs, math.ceil(self.s.min_steps / steps_per_epoch))
        return {"epochs": epochs, "lr": self.s.lr, "batch_size": self.s.batch_size, "seed": seed,
                "progress": False}

    def _seed(self, split: int, salt: int = 0) -> int:
        return 1000 * self.seed + 10 * split + salt

    @staticmethod
    def _score(posterior, split, num_samples: int, y_raw=None):
        """The prediction at the split's test inputs in original units, and its metrics."""
        prediction = posterior.predict(split.x_test, num_samples=num_samples, batch_size=len(split.x_test))
        prediction = prediction.affine(split.y_mean, split.y_std)
        return prediction, regression_metrics(prediction, split.y_test_raw if y_raw is None else y_raw)

    # --------------------------------------------------------------- MC dropout
    def _dropout_fit(self, data: UCIDataset, split, p: float, tau: float, seed: int):
        torch.manual_seed(seed)
        noise = 1.0 / (math.sqrt(tau) * split.y_std)
        model = BNN(_network(split.x_train.shape[1], data.n_hidden, p),
                    prior=NormalPrior(dropout_prior_scale(p, split.y_std)), likelihood=Gaussian(scale=noise))
        return approximate("dropout", model, (split.x_train, split.y_train), p=p,
                           **self._fit_options(data, seed))

    def validation_scores(self, data: UCIDataset, k: int, shared_tau: bool) -> dict[tuple[float, float], float]:
        """Validation log-likelihood of every (dropout rate, tau) of the paper's grid on split ``k``.

        ``shared_tau=False`` trains one network per pair, as the paper's code does. ``tau`` enters
        training only through the weight decay ``l^2 (1 - p) / (2 N tau)`` (about 1e-6 here), so
        ``shared_tau=True`` trains one network per rate (at the middle tau) and scores it with each
        tau's noise ``tau^-1/2`` -- a third of the cost; ``check_shared_tau`` measures the difference.
        """
        train = data.train_indices[k]
        cut = round((1 - self.s.val_fraction) * len(train))
        validation = uci_split(data, k, train_rows=train[:cut], test_rows=train[cut:])
        middle = data.tau_values[len(data.tau_values) // 2]
        scores = {}
        for p in data.dropout_rates:
            fits = {}
            for tau in data.tau_values:
                train_tau = middle if shared_tau else tau
                if train_tau not in fits:
                    posterior = self._dropout_fit(data, validation, p, train_tau, self._seed(k, 1))
                    torch.manual_seed(self._seed(k, 2))
                    fits[train_tau], _ = self._score(posterior, validation, self.s.val_samples)
                fitted = fits[train_tau]
                noisy = RegressionPrediction(fitted.mean, torch.full_like(fitted.noise, tau**-0.5))
                scores[(p, tau)] = float(noisy.log_likelihood(validation.y_test_raw).mean())
        return scores

    def _searched_scores(self, data: UCIDataset) -> dict[tuple[float, float], float]:
        """Mean validation LL of each pair over the saved grid splits (``grid_splits``)."""
        runs = [json.loads(self.path(data.name, "dropout", j).read_text()) for j in range(self.s.grid_splits)]
        keys = runs[0]["validation_log_likelihood"]
        return {key: float(np.mean([r["validation_log_likelihood"][key] for r in runs])) for key in keys}

    def _dropout(self, data: UCIDataset, k: int) -> dict:
        if self.s.grid and (self.s.grid_splits is None or k < self.s.grid_splits):
            scores = self.validation_scores(data, k, self.s.shared_tau)
            p, tau = max(scores, key=scores.get)
        elif self.s.grid:  # the pair chosen on the first grid_splits splits
            for j in range(self.s.grid_splits):
                if not self.path(data.name, "dropout", j).exists():
                    self.run([data.name], ["dropout"], splits=range(j, j + 1))
            searched = self._searched_scores(data)
            p, tau = (float(v.split("=")[1]) for v in max(searched, key=searched.get).split(","))
            scores = {}
        else:
            scores = {}
            p, tau = data.dropout_rates[len(data.dropout_rates) // 2], data.tau_values[len(data.tau_values) // 2]
        split = uci_split(data, k)
        posterior = self._dropout_fit(data, split, p, tau, self._seed(k, 3))
        torch.manual_seed(self._seed(k, 4))
        prediction, metrics = self._score(posterior, split, self.s.test_samples)
        by_t = {}
        for t in T_CHECKS:
            if t < prediction.num_samples:
                sub = type(prediction)(prediction.mean[:t], prediction.noise[:t])
                m = regression_metrics(sub, split.y_test_raw)
                by_t[t] = {"rmse": m["rmse"], "log_likelihood": m["log_likelihood"]}
        return {**metrics, "p": p, "tau": tau,
                "validation_log_likelihood": {f"p={a:g},tau={b:g}": v for (a, b), v in scores.items()},
                "samples": prediction.num_samples, "metrics_at_fewer_samples": by_t}

    # --------------------------------------------------------------- the others
    def _model(self, data: UCIDataset, split) -> BNN:
        return BNN(_network(split.x_train.shape[1], data.n_hidden, 0.0), prior_scale=1.0,
                   likelihood=Gaussian(scale=None, init_scale=0.5))

    def _mean_field(self, data: UCIDataset, k: int) -> dict:
        split = uci_split(data, k)
        torch.manual_seed(self._seed(k, 5))
        posterior = approximate("mean_field", self._model(data, split), (split.x_train, split.y_train),
                                **self._fit_options(data, self._seed(k, 5)))
        torch.manual_seed(self._seed(k, 6))
        prediction, metrics = self._score(posterior, split, self.s.other_samples)
        return {**metrics, "noise_scale": float(prediction.noise.mean()), "samples": prediction.num_samples}

    def _laplace(self, data: UCIDataset, k: int) -> dict:
        split = uci_split(data, k)
        torch.manual_seed(self._seed(k, 7))
        model = self._model(data, split)
        posterior = approximate("laplace", model, (split.x_train, split.y_train), subset="all", structure="full",
                                optimize_noise=True, **self._fit_options(data, self._seed(k, 7)))
        torch.manual_seed(self._seed(k, 8))
        prediction, metrics = self._score(posterior, split, self.s.other_samples)
        return {**metrics, "noise_scale": float(prediction.noise.mean()), "samples": prediction.num_samples}

    def _nuts(self, data: UCIDataset, k: int) -> dict:
        import arviz as az

        split = uci_split(data, k)
        maps = []
        for c in range(self.s.nuts_chains):
            torch.manual_seed(self._seed(k, 9 + c))
            maps.append(approximate("map", self._model(data, split), (split.x_train, split.y_train),
                                    **self._fit_options(data, self._seed(k, 9 + c))))
        laplace = approximate("laplace", maps[0].bnn, (split.x_train, split.y_train), map_posterior=maps[0],
                              subset="all", structure="full", optimize_noise=True)
        noise = float(laplace.predict(split.x_train[:1], num_samples=1).noise.mean())  # normalised units
        model = BNN(_network(split.x_train.shape[1], data.n_hidden, 0.0), prior_scale=1.0,
                    likelihood=Gaussian(scale=noise))
        posterior = approximate("nuts", model, (split.x_train, split.y_train), num_samples=self.s.nuts_draws,
                                warmup_steps=self.s.nuts_warmup, num_chains=self.s.nuts_chains,
                                max_tree_depth=self.s.nuts_max_tree_depth, seed=self._seed(k, 20), progress=False,
                                initial=[m.point_estimate() for m in maps])
        prediction, metrics = self._score(posterior, split, posterior.fixed_draws)
        by_chain = prediction.mean.reshape(self.s.nuts_chains, self.s.nuts_draws, -1).double().numpy()
        functions = az.convert_to_dataset({"f": by_chain})
        draws = posterior.draws(posterior.fixed_draws)
        return {**metrics, "noise_scale": noise * split.y_std, "samples": prediction.num_samples,
                "chains": self.s.nuts_chains, "max_r_hat_predictions": float(az.rhat(functions)["f"].max()),
                "min_ess_bulk_predictions": float(az.ess(functions)["f"].min()),
                "divergences": int(draws.diverging.sum())}


# ------------------------------------------------------------------- summary
def _load(folder: Path, dataset: str, method: str, splits: int | None = None) -> list[dict]:
    """The saved results of ``method`` on ``dataset``: every split, or the first ``splits``."""
    runs = [json.loads(p.read_text()) for p in sorted((folder / dataset).glob(f"{method}_*.json"))]
    return runs if splits is None else [r for r in runs if int(r["split"]) < splits]


def _mean_se(values) -> tuple[float, float]:
    values = np.asarray(values, dtype=float)
    se = values.std(ddof=1) / math.sqrt(len(values)) if len(values) > 1 else float("nan")
    return float(values.mean()), float(se)


def summarise(folder: Path, datasets, methods, splits: int | None = None) -> dict:
    """``{dataset: {method: {metric: mean, metric_se: SE, splits: n, ...}}}`` over the saved splits
    (the first ``splits`` of them, if given: a run asked for fewer splits than the cache holds)."""
    summary = {}
    for name in datasets:
        for method in methods:
            runs = _load(folder, name, method, splits)
            if not runs:
                continue
            entry = {"splits": len(runs), "split_indices": [int(r["split"]) for r in runs],
                     "seconds": round(sum(r["seconds"] for r in runs), 1)}
            for key in ("rmse", "log_likelihood", *[f"coverage_{round(100 * lv)}" for lv in COVERAGE_LEVELS],
                        "aleatoric", "epistemic"):
                entry[key], entry[f"{key}_se"] = _mean_se([r[key] for r in runs])
            if method == "nuts":
                entry["max_r_hat_predictions"] = max(r["max_r_hat_predictions"] for r in runs)
                entry["min_ess_bulk_predictions"] = min(r["min_ess_bulk_predictions"] for r in runs)
                entry["divergences"] = sum(r["divergences"] for r in runs)
            if method == PAPER_METHOD:
                entry["chosen"] = [f"p={r['p']:g},tau={r['tau']:g}" for r in runs]
                fewer = {}
                for t in T_CHECKS:
                    pairs = [(r["metrics_at_fewer_samples"][str(t)], r) for r in runs
                             if str(t) in r.get("metrics_at_fewer_samples", {})]
                    if pairs:
                        fewer[str(t)] = {"log_likelihood": _mean_se([a["log_likelihood"] for a, _ in pairs])[0],
                                    "rmse": _mean_se([a["rmse"] for a, _ in pairs])[0],
                                    "max_abs_ll_change": max(abs(a["log_likelihood"] - r["log_likelihood"])
                                                             for a, r in pairs)}
                entry["metrics_at_fewer_samples"] = fewer
            summary.setdefault(name, {})[method] = entry
    return summary


def _pm(mean, se, fmt=".2f") -> str:
    return f"{mean:{fmt}} +- {se:{fmt}}" if math.isfinite(se) else f"{mean:{fmt}}"


def _tables(summary: dict, methods) -> str:
    rows = []
    for name, by_method in summary.items():
        paper = PAPER[name]
        for method, r in by_method.items():
            fmt = ".3f" if paper[0] < 1 else ".2f"
            verdict = ""
            if method == PAPER_METHOD:
                rmse_ok = r["rmse"] <= paper[0] + max(paper[1], np.nan_to_num(r["rmse_se"]))
                ll_ok = r["log_likelihood"] >= paper[2] - max(paper[3], np.nan_to_num(r["log_likelihood_se"]))
                cov_ok = abs(r["coverage_95"] - 0.95) <= 0.02
                verdict = (f"RMSE {'met' if rmse_ok else 'missed'}, LL {'met' if ll_ok else 'missed'}, "
                           f"95% coverage {'met' if cov_ok else 'missed'}")
            rows.append([name, LABELS[method], f"{r['splits']}", _pm(r["rmse"], r["rmse_se"], fmt),
                         _pm(r["log_likelihood"], r["log_likelihood_se"]),
                         _pm(paper[0], paper[1], fmt) + " / " + _pm(paper[2], paper[3])
                         if method == PAPER_METHOD else "",
                         verdict])
    table = markdown_table(["dataset", "method", "splits", "test RMSE", "test LL", "paper (MC dropout) RMSE / LL",
                            "targets: within one SE (the larger of ours and the paper's) or better; "
                            "95% coverage within 2 points"], rows)
    cov_rows = []
    for name, by_method in summary.items():
        for method, r in by_method.items():
            cov_rows.append([name, LABELS[method]] + [
                _pm(100 * r[f"coverage_{round(100 * lv)}"], 100 * r[f"coverage_{round(100 * lv)}_se"], ".1f")
                for lv in COVERAGE_LEVELS] + [f"{r['aleatoric']:.4g}", f"{r['epistemic']:.4g}",
                                              f"{r['epistemic'] / (r['aleatoric'] + r['epistemic']):.2f}"])
    coverage = markdown_table(["dataset", "method"] + [f"{round(100 * lv)}% interval (%)" for lv in COVERAGE_LEVELS]
                              + ["aleatoric var", "epistemic var", "epistemic share"], cov_rows)
    fewer_rows = []
    for name, by_method in summary.items():
        r = by_method.get(PAPER_METHOD)
        if r and r["metrics_at_fewer_samples"]:
            fewer_at = {int(t): v for t, v in r["metrics_at_fewer_samples"].items()}
            cells = [f"{fewer_at[t]['log_likelihood']:.3f} (max change {fewer_at[t]['max_abs_ll_change']:.3f})"
                     if t in fewer_at else "" for t in T_CHECKS]
            fewer_rows.append([name, *cells, f"{r['log_likelihood']:.3f}"])
    fewer = markdown_table(["dataset", *[f"LL at T = {t}" for t in T_CHECKS], "LL at all T (reported)"],
                           fewer_rows) if fewer_rows else ""
    return table, coverage, fewer


def against_nuts(folder: Path, summary: dict) -> str:
    """Every method on the splits NUTS ran on, beside NUTS: means over those splits only."""
    rows = []
    for name, by_method in summary.items():
        reference = by_method.get("nuts")
        if reference is None:
            continue
        splits = set(reference["split_indices"])
        for method in by_method:
            runs = [r for r in _load(folder, name, method) if int(r["split"]) in splits]
            if len(runs) < len(splits):
                continue
            cells = [float(np.mean([r[key] for r in runs])) for key in ("rmse", "log_likelihood", "coverage_95",
                                                                         "epistemic")]
            rows.append([name, LABELS[method], f"{len(runs)}", f"{cells[0]:.3f}", f"{cells[1]:.3f}",
                         f"{100 * cells[2]:.1f}", f"{cells[3]:.4g}"])
        converged = reference["max_r_hat_predictions"] <= 1.01
        rows.append([name, "NUTS convergence", "", "", "", "",
                     f"max R-hat of the predictions {reference['max_r_hat_predictions']:.3f}, min bulk ESS "
                     f"{reference['min_ess_bulk_predictions']:.0f}, {reference['divergences']} divergences"
                     + ("" if converged else " -- not converged: the chains stay in the modes they started in, "
                        "so this is a mixture of local posteriors, not the exact one")])
    if not rows:
        return ""
    return markdown_table(["dataset", "method", "splits", "test RMSE", "test LL", "95% coverage (%)",
                           "epistemic var"], rows)


def coverage_figure(summary: dict):
    """Observed against nominal coverage of the central predictive intervals, one panel per dataset."""
    names = list(summary)
    cols = min(3, len(names))
    rows = math.ceil(len(names) / cols)
    fig, axes = new_figure(ncols=cols, nrows=rows, size=(3.2, 2.9))
    levels = np.array(COVERAGE_LEVELS)
    colors = {"dropout": "tab:blue", "mean_field": "tab:orange", "laplace": "tab:green", "nuts": "black"}
    lowest = min(r[f"coverage_{round(100 * lv)}"] for by_method in summary.values() for r in by_method.values()
                 for lv in COVERAGE_LEVELS)
    for i, name in enumerate(names):
        ax = axes[i // cols, i % cols]
        ax.plot([0.4, 1.0], [0.4, 1.0], color="gray", lw=0.8, ls="--")
        for method, r in summary[name].items():
            obs = [r[f"coverage_{round(100 * lv)}"] for lv in levels]
            err = [r[f"coverage_{round(100 * lv)}_se"] for lv in levels]
            ax.errorbar(levels, obs, yerr=np.nan_to_num(err), marker="o", ms=4, capsize=2,
                        color=colors.get(method), label=f"{LABELS[method]} ({r['splits']} splits)")
        ax.set_title(name, fontsize="small")
        ax.set_xlim(0.4, 1.0)
        ax.set_ylim(min(0.4, lowest - 0.05), 1.02)  # one scale for all panels, no empty band below
        ax.set_xlabel("nominal coverage", fontsize="x-small")
        ax.set_ylabel("observed coverage", fontsize="x-small")
        ax.legend(fontsize="xx-small", loc="lower right")
    for j in range(len(names), rows * cols):
        axes[j // cols, j % cols].axis("off")
    return fig


def split_folder(ctx: RunContext, settings: Settings) -> Path:
    """Where the finished splits are kept: in the study cache (``--cache-dir``), keyed by the seed
    and every setting that changes a split's result (not ``splits``, how many are run), so a
    rerun -- or a longer run of the same recipe -- resumes from them. Not in the output folder,
    which each run replaces as a whole."""
    recipe = {k: v for k, v in settings.__dict__.items() if k != "splits"}
    return cache_folder(ctx) / f"uci-{'quick' if ctx.quick else 'full'}-{config_digest({'seed': ctx.seed, **recipe})}"


def run(ctx: RunContext) -> StudyResult:
    """Options: ``dataset`` (a name of :data:`UCI_DATASETS` or ``all``, the default; quick mode:
    yacht), ``splits`` (the first ``splits`` splits of each set; default all)."""
    dataset = ctx.option("dataset", "all", parse=str, minimum=None)
    if dataset != "all" and dataset not in UCI_DATASETS:
        raise ValueError(f"unknown UCI dataset {dataset!r}; choose one of {list(UCI_DATASETS)} or 'all'")
    datasets = ("yacht",) if ctx.quick and dataset == "all" else UCI_DATASETS if dataset == "all" else (dataset,)
    settings = quick_settings() if ctx.quick else Settings()
    settings = replace(settings, splits=ctx.option("splits", settings.splits))
    folder = split_folder(ctx, settings)
    bench = Benchmark(ctx.data_root, folder, settings, seed=ctx.seed,
                      log=print if ctx.progress else (lambda *_: None))
    start = time.perf_counter()
    bench.run(datasets, METHODS)
    seconds = time.perf_counter() - start
    summary = summarise(folder, datasets, METHODS, settings.splits)
    figure = ctx.figure(coverage_figure(summary), "coverage.png")
    config = {"datasets": list(datasets), "methods": list(METHODS), "settings": settings.__dict__,
              "lengthscale": LENGTHSCALE, "paper": PAPER}
    return StudyResult(config, summary, render_report(summary, settings, figure, seconds, folder))


def render_report(summary: dict, settings: Settings, figure: str, seconds: float, folder: Path) -> str:
    """The Markdown report of a summary (:func:`summarise`) of the finished splits."""
    table, coverage, fewer = _tables(summary, METHODS)
    reference = against_nuts(folder, summary)
    epochs = settings.epochs or "the dataset's n_epochs (40; protein 20)"
    return f"""# UCI regression benchmark (Gal & Ghahramani 2016, Table 1)

One hidden layer (50 units, protein 100), Adam lr {settings.lr:g}, batch {settings.batch_size},
epochs: {epochs}, but at least {settings.min_steps} steps. MC dropout: dropout rate and tau chosen
on the last {100 * settings.val_fraction:.0f}% of each training split{'' if settings.grid else ' (grid off: middle values)'}
(T = {settings.val_samples}; {'one network per rate scored at every tau' if settings.shared_tau else 'one network per pair'};
{'on every split' if settings.grid_splits is None else f'searched on the first {settings.grid_splits} split(s) only, that pair used on the others'}),
refitted on the whole split, T = {settings.test_samples} test passes. Mean-field VI and Laplace:
{settings.other_samples} posterior samples. Mean +- standard error over the splits finished (ddof 1).

{table}

## Coverage of the central predictive intervals (mean over splits, %), and the variance split

Aleatoric: expected noise variance; epistemic: variance of the sampled means (original units
squared, mean over test points and splits).

{coverage}

![coverage]({figure})

## Against NUTS on {', '.join(NUTS_DATASETS)}

Every method on the splits NUTS ran on ({settings.nuts_chains} chains of {settings.nuts_warmup} warm-up and
{settings.nuts_draws} kept draws, tree depth at most {settings.nuts_max_tree_depth}, each chain from the MAP of its own seed; same network and N(0, 1) prior
as mean-field VI and Laplace, noise fixed at Laplace's marginal-likelihood value). R-hat and ESS are
of the predictive means at the test points (weights are not identifiable).

{reference or '(NUTS did not run on these datasets)'}

## Do fewer than 10,000 test passes matter? (MC dropout, test LL from prefixes of the same passes)

{fewer or '(quick mode: not measured)'}

_Time spent in this invocation on new splits: {seconds:.0f} s (finished splits are reused)._
"""
