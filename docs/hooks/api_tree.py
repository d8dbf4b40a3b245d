"""mkdocs hook: let mkdocstrings (griffe) find the package ``bayesdl`` as it is installed.

The repository keeps the subpackages at the top (``models/``, ``inference/``, ...) and
setup.cfg's ``package_dir`` installs them as ``bayesdl.models``, ``bayesdl.inference``, ...;
griffe reads sources from folders, so it would look for ``bayesdl/models/``. This hook builds
that layout once per process as a tree of symbolic links in a temporary folder and points the
mkdocstrings Python handler at it (its ``paths`` option). Nothing in the repository changes.
"""

from __future__ import annotations

import atexit
import shutil
import tempfile
from pathlib import Path

from mkdocs.plugins import event_priority

ROOT = Path(__file__).resolve().parents[2]
SUBPACKAGES = ("models", "inference", "evaluation", "experiments")
_tree: Path | None = None


def _build_tree() -> Path:
    global _tree
    if _tree is None:
        _tree = Path(tempfile.mkdtemp(prefix="bayesdl-docs-"))
        atexit.register(shutil.rmtree, _tree, ignore_errors=True)
        package = _tree / "bayesdl"
        package.mkdir()
        for entry in (ROOT / "bayesdl").iterdir():
            if entry.name != "__pycache__":
                (package / entry.name).symlink_to(entry)
        for name in SUBPACKAGES:
            (package / name).symlink_to(ROOT / name, target_is_directory=True)
    return _tree


@event_priority(100)  # before mkdocstrings' own on_config reads its handlers' options
def on_config(config):
    plugin = config["plugins"]["mkdocstrings"]
    python = plugin.config["handlers"].setdefault("python", {})
    python["paths"] = [str(_build_tree())]
    return config
