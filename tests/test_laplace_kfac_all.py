"""KFAC Laplace over every layer (``laplace(..., "all", "kron")``): exact where KFAC is exact,
its algebra against dense matrices built from autograd, the factors against curvlinops, the
marginal likelihood against laplace-torch; EK-FAC (``"ekfac"``) against the autograd GGN in the
KFAC eigenbasis."""

import copy
import itertools

import numpy as np
import pytest
import torch
import torch.nn as nn

from bayesdl.inference import EKFACLaplace, FullLaplace, KronLaplace, laplace
from bayesdl.models import BNN, BayesianLinearRegression, Gaussian, PolynomialBasis


def _ggn_by_autograd(net, params, x, y):
    """``sum_n J_n^T Lambda_n J_n`` of ``-ln softmax(net(x))[y]`` with ``J`` by ``torch.func.jacrev``
    of the plain network and ``Lambda`` by the autograd Hessian in the logits; ``[D, D]`` in
    ``params`` order."""
    names = list(params)

    def out(flat, xi):
        chunks = flat.split([params[n].numel() for n in names])
        weights = {n: c.view(params[n].shape) for n, c in zip(names, chunks)}
        return torch.func.functional_call(net, weights, (xi[None],))[0]

    flat = torch.cat([params[n].reshape(-1) for n in names])
    total = 0
    for xi, yi in zip(x, y):
        jac = torch.func.jacrev(out)(flat, xi)
        f = out(flat, xi).detach()
        lam = torch.autograd.functional.hessian(lambda g, yi=yi: -torch.log_softmax(g, -1)[yi], f)
        total = total + jac.T @ lam @ jac
    return total


def _small_cnn(bias=True):
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(1, 3, 3, bias=bias), nn.ReLU(), nn.Flatten(),
                         nn.Linear(3 * 4 * 4, 5, bias=bias), nn.Tanh(), nn.Linear(5, 3, bias=bias))


def _fitted(net, x, y, cls=KronLaplace, **kwargs):
    model = BNN(copy.deepcopy(net)).double()
    return model, cls(model, model.initial_values(), **kwargs).fit((x, y))


def test_kfac_is_the_exact_ggn_block_for_one_example():
    """One example and dense layers (T = 1): the GGN block of layer l is
    ``sum_c (g_c g_c^T) (x) (a a^T)`` exactly, so KFAC equals the autograd GGN's diagonal blocks."""
    torch.manual_seed(1)
    net = nn.Sequential(nn.Linear(4, 5), nn.Tanh(), nn.Linear(5, 3)).double()
    x, y = torch.randn(1, 4, dtype=torch.float64), torch.tensor([2])
    params = {n: p.detach().clone() for n, p in net.named_parameters()}
    ggn = _ggn_by_autograd(net, params, x, y)
    _, la = _fitted(net, x, y)
    dense = ggn[la.index][:, la.index]  # into KFAC's order: per layer [out, in | bias], row-major
    start = 0
    for layer in la.layers:
        block = slice(start, start + layer.numel)
        torch.testing.assert_close(la.curvature()[block, block], dense[block, block], rtol=1e-9, atol=1e-12)
        start += layer.numel


def test_kfac_is_exact_for_bayesian_linear_regression():
    """A linear model with a Gaussian likelihood has ``Lambda = 1/sigma^2`` for every example, so
    ``G (x) A`` is the exact GGN for any N: the marginal likelihood is the closed-form evidence."""
    rng = np.random.default_rng(0)
    x = rng.uniform(-1, 1, 40)
    y = -0.3 + 0.5 * x + rng.normal(0, 0.2, 40)
    alpha, beta = 2.0, 12.5
    blr = BayesianLinearRegression(PolynomialBasis(1), alpha, beta).fit(x, y)
    phi = PolynomialBasis(1)(x)[:, 1:]  # the bias column is KFAC's own
    model = BNN(nn.Linear(1, 1), prior_scale=alpha**-0.5, likelihood=Gaussian(scale=beta**-0.5)).double()
    weights = torch.as_tensor(blr.posterior_mean_)[[1, 0]]  # sites: weight, bias
    la = KronLaplace(model, weights, prior_precision=alpha).fit((phi, torch.tensor(y)))
    assert la.log_marginal_likelihood() == pytest.approx(blr.log_evidence(), rel=1e-6)
    full = FullLaplace(model, weights, prior_precision=alpha).fit((phi, torch.tensor(y)))
    torch.testing.assert_close(la.curvature(), full.curvature(), rtol=1e-6, atol=1e-9)


@pytest.mark.parametrize("cls", [KronLaplace, EKFACLaplace])
def test_log_det_solve_draws_and_glm_covariance_match_the_dense_kfac(cls):
    """The eigenbasis algebra against the dense block-diagonal ``H = diag_l(G_l (x) A_l)`` (for
    EK-FAC ``diag_l(Q_l diag(s_l) Q_l^T)``): ``ln|H + delta I|``, ``(H + delta I)^-1 v``,
    ``J Sigma J^T`` with ``J`` by autograd, the linearised outputs, and the covariance of the draws."""
    x, y = torch.randn(20, 1, 6, 6, dtype=torch.float64), torch.randint(0, 3, (20,))
    model, la = _fitted(_small_cnn(), x, y, cls, prior_precision=0.7)
    h = la.curvature()
    precision = h + 0.7 * torch.eye(len(h), dtype=h.dtype)
    assert la.log_det_posterior_precision() == pytest.approx(float(torch.logdet(precision)), rel=1e-10)
    sigma = torch.linalg.inv(precision)
    v = torch.randn(3, len(h), dtype=torch.float64)
    torch.testing.assert_close(la.solve(v), v @ sigma, rtol=1e-8, atol=1e-10)
    jac = torch.func.jacrev(lambda w: model.network(x[:5], w))(model.initial_values())[:, :, la.index]
    mean, cov = la.linearised_predictive(x[:5])
    torch.testing.assert_close(cov, jac @ sigma @ jac.transpose(1, 2), rtol=1e-8, atol=1e-10)
    draws = la._sample_subset(4)
    expected = mean + torch.einsum("nkp,sp->snk", jac, draws - la.theta)
    torch.testing.assert_close(la._linearised_outputs(x[:5], draws), expected, rtol=1e-8, atol=1e-10)
    torch.manual_seed(0)
    samples = la._sample_subset(20000) - la.theta
    layer = la.layers[-1]  # the smallest block: its empirical covariance within Monte Carlo error
    block = slice(len(h) - layer.numel, len(h))
    empirical = samples[:, block].T @ samples[:, block] / len(samples)
    torch.testing.assert_close(empirical, sigma[block, block], rtol=0, atol=0.05 * float(sigma.diag().max()))


def _blocks(la, dense):
    """The diagonal blocks of ``dense`` (in the Laplace's subset order), one per layer."""
    sizes = [layer.numel for layer in la.layers]
    starts = np.cumsum([0, *sizes])
    return [dense[a:b, a:b] for a, b in itertools.pairwise(starts)]


def test_ekfac_is_the_ggn_diagonal_in_the_kfac_eigenbasis():
    """EK-FAC keeps KFAC's eigenbasis ``Q = Q_G (x) Q_A`` of each layer (convolution included)
    and takes as eigenvalues the exact GGN block's diagonal in it, ``diag(Q^T H_l Q)`` with
    ``H_l`` from autograd; so its block is never further from ``H_l`` than KFAC's (Frobenius)."""
    torch.manual_seed(2)
    net = _small_cnn().double()
    x, y = torch.randn(12, 1, 6, 6, dtype=torch.float64), torch.randint(0, 3, (12,))
    params = {n: p.detach().clone() for n, p in net.named_parameters()}
    _, kfac = _fitted(net, x, y)
    _, ekfac = _fitted(net, x, y, EKFACLaplace)
    exact = _blocks(kfac, _ggn_by_autograd(net, params, x, y)[kfac.index][:, kfac.index])
    for f_k, f_e, h, k_block, e_block in zip(kfac._factors, ekfac._factors, exact,
                                            _blocks(kfac, kfac.curvature()), _blocks(ekfac, ekfac.curvature())):
        torch.testing.assert_close(f_e.qg, f_k.qg)
        torch.testing.assert_close(f_e.qa, f_k.qa)
        q = torch.kron(f_k.qg, f_k.qa)
        torch.testing.assert_close(f_e.eig.reshape(-1), torch.diagonal(q.T @ h @ q), rtol=1e-9, atol=1e-12)
        assert torch.linalg.norm(e_block - h) <= torch.linalg.norm(k_block - h) * (1 + 1e-12)
    # where KFAC is exact (one example, dense layers) the correction changes nothing
    dense = nn.Sequential(nn.Linear(4, 5), nn.Tanh(), nn.Linear(5, 3)).double()
    one = torch.randn(1, 4, dtype=torch.float64), torch.tensor([1])
    torch.testing.assert_close(_fitted(dense, *one, EKFACLaplace)[1].curvature(), _fitted(dense, *one)[1].curvature(),
                               rtol=1e-9, atol=1e-12)


def test_ekfac_marginal_likelihood_and_influence_run_through_the_public_api():
    """``laplace(..., "all", "ekfac")`` tunes its prior by marginal likelihood like KFAC, and
    ``influence(..., "ekfac")`` solves with it (against the EK-FAC block's dense inverse)."""
    from bayesdl.inference import influence

    torch.manual_seed(3)
    net = _small_cnn()
    x, y = torch.randn(30, 1, 6, 6), torch.randint(0, 3, (30,))
    la = laplace(net, "all", "ekfac", likelihood="categorical").fit((x, y)).optimize_prior_precision()
    assert la.structure.value == "ekfac" and np.isfinite(la.log_marginal_likelihood())
    assert la.log_marginal_likelihood() >= la.log_marginal_likelihood(1.0) - 1e-6
    inf = influence(net, (x, y), "ekfac", likelihood="categorical", prior_precision=2.0)
    g = inf.gradients((x[:2], y[:2])).double()
    dense = inf.laplace.curvature() + 2.0 * torch.eye(inf.num_params, dtype=torch.float64)
    torch.testing.assert_close(inf.inverse_hvp(g).double(), torch.linalg.solve(dense, g.T).T, rtol=1e-4, atol=1e-6)


def test_factors_equal_curvlinops_kfac_expand():
    """A and G of every layer (convolution included) equal curvlinops' ``KFACLinearOperator``
    with the exact (type-2) Fisher, KFAC-expand and the bias as a column of the input factor."""
    curvlinops = pytest.importorskip("curvlinops")
    net = _small_cnn().double()
    x, y = torch.randn(16, 1, 6, 6, dtype=torch.float64), torch.randint(0, 3, (16,))
    linop = curvlinops.KFACLinearOperator(
        net, nn.CrossEntropyLoss(reduction="sum"), list(net.parameters()), [(x, y)], fisher_type="type-2",
        kfac_approx="expand", separate_weight_and_bias=False, check_deterministic=False)
    linop.compute_kronecker_factors()
    _, la = _fitted(net, x, y)
    for layer, factors in zip(la.layers, la._factors):
        torch.testing.assert_close(factors.a, linop._input_covariances[layer.name].double(), rtol=1e-9, atol=1e-12)
        torch.testing.assert_close(factors.g, linop._gradient_covariances[layer.name].double(),
                                   rtol=1e-9, atol=1e-12)


def test_monte_carlo_fisher_averages_to_the_exact_factor():
    """``hessian="mc"``: ``G`` from one sampled label per example has expectation ``sum_n Lambda_n``;
    on 4,000 copies of 3 examples it lies within 5% of the exact factor."""
    torch.manual_seed(0)
    net = nn.Linear(3, 4).double()
    x = torch.randn(3, 3, dtype=torch.float64).repeat(4000, 1)
    y = torch.zeros(len(x), dtype=torch.long)
    _, exact = _fitted(net, x, y)
    _, mc = _fitted(net, x, y, hessian="mc")
    torch.testing.assert_close(mc._factors[0].a, exact._factors[0].a)
    g, g_mc = exact._factors[0].g, mc._factors[0].g
    assert float((g_mc - g).abs().max()) < 0.05 * float(g.abs().max())


@pytest.mark.slow
def test_log_marginal_likelihood_equals_laplace_torch_all_kron():
    """laplace-torch's ``Laplace(net, "classification", "all", "kron")`` (curvlinops backend, exact
    Fisher, KFAC-expand) on a bias-free LeNet-shaped CNN fitted in one batch, where the two
    libraries make the same approximation: the same log marginal likelihood at three prior
    precisions, to float32 rounding (rel 1e-5; laplace-torch works in float32)."""
    lt = pytest.importorskip("laplace")
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(1, 4, 5, bias=False), nn.MaxPool2d(2), nn.ReLU(),
                        nn.Conv2d(4, 6, 5, bias=False), nn.MaxPool2d(2), nn.ReLU(), nn.Flatten(),
                        nn.Linear(96, 20, bias=False), nn.ReLU(), nn.Linear(20, 10, bias=False))
    x, y = torch.rand(64, 1, 28, 28), torch.randint(0, 10, (64,))
    theirs = lt.Laplace(net, "classification", subset_of_weights="all", hessian_structure="kron")
    theirs.fit(torch.utils.data.DataLoader(torch.utils.data.TensorDataset(x, y), batch_size=64))
    ours = laplace(net, "all", "kron", likelihood="categorical").fit((x, y), batch_size=64)
    for delta in (0.1, 1.0, 30.0):
        expected = float(theirs.log_marginal_likelihood(prior_precision=torch.tensor(delta)))
        assert ours.log_marginal_likelihood(delta) == pytest.approx(expected, rel=1e-5)


@pytest.mark.parametrize("net, message", [
    (nn.Sequential(nn.Conv2d(2, 4, 3, groups=2), nn.Flatten(), nn.Linear(16, 2)), "groups=1"),
    (nn.Sequential(nn.Linear(3, 4), nn.LayerNorm(4), nn.Linear(4, 2)), "other modules"),
])
def test_unsupported_layers_are_refused(net, message):
    with pytest.raises(ValueError, match=message):
        laplace(net, "all", "kron", likelihood="categorical")


def test_bad_input():
    x, y = torch.randn(8, 1, 6, 6, dtype=torch.float64), torch.randint(0, 3, (8,))
    _, la = _fitted(_small_cnn(), x, y)
    with pytest.raises(ValueError, match="shape"):
        la.solve(torch.ones(5, dtype=torch.float64))
    with pytest.raises(TypeError, match=r"torch\.Tensor"):
        la.solve([1.0, 2.0])
    with pytest.raises(ValueError, match="hessian='exact'"):
        laplace(_small_cnn(), "all", "kron", hessian="exact", likelihood="categorical")
    with pytest.raises(ValueError, match="prior_precision must be > 0"):
        la.solve(torch.ones(la.num_params, dtype=torch.float64), prior_precision=-1.0)


@pytest.mark.slow
@pytest.mark.data
def test_laplace_vs_laplace_torch_benchmark_runs_at_a_tiny_size(data_root, tmp_path):
    """benchmarks/laplace_vs_laplace_torch.py end to end on 64 training and 20 test images (no
    timing asserted): both last-layer sections and the three all-layer rows are written."""
    pytest.importorskip("laplace")
    import json
    import os
    import subprocess
    import sys
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    out = tmp_path / "laplace.json"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MPLBACKEND": "Agg"}
    done = subprocess.run([sys.executable, str(root / "benchmarks" / "laplace_vs_laplace_torch.py"),
                           "--data-root", str(data_root), "--train", "64", "--test", "20", "--epochs", "1",
                           "--rounds", "1", "--lt-steps", "2", "--all-test", "10", "--all-batch", "10",
                           "--json", str(out)], cwd=root, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(out.read_text())
    assert set(result["all_layers"]["table"]) == {"bayesdl_kron_ggn", "bayesdl_kron_mc", "laplace_torch_kron"}
    assert all(r["fit_s"] > 0 and r["nll"] > 0 for r in result["all_layers"]["table"].values())
    assert "fit time ratio" in done.stdout
