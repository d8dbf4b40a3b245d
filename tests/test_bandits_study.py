"""`bdl run bandits --quick`: the study runs end to end, reports, and serves its saved runs."""

from __future__ import annotations

import json

import pytest

from bayesdl.experiments.registry import run_study


@pytest.mark.slow
@pytest.mark.data
def test_the_quick_study_runs_and_resumes_from_its_saved_runs(tmp_path, data_root):
    cache = tmp_path / "cache"
    metrics = run_study("bandits", tmp_path / "out", quick=True, data_root=data_root, progress=False,
                        cache_dir=cache)
    results = metrics["results"] if "results" in metrics else metrics
    mushroom = results["mushroom"]
    assert set(mushroom) == {"dropout", "linfullpost", "neural_linear", "uniform"}
    assert mushroom["uniform"]["relative_mean"] == pytest.approx(100.0)
    for row in mushroom.values():
        assert row["regret_mean"] >= 0 and len(row["regret_per_seed"]) == 1
    report = (tmp_path / "out" / "report.md").read_text()
    assert "showdown" in report and "cumulative_regret_mushroom.png" in report
    assert (tmp_path / "out" / "wheel_relative_regret.png").is_file()
    saved = sorted(p.name for p in (cache / "bandits").iterdir())
    # 4 agents x (mushroom + one wheel delta), one seed; and the two agents of the dropout Q-network
    assert len([n for n in saved if not n.startswith("dqn-")]) == 8
    assert len([n for n in saved if n.startswith("dqn-")]) == 2
    again = run_study("bandits", tmp_path / "again", quick=True, data_root=data_root, progress=False,
                      cache_dir=cache)
    again = again["results"] if "results" in again else again
    assert json.dumps(again["mushroom"], sort_keys=True) == json.dumps(mushroom, sort_keys=True)
