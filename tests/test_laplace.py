"""Laplace approximations: exactness where it must be exact, algebra, sampling, bad input."""

import math
import warnings

import numpy as np
import pytest
import torch
import torch.nn as nn

from bayesdl.inference import (
    CurvatureWarning,
    DiagLaplace,
    FullLaplace,
    KronLastLayerLaplace,
    MAPGuide,
    Posterior,
    fit,
    fit_laplace,
    laplace,
)
from bayesdl.models import BNN, MLP, BayesianLinearRegression, Gaussian, PolynomialBasis


def _linear_regression(n=30, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.uniform(-1, 1, n)
    y = -0.3 + 0.5 * x + rng.normal(0, 0.2, n)
    return x, y


def test_laplace_is_exact_for_bayesian_linear_regression():
    """Gaussian prior and likelihood, linear model: the posterior is Gaussian, so the Laplace
    covariance equals the closed form and its marginal likelihood equals the evidence."""
    x, y = _linear_regression()
    alpha, beta = 2.0, 12.5
    blr = BayesianLinearRegression(PolynomialBasis(1), alpha, beta).fit(x, y)
    phi = PolynomialBasis(1)(x)
    model = BNN(nn.Linear(2, 1, bias=False), prior_scale=alpha**-0.5,
                likelihood=Gaussian(scale=beta**-0.5)).double()
    # (rtol 1e-6: the likelihood stores its noise scale in float32 before .double())
    la = FullLaplace(model, blr.posterior_mean_, prior_precision=alpha).fit((phi, torch.tensor(y)))
    torch.testing.assert_close(la.posterior_covariance(), blr.posterior_covariance_, rtol=1e-6, atol=1e-12)
    assert la.log_marginal_likelihood() == pytest.approx(blr.log_evidence(), rel=1e-6)
    # and the exact Hessian coincides with the GGN for this model
    exact = FullLaplace(model, blr.posterior_mean_, prior_precision=alpha, hessian="exact").fit((phi, torch.tensor(y)))
    torch.testing.assert_close(exact.posterior_covariance(), blr.posterior_covariance_, rtol=1e-6, atol=1e-12)


def _logistic(seed=0, n=60):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 2, generator=g, dtype=torch.float64)
    y = (x[:, 0] + 0.5 * x[:, 1] + 0.8 * torch.randn(n, generator=g, dtype=torch.float64) > 0).long()
    model = BNN(nn.Linear(2, 1), likelihood="bernoulli").double()
    posterior = fit(model, MAPGuide(model), (x, y), epochs=300, lr=0.05, batch_size=n, progress=False, seed=0)
    return model, posterior, x, y


def test_ggn_equals_the_hessian_for_logistic_regression():
    model, posterior, x, y = _logistic()
    ggn = laplace(posterior, "all", "full").fit((x, y))
    theta = model.flatten(posterior.point_estimate())

    def nll(t):
        return -model.likelihood.log_prob(model.network(x, t), y).sum()

    hessian = torch.autograd.functional.hessian(nll, theta)
    torch.testing.assert_close(ggn.curvature(), hessian, rtol=1e-6, atol=1e-8)
    diag = laplace(posterior, "all", "diag").fit((x, y))
    torch.testing.assert_close(diag.curvature(), hessian.diagonal(), rtol=1e-6, atol=1e-8)


def test_prior_precision_maximises_the_marginal_likelihood():
    _, posterior, x, y = _logistic()
    la = laplace(posterior, "all", "full").fit((x, y)).optimize_prior_precision()
    best = la.log_marginal_likelihood()
    for factor in (0.8, 1.25):
        assert la.log_marginal_likelihood(la.prior_precision * factor) < best


def test_draws_have_the_posterior_covariance():
    torch.manual_seed(0)
    _, posterior, x, y = _logistic()
    la = laplace(posterior, "all", "full").fit((x, y))
    draws = la.sample_flat(40000)[:, la.index].double()
    torch.testing.assert_close(torch.cov(draws.T), la.posterior_covariance(), rtol=0.05, atol=1e-4)
    torch.testing.assert_close(draws.mean(0), la.theta.double(), atol=0.02, rtol=0)


def _multiclass(seed=0):
    g = torch.Generator().manual_seed(seed)
    y = torch.randint(0, 3, (120,), generator=g)
    x = torch.randn(120, 2, generator=g, dtype=torch.float64) + 2 * torch.eye(3, 2, dtype=torch.float64)[y]
    torch.manual_seed(seed)
    model = BNN(MLP(2, 6, 3), likelihood="categorical").double()
    posterior = fit(model, MAPGuide(model), (x, y), epochs=150, lr=0.02, batch_size=40, progress=False, seed=0)
    return model, posterior, x, y


def test_kron_algebra_matches_the_dense_kronecker_product():
    """The eigen-based KFAC quantities equal those of the explicit matrix G (x) A / N + delta I."""
    model, posterior, x, y = _multiclass()
    la = laplace(posterior, "last_layer", "kron").fit((x, y))
    assert isinstance(la, KronLastLayerLaplace)
    delta = 0.7
    dense = la.curvature() + delta * torch.eye(la.num_params, dtype=torch.float64)  # G (x) A / N + delta I
    assert la.log_det_posterior_precision(delta) == pytest.approx(float(torch.logdet(dense)), rel=1e-9)
    la.prior_precision = delta
    sigma = torch.linalg.inv(dense)
    phi = _last_layer_features(model, posterior, x[:5])
    expected = torch.stack([torch.kron(torch.eye(3, dtype=torch.float64), p[None]) for p in phi])  # J = I (x) phi^T
    expected = expected @ sigma @ expected.transpose(1, 2)
    torch.testing.assert_close(la.linearised_predictive(x[:5])[1], expected, rtol=1e-8, atol=1e-12)
    # draws whitened by the dense precision have identity covariance (within 4.5 standard errors)
    n = 40000
    white = (la.sample_flat(n)[:, la.index].double() - la.theta.double()) @ torch.linalg.cholesky(dense)
    deviation = (torch.cov(white.T) - torch.eye(la.num_params, dtype=torch.float64)).abs().max()
    assert float(deviation) < 4.5 * math.sqrt(2 / n)


def _last_layer_features(model, posterior, x):
    """The inputs of the output layer at the MAP, with a 1 for the bias: ``[N, H + 1]``."""
    _, phi = model.features(x, posterior.point_estimate())
    return torch.cat([phi.double(), torch.ones(len(x), 1, dtype=torch.float64)], dim=1)


def test_last_layer_full_is_the_exact_ggn_of_the_last_layer():
    model, posterior, x, y = _multiclass()
    full = laplace(posterior, "last_layer", "full").fit((x, y))
    phi = _last_layer_features(model, posterior, x)
    output = model.network(x, posterior.point_estimate())
    lam = model.likelihood.output_hessian(output).double()
    expected = sum(torch.kron(lam[n], torch.outer(phi[n], phi[n])) for n in range(len(x)))
    torch.testing.assert_close(full.curvature(), expected, rtol=1e-8, atol=1e-10)
    diag = laplace(posterior, "last_layer", "diag").fit((x, y))
    torch.testing.assert_close(diag.curvature(), expected.diagonal(), rtol=1e-8, atol=1e-10)


def test_predictions_become_less_confident_far_from_the_data():
    model, posterior, x, y = _multiclass()
    far = torch.tensor([[30.0, -30.0], [-40.0, 25.0]], dtype=torch.float64)
    map_conf = posterior.predict(far, num_samples=1).probs[0].max(-1).values
    for subset, structure in [("all", "full"), ("all", "diag"), ("last_layer", "kron")]:
        la = laplace(posterior, subset, structure).fit((x, y)).optimize_prior_precision()
        probs = la.predictive_probs(far)
        torch.testing.assert_close(probs.sum(-1), torch.ones(2, dtype=torch.float64))
        assert bool((probs.max(-1).values < map_conf).all())
        samples = Posterior(model, la).predict(far, num_samples=50)
        assert samples.probs.shape == (50, 2, 3)


def test_non_positive_definite_curvature_warns_and_does_not_crash():
    torch.manual_seed(3)
    model = BNN(MLP(2, 5, 2, activation="tanh"), likelihood="categorical").double()
    x = torch.randn(40, 2, dtype=torch.float64)
    y = torch.randint(0, 2, (40,))
    guide = MAPGuide(model)  # random weights: far from a minimum, the Hessian is indefinite
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        la = laplace(Posterior(model, guide), "all", "full", hessian="exact").fit((x, y))
    assert any(issubclass(w.category, CurvatureWarning) for w in caught)
    # clamped at 0, so the posterior variances stay within (0, 1 / delta]
    variances = torch.linalg.eigvalsh(la.posterior_covariance())
    assert bool((variances > 0).all()) and float(variances.max()) <= (1 + 1e-9) / la.prior_precision
    assert math.isfinite(la.log_marginal_likelihood())
    assert Posterior(model, la).predict(x[:4], num_samples=3).probs.shape == (3, 4, 2)


def test_fit_laplace_returns_a_posterior():
    _, posterior, x, y = _multiclass()
    la_post = fit_laplace(posterior, (x, y), subset="last_layer", structure="kron")
    assert la_post.method == "KronLastLayerLaplace"
    assert la_post.sample(4)["body.0.weight"].shape == (4, 6, 2)
    # the body stays at the MAP, which is also the point estimate
    torch.testing.assert_close(la_post.sample(2)["body.0.weight"][1], posterior.point_estimate()["body.0.weight"])
    torch.testing.assert_close(la_post.point_estimate()["head.weight"], posterior.point_estimate()["head.weight"])


@pytest.mark.parametrize(
    "call, error, message",
    [
        (lambda p, d: laplace(p, "all", "kron"), ValueError, "last layer"),
        (lambda p, d: laplace(p, "some", "full"), ValueError, "some"),
        (lambda p, d: laplace("weights", "all", "full"), TypeError, "MAPGuide"),
        (lambda p, d: laplace(p, "all", "diag", hessian="exact"), ValueError, "GGN"),
        (lambda p, d: laplace(p).log_marginal_likelihood(), RuntimeError, "fit"),
        (lambda p, d: laplace(p).fit((d[0][:0], d[1][:0])), ValueError, "empty"),
        (lambda p, d: laplace(p).fit(d).optimize_prior_precision(bounds=(1.0, 0.5)), ValueError, "bounds"),
    ],
)
def test_bad_input(call, error, message):
    _, posterior, x, y = _logistic(n=20)
    with pytest.raises(error, match=message):
        call(posterior, (x, y))


def test_diag_and_full_laplace_types():
    _, posterior, _, _ = _logistic(n=20)
    assert isinstance(laplace(posterior, "all", "diag"), DiagLaplace)
    assert isinstance(laplace(posterior, "all", "full"), FullLaplace)


@pytest.mark.slow
def test_linearised_draws_are_joint_and_match_the_glm():
    # Logistic regression is linear in the weights: the GLM outputs are the network's.
    model, posterior, x, y = _logistic()
    la = laplace(posterior, "all", "full").fit((x, y))
    draws = la.sample_flat(5)
    torch.testing.assert_close(Posterior(model, la).outputs_at(x[:7], model.unflatten(draws)),
                               torch.stack([model.network(x[:7], d) for d in draws]))
    # For an MLP the draws' output covariance is J Sigma J^T.
    torch.manual_seed(0)
    model, posterior, x, y = _multiclass()
    for structure in ("full", "diag"):
        la = laplace(posterior, "all", structure).fit((x, y))
        outputs = la.predictive_outputs(x[:3], num_samples=20000)
        _, cov = la.linearised_predictive(x[:3])
        for n in range(3):
            torch.testing.assert_close(torch.cov(outputs[:, n].T), cov[n], rtol=0.08, atol=0.02 * float(cov[n].diagonal().max()))
