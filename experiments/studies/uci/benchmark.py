"""The benchmark's units: each (dataset, method spec, split) run by the spec's procedure and saved
to ``folder/<dataset>/<spec name>_<k>.json``; the posteriors of one split from its lab.

A split's file carries a SHA-256 digest of its result (:func:`read_split`): one that is damaged
or edited is reported by a warning, removed and run again; one written before the digests is
used once, with a warning, and rewritten with its digest.
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterable
from pathlib import Path

import torch

from bayesdl._warn import warn
from bayesdl.evaluation import regression_metrics
from bayesdl.inference import Posterior, approximate
from bayesdl.models import BNN, Gaussian

from ...io import read_verified_json, write_verified_json
from ...lab import Lab
from ...methods import MethodSpec, specs_by_name
from ...uci_data import UCIDataset, load_uci, uci_split
from .config import Settings, network
from .specs import UCIMethod, method_specs, validation_scores

__all__ = ["Benchmark", "SplitLab", "read_split", "SPLIT_FORMAT"]

#: the format of a split's result file
SPLIT_FORMAT = "bayesdl-uci-split-1"


def read_split(path) -> dict:
    """The result saved at ``path`` (``<method>_<k>.json``) by :meth:`Benchmark.run`, verified:
    ``ValueError`` naming the file when it does not match its digest (edited, truncated) or is no
    result of split ``k``; ``FileNotFoundError`` when there is none. A file written before the
    digests is accepted once, with a warning, and rewritten with its digest."""
    path = Path(path)
    result = read_verified_json(path, SPLIT_FORMAT, accept_unversioned=True)
    k = path.stem.rsplit("_", 1)[-1]
    if not isinstance(result.get("split"), int) or not k.isdigit() or result["split"] != int(k):
        raise ValueError(f"{path} is not the result of split {k} (it records split {result.get('split')!r})")
    missing = [key for key in ("rmse", "log_likelihood", "seconds") if key not in result]
    if missing:
        raise ValueError(f"{path} is not a split's result: it lacks {missing}")
    return result


class SplitLab(Lab):
    """The posteriors of split ``k`` of ``data``, composed as the registry declares (a method
    around a MAP gets the lab's MAP for the same seed; an ensemble its members from the lab).

    A plain method is fitted on the split's training rows with the network of the methods
    without dropout (:meth:`Benchmark.model`), the spec's options and the benchmark's training
    (:meth:`Benchmark.fit_options`), torch seeded with the seed first. Seeds are the salted seeds
    of the split (:meth:`Benchmark.split_seed`); the lab has no run context, every seed is given.
    """

    def __init__(self, bench: Benchmark, data: UCIDataset, k: int):
        super().__init__(None, bench.specs)
        self.bench, self.data = bench, data
        self.split = uci_split(data, k)
        self.train = (self.split.x_train, self.split.y_train)

    def fit(self, spec: MethodSpec, seed: int) -> tuple[Posterior, float]:
        torch.manual_seed(seed)
        model = self.bench.model(self.data, self.split)
        start = time.perf_counter()
        options = {**self.bench.fit_options(self.data, seed), **spec.options}
        posterior = approximate(spec.method, model, self.train, **options)
        return posterior, time.perf_counter() - start

    def train_data(self, spec: MethodSpec, seed: int):
        return self.train


class Benchmark:
    """Runs (dataset, method, split) units, each saved to ``folder/<dataset>/<method>_<k>.json``.

    ``specs``: the methods it can run (default: :func:`method_specs` of ``settings``), by name in
    :meth:`run`; each unit is ``spec.procedure(bench, spec, data, k)``.
    """

    def __init__(self, root, folder: Path, settings: Settings, seed: int = 0, log=print,
                 specs: Iterable[UCIMethod] | None = None):
        self.root, self.folder, self.s, self.seed, self.log = root, Path(folder), settings, seed, log
        self.specs = method_specs(settings) if specs is None else tuple(specs)
        self._by_name = specs_by_name(self.specs)

    def spec(self, which: UCIMethod | str) -> UCIMethod:
        """``which`` itself, or the benchmark's spec of that name."""
        if isinstance(which, MethodSpec):
            return which
        if which not in self._by_name:
            raise ValueError(f"unknown UCI method {which!r}; choose one of {list(self._by_name)}")
        return self._by_name[which]

    def path(self, dataset: str, method: str, split: int) -> Path:
        return self.folder / dataset / f"{method}_{split:02d}.json"

    def splits_of(self, data: UCIDataset, method: UCIMethod | str | None = None) -> range:
        """The split indices run for ``method``: the first ``splits`` (all by default), or none and
        at most ``max_splits`` as the spec declares (NUTS: on :data:`NUTS_DATASETS`, the first
        ``nuts_splits`` of them)."""
        count = data.num_splits if self.s.splits is None else min(self.s.splits, data.num_splits)
        if method is not None:
            spec = self.spec(method)
            if spec.datasets is not None and data.name not in spec.datasets:
                count = 0
            if spec.max_splits is not None:
                count = min(count, spec.max_splits)
        return range(count)

    def run(self, datasets, methods, splits: range | None = None) -> None:
        """Run every (dataset, method, split) not saved yet; ``methods`` are specs or their names,
        ``splits`` limits the split indices."""
        for name in datasets:
            data = load_uci(name, self.root)
            for spec in map(self.spec, methods):
                for k in self.splits_of(data, spec):
                    if splits is not None and k not in splits:
                        continue
                    path = self.path(name, spec.name, k)
                    if self._saved(path):
                        continue
                    start = time.perf_counter()
                    result = spec.procedure(self, spec, data, k)
                    result["split"] = k
                    result["seconds"] = round(time.perf_counter() - start, 2)
                    write_verified_json(path, result, SPLIT_FORMAT)
                    self.log(f"{name} {spec.name} split {k}: RMSE {result['rmse']:.3f} LL "
                             f"{result['log_likelihood']:.3f} ({result['seconds']:.0f} s)")

    @staticmethod
    def _saved(path: Path) -> bool:
        """Whether ``path`` holds a sound result; a damaged one is reported and removed."""
        if not path.exists():
            return False
        try:
            read_split(path)
            return True
        except ValueError as err:
            warn(f"the UCI split result {path} is damaged and is recomputed: {err}")
            path.unlink()
            return False

    def result(self, dataset: str, method: UCIMethod | str, split: int) -> dict:
        """The saved result of ``method`` on split ``split`` of ``dataset``, verified (:func:`read_split`)."""
        return read_split(self.path(dataset, getattr(method, "name", method), split))

    # --------------------------------------------------------------- what the procedures share
    def lab(self, data: UCIDataset, k: int) -> SplitLab:
        """A fresh lab of split ``k`` of ``data`` (one per unit)."""
        return SplitLab(self, data, k)

    def model(self, data: UCIDataset, split, noise: float | None = None) -> BNN:
        """The network of the methods without dropout, prior ``N(0, 1)`` on normalised data; the
        noise learned (from 0.5), or fixed at ``noise`` (normalised units)."""
        net = network(split.x_train.shape[1], data.n_hidden, 0.0)
        likelihood = Gaussian(scale=None, init_scale=0.5) if noise is None else Gaussian(scale=noise)
        return BNN(net, prior_scale=1.0, likelihood=likelihood)

    def fit_options(self, data: UCIDataset, seed: int) -> dict:
        """``fit`` options: the dataset's epochs, or more where that is fewer than ``min_steps`` steps."""
        epochs = self.s.epochs or data.n_epochs
        if self.s.min_steps:
            steps_per_epoch = math.ceil(len(data.train_indices[0]) / self.s.batch_size)
            epochs = max(epochs, math.ceil(self.s.min_steps / steps_per_epoch))
        return {"epochs": epochs, "lr": self.s.lr, "batch_size": self.s.batch_size, "seed": seed,
                "progress": False}

    def split_seed(self, split: int, salt: int = 0) -> int:
        """The seed of ``salt`` on ``split`` (a spec's ``salts`` say which salt seeds what)."""
        return 1000 * self.seed + 10 * split + salt

    @staticmethod
    def score(posterior, split, num_samples: int, y_raw=None):
        """The prediction at the split's test inputs in original units, and its metrics."""
        prediction = posterior.predict(split.x_test, num_samples=num_samples, batch_size=len(split.x_test))
        prediction = prediction.affine(split.y_mean, split.y_std)
        return prediction, regression_metrics(prediction, split.y_test_raw if y_raw is None else y_raw)

    def validation_scores(self, data: UCIDataset, k: int, shared_tau: bool,
                          method: UCIMethod | str = "dropout") -> dict[tuple[float, float], float]:
        """Validation log-likelihood of every (dropout rate, tau) of the paper's grid on split ``k``,
        with the seeds of the MC dropout spec ``method``.

        ``shared_tau=False`` trains one network per pair, as the paper's code does. ``tau`` enters
        training only through the weight decay ``l^2 (1 - p) / (2 N tau)`` (about 1e-6 here), so
        ``shared_tau=True`` trains one network per rate (at the middle tau) and scores it with each
        tau's noise ``tau^-1/2`` -- a third of the cost.
        """
        return validation_scores(self, self.spec(method), data, k, shared_tau)
