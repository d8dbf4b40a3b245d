"""paired_bootstrap_difference: scipy's paired percentile bootstrap of a metric's difference."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy.stats import bootstrap

from bayesdl.evaluation import BootstrapDifference, aupr_error, paired_bootstrap_difference


def _scores(n: int = 300, seed: int = 0):
    """A classifier's correctness and two confidences: one that separates its errors, one noisier."""
    rng = np.random.default_rng(seed)
    correct = rng.random(n) < 0.85
    good = np.where(correct, 0.8, 0.5) + 0.3 * rng.random(n)
    noisy = good + 0.6 * rng.standard_normal(n)
    return good, noisy, correct


def _by_hand(metric, reference, other, n_resamples, seed, **extra):
    """The call of experiments/studies/mnist.py's ``_aupr_error_gaps``, written out."""

    def gap(ref_confidence, ref_correct, confidence, correct):
        return metric(ref_confidence, ref_correct) - metric(confidence, correct)

    data = [np.asarray(a) for a in reference] + [np.asarray(a) for a in other]
    interval = bootstrap(data, gap, paired=True, vectorized=False, n_resamples=n_resamples,
                         method="percentile", rng=np.random.default_rng(seed), **extra).confidence_interval
    return float(gap(*data)), float(interval.low), float(interval.high)


@pytest.mark.parametrize("seed", [0, 7])
def test_it_is_the_hand_written_scipy_call_bit_for_bit(seed):
    good, noisy, correct = _scores()
    result = paired_bootstrap_difference(aupr_error, (good, correct), (noisy, correct), n_resamples=150,
                                         seed=seed)
    assert isinstance(result, BootstrapDifference)
    assert tuple(result) == _by_hand(aupr_error, (good, correct), (noisy, correct), 150, seed)


def test_the_defaults_are_2000_resamples_seed_0_and_a_95_percent_interval():
    good, noisy, correct = _scores()

    def accuracy_at_half(confidence, correct):  # cheap, so 2000 resamples stay quick
        return float(np.mean((confidence > 0.75) == correct))

    result = paired_bootstrap_difference(accuracy_at_half, (good, correct), (noisy, correct))
    assert tuple(result) == _by_hand(accuracy_at_half, (good, correct), (noisy, correct), 2000, 0)
    wider = paired_bootstrap_difference(accuracy_at_half, (good, correct), (noisy, correct), confidence=0.99)
    assert tuple(wider) == _by_hand(accuracy_at_half, (good, correct), (noisy, correct), 2000, 0,
                                    confidence_level=0.99)
    assert wider.low <= result.low <= result.high <= wider.high


def test_the_value_is_the_difference_on_the_whole_set_and_lies_in_its_interval():
    good, noisy, correct = _scores(n=500)
    value, low, high = paired_bootstrap_difference(aupr_error, (good, correct), (noisy, correct),
                                                   n_resamples=200)
    assert value == aupr_error(good, correct) - aupr_error(noisy, correct)
    assert low < value < high
    # the sharper confidence ranks the errors first (AUPR-error: higher is better): a gap the data supports
    assert low > 0


def test_a_scorer_against_itself_is_exactly_zero_with_a_zero_width_interval():
    good, _, correct = _scores()
    result = paired_bootstrap_difference(aupr_error, (good, correct), (good, correct), n_resamples=50)
    assert result == BootstrapDifference(0.0, 0.0, 0.0)


def test_tensors_and_lists_are_accepted_and_the_seed_decides_the_interval():
    good, noisy, correct = _scores()
    arrays = paired_bootstrap_difference(aupr_error, (good, correct), (noisy, correct), n_resamples=50)
    tensors = paired_bootstrap_difference(aupr_error, [torch.from_numpy(good), torch.from_numpy(correct)],
                                          (noisy.tolist(), correct.tolist()), n_resamples=50)
    assert tensors == arrays
    other_seed = paired_bootstrap_difference(aupr_error, (good, correct), (noisy, correct), n_resamples=50,
                                             seed=1)
    assert other_seed.value == arrays.value and (other_seed.low, other_seed.high) != (arrays.low, arrays.high)


@pytest.mark.parametrize("reference, other, kwargs, match", [
    ("short", "full", {}, "same length"),
    ("full", "one", {}, "same number of arrays"),
    ("single", "single", {}, "at least 2 examples"),
    ("empty", "empty", {}, "at least 2 examples"),
    ("full", "full", {"n_resamples": 0}, "n_resamples must be an integer >= 1"),
    ("full", "full", {"n_resamples": 10.5}, "n_resamples must be an integer >= 1"),
    ("full", "full", {"n_resamples": True}, "n_resamples must be an integer >= 1"),
    ("full", "full", {"confidence": 0.0}, r"confidence must be a number in \(0, 1\)"),
    ("full", "full", {"confidence": 1.0}, r"confidence must be a number in \(0, 1\)"),
    ("full", "full", {"confidence": 95}, r"confidence must be a number in \(0, 1\)"),
    ("full", "full", {"confidence": float("nan")}, r"confidence must be a number in \(0, 1\)"),
    ("full", "full", {"seed": -1}, "seed must be a non-negative integer"),
    ("array", "full", {}, "must be a tuple of per-example arrays"),
    ("nothing", "nothing", {}, "must be a tuple of per-example arrays"),
    ("matrix", "matrix", {}, "not one value per example"),
])
def test_bad_inputs_are_refused_with_a_value_error(reference, other, kwargs, match):
    good, noisy, correct = _scores(n=20)
    cases = {"full": (good, correct), "short": (good[:-1], correct[:-1]), "one": (noisy,),
             "single": (good[:1], correct[:1]), "empty": (good[:0], correct[:0]), "array": good,
             "nothing": (), "matrix": (np.stack([good, good], 1), correct)}
    with pytest.raises(ValueError, match=match):
        paired_bootstrap_difference(aupr_error, cases[reference], cases[other], **{"n_resamples": 5, **kwargs})


def test_a_metric_that_is_not_callable_is_a_type_error():
    good, _, correct = _scores(n=20)
    with pytest.raises(TypeError, match="metric must be a function"):
        paired_bootstrap_difference("aupr_error", (good, correct), (good, correct))
