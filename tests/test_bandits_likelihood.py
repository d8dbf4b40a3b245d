"""MaskedGaussian: only the observed outputs enter the likelihood, in training and in Pyro."""

from __future__ import annotations

import math

import pytest
import torch

from bayesdl.inference import approximate
from bayesdl.models import BNN, MLP, MaskedGaussian

NAN = math.nan


def test_log_prob_sums_the_observed_outputs_only_and_matches_the_pyro_site():
    lik = MaskedGaussian(scale=0.5)
    output = torch.tensor([[0.1, 2.0, -1.0], [0.3, 0.0, 4.0]])
    y = torch.tensor([[0.5, NAN, NAN], [NAN, 1.0, 3.0]])
    normal = torch.distributions.Normal
    expected = torch.stack([normal(0.1, 0.5).log_prob(torch.tensor(0.5)),
                            normal(0.0, 0.5).log_prob(torch.tensor(1.0)) + normal(4.0, 0.5).log_prob(torch.tensor(3.0))])
    assert torch.allclose(lik.log_prob(output, y), expected)
    assert torch.allclose(lik.distribution(output).log_prob(y), expected)
    assert lik.distribution(output).sample().shape == (2, 3)


def test_an_unobserved_output_gets_no_gradient():
    lik = MaskedGaussian()
    output = torch.randn(4, 2, requires_grad=True)
    y = torch.tensor([[1.0, NAN], [NAN, 2.0], [0.5, NAN], [NAN, -1.0]])
    lik.log_prob(output, y).sum().backward()
    assert torch.all(output.grad[torch.isnan(y)] == 0)
    assert torch.all(output.grad[~torch.isnan(y)] != 0)
    assert lik.log_scale.grad is not None


@pytest.mark.slow
def test_a_bandit_network_trains_on_the_pulled_arms():
    """The MAP of a 2-arm reward network recovers each arm's reward where it was observed."""
    g = torch.Generator().manual_seed(0)
    x = torch.randn(400, 3, generator=g)
    arms = torch.randint(2, (400,), generator=g)
    truth = torch.stack([x[:, 0], -x[:, 1]], 1)
    y = torch.full((400, 2), NAN)
    y[torch.arange(400), arms] = truth[torch.arange(400), arms]
    model = BNN(MLP(3, 16, 2), prior_scale=1.0, likelihood=MaskedGaussian())
    posterior = approximate("map", model, (x, y), epochs=60, batch_size=200, lr=3e-2, seed=0, progress=False)
    error = (posterior.point_outputs(x) - truth).pow(2).mean().sqrt()
    assert float(error) < 0.2 * float(truth.std())


def test_bad_targets_are_refused():
    lik = MaskedGaussian()
    output = torch.zeros(2, 2)
    with pytest.raises(ValueError, match="shape"):
        lik.check_targets(torch.zeros(2, 3), output)
    with pytest.raises(ValueError, match="at least one"):
        lik.check_targets(torch.tensor([[NAN, NAN], [1.0, NAN]]), output)
    with pytest.raises(ValueError, match="infinite"):
        lik.check_targets(torch.tensor([[math.inf, NAN], [1.0, NAN]]), output)
    with pytest.raises(ValueError, match="outputs \\[N, K\\]"):
        lik.check_targets(torch.zeros(2), torch.zeros(2))
    with pytest.raises(ValueError, match="\\[N, K\\]"):
        lik.log_prob(output, torch.zeros(2))
    with pytest.raises(NotImplementedError, match="Laplace"):
        lik.output_hessian(output)
