import math

import numpy as np
import pytest
import torch
from scipy.stats import multivariate_normal
from sklearn.linear_model import BayesianRidge

from bayesdl.models import BayesianLinearRegression, GaussianBasis, PolynomialBasis


def _data(n=30, seed=0, low=-1, high=1):
    rng = np.random.default_rng(seed)
    x = rng.uniform(low, high, n)
    return x, -0.3 + 0.5 * x + 0.3 * x**2 + rng.normal(0, 0.2, n)


def test_bases():
    np.testing.assert_allclose(PolynomialBasis(3)([2.0, -1.0]).numpy(), [[1, 2, 4, 8], [1, -1, 1, -1]])
    phi = GaussianBasis([0.0, 1.0], scale=0.5)(torch.tensor([[0.0], [1.0]]))
    np.testing.assert_allclose(phi.numpy(), [[1, math.exp(-2)], [math.exp(-2), 1]])
    assert GaussianBasis([0.0], 1.0, bias=True)([3.0]).shape == (1, 2)
    assert GaussianBasis([0.0], 1.0, bias=True)([3.0])[0, 0] == 1.0


@pytest.mark.parametrize("alpha", [0.0, 0.5, 2.0])
def test_posterior_matches_numpy(alpha):
    x, y = _data()
    beta = 12.5
    blr = BayesianLinearRegression(PolynomialBasis(3), alpha=alpha, beta=beta).fit(x, y)
    phi = np.vander(x, 4, increasing=True)
    s_n = np.linalg.inv(alpha * np.eye(4) + beta * phi.T @ phi)
    m_n = beta * s_n @ phi.T @ y
    np.testing.assert_allclose(blr.posterior_mean_.numpy(), m_n, rtol=1e-9, atol=1e-10)
    np.testing.assert_allclose(blr.posterior_covariance_.numpy(), s_n, rtol=1e-8, atol=1e-12)
    grid = np.linspace(-3, 3, 7)
    phi_g = np.vander(grid, 4, increasing=True)
    mean, var = blr.predict(grid)
    np.testing.assert_allclose(mean.numpy(), phi_g @ m_n, rtol=1e-9, atol=1e-10)
    np.testing.assert_allclose(var.numpy(), 1 / beta + np.einsum("nd,de,ne->n", phi_g, s_n, phi_g), rtol=1e-9)


def test_log_evidence_matches_marginal_gaussian():
    # p(t | alpha, beta) = N(t | 0, beta^-1 I + alpha^-1 Phi Phi^T): an independent route to PRML 3.86
    x, y = _data(25, seed=2)
    for alpha, beta in [(2.0, 12.5), (0.1, 3.0)]:
        blr = BayesianLinearRegression(GaussianBasis(np.linspace(-1, 1, 6), 0.4), alpha, beta).fit(x, y)
        phi = blr.basis(x).numpy()
        cov = np.eye(len(x)) / beta + phi @ phi.T / alpha
        assert blr.log_evidence() == pytest.approx(multivariate_normal(np.zeros(len(x)), cov).logpdf(y), rel=1e-10)


def test_evidence_maximisation_matches_sklearn():
    x, y = _data(40, seed=3)
    blr = BayesianLinearRegression(PolynomialBasis(3), alpha=1.0, beta=1.0).maximize_evidence(x, y, tol=1e-12)
    ridge = BayesianRidge(fit_intercept=False, alpha_1=0, alpha_2=0, lambda_1=0, lambda_2=0, tol=1e-14,
                          max_iter=5000, alpha_init=1.0, lambda_init=1.0).fit(np.vander(x, 4, increasing=True), y)
    assert blr.alpha_ == pytest.approx(ridge.lambda_, rel=1e-6)
    assert blr.beta_ == pytest.approx(ridge.alpha_, rel=1e-6)
    np.testing.assert_allclose(blr.posterior_mean_.numpy(), ridge.coef_, rtol=1e-6)
    # a fixed point: the evidence is at a stationary point in (alpha, beta)
    base = blr.log_evidence()
    for da, db in [(1.01, 1), (0.99, 1), (1, 1.01), (1, 0.99)]:
        other = BayesianLinearRegression(PolynomialBasis(3), blr.alpha_ * da, blr.beta_ * db).fit(x, y)
        assert other.log_evidence() <= base + 1e-9
    assert 0 < blr.gamma_ <= 4


def test_variance_minimal_at_barycenter_for_flat_prior():
    # report, question 1.5: alpha = 0, beta = 1 -> argmin of the predictive variance = mean of x
    rng = np.random.default_rng(4)
    x = np.concatenate([rng.uniform(-3, -1, 10), rng.uniform(1, 3, 10)])
    y = 0.5 * x + rng.normal(0, 0.2, 20)
    blr = BayesianLinearRegression(PolynomialBasis(1), alpha=0.0, beta=1.0).fit(x, y)
    cov = blr.posterior_covariance_.numpy()
    assert -cov[0, 1] / cov[1, 1] == pytest.approx(x.mean(), rel=1e-10)  # vertex of the parabola
    grid = np.linspace(-1, 1, 4001)
    assert grid[np.argmin(blr.predict(grid)[1].numpy())] == pytest.approx(x.mean(), abs=1e-3)


def test_gaussian_basis_variance_tends_to_noise():
    x, y = _data(20, low=0, high=1)
    blr = BayesianLinearRegression(GaussianBasis(np.linspace(0, 1, 9), 0.1), alpha=0.05, beta=12.5).fit(x, y)
    far = blr.predict([-5.0, 6.0])[1]
    assert torch.allclose(far, torch.full((2,), 1 / 12.5, dtype=torch.float64), rtol=1e-9)
    linear = BayesianLinearRegression(PolynomialBasis(1), 2.0, 12.5).fit(x, y)
    near, away = linear.predict([0.5, 10.0])[1]
    assert away > 10 * near


def test_torch_and_column_inputs():
    x, y = _data()
    a = BayesianLinearRegression(PolynomialBasis(2), 1.0, 10.0).fit(torch.tensor(x)[:, None], torch.tensor(y)[:, None])
    b = BayesianLinearRegression(PolynomialBasis(2), 1.0, 10.0).fit(x, y)
    assert torch.equal(a.posterior_mean_, b.posterior_mean_)
    assert isinstance(a.predict(x)[0], torch.Tensor)


@pytest.mark.parametrize(
    "make, message",
    [
        (lambda: BayesianLinearRegression(PolynomialBasis(1), alpha=-1.0), "alpha must be >= 0"),
        (lambda: BayesianLinearRegression(PolynomialBasis(1), beta=0.0), "beta must be > 0"),
        (lambda: BayesianLinearRegression(PolynomialBasis(1), beta=float("nan")), "beta must be finite"),
        (lambda: BayesianLinearRegression(PolynomialBasis(3), alpha=0.0).fit([0.0, 1.0], [1.0, 2.0]), "singular"),
        (lambda: BayesianLinearRegression(PolynomialBasis(1)).fit([0.0, 1.0], [1.0]), "same length"),
        (lambda: BayesianLinearRegression(PolynomialBasis(1)).fit([0.0, float("nan")], [1.0, 2.0]), "non-finite"),
        (lambda: BayesianLinearRegression(PolynomialBasis(1)).fit([], []), "empty"),
        (lambda: BayesianLinearRegression(PolynomialBasis(1)).fit(np.ones((3, 2)), np.ones(3)), r"\[N\] or \[N, 1\]"),
        (lambda: BayesianLinearRegression(PolynomialBasis(1), alpha=0.0).fit([0, 1, 2], [0, 1, 3]).log_evidence(),
         "flat prior"),
        (lambda: GaussianBasis([0.0], scale=-1.0), "scale must be > 0"),
        (lambda: PolynomialBasis(-1), "degree must be >= 0"),
    ],
)
def test_bad_input(make, message):
    with pytest.raises((ValueError, TypeError), match=message):
        make()


def test_predict_before_fit():
    with pytest.raises(RuntimeError, match="fit"):
        BayesianLinearRegression(PolynomialBasis(1)).predict([0.0])


def test_evidence_maximisation_on_the_boundary():
    # Pure noise around 0 and a linear basis: the evidence prefers w = 0 (alpha -> inf).
    rng = np.random.default_rng(5)
    x = rng.uniform(0, 1, 12)
    y = rng.normal(0, 1, 12)
    y -= y.mean()
    blr = BayesianLinearRegression(PolynomialBasis(0), alpha=1.0, beta=1.0).maximize_evidence(x, y)
    assert math.isinf(blr.alpha_) and blr.gamma_ == 0.0
    assert blr.beta_ == pytest.approx(len(y) / (y**2).sum())
    assert torch.count_nonzero(blr.posterior_mean_) == 0
    # the limit agrees with a very large finite alpha
    near = BayesianLinearRegression(PolynomialBasis(0), alpha=1e12, beta=blr.beta_).fit(x, y)
    assert blr.log_evidence() == pytest.approx(near.log_evidence(), rel=1e-9)
    mean, var = blr.predict([0.5])
    assert float(mean) == 0.0 and float(var) == pytest.approx(1 / blr.beta_)
