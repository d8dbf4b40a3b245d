"""Checks of the figures a test can make: titles that do not overlap, legends whose entries differ
in colour, axes with labels, marks only where they mean something."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch
from matplotlib.colors import to_rgba

az = pytest.importorskip("arviz")

from bayesdl.evaluation.diagnostics import plot_rank, plot_trace, summary, worst_components  # noqa: E402
from bayesdl.evaluation.plotting import plot_reliability_diagram  # noqa: E402


def _chains(rng, chains=2, draws=60, width=3):
    w = rng.normal(size=(chains, draws, width))
    w[0, :, 1] += 2.0
    return az.from_dict(posterior={"body.0.weight": w, "head.bias": rng.normal(size=(chains, draws))})


def _draw(fig):
    """Draw ``fig`` (a pyplot-free Figure) on an Agg canvas; returns the renderer."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    canvas = FigureCanvasAgg(fig)
    canvas.draw()
    return canvas.get_renderer()


def _no_overlap(boxes):
    for i, a in enumerate(boxes):
        for b in boxes[i + 1:]:
            assert not a.overlaps(b), f"{a} overlaps {b}"


def test_rank_plot_titles_neither_overlap_nor_leave_the_figure():
    fig = plot_rank(worst_components(_chains(np.random.default_rng(0)), count=4))
    renderer = _draw(fig)
    boxes = [ax.title.get_window_extent(renderer) for ax in fig.axes if ax.get_title()]
    assert len(boxes) == 4
    _no_overlap(boxes)
    width = fig.bbox.width
    assert all(b.x0 >= 0 and b.x1 <= width for b in boxes)


def test_trace_plot_has_labels_one_title_per_column_and_a_chain_legend():
    fig = plot_trace(worst_components(_chains(np.random.default_rng(1)), count=3))
    _draw(fig)
    axes = fig.axes
    titles = [ax.get_title() for ax in axes if ax.get_title()]
    assert len(titles) == len(set(titles)) == 2
    assert all(ax.get_ylabel() for ax in axes)
    assert axes[-1].get_xlabel() and axes[-2].get_xlabel()
    (legend,) = fig.legends
    assert [t.get_text() for t in legend.get_texts()] == ["chain 0", "chain 1"]
    colours = {to_rgba(line.get_color()) for line in axes[1].lines}
    assert len(colours) == 2
    assert all((line.get_alpha() or 1.0) >= 0.8 for line in axes[1].lines)


def _bins(under: bool):
    from bayesdl.evaluation.calibration import reliability_bins

    rng = np.random.default_rng(0)
    conf = torch.tensor(rng.uniform(0.5, 1.0, 2000))
    p = conf.clamp(max=0.99) if under else conf ** 2
    correct = torch.tensor(rng.uniform(size=2000)) < (0.5 + 0.5 * p if under else p)
    probs = torch.stack([1 - conf, conf], -1)
    labels = torch.where(correct, torch.ones(2000, dtype=torch.long), torch.zeros(2000, dtype=torch.long))
    return reliability_bins(probs, labels, n_bins=10)


def _legend_colours(ax):
    out = []
    for handle in ax.get_legend().legend_handles:
        if hasattr(handle, "get_facecolor") and to_rgba(handle.get_facecolor())[3] > 0:
            out.append(to_rgba(handle.get_facecolor())[:3])
        elif hasattr(handle, "get_edgecolor") and not hasattr(handle, "get_xdata"):
            out.append(to_rgba(handle.get_edgecolor())[:3])
        else:
            out.append(to_rgba(handle.get_color())[:3])
    return out


@pytest.mark.parametrize("under", [False, True])
def test_reliability_diagram_legend_entries_differ_in_colour(under):
    pytest.importorskip("bayesdl.evaluation.calibration")
    try:
        bins = _bins(under)
    except (ImportError, AttributeError, TypeError):
        pytest.skip("reliability_bins has another signature")
    fig = plot_reliability_diagram(bins)
    ax = fig.axes[0]
    colours = _legend_colours(ax)
    assert len(colours) == len(set(colours)), colours
    assert ax.get_xlabel() and ax.get_ylabel()


def test_summary_of_one_chain_is_short_and_its_hdis_hold_their_means():
    rng = np.random.default_rng(0)
    masked = (rng.random((1, 200, 40)) > 0.02) * rng.normal(size=40)  # a dropout-masked weight: two points
    idata = az.from_dict(posterior={"w": rng.normal(size=(1, 200, 50)), "m": masked,
                                    "fixed": np.ones((1, 200, 3))})
    with pytest.warns(UserWarning, match="point-mass"):
        table = summary(idata, max_components=30)
    assert len(table) == 30 and not any(i.startswith("fixed") for i in table.index)
    low, high = table["hdi_3%"], table["hdi_97%"]
    held = low.isna() | ((low <= table["mean"]) & (table["mean"] <= high))
    assert held.all()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        everything = summary(idata, max_components=None)
    never_dropped = int((masked[0] == masked[0, :1]).all(0).sum())  # every draw equal: a point mass
    assert len(everything) == 50 + 40 - never_dropped
    assert everything.loc[[i for i in everything.index if i.startswith("m[")], "hdi_3%"].isna().any()
    assert any("point-mass" in note for note in everything.attrs["notes"])


def test_variance_minimum_marked_only_where_it_is_one():
    from bayesdl.experiments.studies.regression.figures import meaningful_minimum

    grid = np.linspace(-1, 1, 201)
    assert meaningful_minimum(0.08 + grid ** 2) == 100
    plateau = 0.08 + np.exp(-((grid - 0.2) / 0.1) ** 2)  # the noise floor far from the data
    assert meaningful_minimum(plateau) is None
    assert meaningful_minimum(grid + 2.0) is None  # at the edge of the grid


def test_every_axes_of_the_regression_figures_is_labelled(tmp_path):
    from bayesdl.experiments.studies.regression import figures

    captured = {}

    class Ctx:
        def figure(self, fig, name):
            captured[name.removesuffix(".png")] = fig
            return name

    grid = np.linspace(-1, 2, 101)
    variance = 0.08 + np.exp(-((grid - 0.5) / 0.3) ** 2)
    figures.setting_figure(Ctx(), "g", "t", np.array([0.4, 0.6]), np.array([0.0, 1.0]), grid,
                           np.zeros_like(grid), variance)
    fig = captured["g"]
    _draw(fig)
    for ax in fig.axes:
        assert ax.get_xlabel() and ax.get_ylabel()
        for line in ax.lines:  # no marker clipped by the axes
            if line.get_marker() not in (None, "None", "", " "):
                x, y = line.get_xdata(), line.get_ydata()
                (x0, x1), (y0, y1) = ax.get_xlim(), ax.get_ylim()
                assert np.all((x > x0) & (x < x1) & (y > y0) & (y < y1))
