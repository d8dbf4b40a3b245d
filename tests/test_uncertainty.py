import math

import numpy as np
import pytest
import torch

from bayesdl.evaluation import expected_entropy, mutual_information, predictive_entropy, variation_ratio

LN2 = math.log(2)


def _slide_cases(s=10):
    certain = torch.tensor([[1.0, 0.0]]).expand(s, 1, 2)
    alternating = torch.tensor([[[1.0, 0.0]], [[0.0, 1.0]]]).repeat(s // 2, 1, 1)
    flat = torch.full((s, 1, 2), 0.5)
    return certain, alternating, flat


def test_slide_case_all_certain():
    certain, _, _ = _slide_cases()
    assert variation_ratio(certain).item() == 0.0
    assert predictive_entropy(certain).item() == 0.0
    assert mutual_information(certain).item() == 0.0


def test_slide_case_alternating_passes():
    _, alternating, _ = _slide_cases()
    assert variation_ratio(alternating).item() == pytest.approx(0.5)
    assert predictive_entropy(alternating).item() == pytest.approx(LN2)
    assert expected_entropy(alternating).item() == pytest.approx(0.0)
    assert mutual_information(alternating).item() == pytest.approx(LN2)


def test_slide_case_all_half():
    # The slide prints 0.5 for these entropies; the mathematics gives ln 2.
    _, _, flat = _slide_cases()
    assert predictive_entropy(flat).item() == pytest.approx(LN2)
    assert expected_entropy(flat).item() == pytest.approx(LN2)
    assert mutual_information(flat).item() == pytest.approx(0.0, abs=1e-7)
    # an exact tie splits the vote: as undecided as alternating passes
    assert variation_ratio(flat).item() == pytest.approx(0.5)


def _numpy_reference(p):
    """Independent implementation straight from the formulas (Gal 2016, sec. 3.3)."""
    s, n, c = p.shape
    mean = p.mean(0)
    with np.errstate(divide="ignore", invalid="ignore"):
        h = -np.nansum(np.where(mean > 0, mean * np.log(mean), 0.0), axis=1)
        eh = -np.nansum(np.where(p > 0, p * np.log(p), 0.0), axis=2).mean(0)
    labels = p.argmax(2)
    vr = np.array([1 - np.bincount(labels[:, i], minlength=c).max() / s for i in range(n)])
    return vr, h, eh, h - eh


def test_against_numpy_reference():
    g = torch.Generator().manual_seed(1)
    logits = torch.randn(30, 50, 7, generator=g, dtype=torch.float64) * 2
    probs = torch.softmax(logits, -1)
    vr, h, eh, mi = _numpy_reference(probs.numpy())
    np.testing.assert_allclose(variation_ratio(probs).numpy(), vr, atol=1e-12)
    np.testing.assert_allclose(predictive_entropy(probs).numpy(), h, atol=1e-12)
    np.testing.assert_allclose(expected_entropy(probs).numpy(), eh, atol=1e-12)
    np.testing.assert_allclose(mutual_information(probs).numpy(), mi, atol=1e-12)


def test_bounds_and_numpy_input():
    probs = np.random.default_rng(0).dirichlet(np.ones(4), size=(20, 9))
    h = predictive_entropy(probs)
    assert isinstance(h, torch.Tensor) and h.shape == (9,)
    assert bool((h <= math.log(4) + 1e-12).all())
    assert bool((mutual_information(probs) >= 0).all())
    assert bool((variation_ratio(probs) <= 1 - 1 / 4 + 1e-12).all())


@pytest.mark.parametrize(
    "bad, message",
    [
        (torch.full((2, 3), 0.5), r"\[S, N, C\]"),
        (torch.tensor([[[0.7, 0.7]]]), "sum to 1"),
        (torch.tensor([[[1.5, -0.5]]]), "negative"),
        (torch.tensor([[[float("nan"), 1.0]]]), "non-finite"),
        (torch.empty(3, 0, 2), "empty"),
        ("probs", "tensor or a numpy array"),
    ],
)
def test_bad_probs(bad, message):
    with pytest.raises((ValueError, TypeError), match=message):
        mutual_information(bad)
