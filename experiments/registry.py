"""Running a study: what each receives (:class:`RunContext`), what it returns
(:class:`StudyResult`), and :func:`run_study`, which writes the results atomically."""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch

from bayesdl.runtime import retain_freed_memory

from .catalogue import STUDIES, load_study
from .io import RunFolder, save_figure, write_text

__all__ = ["RunContext", "StudyResult", "run_study"]


@dataclass
class RunContext:
    """What a study gets: where to write, the seed, quick mode, data root, device."""

    folder: RunFolder
    seed: int = 0
    quick: bool = False
    data_root: Path | None = None
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))
    progress: bool = True
    cache_dir: Path | None = None
    download: bool = False

    def figure(self, fig, name: str) -> str:
        """Save ``fig`` as ``name`` in the run folder; returns the relative name for the report."""
        save_figure(fig, self.folder.file(name))
        return name


@dataclass
class StudyResult:
    """What a study returns: its configuration, ``{method: {metric: value}}`` and the report."""

    config: dict
    results: dict
    report: str


QUICK_NOTE = (
    "> **Quick mode** (`--quick`): small data, few steps and few posterior draws, to check that the "
    "pipeline runs. The numbers below are not the study's results, and the targets quoted are those of "
    "full runs, which a quick run is not expected to reach; run without `--quick` for them."
)


def _with_quick_note(report: str, quick: bool) -> str:
    """The report with :data:`QUICK_NOTE` under its title when the run was quick."""
    if not quick:
        return report
    title, sep, rest = report.lstrip().partition("\n")
    return f"{title}\n\n{QUICK_NOTE}\n{sep}{rest}" if title.startswith("#") else f"{QUICK_NOTE}\n\n{report}"


def run_study(name: str, out, *, seed: int = 0, quick: bool = False, data_root=None,
              device: str = "cpu", progress: bool = True, cache_dir=None, download: bool = False) -> dict:
    """Run study ``name`` into folder ``out``; returns the metrics written to ``metrics.json``."""
    run = load_study(name)  # ValueError for an unknown name
    study = STUDIES[name]
    device = torch.device(device)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError("--device cuda was asked for, but torch sees no CUDA device; use --device cpu")
    if data_root is None and os.environ.get("BAYESDL_DATA"):
        data_root = os.environ["BAYESDL_DATA"]
    if study.needs_data and data_root is None:
        raise ValueError(
            f"study {name!r} needs datasets: pass --data-root DIR or set BAYESDL_DATA to a "
            "torchvision dataset root (holding MNIST/raw/..., FashionMNIST/raw/..., KMNIST/raw/...)"
        )
    if device.type == "cpu":
        retain_freed_memory()  # ~15% faster CPU training of convolutional networks; see bayesdl.runtime
    start = time.perf_counter()
    with RunFolder(out) as folder:
        ctx = RunContext(folder=folder, seed=seed, quick=quick,
                         data_root=Path(data_root) if data_root else None, device=device,
                         progress=progress, cache_dir=Path(cache_dir) if cache_dir else None,
                         download=download)
        result = run(ctx)
        seconds = time.perf_counter() - start
        config = {"seed": seed, "quick": quick, "device": str(device), **result.config,
                  "wall_time_seconds": round(seconds, 2)}
        report = _with_quick_note(result.report, quick)
        write_text(folder.file("report.md"),
                   report.rstrip() + f"\n\n_Wall time: {seconds:.1f} s (seed {seed}"
                   f"{', quick mode' if quick else ''})._\n")
        folder.metrics(name, config, result.results)
    return {"study": name, "config": config, "results": result.results}
