"""Smoke test of benchmarks/bandit_speed.py at tiny sizes (no timing is asserted)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_the_bandit_speed_benchmark_runs_at_a_tiny_size(tmp_path):
    out = tmp_path / "speed.json"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MPLBACKEND": "Agg"}
    done = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "bandit_speed.py"), "--rounds", "1",
                           "--rows", "40", "--steps", "2", "--decisions", "5", "--out", str(out)],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(out.read_text())
    assert set(result["ratios"]) == {"fit", "decide"}
    assert all(r > 0 for r in result["ratios"].values())
    assert "one retraining" in done.stdout and "one decision step" in done.stdout
