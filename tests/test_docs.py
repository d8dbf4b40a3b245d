"""The documentation site (mkdocs.yml, docs/): it builds with warnings as errors, and every Python
example on its pages runs."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"
#: pages whose examples another test runs (at a tiny size), with which
RUN_ELSEWHERE: dict[str, str] = {"tour.md": "tests/test_readme.py runs the tour, at a tiny size"}
SKIP = "<!-- example: not run"
FENCE = re.compile(r"^(?P<before>.*?)^```python\n(?P<code>.*?)^```", re.MULTILINE | re.DOTALL)


def python_blocks(text: str) -> list[str]:
    """The ```python blocks of a Markdown text, in order, but those announced by a line
    ``<!-- example: not run (why) -->`` just above them."""
    blocks, rest = [], text
    while match := FENCE.search(rest):
        before = match["before"].rstrip().splitlines()
        if not (before and before[-1].startswith(SKIP)):
            blocks.append(match["code"])
        rest = rest[match.end():]
    return blocks


def pages() -> list[Path]:
    return sorted(p for p in DOCS.rglob("*.md") if "hooks" not in p.parts)


#: run in a fresh interpreter, so that examples that register a method or set a seed leave this
#: process alone; one namespace per page, the page's blocks in order
_RUNNER = """
import json, sys, traceback
failures = []
for page, blocks in json.load(sys.stdin).items():
    namespace = {"__name__": "__docs__"}
    for k, code in enumerate(blocks):
        try:
            exec(compile(code, f"{page}, example {k + 1}", "exec"), namespace)
        except Exception:
            failures.append(f"{page}, example {k + 1}:\\n{traceback.format_exc()}")
            break
print("\\n".join(failures))
sys.exit(1 if failures else 0)
"""


def run_examples(sources: dict[str, str], cwd: Path) -> subprocess.CompletedProcess:
    """Run the Python examples of ``{name: markdown}`` in a fresh interpreter in ``cwd``."""
    blocks = {name: python_blocks(text) for name, text in sources.items()}
    env = {**os.environ, "MPLBACKEND": "Agg", "OMP_NUM_THREADS": "1"}
    return subprocess.run([sys.executable, "-c", _RUNNER], input=json.dumps(blocks), text=True,
                          capture_output=True, cwd=cwd, env=env, timeout=600)


def test_python_blocks_are_found_and_skipped_as_announced():
    text = "a\n```python\nx = 1\n```\n<!-- example: not run (needs a GPU) -->\n```python\ny = 2\n```\n"
    assert python_blocks(text) == ["x = 1\n"]


def test_every_page_is_in_the_nav_or_a_study_page():
    nav = (ROOT / "mkdocs.yml").read_text()
    missing = [str(p.relative_to(DOCS)) for p in pages() if str(p.relative_to(DOCS)) not in nav]
    assert not missing, f"pages not in mkdocs.yml's nav: {missing}"


@pytest.mark.slow
def test_docs_examples_run(tmp_path):
    sources = {str(p.relative_to(DOCS)): p.read_text() for p in pages()
               if str(p.relative_to(DOCS)) not in RUN_ELSEWHERE}
    assert sum(len(python_blocks(t)) for t in sources.values()) >= 15
    result = run_examples(sources, tmp_path)
    assert result.returncode == 0, result.stdout[-6000:] + result.stderr[-3000:]


@pytest.mark.slow
def test_docs_build_strict(tmp_path):
    pytest.importorskip("mkdocs", reason="the docs build needs the docs extra: pip install -e '.[docs]'")
    pytest.importorskip("material", reason="the docs build needs mkdocs-material: pip install -e '.[docs]'")
    pytest.importorskip("mkdocstrings", reason="the docs build needs mkdocstrings: pip install -e '.[docs]'")
    pytest.importorskip("mkdocs_jupyter", reason="the docs build needs mkdocs-jupyter: pip install -e '.[docs]'")
    site = tmp_path / "site"
    env = {**os.environ, "NO_MKDOCS_2_WARNING": "1"}
    result = subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(site)],
                            cwd=ROOT, capture_output=True, text=True, env=env, timeout=600)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-6000:]
    reference = (site / "api" / "evaluation" / "index.html").read_text()
    for name in ("expected_calibration_error", "mutual_information", "ood_metrics", "interval_coverage"):
        assert f'id="bayesdl.evaluation.{name}"' in reference, f"{name} is missing from the API reference"
    assert (site / "notebooks" / "week3_uncertainty_applications" / "index.html").is_file()
