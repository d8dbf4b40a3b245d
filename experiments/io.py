"""Writing a study's results: ``metrics.json`` (shared schema), figures, ``report.md``.

A run writes into a hidden staging folder inside the output folder and moves each file into
place only when the study has finished, ``metrics.json`` last; every move is an atomic
rename. An interrupted run therefore leaves the previous results untouched and no
half-written file behind.

``metrics.json`` schema, shared by every study::

    {"study": str, "config": {...}, "results": {method: {metric: value}}, "versions": {...}}
"""

from __future__ import annotations

import json
import math
import platform
import shutil
import tempfile
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

import numpy as np
import torch

from bayesdl.atomic import atomic_path

__all__ = ["to_jsonable", "write_json", "write_text", "save_figure", "versions", "RunFolder",
           "SCHEMA_KEYS", "markdown_table"]

SCHEMA_KEYS = ("study", "config", "results", "versions")


def to_jsonable(value):
    """Tensors, numpy values and paths as plain JSON types; NaN/Inf become None."""
    if isinstance(value, dict):
        return {str(k): to_jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [to_jsonable(v) for v in value]
    if isinstance(value, torch.Tensor):
        return to_jsonable(value.detach().cpu().tolist() if value.dim() else value.item())
    if isinstance(value, np.ndarray):
        return to_jsonable(value.tolist())
    if isinstance(value, np.generic):
        return to_jsonable(value.item())
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, Path):
        return str(value)
    return value


def markdown_table(headers: list[str], rows: list[list], floatfmt: str = ".3f") -> str:
    """A GitHub-flavoured Markdown table; floats formatted with ``floatfmt``."""
    def cell(value):
        return format(value, floatfmt) if isinstance(value, float) else str(value)

    lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    lines += ["| " + " | ".join(cell(v) for v in row) + " |" for row in rows]
    return "\n".join(lines)


def write_json(path, obj) -> None:
    """Write ``obj`` as indented JSON, atomically."""
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(to_jsonable(obj), indent=2, sort_keys=False) + "\n")


def write_text(path, text: str) -> None:
    """Write ``text`` atomically."""
    with atomic_path(path) as tmp:
        tmp.write_text(text)


def save_figure(fig, path, dpi: int = 130) -> Path:
    """Save a matplotlib figure atomically (format from the suffix); returns the path."""
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=dpi)
    return Path(path)


def versions() -> dict[str, str]:
    """Versions of Python and of the packages a result depends on."""
    found = {"python": platform.python_version()}
    for name in ("bayesdl", "torch", "torchvision", "pyro-ppl", "numpy", "arviz", "scikit-learn",
                 "matplotlib", "lightning"):
        try:
            found[name] = version(name)
        except PackageNotFoundError:
            found[name] = "not installed"
    return found


class RunFolder:
    """The output folder of one run, written through a staging folder.

    Use as a context manager: files go to ``self.path`` (the staging folder) while the study
    runs; on success they are moved into ``final`` (``metrics.json`` last), on failure the
    staging folder is removed and ``final`` is left as it was.

    ``writer=False`` (every rank but 0 of a data-parallel run) stages into a private temporary
    folder that is discarded: ``final`` is never touched, so the results are written once.
    """

    def __init__(self, final, writer: bool = True):
        self.final = Path(final)
        self.writer = writer

    def __enter__(self) -> RunFolder:
        if not self.writer:
            self.path = Path(tempfile.mkdtemp(prefix="bayesdl-rank-"))
            return self
        self.final.mkdir(parents=True, exist_ok=True)
        for stale in self.final.glob(".staging-*"):  # left by a run that was killed
            shutil.rmtree(stale, ignore_errors=True)
        self.path = Path(tempfile.mkdtemp(prefix=".staging-", dir=self.final))
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        try:
            if exc_type is None and self.writer:
                files = sorted(p for p in self.path.rglob("*") if p.is_file())
                files.sort(key=lambda p: p.name == "metrics.json")
                for src in files:
                    dest = self.final / src.relative_to(self.path)
                    dest.parent.mkdir(parents=True, exist_ok=True)
                    src.replace(dest)
        finally:
            shutil.rmtree(self.path, ignore_errors=True)

    def file(self, name: str) -> Path:
        """Path of ``name`` inside the staging folder."""
        path = self.path / name
        path.parent.mkdir(parents=True, exist_ok=True)
        return path

    def metrics(self, study: str, config: dict, results: dict) -> None:
        """Write ``metrics.json`` with the shared schema."""
        write_json(self.file("metrics.json"), {"study": study, "config": config,
                                               "results": results, "versions": versions()})
