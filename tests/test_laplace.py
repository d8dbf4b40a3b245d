"""Laplace approximations: exactness where it must be exact, algebra, sampling, bad input."""

import math
import warnings

import numpy as np
import pytest
import torch
import torch.nn as nn
from scipy.optimize import brentq

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


def _logistic_nll(x, y):
    """``-sum_n ln p(y_n | x_n, t)`` of logistic regression with ``t = [w1, w2, b]``, written out:
    ``sum_n softplus(f_n) - y_n f_n``, ``f = x w + b``."""
    def nll(t):
        f = x @ t[:2] + t[2]
        return (torch.nn.functional.softplus(f) - y.double() * f).sum()

    return nll


def test_ggn_equals_the_hessian_for_logistic_regression():
    model, posterior, x, y = _logistic()
    ggn = laplace(posterior, "all", "full").fit((x, y))
    theta = model.flatten(posterior.point_estimate())
    hessian = torch.autograd.functional.hessian(_logistic_nll(x, y), theta)
    torch.testing.assert_close(ggn.curvature(), hessian, rtol=1e-6, atol=1e-8)
    diag = laplace(posterior, "all", "diag").fit((x, y))
    torch.testing.assert_close(diag.curvature(), hessian.diagonal(), rtol=1e-6, atol=1e-8)


def test_prior_precision_is_the_fixed_point_of_mackays_update():
    """The maximiser of the Laplace evidence in delta (MAP fixed) solves MacKay's condition
    ``delta ||theta*||^2 = gamma = sum_i lambda_i / (lambda_i + delta)``, ``lambda_i`` the eigenvalues of
    the Hessian (autograd; for logistic regression it equals the GGN), solved here by root finding."""
    model, posterior, x, y = _logistic()
    la = laplace(posterior, "all", "full").fit((x, y)).optimize_prior_precision()
    theta = model.flatten(posterior.point_estimate()).double()
    nll = _logistic_nll(x, y)

    lam = torch.linalg.eigvalsh(torch.autograd.functional.hessian(nll, theta)).numpy()
    squared_norm = float(theta @ theta)
    delta = brentq(lambda d: d * squared_norm - (lam / (lam + d)).sum(), 1e-6, 1e6)
    assert la.prior_precision == pytest.approx(delta, rel=1e-3)


def test_draws_have_the_posterior_covariance():
    """Draws of the full Laplace approximation have mean theta* and covariance (H + delta I)^-1, with
    H the autograd Hessian of the negative log-likelihood of logistic regression."""
    torch.manual_seed(0)
    model, posterior, x, y = _logistic()
    la = laplace(posterior, "all", "full").fit((x, y))
    theta = model.flatten(posterior.point_estimate()).double()
    nll = _logistic_nll(x, y)

    precision = torch.autograd.functional.hessian(nll, theta) + la.prior_precision * torch.eye(3, dtype=torch.float64)
    covariance = torch.linalg.inv(precision)
    torch.testing.assert_close(la.posterior_covariance(), covariance, rtol=1e-7, atol=1e-12)
    draws = la.sample_flat(40000)[:, la.index].double()
    torch.testing.assert_close(torch.cov(draws.T), covariance, rtol=0.05, atol=1e-4)
    torch.testing.assert_close(draws.mean(0), theta, atol=0.02, rtol=0)


def _multiclass(seed=0):
    g = torch.Generator().manual_seed(seed)
    y = torch.randint(0, 3, (120,), generator=g)
    x = torch.randn(120, 2, generator=g, dtype=torch.float64) + 2 * torch.eye(3, 2, dtype=torch.float64)[y]
    torch.manual_seed(seed)
    model = BNN(MLP(2, 6, 3), likelihood="categorical").double()
    posterior = fit(model, MAPGuide(model), (x, y), epochs=150, lr=0.02, batch_size=40, progress=False, seed=0)
    return model, posterior, x, y


# ---------------------------------------------------------------------------------------------
# Independent references: autograd Hessians and Jacobians of the network run by torch itself
# (torch.func.functional_call), never the library's output_hessian, features or factors.

def _run_net(model, weights, x):
    """The plain torch network at ``weights`` ``{site: tensor}``."""
    return torch.func.functional_call(model.net, weights, (x,))


def _categorical_nll(y):
    return lambda f: -torch.log_softmax(f, -1).gather(1, y[:, None]).sum()


def _gaussian_nll(y, sigma):
    return lambda f: 0.5 * (((y - f[:, 0]) / sigma) ** 2).sum()


def _head_function(model, weights, x):
    """The network output as a function of the output layer's weights flattened as the last-layer
    Laplace orders them, row ``k`` = ``[W_k, b_k]``; and their current value."""
    k, h = weights["head.weight"].shape

    def output(v):
        v = v.view(k, h + 1)
        return _run_net(model, {**weights, "head.weight": v[:, :h], "head.bias": v[:, h]}, x)

    return output, torch.cat([weights["head.weight"], weights["head.bias"][:, None]], 1).reshape(-1)


def _head_inputs(model, weights, x):
    """The inputs of the output layer, captured by a hook, with a 1 for the bias: ``[N, H + 1]``."""
    captured = []
    hook = model.net.head.register_forward_hook(lambda module, inputs, output: captured.append(inputs[0]))
    try:
        _run_net(model, weights, x)
    finally:
        hook.remove()
    phi = captured[0].detach().double()
    return torch.cat([phi, torch.ones(len(x), 1, dtype=phi.dtype)], dim=1)


def _output_hessians(outputs, y):
    """Hessian of ``-ln softmax(f)[y_n]`` in the logits ``f_n``, per example, by autograd: ``[N, K, K]``."""
    return torch.stack([torch.autograd.functional.hessian(
        lambda f, n=n: -torch.log_softmax(f, -1)[y[n]], outputs[n].detach()) for n in range(len(y))])


def test_curvatures_equal_autograd_hessians_for_a_small_classifier():
    """All weights: the GGN is sum_n J_n^T Lambda_n J_n with J and Lambda by autograd, and the exact
    Hessian is autograd's. Last layer: the network is linear in it, so its GGN *is* the Hessian of
    the negative log-likelihood in those weights."""
    model, posterior, x, y = _multiclass()
    weights = posterior.point_estimate()
    theta = model.flatten(weights)
    nll = _categorical_nll(y)

    jac = torch.autograd.functional.jacobian(lambda t: _run_net(model, model.unflatten(t), x), theta)  # [N, K, P]
    lam = _output_hessians(_run_net(model, weights, x), y)
    ggn = torch.einsum("nkp,nkl,nlq->pq", jac, lam, jac)
    torch.testing.assert_close(laplace(posterior, "all", "full").fit((x, y)).curvature(), ggn, rtol=1e-7, atol=1e-9)
    torch.testing.assert_close(laplace(posterior, "all", "diag").fit((x, y)).curvature(), ggn.diagonal(),
                               rtol=1e-7, atol=1e-9)
    hessian = torch.autograd.functional.hessian(lambda t: nll(_run_net(model, model.unflatten(t), x)), theta)
    with warnings.catch_warnings():  # at this MAP the exact Hessian is indefinite: clamped, with a warning
        warnings.simplefilter("ignore", CurvatureWarning)
        exact = laplace(posterior, "all", "full", hessian="exact").fit((x, y))
    torch.testing.assert_close(exact.curvature(), hessian, rtol=1e-7, atol=1e-9)

    output, v = _head_function(model, weights, x)
    last = torch.autograd.functional.hessian(lambda u: nll(output(u)), v)
    torch.testing.assert_close(laplace(posterior, "last_layer", "full").fit((x, y)).curvature(), last,
                               rtol=1e-7, atol=1e-9)
    torch.testing.assert_close(laplace(posterior, "last_layer", "diag").fit((x, y)).curvature(), last.diagonal(),
                               rtol=1e-7, atol=1e-9)


def _check_against_dense(la, model, weights, x, curvature, delta=0.7):
    """``la`` (prior precision set to ``delta``) against a dense reference ``curvature``: the log-determinant
    of the posterior precision, the output covariance J Sigma J^T of the linearised predictive (J by
    autograd) and the covariance of its weight draws."""
    dense = curvature + delta * torch.eye(len(curvature), dtype=torch.float64)
    la.prior_precision = delta
    assert la.log_det_posterior_precision() == pytest.approx(float(torch.logdet(dense)), rel=1e-9)
    output, v = _head_function(model, weights, x[:5])
    jac = torch.autograd.functional.jacobian(output, v)  # [5, K, P]
    expected = jac @ torch.linalg.inv(dense) @ jac.transpose(1, 2)
    torch.testing.assert_close(la.linearised_predictive(x[:5])[1], expected, rtol=1e-7, atol=1e-12)
    # draws whitened by the dense precision have identity covariance (within 4.5 standard errors)
    n = 40000
    white = (la.sample_flat(n)[:, la.index].double() - la.theta.double()) @ torch.linalg.cholesky(dense)
    deviation = (torch.cov(white.T) - torch.eye(len(dense), dtype=torch.float64)).abs().max()
    assert float(deviation) < 4.5 * math.sqrt(2 / n)


def test_kfac_is_the_exact_ggn_where_it_is_exact():
    """KFAC ``(sum_n Lambda_n) (x) (sum_n phi_n phi_n^T) / N`` is the exact GGN when Lambda is the same
    for every example (a Gaussian likelihood with one output) and when there is one example; the GGN
    of the last layer is the autograd Hessian there."""
    torch.manual_seed(0)
    g = torch.Generator().manual_seed(1)
    x = torch.randn(40, 2, generator=g, dtype=torch.float64)
    y = torch.sin(2 * x[:, 0]) + 0.1 * torch.randn(40, generator=g, dtype=torch.float64)
    model = BNN(MLP(2, 5, 1), likelihood=Gaussian(scale=0.5)).double()
    sigma = float(model.likelihood.scale)  # 0.5 up to the float32 rounding of its stored logarithm
    posterior = Posterior(model, MAPGuide(model))  # any weights: the last-layer GGN is exact at all of them
    weights = posterior.point_estimate()
    output, v = _head_function(model, weights, x)
    hessian = torch.autograd.functional.hessian(lambda u: _gaussian_nll(y, sigma)(output(u)), v)
    kron = laplace(posterior, "last_layer", "kron").fit((x, y), batch_size=16)
    assert isinstance(kron, KronLastLayerLaplace)
    torch.testing.assert_close(kron.curvature(), hessian, rtol=1e-7, atol=1e-9)
    _check_against_dense(kron, model, weights, x, hessian)

    model, posterior, x, y = _multiclass()
    weights = posterior.point_estimate()
    output, v = _head_function(model, weights, x[:1])
    hessian = torch.autograd.functional.hessian(lambda u: _categorical_nll(y[:1])(output(u)), v)
    one = laplace(posterior, "last_layer", "kron").fit((x[:1], y[:1]))
    torch.testing.assert_close(one.curvature(), hessian, rtol=1e-7, atol=1e-10)


def test_kfac_factors_and_algebra_against_an_independent_reference():
    """For a classifier (where KFAC is an approximation) the curvature is ``G (x) A / N`` with
    ``G = sum_n Lambda_n`` (autograd Hessians in the logits) and ``A = sum_n phi~_n phi~_n^T`` (the
    output layer's inputs, read by a hook); the eigen-based log-determinant, predictive covariance
    and draws equal those of that dense matrix."""
    model, posterior, x, y = _multiclass()
    weights = posterior.point_estimate()
    la = laplace(posterior, "last_layer", "kron").fit((x, y), batch_size=50)
    g = _output_hessians(_run_net(model, weights, x), y).sum(0)
    phi = _head_inputs(model, weights, x)
    reference = torch.kron(g, phi.T @ phi) / len(x)
    torch.testing.assert_close(la.curvature(), reference, rtol=1e-7, atol=1e-10)
    _check_against_dense(la, model, weights, x, reference)


def test_probit_predictive_is_the_integral_of_the_linearised_predictive():
    """Logistic regression: ``p(y=1 | x) = E[sigmoid(f)]`` with ``f ~ N(x~ theta*, x~ Sigma x~^T)``,
    ``Sigma = (H + delta I)^-1`` (H by autograd), integrated by Gauss-Hermite quadrature. The probit
    approximation ``sigmoid(m / sqrt(1 + pi v / 8))`` is within 0.02 of it (its known accuracy; here
    at most 0.012, where ``pi / 3`` would be 0.075 off); Monte-Carlo over the linearised draws is
    within its standard error."""
    model, posterior, x, y = _logistic()
    delta = 0.5
    la = laplace(posterior, "all", "full", prior_precision=delta).fit((x, y))
    theta = model.flatten(posterior.point_estimate()).double()  # [w1, w2, b]
    nll = _logistic_nll(x, y)

    sigma = torch.linalg.inv(torch.autograd.functional.hessian(nll, theta) + delta * torch.eye(3, dtype=torch.float64))
    test = torch.tensor([[0.3, 0.1], [2.0, -1.0], [-4.0, 6.0], [6.0, 5.0], [-9.0, 2.0], [1.0, -12.0]],
                        dtype=torch.float64)
    design = torch.cat([test, torch.ones(len(test), 1, dtype=torch.float64)], dim=1)
    mean, var = design @ theta, ((design @ sigma) * design).sum(1)
    nodes, quad_weights = np.polynomial.hermite_e.hermegauss(100)  # int g(z) exp(-z^2 / 2) dz
    f = mean[:, None] + var.sqrt()[:, None] * torch.tensor(nodes)
    exact = (torch.sigmoid(f) * torch.tensor(quad_weights)).sum(1) / math.sqrt(2 * math.pi)
    assert float(var.max()) > 5  # the test reaches inputs where the variance matters
    probit = la.predictive_probs(test, link_approx="probit")
    torch.testing.assert_close(probit[:, 1], exact, atol=0.02, rtol=0)
    torch.testing.assert_close(probit.sum(1), torch.ones(len(test), dtype=torch.float64))
    torch.manual_seed(0)
    n = 20000
    mc = la.predictive_probs(test, link_approx="mc", num_samples=n)[:, 1]
    assert bool(((mc - exact).abs() < 4.5 * (exact * (1 - exact) / n).sqrt() + 1e-9).all())


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
        (lambda p, d: laplace(p, "last_layer", "kron", hessian="mc"), ValueError, "Monte Carlo Fisher"),
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
    # For an MLP the linearised predictive is N(f(x; theta*), J Sigma J^T), with J by autograd and Sigma
    # the inverse of the autograd GGN (or of its diagonal) plus delta I; the draws have that covariance.
    torch.manual_seed(0)
    model, posterior, x, y = _multiclass()
    weights = posterior.point_estimate()
    theta = model.flatten(weights)
    jac = torch.autograd.functional.jacobian(lambda t: _run_net(model, model.unflatten(t), x), theta)  # [N, K, P]
    ggn = torch.einsum("nkp,nkl,nlq->pq", jac, _output_hessians(_run_net(model, weights, x), y), jac)
    for structure in ("full", "diag"):
        la = laplace(posterior, "all", structure).fit((x, y))
        eye = torch.eye(len(theta), dtype=torch.float64)
        curvature = ggn if structure == "full" else torch.diag(ggn.diagonal())
        sigma = torch.linalg.inv(curvature + la.prior_precision * eye)
        expected = jac[:3] @ sigma @ jac[:3].transpose(1, 2)
        mean, cov = la.linearised_predictive(x[:3])
        torch.testing.assert_close(mean, _run_net(model, weights, x[:3]))
        torch.testing.assert_close(cov, expected, rtol=1e-7, atol=1e-10)
        outputs = la.predictive_outputs(x[:3], num_samples=20000)
        for n in range(3):
            torch.testing.assert_close(torch.cov(outputs[:, n].T), expected[n], rtol=0.08,
                                       atol=0.02 * float(expected[n].diagonal().max()))


@pytest.mark.parametrize("structure", ["kron", "diag", "full"])
def test_a_very_confident_float32_classifier_has_a_psd_ggn_without_warnings(structure):
    # Like a 99%-accurate MNIST MAP: margins ~16 on 20,000 examples, so sum p(1 - p) is ~1 while
    # float32 per-example softmax Hessians err by ~1e-7 each: summed in float32 they gave the
    # KFAC output factor eigenvalues of -1e-4 (a spurious CurvatureWarning). The GGN is PSD.
    g = torch.Generator().manual_seed(0)
    n, k = 20000, 10
    y = torch.randint(0, k, (n,), generator=g)
    x = 16 * nn.functional.one_hot(y, k).float() + 2 * torch.randn(n, k, generator=g)
    net = nn.Linear(k, k)
    with torch.no_grad():
        net.weight.copy_(torch.eye(k))
        net.bias.zero_()
    model = BNN(net)
    with warnings.catch_warnings():
        warnings.simplefilter("error", CurvatureWarning)
        la = laplace(Posterior(model, MAPGuide(model)), "last_layer", structure).fit((x, y))
    assert math.isfinite(la.log_marginal_likelihood())
