"""Acquisition functions against independent computations (numpy, brute-force enumeration)."""

import itertools
import math
from collections import Counter

import numpy as np
import pytest
import torch

from bayesdl.evaluation.acquisition import (
    ACQUISITION_FUNCTIONS,
    acquire,
    bald,
    batchbald,
    max_entropy,
    mean_std,
    random_scores,
    variation_ratios,
)


def _probs(seed, s=8, n=12, c=4, sharpness=2.0):
    g = torch.Generator().manual_seed(seed)
    return torch.softmax(sharpness * torch.randn(s, n, c, generator=g, dtype=torch.float64), -1)


def _np_entropy(p):
    p = np.asarray(p, dtype=float)
    return float(-(p[p > 0] * np.log(p[p > 0])).sum())


def test_scores_match_numpy():
    probs = _probs(0)
    p = probs.numpy()
    s, n, _ = p.shape
    expected_bald = [_np_entropy(p[:, i].mean(0)) - np.mean([_np_entropy(p[k, i]) for k in range(s)]) for i in range(n)]
    expected_entropy = [_np_entropy(p[:, i].mean(0)) for i in range(n)]
    expected_std = p.std(axis=0).mean(-1)  # population std over passes, mean over classes
    expected_vr = [1 - Counter(p[:, i].argmax(-1).tolist()).most_common(1)[0][1] / s for i in range(n)]
    np.testing.assert_allclose(bald(probs).numpy(), expected_bald, atol=1e-10)
    np.testing.assert_allclose(max_entropy(probs).numpy(), expected_entropy, atol=1e-10)
    np.testing.assert_allclose(mean_std(probs).numpy(), expected_std, atol=1e-10)
    np.testing.assert_allclose(variation_ratios(probs).numpy(), expected_vr, atol=1e-10)


def test_random_scores_follow_the_generator():
    probs = _probs(1)
    a = random_scores(probs, torch.Generator().manual_seed(3))
    b = random_scores(probs, torch.Generator().manual_seed(3))
    assert a.shape == (12,) and torch.equal(a, b)
    assert bool(((a >= 0) & (a < 1)).all())


def _brute_force_mi(p, batch):
    """I[y_batch; w] by enumerating every label configuration of the batch."""
    s, _, c = p.shape
    joint = 0.0
    for labels in itertools.product(range(c), repeat=len(batch)):
        prob = np.mean([math.prod(p[k, i, y] for i, y in zip(batch, labels)) for k in range(s)])
        joint -= prob * math.log(prob) if prob > 0 else 0.0
    return joint - sum(np.mean([_np_entropy(p[k, i]) for k in range(s)]) for i in batch)


def test_batchbald_is_the_greedy_maximiser_of_the_brute_force_joint_mutual_information():
    p = _probs(2, s=6, n=8, c=3).numpy()
    chosen, scores = [], []
    for _ in range(4):
        best = max((i for i in range(8) if i not in chosen), key=lambda i: _brute_force_mi(p, [*chosen, i]))
        chosen.append(best)
        scores.append(_brute_force_mi(p, chosen))
    selection = batchbald(torch.from_numpy(p), 4)
    assert selection.indices.tolist() == chosen
    np.testing.assert_allclose(selection.scores.numpy(), scores, atol=1e-10)


def test_batchbald_with_sampled_configurations_approaches_the_exact_value():
    probs = _probs(2, s=6, n=8, c=3)
    exact = batchbald(probs, 4)
    sampled = batchbald(probs, 4, num_configurations=200_000, exact_limit=1,
                        generator=torch.Generator().manual_seed(0))
    assert sampled.indices.tolist() == exact.indices.tolist()
    np.testing.assert_allclose(sampled.scores.numpy(), exact.scores.numpy(), rtol=0.01)


def test_batchbald_of_one_point_is_bald():
    probs = _probs(4, n=30, c=10)
    selection = batchbald(probs, 1)
    scores = bald(probs)
    assert int(selection.indices[0]) == int(scores.argmax())
    assert float(selection.scores[0]) == pytest.approx(float(scores.max()), abs=1e-10)


def test_batchbald_does_not_pick_a_duplicate_that_top_k_bald_picks():
    one_hot = torch.eye(2, dtype=torch.float64)
    # Point 0 and its copy 1: passes 0, 1 say class 0 and passes 2, 3 class 1 (BALD = ln 2).
    a = torch.stack([one_hot[0], one_hot[0], one_hot[1], one_hot[1]])
    # Point 2 disagrees along another split of the passes, less sharply (lower BALD).
    b = torch.tensor([[0.9, 0.1], [0.1, 0.9], [0.9, 0.1], [0.1, 0.9]], dtype=torch.float64)
    certain = one_hot[0].expand(4, 2)
    probs = torch.stack([a, a, b, certain], dim=1)  # [S = 4, N = 4, C = 2]
    assert acquire("bald", probs, 2).tolist() == [0, 1]           # the duplicates
    chosen = batchbald(probs, 2)
    assert chosen.indices.tolist() == [0, 2]
    # The copy adds nothing (its label equals point 0's under every draw): I = ln 2 for {0, 1}.
    assert _brute_force_mi(probs.numpy(), [0, 1]) == pytest.approx(math.log(2))
    assert float(chosen.scores[1]) == pytest.approx(_brute_force_mi(probs.numpy(), [0, 2]))
    assert float(chosen.scores[1]) > math.log(2)


def test_acquire_takes_the_top_scores_and_breaks_ties_by_index():
    probs = _probs(5, n=20)
    for name, function in ACQUISITION_FUNCTIONS.items():
        if name == "random":
            continue
        picked = acquire(name, probs, 5)
        assert picked.tolist() == torch.sort(function(probs), descending=True, stable=True).indices[:5].tolist()
    flat = torch.full((3, 4, 2), 0.5)
    assert acquire("max_entropy", flat, 2).tolist() == [0, 1]
    g1, g2 = torch.Generator().manual_seed(1), torch.Generator().manual_seed(1)
    assert torch.equal(acquire("random", probs, 5, g1), acquire("random", probs, 5, g2))
    assert torch.equal(acquire("batchbald", probs, 3), batchbald(probs, 3).indices)


def test_bad_input_gets_a_clear_error():
    probs = _probs(6)
    with pytest.raises(ValueError, match="unknown acquisition function"):
        acquire("entropy", probs, 2)
    with pytest.raises(ValueError, match="larger than the pool"):
        acquire("bald", probs, 13)
    with pytest.raises(ValueError, match="larger than the pool"):
        batchbald(probs, 13)
    with pytest.raises(ValueError, match="logits"):
        bald(torch.randn(4, 3, 2))
    with pytest.raises(ValueError, match="samples first"):
        batchbald(probs[0], 2)
    with pytest.raises(TypeError, match="no options"):
        acquire("bald", probs, 2, num_configurations=10)
