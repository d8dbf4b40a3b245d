"""The studies half has the library's shape: methods as data, one lab, options declared once.

Read from the source with :mod:`ast` where it is about the code (nothing is run), through the
public API where it is about behaviour.
"""

from __future__ import annotations

import ast
import dataclasses
import re
from pathlib import Path

import pytest

from bayesdl.experiments.catalogue import STUDIES, FailureOptions, ReducedRunOptions
from bayesdl.experiments.methods import MethodSpec
from bayesdl.inference import METHODS

ROOT = Path(__file__).resolve().parents[1]
#: the folders where a method must never be told apart by its name
NAME_BLIND = ("experiments", "evaluation")
MAX_FUNCTION_LINES = 60
MAX_STUDY_LINES = 330  # "about 300"


def _sources(*folders):
    for folder in folders:
        yield from sorted((ROOT / folder).rglob("*.py"))


def _string(node) -> str | None:
    return node.value if isinstance(node, ast.Constant) and isinstance(node.value, str) else None


def _names_a_method(node) -> bool:
    """A string constant, or a tuple/list/set of them, with a registered method's name."""
    if isinstance(node, (ast.Tuple, ast.List, ast.Set)):
        return any(_string(e) in METHODS for e in node.elts)
    return _string(node) in METHODS


def _is_a_method(node) -> bool:
    """``method``, ``spec.method``, ``recipe.method``, ``member_method``...: what names a method."""
    name = node.id if isinstance(node, ast.Name) else node.attr if isinstance(node, ast.Attribute) else ""
    return "method" in name


def test_no_study_or_metric_tells_methods_apart_by_name():
    """No comparison of a method with a registered method's name (``method == "nuts"``,
    ``spec.method in ("laplace", "swag")``), and no ``getattr(self, f"_{method}")`` dispatch, in
    experiments/ or evaluation/. (A report's prose may still single out its rows by key.)"""
    found = []
    for path in _sources(*NAME_BLIND):
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            sides = (node.left, *node.comparators) if isinstance(node, ast.Compare) else ()
            if any(map(_is_a_method, sides)) and any(map(_names_a_method, sides)):
                found.append(f"{path.relative_to(ROOT)}:{node.lineno}: {ast.unparse(node)}")
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "getattr":
                if len(node.args) > 1 and isinstance(node.args[1], ast.JoinedStr):
                    found.append(f"{path.relative_to(ROOT)}:{node.lineno}: {ast.unparse(node)}")
    assert not found, "methods told apart by name (declare it in the registry or the spec):\n" + "\n".join(found)


def test_no_table_keyed_by_method_names():
    """A dict literal with two or more registered method names as keys is a per-method table
    (labels, options, behaviour) -- the spec's job -- unless it only maps rows to the specs
    behind them (every value a registered method's name)."""
    found = []
    for path in _sources(*NAME_BLIND):
        for node in ast.walk(ast.parse(path.read_text())):
            if not isinstance(node, ast.Dict):
                continue
            keys = [_string(k) for k in node.keys if k is not None]
            if sum(k in METHODS for k in keys) < 2:
                continue
            if all(_string(v) in METHODS for v in node.values):
                continue  # row -> spec name
            found.append(f"{path.relative_to(ROOT)}:{node.lineno}: {ast.unparse(node)[:100]}")
    assert not found, "tables keyed by method names:\n" + "\n".join(found)


def test_no_study_sniffs_option_names_for_composition():
    """How methods compose is read from the registry's declaration, never from whether a method
    takes ``map_posterior`` or ``fit_member``."""
    pattern = re.compile(r"""["'](map_posterior|fit_member)["']\s+(not\s+)?in\b""")
    found = [f"{path.relative_to(ROOT)}: {m.group(0)}" for path in _sources(*NAME_BLIND)
             for m in pattern.finditer(path.read_text())]
    assert not found, found


def test_no_private_name_crosses_modules():
    """``posterior._outputs_by_draw``, ``model._sizes``, ``history._end_epoch`` and the like: an
    attribute starting with one underscore read on something other than ``self``/``cls`` in
    experiments/ is a private name crossing modules (dunders and ``_replace``-style namedtuple API aside)."""
    found = []
    for path in _sources("experiments"):
        for node in ast.walk(ast.parse(path.read_text())):
            if (isinstance(node, ast.Attribute) and node.attr.startswith("_") and not node.attr.startswith("__")
                    and not (isinstance(node.value, ast.Name) and node.value.id in ("self", "cls"))):
                found.append(f"{path.relative_to(ROOT)}:{node.lineno}: {ast.unparse(node)}")
    assert not found, found


def _is_template(function: ast.FunctionDef) -> bool:
    """A report: its longest statement is an f-string making up most of its lines."""
    strings = [n for n in ast.walk(function) if isinstance(n, ast.JoinedStr)]
    longest = max((n.end_lineno - n.lineno + 1 for n in strings), default=0)
    return "report" in function.name and longest >= (function.end_lineno - function.lineno + 1) / 2


def test_functions_and_study_files_stay_small():
    """No function of experiments/ over 60 lines (report templates aside), no study file over ~300."""
    long_functions, long_files = [], []
    for path in _sources("experiments"):
        source = path.read_text()
        if "studies" in path.parts and len(source.splitlines()) > MAX_STUDY_LINES:
            long_files.append(f"{path.relative_to(ROOT)}: {len(source.splitlines())} lines")
        for node in ast.walk(ast.parse(source)):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                lines = node.end_lineno - node.lineno + 1
                if lines > MAX_FUNCTION_LINES and not _is_template(node):
                    long_functions.append(f"{path.relative_to(ROOT)}:{node.lineno} {node.name}: {lines} lines")
    assert not long_functions, long_functions
    assert not long_files, long_files


def test_every_registered_method_declares_a_label_and_its_composition():
    for info in METHODS.values():
        assert info.label, info.name
        assert "map_posterior" in info.options or not info.around_map, info.name
        assert ("fit_member" in info.options) == info.is_ensemble, info.name
        if info.is_ensemble:
            assert info.member_of() in METHODS
        if info.checkpoint_option is not None:
            assert info.checkpoint_option in info.options, info.name


def test_a_spec_takes_its_label_from_the_registry_and_refuses_unknown_methods():
    assert MethodSpec("mc_dropout", "dropout").label == METHODS["dropout"].label == "MC dropout"
    assert MethodSpec("multiswag").member == "swag"
    assert MethodSpec("ensemble", options={"member": "laplace"}).member == "laplace"
    assert MethodSpec("laplace").info.around_map and not MethodSpec("map").info.around_map
    with pytest.raises(ValueError, match="unknown inference method 'hmc'"):
        MethodSpec("hmc")


def test_the_failure_networks_are_the_ones_the_study_has_a_schedule_for():
    from bayesdl.experiments.studies.mnist.failure import CONFIDNET

    networks = dataclasses.fields(FailureOptions)[[f.name for f in dataclasses.fields(FailureOptions)]
                                                  .index("networks")].metadata["choices"]
    assert set(networks) == set(CONFIDNET)


# ----------------------------------------------------------------------------------- options
def test_options_are_parsed_by_their_declared_type_with_the_quick_preset():
    options = STUDIES["active-learning"].options
    full, quick = options.parse({}), options.parse({}, quick=True)
    assert (full.seeds, full.max_labels, full.candidates) == (3, 1000, 2000)
    assert (quick.seeds, quick.max_labels, quick.candidates, quick.test_size) == (1, 40, 100, 300)
    given = options.parse({"functions": "bald, random", "candidates": "none", "batchbald": "false",
                           "time_budget": "0.5", "seeds": "2"}, quick=True)
    assert given.functions == ("bald", "random") and given.candidates is None and given.batchbald is False
    assert given.time_budget == 0.5 and given.seeds == 2 and given.max_labels == 40  # the rest: quick preset
    assert options.parse({"seeds": 4}).seeds == 4  # a value of the option's own type is taken as it is


@pytest.mark.parametrize("given, message", [
    ({"sedes": "2"}, r"has no option \['sedes'\]; its options: \['functions', 'seeds'"),
    ({"seeds": "two"}, r"option seeds='two' is not a valid int"),
    ({"seeds": "0"}, r"option seeds must be >= 1, got '0'"),
    ({"candidates": "many"}, r"option candidates='many' is not a valid int \(or none\)"),
    ({"batchbald": "maybe"}, r"option batchbald='maybe' is not a valid bool"),
    ({"functions": "bald,magic"}, r"functions must be a comma-separated subset of \['bald'"),
    ({"functions": ""}, r"functions must be a comma-separated subset"),
    ({"time_budget": "-1"}, r"time_budget must be positive or 0"),
    ({"seeds": 0}, r"option seeds must be >= 1, got 0"),
])
def test_bad_options_are_refused_naming_what_is_valid(given, message):
    with pytest.raises(ValueError, match=message):
        STUDIES["active-learning"].options.parse(given, study="active-learning")


def test_bdl_list_reads_every_option_with_its_help_and_defaults(capsys):
    from bayesdl.experiments.cli import main

    assert main(["list"]) == 0
    out = capsys.readouterr().out
    for study in STUDIES.values():
        for name, text in study.options.describe():
            assert f"{name}: {text}" in out
    assert "max_labels: labels at which a run stops [default 1000; quick 40]" in out
    assert ReducedRunOptions.names() == ("epochs", "samples")
    assert FailureOptions.names()[:2] == ReducedRunOptions.names()  # the reduced run, declared once
