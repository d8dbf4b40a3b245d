"""SWAG: moments of the SGD iterates against an exact posterior, the sampler against the
covariance it claims, the second-moment / low-rank algebra, checkpoints and bad input."""

import math

import numpy as np
import pytest
import torch
import torch.nn as nn

from bayesdl.inference import SWAGGuide, approximate, fit_swag, load_checkpoint
from bayesdl.models import BNN, Gaussian


def _regression(n=200, d=3, sigma=0.5, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, d, generator=g)
    y = x @ torch.tensor([1.0, -2.0, 0.5])[:d] + sigma * torch.randn(n, generator=g)
    return x, y[:, None]


def _closed_form(x, y, sigma, prior_scale):
    """Posterior of w ~ N(0, s^2 I), y ~ N(x w, sigma^2) (PRML 3.53-3.54), computed here."""
    x, y = x.double(), y[:, 0].double()
    precision = torch.eye(x.shape[1], dtype=torch.float64) / prior_scale ** 2 + x.T @ x / sigma ** 2
    cov = torch.linalg.inv(precision)
    return cov @ x.T @ y / sigma ** 2, cov


def _linear_model(d=3, sigma=0.5, prior_scale=1.0):
    torch.manual_seed(0)
    return BNN(nn.Linear(d, 1, bias=False), prior_scale=prior_scale, likelihood=Gaussian(scale=sigma))


def _swag_blr(swag_lr, rank=20, epochs=100):
    x, y = _regression()
    return approximate("swag", _linear_model(), (x, y), epochs=30, lr=0.05, batch_size=50, seed=0,
                       progress=False, swag_epochs=epochs, swag_lr=swag_lr, swag_momentum=0.0,
                       collect_every=1, rank=rank), (x, y)


@pytest.mark.slow  # 520 SGD steps: seconds on an idle CPU
def test_swag_mean_is_the_closed_form_posterior_mean_of_linear_regression():
    """Constant-learning-rate SGD is stationary around the optimum (Mandt et al. 2017); for
    Bayesian linear regression that is the posterior mean, which the SWA average recovers."""
    posterior, (x, y) = _swag_blr(0.01)
    mean, cov = _closed_form(x, y, 0.5, 1.0)
    swa = posterior.model.flatten(posterior.point_estimate()).double()
    sd = cov.diag().sqrt()
    assert torch.all((swa - mean).abs() < 0.05 * sd), (swa, mean, sd)


def test_collected_moments_and_deviations_match_numpy():
    model = _linear_model(d=4)
    guide = SWAGGuide(model, rank=3)
    rng = np.random.default_rng(0)
    iterates = rng.normal(size=(6, 4))
    for theta in iterates:
        guide.collect(torch.tensor(theta, dtype=torch.float32))
    theta32 = iterates.astype(np.float32).astype(np.float64)
    np.testing.assert_allclose(guide.swa_mean.numpy(), theta32.mean(0), rtol=1e-10)
    np.testing.assert_allclose(guide.diagonal_variance.numpy(), theta32.var(0), rtol=1e-8)
    running = np.cumsum(theta32, 0) / np.arange(1, 7)[:, None]
    expected = (theta32 - running)[-3:]  # the last K deviations from the running mean
    kept = guide.deviation_matrix.double().numpy()
    assert sorted(map(tuple, np.round(kept, 5))) == sorted(map(tuple, np.round(expected, 5)))
    claimed = 0.5 * (np.diag(theta32.var(0)) + expected.T @ expected / 2)
    np.testing.assert_allclose(guide.covariance().numpy(), claimed, rtol=1e-5, atol=1e-7)


def test_swag_draws_have_the_mean_and_covariance_swag_claims():
    model = _linear_model(d=4)
    guide = SWAGGuide(model, rank=5)
    g = torch.Generator().manual_seed(1)
    mixing = torch.randn(4, 4, generator=g)
    for _ in range(40):
        guide.collect(torch.randn(4, generator=g) @ mixing + 3.0)
    torch.manual_seed(0)
    draws = guide.sample_flat(200_000).double()
    claimed = guide.covariance()
    np.testing.assert_allclose(draws.mean(0).numpy(), guide.swa_mean.numpy(), atol=0.02)
    np.testing.assert_allclose(torch.cov(draws.T).numpy(), claimed.numpy(), atol=0.03 * float(claimed.diag().max()))


def test_rank_zero_is_swag_diagonal():
    guide = SWAGGuide(_linear_model(d=2), rank=0)
    for theta in ([0.0, 1.0], [2.0, 1.0], [1.0, 4.0]):
        guide.collect(torch.tensor(theta))
    torch.manual_seed(0)
    draws = guide.sample_flat(100_000).double()
    np.testing.assert_allclose(draws.var(0).numpy(), [2 / 3, 2.0], rtol=0.03)
    torch.testing.assert_close(guide.covariance(), torch.diag(torch.tensor([2 / 3, 2.0], dtype=torch.float64)))


def test_swag_is_a_posterior_that_answers_every_call():
    posterior, (x, y) = _swag_blr(0.01, epochs=5)
    assert not posterior.is_point_mass and posterior.fixed_draws is None
    assert posterior.method == "swag"
    assert posterior.predictive_outputs(x[:7], num_samples=4).shape == (4, 7, 1)
    assert posterior.sample(6)["weight"].shape == (6, 1, 3)
    draws = posterior.draws(5)
    assert draws.num_chains == 1 and draws.num_draws == 5
    assert posterior.log_likelihood(x[:9], y[:9], num_samples=5).shape == (1, 5, 9)


def test_swag_phase_resumes_from_its_checkpoint_with_the_moments(tmp_path):
    x, y = _regression()
    map_posterior = approximate("map", _linear_model(), (x, y), epochs=5, lr=0.05, batch_size=20, seed=0,
                                progress=False)
    path = tmp_path / "swag.pt"
    first = fit_swag(map_posterior, (x, y), epochs=3, lr=0.01, batch_size=20, seed=0, progress=False,
                     checkpoint=path, rank=4)
    guide = SWAGGuide(map_posterior.model, rank=4)
    again = load_checkpoint(path, map_posterior.model, guide)
    assert int(guide.num_collected) == 3  # once per epoch by default
    torch.testing.assert_close(again.point_estimate(), first.point_estimate())
    more = fit_swag(map_posterior, (x, y), epochs=5, lr=0.01, batch_size=20, seed=0, progress=False,
                    checkpoint=path, resume=True, rank=4)
    guide = SWAGGuide(map_posterior.model, rank=4)
    torch.testing.assert_close(load_checkpoint(path, map_posterior.model, guide).point_estimate(),
                               more.point_estimate())
    assert int(guide.num_collected) == 5


def test_swag_bad_input_says_what_to_do():
    x, y = _regression(n=40)
    model = _linear_model()
    with pytest.raises(RuntimeError, match="at least 2"):
        guide = SWAGGuide(model, rank=3)
        guide.collect()
        guide.sample_flat(2)
    with pytest.raises(RuntimeError, match="no iterate"):
        SWAGGuide(model).point_flat()
    with pytest.raises(ValueError, match="rank"):
        SWAGGuide(model, rank=-1)
    with pytest.raises(ValueError, match="collect_every"):
        SWAGGuide(model, collect_every=0)
    with pytest.raises(TypeError, match="map_posterior was given"):
        map_posterior = approximate("map", model, (x, y), epochs=1, progress=False)
        approximate("swag", model, (x, y), map_posterior=map_posterior, epochs=3)
    with pytest.raises(TypeError, match="constant learning rate"):
        fit_swag(map_posterior, (x, y), scheduler=lambda opt: None)
    with pytest.raises(ValueError, match="lr"):
        fit_swag(map_posterior, (x, y), lr=-1.0)


def test_multiswag_refuses_one_map_for_all_members():
    x, y = _regression(n=40)
    model = _linear_model()
    map_posterior = approximate("map", model, (x, y), epochs=1, progress=False)
    with pytest.raises(TypeError, match="one MAP per member"):
        approximate("multiswag", model, (x, y), map_posterior=map_posterior)


def test_sampling_uses_the_paper_scales():
    """theta = mean + Sigma_diag^(1/2) z1 / sqrt(2) + D z2 / sqrt(2 (K - 1)), checked draw by draw."""
    guide = SWAGGuide(_linear_model(d=3), rank=3)
    g = torch.Generator().manual_seed(2)
    for _ in range(5):
        guide.collect(torch.randn(3, generator=g))
    torch.manual_seed(7)
    draw = guide.sample_flat(1)[0].double()
    torch.manual_seed(7)
    z1 = torch.randn(1, 3, dtype=torch.float64)[0]
    z2 = torch.randn(1, 3, dtype=torch.float64)[0]
    expected = (guide.swa_mean + guide.diagonal_variance.sqrt() * z1 / math.sqrt(2)
                + z2 @ guide.deviation_matrix.double() / math.sqrt(2 * 2))
    torch.testing.assert_close(draw, expected.float().double())
