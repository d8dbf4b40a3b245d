"""The examples in the library's docstrings run (doctest), module by module, imported under their
installed names (``bayesdl.evaluation.uncertainty``; ``pytest --doctest-modules evaluation/`` would
import them under the bare folder name, which the packages refuse); and every public function and
class has one (issue 36)."""

from __future__ import annotations

import doctest
import importlib
import inspect
import pkgutil

import pytest

#: each package, and the fewest docstring examples it holds today (a floor, so that a test finding
#: no example fails rather than passing on nothing)
PACKAGES = {"bayesdl": 19, "bayesdl.models": 109, "bayesdl.inference": 447, "bayesdl.evaluation": 356}

#: docstring examples known to fail, with why; each must still fail (strict), so that a fix shows
KNOWN_FAILURES: dict[str, str] = {}

#: public names (functions and classes in the ``__all__`` of the packages) whose own docstring may
#: hold no example, with why; each must still lack one (strict). Keep it empty, or nearly so.
NO_EXAMPLE: dict[str, str] = {}


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


def _public_names() -> dict[str, object]:
    """``{name: object}`` of the functions and classes in the ``__all__`` of the packages (a name
    re-exported by several of them, such as ``ClassPrediction``, is one object)."""
    public = {}
    for package in PACKAGES:
        module = importlib.import_module(package)
        for name in getattr(module, "__all__", ()):
            obj = getattr(module, name)
            if inspect.isfunction(obj) or inspect.isclass(obj):
                public[name] = obj
    return public


def test_every_public_name_has_an_example():
    # the object's own docstring (``__doc__``, not a base class's that inspect.getdoc would inherit)
    public = _public_names()
    missing = sorted(name for name, obj in public.items()
                     if ">>>" not in (obj.__doc__ or "") and name not in NO_EXAMPLE)
    assert not missing, (f"public names without a docstring example (an Example:: section with >>> lines "
                         f"that show how it is called and what it returns): {missing}")
    stale = sorted(name for name in NO_EXAMPLE if name not in public or ">>>" in (public[name].__doc__ or ""))
    assert not stale, f"{stale} have an example now, or are no public name: remove them from NO_EXAMPLE"
