"""Issue 29, inference: every bad input to a public entry point of bayesdl.inference gets one clear
check at the boundary (a ValueError or TypeError saying what was wrong and how to fix it), nothing
accepted fails later inside torch or Pyro, and valid inputs give what they gave."""

import warnings

import pyro
import pyro.distributions as dist
import pytest
import torch
import torch.nn as nn
from pyro.infer.autoguide import AutoDelta, AutoNormal
from toy_data import blobs

import bayesdl.inference.methods as methods_module
import bayesdl.inference.posterior as posterior_module
from bayesdl.inference import (
    Ensemble,
    MAPGuide,
    MeanFieldGuide,
    Posterior,
    approximate,
    fit,
    fit_ensemble,
    fit_laplace,
    fit_swag,
    load_checkpoint,
    nuts,
    to_inference_data,
)
from bayesdl.models import BNN, MLP

FIT = {"epochs": 2, "lr": 0.02, "batch_size": 30, "progress": False}


def _model(seed=0, hidden=4):
    torch.manual_seed(seed)
    return BNN(MLP(2, hidden, 3), prior_scale=1.0)


@pytest.fixture(scope="module")
def data():
    return blobs(60)


@pytest.fixture(scope="module")
def map_posterior(data):
    model = _model()
    return fit(model, MAPGuide(model), data, seed=0, **FIT)


@pytest.fixture(scope="module")
def mean_field(data):
    model = _model()
    return fit(model, MeanFieldGuide(model), data, seed=0, **FIT)


def _no_training(monkeypatch):
    """Make every MAP training of approximate() fail loudly: a check that runs first wins."""
    def trained(*args, **kwargs):
        raise AssertionError("the MAP was trained before the options were checked")

    monkeypatch.setattr(methods_module, "fit", trained)


# ------------------------------------------------------------------ 1. NUTS with a few draws
@pytest.mark.parametrize("num_samples", [1, 2, 3])
def test_nuts_keeps_one_to_three_draws_of_a_bnn(num_samples):
    x, y = blobs(20)
    posterior = nuts(_model(hidden=2), x, y, num_samples=num_samples, warmup_steps=5, num_chains=2,
                     progress=False)
    draws = posterior.draws()
    assert draws.num_chains == 2 and draws.num_draws == num_samples
    assert draws.diverging.shape == (2, num_samples)
    assert posterior.predict(x[:3], num_samples=2).probs.shape == (2, 3, 3)


def test_nuts_keeps_two_draws_of_any_pyro_model():
    def model(y):
        mu = pyro.sample("mu", dist.Normal(0.0, 1.0))
        with pyro.plate("data", len(y)):
            pyro.sample("obs", dist.Normal(mu, 1.0), obs=y)

    posterior = nuts(model, torch.randn(10), num_samples=2, warmup_steps=5, num_chains=1, progress=False)
    assert posterior.draws().samples["mu"].shape == (1, 2)


def test_nuts_divergences_are_the_same_as_before():
    """The divergence flags no longer come from Pyro's diagnostics() (which needs 4 draws): the same
    flags, read from the same per-chain record."""
    x, y = blobs(20)
    posterior = nuts(_model(hidden=2), x, y, num_samples=6, warmup_steps=3, num_chains=1, progress=False,
                     target_accept_prob=0.99, max_tree_depth=2)
    assert posterior.draws().diverging.dtype == torch.bool


# ------------------------------------------------------------------ 2. how much a prediction may allocate
def test_a_point_mass_refuses_a_billion_samples_before_allocating(map_posterior, data):
    x, _ = data
    with pytest.raises(ValueError, match=r"GiB.*fewer samples.*predictive_probs"):
        map_posterior.predict(x[:2], num_samples=10**9)
    with pytest.raises(ValueError, match="GiB"):
        map_posterior.predictive_outputs(x[:2], num_samples=10**9)


@pytest.mark.parametrize("call", [
    lambda p, x: p.predict(x, num_samples=10**12),
    lambda p, x: p.predictive_outputs(x, num_samples=10**12),
    lambda p, x: p.predictive_probs(x, num_samples=10**12),
    lambda p, x: p.sample(10**12),
    lambda p, x: p.draws(10**12),
    lambda p, x: p.log_likelihood(x, torch.zeros(len(x), dtype=torch.long), num_samples=10**12),
])
def test_a_posterior_refuses_a_result_beyond_the_memory_limit(mean_field, data, call):
    with pytest.raises(ValueError, match=r"would need about .* (GiB|TiB|PiB).*MAX_RESULT_BYTES"):
        call(mean_field, data[0])


def test_the_limit_is_a_module_constant_one_can_change(mean_field, data, monkeypatch):
    x, _ = data
    expected = mean_field.predict(x[:5], num_samples=50)  # 50 x 5 x 3 float32: 3 kB
    monkeypatch.setattr(posterior_module, "MAX_RESULT_BYTES", 1000)
    with pytest.raises(ValueError, match=r"MAX_RESULT_BYTES"):
        mean_field.predict(x[:5], num_samples=50)
    with pytest.raises(ValueError, match=r"batch_size"):
        mean_field.predictive_probs(x[:5], num_samples=200)
    monkeypatch.setattr(posterior_module, "MAX_RESULT_BYTES", 10**6)
    assert mean_field.predict(x[:5], num_samples=50).probs.shape == expected.probs.shape


def test_predictive_probs_is_bounded_per_batch_not_per_input(mean_field, data, monkeypatch):
    """It averages the samples batch by batch: what it holds is samples x batch, whatever N."""
    x, _ = data
    monkeypatch.setattr(posterior_module, "MAX_RESULT_BYTES", 20 * 10 * 3 * 4 * 2)
    assert mean_field.predictive_probs(x, num_samples=20, batch_size=10).shape == (len(x), 3)
    with pytest.raises(ValueError, match="batch_size"):
        mean_field.predictive_probs(x, num_samples=20, batch_size=60)


def test_mcmc_draws_ignore_the_count_but_sample_is_bounded():
    x, y = blobs(20)
    posterior = nuts(_model(hidden=2), x, y, num_samples=4, warmup_steps=3, num_chains=1, progress=False)
    assert posterior.draws(10**12).num_draws == 4  # the draws it holds, whatever is asked
    with pytest.raises(ValueError, match="MAX_RESULT_BYTES"):
        posterior.sample(10**12)


@pytest.mark.parametrize("bad, error", [(True, TypeError), (0, ValueError), (-3, ValueError),
                                        (2.0, TypeError), ("10", TypeError)])
def test_num_samples_is_an_integer_of_at_least_one(mean_field, data, bad, error):
    x, _ = data
    for call in (lambda: mean_field.predict(x, num_samples=bad),
                 lambda: mean_field.predictive_probs(x, num_samples=bad),
                 lambda: mean_field.sample(bad), lambda: mean_field.draws(bad)):
        with pytest.raises(error, match="num_samples"):
            call()


# ------------------------------------------------------------------ 3. ensembles
def test_fit_member_must_be_a_function(data):
    with pytest.raises(TypeError, match=r"fit_member must be a function .*\(method, seed\) -> Posterior"):
        fit_ensemble(_model(), data, "map", 2, fit_member="map")
    with pytest.raises(TypeError, match="fit_member must be a function"):
        approximate("deep_ensemble", _model(), data, members=2, fit_member=3)


def test_fit_member_must_return_a_posterior(data):
    with pytest.raises(TypeError, match=r"fit_member\('map', 0\) returned a dict, not a Posterior"):
        fit_ensemble(_model(), data, "map", 2, fit_member=lambda method, seed: {"seed": seed})
    with pytest.raises(TypeError, match=r"returned a NoneType, not a Posterior"):
        approximate("ensemble", _model(), data, members=2, fit_member=lambda method, seed: None)


def test_member_options_must_be_a_mapping(data):
    with pytest.raises(TypeError, match=r"member_options must be a dict of the members' options.*list"):
        approximate("ensemble", _model(), data, members=2, member_options=[("epochs", 1)])


@pytest.mark.parametrize("member", ["ensemble", "deep_ensemble", "multiswag"])
def test_an_ensemble_of_ensembles_is_refused(data, member):
    with pytest.raises(ValueError, match=rf"{member!r} is itself an ensemble.*members=K \* L"):
        approximate("ensemble", _model(), data, member=member, members=2)
    with pytest.raises(ValueError, match="is itself an ensemble"):
        fit_ensemble(_model(), data, member, 2)


def test_seeds_must_be_a_sequence_and_the_method_a_name(data):
    with pytest.raises(TypeError, match=r"seeds must be a list of 2 integers"):
        fit_ensemble(_model(), data, "map", 2, seeds=3)
    with pytest.raises(TypeError, match=r"method must be the name of a registered method"):
        fit_ensemble(_model(), data, ["map"], 2)


def test_a_fit_member_ensemble_is_unchanged(data):
    members = {seed: approximate("map", _model(seed), data, seed=seed, **FIT) for seed in (0, 1)}
    ensemble = fit_ensemble(None, None, "map", 2, fit_member=lambda method, seed: members[seed])
    assert isinstance(ensemble._approximation, Ensemble) and ensemble._approximation.size == 2


# ------------------------------------------------------------------ 4. Laplace's prior_scale
def test_laplace_refuses_a_prior_scale_for_a_bnn_before_training(data, monkeypatch):
    _no_training(monkeypatch)
    with pytest.raises(TypeError, match="prior_scale is for a plain network; a BNN model has its prior"):
        approximate("laplace", _model(), data, prior_scale=0.0, epochs=1)
    with pytest.raises(TypeError, match="prior_scale is for a plain network"):
        approximate("laplace", _model(), data, prior_scale=2.0)


def test_fit_laplace_refuses_a_prior_scale_for_a_posterior(map_posterior, data):
    with pytest.raises(TypeError, match="prior_scale is for a plain network"):
        fit_laplace(map_posterior, data, prior_scale=2.0)


@pytest.mark.parametrize("bad, error", [(0.0, ValueError), (-1.0, ValueError), (float("nan"), ValueError),
                                        ("1", TypeError)])
def test_laplace_of_a_plain_network_needs_a_positive_prior_scale(data, bad, error):
    net = nn.Sequential(nn.Linear(2, 4), nn.Tanh(), nn.Linear(4, 3))
    with pytest.raises(error, match="prior_scale"):
        approximate("laplace", net, data, likelihood="categorical", prior_scale=bad)


def test_laplace_checks_its_own_options_before_training_the_map(data, monkeypatch):
    _no_training(monkeypatch)
    with pytest.raises(ValueError, match=r"structure must be one of"):
        approximate("laplace", _model(), data, structure="kronn", epochs=1)
    with pytest.raises(ValueError, match=r"hessian='exact' is not available for subset='all', structure='kron'"):
        approximate("laplace", _model(), data, structure="kron", hessian="exact", epochs=1)
    with pytest.raises(ValueError, match=r"curvature_batch_size must be >= 1"):
        approximate("laplace", _model(), data, curvature_batch_size=0, epochs=1)
    with pytest.raises(TypeError, match=r"optimize_prior must be True or False"):
        approximate("laplace", _model(), data, optimize_prior="yes", epochs=1)


def test_a_plain_network_keeps_its_default_prior_scale(data):
    net = nn.Sequential(nn.Linear(2, 4), nn.Tanh(), nn.Linear(4, 3))
    a = approximate("laplace", net, data, likelihood="categorical", structure="diag", optimize_prior=False)
    b = approximate("laplace", net, data, likelihood="categorical", structure="diag", optimize_prior=False,
                    prior_scale=1.0)
    assert a._approximation.prior_precision == b._approximation.prior_precision == 1.0


# ------------------------------------------------------------------ 5. SWAG's options
@pytest.mark.parametrize("option, value, error, message", [
    ("swag_momentum", 1.5, ValueError, r"swag_momentum must lie in \[0, 1\), got 1.5"),
    ("swag_momentum", 1.0, ValueError, r"swag_momentum must lie in \[0, 1\)"),
    ("swag_momentum", -0.1, ValueError, r"swag_momentum must lie in \[0, 1\)"),
    ("swag_lr", 0.0, ValueError, "swag_lr must be > 0"),
    ("swag_lr", -1.0, ValueError, "swag_lr must be > 0"),
    ("rank", -1, ValueError, "rank must be >= 0"),
    ("rank", 2.5, TypeError, "rank must be an integer"),
    ("collect_every", 0, ValueError, "collect_every must be >= 1"),
    ("burn_in", -1, ValueError, "burn_in must be >= 0"),
    ("swag_epochs", 0, ValueError, "swag_epochs must be >= 1"),
    ("swag_epochs", True, TypeError, "swag_epochs must be an integer"),
])
def test_swag_options_are_checked_before_the_map_is_trained(data, monkeypatch, option, value, error, message):
    _no_training(monkeypatch)
    with pytest.raises(error, match=message):
        approximate("swag", _model(), data, epochs=1, **{option: value})


def test_multiswag_checks_the_swag_options_before_training(data, monkeypatch):
    _no_training(monkeypatch)
    with pytest.raises(ValueError, match=r"swag_momentum must lie in \[0, 1\)"):
        approximate("multiswag", _model(), data, members=2, swag_momentum=1.5, epochs=1)


@pytest.mark.parametrize("option, value, message", [
    ("momentum", 1.5, r"momentum must lie in \[0, 1\)"),
    ("epochs", 0, "epochs must be >= 1"),
    ("rank", -2, "rank must be >= 0"),
    ("burn_in", -1, "burn_in must be >= 0"),
    ("collect_every", 0, "collect_every must be >= 1"),
])
def test_fit_swag_checks_its_options(map_posterior, data, option, value, message):
    with pytest.raises(ValueError, match=message):
        fit_swag(map_posterior, data, **{option: value})


def test_swag_refuses_a_phase_that_cannot_collect_what_it_needs(map_posterior, data):
    # 60 examples in batches of 30: 2 steps an epoch
    with pytest.raises(ValueError, match=r"collects at most 0 iterate.*burn_in"):
        fit_swag(map_posterior, data, epochs=1, batch_size=30, burn_in=5, rank=0, progress=False)
    with pytest.raises(ValueError, match=r"rank=5 needs at least 2 collected iterates.*at most 1"):
        fit_swag(map_posterior, data, epochs=1, batch_size=30, rank=5, progress=False)
    # rank 0 (SWAG-Diagonal) with one collection stays valid
    posterior = fit_swag(map_posterior, data, epochs=1, batch_size=30, rank=0, progress=False)
    assert posterior.sample(3)["head.weight"].shape == (3, 3, 4)


# ------------------------------------------------------------------ 6. ArviZ data
def test_to_inference_data_needs_x_and_y_together(map_posterior, data):
    x, y = data
    with pytest.raises(ValueError, match=r"x and y together.*y is missing"):
        to_inference_data(map_posterior, x, None, progress=False)
    with pytest.raises(ValueError, match=r"x and y together.*x is missing"):
        to_inference_data(map_posterior, None, y, progress=False)
    assert "log_likelihood" in to_inference_data(map_posterior, x, y, progress=False).groups()
    assert "log_likelihood" not in to_inference_data(map_posterior, progress=False).groups()


@pytest.mark.parametrize("option, value, error", [
    ("max_weights", 0, ValueError), ("max_weights", -5, ValueError), ("max_weights", 2.5, TypeError),
    ("num_samples", 0, ValueError), ("seed", -1, ValueError), ("var_names", [], ValueError),
    ("var_names", 3, TypeError), ("progress", "no", TypeError),
])
def test_to_inference_data_checks_its_options(mean_field, option, value, error):
    with pytest.raises(error, match=option):
        to_inference_data(mean_field, **{"progress": False, option: value})


def test_to_inference_data_takes_one_site_name(mean_field):
    idata = to_inference_data(mean_field, num_samples=5, var_names="head.bias", progress=False)
    assert list(idata.posterior.data_vars) == ["head.bias"]


def test_to_inference_data_refuses_predictive_groups_beyond_the_limit(mean_field, data, monkeypatch):
    x, y = data
    monkeypatch.setattr(posterior_module, "MAX_RESULT_BYTES", 1000)
    with pytest.raises(ValueError, match="MAX_RESULT_BYTES"):
        to_inference_data(mean_field, x, y, num_samples=50, progress=False)


# ------------------------------------------------------------------ 7. fit with zero epochs
def test_fit_with_zero_epochs_warns_that_nothing_was_trained(data):
    model = _model()
    with pytest.warns(UserWarning, match=r"epochs=0: nothing was trained"):
        posterior = fit(model, MAPGuide(model), data, epochs=0, progress=False)
    torch.testing.assert_close(model.flatten(posterior.point_estimate()), model.initial_values())


def test_loading_a_finished_checkpoint_with_resume_stays_silent(data, tmp_path):
    path = tmp_path / "map.pt"
    model = _model()
    trained = fit(model, MAPGuide(model), data, checkpoint=path, seed=0, **FIT)
    again = _model()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        loaded = fit(again, MAPGuide(again), data, checkpoint=path, resume=True, seed=0, **FIT)
    torch.testing.assert_close(loaded.point_estimate(), trained.point_estimate())
    assert len(loaded.history.epoch_elbo) == FIT["epochs"]


# ------------------------------------------------------------------ 8. Laplace around a guide never set up
@pytest.mark.parametrize("autoguide", [AutoDelta, AutoNormal])
def test_laplace_refuses_an_autoguide_that_was_never_set_up(data, autoguide):
    model = _model()
    posterior = Posterior(model, autoguide(model.model))
    with pytest.raises(ValueError, match=r"has not been set up.*first call.*fit it first"):
        fit_laplace(posterior, data)
    with pytest.raises(ValueError, match=r"has not been set up"):
        approximate("laplace", model, data, map_posterior=posterior)


def test_an_autoguide_never_set_up_is_refused_by_every_call(data):
    model = _model()
    posterior = Posterior(model, AutoNormal(model.model))
    for call in (lambda: posterior.sample(2), lambda: posterior.point_estimate(),
                 lambda: posterior.predict(data[0], num_samples=2), lambda: posterior.draws(2)):
        with pytest.raises(ValueError, match="has not been set up"):
            call()


def test_an_autoguide_set_up_by_training_is_accepted(data):
    model = _model()
    guide = AutoDelta(model.model)
    posterior = fit(model, guide, data, elbo=pyro.infer.Trace_ELBO(), seed=0, **FIT)
    assert posterior.sample(2)["head.weight"].shape == (2, 3, 4)
    assert fit_laplace(posterior, data, structure="diag").sample(2)["head.weight"].shape == (2, 3, 4)


# ------------------------------------------------------------------ sweep: other entry points, as users mistype
def test_laplace_around_a_map_of_another_network_is_refused(map_posterior, data):
    with pytest.raises(ValueError, match=r"map_posterior is the MAP of another network"):
        approximate("laplace", _model(hidden=5), data, map_posterior=map_posterior)
    with pytest.raises(ValueError, match=r"map_posterior is the MAP of another network"):
        approximate("swag", _model(hidden=5), data, map_posterior=map_posterior)


@pytest.mark.parametrize("bad, error", [("map", TypeError), ({"weights": 1}, TypeError)])
def test_map_posterior_must_be_a_posterior(data, bad, error, monkeypatch):
    _no_training(monkeypatch)
    with pytest.raises(error, match="map_posterior must be"):
        approximate("laplace", _model(), data, map_posterior=bad)
    with pytest.raises(error, match="map_posterior must be"):
        approximate("swag", _model(), data, map_posterior=bad)


def test_nuts_refuses_bad_data_and_threads(data):
    x, y = data
    with pytest.raises(ValueError, match="x is empty"):
        nuts(_model(), x[:0], y[:0], num_samples=2, warmup_steps=2, num_chains=1, progress=False)
    bad = x.clone()
    bad[0, 0] = float("nan")
    with pytest.raises(ValueError, match="non-finite"):
        nuts(_model(), bad, y, num_samples=2, warmup_steps=2, num_chains=1, progress=False)
    with pytest.raises(ValueError, match="threads must be >= 1"):
        nuts(_model(), x, y, num_samples=2, warmup_steps=2, num_chains=1, progress=False, threads=0)
    with pytest.raises(TypeError, match="progress must be True or False"):
        nuts(_model(), x, y, num_samples=2, warmup_steps=2, num_chains=1, progress="no")


def test_nuts_of_a_bnn_needs_its_data(data):
    with pytest.raises(TypeError, match=r"nuts of a BNN samples p\(weights \| x, y\): pass nuts\(model, x, y"):
        nuts(_model(), num_samples=2, warmup_steps=2, num_chains=1, progress=False)


def test_posterior_batch_size_and_progress_are_checked(mean_field, data):
    x, _ = data
    with pytest.raises(ValueError, match="batch_size must be >= 1"):
        mean_field.predict(x, num_samples=2, batch_size=0)
    with pytest.raises(TypeError, match="progress must be True or False"):
        mean_field.predict(x, num_samples=2, progress="yes")
    with pytest.raises(ValueError, match="batch_size must be >= 1"):
        mean_field.point_outputs(x, batch_size=0)


def test_outputs_at_checks_its_weights(mean_field, data):
    x, _ = data
    with pytest.raises(TypeError, match=r"weights must be a \{site: \[S, \*shape\]\} dict"):
        mean_field.outputs_at(x, torch.zeros(3))
    with pytest.raises(ValueError, match=r"weights must hold every site of the model.*missing"):
        mean_field.outputs_at(x, {"head.weight": torch.zeros(2, 3, 4)})


def test_log_likelihood_checks_its_draws(mean_field, data):
    x, y = data
    with pytest.raises(TypeError, match=r"draws must be a Draws"):
        mean_field.log_likelihood(x, y, draws={"head.weight": torch.zeros(1, 2, 3, 4)})


def test_ensemble_members_must_be_a_sequence(map_posterior):
    with pytest.raises(TypeError, match=r"members must be a list of Posteriors"):
        Ensemble(map_posterior)


def test_fit_from_a_resumed_checkpoint_loads_like_load_checkpoint(data, tmp_path):
    path = tmp_path / "mf.pt"
    model = _model()
    fit(model, MeanFieldGuide(model), data, checkpoint=path, seed=0, **FIT)
    fresh = _model()
    loaded = load_checkpoint(path, fresh, MeanFieldGuide(fresh))
    assert loaded.sample(2)["head.weight"].shape == (2, 3, 4)


def test_posterior_checks_its_method_name_and_network(map_posterior):
    guide = map_posterior._approximation
    with pytest.raises(TypeError, match="method must be the method's name"):
        Posterior(map_posterior.model, guide, method=3)
    with pytest.raises(ValueError, match="built for another network than model"):
        Posterior(_model(hidden=5), guide)
    assert Posterior(_model(), guide, method="map").method == "map"  # a copy of the same network: fine


def test_draws_of_another_network_are_refused(mean_field, data):
    x, y = data
    wider = _model(hidden=5)
    other = fit(wider, MeanFieldGuide(wider), data, seed=0, **FIT)
    with pytest.raises(ValueError, match=r"weights\['body.0.weight'\] must have shape \[S, 4, 2\]"):
        mean_field.log_likelihood(x, y, draws=other.draws(3))


def test_laplace_bounds_are_a_pair_of_positive_numbers(map_posterior, data):
    from bayesdl.inference import laplace

    la = laplace(map_posterior, structure="diag").fit(data)
    for bad in (5, (1e-3, 1.0, 2.0), "ab"):
        with pytest.raises(TypeError, match=r"bounds must be a pair \(low, high\)"):
            la.optimize_prior_precision(bounds=bad)
    with pytest.raises(ValueError, match="bounds must be finite"):
        la.optimize_prior_precision(bounds=(float("nan"), 1.0))
    with pytest.raises(ValueError, match="0 < low < high"):
        la.optimize_prior_precision(bounds=(1.0, 0.5))
    assert la.optimize_prior_precision(bounds=[1e-2, 1e2]).prior_precision > 0


def test_laplace_refuses_a_map_with_non_finite_weights(map_posterior, data):
    model = _model()
    guide = MAPGuide(model)
    with torch.no_grad():
        guide.weights[0] = float("nan")
    with pytest.raises(ValueError, match="MAP weights hold NaN or Inf"):
        fit_laplace(Posterior(model, guide), data)


def test_nuts_refuses_a_model_that_is_no_function_and_bad_starting_points(map_posterior, data):
    x, y = data
    with pytest.raises(TypeError, match="model must be a Pyro model"):
        nuts(None, x, y, num_samples=2, warmup_steps=2, num_chains=1, progress=False)
    start = {k: "a" for k in map_posterior.point_estimate()}
    with pytest.raises(ValueError, match="each starting point must be a"):
        nuts(map_posterior.model, x, y, num_samples=2, warmup_steps=2, num_chains=1, progress=False, initial=start)


def test_swag_guide_checks_its_starting_weights():
    from bayesdl.inference import SWAGGuide

    model = _model()
    with pytest.raises(ValueError, match=r"init must hold every site.*missing"):
        SWAGGuide(model, init={"head.bias": torch.zeros(3)})
    with pytest.raises(ValueError, match="init holds NaN or Inf"):
        SWAGGuide(model, init=torch.full((model.num_latent,), float("nan")))


@pytest.mark.parametrize("seed, error", [(-1, ValueError), (1.5, TypeError), (2**70, ValueError)])
def test_reinitialised_checks_its_seed(seed, error):
    from bayesdl.inference import reinitialised

    with pytest.raises(error, match="seed"):
        reinitialised(_model(), seed)
