"""Smoke test of benchmarks/sgmcmc_speed.py at a tiny size (random images: no data root needed)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_sgmcmc_speed_runs_at_a_tiny_size(tmp_path):
    out = tmp_path / "speed.json"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}
    done = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "sgmcmc_speed.py"), "--train", "128",
                           "--rounds", "1", "--epochs", "1", "--json", str(out)], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(out.read_text())
    assert set(result["table"]) == {"plain", "plain_channels_last", "sghmc"}
    assert all(row["epoch_s"] > 0 and row["ratio_to_plain"] > 0 for row in result["table"].values())
    assert "sghmc epoch:" in done.stdout and "| sghmc |" in done.stdout
