"""Atomic file writes: a file is either absent, the old version, or complete -- never half-written."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

__all__ = ["atomic_path"]


@contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path next to ``path``; on success, rename it onto ``path``.

    The rename is atomic on POSIX file systems, so readers never see a partial file and an
    interrupted write (exception, Ctrl-C) leaves any previous version intact. The temporary
    file keeps the suffix of ``path`` so that writers choosing a format by extension (e.g.
    ``savefig``) still work.
    """
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=f".tmp{target.suffix}",
                               dir=target.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        os.replace(tmp_path, target)
    finally:
        if tmp_path.exists():
            tmp_path.unlink()
