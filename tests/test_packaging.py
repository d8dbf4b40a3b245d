"""The library installs as one package, ``bayesdl.*``, and nothing else.

The four pipeline folders sit at the top of the repository but ship as ``bayesdl.models``,
``bayesdl.inference``, ``bayesdl.evaluation`` and ``bayesdl.experiments`` (setup.cfg's
``package_dir``). These tests build the real wheel, so a package folder forgotten in
setup.cfg (which would silently ship zero files) fails here, and they reject any import of
the old top-level names.
"""

from __future__ import annotations

import ast
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
#: repository folder -> the package it installs as
TREES = {"bayesdl": "bayesdl", "models": "bayesdl.models", "inference": "bayesdl.inference",
         "evaluation": "bayesdl.evaluation", "experiments": "bayesdl.experiments"}
OLD_NAMES = ("models", "inference", "evaluation", "experiments")


def _sources(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*.py") if "__pycache__" not in p.parts)


@pytest.fixture(scope="module")
def wheel_files(tmp_path_factory) -> tuple[set[str], str]:
    """The file names inside the wheel built from a copy of the project, and its entry points."""
    pytest.importorskip("setuptools", minversion="70.1")  # builds wheels by itself (bdist_wheel)
    work = tmp_path_factory.mktemp("build")
    project = work / "project"
    project.mkdir()
    for name in ("setup.cfg", "pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, project / name)
    for folder in TREES:
        shutil.copytree(ROOT / folder, project / folder, ignore=shutil.ignore_patterns("__pycache__"))
    result = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "--no-index",
         "-q", "-w", str(work / "dist"), str(project)],
        capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    (wheel,) = (work / "dist").glob("bayesdl-*.whl")
    with zipfile.ZipFile(wheel) as archive:
        names = set(archive.namelist())
        entry = next(n for n in names if n.endswith(".dist-info/entry_points.txt"))
        entry_points = archive.read(entry).decode()
    return names, entry_points


@pytest.mark.slow
def test_the_wheel_ships_every_module_of_every_tree_under_bayesdl(wheel_files):
    names, _ = wheel_files
    for folder, package in TREES.items():
        target = package.replace(".", "/")
        for source in _sources(ROOT / folder):
            shipped = f"{target}/{source.relative_to(ROOT / folder).as_posix()}"
            assert shipped in names, f"{source.relative_to(ROOT)} is not in the wheel (as {shipped})"


@pytest.mark.slow
def test_the_wheel_installs_nothing_at_the_top_level_but_bayesdl(wheel_files):
    names, entry_points = wheel_files
    tops = {n.split("/")[0] for n in names if not n.split("/")[0].endswith(".dist-info")}
    assert tops == {"bayesdl"}
    assert "bdl = bayesdl.experiments.cli:main" in entry_points


def _old_style_imports(path: Path) -> list[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            modules = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            modules = [node.module]
        else:
            continue
        found += [f"{path.relative_to(ROOT)}:{node.lineno}: {m}" for m in modules
                  if m.split(".")[0] in OLD_NAMES]
    return found


def test_no_source_file_imports_a_pipeline_folder_by_its_old_top_level_name():
    files = [p for folder in (*TREES, "tests", "benchmarks") for p in _sources(ROOT / folder)]
    assert len(files) > 40
    offenders = [line for path in files for line in _old_style_imports(path)]
    assert offenders == []


def test_importing_a_folder_under_its_old_name_is_refused_with_the_right_name():
    # From the repository root, where `models/` is on sys.path as a plain folder.
    result = subprocess.run([sys.executable, "-c", "import models"], cwd=ROOT, capture_output=True,
                            text=True, timeout=120)
    assert result.returncode != 0
    assert "import it as `bayesdl.models`" in result.stderr


@pytest.mark.slow
def test_a_users_own_models_module_does_not_shadow_the_library(tmp_path):
    (tmp_path / "models.py").write_text("MINE = True\n")
    (tmp_path / "inference.py").write_text("MINE = True\n")
    script = ("import models, inference\n"
              "from bayesdl.models import BNN\n"
              "from bayesdl.inference import Posterior\n"
              "assert models.MINE and inference.MINE\n"
              "print(BNN.__module__, Posterior.__module__)\n")
    result = subprocess.run([sys.executable, "-c", script], cwd=tmp_path, capture_output=True, text=True,
                            timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.split() == ["bayesdl.models.bnn", "bayesdl.inference.posterior"]
