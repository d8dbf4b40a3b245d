import json
import subprocess
import sys

import pytest

from bayesdl.experiments.cli import main
from bayesdl.experiments.io import SCHEMA_KEYS, RunFolder, write_json


def test_list_names_the_studies(capsys):
    assert main(["list"]) == 0
    out = capsys.readouterr().out
    assert "regression" in out and "reproduces" in out


def test_help_and_list_import_no_heavy_library():
    """`bdl --help` and `bdl list` must start at once: studies (torch, Pyro, ArviZ, matplotlib)
    are imported only when one runs."""
    script = ("import sys\n"
              "from bayesdl.experiments.cli import main\n"
              "main(['list'])\n"
              "for args in (['--help'], ['--version']):\n"
              "    try:\n        main(args)\n    except SystemExit:\n        pass\n"
              "print(sorted({'torch', 'pyro', 'arviz', 'matplotlib', 'numpy'} & set(sys.modules)))\n")
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True)
    assert result.stdout.strip().splitlines()[-1] == "[]"
    assert "two-moons" in result.stdout


def test_list_shows_the_studies_in_the_course_order(capsys):
    assert main(["list"]) == 0
    names = [line.split()[0] for line in capsys.readouterr().out.splitlines() if not line.startswith(" ")]
    assert names == ["regression", "logistic-2d", "two-moons", "mnist-guides", "mnist-dropout", "calibration",
                     "failure", "ood", "active-learning", "uci",
                     # the slides' further applications, then the robustness lecture, then the peers' samplers
                     "sentiment", "bandits", "adversarial", "influence", "random-labels", "sgmcmc-modes"]


def test_run_help_documents_the_options():
    result = subprocess.run([sys.executable, "-m", "bayesdl.experiments", "run", "--help"],
                            capture_output=True, text=True, check=True)
    for option in ("--out", "--seed", "--quick", "--data-root", "--device", "--set", "BAYESDL_DATA"):
        assert option in result.stdout


def test_run_help_ends_its_sentences():
    result = subprocess.run([sys.executable, "-m", "bayesdl.experiments", "run", "--help"],
                            capture_output=True, text=True, check=True)
    text = " ".join(result.stdout.split())
    assert "`bdl list` names each study's options, their defaults and their quick values" in text


def test_version_is_the_package_version(capsys):
    from importlib.metadata import version

    with pytest.raises(SystemExit) as stop:
        main(["--version"])
    assert stop.value.code == 0
    assert capsys.readouterr().out.strip() == f"bdl (bayesdl) {version('bayesdl')}"


def test_list_says_what_each_study_needs_and_takes(capsys):
    from bayesdl.experiments.catalogue import STUDIES

    assert main(["list"]) == 0
    out = capsys.readouterr().out
    blocks = {}
    for line in out.splitlines():
        if not line.startswith(" "):
            name = line.split()[0]
        blocks.setdefault(name, []).append(line.strip())
    for name, study in STUDIES.items():
        needs = "needs: the data root (--data-root or $BAYESDL_DATA)" if study.needs_data else "needs: no data root"
        assert needs in blocks[name]
        assert f"takes: --quick {study.quick_cost}; full run {study.full_cost}" in blocks[name]
    assert "takes: --quick 20-29 CPU s; full run about a minute on a laptop CPU" in blocks["regression"]
    assert "needs: no data root" in blocks["two-moons"]
    assert "needs: the data root (--data-root or $BAYESDL_DATA)" in blocks["calibration"]
    assert "takes: --quick unknown; full run about 1.9 h on 2 cores (6,700 s; MC dropout alone about 34 min)" \
        in blocks["uci"]


def test_unknown_study_is_a_clear_error(tmp_path, capsys):
    assert main(["run", "nope", "--out", str(tmp_path)]) == 2
    assert "unknown study 'nope'" in capsys.readouterr().err


@pytest.mark.parametrize("option", ["epochs", "samples"])
def test_a_reduced_run_needs_positive_counts(tmp_path, capsys, option):
    data = tmp_path / "data"
    data.mkdir()
    out = tmp_path / "r"
    args = ["run", "calibration", "--quick", "--out", str(out), "--data-root", str(data), "--no-progress"]
    assert main([*args, "--set", f"{option}=0"]) == 2
    assert f"option {option} must be >= 1" in capsys.readouterr().err
    assert main([*args, "--set", f"{option}=two"]) == 2
    assert f"option {option}='two' is not a valid int" in capsys.readouterr().err
    assert not out.exists()


def test_a_malformed_list_option_says_what_it_takes(tmp_path, capsys):
    out = tmp_path / "f"
    assert main(["run", "failure", "--quick", "--out", str(out), "--data-root", str(tmp_path), "--no-progress",
                 "--set", "networks=lenet,resnet"]) == 2
    assert "networks must be a comma-separated list of ['corbiere', 'lenet'], got 'lenet,resnet'" in \
        capsys.readouterr().err
    assert not out.exists()


def test_an_option_a_study_does_not_take_is_refused(tmp_path, capsys):
    assert main(["run", "regression", "--quick", "--out", str(tmp_path / "r"), "--set", "epochs=3"]) == 2
    assert "study 'regression' has no option ['epochs']" in capsys.readouterr().err
    assert not (tmp_path / "r").exists()


@pytest.mark.slow
def test_regression_quick_run_writes_results(tmp_path):
    out = tmp_path / "regression"
    assert main(["run", "regression", "--quick", "--out", str(out), "--no-progress"]) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert tuple(metrics) == SCHEMA_KEYS
    assert metrics["study"] == "regression"
    assert metrics["config"]["quick"] is True
    assert {"torch", "pyro-ppl", "python"} <= set(metrics["versions"])
    r = metrics["results"]
    assert set(r) >= {"linear_interval", "linear_clusters", "gaussian_basis", "evidence", "svi_mean_field", "nuts"}
    # what the figures show, as numbers
    assert r["linear_interval"]["variance_at_grid_edges"] > 3 * r["linear_interval"]["mean_variance_over_data_range"]
    assert r["gaussian_basis"]["variance_at_grid_edges"] == pytest.approx(0.08, rel=1e-6)
    assert r["linear_clusters"]["argmin_variance_flat_prior"] == pytest.approx(r["linear_clusters"]["barycenter"], abs=1e-3)
    for name in ("linear_interval.png", "linear_clusters.png", "gaussian_basis.png", "evidence.png",
                 "pyro_vs_closed_form.png", "posterior_predictive_check.png", "inference_nuts.nc", "report.md"):
        assert (out / name).stat().st_size > 0
    assert "![](linear_clusters.png)" in (out / "report.md").read_text()
    assert not list(out.glob(".staging-*"))


def test_interrupted_run_keeps_previous_results(tmp_path):
    write_json(tmp_path / "metrics.json", {"study": "old"})
    with pytest.raises(KeyboardInterrupt):
        with RunFolder(tmp_path) as folder:
            (folder.file("metrics.json")).write_text("half-writ")
            (folder.file("figure.png")).write_bytes(b"partial")
            raise KeyboardInterrupt
    assert json.loads((tmp_path / "metrics.json").read_text()) == {"study": "old"}
    assert not (tmp_path / "figure.png").exists()
    assert not list(tmp_path.glob(".staging-*"))


def test_study_needing_data_without_root(tmp_path, monkeypatch, capsys):
    from bayesdl.experiments.catalogue import STUDIES, StudyInfo

    monkeypatch.delenv("BAYESDL_DATA", raising=False)
    monkeypatch.setitem(STUDIES, "needs-data-demo",
                        StudyInfo("needs-data-demo", "demo", "nothing", "regression:run", needs_data=True))
    assert main(["run", "needs-data-demo", "--out", str(tmp_path)]) == 2
    assert "--data-root" in capsys.readouterr().err


def test_cuda_without_a_gpu_is_a_clear_error(tmp_path, capsys):
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    assert main(["run", "regression", "--quick", "--device", "cuda", "--out", str(tmp_path)]) == 2
    assert "no CUDA device" in capsys.readouterr().err
