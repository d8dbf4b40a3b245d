"""FitConfig: fit's loop options as one value -- the same run as the flat keywords, checked at
construction, and ``map_training`` for the methods fitted around a MAP."""

import dataclasses
import inspect

import pyro
import pytest
import torch
import torch.nn as nn
from toy_data import blobs

from bayesdl.inference import (
    METHODS,
    FitConfig,
    MAPGuide,
    MeanFieldGuide,
    TrainingHistory,
    approximate,
    exponential_decay,
    fit,
    fit_swag,
)
from bayesdl.inference.checkpoints import state_digest
from bayesdl.models import BNN, MLP, Gaussian

FLAT = {"epochs": 2, "lr": 0.02, "batch_size": 16, "seed": 0, "progress": False}


def _bnn(seed=0):
    torch.manual_seed(seed)  # the network's initial weights
    return BNN(MLP(2, 8, 3), prior_scale=1.0)


def _regression_bnn():
    torch.manual_seed(0)
    return BNN(nn.Linear(3, 1, bias=False), prior_scale=1.0, likelihood=Gaussian(scale=0.5))


def _regression(n=60):
    g = torch.Generator().manual_seed(0)
    x = torch.randn(n, 3, generator=g)
    return x, x @ torch.tensor([[1.0], [-2.0], [0.5]]) + 0.5 * torch.randn(n, 1, generator=g)


def _history(posterior):
    return {k: v for k, v in posterior.history.as_dict().items() if k != "seconds"}


def _checkpoint(path):
    state = torch.load(path, weights_only=True)
    state.pop("sha256")
    state["history"]["seconds"] = 0.0  # the one entry that is wall-clock time
    return state_digest(state)


def _assert_same_state(a: nn.Module, b: nn.Module):
    sa, sb = a.state_dict(), b.state_dict()
    assert sa.keys() == sb.keys()
    for key in sa:
        assert torch.equal(sa[key], sb[key]), key


# ------------------------------------------------------------------ fit


def test_fit_with_a_config_is_the_run_with_flat_keywords(tmp_path):
    x, y = blobs(90)
    runs = []
    for style in ("flat", "config", "positional"):
        model = _bnn()
        guide = MeanFieldGuide(model)
        calls = []
        options = dict(FLAT, scheduler=exponential_decay(0.02, 0.002, 2),
                       callbacks=[lambda epoch, h, calls=calls: calls.append((epoch, len(h.elbo)))],
                       checkpoint=tmp_path / f"{style}.pt")
        if style == "flat":
            posterior = fit(model, guide, (x, y), **options)
        elif style == "config":
            posterior = fit(model, guide, (x, y), config=FitConfig(**options))
        else:
            posterior = fit(model, guide, (x, y), FitConfig(**options))
        runs.append((guide, posterior, calls, _checkpoint(tmp_path / f"{style}.pt"), torch.get_rng_state()))
    (guide, posterior, calls, digest, rng), *others = runs
    assert len(posterior.history.epoch_elbo) == 2 and calls == [(0, 6), (1, 12)]
    for other_guide, other, other_calls, other_digest, other_rng in others:
        _assert_same_state(other_guide, guide)
        assert _history(other) == _history(posterior)
        assert other_calls == calls and other_digest == digest
        assert torch.equal(other_rng, rng)  # the same random draws, in the same order


def test_a_config_is_frozen_and_replace_checks_the_change():
    config = FitConfig(epochs=3, seed=1)
    assert config.replace(epochs=5) == FitConfig(epochs=5, seed=1)
    assert dataclasses.replace(config, lr=0.1).lr == 0.1 and config.epochs == 3
    with pytest.raises(dataclasses.FrozenInstanceError):
        config.epochs = 4
    with pytest.raises(ValueError, match="epochs must be >= 0"):
        config.replace(epochs=-1)
    assert FitConfig(callbacks=[print]).callbacks == (print,)  # kept as a tuple


def test_the_defaults_and_signature_of_fit_are_the_fields_of_fit_config():
    signature = inspect.signature(fit)
    assert list(signature.parameters)[:4] == ["model", "guide", "data", "config"]
    for f in dataclasses.fields(FitConfig):
        parameter = signature.parameters[f.name]
        assert parameter.kind is parameter.KEYWORD_ONLY and parameter.default == f.default
    assert signature.parameters["fabric"].default is None
    assert set(signature.parameters) == {"model", "guide", "data", "config", "fabric",
                                         *FitConfig.__dataclass_fields__}
    defaults = FitConfig()
    assert (defaults.epochs, defaults.lr, defaults.batch_size, defaults.seed, defaults.progress) == (
        10, 1e-3, 128, None, True)


@pytest.mark.parametrize(
    "options, error, message",
    [
        ({"epochs": -1}, ValueError, "epochs must be >= 0"),
        ({"epochs": 2.5}, TypeError, "epochs must be an integer"),
        ({"lr": 0}, ValueError, "lr must be > 0"),
        ({"lr": "fast"}, TypeError, "lr must be a real number"),
        ({"batch_size": 0}, ValueError, "batch_size must be >= 1"),
        ({"seed": -1}, ValueError, "seed must be >= 0"),
        ({"dataset_size": 0}, ValueError, "dataset_size must be >= 1"),
        ({"kl_weight": -1}, ValueError, "kl_weight must be >= 0"),
        ({"num_particles": 0}, ValueError, "num_particles must be >= 1"),
        ({"device": "tpu"}, ValueError, "device 'tpu' is not available"),
        ({"device": 3}, TypeError, "device must be a string"),
        ({"optimizer": torch.optim.SGD([nn.Parameter(torch.zeros(1))], lr=0.1)}, TypeError,
         "optimizer must be a function params -> torch optimizer"),
        ({"scheduler": 0.99}, TypeError, "scheduler must be a function"),
        ({"elbo": pyro.infer.Trace_ELBO}, TypeError, r"elbo must be a Pyro ELBO instance.*Trace_ELBO\(\)"),
        ({"callbacks": print}, TypeError, r"wrap a single one in a list"),
        ({"callbacks": [print, 3]}, TypeError, "callbacks must be functions"),
        ({"checkpoint": 3}, TypeError, "checkpoint must be a file path"),
    ],
)
def test_bad_values_fail_at_construction_as_fit_fails_on_them(options, error, message):
    with pytest.raises(error, match=message):
        FitConfig(**options)
    x, y = blobs(20)
    model = _bnn()
    with pytest.raises(error, match=message):  # the flat keywords: the same check, the same error
        fit(model, MAPGuide(model), (x, y), **options)


def test_a_config_and_flat_keywords_together_are_refused():
    x, y = blobs(20)
    model = _bnn()
    guide = MAPGuide(model)
    with pytest.raises(TypeError, match=r"both config= and the flat fit options \['epochs', 'seed'\].*"
                                        r"config=config\.replace\(epochs=\.\.\., seed=\.\.\.\)"):
        fit(model, guide, (x, y), FitConfig(epochs=1), epochs=2, seed=0)
    with pytest.raises(TypeError, match=r"config must be a FitConfig \(build one: config=FitConfig"):
        fit(model, guide, (x, y), config={"epochs": 1})
    with pytest.raises(TypeError, match="config must be a FitConfig, got int"):
        fit(model, guide, (x, y), 5)
    with pytest.raises(TypeError, match="unexpected keyword argument 'epoch'"):
        fit(model, guide, (x, y), epoch=2)


def test_training_history_closes_an_epoch_by_its_public_name():
    history = TrainingHistory(elbo=[1.0, 3.0, 5.0], log_likelihood=[2.0, 4.0, 6.0], kl=[1.0, 1.0, 1.0])
    history.end_epoch(1)
    assert (history.epoch_elbo, history.epoch_log_likelihood, history.epoch_kl) == ([4.0], [5.0], [1.0])


# ------------------------------------------------------------------ the factories


def test_the_methods_take_config_and_map_training_where_they_should():
    for name in ("map", "mean_field", "dropout", "deep_ensemble"):
        assert "config" in METHODS[name].options and "map_training" not in METHODS[name].options
    for name in ("laplace", "swag", "multiswag"):
        assert "map_training" in METHODS[name].options
    x, y = blobs(20)
    with pytest.raises(TypeError, match=r"takes no option \['map_training'\].*'config'"):
        approximate("mean_field", _bnn(), (x, y), map_training=FitConfig())
    with pytest.raises(TypeError, match=r"takes no option \['training'\].*'map_training'"):
        approximate("laplace", _bnn(), (x, y), training=FitConfig())


def test_the_svi_methods_with_a_config_are_the_flat_calls():
    x, y = blobs(60)
    flat = approximate("dropout", _bnn(), (x, y), p=0.1, **FLAT)
    given = approximate("dropout", _bnn(), (x, y), p=0.1, config=FitConfig(**FLAT))
    _assert_same_state(given._approximation, flat._approximation)
    assert _history(given) == _history(flat)


def test_laplace_with_map_training_is_laplace_with_flat_options():
    x, y = _regression()
    options = {"epochs": 3, "lr": 0.05, "batch_size": 20, "seed": 0, "progress": False}
    runs = []
    for call in ({**options}, {"map_training": FitConfig(**options)}):
        posterior = approximate("laplace", _regression_bnn(), (x, y), optimize_noise=True, **call)
        torch.manual_seed(1)
        runs.append((posterior.point_estimate(), posterior.sample(4)))
    (point, draws), (point_b, draws_b) = runs
    for key in point:
        assert torch.equal(point[key], point_b[key]) and torch.equal(draws[key], draws_b[key])


def test_swag_with_map_training_is_swag_with_flat_options():
    """The run options of map_training (seed, batch_size, ...) are the SWAG phase's too, as flat."""
    x, y = _regression()
    options = {"epochs": 2, "lr": 0.05, "batch_size": 20, "seed": 3, "progress": False}
    swag = {"swag_epochs": 3, "rank": 2, "collect_every": 1}
    flat = approximate("swag", _regression_bnn(), (x, y), **options, **swag)
    given = approximate("swag", _regression_bnn(), (x, y), map_training=FitConfig(**options), **swag)
    _assert_same_state(given._approximation, flat._approximation)
    assert _history(given) == _history(flat)
    flat = approximate("multiswag", _regression_bnn(), (x, y), members=2, **options, **swag)
    given = approximate("multiswag", _regression_bnn(), (x, y), members=2, map_training=FitConfig(**options),
                        **swag)
    for a, b in zip(flat._approximation.members, given._approximation.members):
        _assert_same_state(b._approximation, a._approximation)


def test_a_deep_ensemble_with_a_config_is_the_flat_call():
    x, y = blobs(60)
    flat = approximate("deep_ensemble", _bnn(), (x, y), members=2, **FLAT)
    given = approximate("deep_ensemble", _bnn(), (x, y), members=2, config=FitConfig(**FLAT))
    for a, b in zip(flat._approximation.members, given._approximation.members):
        _assert_same_state(b._approximation, a._approximation)


def test_conflicting_ways_to_train_the_map_are_refused_saying_what_to_pass():
    x, y = _regression()
    model = _regression_bnn()
    map_posterior = fit(model, MAPGuide(model), (x, y), epochs=1, progress=False)
    config = FitConfig(epochs=1, progress=False)
    for method in ("laplace", "swag"):
        with pytest.raises(TypeError, match=rf"{method} got both map_training= and the flat fit options "
                                            r"\['epochs'\].*map_training\.replace\(epochs=\.\.\.\)"):
            approximate(method, _regression_bnn(), (x, y), map_training=config, epochs=2)
        with pytest.raises(TypeError, match=r"map_training says how to train the MAP, but map_posterior was "
                                            r"given: pass map_posterior .* or map_training"):
            approximate(method, model, (x, y), map_posterior=map_posterior, map_training=config)
        with pytest.raises(TypeError, match=r"options \['epochs'\] train the MAP, but map_posterior was given"):
            approximate(method, model, (x, y), map_posterior=map_posterior, epochs=2)
        with pytest.raises(TypeError, match=r"map_training=FitConfig.*not config="):
            approximate(method, _regression_bnn(), (x, y), config=config)
        with pytest.raises(TypeError, match=r"map_training must be a FitConfig \(build one"):
            approximate(method, _regression_bnn(), (x, y), map_training={"epochs": 1})
    with pytest.raises(TypeError, match="plain network is its own MAP"):
        approximate("laplace", nn.Linear(3, 1), (x, y), map_training=config)
    with pytest.raises(TypeError, match=r"multiswag got both map_training= .*\['lr'\]"):
        approximate("multiswag", _regression_bnn(), (x, y), members=2, map_training=config, lr=0.1)
    with pytest.raises(TypeError, match=r"deep_ensemble got both config= .*\['epochs'\]"):
        approximate("deep_ensemble", _regression_bnn(), (x, y), members=2, config=config, epochs=2)
    with pytest.raises(TypeError, match=r"options \['map_training'\] fit the members, but fit_member"):
        approximate("multiswag", None, None, members=2, map_training=config, fit_member=lambda m, s: None)
    with pytest.raises(TypeError, match="not as config="):
        fit_swag(map_posterior, (x, y), config=config)


def test_swag_given_a_map_still_takes_the_run_options_flat():
    x, y = _regression()
    model = _regression_bnn()
    map_posterior = fit(model, MAPGuide(model), (x, y), epochs=1, seed=0, progress=False)
    by_name = approximate("swag", model, (x, y), map_posterior=map_posterior, seed=4, batch_size=15,
                          progress=False, swag_epochs=2, rank=2)
    direct = fit_swag(map_posterior, (x, y), epochs=2, rank=2, seed=4, batch_size=15, progress=False)
    _assert_same_state(by_name._approximation, direct._approximation)
