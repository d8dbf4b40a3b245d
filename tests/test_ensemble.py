"""Ensembles of posteriors: the predictive is the mixture of the members' predictives, every
call of the Posterior seam is answered, members are independent, registry round trips, bad K."""

import pytest
import torch
from toy_data import blobs

from bayesdl.inference import (
    METHODS,
    Draws,
    Ensemble,
    Posterior,
    approximate,
    fit_ensemble,
    reinitialised,
    to_inference_data,
)
from bayesdl.models import BNN, MLP


def _model(seed=0, hidden=8):
    torch.manual_seed(seed)
    return BNN(MLP(2, hidden, 3, dropout=0.2), prior_scale=1.0)


FIT = {"epochs": 3, "lr": 0.02, "batch_size": 30, "progress": False}


def _members(method, count, **options):
    x, y = blobs(90)
    return [approximate(method, _model(seed), (x, y), seed=seed, **FIT, **options) for seed in range(count)]


def test_the_predictive_of_map_members_is_the_mean_of_their_predictives():
    x, _ = blobs(90)
    members = _members("map", 3)
    ensemble = Posterior(members[0].model, Ensemble(members))
    expected = torch.stack([m.predict(x, num_samples=1).predictive for m in members]).mean(0)
    torch.testing.assert_close(ensemble.predict(x, num_samples=30).predictive, expected)
    assert not ensemble.is_point_mass and ensemble.fixed_draws is None


def test_sampled_members_give_their_own_draws_interleaved():
    """Draw s comes from member s mod K, and each member's draws are its own, in order."""
    x, _ = blobs(90)
    members = _members("dropout", 2)
    ensemble = Posterior(members[0].model, Ensemble(members))
    torch.manual_seed(5)
    outputs = ensemble.predictive_outputs(x, num_samples=7)
    torch.manual_seed(5)
    first = members[0].predictive_outputs(x, num_samples=4)
    second = members[1].predictive_outputs(x, num_samples=3)
    torch.testing.assert_close(outputs[0::2], first)
    torch.testing.assert_close(outputs[1::2], second)
    torch.manual_seed(5)
    weights = ensemble.sample(5)
    torch.manual_seed(5)
    torch.testing.assert_close(weights["body.0.weight"][0::2], members[0].sample(3)["body.0.weight"])


def test_laplace_members_predict_through_their_own_linearisation():
    """A mixture of Laplace approximations: the log-likelihood at the ensemble's draws is each
    member's, through its own linearised network (outputs_at routes draw s to member s mod K)."""
    x, y = blobs(90)
    members = _members("laplace", 2, subset="last_layer", structure="kron")
    ensemble = Posterior(members[0].model, Ensemble(members))
    torch.manual_seed(0)
    draws = ensemble.draws(6)
    log_lik = ensemble.log_likelihood(x, y, draws=draws)
    assert log_lik.shape == (1, 6, 90)
    for k, member in enumerate(members):
        own = {name: w[:, k::2] for name, w in draws.samples.items()}
        torch.testing.assert_close(log_lik[:, k::2], member.log_likelihood(x, y, draws=Draws(own)))


def test_an_ensemble_answers_every_call_of_the_seam():
    x, y = blobs(90)
    posterior = approximate("deep_ensemble", _model(), (x, y), members=3, seed=0, **FIT)
    assert posterior.method == "deep_ensemble"
    estimate = posterior.point_estimate()
    assert set(estimate) == {s.name for s in posterior.bnn.sites}
    samples = posterior.sample(6)
    assert samples["body.0.weight"].shape == (6, 8, 2)
    # three distinct networks, each drawn twice
    assert not torch.equal(samples["body.0.weight"][0], samples["body.0.weight"][1])
    torch.testing.assert_close(samples["body.0.weight"][0], samples["body.0.weight"][3])
    torch.testing.assert_close(samples["body.0.weight"][0], estimate["body.0.weight"])
    assert posterior.predictive_outputs(x, num_samples=6).shape == (6, 90, 3)
    assert posterior.log_likelihood(x, y, num_samples=6).shape == (1, 6, 90)
    torch.testing.assert_close(posterior.outputs_at(x, samples), posterior.predictive_outputs(x, num_samples=6))
    idata = to_inference_data(posterior, x, y, num_samples=6)
    assert idata.log_likelihood["y"].shape == (1, 6, 90)


def test_members_are_trained_independently_and_deterministically_by_seed():
    x, y = blobs(90)
    a = approximate("deep_ensemble", _model(), (x, y), members=2, seeds=[3, 4], **FIT)
    b = approximate("deep_ensemble", _model(), (x, y), members=2, seeds=[3, 4], **FIT)
    torch.testing.assert_close(a.predict(x, 2).probs, b.predict(x, 2).probs)
    weights = a.sample(2)["body.0.weight"]
    assert not torch.allclose(weights[0], weights[1])


def test_reinitialised_draws_a_fresh_network_and_leaves_the_model_alone():
    model = _model()
    before = model.initial_values().clone()
    state = torch.get_rng_state()
    first, again, other = reinitialised(model, 1), reinitialised(model, 1), reinitialised(model, 2)
    assert torch.equal(torch.get_rng_state(), state)
    torch.testing.assert_close(model.initial_values(), before)
    torch.testing.assert_close(first.initial_values(), again.initial_values())
    assert not torch.allclose(first.initial_values(), other.initial_values())
    assert not torch.allclose(first.initial_values(), before)


@pytest.mark.parametrize("member", ["map", "dropout", "mean_field"])
def test_the_generic_ensemble_takes_any_registered_method(member):
    x, y = blobs(90)
    posterior = approximate("ensemble", _model(), (x, y), member=member, members=2,
                            member_options={**FIT, "seed": 0})
    assert posterior.method == "ensemble"
    probs = posterior.predict(x, num_samples=4).probs
    assert probs.shape == (4, 90, 3)
    torch.testing.assert_close(probs.sum(-1), torch.ones(4, 90))


def test_fit_member_serves_the_members_and_sees_their_seeds():
    x, y = blobs(90)
    asked = []

    def fit_member(method, seed):
        asked.append((method, seed))
        return approximate(method, _model(seed), (x, y), seed=seed, **FIT)

    posterior = approximate("deep_ensemble", None, None, members=3, seeds=[7, 8, 9], fit_member=fit_member)
    assert asked == [("map", 7), ("map", 8), ("map", 9)]
    assert posterior.predict(x, 3).probs.shape == (3, 90, 3)


def test_multiswag_is_an_ensemble_of_swags():
    x, y = blobs(90)
    posterior = approximate("multiswag", _model(), (x, y), members=2, seed=0, swag_epochs=3, collect_every=1,
                            rank=5, **FIT)
    assert posterior.method == "multiswag" and not posterior.is_point_mass
    outputs = posterior.predictive_outputs(x, num_samples=4)
    assert outputs.shape == (4, 90, 3)
    assert not torch.allclose(outputs[0], outputs[2])  # draws of one SWAG differ


def test_the_registry_knows_the_new_methods():
    for name in ("swag", "ensemble", "deep_ensemble", "multiswag"):
        assert name in METHODS and METHODS[name].description
    assert {"members", "seeds", "fit_member", "epochs"} <= METHODS["deep_ensemble"].options
    assert {"members", "swag_epochs", "rank", "epochs"} <= METHODS["multiswag"].options


def test_bad_ensembles_get_clear_errors():
    x, y = blobs(90)
    model = _model()
    for bad in (0, -1, 2.5, True, "5"):
        with pytest.raises(ValueError, match="members"):
            approximate("deep_ensemble", model, (x, y), members=bad, **FIT)
    with pytest.raises(ValueError, match="3 seeds"):
        approximate("deep_ensemble", model, (x, y), members=3, seeds=[1, 2], **FIT)
    with pytest.raises(ValueError, match="distinct"):
        approximate("deep_ensemble", model, (x, y), members=2, seeds=[1, 1], **FIT)
    with pytest.raises(ValueError, match="unknown member method"):
        approximate("ensemble", model, (x, y), member="bootstrap")
    with pytest.raises(TypeError, match="takes no option"):
        approximate("deep_ensemble", model, (x, y), member_count=3)
    with pytest.raises(TypeError, match="fit_member was given"):
        fit_ensemble(model, (x, y), "map", 2, fit_member=lambda m, s: None, epochs=2)
    with pytest.raises(TypeError, match="BNN"):
        fit_ensemble(torch.nn.Linear(2, 3), (x, y), "map", 2)
    with pytest.raises(ValueError, match="at least one member"):
        Ensemble([])
    with pytest.raises(TypeError, match="Posteriors"):
        Ensemble([model])
    small = approximate("map", _model(hidden=8), (x, y), **FIT)
    wide = approximate("map", _model(hidden=9), (x, y), **FIT)
    with pytest.raises(ValueError, match="architecture"):
        Ensemble([small, wide])
