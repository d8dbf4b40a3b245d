"""Writing a study's results: ``metrics.json`` (shared schema), figures, ``report.md``.

A run writes into a hidden staging folder beside the output folder and, when the study has
finished, lists every file with its SHA-256 in ``manifest.json`` and swaps the staging folder
in for the output folder in one atomic step (:class:`RunFolder`). An interrupted or killed run
therefore leaves the previous results untouched, and the output folder never mixes two runs;
``bdl diagnose`` checks the files against the manifest (:func:`verify_run_folder`).

The JSON entries of the study caches (active-learning records, UCI per-split results) carry a
SHA-256 digest of their content (:func:`write_verified_json`), checked whenever they are read
(:func:`read_verified_json`): an edited, truncated or otherwise damaged entry is a
``ValueError`` naming the file, which the study reports, removes and recomputes.

``metrics.json`` schema, shared by every study::

    {"study": str, "config": {...}, "results": {method: {metric: value}}, "versions": {...}}
"""

from __future__ import annotations

import ctypes
import errno
import hashlib
import json
import math
import os
import platform
import shutil
import sys
import tempfile
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

import numpy as np
import torch

from bayesdl._warn import warn
from bayesdl.atomic import atomic_path, file_lock, try_lock, umask_mode

__all__ = ["to_jsonable", "write_json", "write_text", "save_figure", "versions", "RunFolder",
           "SCHEMA_KEYS", "markdown_table", "MANIFEST", "check_output_folder", "is_run_folder",
           "verify_run_folder", "sha256_of", "write_verified_json", "read_verified_json"]

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


#: the keys a verified JSON file adds to its content (:func:`write_verified_json`)
_VERIFIED_KEYS = ("format", "sha256")


def _content_digest(format: str, content: dict) -> str:
    """SHA-256 of ``content`` (JSON types) and its ``format``, independent of key order and layout."""
    canonical = json.dumps({"format": format, "content": content}, sort_keys=True, separators=(",", ":"),
                           ensure_ascii=False, allow_nan=False)
    return hashlib.sha256(canonical.encode()).hexdigest()


def write_verified_json(path, content: dict, format: str) -> None:
    """Write the dict ``content`` as indented JSON, atomically, with its ``format`` and the SHA-256
    of both (keys ``format`` and ``sha256`` beside the content's own, so the file still reads as
    the plain result it is); :func:`read_verified_json` checks them."""
    if not isinstance(content, dict):
        raise TypeError(f"a verified JSON file holds a dict, got {type(content).__name__}")
    content = to_jsonable(content)
    reserved = sorted(set(content) & set(_VERIFIED_KEYS))
    if reserved:
        raise ValueError(f"the keys {reserved} are reserved for the format and digest of a verified "
                         "JSON file")
    write_json(path, {"format": format, "sha256": _content_digest(format, content), **content})


def read_verified_json(path, format: str, *, accept_unversioned: bool = False) -> dict:
    """The content of a file of :func:`write_verified_json` of this ``format``, verified.

    Raises ``ValueError`` naming the file when it is not readable JSON (truncated, not text), not
    a ``format`` file, or its content does not match its digest (edited, damaged);
    ``FileNotFoundError`` when there is none. A file written before digests (a plain JSON dict,
    neither ``format`` nor ``sha256``) cannot be verified: refused, or with
    ``accept_unversioned`` accepted once with a warning and rewritten with its digest.
    """
    path = Path(path)
    if path.is_dir():
        raise ValueError(f"{path} is a folder, not a {format} file")
    try:
        stored = json.loads(path.read_bytes().decode("utf-8"))
    except FileNotFoundError:
        raise
    except (UnicodeDecodeError, ValueError) as err:
        raise ValueError(f"{path} is not valid JSON ({type(err).__name__}: {err}); it was truncated or "
                         "damaged after it was written") from None
    if not isinstance(stored, dict):
        raise ValueError(f"{path} holds a JSON {type(stored).__name__}, not a {format} file")
    if not any(key in stored for key in _VERIFIED_KEYS):
        if not accept_unversioned:
            raise ValueError(f"{path} has no digest (written before {format} files carried one); it cannot "
                             "be verified")
        warn(f"{path} was written without a digest (by an earlier version) and cannot be verified; "
                      "it is used as it is and rewritten with its digest (delete it to recompute it)")
        write_verified_json(path, stored, format)
        return stored
    found = stored.pop("format", None)
    digest = stored.pop("sha256", None)
    if found != format:
        raise ValueError(f"{path} is not a {format} file (format {found!r})")
    if digest is None:
        raise ValueError(f"{path} has no digest: it was altered after it was written")
    try:
        expected = _content_digest(format, stored)
    except ValueError:  # NaN or Infinity, which the writer never stores
        expected = None
    if digest != expected:
        raise ValueError(f"{path} does not match its SHA-256 digest: its content was edited or damaged after "
                         "it was written")
    return stored


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


MANIFEST = "manifest.json"
MANIFEST_FORMAT = "bayesdl-run-1"


def sha256_of(path) -> str:
    """The SHA-256 hex digest of a file's bytes."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def is_run_folder(path) -> bool:
    """Whether ``path`` is a folder that a run may replace: empty, or the results of a run (it
    holds ``manifest.json``, or -- written before manifests -- a ``metrics.json`` with a study)."""
    path = Path(path)
    if not path.is_dir():
        return False
    if not any(path.iterdir()) or (path / MANIFEST).is_file():
        return True
    try:
        metrics = json.loads((path / "metrics.json").read_text())
    except (OSError, ValueError):
        return False
    return isinstance(metrics, dict) and "study" in metrics


def check_output_folder(path) -> Path:
    """``path`` as a ``Path`` if results may be written there (absent, empty, or an earlier run's
    results, which the new ones replace), else ``ValueError`` saying why not."""
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise ValueError(f"the output folder {path} is an existing file; pass a folder (new or empty)")
    if path.is_dir() and not is_run_folder(path):
        raise ValueError(
            f"the output folder {path} holds files that are not a bdl run's results; a run replaces its "
            "output folder as a whole, so pass a new or empty folder"
        )
    for parent in path.absolute().parents:
        if parent.exists():
            if not parent.is_dir():
                raise ValueError(f"cannot create the output folder {path}: {parent} is a file")
            break
    return path


def verify_run_folder(path) -> dict[str, str]:
    """Check the files of a run folder against its ``manifest.json``; returns ``{file: sha256}``.

    Raises ``ValueError`` naming every listed file that is missing or whose bytes changed since
    the run wrote it (truncated, edited, or copied in from elsewhere). A folder written before
    manifests existed (no ``manifest.json``) gives ``{}``.
    """
    path = Path(path)
    manifest = path / MANIFEST
    if not manifest.is_file():
        return {}
    try:
        listed = json.loads(manifest.read_text())
        files = listed["files"]
        if listed.get("format") != MANIFEST_FORMAT or not isinstance(files, dict):
            raise ValueError
    except (ValueError, KeyError, TypeError):
        raise ValueError(f"{manifest} is not a bdl run manifest; the folder was altered after the run"
                         ) from None
    problems = []
    for name, digest in files.items():
        file = path / name
        if not file.is_file():
            problems.append(f"{name} is missing")
        elif sha256_of(file) != digest:
            problems.append(f"{name} changed since the run wrote it (truncated or edited)")
    if problems:
        raise ValueError(f"the results in {path} are damaged: {'; '.join(problems)}. Run the study again")
    return files


def _exchange(source: Path, target: Path) -> bool:
    """Swap two existing paths in one atomic step (Linux ``renameat2(RENAME_EXCHANGE)``);
    ``False`` where the system or file system cannot."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        renameat2 = ctypes.CDLL(None, use_errno=True).renameat2
    except AttributeError:  # glibc < 2.28, musl
        return False
    renameat2.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_uint]
    at_fdcwd, rename_exchange = -100, 2
    if renameat2(at_fdcwd, os.fsencode(source), at_fdcwd, os.fsencode(target), rename_exchange) == 0:
        return True
    error = ctypes.get_errno()
    if error in (errno.EINVAL, errno.ENOSYS, errno.EOPNOTSUPP):
        return False
    raise OSError(error, os.strerror(error), str(target))


class RunFolder:
    """The output folder of one run, built beside it and swapped in as a whole.

    Use as a context manager. While the study runs, files go to ``self.path``, a staging
    folder ``.<name>.staging-*`` next to ``final`` (on the same file system). On success
    ``manifest.json`` -- every file with its SHA-256 -- is written last, and the staging folder
    takes the place of ``final`` in one atomic exchange (``renameat2`` on Linux; elsewhere two
    renames, which the next run completes if it was interrupted between them). On failure the
    staging folder is removed. So ``final`` always holds one whole run: the previous one or the
    new one, never a mix -- even after ``kill -9`` -- and files of an earlier study in the
    same folder do not survive.

    ``final`` must be absent, empty, or an earlier run's folder (see :func:`check_output_folder`).
    Each staging folder is locked by its process while it lives, so concurrent runs (into the
    same folder or not) only ever remove staging folders of processes that died; two runs into
    the same folder both succeed, and the one finishing last is what the folder holds.

    ``writer=False`` (every rank but 0 of a data-parallel run) stages into a private temporary
    folder that is discarded: ``final`` is never touched, so the results are written once.
    """

    def __init__(self, final, writer: bool = True):
        self.final = Path(final)
        self.writer = writer
        self.path: Path | None = None
        self._lock_fd: int | None = None
        self._created: list[Path] = []

    def __enter__(self) -> RunFolder:
        if not self.writer:
            self.path = Path(tempfile.mkdtemp(prefix="bayesdl-rank-"))
            return self
        check_output_folder(self.final)
        parent = self.final.absolute().parent
        missing = [p for p in (parent, *parent.parents) if not p.exists()]
        try:
            parent.mkdir(parents=True, exist_ok=True)
            self._created = missing  # innermost first: removed again if the run fails
            with file_lock(parent):
                self._clean_up(parent)
            self.path = Path(tempfile.mkdtemp(prefix=f".{self.final.name}.staging-", dir=parent))
            os.chmod(self.path, umask_mode(0o777))  # mkdtemp makes it 0700
            self._lock_fd = try_lock(self.path)
        except OSError as err:
            self._abandon()
            raise ValueError(f"cannot write the results into {self.final}: {err.strerror or err}; "
                             "choose an output folder you can write to") from None
        return self

    def _clean_up(self, parent: Path) -> None:
        """Under the parent's lock: finish a swap interrupted between its two renames, and remove
        the staging folders of runs into the same folder whose process died."""
        name = self.final.name
        previous = sorted(parent.glob(f".{name}.previous-*"), key=lambda p: p.stat().st_mtime)
        if previous and not self.final.exists():
            previous.pop().rename(self.final)
        for stale in [*previous, *parent.glob(f".{name}.staging-*")]:
            fd = try_lock(stale) if stale.is_dir() else None
            if fd is not None:  # nobody holds it: its run is dead
                shutil.rmtree(stale, ignore_errors=True)
                os.close(fd)

    def __exit__(self, exc_type, exc, tb) -> None:
        try:
            if exc_type is None and self.writer:
                self._publish()
        finally:
            self._abandon(failed=exc_type is not None)

    def _publish(self) -> None:
        files = sorted(p for p in self.path.rglob("*") if p.is_file())
        write_json(self.path / MANIFEST, {
            "format": MANIFEST_FORMAT,
            "files": {str(p.relative_to(self.path)): sha256_of(p) for p in files},
        })
        parent = self.path.parent
        with file_lock(parent):
            check_output_folder(self.final)  # still ours: nothing else was put there meanwhile
            if not self.final.exists() or not any(self.final.iterdir()):
                os.replace(self.path, self.final)  # onto nothing, or an empty folder
            elif not _exchange(self.path, self.final):
                aside = Path(tempfile.mkdtemp(prefix=f".{self.final.name}.previous-", dir=parent))
                os.replace(self.final, aside)
                os.replace(self.path, self.final)
                shutil.rmtree(aside, ignore_errors=True)
            # after an exchange self.path holds the previous results, removed by _abandon
        self._created = []

    def _abandon(self, failed: bool = True) -> None:
        if self.path is not None and self.path.exists():
            shutil.rmtree(self.path, ignore_errors=True)
        if self._lock_fd is not None:
            os.close(self._lock_fd)
            self._lock_fd = None
        if failed:  # leave no empty folder behind that this run made
            for folder in self._created:
                try:
                    folder.rmdir()
                except OSError:
                    break

    def file(self, name: str) -> Path:
        """Path of ``name`` inside the staging folder."""
        path = self.path / name
        path.parent.mkdir(parents=True, exist_ok=True)
        return path

    def metrics(self, study: str, config: dict, results: dict) -> None:
        """Write ``metrics.json`` with the shared schema."""
        write_json(self.file("metrics.json"), {"study": study, "config": config,
                                               "results": results, "versions": versions()})
