"""Atomic file writes and inter-process locks.

- :func:`atomic_path`: a file is either absent, the old version, or complete -- never
  half-written. New files get the permissions of the umask, as ``open()`` would give them.
- :func:`remove_stale_temporaries`: the temporary files of writers that were killed.
- :func:`file_lock`: an exclusive advisory lock (``flock``) held for the life of a block; the
  kernel releases it when its process dies, even by ``kill -9``, so a lock is never stale.
"""

from __future__ import annotations

import errno
import os
import shutil
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

try:
    import fcntl
except ImportError:  # pragma: no cover - Windows: no flock, locks become no-ops
    fcntl = None

__all__ = ["atomic_path", "remove_stale_temporaries", "file_lock", "try_lock", "umask_mode",
           "TEMPORARY_MARK"]

#: every temporary file of :func:`atomic_path` has this in its name
TEMPORARY_MARK = ".tmp"


def umask_mode(mode: int = 0o666) -> int:
    """``mode`` with the bits of the process umask cleared: what ``open()`` or ``mkdir()`` would
    give a new file (``0o666``) or folder (``0o777``)."""
    try:  # read without changing it (Linux >= 4.7): os.umask(x) is process-wide and racy
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith("Umask:"):
                    return mode & ~int(line.split()[1], 8)
    except OSError:
        pass
    current = os.umask(0o022)
    os.umask(current)
    return mode & ~current


def _lock_fd(fd: int, blocking: bool) -> bool:
    if fcntl is None:  # pragma: no cover
        return True
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | (0 if blocking else fcntl.LOCK_NB))
        return True
    except OSError as err:
        if err.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
            return False
        raise


@contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path next to ``path``; on success, rename it onto ``path``.

    The rename is atomic on POSIX file systems, so readers never see a partial file and an
    interrupted write (exception, Ctrl-C) leaves any previous version intact. The temporary
    file has the name of ``path``, so that writers choosing a format by extension (e.g.
    ``savefig``) still work, inside a hidden temporary folder beside it that its writer keeps
    locked while it writes: :func:`remove_stale_temporaries` removes only what writers that
    died left behind. (The folder, not the file, is locked: some writers, such as HDF5 for
    netCDF files, lock the files they write themselves.)
    """
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    folder = Path(tempfile.mkdtemp(prefix=f".{target.name}.", suffix=TEMPORARY_MARK, dir=target.parent))
    fd = os.open(folder, os.O_RDONLY)
    tmp_path = folder / target.name
    try:
        _lock_fd(fd, blocking=False)  # a fresh folder: nobody else holds it
        yield tmp_path
        if tmp_path.exists():
            os.chmod(tmp_path, umask_mode(0o666))  # as open() would create it
        os.replace(tmp_path, target)
    finally:
        shutil.rmtree(folder, ignore_errors=True)
        os.close(fd)  # releases the lock


def remove_stale_temporaries(folder: str | os.PathLike) -> list[Path]:
    """Delete the temporary folders that :func:`atomic_path` writers left in ``folder`` when
    they were killed (nobody holds their lock any more); returns the paths removed."""
    removed = []
    for candidate in Path(folder).glob(f".*{TEMPORARY_MARK}"):
        if not candidate.is_dir():
            continue
        try:
            fd = try_lock(candidate)
        except OSError:  # removed meanwhile
            continue
        if fd is not None:
            shutil.rmtree(candidate, ignore_errors=True)
            os.close(fd)
            removed.append(candidate)
    return removed


def try_lock(path: str | os.PathLike) -> int | None:
    """Open ``path`` (a file or a folder) and take its lock without waiting: the open file
    descriptor (close it to release the lock), or ``None`` if another process holds it."""
    fd = os.open(path, os.O_RDONLY)
    if _lock_fd(fd, blocking=False):
        return fd
    os.close(fd)
    return None


@contextmanager
def file_lock(path: str | os.PathLike, on_wait: Callable[[], None] | None = None,
              timeout: float | None = None) -> Iterator[None]:
    """Hold an exclusive lock on ``path`` (a folder, or a lock file created if missing) for the
    block. Another process holding it makes this wait: ``on_wait()`` is called once when it
    starts waiting, and ``TimeoutError`` is raised after ``timeout`` seconds (default: wait
    as long as it takes)."""
    path = Path(path)
    if path.is_dir():
        fd = os.open(path, os.O_RDONLY)
    else:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, umask_mode(0o666))
    try:
        if not _lock_fd(fd, blocking=False):
            if on_wait is not None:
                on_wait()
            deadline = None if timeout is None else time.monotonic() + timeout
            while not _lock_fd(fd, blocking=False):
                if deadline is not None and time.monotonic() > deadline:
                    raise TimeoutError(f"{path} stayed locked by another process for {timeout} s")
                time.sleep(0.1)
        yield
    finally:
        os.close(fd)

