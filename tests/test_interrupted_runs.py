"""A failed, killed or concurrent run never leaves a mixed result folder.

The output folder is built beside itself and swapped in whole with ``manifest.json`` (every file
with its SHA-256) inside; these tests kill real ``bdl run`` processes with SIGKILL at several
points and check that the folder is then exactly the previous run or exactly the new one.
"""

import json
import os
import signal
import stat
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from bayesdl.experiments import io
from bayesdl.experiments.io import MANIFEST, RunFolder, verify_run_folder, write_json

STUDY = "regression"  # the quickest study


# ------------------------------------------------------------------ RunFolder, in process
def _run(out, files, fail=False):
    with RunFolder(out) as folder:
        for name, text in files.items():
            folder.file(name).write_text(text)
        if fail:
            raise RuntimeError("the study failed")
        write_json(folder.file("metrics.json"), {"study": "demo", "files": sorted(files)})


def test_a_new_run_replaces_the_whole_folder(tmp_path):
    out = tmp_path / "out"
    _run(out, {"old_figure.png": "a", "inference_old.nc": "b"})
    _run(out, {"new_figure.png": "c"})
    assert sorted(p.name for p in out.iterdir()) == [MANIFEST, "metrics.json", "new_figure.png"]
    assert set(verify_run_folder(out)) == {"metrics.json", "new_figure.png"}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]  # no staging left beside it


def test_a_failed_run_leaves_the_previous_results(tmp_path):
    out = tmp_path / "out"
    _run(out, {"figure.png": "old"})
    before = verify_run_folder(out)
    with pytest.raises(RuntimeError):
        _run(out, {"figure.png": "new", "more.png": "x"}, fail=True)
    assert verify_run_folder(out) == before and (out / "figure.png").read_text() == "old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]


def test_a_failed_first_run_leaves_no_folder_it_made(tmp_path):
    with pytest.raises(RuntimeError):
        _run(tmp_path / "a" / "b" / "out", {"figure.png": "x"}, fail=True)
    assert list(tmp_path.iterdir()) == []


def test_folders_that_are_not_results_are_never_replaced(tmp_path):
    home = tmp_path / "home"
    home.mkdir()
    (home / "thesis.tex").write_text("years of work")
    with pytest.raises(ValueError, match="not a bdl run's results"):
        _run(home, {"figure.png": "x"})
    assert (home / "thesis.tex").read_text() == "years of work"
    (tmp_path / "file").write_text("x")
    with pytest.raises(ValueError, match="is an existing file"):
        _run(tmp_path / "file", {})
    with pytest.raises(ValueError, match="is a file"):
        _run(tmp_path / "file" / "out", {})


def test_a_live_run_keeps_its_staging_folder_and_both_runs_finish(tmp_path):
    """Two runs into one folder at once: neither removes the other's staging folder (each is
    locked by its process), and the folder ends as the run that finished last, whole."""
    out = tmp_path / "out"
    with RunFolder(out) as first:
        first.file("first.png").write_text("1")
        with RunFolder(out) as second:
            second.file("second.png").write_text("2")
            assert first.path.exists()  # the second run's clean-up left it alone
        assert set(verify_run_folder(out)) == {"second.png"}
        first.file("late.png").write_text("1")
    assert set(verify_run_folder(out)) == {"first.png", "late.png"}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]


def test_the_staging_folders_of_dead_runs_are_removed(tmp_path):
    dead = tmp_path / ".out.staging-deadbeef"
    dead.mkdir()
    (dead / "figure.png").write_text("from a killed run")
    _run(tmp_path / "out", {"figure.png": "x"})
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]


def test_without_an_atomic_exchange_an_interrupted_swap_is_completed(tmp_path, monkeypatch):
    """Where renameat2 is missing the swap takes two renames; a run killed between them leaves
    the previous results aside, and the next run puts them back before anything else."""
    monkeypatch.setattr(io, "_exchange", lambda source, target: False)
    out = tmp_path / "out"
    _run(out, {"figure.png": "old"})
    _run(out, {"figure.png": "new"})  # the two-rename path
    assert (out / "figure.png").read_text() == "new"
    aside = tmp_path / ".out.previous-killed"
    out.rename(aside)  # as if killed between the two renames
    with RunFolder(out) as folder:
        assert (out / "figure.png").read_text() == "new"  # put back before the run starts
        folder.file("figure.png").write_text("newer")
        write_json(folder.file("metrics.json"), {"study": "demo"})
    assert (out / "figure.png").read_text() == "newer"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]


def test_results_respect_the_umask(tmp_path):
    old = os.umask(0o022)
    try:
        _run(tmp_path / "out", {"figure.png": "x"})
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "out").stat().st_mode) == 0o755
    for name in ("figure.png", "metrics.json", MANIFEST):
        assert stat.S_IMODE((tmp_path / "out" / name).stat().st_mode) == 0o644, name


# ------------------------------------------------------------------ real `bdl run` processes
def _bdl(out, seed, *extra):
    env = {**os.environ, "MPLBACKEND": "Agg", "OMP_NUM_THREADS": "1"}
    return subprocess.Popen([sys.executable, "-m", "bayesdl.experiments", "run", STUDY, "--quick",
                             "--no-progress", "--seed", str(seed), "--out", str(out), *extra],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)


def _finish(process):
    _, err = process.communicate(timeout=300)
    assert process.returncode == 0, err.decode()[-2000:]


def _state(out: Path):
    """``(seed, {file: sha256})`` of a whole run folder; fails if the folder mixes runs."""
    listed = verify_run_folder(out)  # every listed file there, with the bytes the run wrote
    present = {str(p.relative_to(out)) for p in out.rglob("*") if p.is_file()}
    assert present == set(listed) | {MANIFEST}, f"files of another run: {present ^ (set(listed) | {MANIFEST})}"
    return json.loads((out / "metrics.json").read_text())["config"]["seed"], listed


def _staging(out: Path):
    return [p for p in out.parent.glob(f".{out.name}.staging-*") if p.is_dir()]


def _kill_when(process, out, ready, limit=300.0):
    """SIGKILL ``process`` as soon as ``ready()`` holds (checked every few ms); returns whether it
    was still running then."""
    deadline = time.monotonic() + limit
    while process.poll() is None and time.monotonic() < deadline:
        if ready():
            process.send_signal(signal.SIGKILL)
            break
        time.sleep(0.002)
    process.wait()
    return process.returncode == -signal.SIGKILL


@pytest.mark.slow
def test_kill_9_at_any_point_leaves_the_old_or_the_new_result(tmp_path):
    out = tmp_path / "out"
    started = time.monotonic()
    _finish(_bdl(out, 0))
    duration = time.monotonic() - started
    old = _state(out)
    assert old[0] == 0

    def staged(pattern=None):
        def ready():
            for folder in _staging(out):
                try:
                    if pattern is None or any(folder.rglob(pattern)):
                        return True
                except FileNotFoundError:  # swapped in or removed between the listing and the look
                    continue
            return False

        return ready

    def after(fraction):
        begin = time.monotonic()
        return lambda: time.monotonic() - begin > fraction * duration

    points = {"staging folder made": staged(), "a figure being written": staged("*.png"),
              "netCDF being written": staged("*.nc"), "metrics written, publishing": staged("metrics.json"),
              "half-way": after(0.5)}
    kills = 0
    for what, ready in points.items():
        kills += _kill_when(_bdl(out, 1), out, ready)
        state = _state(out)  # a whole run, never a mix
        assert state == old or state[0] == 1, what
    assert kills >= 3  # most kills really hit a running process


@pytest.mark.slow
def test_two_runs_into_one_folder_at_once_both_finish_whole(tmp_path):
    out = tmp_path / "out"
    runs = [_bdl(out, seed) for seed in (0, 1)]
    for run in runs:
        _finish(run)
    assert _state(out)[0] in (0, 1)
    assert not _staging(out)


@pytest.mark.slow
def test_two_runs_sharing_a_cache_train_a_network_once(tmp_path):
    """The second run waits for the first, then loads the network it trained."""
    script = textwrap.dedent(f"""
        import sys
        from types import SimpleNamespace
        import torch
        from torch.utils.data import TensorDataset
        from bayesdl.experiments.training import NetworkRecipe, train_network
        g = torch.Generator().manual_seed(0)
        train = TensorDataset(torch.randn(256, 1, 28, 28, generator=g), torch.randint(0, 10, (256,), generator=g))
        ctx = SimpleNamespace(cache_dir={str(tmp_path / "cache")!r}, folder=None,
                              device=torch.device("cpu"), progress=False)
        from pathlib import Path
        ctx.cache_dir = Path(ctx.cache_dir)
        posterior, seconds = train_network(NetworkRecipe(method="mean_field", epochs=5, batch_size=16,
                                                     train_size=256), train, ctx)
        print("trained" if seconds > 0 else "loaded")
    """)
    runs = [subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                             text=True) for _ in range(2)]
    results = [run.communicate(timeout=300) for run in runs]
    assert all(run.returncode == 0 for run in runs), results
    assert sorted(out.strip() for out, _ in results) == ["loaded", "trained"]
    assert any("waiting for another run" in err for _, err in results)
    assert not list((tmp_path / "cache").glob(".*tmp*"))
