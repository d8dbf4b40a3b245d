"""Influence functions (Koh & Liang 2017) on L2-regularised logistic regression, where Newton's
method gives the exact retrained optimum to compare the first-order predictions with."""

import copy

import numpy as np
import pytest
import torch
import torch.nn as nn

from bayesdl.inference import Influence, KronLaplace, influence, laplace
from bayesdl.models import BNN, Gaussian

DELTA = 0.5  # the L2 coefficient of the summed loss: R = sum_n l_n + DELTA/2 ||theta||^2


def _data(n=50, seed=0):
    g = torch.Generator().manual_seed(seed)
    y = torch.randint(0, 3, (n,), generator=g)
    x = torch.randn(n, 2, generator=g, dtype=torch.float64) + 1.2 * torch.eye(3, 2, dtype=torch.float64)[y]
    return x, y


def _objective(x, y, weights):
    """``R(t) = sum_n w_n l_n(t) + DELTA/2 ||t||^2`` of softmax regression, ``t = [W (3x2) | b (3)]``
    flattened as the BNN's sites (weight, then bias), written out."""
    def r(t):
        logits = x @ t[:6].view(3, 2).T + t[6:]
        nll = -torch.log_softmax(logits, -1).gather(1, y[:, None])[:, 0]
        return (weights * nll).sum() + 0.5 * DELTA * (t @ t)
    return r


def _newton(x, y, weights=None, start=None, steps=30):
    """The optimum of :func:`_objective` by Newton's method (autograd gradient and Hessian)."""
    weights = torch.ones(len(y), dtype=torch.float64) if weights is None else weights
    r = _objective(x, y, weights)
    t = torch.zeros(9, dtype=torch.float64) if start is None else start.clone()
    for _ in range(steps):
        g = torch.autograd.functional.jacobian(r, t)
        t = t - torch.linalg.solve(torch.autograd.functional.hessian(r, t), g)
    return t


def _fitted_model(t):
    model = BNN(nn.Linear(2, 3), likelihood="categorical").double()
    return model, t


def _influence(x, y, curvature="exact", **kwargs):
    t = _newton(x, y)
    model, _ = _fitted_model(t)
    return t, Influence(model, t, (x, y), curvature, prior_precision=DELTA, **kwargs)


def test_removal_equals_the_derivative_of_the_retrained_optimum():
    """``d theta*(eps) / d eps`` at 0 for the objective with ``(1 - eps) l_n``: a central finite
    difference of Newton-retrained optima equals ``H^-1 grad l_n`` (exact Hessian)."""
    x, y = _data()
    t, inf = _influence(x, y)
    predicted = inf.parameter_change_on_removal((x[:5], y[:5]))
    eps = 1e-4
    for n in range(5):
        w_minus, w_plus = torch.ones(len(y), dtype=torch.float64), torch.ones(len(y), dtype=torch.float64)
        w_minus[n], w_plus[n] = 1 - eps, 1 + eps
        fd = (_newton(x, y, w_minus, t) - _newton(x, y, w_plus, t)) / (2 * eps)
        torch.testing.assert_close(predicted[n], fd, rtol=1e-6, atol=1e-9)


def test_predicted_loss_changes_correlate_with_leave_one_out_retraining():
    """Every training point removed in turn and the model retrained (Newton, warm-started): the
    actual change of a test point's loss against the prediction ``grad l_test^T H^-1 grad l_n``
    -- Pearson r >= 0.99 (Koh & Liang's Fig. 2 for the convex case)."""
    x, y = _data()
    x_test, y_test = _data(n=1, seed=5)
    t, inf = _influence(x, y)
    predicted = inf.loss_change_on_removal((x_test, y_test))[0]
    loss = _objective(x_test, y_test, torch.ones(1, dtype=torch.float64))
    base = float(loss(t)) - 0.5 * DELTA * float(t @ t)
    actual = []
    for n in range(len(y)):
        keep = torch.arange(len(y)) != n
        t_n = _newton(x[keep], y[keep], start=t, steps=8)
        actual.append(float(loss(t_n)) - 0.5 * DELTA * float(t_n @ t_n) - base)
    r = np.corrcoef(predicted.numpy(), actual)[0, 1]
    print(f"leave-one-out: Pearson r = {r:.5f}")
    assert r >= 0.99, r
    slope = np.polyfit(actual, predicted.numpy(), 1)[0]
    print(f"slope = {slope:.4f}")
    assert 0.8 < slope < 1.2, slope


def test_curvatures_agree_where_they_must():
    """CG on exact Hessian-vector products = the dense exact Hessian = the GGN (a GLM with the
    canonical link); KFAC = exact for linear regression with a Gaussian likelihood."""
    x, y = _data()
    _, exact = _influence(x, y, "exact")
    v = torch.randn(4, 9, dtype=torch.float64)
    reference = exact.inverse_hvp(v)
    _, cg = _influence(x, y, "cg", cg_tol=1e-12)
    torch.testing.assert_close(cg.inverse_hvp(v), reference, rtol=1e-7, atol=1e-10)
    _, ggn = _influence(x, y, "ggn")
    torch.testing.assert_close(ggn.inverse_hvp(v), reference, rtol=1e-8, atol=1e-10)
    # linear regression: the Hessian is X~^T X~ / sigma^2 + delta I, which KFAC holds exactly
    xr = torch.randn(30, 3, dtype=torch.float64)
    yr = xr @ torch.tensor([0.5, -1.0, 2.0], dtype=torch.float64) + 0.1 * torch.randn(30, dtype=torch.float64)
    model = BNN(nn.Linear(3, 1), likelihood=Gaussian(scale=0.3)).double()
    w = torch.randn(4, dtype=torch.float64)
    kfac = influence(None, (xr, yr), KronLaplace(model, w, prior_precision=DELTA).fit((xr, yr)))
    design = torch.cat([xr, torch.ones(30, 1, dtype=torch.float64)], 1)
    hessian = design.T @ design / float(model.likelihood.scale) ** 2 + DELTA * torch.eye(4, dtype=torch.float64)
    g = kfac.gradients((xr[:3], yr[:3]))
    torch.testing.assert_close(kfac.inverse_hvp(g), torch.linalg.solve(hessian, g.T).T, rtol=1e-5, atol=1e-8)
    torch.testing.assert_close(kfac.self_influence((xr[:3], yr[:3])),
                               (g * torch.linalg.solve(hessian, g.T).T).sum(-1), rtol=1e-5, atol=1e-8)


def test_damping_and_self_influence():
    x, y = _data()
    _, exact = _influence(x, y)
    _, damped = _influence(x, y, damping=3.0)
    g = exact.gradients((x[:4], y[:4]))
    hessian = torch.autograd.functional.hessian(_objective(x, y, torch.ones(len(y), dtype=torch.float64)),
                                                exact.weights)
    damped_hessian = hessian + 3 * torch.eye(9, dtype=torch.float64)
    torch.testing.assert_close(damped.inverse_hvp(g), torch.linalg.solve(damped_hessian, g.T).T, rtol=1e-8, atol=1e-10)
    torch.testing.assert_close(exact.self_influence((x[:4], y[:4])),
                               (g * torch.linalg.solve(hessian, g.T).T).sum(-1), rtol=1e-8, atol=1e-10)


@pytest.mark.parametrize("curvature", ["kfac", "ekfac"])
def test_kronecker_self_influence_equals_the_flat_gradient_solve(curvature):
    # the layer-by-layer self-influence (conv with stride, dense, no per-example gradients) is
    # exactly g_n^T (H + (delta + lambda) I)^-1 g_n of the flat per-example gradients
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(1, 3, 3), nn.ReLU(), nn.Conv2d(3, 4, 3, stride=2), nn.ReLU(), nn.Flatten(),
                        nn.Linear(16, 5), nn.Tanh(), nn.Linear(5, 3))
    x, y = torch.randn(40, 1, 7, 7), torch.randint(0, 3, (40,))
    inf = influence(net, (x, y), curvature, likelihood="categorical", prior_precision=0.7, damping=0.1,
                    batch_size=16)
    g = inf.gradients((x, y))
    flat = (g * inf.inverse_hvp(g)).sum(-1)
    assert flat.min() > 0
    torch.testing.assert_close(inf.self_influence(), flat, rtol=1e-5, atol=1e-7)


def test_bad_input():
    x, y = _data()
    model, t = _fitted_model(_newton(x, y))
    with pytest.raises(ValueError, match="curvature"):
        Influence(model, t, (x, y), "lissa")
    with pytest.raises(ValueError, match="damping"):
        Influence(copy.deepcopy(model), t, (x, y), "exact", damping=-1.0)
    last = laplace(nn.Linear(2, 3), "last_layer", "kron", likelihood="categorical").fit((x.float(), y))
    with pytest.raises(ValueError, match="subset='all'"):
        influence(None, (x, y), last)
    with pytest.raises(TypeError, match="likelihood"):
        influence(nn.Linear(2, 3), (x, y), "exact")
    with pytest.raises(ValueError, match="shape"):
        Influence(model, t, (x, y), "exact").inverse_hvp(torch.ones(4, dtype=torch.float64))


def test_per_example_gradients_of_a_cnn_equal_an_autograd_loop():
    """Per-example gradients (``vmap`` of ``grad``) through a convolutional network that has run
    channels-last on the CPU before: the same as one backward pass per example."""
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(1, 3, 3), nn.ReLU(), nn.Flatten(), nn.Linear(3 * 4 * 4, 3))
    x, y = torch.randn(5, 1, 6, 6), torch.randint(0, 3, (5,))
    inf = influence(net, (x, y), "kfac", likelihood="categorical")  # the KFAC fit ran the network
    expected = []
    for xi, yi in zip(x, y):
        copy_ = copy.deepcopy(net)
        nn.functional.cross_entropy(copy_(xi[None]), yi[None], reduction="sum").backward()
        expected.append(torch.cat([p.grad.reshape(-1) for p in copy_.parameters()]))
    got = torch.zeros(5, inf.model.num_latent)
    got[:, inf.index] = inf.gradients((x, y))
    torch.testing.assert_close(got, torch.stack(expected), rtol=1e-5, atol=1e-6)


def test_exact_curvature_keeps_negative_eigenvalues_and_refuses_an_indefinite_objective():
    """Away from a convex loss the loss's Hessian may be indefinite while ``H + delta I`` is not:
    the exact curvature solves with the Hessian as it is (no clamping of its negative eigenvalues,
    which would change the influence), refuses a shift that leaves it indefinite, and
    :meth:`Influence.with_damping` sweeps the damping on the same fitted Hessian."""
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(2, 4), nn.Tanh(), nn.Linear(4, 3)).double()
    x, y = _data(20)
    model = BNN(net, likelihood="categorical").double()
    t = model.initial_values().double() * 3  # large weights: a strongly non-convex loss there

    def nll(theta):
        return -model.likelihood.log_prob(model.network(x, theta), y).sum()

    hessian = torch.autograd.functional.hessian(nll, t)
    smallest = float(torch.linalg.eigvalsh(hessian)[0])
    assert smallest < -0.1  # the setting the test is about
    delta = -smallest + 0.5
    inf = Influence(model, t, (x, y), "exact", prior_precision=delta)
    g = inf.gradients((x[:3], y[:3]))
    eye = torch.eye(len(t), dtype=torch.float64)
    torch.testing.assert_close(inf.inverse_hvp(g), torch.linalg.solve(hessian + delta * eye, g.T).T,
                               rtol=1e-7, atol=1e-9)
    damped = inf.with_damping(2.0)
    assert damped.damping == 2.0 and inf.damping == 0.0 and damped._eigen is inf._eigen
    torch.testing.assert_close(damped.inverse_hvp(g), torch.linalg.solve(hessian + (delta + 2) * eye, g.T).T,
                               rtol=1e-7, atol=1e-9)
    with pytest.raises(ValueError, match=r"not positive definite.*damping >"):
        Influence(model, t, (x, y), "exact", prior_precision=-smallest / 2)
    shy = Influence(model, t, (x, y), "exact", prior_precision=-smallest / 2, damping=-smallest)
    with pytest.raises(ValueError, match="not positive definite"):
        shy.with_damping(0.0)
    with pytest.raises(ValueError, match="damping"):
        inf.with_damping(-1.0)
