"""Guides: the structured ELBO against Pyro's Trace_ELBO, draws, dropout mapping, prior terms."""

import math

import pytest
import torch
import torch.nn as nn
from pyro.infer import Trace_ELBO

from bayesdl.inference import BNNElbo, DropoutGuide, MAPGuide, MeanFieldGuide, Posterior, approximate
from bayesdl.models import BNN, MLP, Gaussian, LeNet


def _problem(seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(40, 3, generator=g)
    y = torch.randint(0, 3, (40,), generator=g)
    return x, y


def _mean_and_error(values):
    values = torch.tensor(values, dtype=torch.float64)
    return float(values.mean()), float(values.std() / math.sqrt(len(values)))


@pytest.mark.parametrize("make", [
    lambda m: DropoutGuide(m, p=0.3),
    lambda m: MeanFieldGuide(m, init_scale=0.3),
    MAPGuide,
])
@pytest.mark.slow
def test_structured_elbo_has_the_expectation_of_trace_elbo(make):
    """BNNElbo (per-example noise, closed-form KL) and Pyro's Trace_ELBO with the same guide
    estimate the same number (Pyro's convention ln q = 0 for point masses)."""
    torch.manual_seed(0)
    x, y = _problem()
    model = BNN(MLP(3, 8, 3, dropout=0.2), prior_scale=0.7)
    guide = make(model)
    if isinstance(guide, MeanFieldGuide):
        with torch.no_grad():
            guide.loc.add_(0.3 * torch.randn_like(guide.loc))
    guide.network_output(x)  # set up lazily, as fit does
    n = 5 if isinstance(guide, MAPGuide) else 800  # MAP is deterministic
    with torch.no_grad():
        ours = _mean_and_error([BNNElbo().loss(model, guide, x, y, 100) for _ in range(n)])
        pyros = _mean_and_error([Trace_ELBO().loss(model.model, guide, x, y, 100) for _ in range(n)])
    tolerance = 4 * math.hypot(ours[1], pyros[1]) + 1e-6
    assert abs(ours[0] - pyros[0]) < tolerance, (ours, pyros)


def test_mean_field_kl_is_the_closed_form():
    model = BNN(MLP(2, 3, 2), prior_scale=0.5)
    guide = MeanFieldGuide(model, init_scale=0.2)
    with torch.no_grad():
        guide.loc.normal_()
    q = torch.distributions.Normal(guide.loc, guide.scale)
    p = torch.distributions.Normal(torch.zeros_like(guide.loc), 0.5)
    expected = torch.distributions.kl_divergence(q, p).sum().detach()
    assert float(guide.kl().detach()) == pytest.approx(float(expected), rel=1e-6)
    # and its gradient
    guide.kl().backward()
    loc = guide.loc.detach().clone().requires_grad_()
    log_scale = guide.log_scale.detach().clone().requires_grad_()
    torch.distributions.kl_divergence(torch.distributions.Normal(loc, log_scale.exp()), p).sum().backward()
    torch.testing.assert_close(guide.loc.grad, loc.grad)
    torch.testing.assert_close(guide.log_scale.grad, log_scale.grad)


@pytest.mark.slow
def test_local_reparameterization_moments():
    """Training passes of a mean-field linear layer have the moments of N(x mu, x^2 sigma^2)."""
    torch.manual_seed(0)
    model = BNN(nn.Linear(4, 2), likelihood="gaussian")
    guide = MeanFieldGuide(model, init_scale=0.5)
    x = torch.randn(3, 4)
    with torch.no_grad():
        outs = torch.stack([guide.network_output(x) for _ in range(20000)])
        w = model.unflatten(guide.loc)
        v = model.unflatten(guide.scale**2)
    mean = x @ w["weight"].T + w["bias"]
    var = (x * x) @ v["weight"].T + v["bias"]
    torch.testing.assert_close(outs.mean(0), mean, atol=0.03, rtol=0)
    torch.testing.assert_close(outs.var(0), var, rtol=0.05, atol=0)
    # independent across examples
    corr = torch.corrcoef(outs[:, :, 0].T)
    assert float(corr[0, 1].abs()) < 0.05


def test_mean_field_predictions_draw_whole_weights_from_the_guide():
    """Prediction draws one weight vector from q per pass, shared by the batch. For a linear model
    f = x w + c the predictive outputs are then Gaussian with mean ``x mu_w + mu_c`` and covariance
    ``x diag(sigma_w^2) x'^T + sigma_c^2`` across inputs (not zero, not diagonal), and the regression
    predictive adds the noise variance."""
    torch.manual_seed(0)
    noise = 0.5
    model = BNN(nn.Linear(3, 1), likelihood=Gaussian(scale=noise))
    guide = MeanFieldGuide(model)
    loc, scale = torch.tensor([0.5, -1.0, 2.0, 0.3]), torch.tensor([0.2, 0.5, 0.1, 0.4])  # [w (3), c]
    with torch.no_grad():
        guide.loc.copy_(loc)
        guide.log_scale.copy_(scale.log())
    x = torch.tensor([[1.0, 0.0, 2.0], [-1.0, 1.0, 0.5], [0.3, -2.0, 1.0]])
    design = torch.cat([x, torch.ones(3, 1)], dim=1)
    mean, cov = design @ loc, (design * scale**2) @ design.T
    n = 4000
    prediction = Posterior(model, guide).predict(x, num_samples=n)
    f = prediction.mean  # [S, 3]
    # within 4.5 standard errors, element by element (SE of a sample covariance: sqrt((C_ii C_jj + C_ij^2) / n))
    assert bool(((f.mean(0) - mean).abs() < 4.5 * (cov.diagonal() / n).sqrt()).all())
    se = ((torch.outer(cov.diagonal(), cov.diagonal()) + cov**2) / n).sqrt()
    assert bool(((torch.cov(f.T) - cov).abs() < 4.5 * se).all())
    predictive_mean, predictive_var = prediction.moments()
    torch.testing.assert_close(predictive_mean, f.mean(0))
    torch.testing.assert_close(predictive_var, f.var(0, unbiased=False) + noise**2)


@pytest.mark.slow
def test_local_reparameterization_covers_convolutions():
    torch.manual_seed(0)
    model = BNN(nn.Conv2d(1, 2, 3, padding=1), likelihood="gaussian")
    guide = MeanFieldGuide(model, init_scale=0.3)
    x = torch.randn(2, 1, 5, 5)
    n = 3000
    with torch.no_grad():
        outs = torch.stack([guide.network_output(x) for _ in range(n)])
        w = model.unflatten(guide.loc)
        v = model.unflatten(guide.scale**2)
        mean = nn.functional.conv2d(x, w["weight"], w["bias"], padding=1)
        var = nn.functional.conv2d(x * x, v["weight"], v["bias"], padding=1)
    # within 4.5 standard errors, element by element (SE of a sample variance: var sqrt(2/n))
    assert bool(((outs.mean(0) - mean).abs() < 4.5 * (var / n).sqrt()).all())
    assert bool(((outs.var(0) - var).abs() < 4.5 * var * (2 / n) ** 0.5).all())


def test_dropout_guide_maps_masks_to_the_layers_after_the_slots():
    model = BNN(LeNet(dropout="all"), prior_scale=1.0)
    guide = DropoutGuide(model, p=0.25)
    guide.network_output(torch.randn(2, 1, 28, 28))
    rates = guide.site_rates
    assert rates["conv1.weight"] == 0.0          # the image has no dropout before it
    assert rates["conv2.weight"] == 0.25
    assert rates["fc1.weight"] == 0.25
    assert rates["fc2.weight"] == 0.25
    assert all(rates[f"{layer}.bias"] == 0.0 for layer in ("conv1", "conv2", "fc1", "fc2"))
    last = BNN(LeNet(dropout="last"))
    guide = DropoutGuide(last, p=0.5)
    guide.network_output(torch.randn(2, 1, 28, 28))
    assert [name for name, p in guide.site_rates.items() if p > 0] == ["fc2.weight"]


def test_dropout_prior_term_is_the_expected_log_prior():
    """kl() = -E_z[ln p(M diag(z) / (1 - p))], estimated here from weight draws."""
    torch.manual_seed(0)
    model = BNN(MLP(6, 10, 3, dropout=0.4), prior_scale=0.8)
    guide = DropoutGuide(model, p=None)  # the slots' own rate
    guide.network_output(torch.randn(4, 6))
    draws = guide.sample_flat(20000)
    log_prior = torch.distributions.Normal(0.0, 0.8).log_prob(draws).sum(-1)
    estimate = float(-log_prior.mean())
    assert float(guide.kl().detach()) == pytest.approx(estimate, rel=2e-3)
    # the masked weights of a draw are 0 or M / (1 - p), column by column
    w = model.unflatten(draws[0])["head.weight"]
    m = model.unflatten(guide.weights.detach())["head.weight"]
    kept = (w != 0).all(0)
    torch.testing.assert_close(w[:, kept], m[:, kept] / 0.6)
    assert bool((w[:, ~kept] == 0).all())


def test_dropout_masks_are_per_example():
    model = BNN(MLP(1, 64, 1, dropout=0.5), likelihood="gaussian")
    guide = DropoutGuide(model)
    x = torch.ones(2, 1)  # two identical inputs
    out = guide.network_output(x)
    assert not torch.equal(out[0], out[1])


def test_map_guide_is_deterministic_and_its_prior_is_the_log_density():
    model = BNN(MLP(2, 3, 2), prior_scale=0.3)
    guide = MAPGuide(model)
    x = torch.randn(5, 2)
    assert torch.equal(guide.network_output(x), guide.network_output(x))
    expected = -torch.distributions.Normal(0, 0.3).log_prob(guide.weights.detach()).sum()
    assert float(guide.kl().detach()) == pytest.approx(float(expected), rel=1e-6)
    assert torch.equal(guide.sample_parameters(3)["head.weight"][2], model.unflatten(guide.weights)["head.weight"])


@pytest.mark.parametrize("p", [-0.1, 1.0, 1.5])
def test_dropout_rate_out_of_range(p):
    with pytest.raises(ValueError, match=r"\[0, 1\)"):
        DropoutGuide(BNN(MLP(2, 3, 2)), p=p)


def test_guides_need_a_bnn_and_dropout_slots():
    with pytest.raises(TypeError, match=r"models\.BNN"):
        MeanFieldGuide(MLP(2, 3, 2))
    with pytest.raises(ValueError, match="no dropout modules"):
        DropoutGuide(BNN(LeNet(dropout=None)))


def test_a_dropout_guide_that_would_drop_nothing_is_refused():
    # MLP's default dropout is 0: without p the masks keep every unit, a point mass in disguise.
    with pytest.raises(ValueError, match="every dropout module of the network has rate 0"):
        approximate("dropout", BNN(MLP(2, 3, 2)), (torch.randn(8, 2), torch.randint(0, 2, (8,))), epochs=1)
    with pytest.raises(ValueError, match="p=0, so the masks would drop nothing"):
        DropoutGuide(BNN(MLP(2, 3, 2, dropout=0.2)), p=0.0)
    assert DropoutGuide(BNN(MLP(2, 3, 2)), p=0.2).rates  # a rate given for the inactive slots: fine
