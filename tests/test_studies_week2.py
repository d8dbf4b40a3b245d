"""The week-2 studies in quick mode, and `bdl diagnose` on their output."""

import json

import pytest

from bayesdl.experiments.cli import main
from bayesdl.experiments.diagnose import diagnose


@pytest.fixture(scope="module")
def logistic_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("runs") / "logistic"
    assert main(["run", "logistic-2d", "--quick", "--out", str(out), "--no-progress"]) == 0
    return out


@pytest.mark.slow
def test_logistic_quick_run(logistic_run):
    metrics = json.loads((logistic_run / "metrics.json").read_text())
    r = metrics["results"]
    assert set(r) == {"map", "laplace", "mean_field", "nuts"}
    for method in r.values():
        assert {"accuracy", "nll", "ece", "mean_confidence_far", "tv_to_nuts"} <= set(method)
        assert method["accuracy"] > 0.9  # the blobs are separable
    # what the course shows: MAP stays confident far from the data, Laplace and NUTS do not
    assert r["map"]["mean_confidence_far"] > r["laplace"]["mean_confidence_far"]
    assert r["map"]["mean_confidence_far"] > r["nuts"]["mean_confidence_far"]
    assert r["nuts"]["tv_to_nuts"] == 0.0
    assert "max_r_hat" in r["nuts"] and "elpd_loo" in r["nuts"]
    for name in ("uncertainty_maps.png", "training_curves.png", "nuts_rank.png", "inference_nuts.nc",
                 "inference_map.nc", "report.md"):
        assert (logistic_run / name).stat().st_size > 0


@pytest.mark.slow
def test_diagnose_shows_the_saved_run_again(logistic_run, tmp_path):
    text = diagnose(logistic_run, plots=tmp_path)
    assert "nuts: convergence" in text and "max R-hat" in text
    assert "PSIS-LOO comparison" in text
    assert (tmp_path / "rank_nuts.png").stat().st_size > 0
    assert main(["diagnose", str(logistic_run)]) == 0


def test_diagnose_errors(tmp_path, capsys):
    assert main(["diagnose", str(tmp_path)]) == 2
    assert "no ArviZ data" in capsys.readouterr().err
    assert main(["diagnose", str(tmp_path / "missing")]) == 2


@pytest.mark.slow
def test_two_moons_quick_run(tmp_path):
    out = tmp_path / "moons"
    assert main(["run", "two-moons", "--quick", "--out", str(out), "--no-progress"]) == 0
    r = json.loads((out / "metrics.json").read_text())["results"]
    assert set(r) == {"map", "mean_field", "mc_dropout", "laplace", "nuts"}
    assert {"mc_error_10_samples", "roughness_10_samples"} <= set(r["mc_dropout"])
    assert "roughness_10_samples" not in r["nuts"]  # NUTS draws are picked deterministically
    report = (out / "report.md").read_text()
    assert "MC dropout" in report and "mean_field" not in report.split("## Diagnostics")[0]
    assert "**Quick mode**" in report.splitlines()[2]  # under the title: not the study's results
    assert "converged" in report and "Pareto k > 0.7" in report
