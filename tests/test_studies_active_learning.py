"""The active-learning study in quick mode on MNIST, its options and its resumption."""

import json

import pytest

from bayesdl.experiments.cli import main


def test_unknown_or_malformed_study_options_are_refused(tmp_path, capsys):
    assert main(["run", "active-learning", "--quick", "--out", str(tmp_path), "--set", "sedes=2"]) == 2
    assert "no option ['sedes']" in capsys.readouterr().err
    assert main(["run", "active-learning", "--quick", "--out", str(tmp_path), "--set", "seeds"]) == 2
    assert "KEY=VALUE" in capsys.readouterr().err
    assert main(["run", "regression", "--quick", "--out", str(tmp_path), "--set", "seeds=1"]) == 2
    capsys.readouterr()
    assert main(["run", "active-learning", "--quick", "--out", str(tmp_path), "--set", "time_budget=-1"]) == 2
    assert "time_budget must be positive or 0" in capsys.readouterr().err


@pytest.mark.data
@pytest.mark.slow
def test_quick_run_writes_the_table_curves_and_images_and_resumes(tmp_path, data_root, capsys):
    args = ["run", "active-learning", "--quick", "--data-root", str(data_root), "--cache-dir", str(tmp_path / "cache"),
            "--no-progress", "--set", "functions=bald,random", "--set", "max_labels=40"]
    assert main([*args, "--out", str(tmp_path / "first")]) == 0
    metrics = json.loads((tmp_path / "first" / "metrics.json").read_text())
    results = metrics["results"]
    assert set(results) == {"bald", "random", "batchbald"}
    for row in results.values():
        assert row["labels"] == [[20, 30, 40]]
        assert len(row["first_acquired"][0]) == 10
        assert {"acquired_to_10pct", "acquired_to_5pct"} <= set(row)
    assert metrics["config"]["functions"] == ["bald", "random"] and metrics["config"]["max_labels"] == 40
    for name in ("learning_curves.png", "batchbald_vs_bald.png", "first_acquired.png"):
        assert (tmp_path / "first" / name).stat().st_size > 0
    report = (tmp_path / "first" / "report.md").read_text()
    assert "| BALD |" in report and "145" in report  # beside the paper's Table 1
    assert "## Cost" in report and "| BALD | 3 |" in report  # 3 steps of the one seed

    # A second run finds every step recorded: nothing is retrained, the numbers are the same.
    capsys.readouterr()
    assert main([*args, "--out", str(tmp_path / "again")]) == 0
    again = json.loads((tmp_path / "again" / "metrics.json").read_text())["results"]
    assert again == results

    # time_budget=0 reports the saved records of a longer protocol without running a step (the
    # step at 40 labels, finished without acquiring, is reopened to acquire and so not shown).
    assert main([*args[:-1], "max_labels=60", "--set", "time_budget=0", "--out", str(tmp_path / "report")]) == 0
    saved = json.loads((tmp_path / "report" / "metrics.json").read_text())["results"]
    assert {k: row["labels"] for k, row in saved.items()} == {k: [[20, 30]] for k in saved}
    assert "no step run" in (tmp_path / "report" / "report.md").read_text()
