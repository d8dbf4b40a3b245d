"""ArviZ conversion: groups, dims, and log-likelihoods of the predictive each method reports."""

import numpy as np
import pytest
import torch
import torch.nn as nn
from test_laplace import _multiclass as _map  # a small MAP MLP on 3 classes
from torch.func import jvp

from bayesdl.evaluation.diagnostics import compare, convergence
from bayesdl.inference import FullLaplace, Posterior, fit_laplace, to_inference_data
from bayesdl.models import BNN, BayesianLinearRegression, Gaussian, PolynomialBasis


def _log_lik(logits, y):
    return torch.log_softmax(logits, -1).gather(-1, y[:, None])[..., 0]


def test_groups_dims_and_log_likelihood_of_the_network_draws():
    model, posterior, x, y = _map()
    idata = to_inference_data(posterior, x, y, num_samples=3)
    assert {"posterior", "log_likelihood", "posterior_predictive", "observed_data"} <= set(idata.groups())
    assert idata.posterior["body.0.weight"].dims == ("chain", "draw", "body.0_out", "body.0_in")
    np.testing.assert_array_equal(idata.observed_data["y"].values, y.numpy())
    # a MAP posterior: every draw is the point estimate
    weights = posterior.point_estimate()
    expected = _log_lik(model.network(x, weights), y).detach()
    np.testing.assert_allclose(idata.log_likelihood["y"].values[0, 2], expected.numpy(), rtol=1e-5)


def test_laplace_log_likelihood_is_that_of_its_linearised_predictive():
    """A Laplace posterior predicts through the linearised network, so its log-likelihoods
    (and PSIS-LOO) must too: checked against an independent linearisation by a JVP."""
    model, posterior, x, y = _map()
    la = fit_laplace(posterior, (x, y), subset="all", structure="full")
    idata = to_inference_data(la, x, y, num_samples=4)
    theta = model.flatten(posterior.point_estimate())
    draws = model.flatten({k: torch.as_tensor(idata.posterior[k].values[0]) for k in model.unflatten(theta)})

    def f(t):
        return model.network(x, model.unflatten(t))

    for s in range(4):
        output, tangent = jvp(f, (theta,), (draws[s] - theta,))
        expected = _log_lik(output + tangent, y).detach()
        np.testing.assert_allclose(idata.log_likelihood["y"].values[0, s], expected.numpy(), rtol=1e-5)
        # ... which is not the raw network's at the same weights
        raw = _log_lik(f(draws[s]), y).detach()
        assert not np.allclose(idata.log_likelihood["y"].values[0, s], raw.numpy(), rtol=1e-5)


def test_compare_needs_log_likelihoods():
    posterior = _map()[1]
    with pytest.raises(ValueError, match="log_likelihood"):
        compare({"map": to_inference_data(posterior, num_samples=2)})


def _ar1_chains(rho, chains=4, draws=2000, seed=0):
    """Stationary AR(1) chains ``z_t = rho z_{t-1} + sqrt(1 - rho^2) e_t``: their effective sample size
    is ``chains * draws * (1 - rho) / (1 + rho)``."""
    rng = np.random.default_rng(seed)
    noise = rng.normal(size=(chains, draws))
    z = np.empty_like(noise)
    z[:, 0] = noise[:, 0]
    for t in range(1, draws):
        z[:, t] = rho * z[:, t - 1] + np.sqrt(1 - rho**2) * noise[:, t]
    return z


def test_convergence_figures_of_chains_with_known_answers():
    """Known answers, not az.summary again: independent draws have R-hat ~ 1 and an ESS ~ their
    number; AR(1) chains have ESS = n (1 - rho) / (1 + rho); chains stuck at different places
    have a large R-hat; divergences are counted."""
    import arviz as az

    chains, draws, rho = 4, 2000, 0.6
    iid = np.random.default_rng(1).normal(size=(chains, draws))
    correlated = _ar1_chains(rho, chains, draws)
    diverging = np.zeros((chains, draws), dtype=bool)
    diverging[1, [3, 50, 299]] = True
    figures = convergence(az.from_dict(posterior={"iid": iid, "ar": correlated}, sample_stats={"diverging": diverging}))
    assert figures["divergences"] == 3
    assert figures["max_r_hat"] < 1.01
    expected_ess = chains * draws * (1 - rho) / (1 + rho)  # 2000, below the 8000 of the iid draws
    assert figures["min_ess_bulk"] == pytest.approx(expected_ess, rel=0.15)
    stuck = iid + 3.0 * np.arange(chains)[:, None]  # each chain explores its own mode
    figures = convergence(az.from_dict(posterior={"w": stuck}))
    assert figures["max_r_hat"] > 2 and figures["divergences"] == 0


def test_psis_loo_matches_exact_leave_one_out_for_linear_regression():
    """Bayesian linear regression: the Laplace posterior is exact, so PSIS-LOO of its draws must
    match exact leave-one-out, ``sum_n ln p(y_n | x_n, D without n)`` from closed-form refits."""
    rng = np.random.default_rng(0)
    n, alpha, beta = 30, 2.0, 12.5
    x = rng.uniform(-1, 1, n)
    y = -0.3 + 0.5 * x + rng.normal(0, 0.3, n)
    basis = PolynomialBasis(1)
    exact = 0.0
    for i in range(n):
        keep = np.arange(n) != i
        mean, var = BayesianLinearRegression(basis, alpha, beta).fit(x[keep], y[keep]).predict(x[i:i + 1])
        exact += float(torch.distributions.Normal(mean, var.sqrt()).log_prob(torch.tensor(y[i])).sum())
    blr = BayesianLinearRegression(basis, alpha, beta).fit(x, y)
    model = BNN(nn.Linear(2, 1, bias=False), prior_scale=alpha**-0.5, likelihood=Gaussian(scale=beta**-0.5)).double()
    phi, target = basis(x), torch.tensor(y)
    la = FullLaplace(model, blr.posterior_mean_, prior_precision=alpha).fit((phi, target))
    torch.manual_seed(0)
    idata = to_inference_data(Posterior(model, la), phi, target, num_samples=4000)
    # Monte-Carlo error of PSIS-LOO with 4000 draws here: 0.026 nats (standard deviation over 12 seeds)
    assert float(compare({"exact_posterior": idata}).loc["exact_posterior", "elpd_loo"]) == pytest.approx(exact, abs=0.12)
