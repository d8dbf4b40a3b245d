"""fit and Posterior: determinism, history, NaN guard, checkpoints, prediction, bad input."""

import math

import numpy as np
import pytest
import torch
import torch.nn as nn
from torch.utils.data import DataLoader, TensorDataset
from toy_data import blobs

from bayesdl.inference import (
    DropoutGuide,
    MAPGuide,
    MeanFieldGuide,
    NonFiniteLossError,
    Posterior,
    RegressionPrediction,
    exponential_decay,
    fit,
    load_checkpoint,
)
from bayesdl.models import BNN, MLP, BayesianLinearRegression, Gaussian, PolynomialBasis


def _make(guide_cls=DropoutGuide, init_seed=0, **kwargs):
    torch.manual_seed(init_seed)  # the network's initial weights
    model = BNN(MLP(2, 16, 3, dropout=0.2), prior_scale=1.0)
    return model, guide_cls(model, **kwargs)


def test_fit_learns_and_records_history():
    x, y = blobs(200)
    model, guide = _make(MeanFieldGuide)
    posterior = fit(model, guide, (x, y), epochs=15, lr=0.02, batch_size=32, seed=0, progress=False)
    h = posterior.history
    assert len(h.elbo) == 15 * math.ceil(200 / 32) and len(h.epoch_elbo) == 15
    assert h.dataset_size == 200
    np.testing.assert_allclose(np.array(h.elbo), np.array(h.log_likelihood) - np.array(h.kl), rtol=1e-5)
    assert h.epoch_elbo[-1] > h.epoch_elbo[0]
    probs = posterior.predict(x, num_samples=20).probs
    assert probs.shape == (20, 200, 3)
    assert float((probs.mean(0).argmax(1) == y).float().mean()) > 0.9


def test_same_seed_same_result_and_different_seed_differs():
    x, y = blobs(200)
    runs = []
    for seed in (3, 3, 4):
        model, guide = _make(DropoutGuide)
        fit(model, guide, (x, y), epochs=2, batch_size=16, seed=seed, progress=False)
        runs.append(guide.weights.detach().clone())
    assert torch.equal(runs[0], runs[1])
    assert not torch.equal(runs[0], runs[2])


def test_nan_guard_keeps_the_last_finite_state():
    x, y = blobs(200)
    model, guide = _make(MAPGuide)
    with pytest.raises(NonFiniteLossError, match="NaN/Inf") as info:
        fit(model, guide, (x, y), epochs=50, batch_size=8, seed=0, progress=False,
            optimizer=lambda p: torch.optim.SGD(p, lr=1e12))
    assert bool(torch.isfinite(guide.weights).all())
    assert torch.equal(model.flatten(info.value.posterior.point_estimate()), guide.weights.detach())
    assert info.value.posterior.predict(x[:3], num_samples=2).probs.shape == (2, 3, 3)


def test_checkpoint_resume_equals_an_uninterrupted_run(tmp_path):
    x, y = blobs(200)
    path = tmp_path / "ckpt.pt"
    model, guide = _make(MeanFieldGuide)
    fit(model, guide, (x, y), epochs=2, batch_size=32, seed=1, progress=False, checkpoint=path)
    model_b, guide_b = _make(MeanFieldGuide)
    resumed = fit(model_b, guide_b, (x, y), epochs=4, batch_size=32, seed=1, progress=False,
                  checkpoint=path, resume=True)
    model_c, guide_c = _make(MeanFieldGuide)
    straight = fit(model_c, guide_c, (x, y), epochs=4, batch_size=32, seed=1, progress=False)
    # the resumed run restored the generator state, so it replays the same batches and noise
    torch.testing.assert_close(guide_b.loc, guide_c.loc)
    assert len(resumed.history.epoch_elbo) == 4
    np.testing.assert_allclose(resumed.history.elbo, straight.history.elbo, rtol=1e-6)
    model_d, guide_d = _make(MeanFieldGuide)
    loaded = load_checkpoint(path, model_d, guide_d)
    torch.testing.assert_close(model_d.flatten(loaded.point_estimate()), guide_b.loc.detach())


def test_bad_checkpoints_give_clear_errors(tmp_path):
    x, y = blobs(40)
    path = tmp_path / "ckpt.pt"
    fit(*_make(MAPGuide), (x, y), epochs=1, progress=False, checkpoint=path)
    with pytest.raises(ValueError, match="saved from a MAPGuide"):
        load_checkpoint(path, *_make(DropoutGuide))
    other = BNN(MLP(2, 8, 3))
    with pytest.raises(ValueError, match="other latent weights"):
        load_checkpoint(path, other, MAPGuide(other))
    garbage = tmp_path / "garbage.pt"
    garbage.write_bytes(b"not a checkpoint at all")
    with pytest.raises(ValueError, match="not a readable bayesdl checkpoint"):
        load_checkpoint(garbage, *_make(MAPGuide))
    # a pickle that would run code is refused by weights_only loading
    evil = tmp_path / "evil.pt"
    torch.save({"format": "bayesdl-checkpoint-1", "payload": np.random.default_rng(0)}, evil)
    with pytest.raises(ValueError, match="corrupted or tampered"):
        load_checkpoint(evil, *_make(MAPGuide))


@pytest.mark.slow
def test_bnn_recovers_the_exact_linear_regression_posterior():
    """BNN(Linear) with a Gaussian likelihood *is* Bayesian linear regression: mean-field VI
    must find the exact mean and the mean-field variances ``1 / diag(precision)``."""
    rng = np.random.default_rng(0)
    x = rng.uniform(-1, 1, 30)
    y = -0.3 + 0.5 * x + rng.normal(0, 0.2, 30)
    alpha, beta = 2.0, 12.5
    blr = BayesianLinearRegression(PolynomialBasis(1), alpha, beta).fit(x, y)
    phi = PolynomialBasis(1)(x).float()
    target = torch.tensor(y, dtype=torch.float32)
    model = BNN(nn.Linear(2, 1, bias=False), prior_scale=alpha**-0.5, likelihood=Gaussian(scale=beta**-0.5))
    guide = MeanFieldGuide(model, init_scale=0.05)
    steps = 1500
    fit(model, guide, (phi, target), epochs=steps, lr=0.02, batch_size=30, seed=0, progress=False,
        num_particles=8, scheduler=lambda o: torch.optim.lr_scheduler.ExponentialLR(o, 0.01 ** (1 / steps)))
    exact_mean = blr.posterior_mean_.float()
    torch.testing.assert_close(guide.loc.detach(), exact_mean, atol=0.01, rtol=0)
    precision = torch.linalg.inv(blr.posterior_covariance_).float()
    torch.testing.assert_close(guide.scale.detach(), precision.diag().rsqrt(), rtol=0.1, atol=0)
    # NUTS on this model, with a prior and a dataset size that matter: tests/test_mcmc.py


def test_a_minibatch_step_scales_the_likelihood_by_n_over_b():
    """The minibatch ELBO counts the batch's log-likelihood N / B times and the prior once: one SGD
    step of MAP training on a batch of B of N examples moves the weights by
    ``-lr * (theta / s^2 - N / B * grad sum_batch ln N(y | x w + c, sigma^2))``, computed by hand."""
    g = torch.Generator().manual_seed(0)
    n, b, s, sigma, lr = 60, 6, 0.5, 0.5, 1e-3
    x = torch.randn(n, 3, generator=g, dtype=torch.float64)
    y = torch.randn(n, generator=g, dtype=torch.float64)
    torch.manual_seed(0)
    model = BNN(nn.Linear(3, 1), prior_scale=s, likelihood=Gaussian(scale=sigma)).double()
    guide = MAPGuide(model)
    theta = guide.weights.detach().clone()  # [w (3), c]
    # the loader yields the first batch only: one step, and the dataset still holds N examples
    loader = DataLoader(TensorDataset(x, y), batch_size=b, sampler=range(b))
    fit(model, guide, loader, epochs=1, optimizer=lambda p: torch.optim.SGD(p, lr=lr), progress=False)
    residual = y[:b] - (x[:b] @ theta[:3] + theta[3])
    grad_log_lik = torch.cat([x[:b].T @ residual, residual.sum()[None]]) / sigma**2
    expected = theta - lr * (theta / s**2 - n / b * grad_log_lik)
    torch.testing.assert_close(guide.weights.detach(), expected, rtol=1e-6, atol=1e-12)


def test_regression_prediction_and_batching():
    x = torch.linspace(-1, 1, 50)[:, None]
    y = 2 * x[:, 0]
    model = BNN(MLP(1, 8, 1), likelihood=Gaussian(scale=0.1))
    guide = MAPGuide(model)
    posterior = fit(model, guide, (x, y), epochs=3, progress=False)
    pred = posterior.predict(x, num_samples=4, batch_size=7)
    assert isinstance(pred, RegressionPrediction)
    assert pred.mean.shape == (4, 50) and pred.noise.shape == (4, 50)
    torch.testing.assert_close(pred.noise, torch.full((4, 50), 0.1))
    whole = posterior.predict(x, num_samples=1, batch_size=1000).mean[0]
    torch.testing.assert_close(pred.mean[0], whole)
    mean, variance = pred.moments()
    assert mean.shape == (50,) and bool((variance >= 0.01 - 1e-6).all())


def test_bernoulli_model_predicts_two_classes():
    x, y = blobs(100)
    y = (y == 0).long()
    model = BNN(nn.Linear(2, 1), likelihood="bernoulli")
    posterior = fit(model, MeanFieldGuide(model), (x, y), epochs=5, lr=0.05, progress=False)
    probs = posterior.predict(x, num_samples=8).probs
    assert probs.shape == (8, 100, 2)
    torch.testing.assert_close(probs.sum(-1), torch.ones(8, 100))
    assert posterior.sample(5)["weight"].shape == (5, 1, 2)


@pytest.mark.parametrize(
    "call, error, message",
    [
        (lambda m, g: fit(m, g, DataLoader(TensorDataset(torch.empty(0, 2), torch.empty(0))), progress=False),
         ValueError, "empty"),
        (lambda m, g: fit(m, g, (torch.randn(5, 2), torch.tensor([0, 1, 2, 3, 7])), progress=False),
         ValueError, r"y \(labels\) must lie in \[0, 3\)"),
        (lambda m, g: fit(m, g, (torch.randn(5, 2), torch.tensor([0, 1])), progress=False),
         ValueError, "same length"),
        (lambda m, g: fit(m, g, (torch.full((4, 2), float("inf")), torch.tensor([0, 1, 2, 0])), progress=False),
         ValueError, "non-finite"),
        (lambda m, g: fit(m, g, [1, 2, 3], progress=False), TypeError, "DataLoader or a tuple"),
        (lambda m, g: fit(m, g, (torch.randn(4, 2), torch.tensor([0, 1, 2, 0])), epochs=-1, progress=False),
         ValueError, "epochs must be >= 0"),
        (lambda m, g: Posterior(m, g).predict(torch.randn(3, 2), num_samples=0), ValueError,
         "num_samples must be >= 1"),
        (lambda m, g: Posterior(m, g).predict(torch.full((3, 2), float("nan"))), ValueError, "non-finite"),
    ],
)
def test_bad_input(call, error, message):
    model, guide = _make(MAPGuide)
    with pytest.raises(error, match=message):
        call(model, guide)


def test_generic_pyro_model_needs_an_explicit_elbo():
    blr = BayesianLinearRegression(PolynomialBasis(1))
    from pyro.infer.autoguide import AutoNormal

    with pytest.raises(TypeError, match="Trace_ELBO"):
        fit(blr.model, AutoNormal(blr.model), (torch.randn(5), torch.randn(5)), progress=False)


def test_exponential_decay_reaches_the_final_rate():
    opt = torch.optim.SGD([nn.Parameter(torch.zeros(1))], lr=1e-2)
    sched = exponential_decay(1e-2, 1e-4, 20)(opt)
    for _ in range(20):
        opt.step()
        sched.step()
    assert opt.param_groups[0]["lr"] == pytest.approx(1e-4, rel=1e-9)
    with pytest.raises(ValueError, match="final_lr"):
        exponential_decay(1e-2, 0.0, 20)


def test_a_guide_built_for_another_model_is_refused_before_any_work():
    from bayesdl.inference import MeanFieldGuide, fit
    from bayesdl.models import BNN, MLP

    model, other = BNN(MLP(2, 4, 1), likelihood="gaussian"), BNN(MLP(2, 4, 1), likelihood="gaussian")
    x = torch.randn(8, 2)

    def no_batch_drawn():
        raise AssertionError("the data was read before the mismatch was found")
        yield

    class Untouchable(torch.utils.data.IterableDataset):
        def __iter__(self):
            return no_batch_drawn()

    loader = torch.utils.data.DataLoader(Untouchable(), batch_size=None)
    with pytest.raises(ValueError, match=r"MeanFieldGuide was built for another model than the one passed to fit"):
        fit(model, MeanFieldGuide(other), loader, epochs=1, progress=False)
    fit(model, MeanFieldGuide(model), (x, x[:, 0]), epochs=1, progress=False)  # the right pairing trains
