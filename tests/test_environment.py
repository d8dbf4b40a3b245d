"""The start-up check of the torch/torchvision pair (bayesdl._environment), the failure simulated."""

import re

import pytest

from bayesdl import _environment
from bayesdl._environment import check_torchvision, matching_torchvision
from bayesdl.experiments.cli import main


def _mismatch(monkeypatch, torch="2.6.0", torchvision="0.20.1", error=None):
    def fail():
        raise error or RuntimeError("operator torchvision::nms does not exist")

    monkeypatch.setattr(_environment, "_import_torchvision", fail)
    monkeypatch.setattr(_environment, "_installed", {"torch": torch, "torchvision": torchvision}.get)


def test_a_working_pair_returns_torchvision():
    assert check_torchvision().__name__ == "torchvision"


@pytest.mark.parametrize("torch, series", [("2.6.0", "0.21.*"), ("2.5.1+cpu", "0.20.*"), ("2.14.1+cu130", "0.29.*"),
                                           ("1.13.1", None), ("garbage", None)])
def test_the_matching_torchvision_series(torch, series):
    assert matching_torchvision(torch) == series


def test_a_mismatch_names_both_versions_and_the_fix(monkeypatch):
    _mismatch(monkeypatch)
    with pytest.raises(ImportError) as caught:
        check_torchvision()
    message = str(caught.value)
    assert "torchvision 0.20.1 does not work with torch 2.6.0" in message
    assert "torchvision::nms does not exist" in message
    assert 'pip install "torch==2.6.0" "torchvision==0.21.*"' in message
    assert "--index-url https://download.pytorch.org/whl/cpu" in message  # the CPU-only alternative
    assert isinstance(caught.value.__cause__, RuntimeError)


def test_a_cpu_build_gets_the_cpu_index(monkeypatch):
    _mismatch(monkeypatch, torch="2.5.1+cpu", torchvision="0.19.0+cpu", error=ImportError("undefined symbol"))
    with pytest.raises(ImportError, match=re.escape("torchvision 0.19.0+cpu does not work with torch 2.5.1+cpu")) as caught:
        check_torchvision()
    assert ('pip install "torch==2.5.1" "torchvision==0.20.*" --index-url https://download.pytorch.org/whl/cpu'
            in str(caught.value))


def test_a_missing_torchvision_says_so(monkeypatch):
    _mismatch(monkeypatch, torchvision=None, error=ModuleNotFoundError("No module named 'torchvision'"))
    with pytest.raises(ImportError, match=re.escape("torchvision is not installed (torch 2.6.0)")):
        check_torchvision()


def test_loading_a_dataset_names_the_mismatch(monkeypatch, tmp_path):
    from bayesdl.experiments import data

    _mismatch(monkeypatch)
    with pytest.raises(ImportError, match=re.escape("torchvision 0.20.1 does not work with torch 2.6.0")):
        data.load_images("mnist", tmp_path)


def test_bdl_names_the_mismatch_before_a_study_that_uses_torchvision(monkeypatch, tmp_path, capsys):
    _mismatch(monkeypatch)
    out = tmp_path / "run"
    assert main(["run", "mnist-dropout", "--quick", "--out", str(out), "--data-root", str(tmp_path),
                 "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("bdl: error: torchvision 0.20.1 does not work with torch 2.6.0")
    assert "Traceback" not in err
    assert not out.exists()


def test_bdl_checks_only_the_studies_that_use_torchvision():
    from bayesdl.experiments.catalogue import STUDIES

    assert not STUDIES["regression"].uses_torchvision and not STUDIES["uci"].uses_torchvision
    assert all(STUDIES[name].uses_torchvision for name in ("mnist-guides", "mnist-dropout", "calibration",
                                                           "failure", "ood", "active-learning"))


def test_a_test_asking_for_the_data_root_is_a_data_test():
    """conftest marks every test using the ``data_root`` fixture ``data``, so that ``-m "not data"``
    (and a machine without the data root) never depends on the datasets."""
    import subprocess
    import sys
    from pathlib import Path

    result = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "--collect-only",
                             "-m", "data", "tests/test_cli_errors.py"], capture_output=True, text=True,
                            cwd=Path(__file__).resolve().parents[1])
    assert "test_cli_errors.py::test_a_truncated_mnist_file" in result.stdout
    assert "test_data_root_that_is_not_a_folder" not in result.stdout
