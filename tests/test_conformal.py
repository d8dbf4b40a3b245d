"""Conformal prediction (bayesdl.evaluation.conformal): the coverage guarantee, the finite-sample
quantile, agreement with MAPIE as an independent reference, and the boundary checks.

The guarantee tests split one fixed pool of predictions many times into calibration and test
points. Over random splits of a fixed pool the points are exchangeable, so for continuous scores
(no ties) the expected coverage is exactly ``k / (n + 1)`` with ``k = ceil((n + 1)(1 - alpha))``,
which lies in ``[1 - alpha, 1 - alpha + 1/(n + 1)]``; the randomisation ``u`` of APS/RAPS is
drawn once per pool point and travels with it (it is part of the exchangeable data point).
"""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest
import torch

from bayesdl.evaluation import (
    ClassPrediction,
    ConformalClassifier,
    ConformalRegressor,
    RegressionPrediction,
    class_conditional_coverage,
    classification_scores,
    conformal_interval_metrics,
    conformal_quantile,
    conformal_set_metrics,
    mean_set_size,
    mixture_quantiles,
    prediction_intervals,
    prediction_sets,
    regression_scores,
    required_calibration_size,
    set_coverage,
    size_stratified_coverage,
)

# ---------------------------------------------------------------------------------------------
# Fixtures: a miscalibrated classifier and a miscalibrated Gaussian regression predictive
# ---------------------------------------------------------------------------------------------


def _softmax(logits: np.ndarray) -> np.ndarray:
    e = np.exp(logits - logits.max(1, keepdims=True))
    return e / e.sum(1, keepdims=True)


def _draw_labels(rng: np.random.Generator, probs: np.ndarray) -> np.ndarray:
    cdf = probs.cumsum(1)
    return np.minimum((rng.uniform(size=(len(probs), 1)) > cdf).sum(1), probs.shape[1] - 1)


@pytest.fixture(scope="module")
def miscalibrated_classifier():
    """2000 points, 5 classes: labels from softmax(z), the model says softmax(2.5 z + noise)."""
    rng = np.random.default_rng(0)
    logits = rng.normal(size=(2000, 5))
    labels = _draw_labels(rng, _softmax(logits))
    probs = _softmax(2.5 * logits + 0.5 * rng.normal(size=logits.shape))  # overconfident, noisy
    return torch.tensor(probs), torch.tensor(labels)


def _regression_pool(seed: int, n: int, samples: int = 20):
    """Targets with heteroscedastic noise 0.2 + 0.4|x|; the predictive has a constant, too small
    noise and an epistemic spread unrelated to the error."""
    rng = np.random.default_rng(seed)
    x = rng.uniform(-2, 2, n)
    y = np.sin(2 * x) + (0.2 + 0.4 * np.abs(x)) * rng.normal(size=n)
    mean = np.sin(2 * x)[None] + 0.1 * x[None] + 0.15 * rng.normal(size=(samples, n))
    noise = 0.15 * (1 + rng.uniform(size=(samples, n)))
    return RegressionPrediction(torch.tensor(mean), torch.tensor(noise)), torch.tensor(y)


@pytest.fixture(scope="module")
def miscalibrated_regression():
    return _regression_pool(1, 2000)


def _subset(prediction: RegressionPrediction, index) -> RegressionPrediction:
    index = torch.as_tensor(index)
    return RegressionPrediction(prediction.mean[:, index], prediction.noise[:, index])


# ---------------------------------------------------------------------------------------------
# The finite-sample quantile
# ---------------------------------------------------------------------------------------------


def test_at_n_9_and_alpha_0_1_the_quantile_is_the_largest_score():
    scores = torch.tensor([0.3, 0.9, 0.1, 0.5, 0.7, 0.2, 0.8, 0.4, 0.6])
    assert math.ceil(10 * 0.9) == 9
    assert conformal_quantile(scores, 0.1) == pytest.approx(0.9)
    assert required_calibration_size(0.1) == 9


def test_too_few_calibration_points_raise_and_say_how_many_are_needed():
    with pytest.raises(ValueError, match=r"needs at least ceil\(1/alpha\) - 1 = 9 calibration points.*got n=8"):
        conformal_quantile(torch.rand(8), 0.1)
    with pytest.raises(ValueError, match=r"= 19 calibration points.*got n=18"):
        ConformalClassifier("thr", alpha=0.05).calibrate(torch.full((18, 2), 0.5), torch.zeros(18))
    with pytest.raises(ValueError, match=r"= 9 calibration points.*got n=5"):
        ConformalRegressor("absolute", alpha=0.1).calibrate((torch.zeros(5), None), torch.ones(5))


@pytest.mark.parametrize("alpha", [0.01, 0.05, 0.1, 0.2, 0.3, 0.5, 0.7, 0.9])
def test_required_size_is_the_smallest_n_with_rank_at_most_n(alpha):
    needed = required_calibration_size(alpha)
    assert needed == math.ceil(round(1 / alpha, 9)) - 1
    conformal_quantile(torch.rand(needed), alpha)  # exists
    if needed > 1:
        with pytest.raises(ValueError, match="calibration points"):
            conformal_quantile(torch.rand(needed - 1), alpha)


def test_the_quantile_is_the_textbook_order_statistic_and_batches():
    """k-th smallest, k = ceil((n+1)(1-alpha)) == numpy's quantile at level k/n, method "lower"
    (the convention MAPIE 1.x uses too: mapie.utils._compute_classification_quantile)."""
    rng = np.random.default_rng(3)
    for n, alpha in [(10, 0.1), (37, 0.05), (100, 0.2), (250, 0.1), (51, 0.25)]:
        scores = rng.normal(size=n)
        k = math.ceil((n + 1) * (1 - alpha))
        expected = np.quantile(scores, k / n, method="lower")
        assert conformal_quantile(scores, alpha) == expected == np.sort(scores)[k - 1]
    batch = torch.tensor(rng.normal(size=(6, 40)))
    together = conformal_quantile(batch, 0.1)
    assert together.shape == (6,)
    assert torch.equal(together, torch.tensor([conformal_quantile(row, 0.1) for row in batch], dtype=torch.float64))


def test_round_alphas_are_not_pushed_up_one_rank_by_binary_rounding():
    # (9 + 1)(1 - 0.7) is 3, but 1 - 0.7 = 0.30000000000000004 in binary and a bare ceil gives 4
    assert math.ceil(10 * (1 - 0.7)) == 4
    assert conformal_quantile(torch.arange(1.0, 10.0), 0.7) == 3.0


# ---------------------------------------------------------------------------------------------
# The coverage guarantee, over many random calibration/test splits
# ---------------------------------------------------------------------------------------------

N_CAL = 40  # small n: the window 1/(n+1) = 0.024 is wide against the Monte-Carlo error
SPLITS = 1000
ALPHAS = (0.05, 0.1, 0.2)
# Tolerance: 4 standard errors of the mean over SPLITS splits. The split coverages are i.i.d.
# given the pool, and their mean is close to normal (1000 of them); a 4-SE two-sided miss has
# probability 6e-5, so over the ~60 comparisons below a correct implementation fails with
# probability < 0.4 % (for any seed; the seeds are fixed, so the tests are deterministic). With
# SE ~ 0.0015 the tolerance (~0.006) is a quarter of the width of the guarantee window, and the
# power check below shows that one rank fewer -- forgetting the +1 of (n+1) -- is caught.
N_SE = 4

CLASS_CONFIGS = [
    ("thr", {}, False),
    ("aps", {}, True),
    ("aps", {}, False),
    ("raps", {"k_reg": 1, "lam": 0.05}, True),
    ("raps", {"k_reg": 2, "lam": 0.02}, False),
]


def _splits(m: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    perm = torch.rand(SPLITS, m, generator=g).argsort(1)
    return perm[:, :N_CAL], perm[:, N_CAL:]


def _coverage_over_splits(true_scores: torch.Tensor, alpha: float, seed: int, rank_shift: int = 0):
    """Mean and standard error of the test coverage over SPLITS random splits; ``rank_shift=-1``
    thresholds at one order statistic fewer (a wrong quantile, for the power check)."""
    cal, test = _splits(true_scores.shape[0], seed)
    if rank_shift == 0:
        threshold = conformal_quantile(true_scores[cal], alpha)
    else:
        k = math.ceil((N_CAL + 1) * (1 - alpha)) + rank_shift
        threshold = true_scores[cal].sort(1).values[:, k - 1]
    coverage = (true_scores[test] <= threshold[:, None]).double().mean(1)
    return float(coverage.mean()), float(coverage.std() / math.sqrt(SPLITS)), cal, test


def _check_guarantee(mean: float, se: float, alpha: float, true_scores: torch.Tensor):
    k = math.ceil((N_CAL + 1) * (1 - alpha))
    assert 1 - alpha <= k / (N_CAL + 1) <= 1 - alpha + 1 / (N_CAL + 1)
    assert mean >= 1 - alpha - N_SE * se, (mean, se)
    assert mean <= 1 - alpha + 1 / (N_CAL + 1) + N_SE * se, (mean, se)
    # Without ties the expectation is exactly k/(n+1). Non-randomised APS/RAPS have ties: the
    # lowest-ranked label scores the whole mass (1, or 1 + its penalty), an atom that pushes the
    # coverage above k/(n+1) (the upper bound is not guaranteed there; randomising removes the atom).
    if torch.unique(true_scores).numel() == true_scores.numel():
        assert abs(mean - k / (N_CAL + 1)) <= N_SE * se, (mean, k / (N_CAL + 1), se)


@pytest.mark.parametrize("alpha", ALPHAS)
@pytest.mark.parametrize(("score", "params", "randomized"), CLASS_CONFIGS)
def test_classification_coverage_over_random_splits(miscalibrated_classifier, score, params, randomized, alpha):
    probs, labels = miscalibrated_classifier
    u = torch.rand(probs.shape[0], generator=torch.Generator().manual_seed(5), dtype=torch.float64)
    scores = classification_scores(probs, score, u=u if randomized else None, **params)
    true_scores = scores.gather(1, labels[:, None]).squeeze(1)
    mean, se, cal, test = _coverage_over_splits(true_scores, alpha, seed=11)
    _check_guarantee(mean, se, alpha, true_scores)
    # the fast path above is the public API: the class gives the same sets on a few of the splits
    for r in range(3):
        c, t = cal[r], test[r]
        cp = ConformalClassifier(score, alpha, randomized=randomized, **params)
        sets = cp.calibrate(probs[c], labels[c], u=u[c] if randomized else None).predict_sets(
            probs[t], u=u[t] if randomized else None)
        assert torch.equal(sets, prediction_sets(probs[t], cp.threshold_, score, u=u[t] if randomized else None,
                                                 **params))
        assert set_coverage(sets, labels[t]) == float((true_scores[t] <= cp.threshold_).double().mean())


@pytest.mark.parametrize("alpha", ALPHAS)
def test_the_guarantee_check_catches_a_quantile_one_rank_too_low(miscalibrated_classifier, alpha):
    probs, labels = miscalibrated_classifier
    true_scores = classification_scores(probs, "thr").gather(1, labels[:, None]).squeeze(1)
    mean, se, _, _ = _coverage_over_splits(true_scores, alpha, seed=11, rank_shift=-1)
    assert mean < 1 - alpha - N_SE * se


@pytest.mark.parametrize("alpha", ALPHAS)
@pytest.mark.parametrize(("score", "std"), [("absolute", "total"), ("normalized", "total"),
                                            ("normalized", "aleatoric"), ("normalized", "epistemic"),
                                            ("cqr", "total")])
def test_regression_coverage_over_random_splits(miscalibrated_regression, score, std, alpha):
    prediction, y = miscalibrated_regression
    true_scores = regression_scores(prediction, y, score, alpha=alpha, std=std)
    mean, se, cal, test = _coverage_over_splits(true_scores, alpha, seed=12)
    _check_guarantee(mean, se, alpha, true_scores)
    for r in range(3):
        c, t = cal[r], test[r]
        cr = ConformalRegressor(score, alpha, std=std).calibrate(_subset(prediction, c), y[c])
        lower, upper = cr.predict_intervals(_subset(prediction, t))
        expected = float((true_scores[t] <= cr.threshold_).double().mean())
        assert conformal_interval_metrics(lower, upper, y[t])["coverage"] == pytest.approx(expected, abs=1e-12)


def test_the_uncalibrated_bayesian_intervals_miss_and_conformal_fixes_them(miscalibrated_regression):
    """Why bother: the mixture's own 90 % central interval undercovers this predictive."""
    prediction, y = miscalibrated_regression
    lo, hi = mixture_quantiles(prediction, [0.05, 0.95])
    assert conformal_interval_metrics(lo, hi, y)["coverage"] < 0.75
    cal, test = torch.arange(1000), torch.arange(1000, 2000)
    cr = ConformalRegressor("cqr", 0.1).calibrate(_subset(prediction, cal), y[cal])
    assert cr.threshold_ > 0  # the base interval is widened
    assert conformal_interval_metrics(*cr.predict_intervals(_subset(prediction, test)), y[test])["coverage"] > 0.87


# ---------------------------------------------------------------------------------------------
# Properties of the scores and sets
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("randomized", [True, False])
def test_raps_with_lambda_zero_is_aps(miscalibrated_classifier, randomized):
    probs, labels = miscalibrated_classifier
    cal, test = slice(0, 500), slice(500, None)
    aps = ConformalClassifier("aps", 0.1, randomized=randomized, seed=4).calibrate(probs[cal], labels[cal])
    raps = ConformalClassifier("raps", 0.1, k_reg=2, lam=0.0, randomized=randomized, seed=4).calibrate(
        probs[cal], labels[cal])
    assert raps.threshold_ == aps.threshold_
    assert torch.equal(raps.predict_sets(probs[test]), aps.predict_sets(probs[test]))


def test_thr_gives_the_smallest_sets_on_a_calibrated_toy():
    """Labels drawn from the model's own probabilities: thresholding p_y is the size-optimal
    valid set (Sadinle, Lei & Wasserman 2019); the adaptive scores pay in size for their
    conditional coverage."""
    rng = np.random.default_rng(7)
    probs = _softmax(3.0 * rng.normal(size=(8000, 10)))
    labels = torch.tensor(_draw_labels(rng, probs))
    probs = torch.tensor(probs)
    cal, test = slice(0, 4000), slice(4000, None)
    sizes, coverage = {}, {}
    for name, score, params in [("thr", "thr", {}), ("aps", "aps", {}),
                                ("raps", "raps", {"k_reg": 2, "lam": 0.01})]:
        sets = ConformalClassifier(score, 0.1, **params).calibrate(probs[cal], labels[cal]).predict_sets(probs[test])
        sizes[name], coverage[name] = mean_set_size(sets), set_coverage(sets, labels[test])
    assert sizes["thr"] < sizes["raps"] - 0.1  # 2.19 against 2.38 and 2.43 labels
    assert sizes["thr"] < sizes["aps"] - 0.1
    for value in coverage.values():
        assert abs(value - 0.9) < 0.02


def test_sets_are_the_top_of_the_ranking_and_nested_in_alpha(miscalibrated_classifier):
    probs, _ = miscalibrated_classifier
    u = torch.rand(probs.shape[0], generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    order = torch.sort(probs, dim=1, descending=True, stable=True).indices
    for score, params in [("thr", {}), ("aps", {}), ("raps", {"k_reg": 1, "lam": 0.1})]:
        scores = classification_scores(probs, score, u=u, **params)
        ranked = scores.gather(1, order)
        assert bool((ranked[:, 1:] >= ranked[:, :-1]).all())  # non-decreasing along the ranking
        previous = None
        for threshold in (0.2, 0.5, 0.9, 1.5):
            sets = prediction_sets(probs, threshold, score, u=u, **params)
            in_order = sets.gather(1, order)
            assert bool((in_order[:, 1:] <= in_order[:, :-1]).all())  # a prefix of the ranking
            if previous is not None:
                assert bool((sets >= previous).all())
            previous = sets


def test_aps_and_raps_scores_by_hand():
    probs = torch.tensor([[0.1, 0.6, 0.3]])
    # ranking: class 1 (0.6), class 2 (0.3), class 0 (0.1)
    assert torch.allclose(classification_scores(probs, "aps"), torch.tensor([[1.0, 0.6, 0.9]], dtype=torch.float64))
    half = classification_scores(probs, "aps", u=torch.tensor([0.5]))
    assert torch.allclose(half, torch.tensor([[0.95, 0.3, 0.75]], dtype=torch.float64))
    raps = classification_scores(probs, "raps", u=torch.tensor([0.5]), k_reg=1, lam=0.2)
    assert torch.allclose(raps, torch.tensor([[0.95 + 0.4, 0.3, 0.75 + 0.2]], dtype=torch.float64))
    assert torch.allclose(classification_scores(probs, "thr"), 1 - probs.double())


def test_a_class_prediction_is_read_through_its_predictive_mean(miscalibrated_classifier):
    probs, labels = miscalibrated_classifier
    samples = torch.stack([probs, probs.roll(1, dims=1)])  # two "posterior samples"
    prediction = ClassPrediction(samples)
    a = ConformalClassifier("aps", 0.1).calibrate(ClassPrediction(samples[:, :600]), labels[:600])
    b = ConformalClassifier("aps", 0.1).calibrate(prediction.predictive[:600], labels[:600])
    assert a.threshold_ == b.threshold_
    assert torch.equal(a.predict_sets(ClassPrediction(samples[:, 600:])), b.predict_sets(prediction.predictive[600:]))


def test_the_sets_depend_only_on_the_inputs_and_the_seed(miscalibrated_classifier):
    probs, labels = miscalibrated_classifier
    cp = ConformalClassifier("aps", 0.1, seed=3).calibrate(probs[:500], labels[:500])
    again = ConformalClassifier("aps", 0.1, seed=3).calibrate(probs[:500], labels[:500])
    assert cp.threshold_ == again.threshold_
    assert torch.equal(cp.predict_sets(probs[500:]), cp.predict_sets(probs[500:]))
    other = ConformalClassifier("aps", 0.1, seed=4).calibrate(probs[:500], labels[:500])
    assert other.threshold_ != cp.threshold_


# ---------------------------------------------------------------------------------------------
# Mixture quantiles
# ---------------------------------------------------------------------------------------------


def test_mixture_quantiles_of_one_gaussian_are_its_quantiles():
    scipy_stats = pytest.importorskip("scipy.stats")
    mean, noise = torch.tensor([[0.0, 1.0, -3.0]]), torch.tensor([[1.0, 0.5, 2.0]])
    got = mixture_quantiles(RegressionPrediction(mean, noise), [0.05, 0.5, 0.975])
    expected = scipy_stats.norm.ppf([[0.05], [0.5], [0.975]], loc=mean.numpy(), scale=noise.numpy())
    np.testing.assert_allclose(got.numpy(), expected, rtol=1e-12, atol=1e-12)


def test_mixture_quantiles_invert_the_mixture_cdf(miscalibrated_regression):
    prediction, _ = miscalibrated_regression
    levels = [0.025, 0.05, 0.3, 0.5, 0.95, 0.975]
    q = mixture_quantiles(prediction, levels)
    assert q.shape == (len(levels), prediction.mean.shape[1])
    for level, row in zip(levels, q):
        assert torch.allclose(prediction.cdf(row), torch.full_like(row, level), atol=1e-12)
    assert bool((q[1:] > q[:-1]).all())
    assert mixture_quantiles(prediction, 0.5).shape == (prediction.mean.shape[1],)
    # a bimodal mixture: the median lies between the modes, where the density is ~1.5e-6, so
    # float64 resolution of F (1e-16) pins it to ~1e-10
    two = RegressionPrediction(torch.tensor([[-5.0], [5.0]]), torch.tensor([[1.0], [1.0]]))
    assert float(mixture_quantiles(two, 0.5)) == pytest.approx(0.0, abs=1e-9)


def test_normalized_scores_use_the_aleatoric_epistemic_split():
    mean = torch.tensor([[0.0, 0.0], [2.0, 0.0]])  # epistemic variance 1 at the first input, 0 at the second
    noise = torch.tensor([[1.0, 2.0], [1.0, 2.0]])  # aleatoric variance 1 and 4
    prediction, y = RegressionPrediction(mean, noise), torch.tensor([3.0, 4.0])
    total = regression_scores(prediction, y, "normalized")
    assert torch.allclose(total, torch.tensor([2 / math.sqrt(2), 4 / 2.0], dtype=torch.float64))
    aleatoric = regression_scores(prediction, y, "normalized", std="aleatoric")
    assert torch.allclose(aleatoric, torch.tensor([2.0, 2.0], dtype=torch.float64))
    with pytest.raises(ValueError, match=r"std \(epistemic\), which is 0 at 1 input"):
        regression_scores(prediction, y, "normalized", std="epistemic")
    lower, upper = prediction_intervals(prediction, 1.5, "normalized")
    assert torch.allclose(upper - lower, 3 * prediction.variance.sqrt().double())


# ---------------------------------------------------------------------------------------------
# Metrics
# ---------------------------------------------------------------------------------------------


def test_set_metrics_by_hand():
    sets = torch.tensor([[1, 0, 0], [1, 1, 0], [0, 0, 0], [1, 1, 1], [0, 1, 0]], dtype=torch.bool)
    labels = torch.tensor([0, 2, 1, 2, 1])
    assert set_coverage(sets, labels) == pytest.approx(3 / 5)
    assert mean_set_size(sets) == pytest.approx(7 / 5)
    by_size = size_stratified_coverage(sets, labels)
    assert by_size.groups.tolist() == [0, 1, 2, 3]
    assert by_size.count.tolist() == [1, 2, 1, 1]
    assert by_size.as_dict() == {0: 0.0, 1: 1.0, 2: 0.0, 3: 1.0}
    by_class = class_conditional_coverage(sets, labels)
    assert by_class.count.tolist() == [1, 2, 2]
    assert by_class.coverage.tolist() == [1.0, 0.5, 0.5]
    assert by_class.worst == 0.5 and by_class.max_deviation(0.1) == pytest.approx(0.4)
    absent = class_conditional_coverage(sets[:2], labels[:2])
    assert math.isnan(float(absent.coverage[1])) and absent.worst == 0.0
    metrics = conformal_set_metrics(sets, labels)
    assert metrics == pytest.approx({"coverage": 0.6, "mean_size": 1.4, "empty_fraction": 0.2,
                                     "worst_class_coverage": 0.5, "worst_size_coverage": 0.0})


def test_interval_metrics_by_hand():
    lower, upper = torch.tensor([0.0, 1.0, 2.0, 3.0]), torch.tensor([1.0, 3.0, 1.0, 4.0])  # the third is crossed
    metrics = conformal_interval_metrics(lower, upper, torch.tensor([0.5, 3.5, 1.5, 3.0]))
    assert metrics == pytest.approx({"coverage": 0.5, "mean_width": 1.0, "median_width": 1.0})


# ---------------------------------------------------------------------------------------------
# Calibrating and predicting on the same points
# ---------------------------------------------------------------------------------------------


def test_predicting_on_the_calibration_probabilities_refuses(miscalibrated_classifier):
    probs, labels = miscalibrated_classifier
    cp = ConformalClassifier("raps", 0.1).calibrate(probs[:300], labels[:300])
    for same in (probs[:300], probs[:300].clone().float(), probs[:300].numpy(), ClassPrediction(probs[:300][None])):
        with pytest.raises(ValueError, match=r"very probabilities this object was calibrated on.*allow_same=True"):
            cp.predict_sets(same)
    assert cp.predict_sets(probs[:300], allow_same=True).shape == (300, 5)
    assert cp.predict_sets(probs[300:]).shape == (1700, 5)


def test_predicting_on_the_calibration_regression_refuses(miscalibrated_regression):
    prediction, y = miscalibrated_regression
    cal = _subset(prediction, torch.arange(200))
    for score in ("absolute", "normalized", "cqr"):
        cr = ConformalRegressor(score, 0.1).calibrate(cal, y[:200])
        with pytest.raises(ValueError, match="very predictions this object was calibrated on"):
            cr.predict_intervals(_subset(prediction, torch.arange(200)))
        lower, upper = cr.predict_intervals(cal, allow_same=True)
        assert lower.shape == upper.shape == (200,)
    pair = (prediction.predictive_mean[:200], prediction.variance[:200].sqrt())
    cr = ConformalRegressor("normalized", 0.1).calibrate(pair, y[:200])
    with pytest.raises(ValueError, match="very predictions"):
        cr.predict_intervals(cal)  # the same points as a RegressionPrediction


# ---------------------------------------------------------------------------------------------
# Bad input
# ---------------------------------------------------------------------------------------------

GOOD_PROBS = torch.full((20, 3), 1 / 3)
GOOD_LABELS = torch.zeros(20, dtype=torch.long)


@pytest.mark.parametrize(("alpha", "error", "match"), [
    (0.0, ValueError, r"alpha must lie in \(0, 1\)"),
    (1.0, ValueError, r"alpha must lie in \(0, 1\)"),
    (-0.1, ValueError, r"alpha must lie in \(0, 1\)"),
    (float("nan"), ValueError, r"alpha must lie in \(0, 1\)"),
    ("0.1", TypeError, "alpha must be a real number"),
])
def test_bad_alpha(alpha, error, match):
    with pytest.raises(error, match=match):
        conformal_quantile(torch.rand(50), alpha)
    with pytest.raises(error, match=match):
        ConformalClassifier("aps", alpha)
    with pytest.raises(error, match=match):
        ConformalRegressor("cqr", alpha)


@pytest.mark.parametrize(("call", "error", "match"), [
    (lambda: ConformalClassifier("top1"), ValueError, r"score must be one of \['thr', 'aps', 'raps'\]"),
    (lambda: ConformalClassifier("aps", k_reg=2), ValueError, "k_reg and lam only apply to score='raps'"),
    (lambda: ConformalClassifier("raps", k_reg=-1), ValueError, "k_reg must be >= 0"),
    (lambda: ConformalClassifier("raps", k_reg=1.5), TypeError, "k_reg must be an integer"),
    (lambda: ConformalClassifier("raps", lam=-0.1), ValueError, "lam must be >= 0"),
    (lambda: ConformalClassifier("aps", randomized="yes"), TypeError, "randomized must be True or False"),
    (lambda: ConformalRegressor("quantile"), ValueError, "score must be one of"),
    (lambda: ConformalRegressor("absolute", std="aleatoric"), ValueError, "std only applies to score='normalized'"),
    (lambda: ConformalRegressor("normalized", std="both"), ValueError, "std must be one of"),
])
def test_bad_options(call, error, match):
    with pytest.raises(error, match=match):
        call()


def _probs_with(value_row):
    probs = GOOD_PROBS.clone()
    probs[3] = torch.tensor(value_row)
    return probs


@pytest.mark.parametrize(("probs", "labels", "error", "match"), [
    (_probs_with([0.5, 0.3, 0.3]), GOOD_LABELS, ValueError, "must sum to 1 along the class axis"),
    (_probs_with([1.2, -0.2, 0.0]), GOOD_LABELS, ValueError, "negative entries; pass probabilities"),
    (_probs_with([float("nan"), 0.5, 0.5]), GOOD_LABELS, ValueError, "non-finite"),
    (GOOD_PROBS[None].expand(4, 20, 3), GOOD_LABELS, ValueError, r"samples first.*ClassPrediction or probs.mean\(0\)"),
    (GOOD_PROBS[:, :1] * 0 + 1, GOOD_LABELS, ValueError, "at least 2 classes"),
    (GOOD_PROBS, GOOD_LABELS[:19], ValueError, "labels has 19 entries but the predictions have 20"),
    (GOOD_PROBS, GOOD_LABELS + 3, ValueError, r"labels must lie in \[0, 3\)"),
    (GOOD_PROBS, GOOD_LABELS + 0.5, ValueError, "integer class indices"),
    ("probs", GOOD_LABELS, TypeError, "probs must be a torch tensor or a numpy array"),
])
def test_bad_calibration_input(probs, labels, error, match):
    with pytest.raises(error, match=match):
        ConformalClassifier("aps", 0.1).calibrate(probs, labels)


def test_bad_prediction_input():
    with pytest.raises(ValueError, match=r"not calibrated: call .calibrate"):
        ConformalClassifier("thr").predict_sets(GOOD_PROBS)
    with pytest.raises(ValueError, match=r"not calibrated: call .calibrate"):
        ConformalRegressor().predict_intervals((torch.zeros(3), None))
    cp = ConformalClassifier("aps", 0.1).calibrate(GOOD_PROBS, GOOD_LABELS)
    with pytest.raises(ValueError, match="probs has 4 classes but the classifier was calibrated on 3"):
        cp.predict_sets(torch.full((5, 4), 0.25))
    with pytest.raises(ValueError, match=r"u must have shape \[5\]"):
        cp.predict_sets(GOOD_PROBS[:5], u=torch.rand(4))
    with pytest.raises(ValueError, match=r"u must lie in \[0, 1\]"):
        classification_scores(GOOD_PROBS, "aps", u=torch.full((20,), 1.5))
    with pytest.raises(ValueError, match="threshold must be finite"):
        prediction_sets(GOOD_PROBS, float("inf"), "thr")
    with pytest.raises(ValueError, match="scores contains 1 non-finite"):
        conformal_quantile(torch.tensor([0.1] * 20 + [float("nan")]), 0.1)


def test_bad_regression_input(miscalibrated_regression):
    prediction, y = miscalibrated_regression
    with pytest.raises(TypeError, match="prediction must be a RegressionPrediction or a pair"):
        ConformalRegressor().calibrate(prediction.mean, y)
    with pytest.raises(TypeError, match="must be a RegressionPrediction"):
        mixture_quantiles(ClassPrediction(GOOD_PROBS[None]), 0.5)
    with pytest.raises(ValueError, match=r"y must have shape \[2000\]"):
        ConformalRegressor().calibrate(prediction, y[:10])
    # (a RegressionPrediction may check these itself when it is built: either way a ValueError)
    with pytest.raises(ValueError, match=r"noise must be > 0"):
        ConformalRegressor("cqr").calibrate(RegressionPrediction(prediction.mean, 0 * prediction.noise), y)
    with pytest.raises(ValueError, match=r"must have the same shape \[S, N\]"):
        ConformalRegressor().calibrate(RegressionPrediction(prediction.mean, prediction.noise[:, :5]), y)
    with pytest.raises(ValueError, match=r"one scalar target per input.*mean\[\.\.\., 0\]"):
        ConformalRegressor().calibrate(RegressionPrediction(prediction.mean[..., None], prediction.noise[..., None]), y)
    with pytest.raises(ValueError, match="y contains 1 non-finite"):
        ConformalRegressor().calibrate(prediction, torch.cat([y[:-1], torch.tensor([float("nan")])]))
    with pytest.raises(ValueError, match="mean and std must have the same length"):
        ConformalRegressor("normalized").calibrate((torch.zeros(20), torch.ones(19)), torch.zeros(20))
    with pytest.raises(TypeError, match=r"needs the predictive std: pass \(mean, std\)"):
        ConformalRegressor("normalized").calibrate((torch.zeros(20), None), torch.zeros(20))
    with pytest.raises(ValueError, match=r"std must be > 0 \(score='normalized' divides by it\), got 1 value"):
        ConformalRegressor("normalized").calibrate((torch.zeros(20), torch.arange(20.0)), torch.zeros(20))
    with pytest.raises(ValueError, match=r"a \(mean, std\) pair brings its own std"):
        ConformalRegressor("normalized", std="aleatoric").calibrate((torch.zeros(20), torch.ones(20)), torch.zeros(20))
    with pytest.raises(TypeError, match=r"upper must be a tensor \[N\], got None"):
        ConformalRegressor("cqr").calibrate((torch.zeros(20), None), torch.zeros(20))
    with pytest.raises(ValueError, match=r"level must lie in \(0, 1\)"):
        mixture_quantiles(prediction, [0.5, 1.0])


def test_bad_metric_input():
    with pytest.raises(ValueError, match=r"sets must have shape \[N, C\]"):
        set_coverage(torch.ones(4, dtype=torch.bool), torch.zeros(4))
    with pytest.raises(ValueError, match="sets must be booleans or 0/1"):
        mean_set_size(torch.full((2, 3), 2))
    with pytest.raises(ValueError, match="labels has 3 entries but the sets have 2"):
        class_conditional_coverage(torch.ones(2, 3, dtype=torch.bool), torch.zeros(3))
    with pytest.raises(ValueError, match="lower and upper must have the same length"):
        conformal_interval_metrics(torch.zeros(3), torch.ones(2), torch.zeros(3))
    with pytest.raises(ValueError, match=r"y must have shape \[3\]"):
        conformal_interval_metrics(torch.zeros(3), torch.ones(3), torch.zeros(2))


# ---------------------------------------------------------------------------------------------
# MAPIE as the independent reference (MAPIE >= 1.0: SplitConformalClassifier/Regressor, prefit)
# ---------------------------------------------------------------------------------------------
#
# What agrees, checked against MAPIE 1.6 (the tests pin the behaviour of the installed version):
#
# * Quantile convention: MAPIE takes np.quantile(scores, ceil((n+1)(1-alpha))/n, method="lower"),
#   the same k-th smallest score as ours. MAPIE asks for n >= max(1/alpha, 1/(1-alpha)) (10 at
#   alpha = 0.1) where ours asks only k <= n (9 at alpha = 0.1).
# * LAC ("thr"): the same sets (MAPIE adds a 1e-8 slack to "1 - p_y <= q"; no score lies that
#   close to q here).
# * APS: MAPIE always randomises the calibration scores, cumsum_y - U p_y with U drawn from
#   RandomState(random_state) -- ours with u = 1 - U. At test time:
#     include_last_label="randomized"  == ours with u_test = 1 - U_test (MAPIE's draw);
#     include_last_label=True           == ours with u_test = 0 (the label crossing q is kept);
#     include_last_label=False          == ours with u_test = 1, plus the top label when empty.
#   Ours randomized=False (u = 1 at calibration *and* test, exact sets that may be empty) has no
#   MAPIE counterpart, since MAPIE's calibration is never deterministic.
# * RAPS: MAPIE keeps a random 10 % of the calibration points to choose k_reg and lambda
#   (k* = quantile of the true-label ranks, lambda* from a grid); given those, its held-out split
#   and its draws, the threshold agrees exactly, and
#     include_last_label=True   == ours with u_test = 1 plus the next-ranked label (the
#                                  "sizes_base" of Angelopoulos et al.'s reference code);
#     include_last_label=False  == ours with u_test = 1, plus the top label when empty;
#     "randomized"              == ours with u_test = 1 - U_test on every test point whose set
#                                  before the random removal holds <= k* + 1 labels. Beyond that,
#                                  MAPIE's removal probability divides by p_L - lambda (L - k* - 1)
#                                  instead of the paper's p_L (RAPSConformityScore._compute_v_parameter),
#                                  and keeps the last label more often; ours follows the paper
#                                  (checked against its reference algorithm, transcribed below).
# * Regression, "absolute": the same intervals (SplitConformalRegressor, conformity_score="absolute").
#   "cqr" on the mixture's quantiles: the same intervals as ConformalizedQuantileRegressor with
#   symmetric_correction=True (Romano et al.'s score max(l - y, y - h)). "normalized" against
#   conformity_score="std_normalized": the same upper bounds; MAPIE's lower bound uses the
#   floor((n+1)(1-alpha))-th order statistic (one fewer than the upper one when (n+1) alpha is
#   not an integer), so its intervals are asymmetric -- reproduced below.

SEED = 7


def _mapie():
    mapie = pytest.importorskip("mapie", minversion="1.0")
    warnings.filterwarnings("ignore", module="mapie")
    return mapie


class _Fixed:
    """A prefit scikit-learn estimator whose inputs are row indices into fixed predictions."""

    def __init__(self, values, std=None):
        self.values, self.std = values, std
        self.n_features_in_ = 1
        self.is_fitted_ = True

    def fit(self, X, y):
        return self

    def _rows(self, X):
        return np.asarray(X)[:, 0].astype(int)


def _classifier(probs: np.ndarray):
    from sklearn.base import BaseEstimator, ClassifierMixin

    class FixedClassifier(ClassifierMixin, BaseEstimator, _Fixed):
        def __init__(self, values=None):
            _Fixed.__init__(self, values)
            self.classes_ = np.arange(values.shape[1])

        def predict_proba(self, X):
            return self.values[self._rows(X)]

        def predict(self, X):
            return self.predict_proba(X).argmax(1)

    return FixedClassifier(probs)


def _regressor(values: np.ndarray, std: np.ndarray | None = None):
    from sklearn.base import BaseEstimator, RegressorMixin

    class FixedRegressor(RegressorMixin, BaseEstimator, _Fixed):
        def __init__(self, values=None, std=None):
            _Fixed.__init__(self, values, std)

        def predict(self, X, return_std=False):
            rows = self._rows(X)
            return (self.values[rows], self.std[rows]) if return_std else self.values[rows]

    return FixedRegressor(values, std)


def _class_pool(seed: int, n: int, classes: int, scale: float):
    rng = np.random.default_rng(seed)
    probs = _softmax(scale * rng.normal(size=(n, classes)))
    return probs, _draw_labels(rng, probs)


def _mapie_sets(probs, labels, cal, test, score, alpha, include_last_label):
    _mapie()
    from mapie.classification import SplitConformalClassifier

    model = SplitConformalClassifier(_classifier(probs), confidence_level=1 - alpha, conformity_score=score,
                                     prefit=True, random_state=SEED)
    X = np.arange(len(probs))[:, None]
    model.conformalize(X[cal], labels[cal])
    _, sets = model.predict_set(X[test], conformity_score_params={"include_last_label": include_last_label})
    return model, sets[:, :, 0]


def _mapie_uniforms(n: int) -> np.ndarray:
    """The U that MAPIE draws for n points: a fresh RandomState(random_state) at each use."""
    return np.random.RandomState(SEED).uniform(size=n)


def _plus_next(sets: np.ndarray, probs: np.ndarray) -> np.ndarray:
    """``sets`` (a prefix of each ranking) with the next-ranked label added."""
    order = np.argsort(-probs, axis=1, kind="stable")
    size = np.minimum(sets.sum(1) + 1, probs.shape[1])
    return np.take_along_axis(np.arange(probs.shape[1])[None] < size[:, None], np.argsort(order, 1), 1)


def _with_top(sets: np.ndarray, probs: np.ndarray) -> np.ndarray:
    sets = sets.copy()
    sets[np.arange(len(sets)), probs.argmax(1)] = True
    return sets


@pytest.mark.parametrize("alpha", [0.05, 0.1, 0.2])
def test_thr_sets_are_mapies_lac_sets(alpha):
    probs, labels = _class_pool(0, 900, 6, 2.0)
    cal, test = np.arange(400), np.arange(400, 900)
    _, theirs = _mapie_sets(probs, labels, cal, test, "lac", alpha, True)
    ours = ConformalClassifier("thr", alpha).calibrate(probs[cal], labels[cal]).predict_sets(probs[test])
    assert np.array_equal(ours.numpy(), theirs)
    assert 0 < ours.sum() < ours.numel()  # neither trivial


@pytest.mark.parametrize("alpha", [0.05, 0.1, 0.2])
def test_aps_sets_are_mapies_for_each_test_time_rule(alpha):
    probs, labels = _class_pool(1, 900, 6, 2.0)
    cal, test = np.arange(400), np.arange(400, 900)
    ours = ConformalClassifier("aps", alpha).calibrate(probs[cal], labels[cal], u=1 - _mapie_uniforms(len(cal)))
    model, theirs = _mapie_sets(probs, labels, cal, test, "aps", alpha, True)
    mapie_threshold = float(model._mapie_classifier.conformity_score_function_.quantiles_[0])
    assert ours.threshold_ == pytest.approx(mapie_threshold, abs=1e-12)
    assert np.array_equal(ours.predict_sets(probs[test], u=np.zeros(len(test))).numpy(), theirs)
    _, theirs = _mapie_sets(probs, labels, cal, test, "aps", alpha, "randomized")
    assert np.array_equal(ours.predict_sets(probs[test], u=1 - _mapie_uniforms(len(test))).numpy(), theirs)
    _, theirs = _mapie_sets(probs, labels, cal, test, "aps", alpha, False)
    assert np.array_equal(_with_top(ours.predict_sets(probs[test], u=np.ones(len(test))).numpy(), probs[test]), theirs)


def _paper_raps_sizes(probs, threshold, k_reg, lam, uniforms):
    """Randomised RAPS set sizes by Angelopoulos et al.'s reference code (``gcq``, transcribed)."""
    n, c = probs.shape
    order = np.argsort(-probs, axis=1, kind="stable")
    ordered = np.take_along_axis(probs, order, 1)
    cumsum = ordered.cumsum(1)
    penalties_cumsum = (lam * (np.arange(1, c + 1) > k_reg)).cumsum()
    sizes_base = np.minimum(((cumsum + penalties_cumsum) <= threshold).sum(1) + 1, c)
    last = sizes_base - 1
    rows = np.arange(n)
    v = (threshold - (cumsum[rows, last] - ordered[rows, last]) - penalties_cumsum[last]) / ordered[rows, last]
    return sizes_base - (uniforms >= v), sizes_base


def _raps_against_mapie(probs, labels, cal, test, alpha):
    from sklearn.model_selection import StratifiedShuffleSplit

    model, include_last = _mapie_sets(probs, labels, cal, test, "raps", alpha, True)
    scorer = model._mapie_classifier.conformity_score_function_
    k_star, lam_star = int(np.ravel(scorer.k_star)[0]), float(scorer.lambda_star)
    # MAPIE's held-out part, to choose k* and lambda*: recompute its split and check it
    kept, held_out = next(StratifiedShuffleSplit(n_splits=1, test_size=None, random_state=SEED)
                          .split(cal[:, None], labels[cal]))
    assert np.array_equal(cal[held_out], scorer.X_raps[:, 0])
    rest = cal[kept]
    ours = ConformalClassifier("raps", alpha, k_reg=k_star, lam=lam_star).calibrate(
        probs[rest], labels[rest], u=1 - _mapie_uniforms(len(rest)))
    assert ours.threshold_ == pytest.approx(float(scorer.quantiles_[0]), abs=1e-12)
    exact = ours.predict_sets(probs[test], u=np.ones(len(test))).numpy()
    assert np.array_equal(_plus_next(exact, probs[test]), include_last)
    _, theirs = _mapie_sets(probs, labels, cal, test, "raps", alpha, False)
    assert np.array_equal(_with_top(exact, probs[test]), theirs)
    uniforms = _mapie_uniforms(len(test))
    randomized = ours.predict_sets(probs[test], u=1 - uniforms).numpy()
    _, theirs = _mapie_sets(probs, labels, cal, test, "raps", alpha, "randomized")
    paper_sizes, sizes_base = _paper_raps_sizes(probs[test], ours.threshold_, k_star, lam_star, 1 - uniforms)
    assert np.array_equal(randomized.sum(1), paper_sizes)
    return randomized, theirs, sizes_base, k_star


def test_raps_sets_are_mapies_given_its_k_and_lambda():
    probs, labels = _class_pool(0, 1000, 8, 1.0)
    randomized, theirs, sizes_base, k_star = _raps_against_mapie(probs, labels, np.arange(500),
                                                                 np.arange(500, 1000), 0.1)
    assert bool((sizes_base <= k_star + 1).all())  # MAPIE follows the paper on all of them
    assert np.array_equal(randomized, theirs)


def test_randomised_raps_departs_from_mapie_only_where_its_removal_rule_departs_from_the_paper():
    probs, labels = _class_pool(0, 1000, 15, 1.0)  # both kinds of test points (400 and 100 of them)
    randomized, theirs, sizes_base, k_star = _raps_against_mapie(probs, labels, np.arange(500),
                                                                 np.arange(500, 1000), 0.1)
    paper_rows = sizes_base <= k_star + 1
    assert paper_rows.any() and not paper_rows.all()
    assert np.array_equal(randomized[paper_rows], theirs[paper_rows])
    differ = (randomized != theirs).any(1)
    assert differ.any() and not differ[paper_rows].any()
    assert bool((theirs[differ] >= randomized[differ]).all())  # MAPIE keeps the last label more often


def _regression_case():
    prediction, y = _regression_pool(2, 900, samples=30)
    cal, test = np.arange(400), np.arange(400, 900)
    return prediction, y.numpy(), cal, test, np.arange(900)[:, None]


@pytest.mark.parametrize("alpha", [0.05, 0.1, 0.2])
def test_absolute_and_cqr_intervals_are_mapies(alpha):
    _mapie()
    from mapie.regression import ConformalizedQuantileRegressor, SplitConformalRegressor

    prediction, y, cal, test, X = _regression_case()
    mu = prediction.predictive_mean.numpy()
    model = SplitConformalRegressor(_regressor(mu), confidence_level=1 - alpha, conformity_score="absolute",
                                    prefit=True)
    _, theirs = model.conformalize(X[cal], y[cal]).predict_interval(X[test])
    ours = ConformalRegressor("absolute", alpha).calibrate(_subset(prediction, cal), y[cal])
    lower, upper = ours.predict_intervals(_subset(prediction, test))
    np.testing.assert_allclose(lower.numpy(), theirs[:, 0, 0], rtol=0, atol=1e-12)
    np.testing.assert_allclose(upper.numpy(), theirs[:, 1, 0], rtol=0, atol=1e-12)

    low, high = mixture_quantiles(prediction, [alpha / 2, 1 - alpha / 2]).numpy()
    model = ConformalizedQuantileRegressor([_regressor(low), _regressor(high), _regressor(mu)],
                                           confidence_level=1 - alpha, prefit=True)
    _, theirs = model.conformalize(X[cal], y[cal]).predict_interval(X[test], symmetric_correction=True)
    lower, upper = ConformalRegressor("cqr", alpha).calibrate(_subset(prediction, cal), y[cal]).predict_intervals(
        _subset(prediction, test))
    np.testing.assert_allclose(lower.numpy(), theirs[:, 0, 0], rtol=0, atol=1e-12)
    np.testing.assert_allclose(upper.numpy(), theirs[:, 1, 0], rtol=0, atol=1e-12)


@pytest.mark.parametrize("alpha", [0.05, 0.1, 0.2])
def test_normalized_intervals_against_mapies_std_normalized(alpha):
    _mapie()
    from mapie.regression import SplitConformalRegressor

    prediction, y, cal, test, X = _regression_case()
    mu, sd = prediction.predictive_mean.numpy(), prediction.variance.sqrt().numpy()
    model = SplitConformalRegressor(_regressor(mu, sd), confidence_level=1 - alpha,
                                    conformity_score="std_normalized", prefit=True)
    _, theirs = model.conformalize(X[cal], y[cal]).predict_interval(X[test])
    ours = ConformalRegressor("normalized", alpha).calibrate(_subset(prediction, cal), y[cal])
    _, upper = ours.predict_intervals(_subset(prediction, test))
    np.testing.assert_allclose(upper.numpy(), theirs[:, 1, 0], rtol=0, atol=1e-12)
    n = len(cal)
    rank = n + 1 - math.ceil(alpha * (n + 1))  # MAPIE's lower order statistic
    lower_quantile = np.sort(ours.scores_.numpy())[rank - 1]
    np.testing.assert_allclose(mu[test] - lower_quantile * sd[test], theirs[:, 0, 0], rtol=0, atol=1e-12)


# ----------------------------------------------------------------------- trials over random splits
def test_random_splits_partition_the_points_and_are_seeded():
    from bayesdl.evaluation import random_splits

    splits = list(random_splits(10, 4, 3, seed=1))
    assert len(splits) == 3
    for cal, test in splits:
        assert len(cal) == 4 and len(test) == 6 and sorted(torch.cat([cal, test]).tolist()) == list(range(10))
    again = list(random_splits(10, 4, 3, seed=1))
    assert all(torch.equal(a[0], b[0]) for a, b in zip(splits, again))
    with pytest.raises(ValueError, match="must leave test points"):
        next(random_splits(10, 10, 1))


def test_split_conformal_trials_is_the_mean_of_the_splits_it_draws():
    """The function's mean coverage equals the hand-written loop over the same splits, and lies in
    the guarantee for a miscalibrated regression predictive."""
    from bayesdl.evaluation import (
        ConformalRegressor,
        conformal_interval_metrics,
        random_splits,
        split_conformal_trials,
    )

    generator = torch.Generator().manual_seed(0)
    n = 400
    mean = torch.randn(n, generator=generator)
    y = mean + 2.0 * torch.randn(n, generator=generator)  # the predictive says std 1 or so: too narrow
    std = 1.0 + 0.1 * torch.rand(n, generator=generator)
    out = split_conformal_trials(lambda t: ConformalRegressor("normalized", 0.1), (mean, std), y, trials=50, seed=3)
    by_hand = []
    for cal, test in random_splits(n, n // 2, 50, seed=3):
        regressor = ConformalRegressor("normalized", 0.1).calibrate((mean[cal], std[cal]), y[cal])
        by_hand.append(conformal_interval_metrics(*regressor.predict_intervals((mean[test], std[test])), y[test]))
    assert out["coverage"] == pytest.approx(sum(m["coverage"] for m in by_hand) / 50, abs=1e-12)
    assert out["size"] == pytest.approx(sum(m["mean_width"] for m in by_hand) / 50, abs=1e-9)
    assert out["guarantee_low"] - 3 * out["coverage_se"] <= out["coverage"] <= out["guarantee_high"] + 3 * out["coverage_se"]
    with pytest.raises(TypeError, match="ConformalClassifier or ConformalRegressor"):
        split_conformal_trials(lambda t: None, (mean, std), y, trials=2)

