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

The package: :mod:`.config` (the paper's numbers, :class:`Settings`), :mod:`.specs` (the methods
as data -- :func:`method_specs` -- and the procedures of MC dropout and NUTS), :mod:`.benchmark`
(the units, and the lab of one split), :mod:`.report` (summary, tables, figure, report).
"""

from __future__ import annotations

import time
from dataclasses import replace
from pathlib import Path

from ...registry import RunContext, StudyResult
from ...training import cache_folder, config_digest
from ...uci_data import UCI_DATASETS
from .benchmark import Benchmark, SplitLab
from .config import LENGTHSCALE, NUTS_DATASETS, PAPER, T_CHECKS, Settings, dropout_prior_scale, quick_settings
from .report import coverage_figure, render_report, summarise
from .specs import UCIMethod, method_specs

__all__ = ["run", "Benchmark", "SplitLab", "Settings", "UCIMethod", "method_specs", "quick_settings",
           "dropout_prior_scale", "summarise", "render_report", "coverage_figure", "split_folder", "PAPER",
           "NUTS_DATASETS", "LENGTHSCALE", "T_CHECKS"]


def split_folder(ctx: RunContext, settings: Settings) -> Path:
    """Where the finished splits are kept: in the study cache (``--cache-dir``), keyed by the seed
    and every setting that changes a split's result (not ``splits``, how many are run), so a
    rerun -- or a longer run of the same recipe -- resumes from them. Not in the output folder,
    which each run replaces as a whole."""
    recipe = {k: v for k, v in settings.__dict__.items() if k != "splits"}
    return cache_folder(ctx) / f"uci-{'quick' if ctx.quick else 'full'}-{config_digest({'seed': ctx.seed, **recipe})}"


def run(ctx: RunContext) -> StudyResult:
    """Options (:class:`~bayesdl.experiments.catalogue.UCIOptions`): ``dataset`` (a name of
    :data:`UCI_DATASETS` or ``all``, the default; quick mode: yacht), ``splits`` (the first
    ``splits`` splits of each set; default all, quick 2)."""
    dataset = ctx.options.dataset
    datasets = ("yacht",) if ctx.quick and dataset == "all" else UCI_DATASETS if dataset == "all" else (dataset,)
    settings = replace(quick_settings() if ctx.quick else Settings(), splits=ctx.options.splits)
    folder = split_folder(ctx, settings)
    bench = Benchmark(ctx.data_root, folder, settings, seed=ctx.seed,
                      log=print if ctx.progress else (lambda *_: None))
    start = time.perf_counter()
    bench.run(datasets, bench.specs)
    seconds = time.perf_counter() - start
    summary = summarise(folder, datasets, bench.specs, settings.splits)
    figure = ctx.figure(coverage_figure(summary, bench.specs), "coverage.png")
    config = {"datasets": list(datasets), "methods": [spec.name for spec in bench.specs],
              "settings": settings.__dict__, "lengthscale": LENGTHSCALE, "paper": PAPER}
    return StudyResult(config, summary, render_report(summary, settings, figure, seconds, folder, bench.specs))
