"""Issue 29, predictions and metrics: one clear check at each public boundary.

Every bad input below used to give a silent wrong number, a NaN, or an error from deep inside
torch / scipy; each now fails at the boundary with a ValueError/TypeError that names the
argument, what was wrong and how to fix it. Valid inputs give the same numbers as before.
"""

import math
import re

import numpy as np
import pytest
import torch

from bayesdl.evaluation import (
    acquire,
    apply_temperature,
    batchbald,
    brier_score,
    calibration_metrics,
    expected_calibration_error,
    fit_temperature,
    interval_coverage,
    negative_log_likelihood,
    random_scores,
    regression_metrics,
    reliability_bins,
    rmse,
)
from bayesdl.models import Bernoulli, Categorical, Gaussian, HeteroscedasticGaussian
from bayesdl.predictions import ClassPrediction, RegressionPrediction

cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")


def _regression(s=4, n=5, seed=0):
    g = torch.Generator().manual_seed(seed)
    mean = torch.randn(s, n, generator=g, dtype=torch.float64)
    noise = 0.2 + torch.rand(s, n, generator=g, dtype=torch.float64)
    y = torch.randn(n, generator=g, dtype=torch.float64)
    return mean, noise, y


def _probs(s=3, n=6, c=4, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.softmax(2 * torch.randn(s, n, c, generator=g, dtype=torch.float64), -1)


# ------------------------------------------------------------------ RegressionPrediction
def test_regression_prediction_refuses_noise_of_another_shape():
    mean, noise, _ = _regression()
    # noise [N] instead of [S, N] used to give a scalar "aleatoric" variance
    with pytest.raises(ValueError, match=re.escape("mean (4, 5) and noise (5,)")):
        RegressionPrediction(mean, noise[0])
    with pytest.raises(ValueError, match="expand_as"):
        RegressionPrediction(mean, noise[:1])


@pytest.mark.parametrize("bad, message", [(-1.0, r"noise must be > 0.*min -"),
                                          (0.0, r"noise must be > 0.*point mass"),
                                          (float("nan"), "noise contains 1 non-finite"),
                                          (float("inf"), "noise contains 1 non-finite")])
def test_regression_prediction_refuses_bad_noise(bad, message):
    mean, noise, _ = _regression()
    noise = noise.clone()
    noise[1, 2] = bad
    with pytest.raises(ValueError, match=message):
        RegressionPrediction(mean, noise)


def test_regression_prediction_refuses_non_finite_means():
    mean, noise, _ = _regression()
    mean = mean.clone()
    mean[0, 0] = float("nan")
    with pytest.raises(ValueError, match="mean contains 1 non-finite"):
        RegressionPrediction(mean, noise)


def test_regression_prediction_refuses_no_samples_no_inputs_and_scalars():
    mean, noise, _ = _regression()
    with pytest.raises(ValueError, match="no sample"):  # used to be "math domain error"
        RegressionPrediction(mean[:0], noise[:0])
    with pytest.raises(ValueError, match="no input"):  # used to give NaN metrics
        RegressionPrediction(mean[:, :0], noise[:, :0])
    with pytest.raises(ValueError, match=r"\[S, N\]"):
        RegressionPrediction(torch.tensor(1.0), torch.tensor(1.0))


def test_regression_prediction_refuses_non_arrays_and_takes_numpy_and_integers():
    mean, noise, y = _regression()
    with pytest.raises(TypeError, match="mean must be a torch tensor"):
        RegressionPrediction("0.5", noise)
    with pytest.raises(TypeError, match="noise must be a torch tensor"):
        RegressionPrediction(mean, None)
    # numpy arrays used to fail inside check_targets; they now give the numbers of tensors
    assert rmse(RegressionPrediction(mean.numpy(), noise.numpy()), y) == rmse(RegressionPrediction(mean, noise), y)
    # integer means used to fail in torch's mean(): read as floats
    ints = RegressionPrediction(torch.ones(2, 3, dtype=torch.long), torch.ones(2, 3, dtype=torch.long))
    assert ints.mean.is_floating_point() and ints.noise.is_floating_point()
    assert torch.equal(ints.variance, torch.ones(3))


def test_regression_prediction_keeps_the_tensors_of_valid_input():
    mean, noise, _ = _regression()
    prediction = RegressionPrediction(mean, noise)
    assert prediction.mean is mean and prediction.noise is noise
    assert prediction.num_samples == 4


def test_regression_prediction_of_every_likelihood_still_builds():
    out = torch.randn(3, 7, 1)
    pred = Gaussian(scale=0.3).predict(out)
    assert pred.mean.shape == pred.noise.shape == (3, 7)
    assert torch.allclose(pred.noise, torch.full((3, 7), 0.3))
    pred = HeteroscedasticGaussian().predict(torch.randn(3, 7, 2))
    assert pred.mean.shape == pred.noise.shape == (3, 7)
    # a single draw [N, 1] (as to_inference_data's replicated targets make it)
    replicated = Gaussian(scale=0.3).sample_targets(torch.randn(7, 1), torch.Generator().manual_seed(0))
    assert replicated.shape == (7,)


def test_affine_refuses_bad_shift_and_scale():
    mean, noise, _ = _regression()
    prediction = RegressionPrediction(mean, noise)
    with pytest.raises(ValueError, match="shift contains 1 non-finite"):
        prediction.affine(float("nan"), 1.0)
    with pytest.raises(ValueError, match="scale contains 1 non-finite"):
        prediction.affine(0.0, float("inf"))
    with pytest.raises(ValueError, match=re.escape("scale must be a number or broadcast against [N] = (5,), "
                                                   "got shape (3,)")):
        prediction.affine(0.0, torch.ones(3))  # used to be a torch size mismatch
    with pytest.raises(ValueError, match=re.escape("shift must be a number or broadcast against [N] = (5,), "
                                                   "got shape (5, 1)")):
        prediction.affine(torch.zeros(5, 1), 1.0)
    with pytest.raises(TypeError, match="shift must be"):
        prediction.affine("1", 1.0)
    with pytest.raises(TypeError, match="scale must be"):
        prediction.affine(0.0, "2")
    with pytest.raises(ValueError, match="non-zero"):
        prediction.affine(0.0, 0.0)
    # valid: the same numbers as before
    moved = prediction.affine(torch.full((5,), 2.0, dtype=torch.float64), -3.0)
    torch.testing.assert_close(moved.mean, 2.0 - 3.0 * mean, rtol=0, atol=0)
    torch.testing.assert_close(moved.noise, 3.0 * noise, rtol=0, atol=0)


# ------------------------------------------------------------------ ClassPrediction
def test_class_prediction_refuses_bad_probabilities():
    probs = _probs()
    with pytest.raises(ValueError, match=re.escape(r"probs must have shape [S, N, C] (samples first), got shape (6, 4)")):
        ClassPrediction(probs[0])
    with pytest.raises(ValueError, match="non-finite"):
        ClassPrediction(probs * float("nan"))
    with pytest.raises(ValueError, match="not logits"):
        ClassPrediction(torch.randn(3, 6, 4))
    with pytest.raises(ValueError, match="sum to 1"):
        ClassPrediction(probs * 0.5)
    with pytest.raises(ValueError, match="empty"):
        ClassPrediction(probs[:0])
    with pytest.raises(TypeError, match="probs must be a torch tensor"):
        ClassPrediction("probs")


def test_class_prediction_of_the_likelihoods_still_builds():
    probs = _probs()
    prediction = ClassPrediction(probs)
    assert prediction.probs is probs
    assert Categorical().predict(torch.randn(3, 6, 4)).probs.shape == (3, 6, 4)
    assert Bernoulli().predict(torch.randn(3, 6, 1)).probs.shape == (3, 6, 2)
    assert ClassPrediction(probs.numpy()).probs.dtype == torch.float64


# ------------------------------------------------------------------ regression metrics
def test_regression_metrics_take_one_level_as_a_number():
    mean, noise, y = _regression()
    prediction = RegressionPrediction(mean, noise)
    assert regression_metrics(prediction, y, levels=0.9) == regression_metrics(prediction, y, levels=[0.9])
    assert interval_coverage(prediction, y, 0.5) == interval_coverage(prediction, y, (0.5,))
    # a sequence gives the numbers it always gave
    assert set(regression_metrics(prediction, y)) >= {"coverage_50", "coverage_90", "coverage_95"}


@pytest.mark.parametrize("level", [0.0, 1.0, 1.5, -0.1, float("nan")])
def test_coverage_levels_must_lie_strictly_between_0_and_1(level):
    mean, noise, y = _regression()
    with pytest.raises(ValueError, match=r"levels must lie in \(0, 1\)"):
        interval_coverage(RegressionPrediction(mean, noise), y, [0.5, level])


@pytest.mark.parametrize("levels", ["0.9", None, {"a": 0.9}, [0.5, "0.9"]])
def test_coverage_levels_of_the_wrong_type(levels):
    mean, noise, y = _regression()
    with pytest.raises(TypeError, match="levels must be"):
        regression_metrics(RegressionPrediction(mean, noise), y, levels=levels)


def test_regression_metrics_refuse_levels_that_share_a_key():
    mean, noise, y = _regression()
    with pytest.raises(ValueError, match="coverage_90"):
        regression_metrics(RegressionPrediction(mean, noise), y, levels=[0.9, 0.901])


def test_regression_metrics_check_the_targets():
    mean, noise, y = _regression()
    prediction = RegressionPrediction(mean, noise)
    with pytest.raises(ValueError, match=re.escape("y must have shape (5,)")):
        regression_metrics(prediction, y[:3])
    with pytest.raises(ValueError, match="y contains 1 non-finite"):
        regression_metrics(prediction, torch.cat([y[:4], torch.tensor([float("nan")], dtype=y.dtype)]))
    with pytest.raises(TypeError, match="y must be"):
        regression_metrics(prediction, "targets")
    with pytest.raises(TypeError, match="RegressionPrediction"):
        regression_metrics((mean, noise), y)


# ------------------------------------------------------------------ acquisition
@pytest.mark.parametrize("function", ["random", "bald", "batchbald"])
def test_acquire_refuses_a_generator_that_is_not_one(function):
    # random and batchbald used to fail inside torch.rand/randint; bald ignored it silently
    with pytest.raises(TypeError, match=re.escape("generator must be a torch.Generator (or None), got int; "
                                                  "use torch.Generator().manual_seed(5)")):
        acquire(function, _probs(), 2, generator=5)


def test_batchbald_and_random_scores_refuse_a_bad_generator():
    with pytest.raises(TypeError, match=r"generator must be a torch\.Generator"):
        batchbald(_probs(), 3, generator="seed", exact_limit=1)
    with pytest.raises(TypeError, match=r"generator must be a torch\.Generator"):
        random_scores(_probs(), 0)


@cuda
def test_a_cuda_generator_is_refused():
    with pytest.raises(ValueError, match="CPU generator"):
        acquire("random", _probs(), 2, generator=torch.Generator(device="cuda"))


def test_acquire_refuses_a_function_that_is_not_a_name():
    with pytest.raises(TypeError, match="function must be the name"):
        acquire(["bald"], _probs(), 2)  # used to be "unhashable type: 'list'"


def test_acquire_lists_the_options_of_batchbald():
    with pytest.raises(TypeError, match=re.escape("batchbald takes the options ['chunk', 'exact_limit', "
                                                  "'num_configurations'], got unknown ['num_config']")):
        acquire("batchbald", _probs(), 2, num_config=5)
    with pytest.raises(TypeError, match="takes no options"):
        acquire("bald", _probs(), 2, num_configurations=5)


def test_acquire_counts_still_checked():
    with pytest.raises(ValueError, match="larger than the pool"):
        acquire("batchbald", _probs(), 7)
    with pytest.raises(ValueError, match="batch_size must be >= 1"):
        acquire("bald", _probs(), 0)
    with pytest.raises(ValueError, match="num_configurations must be >= 1"):
        acquire("batchbald", _probs(), 2, num_configurations=0)


def test_acquire_with_a_generator_gives_the_same_choice():
    a = acquire("random", _probs(), 3, generator=torch.Generator().manual_seed(1))
    b = acquire("random", _probs(), 3, generator=torch.Generator().manual_seed(1))
    assert torch.equal(a, b)


# ------------------------------------------------------------------ temperature scaling
def _logits(n=40, c=3, seed=0):
    g = torch.Generator().manual_seed(seed)
    return 3 * torch.randn(n, c, generator=g, dtype=torch.float64), torch.randint(0, c, (n,), generator=g)


@pytest.mark.parametrize("bounds, error, message", [
    (5.0, TypeError, "bounds must be a pair"),
    (None, TypeError, "bounds must be a pair"),
    ("ab", TypeError, "bounds must be a pair"),
    ((1.0, 2.0, 3.0), ValueError, "bounds must be a pair .* got 3 values"),
    ((0.5,), ValueError, "got 1 value"),
    (("a", "b"), TypeError, "bounds\\[0\\] must be a real number"),
    ((0.1, float("inf")), ValueError, "bounds\\[1\\] must be finite"),
    ((float("nan"), 1.0), ValueError, "bounds\\[0\\] must be finite"),
    ((-1.0, 1.0), ValueError, "bounds\\[0\\] must be > 0"),
    ((0.0, 1.0), ValueError, "bounds\\[0\\] must be > 0"),
    ((2.0, 1.0), ValueError, "low < high"),
    ((1.0, 1.0), ValueError, "low < high"),
])
def test_fit_temperature_refuses_malformed_bounds(bounds, error, message):
    logits, labels = _logits()
    with pytest.raises(error, match=message):
        fit_temperature(logits, labels, bounds=bounds)


def test_fit_temperature_takes_bounds_as_any_pair():
    logits, labels = _logits()
    expected = fit_temperature(logits, labels, bounds=(0.1, 10.0))
    assert fit_temperature(logits, labels, bounds=[0.1, 10.0]) == expected
    assert fit_temperature(logits, labels, bounds=np.array([0.1, 10.0])) == expected
    assert fit_temperature(logits, labels, bounds=torch.tensor([0.1, 10.0], dtype=torch.float64)) == expected
    assert fit_temperature(logits, labels) == fit_temperature(logits, labels, bounds=(0.05, 20.0))


# ------------------------------------------------------------------ sweep: calibration
def test_calibration_checks_labels_and_probs():
    probs, labels = torch.softmax(_logits()[0], -1), _logits()[1]
    with pytest.raises(ValueError, match="labels has 5 entries but the predictions have 40"):
        calibration_metrics(probs, labels[:5])
    with pytest.raises(ValueError, match="integer class indices"):
        negative_log_likelihood(probs, labels + 0.5)
    with pytest.raises(ValueError, match=re.escape("probs must have shape [N, C]")):
        brier_score(probs[None], labels)
    with pytest.raises(TypeError, match="n_bins must be an integer"):
        reliability_bins(probs, labels, n_bins=10.0)
    with pytest.raises(ValueError, match="logits must have shape"):
        apply_temperature(torch.randn(4), 1.0)


@cuda
def test_calibration_of_cuda_tensors_gives_the_cpu_numbers():
    logits, labels = _logits()
    probs = torch.softmax(logits, -1)
    expected = calibration_metrics(probs, labels)
    assert calibration_metrics(probs.cuda(), labels.cuda()) == expected
    assert calibration_metrics(probs.cuda(), labels) == expected  # labels left on the CPU
    assert expected_calibration_error(probs.cuda(), labels.cuda()) == expected["ece"]
    assert reliability_bins(probs.cuda(), labels.cuda()).count.sum() == 40
    assert fit_temperature(logits.cuda(), labels.cuda()) == fit_temperature(logits, labels)


@cuda
def test_regression_prediction_refuses_mean_and_noise_on_two_devices():
    mean, noise, _ = _regression()
    with pytest.raises(ValueError, match="same device"):
        RegressionPrediction(mean.cuda(), noise)


def test_log_likelihood_of_valid_predictions_is_unchanged():
    mean, noise, y = _regression()
    prediction = RegressionPrediction(mean, noise)
    expected = torch.logsumexp(torch.distributions.Normal(mean, noise).log_prob(y), 0) - math.log(4)
    torch.testing.assert_close(prediction.log_likelihood(y), expected)
