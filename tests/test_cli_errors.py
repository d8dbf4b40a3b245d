"""`bdl` never shows a traceback for a user's mistake: one line naming the problem, exit
status 2, and no output folder left behind."""

import errno
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from bayesdl.experiments import run_study
from bayesdl.experiments.cli import main
from bayesdl.experiments.io import MANIFEST


def _fails(capsys, argv, message):
    """``bdl argv`` exits 2 with one line on stderr that contains ``message``."""
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("bdl: error: ") and "Traceback" not in err, err
    assert message in err, err
    return err


def test_an_unknown_device_names_the_devices_that_exist(tmp_path, capsys):
    out = tmp_path / "out"
    _fails(capsys, ["run", "regression", "--quick", "--device", "nosuch", "--out", str(out)],
           "device 'nosuch' is not available (no such device on this machine); available: cpu")
    assert not out.exists()


def test_a_negative_seed_is_refused_before_any_work(tmp_path, capsys):
    out = tmp_path / "out"
    err = _fails(capsys, ["run", "two-moons", "--quick", "--seed", "-1", "--out", str(out)],
                 "--seed must be >= 0, got -1")
    assert "random_state" not in err and not out.exists()
    with pytest.raises(ValueError, match="seed must be >= 0"):
        run_study("two-moons", out, seed=-1, quick=True)


def test_out_that_is_a_file(tmp_path, capsys):
    target = tmp_path / "results.txt"
    target.write_text("mine")
    _fails(capsys, ["run", "regression", "--quick", "--out", str(target)], "is an existing file")
    assert target.read_text() == "mine"


def test_out_that_holds_other_files_is_left_alone(tmp_path, capsys):
    (tmp_path / "notes.md").write_text("mine")
    _fails(capsys, ["run", "regression", "--quick", "--out", str(tmp_path)], "not a bdl run's results")
    assert [p.name for p in tmp_path.iterdir()] == ["notes.md"]


@pytest.mark.parametrize("code", [errno.EACCES, errno.EROFS])
def test_out_in_a_folder_that_cannot_be_written(tmp_path, capsys, monkeypatch, code):
    """An unwritable or read-only folder (simulated: the tests may run as root, who may write
    anywhere), refused when the run starts, before the study's work."""
    def refuse(*args, **kwargs):
        raise OSError(code, os.strerror(code))

    monkeypatch.setattr(tempfile, "mkdtemp", refuse)
    out = tmp_path / "new" / "out"
    _fails(capsys, ["run", "regression", "--quick", "--out", str(out)],
           f"cannot write the results into {out}: {os.strerror(code)}")
    assert not (tmp_path / "new").exists()  # the folder it made for the run is removed again


@pytest.mark.skipif(os.geteuid() == 0, reason="root may write into read-only folders")
def test_out_in_a_read_only_folder(tmp_path, capsys):
    locked = tmp_path / "locked"
    locked.mkdir(mode=0o555)
    _fails(capsys, ["run", "regression", "--quick", "--out", str(locked / "out")], "cannot write the results")


def test_cache_dir_that_is_a_file(tmp_path, capsys):
    cache = tmp_path / "cache"
    cache.write_text("x")
    out = tmp_path / "out"
    _fails(capsys, ["run", "regression", "--quick", "--cache-dir", str(cache), "--out", str(out)],
           "the cache folder")
    assert not out.exists()


def test_a_truncated_mnist_file(tmp_path, capsys, data_root):
    raw = tmp_path / "data" / "MNIST" / "raw"
    raw.mkdir(parents=True)
    for source in (data_root / "MNIST" / "raw").iterdir():
        (raw / source.name).symlink_to(source)
    images = raw / "train-images-idx3-ubyte"
    full = images.resolve().read_bytes()
    images.unlink()
    images.write_bytes(full[: len(full) // 3])  # an interrupted copy
    out = tmp_path / "out"
    _fails(capsys, ["run", "mnist-dropout", "--quick", "--data-root", str(tmp_path / "data"), "--out", str(out),
                    "--no-progress"], f"{images} is truncated: {len(full) // 3} bytes, its header [60000, 28, 28] "
                                      f"needs {len(full)}")
    assert not out.exists()


def test_diagnose_on_a_truncated_netcdf_file(tmp_path, capsys):
    import arviz as az
    import numpy as np

    from bayesdl.evaluation.diagnostics import save
    from bayesdl.experiments.io import RunFolder

    out = tmp_path / "run"
    rng = np.random.default_rng(0)
    with RunFolder(out) as folder:  # what a study writes: InferenceData, then its metrics
        save(az.from_dict(posterior={"w": rng.normal(size=(2, 50))}), folder.file("inference_nuts.nc"))
        folder.metrics("demo", {}, {})
    assert main(["diagnose", str(out)]) == 0
    assert "| nuts |" in capsys.readouterr().out
    nc = out / "inference_nuts.nc"
    data = nc.read_bytes()
    nc.write_bytes(data[: len(data) // 2])
    _fails(capsys, ["diagnose", str(out)], "inference_nuts.nc changed since the run wrote it")
    # a folder from before manifests: the file itself is found unreadable
    (out / MANIFEST).unlink()
    _fails(capsys, ["diagnose", str(out)], f"cannot read {nc} as ArviZ data")


def test_diagnose_on_a_missing_folder(tmp_path, capsys):
    _fails(capsys, ["diagnose", str(tmp_path / "nothing")], "is not a folder")


def test_list_into_a_closed_pipe_is_quiet():
    """`bdl list | head -1`: the reader goes away before bdl writes."""
    process = subprocess.Popen([sys.executable, "-m", "bayesdl.experiments", "list"], stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE)
    process.stdout.close()  # before the interpreter has even started
    err = process.stderr.read().decode()
    assert process.wait() == 141
    assert err == ""


def test_list_through_head_shows_its_first_line():
    result = subprocess.run(f"{sys.executable} -m bayesdl.experiments list | head -1", shell=True,
                            capture_output=True, text=True)
    assert result.stdout.startswith("regression") and result.stderr == ""


def test_data_root_that_is_not_a_folder(tmp_path, capsys):
    _fails(capsys, ["run", "mnist-dropout", "--quick", "--data-root", str(tmp_path / "nowhere"),
                    "--out", str(tmp_path / "out")], "is not a folder")
    assert not (tmp_path / "out").exists()


def test_an_interrupted_run_says_the_folder_is_unchanged(tmp_path, capsys, monkeypatch):
    from bayesdl.experiments import registry

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(registry, "run_study", interrupted)
    assert main(["run", "regression", "--quick", "--out", str(tmp_path / "out")]) == 130
    assert "is as it was before this run" in capsys.readouterr().err
    assert not Path(tmp_path / "out").exists()


def test_cache_dir_inside_the_output_folder(tmp_path, capsys):
    out = tmp_path / "out"
    _fails(capsys, ["run", "regression", "--quick", "--cache-dir", str(out / "cache"), "--out", str(out)],
           "inside the output folder")
    assert not out.exists()
