"""The figures of the week-1 study."""

from __future__ import annotations

import numpy as np

from bayesdl.evaluation.plotting import new_figure

from .constants import BETA


def _band(ax, grid, mean, variance, label, color):
    """The closed-form predictive: mean and a filled +-2 sigma band."""
    std = np.sqrt(variance)
    ax.plot(grid, mean, "-", color=color, label=f"{label} mean")
    ax.fill_between(grid, mean - 2 * std, mean + 2 * std, color=color, alpha=0.18,
                    label=f"{label} $\\pm 2\\sigma$")


def _lines(ax, grid, mean, variance, label, color):
    """A predictive drawn as lines only (mean dashed, +-2 sigma dotted), so that it can lie over a
    filled band without blending into a colour of neither."""
    std = np.sqrt(variance)
    ax.plot(grid, mean, "--", color=color, label=f"{label} mean")
    ax.plot(grid, mean - 2 * std, ":", color=color, label=f"{label} $\\pm 2\\sigma$")
    ax.plot(grid, mean + 2 * std, ":", color=color)


def _variance_axis(ax, grid, variance) -> None:
    """Log y-axis for a predictive variance, with plain-number ticks and room below the noise
    floor ``1 / beta`` (every predictive variance is at least the noise), so the floor line and
    the minimum of the curve stay readable."""
    from matplotlib.ticker import LogLocator, NullFormatter, ScalarFormatter

    ax.set_yscale("log")
    ax.set_ylim(0.6 / BETA, 1.6 * float(np.max(variance)))
    ax.yaxis.set_major_locator(LogLocator(base=10, subs=(1.0, 2.0, 5.0)))
    ax.yaxis.set_major_formatter(ScalarFormatter())
    ax.yaxis.set_minor_formatter(NullFormatter())
    ax.set_xlim(grid[0], grid[-1])
    ax.set_xlabel("x")
    ax.set_ylabel("predictive variance $\\sigma^2(x)$ (log scale)")


def meaningful_minimum(variance, flat: float = 0.01) -> int | None:
    """The grid index of the minimum of ``variance`` where it is a clear minimum, else None: when
    the values within ``flat`` (relative) of the minimum reach an edge of the grid, the minimum is
    a plateau (the noise floor far from the data) with no one place to mark."""
    variance = np.asarray(variance, dtype=float)
    low = int(np.argmin(variance))
    near = variance <= variance[low] * (1 + flat)
    return None if near[0] or near[-1] else low


def setting_figure(ctx, name, title, x, y, grid, mean, variance, extra=None):
    fig, axes = new_figure(ncols=2, size=(5.0, 3.6))
    ax, ax_var = axes[0]
    _band(ax, grid, mean, variance, "predictive", "tab:blue")
    ax.scatter(x, y, s=12, color="black", zorder=3, label="training data")
    ax.set_title(title)
    ax.set_xlabel("x")
    ax.set_ylabel("y")
    ax.legend(fontsize="x-small", loc="upper left")
    ax_var.plot(grid, variance, color="tab:blue", label="predictive variance")
    ax_var.axhline(1 / BETA, color="gray", linestyle="--", label=f"noise floor 1/beta = {1 / BETA:g}")
    for xi in x:
        ax_var.axvline(xi, color="black", alpha=0.08, linewidth=0.8)
    low = meaningful_minimum(variance)
    if low is not None:
        ax_var.plot(grid[low], variance[low], "o", color="tab:blue", markersize=4,
                    label=f"minimum {variance[low]:.3g} at x = {grid[low]:.2f}")
    else:
        ax_var.plot([], [], " ", label="no single minimum: the variance is flat at the floor far from the data")
    if extra:
        extra(ax_var)
    _variance_axis(ax_var, grid, variance)
    ax_var.set_title("predictive variance (grey lines: training inputs)", fontsize="small")
    ax_var.legend(fontsize="x-small", loc="upper center")
    return ctx.figure(fig, f"{name}.png")


def agreement_panels(ax, ax_ratio, x, y, grid, exact, fitted, label, mean_error) -> None:
    """One column of the Pyro figure: on ``ax`` the closed-form predictive ``exact = (mean,
    variance)`` (filled band) under the Pyro one ``fitted`` (lines); on ``ax_ratio`` the ratio of
    their predictive variances."""
    (exact_mean, exact_var), (mean, variance) = exact, fitted
    _band(ax, grid, exact_mean, exact_var, "closed form", "tab:blue")
    _lines(ax, grid, mean, variance, label.split(",")[0], "tab:red")
    ax.scatter(x, y, s=10, color="black", zorder=3, label="training data")
    ax.set_title(label)
    ax.set_xlabel("x")
    ax.set_ylabel("y")
    ax.legend(fontsize="x-small", loc="upper left")
    ax_ratio.plot(grid, variance / exact_var, color="tab:red", label="predictive variance ratio")
    ax_ratio.axhline(1.0, color="tab:blue", linewidth=1, label="exact agreement")
    ax_ratio.axhspan(0.95, 1.05, color="tab:blue", alpha=0.12, label="within 5%")
    spread = max(0.15, 1.2 * float(np.max(np.abs(variance / exact_var - 1))))
    ax_ratio.set_ylim(1 - spread, 1 + spread)
    ax_ratio.set_xlim(grid[0], grid[-1])
    ax_ratio.set_xlabel("x")
    ax_ratio.set_ylabel(f"variance, {label.split(',')[0]} / closed form")
    ax_ratio.set_title(f"agreement: max |mean difference| {mean_error:.3f}", fontsize="small")
    ax_ratio.legend(fontsize="x-small", loc="lower left")


def ppc_figure(idata):
    import arviz as az

    fig, axes = new_figure(size=(5.0, 3.6))
    ax = axes[0, 0]
    az.plot_ppc(idata, ax=ax, num_pp_samples=100, random_seed=0)
    ax.set_title("Posterior predictive check (NUTS, linear basis)", fontsize="medium")
    ax.set_ylabel("density of y (kernel estimate)", fontsize="small")
    ax.set_xlabel("y", fontsize="small")
    ax.tick_params(labelsize="small")
    ax.legend(fontsize="x-small")
    return fig
