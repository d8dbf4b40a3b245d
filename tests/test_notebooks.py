"""The practical sessions' notebooks (notebooks/*.py, jupytext percent format) run top to bottom
on a real Jupyter kernel at their small size (BAYESDL_NOTEBOOK_SMALL=1) and save their figures."""

from __future__ import annotations

from pathlib import Path

import pytest

jupytext = pytest.importorskip("jupytext", reason="the notebook tests need jupytext (pip install -e '.[test]')")
nbclient = pytest.importorskip("nbclient", reason="the notebook tests need nbclient (pip install -e '.[test]')")
pytest.importorskip("ipykernel", reason="the notebook tests need ipykernel (pip install -e '.[test]')")

NOTEBOOKS = Path(__file__).resolve().parents[1] / "notebooks"

#: the figures each notebook must save, one per question it answers with a figure
FIGURES = {
    "week1_bayesian_linear_regression": ["q1_4_predictive_distribution", "q1_5_barycenter",
                                         "q2_4_gaussian_basis", "evidence"],
    "week2_bayesian_neural_networks": ["q1_2_map_laplace", "q1_3_variational", "nuts_logistic",
                                       "q2_1_vi_vs_dropout"],
    "week3_uncertainty_applications": ["i1_confident_uncertain", "i1_histograms", "reliability",
                                       "ii_failure_precision_recall", "iii_ood_precision_recall"],
}


def _execute(name: str, tmp_path: Path, monkeypatch) -> tuple:
    """Convert ``notebooks/<name>.py`` with jupytext and execute it with nbclient in ``tmp_path``;
    return the executed notebook and the folder of its figures."""
    figures = tmp_path / "figures"
    monkeypatch.setenv("BAYESDL_NOTEBOOK_SMALL", "1")
    monkeypatch.setenv("BAYESDL_NOTEBOOK_FIGURES", str(figures))
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    notebook = jupytext.read(NOTEBOOKS / f"{name}.py")
    client = nbclient.NotebookClient(notebook, timeout=300, kernel_name="python3",
                                     resources={"metadata": {"path": str(tmp_path)}})
    client.execute()  # raises CellExecutionError, with the cell and its traceback, if a cell fails
    return notebook, figures


def _check(notebook, figures: Path, expected: list[str]) -> None:
    code = [cell for cell in notebook.cells if cell.cell_type == "code"]
    assert code and all(cell.get("execution_count") for cell in code), "every code cell must have run"
    errors = [o for cell in code for o in cell.get("outputs", []) if o.get("output_type") == "error"]
    assert not errors
    for stem in expected:
        path = figures / f"{stem}.png"
        assert path.is_file(), f"the notebook did not save {path.name}"
        assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        assert path.stat().st_size > 10_000, f"{path.name} is almost empty ({path.stat().st_size} bytes)"


@pytest.mark.slow
@pytest.mark.parametrize("name", ["week1_bayesian_linear_regression", "week2_bayesian_neural_networks"])
def test_notebook_runs_and_saves_its_figures(name, tmp_path, monkeypatch):
    notebook, figures = _execute(name, tmp_path, monkeypatch)
    _check(notebook, figures, FIGURES[name])


@pytest.mark.slow
@pytest.mark.data
def test_week3_notebook_runs_on_mnist(data_root, tmp_path, monkeypatch):
    monkeypatch.setenv("BAYESDL_DATA", str(data_root))
    name = "week3_uncertainty_applications"
    notebook, figures = _execute(name, tmp_path, monkeypatch)
    _check(notebook, figures, FIGURES[name])


def test_every_notebook_is_tested_and_in_percent_format():
    sources = sorted(p.stem for p in NOTEBOOKS.glob("*.py"))
    assert sources == sorted(FIGURES)
    for stem in sources:
        text = (NOTEBOOKS / f"{stem}.py").read_text()
        assert "format_name: percent" in text and "# %% [markdown]" in text
