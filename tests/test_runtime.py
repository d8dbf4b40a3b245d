"""Process-level helpers: the peak-memory measurement the benchmarks report."""

import mmap
import sys

import pytest

from bayesdl.runtime import peak_memory_mib, reset_peak_memory

linux = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="VmHWM and clear_refs are Linux's")


@linux
def test_peak_memory_sees_an_allocation_and_resets_after_it():
    if not reset_peak_memory():
        pytest.skip("clear_refs is not writable here")
    before = peak_memory_mib()
    block = mmap.mmap(-1, 64 * 2**20)  # 64 MiB of fresh pages (not malloc's, which may hold freed memory)
    block.write(b"\x01" * len(block))  # touched: resident
    during = peak_memory_mib()
    assert during - before >= 60
    block.close()
    reset_peak_memory()
    with open("/proc/self/status") as f:  # the current resident memory, VmRSS
        current = next(int(line.split()[1]) for line in f if line.startswith("VmRSS:")) / 1024
    assert abs(peak_memory_mib() - current) < 4  # the peak starts afresh from the current memory
