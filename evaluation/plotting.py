"""Figures shared by the studies: reliability diagrams, precision-recall and ROC curves, the
central intervals of a regression predictive, and maps of a classifier's predictive over a 2-D
input plane (:func:`grid_inputs`, :func:`plot_probability_map`).

Every helper draws on a given matplotlib ``Axes`` or makes a new ``Figure`` (without pyplot,
so no GUI backend or global state is involved) and returns the figure. Save it with
:func:`bayesdl.experiments.io.save_figure` to write it atomically.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import torch
from matplotlib.figure import Figure
from sklearn.metrics import precision_recall_curve, roc_curve

from bayesdl.predictions import ClassPrediction, RegressionPrediction

from .calibration import ReliabilityBins

__all__ = ["new_figure", "plot_reliability_diagram", "plot_precision_recall", "plot_roc",
           "plot_predictive_interval", "grid_inputs", "plot_probability_map"]


def new_figure(ncols: int = 1, nrows: int = 1, size: tuple[float, float] = (4.2, 3.6)):
    """A ``Figure`` with a grid of axes, ``size`` per panel; returns ``(fig, axes)``.

    Example::

        >>> from bayesdl.evaluation import new_figure
        >>> fig, axes = new_figure(ncols=2)                 # a Figure, no pyplot state
        >>> axes.shape, fig.get_size_inches().tolist()     # inches: size per panel x panels
        ((1, 2), [8.4, 3.6])
    """
    fig = Figure(figsize=(size[0] * ncols, size[1] * nrows), layout="constrained")
    axes = fig.subplots(nrows, ncols, squeeze=False)
    return fig, axes


def _axes(ax):
    if ax is None:
        fig, axes = new_figure()
        return fig, axes[0, 0]
    return ax.figure, ax


def plot_reliability_diagram(bins: ReliabilityBins, ax=None, title: str | None = None,
                             show_counts: bool = True, legend: bool = True):
    """Bar chart of accuracy per confidence bin against the diagonal of perfect calibration.

    The red part of each bar is the gap to the bin's mean confidence where the bin is over-confident;
    where it is under-confident the gap is hatched in purple inside the bar; the title carries
    the ECE. With ``show_counts`` a faint histogram of the examples per bin is drawn too.
    ``legend=False`` leaves the legend out (for all but one panel of a grid of diagrams).

    Example::

        >>> import torch
        >>> from bayesdl.evaluation import plot_reliability_diagram, reliability_bins
        >>> probs = torch.tensor([[0.9, 0.1], [0.9, 0.1], [0.6, 0.4], [0.3, 0.7]])
        >>> bins = reliability_bins(probs, torch.tensor([0, 1, 0, 1]), n_bins=5)
        >>> fig = plot_reliability_diagram(bins, title="toy")
        >>> fig.axes[0].get_title().splitlines()
        ['toy', 'ECE = 37.50%']
    """
    fig, ax = _axes(ax)
    edges = bins.edges.numpy()
    width = np.diff(edges)
    left = edges[:-1]
    acc = np.nan_to_num(bins.accuracy.numpy())
    conf = np.nan_to_num(bins.confidence.numpy())
    filled = bins.count.numpy() > 0
    ax.bar(left[filled], acc[filled], width=width[filled], align="edge", color="tab:blue",
           edgecolor="black", linewidth=0.5, label="accuracy")
    # The gap from accuracy to confidence: a red bar above an over-confident bin, purple hatching
    # inside an under-confident one (a transparent fill over the blue bar would read as a third colour).
    over, under = filled & (conf >= acc), filled & (conf < acc)
    ax.bar(left[over], (conf - acc)[over], bottom=acc[over], width=width[over], align="edge",
           color="tab:red", alpha=0.35, edgecolor="tab:red", linewidth=0.5,
           label="gap (over-confident)" if over.any() else None)
    ax.bar(left[under], (acc - conf)[under], bottom=conf[under], width=width[under], align="edge",
           facecolor="none", edgecolor="tab:purple", hatch="////", linewidth=0.5,
           label="gap (under-confident)" if under.any() else None)
    if show_counts:
        share = bins.count.numpy() / max(int(bins.count.sum()), 1)
        ax.bar(left, share, width=width, align="edge", color="gray", alpha=0.25,
               label="share of examples")
    ax.plot([0, 1], [0, 1], "k--", linewidth=1, label="perfect calibration")
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1)
    ax.set_xlabel("confidence (max probability)")
    ax.set_ylabel("accuracy")
    heading = f"ECE = {100 * bins.ece:.2f}%"
    ax.set_title(f"{title}\n{heading}" if title else heading)
    if legend:
        ax.legend(loc="upper left", fontsize="x-small")
    return fig


def plot_precision_recall(curves: Mapping[str, tuple], ax=None, title: str | None = None,
                          positive: str | None = None):
    """Precision-recall curves, one per entry ``name -> (scores, positive)``.

    ``positive`` is a boolean array marking the positive class, and ``scores`` rank the
    positives first (higher = more likely positive). For errors as positives, pass
    ``-confidence``. The legend shows each curve's average precision; a dotted line marks
    the precision of chance, the share of positives (one line per distinct share). The
    ``positive`` argument of the function names the positive class on the figure.

    Example (errors as positives, ranked by low confidence)::

        >>> import numpy as np
        >>> from bayesdl.evaluation import plot_precision_recall
        >>> confidence = np.array([0.9, 0.8, 0.7, 0.6])
        >>> errors = np.array([False, False, False, True])
        >>> fig = plot_precision_recall({"max probability": (-confidence, errors)}, positive="errors")
        >>> [text.get_text() for text in fig.axes[0].get_legend().get_texts()]
        ['max probability (AP 100.0%)', 'chance (share of positives 25.0%)']
    """
    from sklearn.metrics import average_precision_score

    fig, ax = _axes(ax)
    chance = {}
    for name, (scores, is_positive) in curves.items():
        scores = np.asarray(scores, dtype=float)
        is_positive = np.asarray(is_positive, dtype=bool)
        precision, recall, _ = precision_recall_curve(is_positive, scores)
        ap = average_precision_score(is_positive, scores)
        ax.step(recall, precision, where="post", label=f"{name} (AP {100 * ap:.1f}%)")
        chance.setdefault(round(float(is_positive.mean()), 4), name)
    for share in chance:
        ax.axhline(share, color="gray", linestyle=":", linewidth=1,
                   label=f"chance (share of positives {100 * share:.1f}%)" if len(chance) == 1 else None)
    if len(chance) > 1:
        ax.plot([], [], color="gray", linestyle=":", linewidth=1,
                label="chance: " + ", ".join(f"{100 * v:.1f}%" for v in chance) + " positives")
    ax.set_xlabel(f"recall (share of {positive} found)" if positive else "recall")
    ax.set_ylabel(f"precision (share of flagged that are {positive})" if positive else "precision")
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1.02)
    if title:
        ax.set_title(title, fontsize="medium")
    ax.legend(loc="best", fontsize="x-small")
    return fig


def plot_roc(curves: Mapping[str, tuple], ax=None, title: str | None = None, positive: str | None = None,
             log_fpr: bool = False):
    """ROC curves, one per entry ``name -> (scores, positive)``; the legend shows the AUROC.

    The ``positive`` argument of the function names the positive class, which the axis labels
    then spell out (the AUROC does not depend on the choice, but the curve is mirrored by it).
    ``log_fpr`` puts the false-positive rate on a log scale from one negative (``1 / n``) to 1:
    detectors whose AUROCs all exceed 97% differ in the low-FPR corner a linear axis squeezes.

    Example (in-distribution inputs as positives)::

        >>> import numpy as np
        >>> from bayesdl.evaluation import plot_roc
        >>> scores = np.array([0.9, 0.8, 0.95, 0.6, 0.5, 0.7, 0.55])
        >>> is_in = np.array([True, True, True, True, False, False, False])
        >>> fig = plot_roc({"max probability": (scores, is_in)}, positive="in-distribution")
        >>> [text.get_text() for text in fig.axes[0].get_legend().get_texts()]
        ['max probability (AUROC 91.7%)', 'chance']
    """
    from sklearn.metrics import roc_auc_score

    fig, ax = _axes(ax)
    negatives = 1
    for name, (scores, is_positive) in curves.items():
        scores = np.asarray(scores, dtype=float)
        is_positive = np.asarray(is_positive, dtype=bool)
        fpr, tpr, _ = roc_curve(is_positive, scores)
        auc = roc_auc_score(is_positive, scores)
        ax.plot(fpr, tpr, label=f"{name} (AUROC {100 * auc:.1f}%)")
        negatives = max(negatives, int((~is_positive).sum()))
    chance = np.logspace(-np.log10(negatives), 0, 200) if log_fpr else np.array([0.0, 1.0])
    ax.plot(chance, chance, "k:", linewidth=1, label="chance")
    xlabel = f"false-positive rate (others taken for {positive})" if positive else "false-positive rate"
    if log_fpr:
        ax.set_xscale("log")
        ax.set_xlim(1.0 / negatives, 1.0)
        xlabel += ", log scale"
    ax.set_xlabel(xlabel)
    ax.set_ylabel(f"true-positive rate ({positive} found)" if positive else "true-positive rate")
    if title:
        ax.set_title(title, fontsize="medium")
    ax.legend(loc="lower right", fontsize="x-small")
    return fig


def plot_predictive_interval(x, prediction: RegressionPrediction, y=None, levels=(0.5, 0.95), ax=None,
                             title: str | None = None, xlabel: str = "x", ylabel: str = "y"):
    """The predictive of a regression model along a 1-D input: a band per central interval of
    ``levels`` (:meth:`RegressionPrediction.interval`, the mixture's own intervals, whose
    coverage :func:`~bayesdl.evaluation.interval_coverage` reports -- not ``mean +- 1.96 sd``),
    the predictive mean, and the data points ``y`` when given. Points are drawn sorted by ``x``.

    ``x``: the inputs ``[N]`` (or ``[N, 1]``) at which ``prediction`` (``[S, N]``) was made;
    ``y``: optional targets ``[N]``. Returns the figure.

    Example::

        >>> import torch
        >>> from bayesdl.evaluation import RegressionPrediction, plot_predictive_interval
        >>> x = torch.linspace(-1, 1, 5)
        >>> prediction = RegressionPrediction(torch.stack([x, x + 0.1]), torch.full((2, 5), 0.2))
        >>> fig = plot_predictive_interval(x, prediction, y=x ** 2, levels=(0.5, 0.9))
        >>> [text.get_text() for text in fig.axes[0].get_legend().get_texts()]
        ['90% interval', '50% interval', 'predictive mean', 'data']
    """
    if not isinstance(prediction, RegressionPrediction):
        raise TypeError(f"prediction must be a RegressionPrediction (from Posterior.predict on a regression "
                        f"model), got {type(prediction).__name__}")
    x = np.asarray(x.detach().cpu() if isinstance(x, torch.Tensor) else x, dtype=float)
    if x.ndim == 2 and x.shape[1] == 1:
        x = x[:, 0]
    if x.ndim != 1:
        raise ValueError(f"plot_predictive_interval draws along one input: x must have shape [N] or [N, 1], "
                         f"got {x.shape}; for inputs of several features plot against one of them "
                         "(e.g. x[:, j]) or against the index")
    if prediction.mean.dim() != 2 or prediction.mean.shape[1] != len(x):
        raise ValueError(f"prediction must have shape [S, N] with N = len(x) = {len(x)}, got "
                         f"{tuple(prediction.mean.shape)}")
    if isinstance(levels, (int, float)) and not isinstance(levels, bool):
        levels = [levels]
    levels = sorted((float(level) for level in levels), reverse=True)  # widest band first, underneath
    order = np.argsort(x, kind="stable")
    xs = x[order]
    fig, ax = _axes(ax)
    for k, level in enumerate(levels):
        lower, upper = prediction.interval(level)
        alpha = 0.2 + 0.35 * k / max(1, len(levels) - 1) if len(levels) > 1 else 0.3
        ax.fill_between(xs, lower.cpu().numpy()[order], upper.cpu().numpy()[order], color="C0",
                        alpha=alpha, linewidth=0, label=f"{100 * level:g}% interval")
    ax.plot(xs, prediction.predictive_mean.detach().cpu().double().numpy()[order], color="C0",
            linewidth=1.5, label="predictive mean")
    if y is not None:
        y = np.asarray(y.detach().cpu() if isinstance(y, torch.Tensor) else y, dtype=float).reshape(-1)
        if len(y) != len(x):
            raise ValueError(f"y must have one target per input ({len(x)}), got {len(y)}")
        ax.scatter(x, y, s=8, color="k", alpha=0.6, zorder=3, label="data")
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    if title:
        ax.set_title(title, fontsize="medium")
    ax.legend(loc="best", fontsize="x-small")
    return fig


def grid_inputs(extent: float | tuple[float, float, float, float], resolution: int = 80) -> torch.Tensor:
    """A square grid of 2-D inputs ``[resolution^2, 2]`` (row by row, ``x_1`` fastest) over
    ``extent``: a half-width ``a`` (the square ``[-a, a]^2``) or ``(x1_min, x1_max, x2_min,
    x2_max)``. Predict on it and draw with :func:`plot_probability_map`.

    >>> grid = grid_inputs(3.0, resolution=4)
    >>> grid.shape, grid[:2].tolist()
    (torch.Size([16, 2]), [[-3.0, -3.0], [-1.0, -3.0]])
    """
    if isinstance(extent, (int, float)) and not isinstance(extent, bool):
        if not extent > 0:
            raise ValueError(f"extent must be a positive half-width, got {extent}")
        bounds = (-float(extent), float(extent), -float(extent), float(extent))
    else:
        bounds = tuple(float(b) for b in extent)
        if len(bounds) != 4 or not (bounds[0] < bounds[1] and bounds[2] < bounds[3]):
            raise ValueError("extent must be a half-width or (x1_min, x1_max, x2_min, x2_max) with each "
                             f"min below its max, got {extent!r}")
    if not isinstance(resolution, int) or isinstance(resolution, bool) or resolution < 2:
        raise ValueError(f"resolution must be an integer >= 2 (points per side), got {resolution!r}")
    a1 = torch.linspace(bounds[0], bounds[1], resolution)
    a2 = torch.linspace(bounds[2], bounds[3], resolution)
    g1, g2 = torch.meshgrid(a1, a2, indexing="xy")
    return torch.stack([g1.reshape(-1), g2.reshape(-1)], 1)


_MAP_QUANTITIES = ("probability", "entropy", "mutual_information")


def plot_probability_map(grid: torch.Tensor, probs, x=None, y=None, *, quantity: str = "probability",
                         class_index: int = 1, ax=None, title: str | None = None, colorbar: bool = True):
    """A classifier's predictive over a 2-D input plane, with the training points.

    ``grid``: the inputs of :func:`grid_inputs`; ``probs``: the prediction made on them -- a
    :class:`~bayesdl.predictions.ClassPrediction`, samples ``[S, N, C]`` or a predictive ``[N, C]``
    (``N = len(grid)``). ``quantity``: ``"probability"`` (the predictive probability of
    ``class_index``, on a fixed 0-1 scale), ``"entropy"`` (of the predictive, nats) or
    ``"mutual_information"`` (epistemic, nats; needs samples). ``x``, ``y``: points ``[M, 2]`` and
    their labels to draw on top (a marker per class). Returns the figure.

    >>> import torch
    >>> grid = grid_inputs(2.0, resolution=10)
    >>> probs = torch.sigmoid(3 * grid[:, :1]) * torch.tensor([[-1.0, 1.0]]) + torch.tensor([[1.0, 0.0]])
    >>> fig = plot_probability_map(grid, probs, grid[::7], (grid[::7, 0] > 0).long(), title="p(y = 1 | x)")
    >>> fig.axes[0].get_title()
    'p(y = 1 | x)'
    """
    from .uncertainty import mutual_information, predictive_entropy

    if quantity not in _MAP_QUANTITIES:
        raise ValueError(f"quantity must be one of {_MAP_QUANTITIES}, got {quantity!r}")
    grid = torch.as_tensor(grid).detach().cpu()
    side = round(len(grid) ** 0.5)
    if grid.dim() != 2 or grid.shape[1] != 2 or side * side != len(grid) or side < 2:
        raise ValueError(f"grid must be the [R^2, 2] inputs of grid_inputs(extent, R), "
                         f"got {tuple(grid.shape)}")
    samples = probs.probs if isinstance(probs, ClassPrediction) else torch.as_tensor(probs)
    samples = samples.detach().cpu().double()
    if samples.dim() not in (2, 3) or samples.shape[-2] != len(grid):
        raise ValueError(f"probs must be a ClassPrediction, [S, N, C] or [N, C] with N = len(grid) = "
                         f"{len(grid)}, got {tuple(samples.shape)}")
    predictive = samples.mean(0) if samples.dim() == 3 else samples
    if quantity == "probability":
        if not 0 <= class_index < predictive.shape[-1]:
            raise ValueError(f"class_index must name one of the {predictive.shape[-1]} classes, "
                             f"got {class_index}")
        field, levels, cmap = predictive[:, class_index], np.linspace(0, 1, 11), "RdBu_r"
        label = f"p(y = {class_index} | x)"
    elif quantity == "entropy":
        field, cmap, label = predictive_entropy(predictive[None]), "viridis", "predictive entropy (nats)"
        levels = np.linspace(0, float(np.log(predictive.shape[-1])), 11)
    else:
        if samples.dim() != 3:
            raise ValueError("the mutual information needs posterior samples: pass a ClassPrediction or "
                             "probs [S, N, C], not the predictive [N, C]")
        field, cmap, label = mutual_information(samples), "magma", "mutual information (nats)"
        levels = np.linspace(0, max(float(field.max()), 1e-6), 11)
    g1, g2 = grid[:, 0].reshape(side, side).numpy(), grid[:, 1].reshape(side, side).numpy()
    fig, ax = _axes(ax)
    image = ax.contourf(g1, g2, field.reshape(side, side).numpy(), levels=levels, cmap=cmap)
    if colorbar:
        fig.colorbar(image, ax=ax, label=label)
    if x is not None:
        x = np.asarray(x.detach().cpu() if isinstance(x, torch.Tensor) else x, dtype=float)
        labels = None if y is None else np.asarray(y.detach().cpu() if isinstance(y, torch.Tensor) else y)
        if x.ndim != 2 or x.shape[1] != 2 or (labels is not None and len(labels) != len(x)):
            raise ValueError("x must be points [M, 2] and y (optional) one label per point")
        markers = "o^sDvP*X"
        for k, cls in enumerate([None] if labels is None else np.unique(labels)):
            chosen = x if cls is None else x[labels == cls]
            ax.scatter(chosen[:, 0], chosen[:, 1], marker=markers[k % len(markers)], s=14,
                       c="white" if k % 2 == 0 else "black", edgecolors="black" if k % 2 == 0 else "white",
                       linewidths=0.6, label=None if cls is None else f"class {cls}")
        if labels is not None:
            ax.legend(loc="upper right", fontsize="x-small")
    ax.set(xlabel="$x_1$", ylabel="$x_2$")
    if title:
        ax.set_title(title, fontsize="medium")
    return fig
