import numpy as np
import pytest
from sklearn.metrics import average_precision_score, roc_auc_score

from bayesdl.evaluation import aupr_error, failure_metrics, fpr_at_tpr, ood_metrics


def test_failure_metrics_hand_computed():
    conf = [0.9, 0.8, 0.7, 0.6]
    correct = [True, True, False, True]
    m = failure_metrics(conf, correct)
    assert m["auroc"] == pytest.approx(2 / 3)
    # errors ranked by low confidence: order 0.6 (correct), 0.7 (error) -> AP = 1/2
    assert m["aupr_error"] == pytest.approx(0.5)
    # accepting all 3 correct (tpr 1 >= 0.95) needs threshold 0.6, which accepts the error too
    assert m["fpr_at_95_tpr"] == pytest.approx(1.0)


def test_fpr_at_95_tpr_threshold_rule():
    # 20 positives with scores 1..20, 10 negatives with scores 0.5..9.5
    pos = np.arange(1, 21, dtype=float)
    neg = np.arange(10) + 0.5
    scores = np.concatenate([pos, neg])
    positive = np.concatenate([np.ones(20, bool), np.zeros(10, bool)])
    # 95% of 20 = 19 positives -> threshold 2 -> negatives >= 2: 2.5 .. 9.5 = 8 of 10
    assert fpr_at_tpr(positive, scores, 0.95) == pytest.approx(0.8)


def test_failure_metrics_match_sklearn():
    rng = np.random.default_rng(0)
    correct = rng.random(500) < 0.8
    conf = np.clip(rng.normal(0.7, 0.1, 500) + 0.15 * correct, 0, 1)
    m = failure_metrics(conf, correct)
    assert m["aupr_error"] == pytest.approx(average_precision_score(~correct, -conf))
    assert aupr_error(conf, correct.astype(float)) == m["aupr_error"]  # 0/1 floats accepted
    assert m["aupr_success"] == pytest.approx(average_precision_score(correct, conf))
    assert m["auroc"] == pytest.approx(roc_auc_score(correct, conf))
    assert 0 <= m["fpr_at_95_tpr"] <= 1


def test_ood_metrics_perfect_and_reversed():
    perfect = ood_metrics([0.9, 0.8, 0.95], [0.1, 0.2])
    assert perfect == {"auroc": 1.0, "aupr_in": 1.0, "aupr_out": 1.0, "fpr_at_95_tpr": 0.0}
    reversed_ = ood_metrics([0.1, 0.2], [0.9, 0.8, 0.95])
    assert reversed_["auroc"] == 0.0 and reversed_["fpr_at_95_tpr"] == 1.0


def test_ood_metrics_match_sklearn():
    rng = np.random.default_rng(1)
    s_in, s_out = rng.normal(1, 1, 300), rng.normal(0, 1, 200)
    m = ood_metrics(s_in, s_out)
    labels = np.r_[np.ones(300), np.zeros(200)]
    scores = np.r_[s_in, s_out]
    assert m["auroc"] == pytest.approx(roc_auc_score(labels, scores))
    assert m["aupr_in"] == pytest.approx(average_precision_score(labels, scores))
    assert m["aupr_out"] == pytest.approx(average_precision_score(1 - labels, -scores))
    threshold = np.sort(s_in)[::-1][int(np.ceil(0.95 * 300)) - 1]
    assert m["fpr_at_95_tpr"] == pytest.approx((s_out >= threshold).mean())


@pytest.mark.parametrize(
    "call, message",
    [
        (lambda: ood_metrics([], [0.1]), "empty"),
        (lambda: ood_metrics([0.5, float("nan")], [0.1]), "non-finite"),
        (lambda: failure_metrics([0.9, 0.8], [True, True]), "at least one correct and one wrong"),
        (lambda: failure_metrics([0.9, 0.8], [True]), "same length"),
        (lambda: aupr_error([0.9, 0.8], [False, False]), "at least one correct and one wrong"),
        (lambda: failure_metrics([0.9, 0.8], [2, 0]), "0/1"),
        (lambda: ood_metrics([[0.9]], [0.1]), r"shape \[N\]"),
    ],
)
def test_bad_input(call, message):
    with pytest.raises(ValueError, match=message):
        call()
