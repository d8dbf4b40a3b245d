"""``bdl run influence`` and ``bdl run random-labels`` in quick mode on the real MNIST, and a rerun
that reads every finished piece back from the cache (verified) instead of recomputing it."""

import json

import pytest

from bayesdl.experiments.cli import main

pytestmark = [pytest.mark.data, pytest.mark.slow]


def _run(study, folder, cache, data_root, *settings):
    args = ["run", study, "--quick", "--out", str(folder), "--data-root", str(data_root), "--cache-dir", str(cache),
            "--no-progress", *(a for s in settings for a in ("--set", s))]
    assert main(args) == 0
    return json.loads((folder / "metrics.json").read_text())


def test_influence_quick_and_resumed(tmp_path, data_root):
    cache = tmp_path / "cache"
    metrics = _run("influence", tmp_path / "a", cache, data_root)
    lr = metrics["results"]["logistic_regression"]
    (removal,) = lr["removals"].values()
    assert len(removal["predicted"]) == len(removal["actual"]) == 8
    assert -1 <= removal["pearson_r"] <= 1
    mislabel = metrics["results"]["mislabel"]
    assert mislabel["flipped"] == 50 and set(mislabel["self_influence"]) == set(mislabel["training_loss"])
    cnn = metrics["results"]["cnn"]
    (image,) = cnn["images"]
    assert len(image["actual"]) == 4 and cnn["weights"] == 1020
    assert {(r["curvature"], r["damping"]) for r in image["rows"].values()} == {
        (c, d) for c in ("exact", "ggn", "kfac", "ekfac") for d in (0.0, 0.01)}
    # every row predicts, or (the exact Hessian, undamped, away from a strict minimum) says why not
    for r in image["rows"].values():
        assert (r["predicted"] is None) == (r["error"] is not None) == (r["pearson_r"] is None)
        assert r["predicted"] is None or (len(r["predicted"]) == 4 and -1 <= r["pearson_r"] <= 1)
        assert r["error"] is None or (r["curvature"] == "exact" and "not positive definite" in r["error"])
    assert image["rows"]["exact@0.01"]["predicted"] is not None  # the damped Hessian always predicts here
    lenet = metrics["results"]["lenet_mislabel"]
    assert lenet["flipped"] == 50 and set(lenet["runs"]) == {"1"}
    (run,) = lenet["runs"].values()
    assert all(0 <= v <= 1 for key in ("self_influence", "training_loss") for v in run[key].values())
    assert run["self_influence"]["0.5"] >= run["self_influence"]["0.1"]  # shares grow with the inspected part
    for name in ("predicted_vs_actual.png", "influential_images.png", "mislabel_detection.png",
                 "cnn_predicted_vs_actual.png", "lenet_mislabel_detection.png"):
        assert (tmp_path / "a" / name).stat().st_size > 0
    again = _run("influence", tmp_path / "b", cache, data_root)  # from the cached pieces
    assert again["results"] == metrics["results"]


def test_random_labels_quick(tmp_path, data_root):
    metrics = _run("random-labels", tmp_path / "a", tmp_path / "cache", data_root)
    runs = metrics["results"]["runs"]["0"]
    assert set(runs) == {"0", "0.5", "1"}
    assert runs["0"]["replaced"] == 0 and runs["1"]["replaced"] > 0.8  # p = 1: 9 in 10 change class
    assert all(r["log_marglik"] < 0 for r in runs.values())
    assert (tmp_path / "a" / "random_labels.png").stat().st_size > 0


def test_random_labels_train_until_fitted(tmp_path, data_root):
    # fit_to trains on past `epochs` until the noisy labels are fitted (Zhang et al.), within max_epochs
    metrics = _run("random-labels", tmp_path / "a", tmp_path / "cache", data_root, "noise=0.5", "fit_to=0.95",
                   "max_epochs=40")
    (row,) = metrics["results"]["runs"]["0"].values()
    assert row["epochs_run"] > 3  # quick: 3 epochs fit 42.5% of these labels
    assert row["train_accuracy"] >= 0.95 or row["epochs_run"] == 40
    assert metrics["config"]["fit_to"] == 0.95
