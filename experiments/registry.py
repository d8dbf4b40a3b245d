"""Running a study: what each receives (:class:`RunContext`), what it returns
(:class:`StudyResult`), and :func:`run_study`, which writes the results atomically."""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import torch

from bayesdl.checks import check_device, check_int
from bayesdl.runtime import retain_freed_memory

from .catalogue import STUDIES, load_study
from .io import RunFolder, check_output_folder, save_figure, write_text

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
    #: the study's options as given on the command line (``--set KEY=VALUE``), as strings
    options: dict[str, str] = field(default_factory=dict)

    def option(self, name: str, default=None, *, parse: Callable = int, minimum: int | None = 1):
        """The study option ``name`` parsed with ``parse`` (and at least ``minimum``, for numbers),
        or ``default`` when it was not given; a bad value raises ``ValueError`` naming it."""
        if name not in self.options:
            return default
        text = self.options[name]
        try:
            value = parse(text)
        except ValueError as error:
            if parse in (int, float):
                raise ValueError(f"option {name}={text!r} is not a valid {parse.__name__}") from None
            raise ValueError(f"option {name}={text!r}: {error}") from None  # the study's parser says why
        if minimum is not None and value < minimum:
            raise ValueError(f"option {name} must be >= {minimum}, got {text!r}")
        return value

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

    ``options`` are the study's own settings (``{key: value}`` as strings, ``--set KEY=VALUE`` on
    the command line; the keys it takes are listed in its catalogue entry and by ``bdl list``):
    e.g. ``dataset`` of ``uci``, ``epochs`` and ``samples`` of the MNIST week-3 studies (a
    reduced run), ``seeds`` of ``active-learning``. The study checks their values first.
    """
    run = load_study(name)  # ValueError for an unknown name
    study = STUDIES[name]
    options = dict(options or {})
    unknown = sorted(set(options) - set(study.options))
    if unknown:
        raise ValueError(f"study {name!r} has no option {unknown}; "
                         f"its options: {list(study.options) or 'none'}")
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
    data_root, cache_dir = settings["data_root"], settings["cache_dir"]
    if device.type == "cpu":
        retain_freed_memory()  # ~15% faster CPU training of convolutional networks; see bayesdl.runtime
    start = time.perf_counter()
    with RunFolder(settings["out"], writer=writer) as folder:
        ctx = RunContext(folder=folder, seed=seed, quick=quick,
                         data_root=Path(data_root) if data_root else None, device=device,
                         progress=settings["progress"], cache_dir=Path(cache_dir) if cache_dir else None,
                         download=settings["download"], options=options)
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
