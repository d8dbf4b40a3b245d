"""NormalInverseGammaRegression against computations that do not use its update formulas."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy import stats
from scipy.special import logsumexp

from bayesdl.models import NormalInverseGammaRegression, PolynomialBasis


def _data(n=30, d=3, seed=0):
    g = np.random.default_rng(seed)
    x = g.normal(size=(n, d))
    y = x @ g.normal(size=d) + 0.7 * g.normal(size=n)
    return torch.tensor(x), torch.tensor(y)


def test_the_predictive_is_the_ratio_of_marginal_likelihoods():
    """Under the NIG prior, y ~ MVT_{2 a0}(0, b0/a0 (I + X X^T / lambda)) (Murphy 2007, eq. 110), so
    p(y* | x*, D) = p(y, y*) / p(y): scipy's multivariate t, no conjugate update involved."""
    x, y = _data()
    lam, a0, b0 = 0.25, 6.0, 6.0
    nig = NormalInverseGammaRegression(lambda_prior=lam, a0=a0, b0=b0).fit(x, y)
    x_new, y_new = torch.tensor([[0.3, -1.0, 2.0]], dtype=torch.float64), 0.8

    def log_marginal(design, targets):
        shape = b0 / a0 * (np.eye(len(targets)) + design @ design.T / lam)
        return stats.multivariate_t(np.zeros(len(targets)), shape, df=2 * a0).logpdf(targets)

    joint = log_marginal(np.vstack([x.numpy(), x_new.numpy()]), np.append(y.numpy(), y_new))
    expected = joint - log_marginal(x.numpy(), y.numpy())
    got = float(nig.predictive(x_new).log_prob(torch.tensor([y_new], dtype=torch.float64)))
    assert got == pytest.approx(expected, abs=1e-9)


def test_the_posterior_matches_a_brute_force_grid_in_one_dimension():
    """D = 1: the joint posterior of (w, sigma^2) by quadrature on a grid of the unnormalised density
    (likelihood x N(w; 0, sigma^2 / lambda) x InvGamma(sigma^2; a0, b0)) against the NIG's marginals:
    E w = mu_n, Var w = b_n / (a_n - 1) / Lambda_n, E sigma^2 = b_n / (a_n - 1)."""
    g = np.random.default_rng(1)
    x = g.normal(size=(12, 1))
    y = 1.5 * x[:, 0] + 0.5 * g.normal(size=12)
    lam, a0, b0 = 0.5, 2.5, 1.0
    nig = NormalInverseGammaRegression(lambda_prior=lam, a0=a0, b0=b0).fit(torch.tensor(x), torch.tensor(y))
    w = np.linspace(-1.0, 4.0, 1201)[:, None]
    s2 = np.linspace(0.01, 3.0, 1200)[None, :]
    squares = ((y[None, :] - w * x[:, 0][None, :]) ** 2).sum(-1, keepdims=True)  # [W, 1]
    log_likelihood = -0.5 * len(y) * np.log(2 * np.pi * s2) - squares / (2 * s2)
    log_density = (log_likelihood + stats.norm(0.0, np.sqrt(s2 / lam)).logpdf(w)
                   + stats.invgamma(a0, scale=b0).logpdf(s2))
    p = np.exp(log_density - logsumexp(log_density))
    mean_w = float((p * w).sum())
    var_w = float((p * (w - mean_w) ** 2).sum())
    mean_s2 = float((p * s2).sum())
    assert nig.mu_.item() == pytest.approx(mean_w, rel=1e-4)
    assert nig.b_ / (nig.a_ - 1) * nig.covariance_.item() == pytest.approx(var_w, rel=1e-3)
    assert nig.b_ / (nig.a_ - 1) == pytest.approx(mean_s2, rel=1e-3)
    assert nig.a_ == a0 + 6.0


def test_thompson_draws_have_the_posterior_moments():
    """sigma^2 ~ InvGamma(a_n, b_n): mean b/(a-1), variance b^2/((a-1)^2 (a-2)); w: mean mu_n,
    covariance b/(a-1) Lambda_n^-1 (the marginal Student-t's). 200,000 draws, 5 standard errors."""
    x, y = _data(n=8, d=2, seed=2)
    nig = NormalInverseGammaRegression(lambda_prior=1.0, a0=3.0, b0=2.0).fit(x, y)
    n = 200_000
    w, s2 = nig.sample(n, torch.Generator().manual_seed(0))
    assert w.shape == (n, 2) and s2.shape == (n,)
    a, b = nig.a_, nig.b_
    assert float(s2.mean()) == pytest.approx(b / (a - 1), abs=5 * math.sqrt(b**2 / ((a - 1) ** 2 * (a - 2)) / n))
    covariance = b / (a - 1) * nig.covariance_
    se = (torch.diagonal(covariance) / n).sqrt()
    assert torch.all((w.mean(0) - nig.mu_).abs() < 5 * se)
    assert torch.allclose(torch.cov(w.T), covariance, rtol=0.03, atol=0.03 * float(covariance.abs().max()))
    first, _ = nig.sample(3, torch.Generator().manual_seed(1))
    again, _ = nig.sample(3, torch.Generator().manual_seed(1))
    assert torch.equal(first, again)


def test_zero_rows_give_the_prior_and_the_predictive_moments():
    nig = NormalInverseGammaRegression(lambda_prior=0.25, a0=6.0, b0=6.0).fit(torch.zeros(0, 2), torch.zeros(0))
    assert torch.equal(nig.mu_, torch.zeros(2, dtype=torch.float64))
    assert torch.allclose(nig.covariance_, 4 * torch.eye(2, dtype=torch.float64))
    assert (nig.a_, nig.b_) == (6.0, 6.0)
    mean, var = nig.predict(torch.tensor([[1.0, 0.0]]))
    # Student-t variance: scale^2 df / (df - 2) = b/a (1 + 4) * 12 / 10
    assert float(var) == pytest.approx(1.0 * 5 * 12 / 10)
    assert float(mean) == 0.0


def test_a_basis_is_applied_and_bad_input_is_refused():
    nig = NormalInverseGammaRegression(PolynomialBasis(2)).fit([0.0, 0.5, 1.0, 1.5], [0.0, 0.2, 1.1, 2.2])
    assert nig.mu_.shape == (3,)
    with pytest.raises(TypeError, match="basis"):
        NormalInverseGammaRegression(basis=3)
    with pytest.raises(ValueError, match="lambda_prior"):
        NormalInverseGammaRegression(lambda_prior=0.0)
    with pytest.raises(ValueError, match="a0"):
        NormalInverseGammaRegression(a0=-1.0)
    plain = NormalInverseGammaRegression()
    with pytest.raises(RuntimeError, match="fit"):
        plain.sample()
    with pytest.raises(ValueError, match="rows"):
        plain.fit(torch.zeros(3, 2), torch.zeros(2))
    with pytest.raises(ValueError, match=r"finite|NaN|inf"):
        plain.fit(torch.zeros(2, 2), torch.tensor([0.0, math.nan]))
    plain.fit(torch.zeros(2, 2), torch.zeros(2))
    with pytest.raises(ValueError, match="features"):
        plain.predictive(torch.zeros(1, 3))
    with pytest.raises(ValueError, match="num_samples"):
        plain.sample(0)


def test_partial_fit_equals_a_fit_on_all_rows():
    x, y = _data(n=20, d=3, seed=4)
    whole = NormalInverseGammaRegression().fit(x, y)
    parts = NormalInverseGammaRegression().fit(x[:0], y[:0])
    for i in range(0, 20, 7):
        parts.partial_fit(x[i:i + 7], y[i:i + 7])
    assert torch.allclose(parts.mu_, whole.mu_) and torch.allclose(parts.precision_, whole.precision_)
    assert (parts.a_, parts.n_samples_) == (whole.a_, 20) and parts.b_ == pytest.approx(whole.b_)
    with pytest.raises(ValueError, match="features"):
        parts.partial_fit(torch.zeros(1, 2), torch.zeros(1))
