"""Running a study: what each receives (:class:`RunContext`), what it returns
(:class:`StudyResult`), and :func:`run_study`, which writes the results atomically."""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch

from bayesdl.checks import check_device, check_int
from bayesdl.runtime import retain_freed_memory

from .catalogue import STUDIES, load_study
from .io import RunFolder, check_output_folder, save_figure, write_text
from .options import NoOptions, StudyOptions

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
    #: the study's options, parsed and checked (its :class:`~bayesdl.experiments.options.StudyOptions`
    #: declared in the catalogue: ``ctx.options.epochs``); the quick preset under ``--quick``
    options: StudyOptions = field(default_factory=NoOptions)

    def figure(self, fig, name: str) -> str:
        """Save ``fig`` as ``name`` in the run folder (rank 0 alone, in a data-parallel run);
        returns the relative name for the report."""
        if self.folder.writer:
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
              device: str = "cpu", progress: bool = True, cache_dir=None, download: bool = False,
              devices: int = 1, num_nodes: int = 1, strategy: str = "ddp",
              precision: str = "32-true", options: dict[str, str] | None = None) -> dict:
    """Run study ``name`` into folder ``out``; returns the metrics written to ``metrics.json``.

    Every argument is checked before any work: a mistake raises ``ValueError`` (or
    ``TypeError``) saying what to change, and leaves nothing on disk. ``out`` must be new, empty,
    or an earlier run's folder, which the new results replace as a whole (see
    :class:`~bayesdl.experiments.io.RunFolder`).

    With ``devices`` processes on each of ``num_nodes`` nodes (or another ``precision``, or under
    ``torchrun``) the study runs on every rank through Lightning
    (:func:`bayesdl.inference.distributed.launch`; ``device`` is then the accelerator, ``cpu`` or
    ``cuda``): its SVI training is data-parallel, its predictions sharded, and rank 0 alone
    writes the results, figures and cached networks.

    ``options`` are the study's own settings (``{key: value}``, as strings like ``--set KEY=VALUE``
    on the command line or as values of the option's type; the keys it takes are declared in its
    catalogue entry and listed by ``bdl list``): e.g. ``dataset`` of ``uci``, ``epochs`` and
    ``samples`` of the MNIST week-3 studies (a reduced run), ``seeds`` of ``active-learning``.
    They are parsed and checked first (:meth:`~bayesdl.experiments.options.StudyOptions.parse`).
    """
    run = load_study(name)  # ValueError for an unknown name
    study = STUDIES[name]
    options = dict(options or {})
    study.options.parse(options, quick, study=name)  # ValueError for an unknown key or a bad value
    seed = check_int(seed, "seed", minimum=0)
    device = check_device(device)
    check_output_folder(out)
    if cache_dir is not None:
        if Path(cache_dir).exists() and not Path(cache_dir).is_dir():
            raise ValueError(f"the cache folder {cache_dir} is an existing file; pass a folder")
        if Path(cache_dir).resolve().is_relative_to(Path(out).resolve()):
            raise ValueError(f"the cache folder {cache_dir} is inside the output folder {out}, which each "
                             "run replaces as a whole; put the cache elsewhere")
    if data_root is None and os.environ.get("BAYESDL_DATA"):
        data_root = os.environ["BAYESDL_DATA"]
    if study.needs_data and data_root is None:
        raise ValueError(
            f"study {name!r} needs datasets: pass --data-root DIR or set BAYESDL_DATA to a "
            "torchvision dataset root (holding MNIST/raw/..., FashionMNIST/raw/..., KMNIST/raw/...)"
        )
    if study.needs_data and not Path(data_root).is_dir():
        raise ValueError(f"the data root {data_root} is not a folder; pass --data-root DIR or set "
                         "BAYESDL_DATA")
    launched = devices != 1 or num_nodes != 1 or precision != "32-true" or "TORCHELASTIC_RUN_ID" in os.environ
    settings = {"name": name, "run": run, "out": out, "seed": seed, "quick": quick, "data_root": data_root,
                "progress": progress, "cache_dir": cache_dir, "download": download, "options": options}
    if not launched:
        return _run(settings, device=device, writer=True, parallel={})
    if device.index is not None:
        raise ValueError(f"--devices picks the devices itself: pass --device {device.type}, not {device}")
    from bayesdl.inference import distributed

    launch = {"devices": devices, "num_nodes": num_nodes, "strategy": strategy, "precision": precision}
    return distributed.launch(_run_on_rank, launch, settings, accelerator=device.type, **launch)


def _run_on_rank(launch: dict, settings: dict) -> dict:
    """One rank's share of a launched study: its device, rank 0 alone writing."""
    from bayesdl.inference import distributed

    fabric = distributed.current()
    parallel = {"distributed": {**launch, "world_size": fabric.world_size}}
    return _run(settings, device=fabric.device, writer=fabric.is_global_zero, parallel=parallel)


def _run(settings: dict, *, device, writer: bool, parallel: dict) -> dict:
    """Run the study in this process: ``settings`` are :func:`run_study`'s checked arguments."""
    name, run, seed, quick, options = (settings[k] for k in ("name", "run", "seed", "quick", "options"))
    parsed = STUDIES[name].options.parse(options, quick, name)
    data_root, cache_dir = settings["data_root"], settings["cache_dir"]
    if device.type == "cpu":
        retain_freed_memory()  # ~15% faster CPU training of convolutional networks; see bayesdl.runtime
    start = time.perf_counter()
    with RunFolder(settings["out"], writer=writer) as folder:
        ctx = RunContext(folder=folder, seed=seed, quick=quick,
                         data_root=Path(data_root) if data_root else None, device=device,
                         progress=settings["progress"], cache_dir=Path(cache_dir) if cache_dir else None,
                         download=settings["download"], options=parsed)
        result = run(ctx)
        seconds = time.perf_counter() - start
        config = {"seed": seed, "quick": quick, "device": str(device), **parallel,
                  **({"options": options} if options else {}), **result.config,
                  "wall_time_seconds": round(seconds, 2)}
        report = _with_quick_note(result.report, quick)
        write_text(folder.file("report.md"),
                   report.rstrip() + f"\n\n_Wall time: {seconds:.1f} s (seed {seed}"
                   f"{', quick mode' if quick else ''})._\n")
        folder.metrics(name, config, result.results)
    return {"study": name, "config": config, "results": result.results}
