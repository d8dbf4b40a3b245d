"""fit says when a Gaussian noise scale disagrees with the training residuals (issue 28: the
tour's ``Gaussian(scale=0.1)`` covered 52% with its 95% intervals and nothing said why)."""

from __future__ import annotations

import math
import warnings

import pytest
import torch

from bayesdl.inference import approximate
from bayesdl.models import BNN, MLP, Gaussian


def _line(n=200, noise=1.0, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 1, generator=g)
    return x, 2 * x[:, 0] + noise * torch.randn(n, generator=g)


@pytest.mark.parametrize("scale", [0.1, 1.0, 7.0])
def test_the_residual_rms_is_recovered_from_the_mean_log_likelihood(scale):
    g = torch.Generator().manual_seed(1)
    y, f = torch.randn(500, generator=g) * 3, torch.randn(500, generator=g)
    likelihood = Gaussian(scale=scale)
    mean_log_prob = float(likelihood.log_prob(f, y).mean())
    rms = float((y - f).square().mean().sqrt())
    assert likelihood.residual_rms(mean_log_prob) == pytest.approx(rms, rel=1e-5)


def test_a_scale_within_the_factor_is_not_judged_and_one_outside_is():
    likelihood = Gaussian(scale=1.0)
    at = lambda r: -0.5 * r**2 - 0.5 * math.log(2 * math.pi)  # mean log-likelihood at residual RMS r, s = 1  # noqa: E731
    assert likelihood.noise_mismatch(at(1.0)) is None
    assert likelihood.noise_mismatch(at(1.9)) is None
    assert "too narrow" in likelihood.noise_mismatch(at(3.0)) and "it is fixed" in likelihood.noise_mismatch(at(3.0))
    assert "too wide" in likelihood.noise_mismatch(at(0.3))
    assert "it is learned" in Gaussian(init_scale=1.0).noise_mismatch(at(3.0))


def test_fit_warns_of_a_fixed_scale_far_below_the_residuals_at_the_users_line():
    x, y = _line(noise=1.0)
    model = BNN(MLP(1, 16, 1), likelihood=Gaussian(scale=0.1))
    with pytest.warns(UserWarning, match=r"noise scale is 0\.1 .* too narrow; it is fixed") as record:
        approximate("map", model, (x, y), epochs=30, lr=1e-2, seed=0, progress=False)
    assert {w.filename for w in record} == {__file__}


def test_fit_warns_of_a_learned_scale_that_has_not_converged_and_not_of_one_that_has():
    x, y = _line(noise=0.2)
    slow = BNN(MLP(1, 16, 1), likelihood=Gaussian(init_scale=20.0))
    with pytest.warns(UserWarning, match="too wide; it is learned, but has not got there yet"):
        approximate("map", slow, (x, y), epochs=5, lr=1e-3, seed=0, progress=False)
    converged = BNN(MLP(1, 16, 1), likelihood=Gaussian(init_scale=1.0))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        approximate("map", converged, (x, y), epochs=150, lr=2e-2, seed=0, progress=False)
    assert 0.1 < float(converged.likelihood.scale.detach()) < 0.4
