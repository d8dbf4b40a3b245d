"""Shared machinery of the week-2 studies on 2-D data: fit every method, map uncertainty.

Each method is a :class:`~bayesdl.experiments.methods.MethodSpec` fitted by the study's lab
(:class:`Toy2DLab`); everything after the fit goes through the one Posterior interface -- whether a posterior is a point mass or holds a
fixed set of draws is asked of the posterior, never inferred from a method's name.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass

import numpy as np
import torch

from bayesdl.evaluation import calibration_metrics, mutual_information, predictive_entropy
from bayesdl.evaluation.diagnostics import (
    convergence,
    convergence_verdict,
    plot_rank,
    plot_trace,
    save,
    worst_components,
)
from bayesdl.evaluation.plotting import new_figure
from bayesdl.inference import approximate, to_inference_data

from ..diagnose import loo_comparison
from ..lab import Lab
from ..methods import MethodSpec

__all__ = ["Toy2DLab", "Grid", "evaluate_methods", "uncertainty_figure", "curves_figure", "diagnostics"]


class Toy2DLab(Lab):
    """The week-2 studies' lab: every spec fitted to the full data ``(x, y)`` on one model, a
    method declared around a MAP (Laplace) around the lab's MAP spec."""

    def __init__(self, ctx, model, x, y, specs):
        super().__init__(ctx, specs)
        self.model, self.data = model, (x, y)

    def fit(self, spec: MethodSpec, seed: int):
        posterior = approximate(spec.method, self.model, self.data, **spec.options)
        return posterior, posterior.history.seconds if posterior.history is not None else 0.0

    def train_data(self, spec: MethodSpec, seed: int):
        return self.data


@dataclass
class Grid:
    """A square grid of inputs reaching far beyond the data."""

    xx: np.ndarray
    yy: np.ndarray
    points: torch.Tensor
    far: torch.Tensor  # bool [G]: farther than `far_distance` from every training point

    def roughness(self, values: torch.Tensor) -> float:
        """Mean absolute difference between horizontally neighbouring grid values."""
        image = values.reshape(self.xx.shape)
        return float((image[:, 1:] - image[:, :-1]).abs().mean())

    @classmethod
    def around(cls, x: torch.Tensor, extent: float, resolution: int, far_distance: float) -> Grid:
        axis = np.linspace(-extent, extent, resolution)
        xx, yy = np.meshgrid(axis, axis)
        points = torch.tensor(np.stack([xx.ravel(), yy.ravel()], 1), dtype=x.dtype)
        nearest = torch.cdist(points, x).min(1).values
        return cls(xx, yy, points, nearest > far_distance)


def evaluate_methods(lab: Toy2DLab, methods: list[MethodSpec], x_test, y_test, grid: Grid, samples: int,
                     reference: str = "nuts") -> tuple[dict, dict, dict]:
    """Fit each method spec in ``lab``; return ``(posteriors, grid probabilities [S, G, C], metrics)``.

    A point mass is predicted with one draw (its MI is 0); posteriors that draw afresh also get
    the Monte-Carlo error and roughness of a 10-sample map. ``reference`` (NUTS) is what every
    predictive is compared with.
    """
    posteriors, grid_probs, results = {}, {}, {}
    for method in methods:
        posterior = posteriors[method.name] = lab.posterior(method)
        draws = 1 if posterior.is_point_mass else samples
        probs_test = posterior.predict(x_test, num_samples=draws).probs
        grid_probs[method.name] = posterior.predict(grid.points, num_samples=draws).probs
        m = calibration_metrics(probs_test.mean(0), y_test, n_bins=10)
        mean_grid = grid_probs[method.name].mean(0)
        results[method.name] = {
            "accuracy": m["accuracy"],
            "nll": m["nll"],
            "ece": m["ece"],
            "mean_confidence_far": float(mean_grid[grid.far].max(-1).values.mean()),
            "mean_confidence_test": float(probs_test.mean(0).max(-1).values.mean()),
            "mean_mutual_information_far": float(mutual_information(grid_probs[method.name])[grid.far].mean()),
        }
        if not posterior.is_point_mass and posterior.fixed_draws is None:
            # A cheap 10-sample map: its Monte-Carlo error (TV between two independent estimates)
            # and its roughness (mean change of p between neighbouring grid points).
            a = posterior.predict(grid.points, num_samples=10).predictive
            b = posterior.predict(grid.points, num_samples=10).predictive
            results[method.name]["mc_error_10_samples"] = float(0.5 * (a - b).abs().sum(-1).mean())
            results[method.name]["roughness_10_samples"] = grid.roughness(a[:, -1])
    if reference in grid_probs:
        ref = grid_probs[reference].mean(0)
        for name, probs in grid_probs.items():
            tv = 0.5 * (probs.mean(0) - ref).abs().sum(-1)
            results[name]["tv_to_nuts"] = float(tv.mean())
            results[name]["tv_to_nuts_far"] = float(tv[grid.far].mean())
    return posteriors, grid_probs, results


def _outlined(color="white", width=1.2):
    """Line style readable on every colormap: a line of ``color`` with a black outline."""
    from matplotlib import patheffects

    return {"colors": color, "linewidths": width,
            "path_effects": [patheffects.withStroke(linewidth=width + 1.6, foreground="black")]}


#: (class, marker, face, edge): readable on dark and light colormaps alike.
_CLASS_MARKERS = ((0, "o", "white", "black"), (1, "^", "black", "white"))


def _training_points(ax, x, y) -> None:
    """The training points by class: white circles and black triangles."""
    x, y = np.asarray(x), np.asarray(y).reshape(-1)
    for label, marker, face, edge in _CLASS_MARKERS:
        chosen = y == label
        ax.scatter(x[chosen, 0], x[chosen, 1], marker=marker, s=14, c=face, edgecolors=edge, linewidths=0.6)


def uncertainty_figure(methods: list[MethodSpec], posteriors: dict, grid_probs: dict, grid: Grid, x, y,
                       title: str, far_distance: float):
    """Rows: methods; columns: max probability, predictive entropy, mutual information.

    One colour scale per column, shared by every method (so a brighter panel means more of the
    quantity whatever the method), axis labels, the decision boundary, the training points by
    class, and the border of the region "far from the data" that the report's table averages over.
    """
    fig, axes = new_figure(ncols=3, nrows=len(methods), size=(3.1, 2.9))
    values, columns = _uncertainty_maps(methods, posteriors, grid_probs)
    shape = grid.xx.shape
    far = grid.far.reshape(shape).numpy().astype(float)
    images = {}
    for row, method in zip(axes, methods):
        boundary = grid_probs[method.name].mean(0)[:, -1].reshape(shape).numpy()
        for ax, column in zip(row, columns):
            image = _uncertainty_panel(ax, method, posteriors[method.name].is_point_mass,
                                       values[method.name], column, grid, boundary, far, x, y)
            if image is not None:
                images[column[0]] = image
        row[0].set_ylabel("$x_2$")
    for ax in axes[-1]:
        ax.set_xlabel("$x_1$")
    for col, (name, (low, high), _) in enumerate(columns):
        if name in images:
            bar = fig.colorbar(images[name], ax=axes[:, col], shrink=0.5, location="bottom", aspect=25,
                               ticks=np.linspace(low, high, 5), format="%.2f")
            bar.set_label(name, fontsize="small")
            bar.ax.tick_params(labelsize="x-small")
    fig.suptitle(f"{title}\n(one colour scale per column, shared by all methods)")
    fig.legend(handles=_uncertainty_legend(far_distance), loc="outside lower center", ncols=2,
               fontsize="small", facecolor="lightgray")
    return fig


def _uncertainty_maps(methods: list[MethodSpec], posteriors: dict, grid_probs: dict) -> tuple[dict, list]:
    """The three maps of each method on the grid, ``{method: {quantity: [G]}}``, and the columns of
    the figure, ``[(quantity, (low, high), colormap)]``: one scale per quantity, the mutual
    information's up to its largest value among the posteriors that are not point masses."""
    values = {m.name: {"max probability": grid_probs[m.name].mean(0).max(-1).values,
                       "predictive entropy (nats)": predictive_entropy(grid_probs[m.name]),
                       "mutual information (nats)": mutual_information(grid_probs[m.name])}
              for m in methods}
    num_classes = next(iter(grid_probs.values())).shape[-1]
    sampled = [m.name for m in methods if not posteriors[m.name].is_point_mass]
    mi_max = max([float(values[n]["mutual information (nats)"].max()) for n in sampled] + [1e-3])
    columns = [("max probability", (1.0 / num_classes, 1.0), "viridis"),
               ("predictive entropy (nats)", (0.0, math.log(num_classes)), "magma"),
               ("mutual information (nats)", (0.0, mi_max), "magma")]
    return values, columns


def _uncertainty_panel(ax, method: MethodSpec, point_mass: bool, values: dict, column, grid: Grid,
                       boundary, far, x, y):
    """One panel: the map of ``column = (quantity, (low, high), colormap)``, the decision boundary
    (``boundary``: p of the last class), the border of the region ``far`` from the data and the
    training points. Returns the filled contours, or None for the MI of a point mass (a note)."""
    name, (low, high), cmap = column
    shape = grid.xx.shape
    ax.set_title(f"{method.label}: {name}", fontsize="small")
    ax.set_aspect("equal")
    if name.startswith("mutual") and point_mass:
        ax.text(0.5, 0.5, "point estimate:\nno epistemic part (MI = 0)", ha="center", va="center",
                transform=ax.transAxes, fontsize="small")
        ax.set_xticks([])
        ax.set_yticks([])
        return None
    field = values[name].reshape(shape).numpy().clip(low, high)
    image = ax.contourf(grid.xx, grid.yy, field, levels=np.linspace(low, high, 21), cmap=cmap)
    ax.contour(grid.xx, grid.yy, boundary, levels=[0.5], **_outlined())
    if far.any() and far.min() < 1:
        ax.contour(grid.xx, grid.yy, far, levels=[0.5], colors="tab:cyan", linestyles="--", linewidths=1.0)
    _training_points(ax, x, y)
    ax.set_xlim(grid.xx.min(), grid.xx.max())
    ax.set_ylim(grid.yy.min(), grid.yy.max())
    ax.tick_params(labelsize="x-small")
    return image


def _uncertainty_legend(far_distance: float) -> list:
    """The legend of the uncertainty maps: the classes' markers, the decision boundary and the
    border of the region far from the data."""
    from matplotlib.lines import Line2D

    stroke = _outlined()["path_effects"]
    return [
        *(Line2D([], [], linestyle="", marker=marker, markersize=5, markerfacecolor=face, markeredgecolor=edge,
                 label=f"class {label} (training)") for label, marker, face, edge in _CLASS_MARKERS),
        Line2D([], [], color="white", linewidth=1.2, path_effects=stroke, label="decision boundary (p = 0.5)"),
        Line2D([], [], color="tab:cyan", linestyle="--", linewidth=1.0,
               label=f"far from the data: beyond this line (> {far_distance:g} from every training point)"),
    ]


def curves_figure(posteriors: dict, labels: dict):
    """ELBO and its parts per epoch for the methods fitted by SVI, per example.

    A posterior built around another one (Laplace around the MAP) shares its training history:
    that curve is drawn once, labelled with both names.
    """
    fitted = {k: p for k, p in posteriors.items() if p.history is not None and p.history.epoch_elbo}
    shared: dict[int, list[str]] = {}
    for name, posterior in fitted.items():
        shared.setdefault(id(posterior.history), []).append(name)
    fig, axes = new_figure(ncols=3, size=(3.6, 3.0))
    # One line style per method as well as one colour: curves that coincide (the MAP's prior term and
    # MC dropout's, which is a weight decay too) stay visible.
    for names, style in zip(shared.values(), ["-", "--", "-.", ":"] * len(shared)):
        h = fitted[names[0]].history
        label = labels[names[0]] + "".join(f", the mode of {labels[n]}" for n in names[1:])
        n = h.dataset_size
        epochs = np.arange(1, len(h.epoch_elbo) + 1)
        axes[0, 0].plot(epochs, np.array(h.epoch_elbo) / n, style, label=label)
        if h.epoch_log_likelihood:
            axes[0, 1].plot(epochs, np.array(h.epoch_log_likelihood) / n, style, label=label)
            axes[0, 2].plot(epochs, np.array(h.epoch_kl) / n, style, label=label)
    titles = ("ELBO / N (MAP: log joint / N)", "expected log-likelihood / N", "KL / N (MAP: -log prior / N)")
    for ax, title in zip(axes[0], titles):
        ax.set_title(title, fontsize="small")
        ax.set_xlabel("epoch (full batch: one step each)")
        ax.set_ylabel("nats per training example")
        ax.set_xscale("log")
    # One legend for the three panels, below them: inside a panel it hides a curve (the KL panel's
    # mean-field curve runs through the top right corner).
    handles, names = axes[0, 0].get_legend_handles_labels()
    fig.legend(handles, names, loc="outside lower center", ncols=len(handles), fontsize="small")
    fig.suptitle("Training curves of the methods fitted by SVI")
    return fig


def diagnostics(ctx, posteriors: dict, labels: dict, x, y, samples: int) -> tuple[dict, str]:
    """ArviZ: InferenceData per method (saved as .nc), convergence of the methods with several
    chains (NUTS) in words, LOO comparison, rank and trace plots of the worst-mixing components.

    Point masses are saved with one draw and left out of the LOO comparison, which needs a
    posterior. Returns (results to merge, markdown).
    """
    idatas, results, text = {}, {}, []
    with warnings.catch_warnings():
        # Sites a guide keeps at a point (MC dropout's first layer) are left out, by design.
        warnings.filterwarnings("ignore", message=".*point masses.*", category=UserWarning)
        for name, posterior in posteriors.items():
            idatas[name] = to_inference_data(posterior, x, y, progress=False,
                                             num_samples=None if posterior.is_point_mass else samples)
            save(idatas[name], ctx.folder.file(f"inference_{name}.nc"))
    for name, idata in idatas.items():
        chains = idata.posterior.sizes["chain"]
        if chains < 2:
            continue
        results[name] = figures = convergence(idata)
        worst = worst_components(idata, count=4)
        shown = ", ".join(worst.posterior.data_vars)
        rank_fig, trace_fig = plot_rank(worst), plot_trace(worst)
        count = len(worst.posterior.data_vars)
        rank_fig.suptitle(f"{labels[name]}: rank plots of the {count} components with the highest R-hat")
        trace_fig.suptitle(f"{labels[name]}: traces of the {count} components with the highest R-hat "
                           "(one colour per chain)")
        rank = ctx.figure(rank_fig, f"{name}_rank.png")
        trace = ctx.figure(trace_fig, f"{name}_trace.png")
        draws = idata.posterior.sizes["draw"]
        text.append(f"{labels[name]} ({chains} chains of {draws} draws), ArviZ: "
                    f"{convergence_verdict(figures, chains)} With hidden layers, R-hat of individual weights "
                    "is a loose guide: hidden units can swap roles between chains without changing the "
                    f"predictions.\n\nRank and trace plots of the components with the highest R-hat "
                    f"({shown}); uniform rank histograms and overlapping traces mean the chains agree.\n\n"
                    f"![]({rank})\n\n![]({trace})\n")
    posteriors_only = {k: v for k, v in idatas.items() if not posteriors[k].is_point_mass}
    if len(posteriors_only) > 1:
        table, markdown = loo_comparison(posteriors_only, labels)
        for name, row in table.iterrows():
            results.setdefault(name, {})["elpd_loo"] = float(row["elpd_loo"])
        text.append("PSIS-LOO comparison on the training data (`az.compare`; higher `elpd_loo` is better):\n\n"
                    + markdown + "\n")
    return results, "\n".join(text)
