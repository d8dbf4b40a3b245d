"""Benchmarks that cannot rot (issue 35): each benchmark runs at a tiny size and writes its
table, and every benchmark is named by the README and run by a test. No time is asserted: the
ratios of a tiny run on a shared machine mean nothing; that the scripts still work does."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
BENCHMARKS = sorted(p.name for p in (ROOT / "benchmarks").glob("*.py"))


def _run(script: str, *args: str, timeout: int = 300) -> str:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MPLBACKEND": "Agg", "PYTHONUNBUFFERED": "1"}
    done = subprocess.run([sys.executable, str(ROOT / "benchmarks" / script), *args], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=timeout)
    assert done.returncode == 0, f"{script} failed:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
    return done.stdout


def test_every_benchmark_is_named_by_the_readme_and_run_by_a_test():
    readme = (ROOT / "README.md").read_text()
    tests = "\n".join(p.read_text() for p in (ROOT / "tests").glob("test_*.py"))
    unnamed = [b for b in BENCHMARKS if f"benchmarks/{b}" not in readme]
    untested = [b for b in BENCHMARKS if not re.search(rf"[\"'/]{re.escape(b)}[\"']", tests)]
    assert not unnamed, f"benchmarks the README does not name: {unnamed}"
    assert not untested, f"benchmarks no test runs (add a smoke test at a tiny size): {untested}"


@pytest.mark.slow
@pytest.mark.data
def test_bnn_speed_runs_at_a_tiny_size(data_root, tmp_path):
    out = tmp_path / "bnn_speed.json"
    text = _run("bnn_speed.py", "--data-root", str(data_root), "--train", "256", "--predict", "64",
                "--samples", "2", "--rounds", "1", "--predict-rounds", "1", "--json", str(out))
    result = json.loads(out.read_text())
    assert set(result["table"]) >= {"plain", "dropout", "mean_field", "map"}
    assert all(v["epoch_s"] > 0 and v["peak_rss_mib"] > 0 for v in result["table"].values())
    assert "| dropout |" in text and "train dropout:" in text


@pytest.mark.slow
@pytest.mark.data
def test_active_learning_speed_runs_at_a_tiny_size(data_root, tmp_path):
    out = tmp_path / "al.json"
    text = _run("active_learning_speed.py", "--data-root", str(data_root), "--rounds", "1", "--pool", "200",
                "--labelled", "20", "--epochs", "1", "--candidates", "50", "--test", "100", "--out", str(out))
    result = json.loads(out.read_text())
    assert set(result["score_seconds"]) == {"plain", "plain_channels_last", "bayesdl", "bayesdl_uncached"}
    assert result["identical"] is True  # the cached trunk gives the uncached samples
    assert "acquisition step:" in text


@pytest.mark.slow
@pytest.mark.data
def test_data_parallel_benchmark_runs_at_a_tiny_size(data_root):
    pytest.importorskip("lightning")
    text = _run("data_parallel.py", "--data-root", str(data_root), "--train", "256", "--rounds", "1")
    assert "one process" in text and "ranks" in text


@pytest.mark.slow
def test_user_path_speed_runs_at_a_tiny_size(tmp_path):
    """Random images (no data root needed), one allocator state, each row its own process."""
    out = tmp_path / "user_path.json"
    text = _run("user_path_speed.py", "--train", "256", "--predict", "32", "--rounds", "1", "--threads", "1",
                "--states", "default", "--json", str(out))
    result = json.loads(out.read_text())
    assert set(result["table"]) == {"default/plain", "default/dropout", "default/map", "default/mean_field",
                                    "default/mean_field_linear"}
    assert all(v["epoch_s"] > 0 and v["nll"] > 0 for v in result["table"].values())
    assert "default: mean_field:" in text


@pytest.mark.slow
def test_mean_field_estimators_runs_at_a_tiny_size(tmp_path):
    """Random images: speed, one-epoch NLL and gradient variance of the three estimators."""
    out = tmp_path / "estimators.json"
    text = _run("mean_field_estimators.py", "--train", "256", "--predict", "32", "--rounds", "1",
                "--warm-epochs", "1", "--repeats", "3", "--threads", "1", "--json", str(out))
    result = json.loads(out.read_text())
    assert set(result["speed"]) == {"plain", "mean_field[all]", "mean_field[linear]", "mean_field[none]"}
    assert set(result["gradient_variance"]) == {"all", "linear", "none"}
    variance = result["gradient_variance"]
    assert all(v > 0 for row in variance.values() for v in row.values())
    # one shared draw per minibatch adds variance to the convolutions' scale gradients
    assert variance["none"]["log_scale conv"] > variance["all"]["log_scale conv"]
    assert "| mean_field[linear] |" in text


@pytest.mark.slow
def test_the_bandit_speed_benchmark_runs_at_a_tiny_size(tmp_path):
    out = tmp_path / "speed.json"
    text = _run("bandit_speed.py", "--rounds", "1", "--rows", "40", "--steps", "2", "--decisions", "5",
                "--out", str(out))
    result = json.loads(out.read_text())
    assert set(result["ratios"]) == {"fit", "decide"}
    assert all(r > 0 for r in result["ratios"].values())
    assert "one retraining" in text and "one decision step" in text


@pytest.mark.slow
def test_sgmcmc_speed_runs_at_a_tiny_size(tmp_path):
    """Random images: no data root needed."""
    out = tmp_path / "speed.json"
    text = _run("sgmcmc_speed.py", "--train", "128", "--rounds", "1", "--epochs", "1", "--json", str(out))
    result = json.loads(out.read_text())
    assert set(result["table"]) == {"plain", "plain_channels_last", "sghmc"}
    assert all(row["epoch_s"] > 0 and row["ratio_to_plain"] > 0 for row in result["table"].values())
    assert "sghmc epoch:" in text and "| sghmc |" in text
