"""Week 1: Bayesian linear regression -- closed form, evidence, and the same model in Pyro.

Reproduces the course's first practical session (and the report's questions 1.4-2.5):

1. a linear basis on data from one interval: the predictive variance grows away from the data;
2. the same basis on two separated clusters: the variance is smallest *between* the clusters,
   at the barycenter of the inputs (exactly so for ``alpha = 0``, ``beta = 1``), where there
   is no data at all;
3. a Gaussian basis with ``beta = 12.5`` on a sinusoid: far from the data every feature
   vanishes and the predictive variance tends to the noise level ``1 / beta = 0.08``.

Beyond the course: the log evidence picks the polynomial degree (PRML fig. 3.14), and the
linear model is fitted again as a Pyro program by SVI (a mean-field Normal guide) and by
NUTS, and compared with the closed form.
"""

from __future__ import annotations

import numpy as np
import torch
from pyro.infer import Trace_ELBO
from pyro.infer.autoguide import AutoNormal

from bayesdl.evaluation.diagnostics import convergence, convergence_verdict, save
from bayesdl.evaluation.plotting import new_figure
from bayesdl.inference import fit, nuts, to_inference_data
from bayesdl.models import BayesianLinearRegression, GaussianBasis, PolynomialBasis

from ..registry import RunContext, StudyResult

SIGMA = 0.2  # noise of the data generator
BETA = 1.0 / (2.0 * SIGMA**2)  # = 12.5, the course's noise precision
ALPHA_LINEAR = 2.0
ALPHA_GAUSSIAN = 0.05


def _linear_target(x, rng):
    return -0.3 + 0.5 * x + rng.normal(0.0, SIGMA, size=x.shape)


def _sine_target(x, rng):
    return np.sin(2 * np.pi * x) + rng.normal(0.0, SIGMA, size=x.shape)


def _datasets(rng, n):
    half = n // 2
    clusters = np.concatenate([rng.uniform(-3, -1, half), rng.uniform(1, 3, half)])
    interval = rng.uniform(-1, 1, n)
    sine = rng.uniform(0, 1, n)
    return {
        "linear_interval": (interval, _linear_target(interval, rng), np.linspace(-6, 6, 401)),
        "linear_clusters": (clusters, _linear_target(clusters, rng), np.linspace(-8, 8, 401)),
        "gaussian_basis": (sine, _sine_target(sine, rng), np.linspace(-1, 2, 401)),
    }


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


def _setting_figure(ctx, name, title, x, y, grid, mean, variance, extra=None):
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
    low = int(np.argmin(variance))
    ax_var.plot(grid[low], variance[low], "o", color="tab:blue", markersize=4,
                label=f"minimum {variance[low]:.3g} at x = {grid[low]:.2f}")
    if extra:
        extra(ax_var)
    _variance_axis(ax_var, grid, variance)
    ax_var.set_title("predictive variance (grey lines: training inputs)", fontsize="small")
    ax_var.legend(fontsize="x-small", loc="upper center")
    return ctx.figure(fig, f"{name}.png")


def run(ctx: RunContext) -> StudyResult:
    rng = np.random.default_rng(ctx.seed)
    n = 12 if ctx.quick else 25
    data = _datasets(rng, n)
    results, figures = {}, {}

    # 1-3. The three settings of the course, closed form.
    specs = {
        "linear_interval": (PolynomialBasis(1), ALPHA_LINEAR, "linear basis, one interval"),
        "linear_clusters": (PolynomialBasis(1), ALPHA_LINEAR, "linear basis, two clusters"),
        "gaussian_basis": (GaussianBasis(np.linspace(0, 1, 9), scale=0.1), ALPHA_GAUSSIAN,
                           "Gaussian basis, beta = 12.5"),
    }
    for name, (basis, alpha, title) in specs.items():
        x, y, grid = data[name]
        blr = BayesianLinearRegression(basis, alpha=alpha, beta=BETA).fit(x, y)
        mean, variance = (t.numpy() for t in blr.predict(grid))
        inside = (grid >= x.min()) & (grid <= x.max())
        metrics = {
            "alpha": alpha,
            "beta": BETA,
            "log_evidence": blr.log_evidence(),
            "train_rmse": float(np.sqrt(np.mean((blr.predict(x)[0].numpy() - y) ** 2))),
            "mean_variance_over_data_range": float(variance[inside].mean()),
            "variance_at_grid_edges": float(0.5 * (variance[0] + variance[-1])),
            "noise_variance": 1 / BETA,
            "argmin_variance": float(grid[np.argmin(variance)]),
        }
        extra = None
        if name == "linear_clusters":
            # The report's question 1.5: alpha = 0, beta = 1 puts the minimum at the barycenter.
            flat = BayesianLinearRegression(PolynomialBasis(1), alpha=0.0, beta=1.0).fit(x, y)
            fine = np.linspace(-1, 1, 20001)
            flat_var = flat.predict(fine)[1].numpy()
            metrics["barycenter"] = float(x.mean())
            metrics["argmin_variance_flat_prior"] = float(fine[np.argmin(flat_var)])

            def extra(ax, metrics=metrics):
                ax.axvline(metrics["barycenter"], color="tab:red", linestyle=":",
                           label=f"barycenter {metrics['barycenter']:.3f}")

        figures[name] = _setting_figure(ctx, name, title, x, y, grid, mean, variance, extra)
        results[name] = metrics

    # 4. Model selection by the evidence (beyond the course): polynomial degree on the sinusoid.
    x, y, _ = data["gaussian_basis"]
    # Degrees well below the number of points: near it the fit interpolates the data and the
    # evidence fixed point has no solution (beta -> infinity).
    degrees = list(range(0, min(10, len(x) - 4)))
    fixed, maximised = [], []
    for degree in degrees:
        fixed.append(BayesianLinearRegression(PolynomialBasis(degree), ALPHA_GAUSSIAN, BETA).fit(x, y).log_evidence())
        opt = BayesianLinearRegression(PolynomialBasis(degree), 1.0, BETA).maximize_evidence(x, y)
        maximised.append(opt.log_evidence())
    best = int(np.argmax(maximised))
    results["evidence"] = {"best_degree": degrees[best], "log_evidence_best": maximised[best],
                           **{f"log_evidence_degree_{d}": v for d, v in zip(degrees, maximised)}}
    fig, axes = new_figure(size=(5.0, 3.6))
    ax = axes[0, 0]
    ax.plot(degrees, fixed, "o-", label=f"alpha = {ALPHA_GAUSSIAN}, beta = {BETA:g}")
    ax.plot(degrees, maximised, "s-", label="alpha, beta maximising the evidence")
    ax.set_xlabel("polynomial degree")
    ax.set_ylabel("log evidence ln p(t | alpha, beta)")
    ax.set_title("Model selection by the evidence (sinusoid)")
    ax.legend(fontsize="small")
    figures["evidence"] = ctx.figure(fig, "evidence.png")

    # 5. The same model in Pyro: SVI with a mean-field Normal guide, and NUTS.
    x, y, grid = data["linear_interval"]
    blr = BayesianLinearRegression(PolynomialBasis(1), alpha=ALPHA_LINEAR, beta=BETA).fit(x, y)
    exact_mean, exact_var = (t.numpy() for t in blr.predict(grid))
    xt, yt = torch.as_tensor(x), torch.as_tensor(y)
    phi = PolynomialBasis(1)(grid).numpy()
    draws = 2000 if ctx.quick else 4000
    guide = AutoNormal(blr.model)
    steps = 300 if ctx.quick else 2000
    # Full-batch SVI; the learning rate decays 0.05 -> 0.0005 so Adam's noise dies out.
    # max_plate_nesting: the model's one plate, stated so that Pyro need not guess it (and log
    # "Guessed max_plate_nesting" into the output); Pyro adds the dimension of the particles.
    elbo = Trace_ELBO(num_particles=16, vectorize_particles=True, max_plate_nesting=1)
    svi = fit(blr.model, guide, (xt, yt), elbo=elbo,
              epochs=steps, lr=0.05, batch_size=len(x), shuffle=False, seed=ctx.seed,
              scheduler=lambda opt: torch.optim.lr_scheduler.ExponentialLR(opt, 0.01 ** (1 / steps)),
              progress=ctx.progress)
    num_chains = 2 if ctx.quick else 4
    chains = nuts(blr.model, xt, yt, num_samples=200 if ctx.quick else 1000,
                  warmup_steps=200 if ctx.quick else 500, num_chains=num_chains, seed=ctx.seed,
                  jit_compile=True, progress=ctx.progress)
    panels = {"svi_mean_field": (svi, "SVI, mean-field Normal guide"), "nuts": (chains, f"NUTS, {num_chains} chains")}
    fig, axes = new_figure(ncols=2, nrows=2, size=(5.0, 3.0))
    for col, (name, (posterior, label)) in enumerate(panels.items()):
        ax, ax_ratio = axes[0, col], axes[1, col]
        w = posterior.sample(draws)["w"].numpy()
        f = w @ phi.T
        mean, variance = f.mean(0), f.var(0) + 1 / BETA
        results[name] = {
            "posterior_mean_max_abs_error": float(np.abs(w.mean(0) - blr.posterior_mean_.numpy()).max()),
            "posterior_std_max_rel_error": float(np.max(np.abs(
                w.std(0) / np.sqrt(np.diag(blr.posterior_covariance_.numpy())) - 1))),
            "predictive_mean_max_abs_error": float(np.abs(mean - exact_mean).max()),
            "predictive_variance_max_rel_error": float(np.max(np.abs(variance / exact_var - 1))),
        }
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
        ax_ratio.set_title(f"agreement: max |mean difference| "
                           f"{results[name]['predictive_mean_max_abs_error']:.3f}", fontsize="small")
        ax_ratio.legend(fontsize="x-small", loc="lower left")
    idata = to_inference_data(chains)
    _add_predictive(idata, chains, x, y, rng)
    save(idata, ctx.folder.file("inference_nuts.nc"))
    figures["ppc"] = ctx.figure(_ppc_figure(idata), "posterior_predictive_check.png")
    results["nuts"].update(convergence(idata))
    figures["pyro"] = ctx.figure(fig, "pyro_vs_closed_form.png")

    report = _report(results, figures, n, num_chains)
    config = {"n_train": n, "noise_sigma": SIGMA, "beta": BETA, "alpha_linear": ALPHA_LINEAR,
              "alpha_gaussian": ALPHA_GAUSSIAN, "gaussian_centers": 9, "gaussian_scale": 0.1,
              "nuts_chains": num_chains}
    return StudyResult(config=config, results=results, report=report)


def _add_predictive(idata, posterior, x, y, rng) -> None:
    """Replicated targets y_rep = Phi w + noise at every NUTS draw, and the observed y."""
    w = posterior.draws().samples["w"].numpy()  # [chains, draws, D]
    phi = PolynomialBasis(1)(x).numpy()
    mean = np.einsum("cdk,nk->cdn", w, phi)
    replicated = mean + rng.normal(0.0, BETA**-0.5, size=mean.shape)
    import arviz as az

    idata.extend(az.from_dict(posterior_predictive={"y": replicated}, observed_data={"y": np.asarray(y)},
                              dims={"y": ["obs"]}))


def _ppc_figure(idata):
    import arviz as az

    fig, axes = new_figure(size=(5.0, 3.6))
    az.plot_ppc(idata, ax=axes[0, 0], num_pp_samples=100, random_seed=0)
    axes[0, 0].set_title("Posterior predictive check (NUTS, linear basis)")
    return fig


def _report(r, figures, n, num_chains) -> str:
    li, lc, gb = r["linear_interval"], r["linear_clusters"], r["gaussian_basis"]
    svi, mc = r["svi_mean_field"], r["nuts"]
    return f"""# Week 1 - Bayesian linear regression

{n} noisy training points per setting; noise sigma = {SIGMA}, beta = 1/(2 sigma^2) = {BETA:g}.

## Linear basis, data on one interval
![]({figures['linear_interval']})

The predictive variance is {li['mean_variance_over_data_range']:.4f} on average over the data
range and {li['variance_at_grid_edges']:.3f} at the edges of the plot: it grows
quadratically away from the data, as the course expects.

## Linear basis, two separated clusters
![]({figures['linear_clusters']})

The variance is smallest at x = {lc['argmin_variance']:.3f}, *between* the clusters where
there is no data (barycenter of the inputs: {lc['barycenter']:.3f}). With a flat prior
(alpha = 0) and beta = 1 the minimum sits at x = {lc['argmin_variance_flat_prior']:.4f},
the barycenter, as derived in the report's question 1.5: a linear model cannot be
uncertain inside the convex hull of its data.

## Gaussian basis (9 centers on [0, 1], scale 0.1), beta = 12.5
![]({figures['gaussian_basis']})

Far from the centers every feature vanishes, and the predictive variance at the plot edges
is {gb['variance_at_grid_edges']:.4f}, the noise level 1/beta = {1 / BETA:.2f}: this model
is *not* more uncertain far from the data (report, questions 2.4-2.5).

## Model selection by the evidence (beyond the course)
![]({figures['evidence']})

Maximising the evidence over (alpha, beta) for each polynomial degree on the sinusoid data
selects degree {r['evidence']['best_degree']}.

## The same model in Pyro
Top: the closed-form predictive (filled band) under each Pyro fit (lines); bottom: the ratio of
their predictive variances, 1 where they agree.

![]({figures['pyro']})

| method | max abs error, posterior mean | max rel. error, posterior std | max rel. error, predictive variance |
|---|---|---|---|
| SVI, mean-field Normal guide | {svi['posterior_mean_max_abs_error']:.4f} | {svi['posterior_std_max_rel_error']:.3f} | {svi['predictive_variance_max_rel_error']:.3f} |
| NUTS, {num_chains} chains | {mc['posterior_mean_max_abs_error']:.4f} | {mc['posterior_std_max_rel_error']:.3f} | {mc['predictive_variance_max_rel_error']:.3f} |

NUTS convergence (ArviZ, {num_chains} chains): {convergence_verdict(mc, num_chains)} Both recover the closed form; the mean-field guide can
only match it because this posterior is nearly uncorrelated (inputs centred on 0), and a
mean-field Gaussian under-estimates the variance of correlated posteriors.

The replicated data of the NUTS posterior against the observed targets (ArviZ):

![]({figures['ppc']})
"""
