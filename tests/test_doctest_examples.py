"""The examples in the library's docstrings run (doctest), module by module, imported under their
installed names (``bayesdl.evaluation.uncertainty``; ``pytest --doctest-modules evaluation/`` would
import them under the bare folder name, which the packages refuse)."""

from __future__ import annotations

import doctest
import importlib
import pkgutil

import pytest

#: each package, and the fewest docstring examples it holds today (a floor, so that a test finding
#: no example fails rather than passing on nothing)
PACKAGES = {"bayesdl": 3, "bayesdl.models": 15, "bayesdl.inference": 3, "bayesdl.evaluation": 30}

#: docstring examples known to fail, with why; each must still fail (strict), so that a fix shows
KNOWN_FAILURES: dict[str, str] = {}


def _modules(package: str) -> list[str]:
    root = importlib.import_module(package)
    return [f"{package}.{m.name}" for m in pkgutil.iter_modules(root.__path__)
            if f"{package}.{m.name}" not in PACKAGES]


def _run(name: str) -> doctest.TestResults:
    module = importlib.import_module(name)
    flags = doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE
    runner = doctest.DocTestRunner(optionflags=flags, verbose=False)
    for test in doctest.DocTestFinder().find(module, name):
        runner.run(test, out=lambda _text: None)
    return runner.summarize(verbose=False)


@pytest.mark.parametrize("package", PACKAGES)
def test_docstring_examples_run(package):
    results = {name: _run(name) for name in [package, *_modules(package)]}
    failing = sorted(name for name, r in results.items() if r.failed and name not in KNOWN_FAILURES)
    assert not failing, f"docstring examples fail in {failing}: run python -m doctest on them"
    fixed = sorted(name for name in KNOWN_FAILURES if name in results and not results[name].failed)
    assert not fixed, f"{fixed} pass now: remove them from KNOWN_FAILURES"
    examples = sum(r.attempted for r in results.values())
    assert examples >= PACKAGES[package], f"{package} holds only {examples} docstring examples"
