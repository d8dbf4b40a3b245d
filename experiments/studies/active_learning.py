"""Deep Bayesian active learning on MNIST (Gal, Islam & Ghahramani 2017) and BatchBALD
(Kirsch, van Amersfoort & Gal 2019).

The paper's protocol (sec. 5.1; its Keras code), the defaults of ``bdl run active-learning``:

- 20 initial labels balanced over the classes, 100 validation points, both drawn by the seed
  from the 60,000 training images; the rest is the pool;
- the CNN conv 32 4x4 - conv 32 4x4 - max-pool - dropout 0.25 - fc 128 - dropout 0.5 - fc 10
  (:class:`bayesdl.models.DBALCNN`) with MC dropout, retrained from scratch at every step:
  Adam (lr 1e-3), batch 128, 50 epochs, weight decay ``c / N`` with ``c = 3.5`` on fc 128 only
  (the authors' code: a prior on fc 128 with scale ``1 / sqrt(2 c (1 - 0.25))``, the other
  layers learned by maximum likelihood);
- 10 points acquired per step up to 1,000 labels, scored with ``T = 20`` MC dropout samples
  on 2,000 random pool points per step (the authors' code); test error of the network with
  dropout off on the 10,000 test images after every step;
- the five acquisition functions, 3 seeds; BatchBALD against BALD at acquisition size 10.

Options (``--set KEY=VALUE``) shrink it: ``functions`` (comma-separated), ``seeds``, ``epochs``,
``max_labels``, ``candidates`` (``none``: the whole pool), ``num_samples``, ``batchbald``
(true/false), ``num_configurations`` (BatchBALD's), ``test_size`` (``none``: all 10,000;
else a fixed random subset), ``time_budget`` (seconds: stop starting steps after it and report
what finished; ``0`` reports the saved records without running a step). The runs advance in
rounds, one step of every (function, seed) per round, so curves stopped by the budget reach the
same number of labels. Every run's record is saved
after each step in the cache folder (``--cache-dir``), so an interrupted study resumes.
"""

from __future__ import annotations

import dataclasses
import math
import time
from dataclasses import dataclass

import numpy as np
import torch
from torch.utils.data import TensorDataset

from bayesdl.evaluation.plotting import new_figure

from ..active_learning import (
    WEIGHT_DECAY_C,
    ActiveLearning,
    ActiveLearningRecord,
    balanced_initial_indices,
    dbal_model,
)
from ..catalogue import ACQUISITION_FUNCTIONS as FUNCTIONS
from ..data import MNIST_MEAN, MNIST_STD, load_images
from ..io import markdown_table
from ..methods import MethodSpec
from ..registry import RunContext, StudyResult
from ..training import cache_folder, config_digest

LABELS = {"bald": "BALD", "variation_ratios": "Var Ratios", "max_entropy": "Max Entropy",
          "mean_std": "Mean STD", "random": "Random", "batchbald": "BatchBALD"}
#: Gal, Islam & Ghahramani (2017), Table 1: acquired images to reach 10% / 5% test error
PAPER_TABLE_1 = {"bald": (145, 335), "variation_ratios": (120, 295), "max_entropy": (165, 355),
                 "mean_std": (230, 695), "random": (255, 835)}
INITIAL_PER_CLASS, VAL_SIZE, ACQUISITION_SIZE, BATCH_SIZE, LR = 2, 100, 10, 128, 1e-3


@dataclass(frozen=True)
class Settings:
    """The study's options (declared in the catalogue: :class:`ActiveLearningOptions`) and, in
    quick mode, a smaller training pool. Its fields key the saved records: keep them."""

    functions: tuple[str, ...] = FUNCTIONS
    seeds: int = 3
    epochs: int = 50
    max_labels: int = 1000
    candidates: int | None = 2000
    num_samples: int = 20
    batchbald: bool = True
    num_configurations: int = 10_000
    test_size: int | None = None
    time_budget: float | None = None
    train_limit: int | None = None  # quick mode only


def settings(ctx: RunContext) -> Settings:
    """The paper's protocol (the quick preset with ``--quick``), changed by the ``--set`` options."""
    return Settings(**dataclasses.asdict(ctx.options), train_limit=2000 if ctx.quick else None)


def _loop(s: Settings, acquisition: str, seed: int, device) -> ActiveLearning:
    options = {"num_configurations": s.num_configurations} if acquisition == "batchbald" else {}
    method = MethodSpec("dropout", options={"epochs": s.epochs, "lr": LR, "batch_size": BATCH_SIZE, "p": None})
    return ActiveLearning(dbal_model, method=method, acquisition=acquisition,
                          acquisition_size=ACQUISITION_SIZE, max_labels=s.max_labels, candidates=s.candidates,
                          num_samples=s.num_samples, acquisition_options=options, seed=seed, device=device)


def _data(ctx: RunContext, s: Settings, seed: int):
    train = load_images("mnist", ctx.data_root, train=True, download=ctx.download, limit=s.train_limit)
    test = load_images("mnist", ctx.data_root, train=False, download=ctx.download)
    if s.test_size is not None and s.test_size < len(test):
        keep = torch.randperm(len(test), generator=torch.Generator().manual_seed(10_000 + seed))[:s.test_size]
        test = TensorDataset(*(t[keep] for t in test.tensors))
    val_idx = torch.randperm(len(train), generator=torch.Generator().manual_seed(seed))[:VAL_SIZE].tolist()
    initial = balanced_initial_indices(train.tensors[1], INITIAL_PER_CLASS, seed, exclude=val_idx)
    val = TensorDataset(*(t[val_idx] for t in train.tensors))
    return train, test, val, val_idx, initial


def _record_path(ctx, s: Settings, acquisition: str, seed: int):
    key = {"acquisition": acquisition, "seed": seed, **dataclasses.asdict(s)}
    for name in ("functions", "seeds", "batchbald", "time_budget", "max_labels"):
        key.pop(name)  # what does not change the steps of this run; max_labels only extends it
    folder = cache_folder(ctx) / "active-learning"
    folder.mkdir(parents=True, exist_ok=True)
    return folder / f"{acquisition}-seed{seed}-{config_digest(key)}.json"


def run(ctx: RunContext) -> StudyResult:
    s = settings(ctx)
    seeds = [ctx.seed + i for i in range(s.seeds)]
    acquisitions = list(s.functions) + (["batchbald"] if s.batchbald else [])
    runs = []  # (acquisition, seed, loop, record, path, data)
    for seed in seeds:
        data = _data(ctx, s, seed)
        train, _, _, val_idx, initial = data
        for acquisition in acquisitions:
            loop = _loop(s, acquisition, seed, ctx.device)
            path = _record_path(ctx, s, acquisition, seed)
            record = loop.start(train, initial, path, val_idx)
            runs.append((acquisition, seed, loop, record, path, data))

    start = time.perf_counter()
    stopped_by_budget = False
    while not stopped_by_budget and not all(loop.done(record) for _, _, loop, record, _, _ in runs):
        # One round: every unfinished run advances one step (the least advanced first).
        for acquisition, seed, loop, record, path, (train, test, val, val_idx, _) in sorted(
                runs, key=lambda r: len(r[3].labels)):
            if s.time_budget is not None and time.perf_counter() - start > s.time_budget:
                stopped_by_budget = True
                break
            if not loop.done(record):
                loop.step(record, train, test, path, exclude=val_idx, val=val, progress=False)
                if ctx.progress:
                    print(f"active-learning: {acquisition} seed {seed}: {record.labels[-1]} labels, "
                          f"test error {record.test_error[-1]:.4f}", flush=True)

    records = {(a, seed): record for a, seed, _, record, _, _ in runs}
    return _report(ctx, s, seeds, acquisitions, records, runs[0][5][0], stopped_by_budget)


# ---------------------------------------------------------------------- reporting
def _acquired_to_reach(record: ActiveLearningRecord, error: float) -> int | None:
    n = record.labels_to_reach(error)
    return None if n is None else n - len(record.initial)


def _mean_or_none(values):
    return None if any(v is None for v in values) else float(np.mean(values))


def _results(acquisitions, seeds, records) -> dict:
    """Per function: labels to reach 10% / 5% error (mean and per seed), the curves, the cost."""
    results = {}
    for a in acquisitions:
        runs = [records[(a, seed)] for seed in seeds]
        common = min(len(r.labels) for r in runs)
        reached = {f"acquired_to_{int(e * 100)}pct": [_acquired_to_reach(r, e) for r in runs] for e in (0.10, 0.05)}
        results[a] = {
            **{k: _mean_or_none(v) for k, v in reached.items()},
            **{f"{k}_per_seed": v for k, v in reached.items()},
            "labels": [r.labels for r in runs],
            "test_error": [r.test_error for r in runs],
            "val_error": [r.val_error for r in runs],
            "first_acquired": [r.acquired[0] if r.acquired else [] for r in runs],
            # where every seed got to, and the mean error there (seeds stopped apart compare at the same step)
            "final_labels": min((r.labels[-1] if r.labels else 0) for r in runs),
            "final_test_error_mean": float(np.mean([r.test_error[common - 1] for r in runs])) if common else None,
            "train_seconds": float(sum(sec["train"] for r in runs for sec in r.seconds)),
            "acquire_seconds": float(sum(sec.get("acquire", 0.0) for r in runs for sec in r.seconds)),
            "test_seconds": float(sum(sec["test"] for r in runs for sec in r.seconds)),
        }
    return results


def _figures(ctx, s: Settings, seeds, acquisitions, records, train) -> list[str]:
    figures = [_curves(ctx, s, seeds, [a for a in acquisitions if a != "batchbald"], records,
                       "learning_curves.png", "Test error against acquired images (MC dropout CNN)")]
    if "batchbald" in acquisitions and "bald" in acquisitions:
        figures.append(_curves(ctx, s, seeds, ["bald", "batchbald"], records, "batchbald_vs_bald.png",
                               f"BatchBALD vs BALD, {ACQUISITION_SIZE} acquired per step"))
    figures.append(_first_acquired(ctx, acquisitions, records, seeds[0], train))
    return figures


def _cell(value, reached_by):
    return "not reached" + (f" (by {reached_by})" if reached_by else "") if value is None else f"{value:.0f}"


def _tables(s: Settings, results: dict, acquisitions) -> tuple[str, str, str]:
    """The table against the paper, the BatchBALD note, and the cost table."""
    rows = []
    for a in acquisitions:
        r = results[a]
        paper = PAPER_TABLE_1.get(a, (None, None))
        last = r["final_labels"] - INITIAL_PER_CLASS * 10
        rows.append([LABELS[a], _cell(r["acquired_to_10pct"], last), "-" if paper[0] is None else paper[0],
                     _cell(r["acquired_to_5pct"], last), "-" if paper[1] is None else paper[1],
                     f"{100 * r['final_test_error_mean']:.2f}% at {last}" if r["final_test_error_mean"] is not None
                     else "-"])
    table = markdown_table(["function", "10% error: ours", "paper", "5% error: ours", "paper",
                            "final test error (mean) at acquired"], rows)
    batch_note = ""
    if "batchbald" in results and "bald" in results:
        b, d = results["batchbald"], results["bald"]
        batch_note = ("\n\n## BatchBALD vs BALD (acquisition size 10)\n\n" + markdown_table(
            ["function", "acquired to 90% accuracy", "acquired to 95% accuracy"],
            [[LABELS[k], _cell(results[k]["acquired_to_10pct"], results[k]["final_labels"] - INITIAL_PER_CLASS * 10),
              _cell(results[k]["acquired_to_5pct"], results[k]["final_labels"] - INITIAL_PER_CLASS * 10)]
             for k in ("bald", "batchbald")])
            + f"\n\nBALD takes the top 10 BALD scores of each step; BatchBALD picks the 10 greedily by the "
            f"joint mutual information (exact joint entropies up to {s.num_configurations} label "
            f"configurations, then {s.num_configurations} sampled ones). "
            f"Mean test error over the steps both finished: BALD "
            f"{100 * _common_mean(d, b)[0]:.2f}%, BatchBALD {100 * _common_mean(d, b)[1]:.2f}%.")
    cost = markdown_table(
        ["function", "steps run (all seeds)", "training (h)", "scoring and acquiring (h)", "testing (h)"],
        [[LABELS[a], sum(len(r) for r in results[a]["labels"])]
         + [results[a][f"{part}_seconds"] / 3600 for part in ("train", "acquire", "test")] for a in acquisitions],
        ".2f")
    return table, batch_note, cost


def _report(ctx, s: Settings, seeds, acquisitions, records, train, stopped_by_budget) -> StudyResult:
    results = _results(acquisitions, seeds, records)
    figures = _figures(ctx, s, seeds, acquisitions, records, train)
    table, batch_note, cost = _tables(s, results, acquisitions)
    protocol = (f"{len(seeds)} seed(s) {seeds}; {s.epochs} epochs per step; up to {s.max_labels} labels; "
                f"{s.candidates if s.candidates is not None else 'all'} random pool points scored per step "
                f"with T = {s.num_samples}; test on "
                f"{'all 10,000' if s.test_size is None else f'a fixed random {s.test_size}'} test images"
                + (f"; quick mode on the first {s.train_limit} training images" if s.train_limit else ""))
    budget = ""
    if stopped_by_budget:
        budget = ("\n\n**Reported from the saved records (time_budget=0), no step run**" if s.time_budget == 0
                  else f"\n\n**Stopped by the time budget ({s.time_budget:.0f} s)**")
        budget += (f"; not every run has reached {s.max_labels} labels: the table and curves show what finished "
                   "(the last column: where every seed of a function got to). A rerun without the budget resumes "
                   "the runs from their records.")
    total = sum(results[a][f"{part}_seconds"] for a in acquisitions for part in ("train", "acquire", "test"))
    report = (
        "# Deep Bayesian active learning on MNIST\n\n"
        f"Protocol: {protocol}.{budget}\n\n"
        "## Acquired images to reach 10% and 5% test error (paper: Gal et al. 2017, Table 1)\n\n"
        "Acquired images are the labels beyond the 20 initial ones (the 100 validation images are not "
        "counted); ours is the mean over the seeds, 'not reached' when a seed did not get there.\n\n"
        f"{table}{batch_note}\n\n"
        "## Cost\n\nThe time each part took, summed over the steps in the records (whatever invocations ran "
        f"them): {total / 3600:.2f} hours in all.\n\n{cost}\n\n"
        + "\n".join(f"![{name}]({name})" for name in figures) + "\n"
    )
    config = {**dataclasses.asdict(s), "seeds_used": seeds, "acquisition_size": ACQUISITION_SIZE,
              "initial_labels": INITIAL_PER_CLASS * 10, "val_size": VAL_SIZE, "weight_decay_c": WEIGHT_DECAY_C,
              "stopped_by_time_budget": stopped_by_budget, "paper_table_1": PAPER_TABLE_1}
    return StudyResult(config=config, results=results, report=report)


def _common_mean(first: dict, second: dict) -> tuple[float, float]:
    """Mean test errors of two functions over the steps both finished (every seed)."""
    pairs = []
    for e1, e2 in zip(first["test_error"], second["test_error"]):
        n = min(len(e1), len(e2))
        pairs += list(zip(e1[:n], e2[:n]))
    return (float(np.mean([p[0] for p in pairs])), float(np.mean([p[1] for p in pairs]))) if pairs else (math.nan,
                                                                                                       math.nan)


def _curves(ctx, s, seeds, acquisitions, records, name, title) -> str:
    fig, axes = new_figure(size=(6.4, 4.4))
    ax = axes[0, 0]
    top = 0.0
    for a in acquisitions:
        runs = [records[(a, seed)] for seed in seeds]
        steps = min(len(r.labels) for r in runs)
        if steps == 0:
            continue
        acquired = np.array(runs[0].labels[:steps]) - len(runs[0].initial)
        errors = np.array([r.test_error[:steps] for r in runs]) * 100
        top = max(top, float(errors.max()))
        short = runs[0].labels[steps - 1] < s.max_labels  # stopped early: say where the curve ends
        line, = ax.plot(acquired, errors.mean(0), label=LABELS[a] + (f" (to {acquired[-1]})" if short else ""))
        if len(runs) > 1:
            ax.fill_between(acquired, errors.min(0), errors.max(0), color=line.get_color(), alpha=0.2)
    for level in (10, 5):
        ax.axhline(level, color="grey", lw=0.8, ls="--")
    ax.set_xlabel("acquired images (beyond the 20 initial labels)")
    ax.set_ylabel("test error (%)")
    ax.set_ylim(0, min(100.0, max(30.0, 1.05 * top)))
    ax.grid(alpha=0.3)
    ax.legend()
    band = f"mean over {len(seeds)} seeds, band min-max" if len(seeds) > 1 else f"seed {seeds[0]}"
    ax.set_title(f"{title}\n({band})", fontsize="medium")
    return ctx.figure(fig, name)


def _first_acquired(ctx, acquisitions, records, seed, train) -> str:
    """The first images each function asked for (after training on the initial labels)."""
    x, y = train.tensors
    cols = ACQUISITION_SIZE
    fig, axes = new_figure(ncols=cols, nrows=len(acquisitions), size=(1.0, 1.15))
    for r, a in enumerate(acquisitions):
        record = records[(a, seed)]
        first = record.acquired[0] if record.acquired else []
        for c in range(cols):
            ax = axes[r, c]
            ax.set_xticks([])
            ax.set_yticks([])
            if c < len(first):
                index = first[c]
                ax.imshow((x[index, 0] * MNIST_STD + MNIST_MEAN).numpy(), cmap="gray_r", vmin=0, vmax=1)
                ax.set_title(f"label {int(y[index])}", fontsize="x-small")
            if c == 0:
                ax.set_ylabel(LABELS[a], fontsize="small")
    fig.suptitle(f"First {cols} images acquired (seed {seed}, after training on the 20 initial labels)",
                 fontsize="small")
    return ctx.figure(fig, "first_acquired.png")
