"""Shared machinery of the week-2 studies on 2-D data: fit every method, map uncertainty.

Each method is a name of the inference registry with its options; everything after the fit
goes through the one Posterior interface -- whether a posterior is a point mass or holds a
fixed set of draws is asked of the posterior, never inferred from a method's name.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import torch

from bayesdl.evaluation import calibration_metrics, mutual_information, predictive_entropy
from bayesdl.evaluation.diagnostics import convergence, plot_rank, plot_trace, save
from bayesdl.evaluation.plotting import new_figure
from bayesdl.inference import Posterior, approximate, to_inference_data

from ..diagnose import loo_comparison

__all__ = ["Method", "Grid", "evaluate_methods", "uncertainty_figure", "curves_figure", "diagnostics"]


@dataclass(frozen=True)
class Method:
    """A posterior to fit: the study's ``name`` and ``label`` for it, the registry ``method``
    (:func:`bayesdl.inference.approximate`) and its ``options``; ``around`` names an earlier
    method whose posterior it is built around (Laplace around the MAP)."""

    name: str
    label: str
    method: str
    options: dict = field(default_factory=dict)
    around: str | None = None

    def fit(self, model, x, y, fitted: dict[str, Posterior]) -> Posterior:
        options = dict(self.options)
        if self.around is not None:
            options["map_posterior"] = fitted[self.around]
        return approximate(self.method, model, (x, y), **options)


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


def evaluate_methods(model, methods: list[Method], x, y, x_test, y_test, grid: Grid, samples: int,
                     reference: str = "nuts") -> tuple[dict, dict, dict]:
    """Fit each method on ``model``; return ``(posteriors, grid probabilities [S, G, C], metrics)``.

    A point mass is predicted with one draw (its MI is 0); posteriors that draw afresh also get
    the Monte-Carlo error and roughness of a 10-sample map. ``reference`` (NUTS) is what every
    predictive is compared with.
    """
    posteriors, grid_probs, results = {}, {}, {}
    for method in methods:
        posterior = method.fit(model, x, y, posteriors)
        posteriors[method.name] = posterior
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


def uncertainty_figure(methods: list[Method], posteriors: dict, grid_probs: dict, grid: Grid, x, y,
                       title: str):
    """Rows: methods; columns: max probability with the decision boundary, entropy, MI."""
    fig, axes = new_figure(ncols=3, nrows=len(methods), size=(3.3, 3.0))
    shape = grid.xx.shape
    for row, method in zip(axes, methods):
        point_mass = posteriors[method.name].is_point_mass
        probs = grid_probs[method.name]
        mean = probs.mean(0)
        panels = [
            ("max probability", mean.max(-1).values, (0.5, 1.0), "viridis"),
            ("predictive entropy (nats)", predictive_entropy(probs), (0.0, math.log(mean.shape[-1])), "magma"),
            ("mutual information (nats)", mutual_information(probs), None, "magma"),
        ]
        for ax, (name, values, limits, cmap) in zip(row, panels):
            if name.startswith("mutual") and point_mass:
                ax.text(0.5, 0.5, "point estimate:\nno epistemic part", ha="center", va="center",
                        transform=ax.transAxes)
                ax.set_xticks([])
                ax.set_yticks([])
            else:
                kwargs = {"vmin": limits[0], "vmax": limits[1]} if limits else {}
                image = ax.contourf(grid.xx, grid.yy, values.reshape(shape).numpy(), levels=20, cmap=cmap, **kwargs)
                ax.figure.colorbar(image, ax=ax, shrink=0.8)
                ax.contour(grid.xx, grid.yy, mean[:, -1].reshape(shape).numpy(), levels=[0.5],
                           colors="white", linewidths=1.0)
                ax.scatter(x[:, 0], x[:, 1], c=y, cmap="coolwarm", s=6, edgecolors="black", linewidths=0.2)
            ax.set_title(f"{method.label}: {name}", fontsize="small")
    fig.suptitle(title)
    return fig


def curves_figure(posteriors: dict, labels: dict):
    """ELBO and its parts per epoch for the methods fitted by SVI, per example."""
    fitted = {k: p for k, p in posteriors.items() if p.history is not None and p.history.epoch_elbo}
    fig, axes = new_figure(ncols=3, size=(3.6, 3.0))
    for name, posterior in fitted.items():
        h = posterior.history
        n = h.dataset_size
        epochs = np.arange(1, len(h.epoch_elbo) + 1)
        axes[0, 0].plot(epochs, np.array(h.epoch_elbo) / n, label=labels[name])
        if h.epoch_log_likelihood:
            axes[0, 1].plot(epochs, np.array(h.epoch_log_likelihood) / n, label=labels[name])
            axes[0, 2].plot(epochs, np.array(h.epoch_kl) / n, label=labels[name])
    for ax, title in zip(axes[0], ("ELBO / N", "expected log-likelihood / N", "KL / N (MAP: -log prior)")):
        ax.set_title(title, fontsize="small")
        ax.set_xlabel("epoch")
        ax.set_xscale("log")
        ax.legend(fontsize="x-small")
    fig.suptitle("Training curves")
    return fig


def diagnostics(ctx, posteriors: dict, labels: dict, x, y, samples: int) -> tuple[dict, str]:
    """ArviZ: InferenceData per method (saved as .nc), convergence of the methods with several
    chains (NUTS), LOO comparison, rank and trace plots.

    Point masses are saved with one draw and left out of the LOO comparison, which needs a
    posterior. Returns (results to merge, markdown).
    """
    idatas, results, text = {}, {}, []
    for name, posterior in posteriors.items():
        idatas[name] = to_inference_data(posterior, x, y, num_samples=1 if posterior.is_point_mass else samples)
        save(idatas[name], ctx.folder.file(f"inference_{name}.nc"))
    for name, idata in idatas.items():
        if idata.posterior.sizes["chain"] < 2:
            continue
        results[name] = figures = convergence(idata)
        names = list(idata.posterior.data_vars)[-2:]
        rank = ctx.figure(plot_rank(idata, var_names=names), f"{name}_rank.png")
        trace = ctx.figure(plot_trace(idata, var_names=names), f"{name}_trace.png")
        text.append(f"{labels[name]} convergence (ArviZ): max R-hat "
                    f"{figures['max_r_hat']:.3f}, min bulk ESS {figures['min_ess_bulk']:.0f}, "
                    f"{figures['divergences']} divergent transitions. R-hat of individual weights of a "
                    "network is a loose guide: hidden units can swap roles between chains without changing "
                    f"the predictions.\n\n![]({rank})\n\n![]({trace})\n")
    posteriors_only = {k: v for k, v in idatas.items() if not posteriors[k].is_point_mass}
    if len(posteriors_only) > 1:
        table, markdown = loo_comparison(posteriors_only)
        for name, row in table.iterrows():
            results.setdefault(name, {})["elpd_loo"] = float(row["elpd_loo"])
        text.append("PSIS-LOO comparison on the training data (`az.compare`; higher `elpd_loo` is better; "
                    "'Pareto k warning' marks estimates ArviZ flags as unreliable):\n\n" + markdown + "\n")
    return results, "\n".join(text)
