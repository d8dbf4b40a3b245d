"""NUTS for BNNs: the potential it samples is the model's log joint, and the draws follow the
exact posterior of a conjugate model where the prior and the dataset size matter."""

import numpy as np
import pytest
import torch
import torch.nn as nn
from pyro import poutine

from bayesdl.evaluation.diagnostics import convergence
from bayesdl.inference import nuts, to_inference_data
from bayesdl.inference.mcmc import _bnn_potential
from bayesdl.models import BNN, MLP, BayesianLinearRegression, Gaussian, NormalPrior, PolynomialBasis


@pytest.mark.parametrize("dataset_size", [None, 200])
def test_bnn_potential_is_the_negative_log_joint_of_the_model_trace(dataset_size):
    """U(theta) = -ln p(theta) - N / B sum_n ln p(y_n | x_n, theta), read from the Pyro model's trace
    (priors per layer; the data plate scales a minibatch of B to a dataset of N)."""
    torch.manual_seed(0)
    model = BNN(MLP(2, 4, 3), prior=NormalPrior(0.7, layer_scales={"head": 0.3}))
    x, y = torch.randn(20, 2), torch.randint(0, 3, (20,))
    potential = _bnn_potential(model, x, y, dataset_size)
    for _ in range(3):
        theta = 1.5 * torch.randn(model.num_latent)
        conditioned = poutine.condition(model.model, data=model.unflatten(theta))
        trace = poutine.trace(conditioned).get_trace(x, y, dataset_size=dataset_size)
        assert float(potential({"theta": theta})) == pytest.approx(-float(trace.log_prob_sum()), rel=1e-5)


@pytest.mark.slow
def test_nuts_draws_the_conjugate_posterior_with_a_prior_and_a_dataset_size_that_matter():
    """BNN(Linear) with a Gaussian likelihood is Bayesian linear regression. Here the prior moves the
    posterior mean by more than two standard deviations, so a sampler without the prior would be far
    off; and the B points stand for a dataset of N, which is the closed form with the noise precision
    times N / B (a sampler that ignored N would be too wide and off-centre)."""
    rng = np.random.default_rng(0)
    n = 25
    x = rng.uniform(-1, 1, n)
    y = 0.8 - 1.2 * x + rng.normal(0, 0.5, n)
    alpha, beta = 40.0, 4.0
    dataset_size = 3 * n
    scale = dataset_size / n
    blr = BayesianLinearRegression(PolynomialBasis(1), alpha, beta * scale).fit(x, y)
    flat_prior = BayesianLinearRegression(PolynomialBasis(1), 1e-8, beta * scale).fit(x, y)
    std = blr.posterior_covariance_.diag().sqrt()
    unscaled = BayesianLinearRegression(PolynomialBasis(1), alpha, beta).fit(x, y)
    assert bool(((blr.posterior_mean_ - flat_prior.posterior_mean_).abs() > 2 * std).all())  # the prior matters
    assert bool(((blr.posterior_mean_ - unscaled.posterior_mean_).abs() > 2 * std).all())  # so does N
    phi = PolynomialBasis(1)(x).float()
    model = BNN(nn.Linear(2, 1, bias=False), prior_scale=alpha**-0.5, likelihood=Gaussian(scale=beta**-0.5))
    args = (phi, torch.tensor(y, dtype=torch.float32))
    posterior = nuts(model, *args, dataset_size=dataset_size, num_samples=500, warmup_steps=200, num_chains=2,
                     seed=0, progress=False)
    assert convergence(to_inference_data(posterior))["min_ess_bulk"] > 300
    w = posterior.sample(1000)["weight"].reshape(-1, 2).double()
    # 1000 draws, an ESS over 300: the mean within 5 Monte-Carlo standard errors
    assert bool(((w.mean(0) - blr.posterior_mean_).abs() < 5 * std / np.sqrt(300)).all())
    torch.testing.assert_close(w.std(0), std, rtol=0.12, atol=0)
    correlation = blr.posterior_covariance_[0, 1] / (std[0] * std[1])
    assert float(torch.corrcoef(w.T)[0, 1]) == pytest.approx(float(correlation), abs=0.1)


def test_nuts_starts_each_chain_where_it_is_told_and_refuses_bad_starts():
    """``initial``: one starting point per chain. y = w2 w1 x has two modes, (+, +) and (-, -),
    split by a barrier at w1 = 0; a chain started in each stays in its own mode (so R-hat of
    such chains can see modes, the reason to start from different MAPs); bad starts are refused."""
    torch.manual_seed(0)
    x = torch.linspace(-1, 1, 30).unsqueeze(-1)
    y = x.squeeze(-1) + 0.1 * torch.randn(30)
    model = BNN(nn.Sequential(nn.Linear(1, 1, bias=False), nn.Linear(1, 1, bias=False)), prior_scale=2.0,
                likelihood=Gaussian(scale=0.1))
    starts = [{"0.weight": torch.ones(1, 1), "1.weight": torch.ones(1, 1)},
              {"0.weight": -torch.ones(1, 1), "1.weight": -torch.ones(1, 1)}]
    posterior = nuts(model, x, y, initial=starts, num_samples=20, warmup_steps=20, num_chains=2, progress=False)
    first_layer = posterior.draws(40).samples["0.weight"].reshape(2, 20)
    assert bool((first_layer[0] > 0).all()) and bool((first_layer[1] < 0).all())
    with pytest.raises(ValueError, match="one per chain"):
        nuts(model, x, y, initial=starts, num_chains=3, progress=False)
    with pytest.raises(ValueError, match="weights with their shapes"):
        nuts(model, x, y, initial={"0.weight": torch.ones(1, 1)}, progress=False)
    with pytest.raises(ValueError, match="weights with their shapes"):
        nuts(model, x, y, initial={"0.weight": torch.ones(2), "1.weight": torch.ones(1, 1)}, progress=False)
