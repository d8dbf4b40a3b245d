"""The Posterior seam and the method registry: typed predictions, point estimates, draws by
chain, pointwise log-likelihoods, point masses, and methods by name."""

import pytest
import torch
import torch.nn as nn
from toy_data import blobs

from bayesdl.inference import (
    METHODS,
    ClassPrediction,
    DropoutGuide,
    MAPGuide,
    Posterior,
    RegressionPrediction,
    approximate,
    fit,
    fit_laplace,
    load_checkpoint,
    register_method,
)
from bayesdl.models import BNN, MLP, Gaussian


def _model(seed=0):
    torch.manual_seed(seed)
    return BNN(MLP(2, 8, 3, dropout=0.2), prior_scale=1.0)


FIT = {"epochs": 3, "lr": 0.02, "batch_size": 30, "seed": 0, "progress": False}


def test_a_point_mass_runs_the_network_once_however_many_samples():
    x, y = blobs(90)
    model = _model()
    posterior = approximate("map", model, (x, y), **FIT)
    assert posterior.is_point_mass and posterior.method == "map"
    calls = []
    hook = model.net.register_forward_hook(lambda *args: calls.append(1))
    try:
        prediction = posterior.predict(x, num_samples=20)
    finally:
        hook.remove()
    assert len(calls) == 1
    assert isinstance(prediction, ClassPrediction) and prediction.probs.shape == (20, 90, 3)
    assert bool((prediction.probs == prediction.probs[0]).all())
    expected = torch.softmax(model.network(x, posterior.point_estimate()), -1)
    torch.testing.assert_close(prediction.predictive, expected)


@pytest.mark.parametrize("method", ["dropout", "mean_field"])
def test_sampled_posteriors_draw_afresh_and_are_not_point_masses(method):
    x, y = blobs(90)
    posterior = approximate(method, _model(), (x, y), **FIT)
    assert not posterior.is_point_mass and posterior.fixed_draws is None
    probs = posterior.predict(x, num_samples=6).probs
    assert not torch.equal(probs[0], probs[1])
    draws = posterior.draws(7)
    assert draws.num_chains == 1 and draws.num_draws == 7 and draws.diverging is None


def test_point_estimates_of_each_method():
    x, y = blobs(90)
    model = _model()
    mean_field = approximate("mean_field", model, (x, y), **FIT)
    # the variational mean: the average of many draws
    draws = mean_field.sample(4000)
    for name, value in mean_field.point_estimate().items():
        torch.testing.assert_close(draws[name].mean(0), value, atol=0.01, rtol=0)
    dropout = approximate("dropout", _model(), (x, y), **FIT)
    # the dropout network with its slots off: the deterministic prediction
    det = torch.softmax(dropout.bnn.network(x, dropout.point_estimate()), -1)
    assert torch.allclose(det.sum(-1), torch.ones(len(x)))
    nuts = approximate("nuts", BNN(nn.Linear(2, 3)), (x, y), num_samples=30, warmup_steps=30, num_chains=2,
                       progress=False)
    chains = nuts.draws()
    assert chains.num_chains == 2 and chains.num_draws == 30 and chains.diverging.dtype == torch.bool
    assert nuts.fixed_draws == 60
    torch.testing.assert_close(nuts.point_estimate()["weight"], chains.samples["weight"].mean((0, 1)))


def test_log_likelihood_is_that_of_the_network_at_each_draw():
    x, y = blobs(90)
    posterior = approximate("mean_field", _model(), (x, y), **FIT)
    draws = posterior.draws(5)
    log_lik = posterior.log_likelihood(x, y, draws)
    assert log_lik.shape == (1, 5, 90)
    weights = {k: v[0, 3] for k, v in draws.samples.items()}
    expected = torch.log_softmax(posterior.bnn.network(x, weights), -1).gather(1, y[:, None])[:, 0]
    torch.testing.assert_close(log_lik[0, 3], expected.detach())


def test_regression_predictions_are_typed():
    x = torch.linspace(-1, 1, 40)[:, None]
    model = BNN(MLP(1, 8, 1), likelihood=Gaussian(scale=0.1))
    prediction = approximate("mean_field", model, (x, 2 * x[:, 0]), **FIT).predict(x, num_samples=3)
    assert isinstance(prediction, RegressionPrediction) and prediction.task == "regression"
    assert prediction.mean.shape == (3, 40) and prediction.num_samples == 3


def test_regression_moments_are_those_of_the_mixture():
    """``moments()`` are the mean and variance of the mixture ``1/S sum_s N(mean_s, noise_s^2)``,
    integrated numerically from its density on a fine grid."""
    g = torch.Generator().manual_seed(0)
    mean = 2 * torch.randn(6, 4, generator=g, dtype=torch.float64)
    noise = 0.2 + torch.rand(6, 4, generator=g, dtype=torch.float64)
    m, v = RegressionPrediction(mean, noise).moments()
    grid = torch.linspace(-25, 25, 200001, dtype=torch.float64)
    density = torch.distributions.Normal(mean[..., None], noise[..., None]).log_prob(grid).exp().mean(0)  # [N, G]
    expected_mean = torch.trapezoid(grid * density, grid)
    expected_var = torch.trapezoid((grid - expected_mean[:, None]) ** 2 * density, grid)
    torch.testing.assert_close(m, expected_mean, rtol=0, atol=1e-8)
    torch.testing.assert_close(v, expected_var, rtol=1e-7, atol=0)


def test_the_registry_gives_the_same_posterior_as_the_guide_by_hand():
    x, y = blobs(90)
    by_name = approximate("dropout", _model(), (x, y), p=0.3, **FIT)
    model = _model()
    by_hand = fit(model, DropoutGuide(model, p=0.3), (x, y), **FIT)
    for name, value in by_hand.point_estimate().items():
        assert torch.equal(by_name.point_estimate()[name], value)
    assert by_name.method == "dropout" and by_hand.method == "DropoutGuide"


def test_laplace_by_name_around_a_given_map_or_its_own():
    x, y = blobs(90)
    model = _model()
    map_posterior = approximate("map", model, (x, y), **FIT)
    given = approximate("laplace", model, (x, y), map_posterior=map_posterior, subset="last_layer",
                        structure="kron")
    direct = fit_laplace(map_posterior, (x, y), subset="last_layer", structure="kron")
    assert given.method == "laplace"
    torch.testing.assert_close(given.point_estimate()["head.weight"], direct.point_estimate()["head.weight"])
    own = approximate("laplace", _model(), (x, y), subset="all", structure="diag", **FIT)
    torch.testing.assert_close(own.point_estimate()["head.weight"], map_posterior.point_estimate()["head.weight"])
    with pytest.raises(TypeError, match="map_posterior was given"):
        approximate("laplace", model, (x, y), map_posterior=map_posterior, epochs=3)


@pytest.mark.parametrize(
    "call, error, message",
    [
        (lambda m, d: approximate("hmc", m, d), ValueError, r"unknown inference method 'hmc'.*'mean_field'"),
        (lambda m, d: approximate("mean_field", m, d, p=0.5), TypeError, r"takes no option \['p'\].*init_scale"),
        (lambda m, d: approximate("nuts", m, [d]), TypeError, "tuple"),
        (lambda m, d: Posterior(m, "a guide"), TypeError, "Approximation"),
    ],
)
def test_bad_method_calls(call, error, message):
    with pytest.raises(error, match=message):
        call(_model(), blobs(90))


def test_a_new_method_plugs_in_by_registering_it():
    @register_method("map_twice", "a MAP trained in two halves (a test method)", passes_to=fit)
    def _map_twice(model, data, *, epochs=2, **fit_options):
        guide = MAPGuide(model)
        fit(model, guide, data, epochs=epochs // 2, **fit_options)
        return fit(model, guide, data, epochs=epochs - epochs // 2, **fit_options)

    try:
        x, y = blobs(90)
        posterior = approximate("map_twice", _model(), (x, y), epochs=4, lr=0.02, progress=False)
        assert posterior.method == "map_twice" and posterior.is_point_mass
        assert posterior.predict(x[:5], num_samples=2).probs.shape == (2, 5, 3)
    finally:
        METHODS.pop("map_twice")


def test_a_loaded_dropout_guide_can_draw_weights_at_once(tmp_path):
    x, y = blobs(90)
    path = tmp_path / "dropout.pt"
    model = _model()
    approximate("dropout", model, (x, y), checkpoint=path, **FIT)
    fresh = _model()
    loaded = load_checkpoint(path, fresh, DropoutGuide(fresh, p=None))
    draws = loaded.sample(3)  # needs the masks mapped to the weights: set up from the saved input shape
    assert draws["head.weight"].shape == (3, 3, 8)


def test_mean_field_init_scale_reaches_the_guide():
    x, y = blobs(90)
    posterior = approximate("mean_field", _model(), (x, y), init_scale=0.2, epochs=0, progress=False)
    draws = posterior.sample(3000)["head.weight"]
    assert float(draws.std(0).mean()) == pytest.approx(0.2, rel=0.05)
