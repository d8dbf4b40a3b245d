"""The README's first example and the documentation's tour of the API (``docs/tour.md``) run, top
to bottom, as a user would paste them -- the tour at a tiny size: fewer epochs, members and samples
(each substitution must still match the tour, so that a change to it shows up here)."""

from __future__ import annotations

import ast
import builtins
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

TOUR = ROOT / "docs" / "tour.md"
#: (tour text, what the test runs instead): the sizes only, never the calls
TINY = [
    ("epochs=10", "epochs=1"),
    ("epochs=40", "epochs=2"),
    ('{"epochs": 50}', '{"epochs": 1}'),
    ("members=5", "members=2"),
    ("for epoch in range(10):", "for epoch in range(1):"),
    ("num_samples=1000", "num_samples=50"),
    ("num_samples=100", "num_samples=10"),
    ("max_labels=100", "max_labels=30"),
    ("candidates=200", "candidates=50"),
    ("batchbald(probs, 10)", "batchbald(probs, 4)"),
    ("to_inference_data(posterior, x_train, y_train)", "to_inference_data(posterior, x_train, y_train, num_samples=10)"),
    ("num_chains=2)", "num_chains=1, num_samples=50, warmup_steps=50)"),
]


def tour_blocks(text: str) -> list[str]:
    """The ```python blocks of a Markdown text (the tour page, or the README)."""
    return re.findall(r"^```python\n(.*?)^```", text, re.MULTILINE | re.DOTALL)


def _bound_names(code: str) -> set[str]:
    """The names the code imports or assigns, at any depth."""
    names = set()
    for node in ast.walk(ast.parse(code)):
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            names |= {(alias.asname or alias.name).split(".")[0] for alias in node.names}
        elif isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store):
            names.add(node.id)
    return names


def test_the_tour_defines_and_imports_what_it_uses():
    code = "\n".join(tour_blocks(TOUR.read_text()))
    bound = _bound_names(code)
    # the names a new user could not find (issue 36): imported or defined in the tour itself
    for name in ("max_probability", "negative_entropy", "negative_mutual_information", "ood_metrics",
                 "reliability_bins", "plot_reliability_diagram", "interval_coverage", "balanced_initial_indices",
                 "x", "y", "train_set", "train_loader", "x_test", "y_test", "my_trained_net", "initial_indices",
                 "test_set", "x_cal", "y_cal", "pred_cal", "pred_test", "x_train", "y_train"):
        assert name in bound, f"the tour uses {name} without importing or defining it"
    used = {node.id for node in ast.walk(ast.parse(code)) if isinstance(node, ast.Name)}
    undefined = used - bound - set(dir(builtins))
    assert not undefined, f"the tour uses names it never defines: {sorted(undefined)}"


@pytest.mark.slow
def test_the_tour_runs(tmp_path):
    code = "\n".join(tour_blocks(TOUR.read_text()))
    for readme, tiny in TINY:
        assert readme in code, f"the tour no longer contains {readme!r}: update TINY"
        code = code.replace(readme, tiny)
    env = {**os.environ, "MPLBACKEND": "Agg", "OMP_NUM_THREADS": "1"}
    # a fresh interpreter in an empty folder, as a user's script (al.json is written there)
    result = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env=env, capture_output=True,
                            text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-6000:]
    assert (tmp_path / "al.json").is_file()


def test_the_readmes_example_runs(tmp_path):
    blocks = tour_blocks((ROOT / "README.md").read_text())
    assert blocks, "the README shows no Python example"
    env = {**os.environ, "MPLBACKEND": "Agg", "OMP_NUM_THREADS": "1"}
    result = subprocess.run([sys.executable, "-c", "\n".join(blocks)], cwd=tmp_path, env=env, capture_output=True,
                            text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-4000:]
