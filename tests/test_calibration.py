import itertools

import numpy as np
import pytest
import torch
from sklearn.metrics import brier_score_loss, log_loss

from bayesdl.evaluation import (
    apply_temperature,
    brier_score,
    calibration_metrics,
    expected_calibration_error,
    fit_temperature,
    maximum_calibration_error,
    negative_log_likelihood,
    reliability_bins,
)


def _reference_ece(probs, labels, n_bins):
    """Guo et al.'s loop over bins (lower, upper], written independently."""
    conf = probs.max(1)
    pred = probs.argmax(1)
    edges = np.linspace(0, 1, n_bins + 1)
    ece = 0.0
    for lo, hi in itertools.pairwise(edges):
        in_bin = (conf > lo) & (conf <= hi)
        if in_bin.any():
            ece += in_bin.mean() * abs((pred[in_bin] == labels[in_bin]).mean() - conf[in_bin].mean())
    return ece


def _random_case(n=2000, c=5, seed=0):
    rng = np.random.default_rng(seed)
    logits = rng.normal(size=(n, c)) * 3
    probs = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
    labels = np.array([rng.choice(c, p=p) for p in probs])
    return probs, labels


def test_ece_hand_computed():
    probs = torch.tensor([[0.9, 0.1], [0.9, 0.1], [0.6, 0.4], [0.3, 0.7]], dtype=torch.float64)
    labels = torch.tensor([0, 1, 0, 1])
    # bins of width 0.1: (0.8, 0.9] acc 1/2 conf 0.9; (0.5, 0.6] acc 1 conf 0.6; (0.6, 0.7] acc 1 conf 0.7
    expected = 2 / 4 * 0.4 + 1 / 4 * 0.4 + 1 / 4 * 0.3
    assert expected_calibration_error(probs, labels, n_bins=10) == pytest.approx(expected)
    assert maximum_calibration_error(probs, labels, n_bins=10) == pytest.approx(0.4)


def test_ece_matches_reference_loop():
    probs, labels = _random_case()
    for n_bins in (1, 10, 15):
        assert expected_calibration_error(probs, labels, n_bins) == pytest.approx(
            _reference_ece(probs, labels, n_bins), abs=1e-12
        )


def test_bin_edges_are_right_closed():
    # confidence exactly 0.6 belongs to (0.5, 0.6], in float32 as in float64
    for dtype in (torch.float32, torch.float64):
        probs = torch.tensor([[0.6, 0.4]], dtype=dtype)
        bins = reliability_bins(probs, torch.tensor([0]), n_bins=10)
        assert int(bins.count[5]) == 1 and int(bins.count.sum()) == 1
    bins = reliability_bins(torch.tensor([[1.0, 0.0]]), torch.tensor([0]), n_bins=15)
    assert int(bins.count[-1]) == 1


def test_reliability_bins_content():
    probs, labels = _random_case(500)
    bins = reliability_bins(probs, labels, n_bins=15)
    assert int(bins.count.sum()) == 500
    filled = bins.count > 0
    assert bool(((bins.confidence[filled] > bins.edges[:-1][filled])
                 & (bins.confidence[filled] <= bins.edges[1:][filled])).all())
    assert torch.isnan(bins.accuracy[~filled]).all()


def test_nll_and_brier_match_sklearn():
    probs, labels = _random_case(800, c=4, seed=3)
    assert negative_log_likelihood(probs, labels) == pytest.approx(log_loss(labels, probs), rel=1e-9)
    assert brier_score(probs, labels) == pytest.approx(
        brier_score_loss(labels, probs, labels=[0, 1, 2, 3], scale_by_half=False), rel=1e-9)


def test_calibration_metrics_dict():
    probs, labels = _random_case(300)
    m = calibration_metrics(probs, labels)
    assert set(m) == {"accuracy", "ece", "mce", "nll", "brier"}
    assert m["accuracy"] == pytest.approx((probs.argmax(1) == labels).mean())


def test_temperature_recovers_the_generating_temperature():
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(20000, 10, generator=g, dtype=torch.float64) * 4
    labels = torch.multinomial(torch.softmax(logits / 2.5, -1), 1, generator=g).squeeze(1)
    t = fit_temperature(logits, labels)
    assert t == pytest.approx(2.5, rel=0.05)
    scaled = apply_temperature(logits, t)
    assert expected_calibration_error(scaled, labels) < expected_calibration_error(torch.softmax(logits, -1), labels)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"n_bins": 0}, "n_bins"),
        ({"labels": torch.tensor([0, 5])}, r"\[0, 2\)"),
        ({"labels": torch.tensor([0, 1, 1])}, "3 entries"),
        ({"probs": torch.tensor([[0.5, 0.6], [0.5, 0.5]])}, "sum to 1"),
        ({"probs": torch.empty(0, 2), "labels": torch.empty(0)}, "empty"),
        ({"probs": torch.tensor([[0.5, float("inf")], [0.5, 0.5]])}, "non-finite"),
    ],
)
def test_bad_input(kwargs, message):
    args = {"probs": torch.tensor([[0.3, 0.7], [0.8, 0.2]]), "labels": torch.tensor([1, 0]), "n_bins": 15}
    args.update(kwargs)
    with pytest.raises(ValueError, match=message):
        expected_calibration_error(**args)
