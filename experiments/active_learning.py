"""Pool-based active learning with any approximate posterior of the registry.

Four separate parts, as in Baal: the data (a labelled set and a pool over any map-style
``Dataset`` of ``(x, y)`` pairs), the posterior (any method of
:func:`bayesdl.inference.approximate`, retrained from scratch at every step), the acquisition
function (:mod:`bayesdl.evaluation.acquisition`, a pure function of predictive samples) and this
loop, which records what it did::

    >>> loop = ActiveLearning(lambda: BNN(DBALCNN(), prior_scale=0.44), method="dropout",
    ...                       acquisition="bald", acquisition_size=10, max_labels=1000,
    ...                       candidates=2000, num_samples=20,
    ...                       method_options={"epochs": 50, "batch_size": 128})   # doctest: +SKIP
    >>> record = loop.run(train, initial_indices, test, path="runs/bald-0.json")   # doctest: +SKIP
    >>> record.labels, record.test_error                                          # doctest: +SKIP

One step: fit the posterior to the labelled set (a fresh model from ``model_fn``), measure the
test error, score a random subset of ``candidates`` pool points with ``num_samples`` posterior
samples (the paper's code scored 2,000 random pool points per step rather than the whole
pool; ``None`` scores the whole pool), and move the ``acquisition_size`` chosen points from the
pool to the labelled set. The record -- acquired indices and errors of every step -- is written
atomically to ``path`` after each step, with a SHA-256 digest of its content, and a run given an
existing record resumes after its last step (a damaged or edited record is reported by a warning,
removed and recomputed). Every step draws its randomness (initial weights, minibatches,
candidates, random acquisition, BatchBALD's sampled configurations) from seeds derived from
``(seed, step)``, so a resumed run acquires exactly what an uninterrupted one would have.

What the loop is given is checked where it is given: the options at construction (a network
instead of a function returning one, options the method or the acquisition function does not
take, values it would refuse), the data, indices, model and record path at their first use --
before a step trains anything. Data are ``TensorDataset(x, y)``, an ``(x, y)`` pair of tensors, or
any map-style ``torch.utils.data.Dataset`` whose items are ``(x, y)`` pairs (a ``Subset``, an
image folder with a ``ToTensor`` transform): ``y`` the integer class labels. A dataset of another
kind is read once, item by item, and its inputs stacked into one tensor -- it is held in memory
whole (as a ``TensorDataset`` is), ``N x`` the size of one input, so a pool too large for memory
needs a ``Subset`` of it; :meth:`ActiveLearning.run` reads it once per call, :meth:`ActiveLearning.step`
once per step (pass it a ``TensorDataset`` to read nothing). The model is a
:class:`~bayesdl.models.BNN` with a categorical likelihood.

Labels from an oracle: by default the labels of acquired points are those of the dataset
(simulated active learning, as in the paper). ``oracle`` -- ``(indices) -> labels``, called
after each step with the indices it acquired (a person labelling them, as Baal's
``ActiveLearningDataset.label()``) -- gives their labels instead; they replace the dataset's
for every later step, and are stored in the record (``oracle_labels``, ``[index, label]``
pairs; a record without an oracle has no such entry, in the format it always had), so a
resumed run trains on them without asking again. ``run(..., steps=k)`` stops after ``k`` steps
(saved to ``path``: the next call resumes), e.g. to label in sessions.
"""

from __future__ import annotations

import dataclasses
import inspect
import json
import math
import numbers
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
from torch.utils.data import Dataset, Subset, TensorDataset
from torch.utils.data._utils.collate import default_collate

from bayesdl._warn import warn
from bayesdl.checks import as_tensor, check_device, check_int
from bayesdl.evaluation.acquisition import ACQUISITION_FUNCTIONS, acquire, batchbald
from bayesdl.inference import approximate
from bayesdl.models import BNN, DBALCNN, Categorical, bnn_of

from .io import read_verified_json, write_verified_json
from .methods import MethodSpec

__all__ = ["ActiveLearning", "ActiveLearningRecord", "balanced_initial_indices", "dbal_model",
           "WEIGHT_DECAY_C"]

WEIGHT_DECAY_C = 3.5  # Gal, Islam & Ghahramani's code: weight decay c / N on fc 128
#: the format of a saved record (:meth:`ActiveLearningRecord.save`)
RECORD_FORMAT = "bayesdl-active-learning-1"
#: the arguments of an acquisition function that the loop itself passes
_ACQUISITION_ARGUMENTS = ("probs", "batch_size", "generator")


def dbal_model():
    """The CNN of Gal, Islam & Ghahramani (2017) with its weight decay, as a fresh ``BNN``: conv 32
    4x4 - conv 32 4x4 - max-pool - dropout 0.25 - fc 128 - dropout 0.5 - fc 10
    (:class:`bayesdl.models.DBALCNN`), a prior on fc 128 of scale ``1 / sqrt(2 c (1 - 0.25))``
    (their weight decay ``c / N``), the other layers learned by maximum likelihood."""
    prior_scale = 1.0 / math.sqrt(2 * WEIGHT_DECAY_C * (1 - 0.25))
    return BNN(DBALCNN(p_conv=0.25, p_fc=0.5), prior_scale=prior_scale,
               deterministic=("conv1", "conv2", "fc2"))


@dataclass
class ActiveLearningRecord:
    """What an active-learning run did: the ``config`` it ran with, the ``initial`` labelled
    indices and, for every step ``t``, the labelled-set size ``labels[t]``, the test error of
    the posterior trained on it ``test_error[t]`` (and ``val_error[t]`` when a validation set
    is given), the indices ``acquired[t]`` it then asked for (empty at the last step, in the
    order the acquisition ranked them), and the seconds spent training, scoring and testing."""

    config: dict
    initial: list[int]
    labels: list[int] = field(default_factory=list)
    test_error: list[float] = field(default_factory=list)
    val_error: list[float] = field(default_factory=list)
    acquired: list[list[int]] = field(default_factory=list)
    seconds: list[dict] = field(default_factory=list)
    #: ``[index, label]`` pairs given by an oracle (None: none was; then not saved)
    oracle_labels: list[list[int]] | None = None

    @property
    def labelled(self) -> list[int]:
        """Indices labelled after the last recorded step (the initial ones first)."""
        return self.initial + [i for step in self.acquired for i in step]

    def labels_to_reach(self, error: float) -> int | None:
        """The smallest labelled-set size whose test error is at most ``error`` (None: not reached)."""
        return next((n for n, e in zip(self.labels, self.test_error) if e <= error), None)

    @classmethod
    def load(cls, path) -> ActiveLearningRecord:
        """The record saved at ``path``, verified: ``ValueError`` naming the file when it does not
        match its digest (edited, truncated) or is not a consistent record. A record written
        before records carried a digest is accepted once, with a warning, and rewritten with it."""
        content = read_verified_json(path, RECORD_FORMAT, accept_unversioned=True)
        problem = _record_problem(content)
        if problem:
            raise ValueError(f"{path} is not an active-learning record: {problem}")
        return cls(**content)

    def save(self, path) -> None:
        """Write the record atomically to ``path``, with the SHA-256 digest :meth:`load` checks."""
        content = asdict(self)
        if content["oracle_labels"] is None:  # the format of a run without an oracle, unchanged
            del content["oracle_labels"]
        write_verified_json(path, content, RECORD_FORMAT)

    def apply_labels(self, y: torch.Tensor) -> torch.Tensor:
        """The labels ``y`` ``[N]`` with the oracle's (a copy; ``y`` itself when there are none)."""
        if not self.oracle_labels:
            return y
        pairs = torch.tensor(self.oracle_labels, dtype=torch.long)
        y = y.clone()
        y[pairs[:, 0].to(y.device)] = pairs[:, 1].to(y.device, y.dtype)
        return y


def _is_number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _is_index(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def _record_problem(content: dict) -> str | None:
    """What makes ``content`` (a record as saved) no consistent record; None when it is one."""
    names = [f.name for f in dataclasses.fields(ActiveLearningRecord)]
    optional = {"oracle_labels"}
    missing = sorted(set(names) - set(content) - optional)
    unknown = sorted(set(content) - set(names))
    if missing or unknown:
        return f"entries missing: {missing}, unknown: {unknown}"
    kinds = {"config": lambda v: isinstance(v, dict),
             "initial": lambda v: isinstance(v, list) and all(map(_is_index, v)),
             "labels": lambda v: isinstance(v, list) and all(map(_is_index, v)),
             "test_error": lambda v: isinstance(v, list) and all(map(_is_number, v)),
             "val_error": lambda v: isinstance(v, list) and all(map(_is_number, v)),
             "acquired": lambda v: isinstance(v, list) and all(isinstance(a, list) and all(map(_is_index, a))
                                                               for a in v),
             "seconds": lambda v: isinstance(v, list) and all(isinstance(d, dict) for d in v)}
    if "oracle_labels" in content:
        kinds["oracle_labels"] = lambda v: v is None or (isinstance(v, list) and all(
            isinstance(p, list) and len(p) == 2 and all(map(_is_index, p)) for p in v))
    wrong = [name for name, ok in kinds.items() if not ok(content[name])]
    if wrong:
        return f"entries {wrong} are not of the types a record holds"
    steps = [len(content[name]) for name in ("labels", "test_error", "acquired", "seconds")]
    if len(set(steps)) != 1 or len(content["val_error"]) not in (0, steps[0]):
        return (f"labels, test_error, acquired, seconds and val_error have inconsistent lengths "
                f"{[*steps, len(content['val_error'])]}")
    sizes = [len(content["initial"]) + sum(map(len, content["acquired"][:t])) for t in range(steps[0])]
    if content["labels"] != sizes:
        return "labels do not count the initial and acquired indices"
    return None


def balanced_initial_indices(labels: torch.Tensor, per_class: int, seed: int,
                             exclude: Sequence[int] = ()) -> list[int]:
    """``per_class`` random indices of every class of ``labels`` ``[N]`` (the paper's balanced
    initial set: 2 per class, 20 for MNIST), none from ``exclude``; ordered by class."""
    per_class = check_int(per_class, "per_class", minimum=1)
    generator = torch.Generator().manual_seed(seed)
    allowed = torch.ones(len(labels), dtype=torch.bool)
    allowed[list(exclude)] = False
    chosen = []
    for c in torch.unique(labels).tolist():
        members = torch.nonzero((labels == c) & allowed).flatten()
        if len(members) < per_class:
            raise ValueError(f"class {c} has only {len(members)} examples to draw {per_class} from")
        chosen += members[torch.randperm(len(members), generator=generator)[:per_class]].tolist()
    return chosen


def _step_seed(seed: int, step: int, stream: int) -> int:
    """A seed for step ``step`` of run ``seed`` (``stream`` separates the uses within a step)."""
    return (seed * 1_000_003 + step * 7919 + stream) % (2**31 - 1)


@dataclass
class ActiveLearning:
    """An active-learning loop; see the module notes.

    Parameters
    ----------
    model_fn:
        ``() -> BNN``: a fresh model, built at every step (the step's seed is set before).
    method, method_options:
        The method: a :class:`~bayesdl.experiments.methods.MethodSpec` (its ``options``, e.g.
        ``epochs``, ``lr``, ``batch_size``, are the fit's), or the name of a registered method with
        its options in ``method_options``; ``seed``, ``progress`` and ``device`` are set by the loop
        (those of them the method takes: its declared ``run_options``).
    acquisition, acquisition_options:
        A name of :data:`~bayesdl.evaluation.acquisition.ACQUISITION_FUNCTIONS` or
        ``"batchbald"`` (whose options, e.g. ``num_configurations``, go in ``acquisition_options``).
    acquisition_size:
        Points acquired per step.
    max_labels:
        The run stops once the labelled set holds at least this many points (after testing).
    candidates:
        Pool points scored per step, drawn at random (``None``: the whole pool).
    num_samples:
        Posterior samples ``T`` for the acquisition scores.
    test_samples:
        ``None``: test error of the network at the posterior's point estimate (dropout off, as
        the paper's Keras evaluation); an integer: of the MC predictive with that many samples.
    seed:
        The run's seed; each step derives its own from it.
    device, batch_size:
        Where to train (passed to methods that take ``device``; default theirs) and the batch
        size of prediction.

    Everything is checked here, so that a loop that is built runs: ``model_fn`` must be a
    function (a network instance is refused: the loop needs a fresh one at every step), the
    options mappings of JSON values (the record stores them) that the method and the
    acquisition function take (the acquisition function is tried on a toy pool, so its own
    checks of their values run here too).
    """

    model_fn: Callable
    method: str | MethodSpec = "dropout"
    acquisition: str = "bald"
    acquisition_size: int = 10
    max_labels: int = 1000
    candidates: int | None = 2000
    num_samples: int = 20
    test_samples: int | None = None
    method_options: dict = field(default_factory=dict)
    acquisition_options: dict = field(default_factory=dict)
    seed: int = 0
    device: str | torch.device | None = None
    batch_size: int = 1024

    def __post_init__(self):
        if isinstance(self.model_fn, torch.nn.Module):  # a network is callable, but it is one network
            raise TypeError(f"model_fn is a {type(self.model_fn).__name__} instance, but the loop builds a "
                            "fresh network at every step: pass a function returning a fresh BNN, e.g. "
                            "lambda: BNN(...)")
        for name in ("method_options", "acquisition_options"):
            if not isinstance(getattr(self, name), Mapping):
                raise TypeError(f"{name} must be a mapping of option names to values (a dict), got "
                                f"{type(getattr(self, name)).__name__}")
            setattr(self, name, dict(getattr(self, name)))
        if isinstance(self.method, MethodSpec):  # one spec: its method and options
            both = sorted(set(self.method.options) & set(self.method_options))
            if both:
                raise ValueError(f"options {both} are given by both the method spec and method_options")
            self.method_options = {**self.method.options, **self.method_options}
            self.spec = self.method
        else:
            self.spec = MethodSpec(self.method, options=self.method_options)  # ValueError: unknown method
        self.method = self.spec.method
        if self.acquisition not in (*ACQUISITION_FUNCTIONS, "batchbald"):
            raise ValueError(f"unknown acquisition function {self.acquisition!r}; choose one of "
                             f"{sorted([*ACQUISITION_FUNCTIONS, 'batchbald'])}")
        if not callable(self.model_fn):
            raise TypeError("model_fn must be a callable returning a fresh bayesdl.models.BNN")
        check_int(self.acquisition_size, "acquisition_size", minimum=1)
        check_int(self.batch_size, "batch_size", minimum=1)
        check_int(self.max_labels, "max_labels", minimum=1)
        check_int(self.num_samples, "num_samples", minimum=1)
        check_int(self.seed, "seed", minimum=0)
        if self.candidates is not None:
            check_int(self.candidates, "candidates", minimum=self.acquisition_size)
        if self.test_samples is not None:
            check_int(self.test_samples, "test_samples", minimum=1)
        if self.device is not None:
            check_device(self.device)  # kept as given, as the methods take it
        reserved = {"seed", "progress", "device"} & set(self.method_options)
        if reserved:
            raise ValueError(f"method_options may not set {sorted(reserved)}: the loop sets them")
        unknown = sorted(set(self.method_options) - self.spec.info.options)
        if unknown:
            raise TypeError(f"method {self.method!r} takes no option {unknown}; its options: "
                            f"{sorted(self.spec.info.options - {'seed', 'progress', 'device'})}")
        self._check_acquisition_options()
        try:  # the record stores the configuration, to compare it when a run resumes
            json.dumps([self.method_options, self.acquisition_options], allow_nan=False)
        except (TypeError, ValueError) as err:
            raise TypeError("method_options and acquisition_options must hold JSON values (numbers, strings, "
                            f"booleans, None, lists, dicts), which the record stores: {err}") from None

    def _check_acquisition_options(self) -> None:
        """The acquisition options against the function's signature, then the function itself on a
        toy pool: whatever it would refuse after a step's training is refused here."""
        function = batchbald if self.acquisition == "batchbald" else ACQUISITION_FUNCTIONS[self.acquisition]
        parameters = inspect.signature(function).parameters.values()
        takes = {p.name for p in parameters if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)}
        takes -= set(_ACQUISITION_ARGUMENTS)
        loop_sets = sorted(set(self.acquisition_options) & set(_ACQUISITION_ARGUMENTS))
        if loop_sets:
            raise ValueError(f"acquisition_options may not set {loop_sets}: the loop sets them")
        unknown = sorted(set(self.acquisition_options) - takes)
        if unknown:
            raise TypeError(f"acquisition function {self.acquisition!r} takes no option {unknown}; "
                            f"its options: {sorted(takes) or 'none'}")
        toy = torch.tensor([[[0.9, 0.1], [0.5, 0.5]], [[0.2, 0.8], [0.5, 0.5]]])  # 2 passes, 2 points
        options = self.acquisition_options
        try:
            acquire(self.acquisition, toy, 1, generator=torch.Generator().manual_seed(0), **options)
        except (TypeError, ValueError) as err:
            raise type(err)(f"acquisition_options {options} of {self.acquisition!r}: {err}") from None

    def config(self, initial: Sequence[int], exclude: Sequence[int]) -> dict:
        """What determines the run (compared when resuming)."""
        return {"method": self.method, "method_options": dict(self.method_options),
                "acquisition": self.acquisition, "acquisition_options": dict(self.acquisition_options),
                "acquisition_size": self.acquisition_size, "max_labels": self.max_labels,
                "candidates": self.candidates, "num_samples": self.num_samples,
                "test_samples": self.test_samples, "seed": self.seed,
                "initial_size": len(initial), "excluded": len(exclude)}

    # ------------------------------------------------------------------ running
    def start(self, train: Dataset, initial: Sequence[int], path=None,
              exclude: Sequence[int] = ()) -> ActiveLearningRecord:
        """The record to continue: loaded from ``path`` when it exists (its configuration must
        match), else a new one. A record that is damaged (it does not match its digest, or is no
        consistent record) is reported by a warning and removed: the run starts afresh."""
        train = _dataset(train, "train")
        n = len(train)
        initial = _indices(initial, n, "initial")
        exclude = _indices(exclude, n, "exclude")
        path = _record_file(path)
        if not initial:
            raise ValueError("the initial labelled set is empty; pass at least one index")
        if len(set(initial)) != len(initial):
            raise ValueError(f"initial indices must be distinct, got {len(initial)} indices with repeats")
        if set(initial) & set(exclude):
            raise ValueError("an initial index is also in exclude")
        config = json.loads(json.dumps(self.config(initial, exclude)))
        fresh = ActiveLearningRecord(config=config, initial=initial)
        if path is None or not path.exists():
            return fresh
        try:
            record = ActiveLearningRecord.load(path)
        except ValueError as err:
            warn(f"the active-learning record {path} is damaged and is recomputed: {err}")
            path.unlink()
            return fresh
        if ({**record.config, "max_labels": None} != {**config, "max_labels": None}
                or record.initial != initial):
            raise ValueError(f"{path} holds a run with another configuration or initial set; "
                             "use another path or delete it to start afresh")
        _indices(record.labelled, n, f"the indices recorded in {path}")
        _indices([pair[0] for pair in record.oracle_labels or []], n,
                 f"the oracle's indices recorded in {path}")
        return self._resized(record)

    def _resized(self, record: ActiveLearningRecord) -> ActiveLearningRecord:
        """A saved record of the same run with another ``max_labels`` (its steps do not depend on
        it): cut after the first step reaching the new limit, or reopened to go further."""
        if record.config["max_labels"] == self.max_labels:
            return record
        record.config["max_labels"] = self.max_labels
        last = next((t for t, n in enumerate(record.labels) if n >= self.max_labels), None)
        if last is not None:  # cut, in memory (the file keeps the longer run)
            for name in ("labels", "test_error", "acquired", "seconds"):
                del getattr(record, name)[last + 1:]
            del record.val_error[last + 1:]
            record.acquired[-1] = []
        elif record.acquired and not record.acquired[-1]:  # stopped at the old limit: redo that step
            cut = len(record.labels) - 1
            for name in ("labels", "test_error", "val_error", "acquired", "seconds"):
                del getattr(record, name)[cut:]
        return record

    def done(self, record: ActiveLearningRecord) -> bool:
        """Whether the run has reached ``max_labels`` (or emptied the pool)."""
        return bool(record.labels) and not record.acquired[-1]

    def _acquire(self, posterior, x: torch.Tensor, labelled, exclude, t: int) -> list[int]:
        """The indices step ``t`` acquires: the acquisition's top (or batch) among the candidates,
        drawn from the pool (neither labelled nor excluded)."""
        taken = torch.zeros(len(x), dtype=torch.bool)
        taken[labelled] = True
        taken[exclude] = True
        pool = torch.nonzero(~taken).flatten()
        generator = torch.Generator().manual_seed(_step_seed(self.seed, t, 2))
        if self.candidates is not None and len(pool) > self.candidates:
            pool = pool[torch.randperm(len(pool), generator=generator)[:self.candidates]]
        size = min(self.acquisition_size, len(pool))
        if size == 0:
            return []
        torch.manual_seed(_step_seed(self.seed, t, 3))
        probs = posterior.predict(x[pool], num_samples=self.num_samples, batch_size=self.batch_size).probs
        chosen = acquire(self.acquisition, probs.cpu(), size, generator=generator, **self.acquisition_options)
        return pool[chosen].tolist()

    def step(self, record: ActiveLearningRecord, train: Dataset, test: Dataset,
             path=None, exclude: Sequence[int] = (), val: Dataset | None = None,
             progress: bool = False, oracle: Callable[[list[int]], Sequence[int]] | None = None
             ) -> ActiveLearningRecord:
        """Run one step on ``record`` (train, test, acquire), save it to ``path``, return it.

        ``oracle``: ``(acquired indices) -> their labels`` (integer class labels, one per index),
        called once the step has acquired (not at the last step, which acquires nothing); the labels
        go in ``record.oracle_labels`` and replace the dataset's from the next step on. When it
        raises, the step is not recorded (a resumed run redoes it)."""
        if self.done(record):
            return record
        train, test = _dataset(train, "train"), _dataset(test, "test")
        val = None if val is None else _dataset(val, "val")
        t = len(record.labels)
        x, y = train.tensors
        y = record.apply_labels(y)
        exclude = _indices(exclude, len(y), "exclude")
        labelled = _indices(record.labelled, len(y), "the record's labelled")
        path = _record_file(path)
        seconds = {}
        clock = time.perf_counter()
        torch.manual_seed(_step_seed(self.seed, t, 0))
        model = _classifier(self.model_fn())
        offered = {"seed": _step_seed(self.seed, t, 1), "progress": progress, "device": self.device}
        accepted = {k: v for k, v in offered.items() if k in self.spec.info.run_options and v is not None}
        posterior = approximate(self.spec.method, model, (x[labelled], y[labelled]), **accepted,
                                **self.method_options)
        seconds["train"] = time.perf_counter() - clock

        clock = time.perf_counter()
        test_error = self._error(posterior, *test.tensors)
        val_error = self._error(posterior, *val.tensors) if val is not None else None
        seconds["test"] = time.perf_counter() - clock

        acquired: list[int] = []
        if len(labelled) < self.max_labels:
            clock = time.perf_counter()
            acquired = self._acquire(posterior, x, labelled, exclude, t)
            seconds["acquire"] = time.perf_counter() - clock
        if oracle is not None and acquired:
            given = _oracle_labels(oracle, acquired)
            kept = [pair for pair in record.oracle_labels or [] if pair[0] not in set(acquired)]
            record.oracle_labels = kept + [[i, label] for i, label in zip(acquired, given)]
        record.labels.append(len(labelled))
        record.test_error.append(test_error)
        if val_error is not None:
            record.val_error.append(val_error)
        record.acquired.append(acquired)
        record.seconds.append(seconds)
        if path is not None:
            record.save(path)
        return record

    def run(self, train: Dataset, initial: Sequence[int], test: Dataset, path=None,
            exclude: Sequence[int] = (), val: Dataset | None = None,
            progress: bool = False, steps: int | None = None,
            oracle: Callable[[list[int]], Sequence[int]] | None = None) -> ActiveLearningRecord:
        """Run (or resume, from ``path``) until ``max_labels``; returns the record.

        ``train`` is the dataset the labelled set and the pool index (``initial`` is labelled at
        the start; ``exclude``, e.g. a validation split, is never acquired); ``test`` measures
        the error after every step; ``val`` (optional) too. Each is a ``TensorDataset``, an
        ``(x, y)`` pair or any map-style ``Dataset`` of ``(x, y)`` items, read into memory once
        (module notes). ``steps``: run at most this many steps in this call (``None``: until
        done); with a ``path`` the next call resumes where it stopped (:meth:`done` says whether
        the run is over). ``oracle``: labels the acquired points (:meth:`step`).
        """
        if steps is not None:
            steps = check_int(steps, "steps", minimum=0)
        if oracle is not None and not callable(oracle):
            raise TypeError(f"oracle must be a function (indices) -> labels, got {type(oracle).__name__}")
        train, test = _dataset(train, "train"), _dataset(test, "test")
        val = None if val is None else _dataset(val, "val")
        record = self.start(train, initial, path, exclude)
        taken = 0
        while not self.done(record) and (steps is None or taken < steps):
            self.step(record, train, test, path, exclude, val, progress, oracle)
            taken += 1
        return record

    @torch.no_grad()
    def _error(self, posterior, x: torch.Tensor, y: torch.Tensor) -> float:
        """Classification error of ``posterior`` on ``(x, y)``: at its point estimate, or of its
        MC predictive with ``test_samples`` samples."""
        wrong = 0
        if self.test_samples is None:
            for xb, yb in zip(x.split(self.batch_size), y.split(self.batch_size)):
                out = posterior.point_outputs(xb)
                wrong += int((out.argmax(-1).cpu() != yb).sum())
        else:
            for xb, yb in zip(x.split(self.batch_size), y.split(self.batch_size)):
                predictive = posterior.predict(xb, num_samples=self.test_samples).predictive
                wrong += int((predictive.argmax(-1).cpu() != yb).sum())
        return wrong / len(y)


def _materialise(data: Dataset, name: str) -> tuple[torch.Tensor, torch.Tensor]:
    """The inputs and labels of a map-style dataset of ``(x, y)`` items, stacked (read once, item
    by item; a ``Subset`` of a ``TensorDataset`` is indexed directly)."""
    if (isinstance(data, Subset) and isinstance(data.dataset, TensorDataset)
            and len(data.dataset.tensors) == 2):
        index = torch.as_tensor(list(data.indices), dtype=torch.long)
        return tuple(t[index] for t in data.dataset.tensors)
    try:
        n = len(data)
    except TypeError:
        raise TypeError(f"{name} must be a map-style Dataset (with __len__ and __getitem__), a TensorDataset "
                        f"or an (x, y) pair of tensors, got {type(data).__name__} without a length "
                        "(an IterableDataset cannot be indexed by the pool)") from None
    if n == 0:
        raise ValueError(f"{name} is empty; pass at least one example")
    items = []
    for i in range(n):
        item = data[i]
        if not isinstance(item, (tuple, list)) or len(item) != 2:
            raise TypeError(f"{name}[{i}] must be an (x, y) pair, got "
                            + (f"{len(item)} values" if isinstance(item, (tuple, list))
                               else type(item).__name__))
        items.append(item)
    try:
        x, y = default_collate(items)
    except (TypeError, RuntimeError) as err:
        raise TypeError(f"{name}: its items must be (tensor, label) pairs of one shape, which stack into "
                        f"tensors (e.g. images with a ToTensor transform): {err}") from None
    return as_tensor(x, f"{name} x"), as_tensor(y, f"{name} y")


def _dataset(data, name: str) -> TensorDataset:
    """``data`` -- a ``TensorDataset(x, y)``, an ``(x, y)`` pair or a map-style ``Dataset`` of
    ``(x, y)`` items (stacked, :func:`_materialise`) -- as a ``TensorDataset`` whose ``y`` are
    integer class labels ``[N]``; ``TypeError``/``ValueError`` naming ``name`` otherwise."""
    if isinstance(data, TensorDataset):
        if len(data.tensors) != 2:
            raise TypeError(f"{name} must hold two tensors (x, y), got {len(data.tensors)}")
        x, y = data.tensors
    elif isinstance(data, (tuple, list)) and len(data) == 2:
        x, y = as_tensor(data[0], f"{name} x"), as_tensor(data[1], f"{name} y")
    elif isinstance(data, Dataset):
        x, y = _materialise(data, name)
    else:
        raise TypeError(f"{name} must be a TensorDataset or an (x, y) pair of tensors, or a map-style "
                        f"Dataset of (x, y) items, got {type(data).__name__}")
    if x.dim() == 0 or y.dim() == 0 or len(x) != len(y):
        raise ValueError(f"{name}: x and y must have the same length, got shapes {tuple(x.shape)} and "
                         f"{tuple(y.shape)}")
    if len(x) == 0:
        raise ValueError(f"{name} is empty; pass at least one example")
    labels = y.reshape(-1) if y.dim() == 2 and y.shape[1] == 1 else y
    if labels.dim() != 1:
        raise ValueError(f"{name}: y must have shape [N] (class labels), got shape {tuple(y.shape)}")
    if labels.dtype == torch.bool or labels.is_complex() or (labels.is_floating_point() and not bool(
            (torch.isfinite(labels) & (labels == labels.round())).all())):
        raise ValueError(f"{name}: y must be integer class indices, got {labels.dtype} values that are not")
    if int(labels.min()) < 0:
        raise ValueError(f"{name}: y must be class indices >= 0, got {int(labels.min())}")
    labels = labels.long()
    return data if isinstance(data, TensorDataset) and labels is y else TensorDataset(x, labels)


def _oracle_labels(oracle, acquired: list[int]) -> list[int]:
    """The oracle's labels of ``acquired``, checked: one integer class index >= 0 per index."""
    given = oracle(list(acquired))
    if isinstance(given, torch.Tensor):
        given = given.tolist() if given.dim() else [given.item()]
    try:
        given = list(given)
    except TypeError:
        raise TypeError(f"the oracle must return a sequence of labels, got {type(given).__name__}") from None
    if len(given) != len(acquired):
        raise ValueError(f"the oracle returned {len(given)} labels for {len(acquired)} acquired indices")
    labels = []
    for label in given:
        if isinstance(label, float) and label.is_integer():
            label = int(label)
        if isinstance(label, bool) or not isinstance(label, numbers.Integral) or label < 0:
            raise ValueError(f"the oracle must return integer class labels >= 0, got {label!r}")
        labels.append(int(label))
    return labels


def _indices(values, n: int, name: str) -> list[int]:
    """``values`` as a list of integer indices in ``[0, n)``, else ``ValueError`` naming ``name``."""
    if isinstance(values, torch.Tensor):
        values = values.tolist() if values.dim() else [values.item()]
    values = list(values)
    if not all(isinstance(v, numbers.Integral) and not isinstance(v, bool) for v in values):
        raise TypeError(f"{name} indices must be integers")
    bad = [int(v) for v in values if not 0 <= v < n]
    if bad:
        raise ValueError(f"{name} indices must lie in [0, {n}) (the training set), got {bad[:5]}"
                         + ("..." if len(bad) > 5 else ""))
    return [int(v) for v in values]


def _record_file(path) -> Path | None:
    """``path`` as a ``Path`` where a record can be written, else ``ValueError`` saying why not."""
    if path is None:
        return None
    path = Path(path)
    if path.is_dir():
        raise ValueError(f"the record path {path} is a folder; pass the path of a file in it, e.g. "
                         f"{path / 'run.json'}")
    for parent in path.absolute().parents:
        if parent.exists():
            if not parent.is_dir():
                raise ValueError(f"cannot write the record {path}: {parent} is a file")
            break
    return path


def _classifier(model):
    """``model`` if it is a BNN that classifies (a categorical likelihood), else a clear error."""
    bnn = bnn_of(model)
    if bnn is None:
        raise TypeError(f"model_fn must return a bayesdl.models.BNN, got {type(model).__name__}")
    if not isinstance(bnn.likelihood, Categorical):
        raise ValueError("active learning scores the pool by class probabilities, so it needs a BNN with a "
                         "categorical likelihood; model_fn returned one with a "
                         f"{type(bnn.likelihood).__name__} likelihood (a regression or binary model)")
    return model
