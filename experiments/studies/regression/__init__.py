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

from bayesdl.evaluation.diagnostics import convergence, save
from bayesdl.evaluation.plotting import new_figure
from bayesdl.inference import fit, nuts, to_inference_data
from bayesdl.models import BayesianLinearRegression, GaussianBasis, PolynomialBasis

from ...registry import RunContext, StudyResult
from .constants import ALPHA_GAUSSIAN, ALPHA_LINEAR, BETA, SIGMA
from .figures import agreement_panels, ppc_figure, setting_figure
from .report import render_report


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


def run(ctx: RunContext) -> StudyResult:
    """Week 1: the course's three settings in closed form, model selection by the evidence, and the
    linear model fitted again in Pyro (SVI and NUTS)."""
    rng = np.random.default_rng(ctx.seed)
    n = 12 if ctx.quick else 25
    data = _datasets(rng, n)
    results, figures = {}, {}
    for name, (basis, alpha, title) in _setting_specs().items():
        results[name], figures[name] = _closed_form_setting(ctx, name, basis, alpha, title, data[name])
    results["evidence"], figures["evidence"] = _evidence_selection(ctx, *data["gaussian_basis"][:2])
    num_chains = 2 if ctx.quick else 4
    pyro_results, pyro_figures = _pyro_comparison(ctx, data["linear_interval"], num_chains, rng)
    results.update(pyro_results)
    figures.update(pyro_figures)

    report = render_report(results, figures, n, num_chains)
    config = {"n_train": n, "noise_sigma": SIGMA, "beta": BETA, "alpha_linear": ALPHA_LINEAR,
              "alpha_gaussian": ALPHA_GAUSSIAN, "gaussian_centers": 9, "gaussian_scale": 0.1,
              "nuts_chains": num_chains}
    return StudyResult(config=config, results=results, report=report)


def _setting_specs() -> dict:
    """Sections 1-3, the three settings of the course: ``{name: (basis, alpha, title)}``."""
    return {
        "linear_interval": (PolynomialBasis(1), ALPHA_LINEAR, "linear basis, one interval"),
        "linear_clusters": (PolynomialBasis(1), ALPHA_LINEAR, "linear basis, two clusters"),
        "gaussian_basis": (GaussianBasis(np.linspace(0, 1, 9), scale=0.1), ALPHA_GAUSSIAN,
                           "Gaussian basis, beta = 12.5"),
    }


def _closed_form_setting(ctx, name, basis, alpha, title, data) -> tuple[dict, str]:
    """One of sections 1-3: the closed-form fit of ``basis`` on ``data = (x, y, grid)``.

    Returns its metrics and the name of its figure."""
    x, y, grid = data
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
        metrics.update(_flat_prior_minimum(x, y))

        def extra(ax, metrics=metrics):
            ax.axvline(metrics["barycenter"], color="tab:red", linestyle=":",
                       label=f"barycenter {metrics['barycenter']:.3f}")

    return metrics, setting_figure(ctx, name, title, x, y, grid, mean, variance, extra)


def _flat_prior_minimum(x, y) -> dict:
    """The report's question 1.5: alpha = 0, beta = 1 puts the minimum of the predictive variance
    at the barycenter of the inputs."""
    flat = BayesianLinearRegression(PolynomialBasis(1), alpha=0.0, beta=1.0).fit(x, y)
    fine = np.linspace(-1, 1, 20001)
    flat_var = flat.predict(fine)[1].numpy()
    return {"barycenter": float(x.mean()), "argmin_variance_flat_prior": float(fine[np.argmin(flat_var)])}


def _evidence_selection(ctx, x, y) -> tuple[dict, str]:
    """Section 4, model selection by the evidence (beyond the course): the polynomial degree on
    the sinusoid. Returns the results and the name of the figure."""
    # Degrees well below the number of points: near it the fit interpolates the data and the
    # evidence fixed point has no solution (beta -> infinity).
    degrees = list(range(0, min(10, len(x) - 4)))
    fixed, maximised = [], []
    for degree in degrees:
        fixed.append(BayesianLinearRegression(PolynomialBasis(degree), ALPHA_GAUSSIAN, BETA).fit(x, y).log_evidence())
        opt = BayesianLinearRegression(PolynomialBasis(degree), 1.0, BETA).maximize_evidence(x, y)
        maximised.append(opt.log_evidence())
    best = int(np.argmax(maximised))
    results = {"best_degree": degrees[best], "log_evidence_best": maximised[best],
               **{f"log_evidence_degree_{d}": v for d, v in zip(degrees, maximised)}}
    fig, axes = new_figure(size=(5.0, 3.6))
    ax = axes[0, 0]
    ax.plot(degrees, fixed, "o-", label=f"alpha = {ALPHA_GAUSSIAN}, beta = {BETA:g}")
    ax.plot(degrees, maximised, "s-", label="alpha, beta maximising the evidence")
    ax.axvline(degrees[best], color="tab:red", linestyle=":", linewidth=1)
    ax.plot(degrees[best], maximised[best], "*", color="tab:red", markersize=12, zorder=3,
            label=f"chosen degree {degrees[best]} (highest evidence)")
    ax.set_xlim(degrees[0] - 0.5, degrees[-1] + 0.5)  # room for the markers at both ends
    ax.set_xlabel("polynomial degree")
    ax.set_ylabel("log evidence ln p(t | alpha, beta)")
    ax.set_title("Model selection by the evidence (sinusoid)")
    ax.legend(fontsize="small")
    return results, ctx.figure(fig, "evidence.png")


def _pyro_comparison(ctx, data, num_chains, rng) -> tuple[dict, dict]:
    """Section 5, the same model in Pyro: the linear basis on ``data = (x, y, grid)`` fitted by SVI
    with a mean-field Normal guide and by NUTS, against the closed form.

    Returns ``{"svi_mean_field": ..., "nuts": ...}`` (NUTS with its convergence) and the names of
    the figures ``{"ppc": ..., "pyro": ...}``."""
    x, y, grid = data
    blr = BayesianLinearRegression(PolynomialBasis(1), alpha=ALPHA_LINEAR, beta=BETA).fit(x, y)
    svi, chains = _pyro_fits(ctx, blr, x, y, num_chains)
    panels = {"svi_mean_field": (svi, "SVI, mean-field Normal guide"), "nuts": (chains, f"NUTS, {num_chains} chains")}
    results, fig = _pyro_agreement(panels, blr, x, y, grid, draws=2000 if ctx.quick else 4000)
    idata = to_inference_data(chains)
    _add_predictive(idata, chains, x, y, rng)
    save(idata, ctx.folder.file("inference_nuts.nc"))
    figures = {"ppc": ctx.figure(ppc_figure(idata), "posterior_predictive_check.png")}
    results["nuts"].update(convergence(idata))
    figures["pyro"] = ctx.figure(fig, "pyro_vs_closed_form.png")
    return results, figures


def _pyro_fits(ctx, blr, x, y, num_chains):
    """``blr``'s model fitted by full-batch SVI with a mean-field Normal guide, and by NUTS with
    ``num_chains`` chains; returns ``(svi posterior, NUTS posterior)``."""
    xt, yt = torch.as_tensor(x), torch.as_tensor(y)
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
    chains = nuts(blr.model, xt, yt, num_samples=200 if ctx.quick else 1000,
                  warmup_steps=200 if ctx.quick else 500, num_chains=num_chains, seed=ctx.seed,
                  jit_compile=True, progress=ctx.progress)
    return svi, chains


def _pyro_agreement(panels, blr, x, y, grid, draws) -> tuple[dict, object]:
    """Each Pyro posterior of ``panels = {name: (posterior, label)}`` against the closed form of
    ``blr``, from ``draws`` draws of ``w``: ``({name: errors}, figure)``, one column per posterior."""
    exact_mean, exact_var = (t.numpy() for t in blr.predict(grid))
    phi = PolynomialBasis(1)(grid).numpy()
    results = {}
    fig, axes = new_figure(ncols=2, nrows=2, size=(5.0, 3.0))
    for col, (name, (posterior, label)) in enumerate(panels.items()):
        w = posterior.sample(draws)["w"].numpy()
        f = w @ phi.T
        mean, variance = f.mean(0), f.var(0) + 1 / BETA
        results[name] = _pyro_errors(blr, w, (mean, variance), (exact_mean, exact_var))
        agreement_panels(axes[0, col], axes[1, col], x, y, grid, (exact_mean, exact_var), (mean, variance),
                          label, results[name]["predictive_mean_max_abs_error"])
    return results, fig


def _pyro_errors(blr, w, fitted, exact) -> dict:
    """How far draws ``w`` of the weights and their predictive ``fitted = (mean, variance)`` are from
    ``blr``'s closed-form posterior and predictive ``exact``."""
    (mean, variance), (exact_mean, exact_var) = fitted, exact
    return {
        "posterior_mean_max_abs_error": float(np.abs(w.mean(0) - blr.posterior_mean_.numpy()).max()),
        "posterior_std_max_rel_error": float(np.max(np.abs(
            w.std(0) / np.sqrt(np.diag(blr.posterior_covariance_.numpy())) - 1))),
        "predictive_mean_max_abs_error": float(np.abs(mean - exact_mean).max()),
        "predictive_variance_max_rel_error": float(np.max(np.abs(variance / exact_var - 1))),
    }


def _add_predictive(idata, posterior, x, y, rng) -> None:
    """Replicated targets y_rep = Phi w + noise at every NUTS draw, and the observed y."""
    w = posterior.draws().samples["w"].numpy()  # [chains, draws, D]
    phi = PolynomialBasis(1)(x).numpy()
    mean = np.einsum("cdk,nk->cdn", w, phi)
    replicated = mean + rng.normal(0.0, BETA**-0.5, size=mean.shape)
    import arviz as az

    idata.extend(az.from_dict(posterior_predictive={"y": replicated}, observed_data={"y": np.asarray(y)},
                              dims={"y": ["obs"]}))
