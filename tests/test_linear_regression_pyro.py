"""The week-1 model written in Pyro, fitted by SVI and NUTS, against the closed form."""

import numpy as np
import pytest
import torch
from pyro.infer import Trace_ELBO
from pyro.infer.autoguide import AutoNormal

from bayesdl.evaluation.diagnostics import summary
from bayesdl.inference import fit, nuts, to_inference_data
from bayesdl.models import BayesianLinearRegression, PolynomialBasis


@pytest.fixture(scope="module")
def problem():
    rng = np.random.default_rng(0)
    x = torch.tensor(rng.uniform(-1, 1, 25))
    y = -0.3 + 0.5 * x + torch.tensor(rng.normal(0, 0.2, 25))
    blr = BayesianLinearRegression(PolynomialBasis(1), alpha=2.0, beta=12.5).fit(x, y)
    grid = torch.linspace(-4, 4, 41, dtype=torch.float64)
    return blr, x, y, grid


def _predictive(posterior, grid, beta, n=4000):
    w = posterior.sample(n)["w"]
    f = w @ PolynomialBasis(1)(grid).T
    return w, f.mean(0), f.var(0) + 1 / beta


@pytest.mark.slow
def test_svi_mean_field_recovers_closed_form(problem):
    blr, x, y, grid = problem
    guide = AutoNormal(blr.model)
    steps = 1500
    posterior = fit(blr.model, guide, (x, y), elbo=Trace_ELBO(num_particles=16, vectorize_particles=True),
                    epochs=steps, lr=0.05, batch_size=len(x), shuffle=False, seed=0, progress=False,
                    scheduler=lambda opt: torch.optim.lr_scheduler.ExponentialLR(opt, 0.01 ** (1 / steps)))
    # The mean-field optimum for a Gaussian posterior is known: the exact mean, and
    # variances 1 / diag(precision).
    precision = torch.linalg.inv(blr.posterior_covariance_)
    torch.testing.assert_close(guide.locs.w.detach(), blr.posterior_mean_, atol=5e-3, rtol=0)
    torch.testing.assert_close(guide.scales.w.detach(), precision.diag().rsqrt(), rtol=0.05, atol=0)
    # Here the posterior is nearly uncorrelated, so the predictive matches the closed form.
    _, mean, var = _predictive(posterior, grid, blr.beta_)
    exact_mean, exact_var = blr.predict(grid)
    torch.testing.assert_close(mean, exact_mean, atol=0.03, rtol=0)
    torch.testing.assert_close(var, exact_var, rtol=0.10, atol=0)


@pytest.mark.slow
def test_nuts_recovers_closed_form_and_converges(problem):
    blr, x, y, grid = problem
    posterior = nuts(blr.model, x, y, num_samples=600, warmup_steps=300, num_chains=4, seed=0,
                     jit_compile=True, progress=False)
    table = summary(to_inference_data(posterior))
    assert float(table["r_hat"].max()) < 1.01
    w, mean, var = _predictive(posterior, grid, blr.beta_)
    std = blr.posterior_covariance_.diag().sqrt()
    # 2400 draws with ESS > 1000: the mean is within ~4 Monte-Carlo standard errors
    assert bool(((w.mean(0) - blr.posterior_mean_).abs() < 4 * std / np.sqrt(1000)).all())
    torch.testing.assert_close(w.std(0), std, rtol=0.08, atol=0)
    exact_mean, exact_var = blr.predict(grid)
    torch.testing.assert_close(var, exact_var, rtol=0.08, atol=0)
    torch.testing.assert_close(mean, exact_mean, atol=0.02, rtol=0)
    draws = posterior.draws()
    assert draws.samples["w"].shape == (4, 600, 2) and draws.diverging.shape == (4, 600)
    assert posterior.fixed_draws == 2400 and not posterior.is_point_mass
