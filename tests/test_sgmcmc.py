"""SG-MCMC (SGLD, SGHMC, cyclical): the potential, the schedules, the checks at the boundary, resume,
the NaN guard -- and the draws against the exact (conjugate) posterior of Bayesian linear regression."""

from __future__ import annotations

import math

import arviz as az
import numpy as np
import pyro
import pytest
import torch
import torch.nn as nn

from bayesdl.inference import (
    METHODS,
    NonFiniteLossError,
    approximate,
    csgmcmc,
    sghmc,
    sgld,
    to_inference_data,
)
from bayesdl.inference.sgmcmc import _Schedule, bnn_potential
from bayesdl.models import BNN
from bayesdl.models.likelihoods import Gaussian

SIGMA, PRIOR = 0.5, 1.0


def _blr_data(n: int = 100, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 2, generator=g)
    y = x @ torch.tensor([1.0, -0.5]) + 0.3 + SIGMA * torch.randn(n, generator=g)
    return x, y


def _blr_model():
    return BNN(nn.Linear(2, 1), prior_scale=PRIOR, likelihood=Gaussian(scale=SIGMA))


def _exact(x, y):
    """The conjugate posterior of w = (weight, bias): S^-1 = I / s^2 + Phi^T Phi / sigma^2,
    m = S Phi^T y / sigma^2 (PRML 3.53-3.54), with Phi = [x, 1]."""
    phi = torch.cat([x, torch.ones(len(x), 1)], 1).double()
    precision = torch.eye(3, dtype=torch.float64) / PRIOR**2 + phi.T @ phi / SIGMA**2
    cov = torch.linalg.inv(precision)
    return cov @ phi.T @ y.double() / SIGMA**2, cov


def _flat(posterior) -> np.ndarray:
    d = posterior.draws()
    return torch.cat([d.samples["weight"].flatten(2), d.samples["bias"].flatten(2)], -1).double().numpy()


def _ess(values: np.ndarray) -> np.ndarray:
    """ArviZ's bulk ESS of each component of ``[chains, draws, K]``."""
    return az.ess(az.convert_to_dataset({"v": values}))["v"].values


# ---------------------------------------------------------------- the potential
def test_potential_is_the_log_joint_of_the_models_trace_scaled_by_n_over_b():
    torch.manual_seed(0)
    model = BNN(nn.Sequential(nn.Linear(2, 3), nn.Tanh(), nn.Linear(3, 2)), prior_scale=0.7)
    x, y = torch.randn(8, 2), torch.randint(0, 2, (8,))
    theta = torch.randn(model.num_latent)
    potential = bnn_potential(model, dataset_size=40)
    conditioned = pyro.poutine.condition(model.model, data=model.unflatten(theta))
    trace = pyro.poutine.trace(conditioned).get_trace(x, y, dataset_size=40)
    assert float(potential(theta, x, y)) == pytest.approx(-float(trace.log_prob_sum()), rel=1e-5)
    # and its gradient is autograd's of that log joint
    theta_ = theta.clone().requires_grad_(True)
    (grad,) = torch.autograd.grad(potential(theta_, x, y), theta_)
    t2 = theta.clone().requires_grad_(True)
    joint = pyro.poutine.trace(pyro.poutine.condition(model.model, data=model.unflatten(t2))).get_trace(
        x, y, dataset_size=40).log_prob_sum()
    (expected,) = torch.autograd.grad(-joint, t2)
    torch.testing.assert_close(grad, expected, rtol=1e-5, atol=1e-6)
    # the samplers' path (the prior's gradient in closed form) gives the same value and gradient
    value, fast = potential.value_and_grad(theta, x, y)
    assert float(value) == pytest.approx(-float(trace.log_prob_sum()), rel=1e-5)
    torch.testing.assert_close(fast, expected, rtol=1e-5, atol=1e-6)


# ---------------------------------------------------------------- schedules
def test_cyclical_schedule_is_the_cosine_of_zhang_et_al_and_collects_at_each_cycles_end():
    s = _Schedule(steps=40, eta=2.0, burn_in=0, thin=2, cycles=4, exploration=0.5, samples_per_cycle=2)
    etas, noisy, collect = zip(*(s.at(k) for k in range(40)))
    L = 10
    for k in range(40):
        r = (k % L) / L
        assert etas[k] == pytest.approx(1.0 * (math.cos(math.pi * r) + 1))
        assert noisy[k] == (r >= 0.5)
    assert [k for k in range(40) if collect[k]] == [7, 9, 17, 19, 27, 29, 37, 39]
    assert s.draws() == 8
    constant = _Schedule(steps=10, eta=1.0, burn_in=4, thin=3)
    assert [k for k in range(10) if constant.at(k)[2]] == [6, 9]


# ---------------------------------------------------------------- the boundary
@pytest.mark.parametrize("call, match", [
    (lambda m, d: sgld(m, d, lr=0.0), "lr must be > 0"),
    (lambda m, d: sgld(m, d, lr=-1.0), "lr must be > 0"),
    (lambda m, d: sghmc(m, d, friction=0.0), r"friction must lie in \(0, 1\]"),
    (lambda m, d: sghmc(m, d, friction=1.5), r"friction must lie in \(0, 1\]"),
    (lambda m, d: sgld(m, d, epochs=2, batch_size=50, burn_in=4), "burn_in=4 steps is not below the 4"),
    (lambda m, d: sgld(m, d, temperature=0.0), "temperature must be > 0"),
    (lambda m, d: sgld(m, d, num_chains=0), "num_chains must be >= 1"),
    (lambda m, d: sgld(m, d, thin=0), "thin must be >= 1"),
    (lambda m, d: csgmcmc(m, d, exploration=1.0), r"exploration must lie in \[0, 1\)"),
    (lambda m, d: csgmcmc(m, d, base="nuts"), "base must be one of"),
    (lambda m, d: csgmcmc(m, d, epochs=4, batch_size=50, cycles=2, exploration=0.5, samples_per_cycle=3,
                          thin=1), "fewer than the 3"),
    (lambda m, d: csgmcmc(m, d, cycles=1000, epochs=2), "cycles=1000 exceeds"),
])
def test_bad_options_are_refused_before_any_work(call, match):
    x, y = _blr_data()
    with pytest.raises(ValueError, match=match):
        call(_blr_model(), (x, y))


def test_bad_types_are_refused():
    x, y = _blr_data()
    with pytest.raises(TypeError, match="takes no option"):
        sgld(_blr_model(), (x, y), momentum=0.9)
    with pytest.raises(TypeError, match="takes no burn_in"):
        csgmcmc(_blr_model(), (x, y), burn_in=3)
    # through the registry: not among the method's declared options, refused by name
    assert "burn_in" not in METHODS["csgmcmc"].options and "burn_in" in METHODS["sghmc"].options
    with pytest.raises(TypeError, match=r"method 'csgmcmc' takes no option \['burn_in'\]"):
        approximate("csgmcmc", _blr_model(), (x, y), burn_in=3)
    with pytest.raises(TypeError, match="BNN"):
        sgld(nn.Linear(2, 1), (x, y))
    with pytest.raises(TypeError, match="takes no option"):
        approximate("sghmc", _blr_model(), (x, y), momentum=0.9)


def test_registered_with_their_checkpoint_option():
    for name in ("sgld", "sghmc", "csgmcmc"):
        info = METHODS[name]
        assert info.checkpoint_option == "checkpoint" and "checkpoint" in info.options
        assert {"lr", "num_chains", "seed", "temperature", "precondition"} <= info.options
    assert "friction" in METHODS["sghmc"].options and "cycles" in METHODS["csgmcmc"].options


# ---------------------------------------------------------------- chains, resume, NaN guard
def _short(method, **extra):
    options = dict(lr=0.01, epochs=6, batch_size=25, thin=2, num_chains=3, seed=1, progress=False)
    options.update(extra)
    x, y = _blr_data()
    return approximate(method, _blr_model(), (x, y), **options)


def test_draws_are_held_by_chain_and_arviz_reads_them():
    posterior = _short("sghmc")
    draws = posterior.draws()
    assert draws.samples["weight"].shape == (3, 6, 1, 2) and draws.diverging is None   # 24 steps, 12 kept / 2
    x, y = _blr_data()
    idata = to_inference_data(posterior, x[:10], y[:10], progress=False)
    assert idata.posterior.sizes["chain"] == 3 and idata.log_likelihood["y"].shape == (3, 6, 10)
    assert posterior.predict(x[:5], num_samples=7).mean.shape == (7, 5)
    cyc = _short("csgmcmc", cycles=2, exploration=0.5, samples_per_cycle=2, thin=1, precondition=True)
    assert cyc.draws().samples["bias"].shape == (3, 4, 1)
    assert cyc.history.seconds > 0 and cyc.method == "csgmcmc"


def test_an_interrupted_run_resumes_to_the_same_draws(tmp_path, monkeypatch):
    from bayesdl.inference import sgmcmc as module

    whole = _short("sghmc", precondition=True)
    path = tmp_path / "run.pt"
    calls = {"n": 0}
    original = module._Run._epoch

    def interrupted(self, chain, epoch, state):
        calls["n"] += 1
        if calls["n"] == 10:  # chain 2, epoch 4
            raise KeyboardInterrupt
        return original(self, chain, epoch, state)

    monkeypatch.setattr(module._Run, "_epoch", interrupted)
    with pytest.raises(KeyboardInterrupt):
        _short("sghmc", precondition=True, checkpoint=path, checkpoint_every=0)
    monkeypatch.setattr(module._Run, "_epoch", original)
    resumed = _short("sghmc", precondition=True, checkpoint=path, resume=True)
    for site, value in whole.draws().samples.items():
        torch.testing.assert_close(resumed.draws().samples[site], value, rtol=0, atol=0)
    # a checkpoint of another run is refused, a corrupted one too
    with pytest.raises(ValueError, match="another SG-MCMC run"):
        _short("sghmc", lr=0.02, checkpoint=path, resume=True)
    path.write_bytes(path.read_bytes()[:-40])
    with pytest.raises(ValueError, match="SG-MCMC checkpoint"):
        _short("sghmc", precondition=True, checkpoint=path, resume=True)


def test_a_step_size_far_too_large_stops_with_the_nan_guard():
    with pytest.raises(NonFiniteLossError, match="Lower lr") as info:
        _short("sgld", lr=1e6, epochs=30)
    assert info.value.posterior is None  # the first chain blew up: nothing finished


# ---------------------------------------------------------------- against the exact posterior
@pytest.fixture(scope="module")
def blr_sghmc():
    torch.set_num_threads(1)
    x, y = _blr_data()
    posterior = sghmc(_blr_model(), (x, y), lr=0.03, friction=0.5, epochs=1000, batch_size=50, thin=1,
                      burn_in=200, num_chains=4, seed=0, progress=False)
    return x, y, posterior


@pytest.mark.slow
def test_sghmc_moments_match_the_conjugate_posterior_within_3_monte_carlo_errors(blr_sghmc):
    x, y, posterior = blr_sghmc
    mean, cov = _exact(x, y)
    draws = _flat(posterior)                                    # [4, 1800, 3]
    # means: MC error sd / sqrt(ESS)
    z_mean = (draws.mean((0, 1)) - mean.numpy()) / (np.sqrt(np.diag(cov.numpy())) / np.sqrt(_ess(draws)))
    assert np.abs(z_mean).max() < 3, z_mean
    # covariances: each entry is the mean of the products of centred draws; its MC error from their ESS
    centred = draws - mean.numpy()
    products = np.stack([centred[..., i] * centred[..., j] for i in range(3) for j in range(i, 3)], -1)
    expected = np.array([cov[i, j].item() for i in range(3) for j in range(i, 3)])
    error = products.std((0, 1)) / np.sqrt(_ess(products))
    z_cov = (products.mean((0, 1)) - expected) / error
    assert np.abs(z_cov).max() < 3, z_cov


@pytest.mark.slow
def test_sghmc_predictions_have_rhat_below_1_01(blr_sghmc):
    x, _, posterior = blr_sghmc
    outputs = posterior.outputs_at(x[:20], posterior.sample(posterior.fixed_draws))  # [C*D, 20]
    chains = outputs.reshape(4, -1, 20).numpy()
    rhat = az.rhat(az.convert_to_dataset({"f": chains}))["f"].values
    assert rhat.max() < 1.01, rhat.max()


@pytest.mark.slow
def test_sgld_bias_grows_with_the_step_size_as_the_euler_step_predicts():
    """SGLD has no accept step: at a large step its stationary law is too wide -- shown here, not
    hidden. Full-batch SGLD on a Gaussian posterior of precision ``A`` is the linear chain
    ``theta' = (I - eta A) theta + eta b + sqrt(2 eta) xi``, whose stationary covariance solves
    ``S = (I - eta A) S (I - eta A) + 2 eta I``: ``S = (A (I - eta A / 2))^-1``. Along the stiffest
    direction of ``A`` (eigenvalue ``lambda``, where the chain mixes fastest and the variance is
    measured best) its sd is ``1 / sqrt(1 - eta lambda / 2)`` times the posterior's."""
    x, y = _blr_data()
    mean, cov = _exact(x, y)
    eigenvalues, vectors = torch.linalg.eigh(torch.linalg.inv(cov))
    stiff, lam = vectors[:, -1].numpy(), float(eigenvalues[-1])
    ratios = []
    for lr in (0.05, 0.15, 0.3):
        posterior = sgld(_blr_model(), (x, y), lr=lr, epochs=800, batch_size=100, thin=1, burn_in=100,
                         num_chains=2, seed=0, progress=False)
        along = (_flat(posterior) - mean.numpy()) @ stiff          # [2, 700]
        exact_sd = float(stiff @ cov.numpy() @ stiff) ** 0.5
        ratio = float(np.sqrt((along**2).mean())) / exact_sd
        error = ratio * 0.5 * float(np.sqrt(2 / _ess(along[..., None] ** 2)[0]))  # sd of an sd estimate
        predicted = 1 / math.sqrt(1 - (lr / len(x)) * lam / 2)
        assert abs(ratio - predicted) < 3 * error + 0.01, (lr, ratio, predicted, error)
        ratios.append(ratio)
    assert ratios[0] < ratios[1] < ratios[2], ratios
    assert ratios[2] - 1 > 10 * error, (ratios, error)  # at lr 0.3 the bias is far beyond Monte Carlo error
