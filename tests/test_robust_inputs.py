"""Bad input at the public entry points: a clear ValueError/TypeError, never a silent result
or an error from deep inside torch, numpy or scikit-learn."""

import re

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader, TensorDataset

from bayesdl.evaluation import apply_temperature, fpr_at_tpr, max_probability, odin_scores, tune_odin
from bayesdl.inference import MAPGuide, MeanFieldGuide, fit, fit_laplace, nuts
from bayesdl.models import BNN, MLP


def _blobs(n=48, seed=0):
    g = torch.Generator().manual_seed(seed)
    y = torch.randint(0, 3, (n,), generator=g)
    centers = torch.tensor([[0.0, 2.0], [2.0, -1.0], [-2.0, -1.0]])
    return centers[y] + 0.5 * torch.randn(n, 2, generator=g), y


def _model(seed=0):
    torch.manual_seed(seed)
    return BNN(MLP(2, 8, 3), prior_scale=1.0)


@pytest.fixture(scope="module")
def map_posterior():
    x, y = _blobs()
    model = _model()
    return fit(model, MAPGuide(model), (x, y), epochs=3, lr=0.05, batch_size=16, seed=0, progress=False)


# ------------------------------------------------------------------ Laplace: every batch checked
@pytest.mark.parametrize("bad, message", [("nan", "batch 2: x contains 1 non-finite"),
                                          ("label", "batch 3: y (labels) must lie in [0, 3)")])
def test_fit_laplace_checks_every_batch_and_names_it(map_posterior, bad, message):
    x, y = _blobs()
    x, y = x.clone(), y.clone()
    if bad == "nan":
        x[20, 1] = float("nan")  # in the second batch of 16
    else:
        y[40] = 7  # in the third batch
    loader = DataLoader(TensorDataset(x, y), batch_size=16)
    with pytest.raises(ValueError, match=re.escape(message)):
        fit_laplace(map_posterior, loader, structure="diag")


def test_fit_laplace_lists_the_valid_choices(map_posterior):
    x, y = _blobs()
    with pytest.raises(ValueError, match=r"structure must be one of \['full', 'diag', 'kron', 'ekfac'\], got 'nosuch'"):
        fit_laplace(map_posterior, (x, y), structure="nosuch")
    with pytest.raises(ValueError, match=r"subset must be one of \['all', 'last_layer'\]"):
        fit_laplace(map_posterior, (x, y), subset="everything")
    with pytest.raises(ValueError, match="hessian must be one of"):
        fit_laplace(map_posterior, (x, y), hessian="fisher")


# ------------------------------------------------------------------ Posterior.predict, shared with fit
def test_predict_refuses_inputs_of_the_wrong_rank_or_width(map_posterior):
    with pytest.raises(ValueError, match=r"shape \[N, \.\.\.\].*x\[None\]"):
        map_posterior.predict(torch.zeros(2))  # one example without its batch axis: was [S, 3, 2]
    with pytest.raises(ValueError, match=r"outputs of shape \(5, 1, 3\).*rank and width"):
        map_posterior.predict(torch.zeros(5, 1, 2))  # was a 4-D array of probabilities
    with pytest.raises(ValueError, match=r"cannot take inputs of shape \(4, 3\)"):
        map_posterior.predict(torch.zeros(4, 3))
    model = _model()
    with pytest.raises(ValueError, match=r"cannot take inputs of shape \(4, 3\)"):
        fit(model, MAPGuide(model), (torch.zeros(4, 3), torch.zeros(4, dtype=torch.long)), epochs=1,
            progress=False)


def test_predict_takes_float64_and_integer_inputs(map_posterior):
    x, _ = _blobs(10)
    expected = map_posterior.predict(x, num_samples=1).probs
    assert torch.allclose(map_posterior.predict(x.double().numpy(), num_samples=1).probs, expected)
    as_int = map_posterior.predict(torch.ones(3, 2, dtype=torch.long), num_samples=1).probs
    assert torch.allclose(as_int, map_posterior.predict(torch.ones(3, 2), num_samples=1).probs)


def test_fit_trains_on_float64_inputs():
    x, y = _blobs()
    model = _model()
    posterior = fit(model, MAPGuide(model), (x.double(), y), epochs=1, batch_size=16, progress=False)
    assert torch.isfinite(posterior.predict(x, num_samples=1).probs).all()


# ------------------------------------------------------------------ fit
def test_fit_with_no_example_says_so():
    model = _model()
    with pytest.raises(ValueError, match="x is empty"):
        fit(model, MAPGuide(model), (torch.zeros(0, 2), torch.zeros(0, dtype=torch.long)), progress=False)


@pytest.mark.parametrize("device, message", [("nosuch", "device 'nosuch' is not available"),
                                             ("cuda:7", "device 'cuda:7' is not available")])
def test_fit_names_the_devices_that_exist(device, message):
    x, y = _blobs()
    model = _model()
    with pytest.raises(ValueError, match=message) as info:
        fit(model, MAPGuide(model), (x, y), epochs=1, device=device, progress=False)
    assert "available: cpu" in str(info.value)


def test_fit_on_cuda_without_a_gpu_says_so():
    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    x, y = _blobs()
    model = _model()
    with pytest.raises(ValueError, match=r"torch sees no CUDA device\); available: cpu"):
        fit(model, MAPGuide(model), (x, y), epochs=1, device="cuda", progress=False)


# ------------------------------------------------------------------ ODIN
def _net():
    torch.manual_seed(0)
    return torch.nn.Linear(4, 3)


@pytest.mark.parametrize("kwargs, error, message", [
    ({"temperature": float("nan")}, ValueError, "temperature must be finite"),
    ({"temperature": "1"}, TypeError, "temperature must be a real number"),
    ({"temperature": 0.0}, ValueError, "temperature must be > 0"),
    ({"input_scale": 0.0}, ValueError, "input_scale must be > 0"),
    ({"epsilon": -0.1}, ValueError, "epsilon must be >= 0"),
    ({"epsilon": []}, ValueError, "epsilon is an empty sequence"),
    ({"epsilon": float("inf")}, ValueError, "epsilon must be finite"),
    ({"batch_size": 0}, ValueError, "batch_size must be >= 1"),
])
def test_odin_refuses_bad_settings(kwargs, error, message):
    options = {"temperature": 10.0, "epsilon": 0.001, **kwargs}
    with pytest.raises(error, match=message):
        odin_scores(_net(), torch.randn(5, 4), **options)


def test_odin_refuses_bad_inputs():
    x = torch.randn(5, 4)
    x[2, 1] = float("nan")
    with pytest.raises(ValueError, match="x contains 1 non-finite"):
        odin_scores(_net(), x, 10.0, 0.001)
    with pytest.raises(ValueError, match="x is empty"):
        odin_scores(_net(), torch.zeros(0, 4), 10.0, 0.001)
    with pytest.raises(ValueError, match=r"must return logits of shape \[N, C\].*got shape \(5,\)"):
        odin_scores(lambda t: t.sum(-1), torch.randn(5, 4), 10.0, 0.001)
    with pytest.raises(TypeError, match="logits_fn must be a callable"):
        odin_scores("net", torch.randn(5, 4), 10.0, 0.001)


def test_odin_takes_numpy_inputs_like_tensors():
    x = torch.randn(6, 4)
    assert torch.equal(odin_scores(_net(), x.numpy(), 10.0, 0.001), odin_scores(_net(), x, 10.0, 0.001))
    scores = odin_scores(_net(), x, 10.0, [0.0, 0.002])
    assert set(scores) == {0.0, 0.002} and all(torch.isfinite(s).all() for s in scores.values())


def test_tune_odin_needs_a_grid():
    x_in, x_out = torch.randn(6, 4), torch.randn(6, 4) + 3
    with pytest.raises(ValueError, match="temperatures is empty"):
        tune_odin(_net(), x_in, x_out, temperatures=())
    with pytest.raises(ValueError, match="epsilon is an empty sequence"):
        tune_odin(_net(), x_in, x_out, epsilons=())
    best = tune_odin(_net(), x_in, x_out, temperatures=(1.0, 10.0), epsilons=(0.0, 0.001))
    assert len(best["grid"]) == 4 and best["temperature"] in (1.0, 10.0)


# ------------------------------------------------------------------ metrics
@pytest.mark.parametrize("args, kwargs, error, message", [
    (([True, False, True], [0.9, 0.1, 0.8]), {"tpr": 1.5}, ValueError, r"tpr must lie in \(0, 1\]"),
    (([True, False, True], [0.9, 0.1, 0.8]), {"tpr": 0.0}, ValueError, r"tpr must lie in \(0, 1\]"),
    (([True, True, True], [0.9, 0.1, 0.8]), {}, ValueError, "one positive and one negative"),
    (([True, False, True], [0.9, float("nan"), 0.8]), {}, ValueError, "scores contains 1 non-finite"),
    (([True, False], [0.9, 0.1, 0.8]), {}, ValueError, "positive and the scores must have the same length"),
    (([1, 2, 0], [0.9, 0.1, 0.8]), {}, ValueError, "positive must be booleans or 0/1"),
])
def test_fpr_at_tpr_refuses_bad_input(args, kwargs, error, message):
    with pytest.raises(error, match=message):
        fpr_at_tpr(*args, **kwargs)


def test_fpr_at_tpr_still_matches_its_definition():
    positive = np.array([True, True, True, True, False, False])
    scores = np.array([0.9, 0.8, 0.7, 0.2, 0.75, 0.1])
    assert fpr_at_tpr(positive, scores, 0.75) == 0.5  # threshold 0.7: one of the two negatives is above
    assert fpr_at_tpr(positive, scores, 1.0) == 0.5


def test_temperature_and_max_probability_refuse_strings():
    logits = torch.randn(4, 3)
    with pytest.raises(TypeError, match="temperature must be a real number"):
        apply_temperature(logits, "2")
    with pytest.raises(TypeError, match="probs must be a torch tensor or a numpy array, got str"):
        max_probability("abc")
    assert torch.allclose(max_probability(np.full((2, 4), 0.25)), torch.full((2,), 0.25, dtype=torch.float64))


# ------------------------------------------------------------------ NUTS: checked before sampling
@pytest.mark.parametrize("kwargs, error, message", [
    ({"target_accept_prob": 1.5}, ValueError, r"target_accept_prob must lie in \(0, 1\)"),
    ({"target_accept_prob": 0.0}, ValueError, r"target_accept_prob must lie in \(0, 1\)"),
    ({"seed": -1}, ValueError, "seed must be >= 0"),
    ({"seed": 2**32}, ValueError, "seed must be < 2\\*\\*32"),
    ({"seed": 1.5}, TypeError, "seed must be an integer"),
    ({"max_tree_depth": 0}, ValueError, "max_tree_depth must be >= 1"),
])
def test_nuts_checks_its_settings(kwargs, error, message):
    x, y = _blobs(10)
    with pytest.raises(error, match=message):
        nuts(_model(), x, y, num_samples=2, warmup_steps=2, num_chains=1, progress=False, **kwargs)


def test_mean_field_fit_refuses_a_string_learning_rate():
    x, y = _blobs()
    model = _model()
    with pytest.raises(TypeError, match="lr must be a real number"):
        fit(model, MeanFieldGuide(model), (x, y), lr="0.01", progress=False)
