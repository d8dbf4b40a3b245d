"""Process-level settings that make CPU training faster.

Each training step of a convolutional BNN allocates and frees tens of megabytes of
activations. With glibc's default malloc, blocks this large are returned to the operating
system when freed (``mmap``/``munmap`` and heap trimming) and page-faulted back on the next
step; on a 2-core machine this costs 15-20% of a mean-field step. Raising the mmap and trim
thresholds keeps freed blocks in the heap for reuse -- the same idea as PyTorch's CUDA caching
allocator, or running under jemalloc/tcmalloc as PyTorch's CPU tuning guide advises.

The trade-off: the process keeps its peak memory until it exits. Set the environment variable
``BAYESDL_RETAIN_MEMORY=0`` to leave malloc alone.

:func:`peak_memory_mib` and :func:`reset_peak_memory` measure the peak resident memory of a piece
of work (the benchmarks' memory columns).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import sys

__all__ = ["retain_freed_memory", "peak_memory_mib", "reset_peak_memory"]

_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3
_THRESHOLD = 1 << 30  # 1 GiB: blocks up to this size are recycled in the heap
_applied = False


def retain_freed_memory() -> bool:
    """Keep freed tensor memory in the heap (glibc on Linux); returns whether it is in effect.

    Idempotent; a no-op on other platforms or when ``BAYESDL_RETAIN_MEMORY=0``.
    """
    global _applied
    if _applied:
        return True
    if os.environ.get("BAYESDL_RETAIN_MEMORY", "1") == "0" or not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):  # not glibc (musl, ...)
        return False
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    _applied = bool(mallopt(_M_MMAP_THRESHOLD, _THRESHOLD)) and bool(mallopt(_M_TRIM_THRESHOLD, _THRESHOLD))
    return _applied


def peak_memory_mib() -> float:
    """Peak resident memory of this process image in MiB (Linux ``VmHWM``; NaN elsewhere).

    The high-water mark of the process's own address space: unlike ``ru_maxrss``, which a child
    inherits from its parent across fork and exec, it starts afresh in a spawned process."""
    try:
        with open("/proc/self/status") as f:
            return next(int(line.split()[1]) for line in f if line.startswith("VmHWM:")) / 1024
    except (OSError, StopIteration):
        return float("nan")


def reset_peak_memory() -> bool:
    """Reset :func:`peak_memory_mib` to the current resident memory (Linux ``clear_refs`` 5);
    returns whether it could."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False
