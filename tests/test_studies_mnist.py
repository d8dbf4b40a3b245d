"""The four MNIST studies in quick mode on the real datasets, sharing a network cache."""

import json

import pytest

from bayesdl.experiments.cli import main

pytestmark = [pytest.mark.data, pytest.mark.slow]


@pytest.fixture(scope="module")
def runs(tmp_path_factory, data_root):
    base = tmp_path_factory.mktemp("mnist")
    cache = base / "cache"
    out = {}
    for study in ("mnist-dropout", "failure", "calibration", "ood"):
        folder = base / study
        args = ["run", study, "--quick", "--out", str(folder), "--data-root", str(data_root),
                "--cache-dir", str(cache), "--no-progress"]
        if study == "failure":  # both networks, side by side; ConfidNet on 3 passes instead of the quick 2
            args += ["--set", "networks=lenet,corbiere", "--set", "confidnet_passes=3"]
        assert main(args) == 0
        out[study] = json.loads((folder / "metrics.json").read_text()), folder
    return out


def test_mnist_dropout(runs):
    metrics, folder = runs["mnist-dropout"]
    r = metrics["results"]
    assert {"accuracy", "error"} <= set(r["deterministic"])
    assert {"accuracy_t5", "accuracy_t10", "error_t10"} <= set(r["mc_dropout"])
    assert r["uncertainty"]["mean_variation_ratio_wrong"] > r["uncertainty"]["mean_variation_ratio_correct"]
    assert len(r["rotated_digit"]["predicted_labels"]) == 11
    for name in ("most_uncertain.png", "least_uncertain.png", "rotated_digit.png", "uncertainty_histograms.png"):
        assert (folder / name).stat().st_size > 0


def test_networks_are_cached_across_studies(runs):
    assert runs["mnist-dropout"][0]["config"]["train_seconds"]["dropout"] > 0
    assert runs["failure"][0]["config"]["networks"]["lenet"]["train_seconds"]["dropout"] == 0  # loaded, not retrained


def test_calibration(runs):
    r = runs["calibration"][0]["results"]
    assert set(r) == {"map", "mc_dropout", "mean_field", "laplace", "deep_ensemble", "multiswag", "sghmc", "csghmc"}
    for row in r.values():
        assert {"ece", "ece_after", "nll", "nll_after", "brier", "temperature"} <= set(row)
        assert row["nll_after"] <= row["nll"] + 0.05  # fitted on validation, so no guarantee on test


def test_calibration_conformal_sets_keep_their_guarantee(runs):
    """Every method's conformal sets, every score and alpha: the mean coverage over the random
    splits lies in [1 - alpha, 1 - alpha + 1/(n + 1)] up to its Monte-Carlo error (3 SE), and a
    smaller alpha never buys smaller sets."""
    metrics, folder = runs["calibration"]
    for row in metrics["results"].values():
        for score in ("thr", "aps", "raps"):
            cells = row["conformal"][score]
            for alpha, cell in cells.items():
                slack = 3 * cell["coverage_se"]
                assert cell["guarantee_low"] - slack <= cell["coverage"] <= cell["guarantee_high"] + slack, alpha
                assert cell["within_guarantee"] and cell["trials"] == 20 and cell["calibration_size"] == 500
            assert cells["alpha_0.01"]["set_size"] >= cells["alpha_0.05"]["set_size"] >= cells["alpha_0.1"]["set_size"]
    assert (folder / "conformal_set_sizes.png").stat().st_size > 0


def test_ensembles_are_served_by_the_network_cache(runs):
    config = runs["calibration"][0]["config"]
    # members 1..4 of the deep ensemble were trained here (member 0 is the map row's network)
    assert {f"map_seed{s}" for s in range(1, 5)} <= set(config["train_seconds"])
    cost = config["training_cost_seconds"]
    assert cost["deep_ensemble"] > cost["map"] > 0
    assert cost["multiswag"] > cost["deep_ensemble"]  # SWAG phases on top of the same five MAPs
    ood = runs["ood"][0]["config"]
    assert all(ood["train_seconds"][f"map_seed{s}"] == 0 for s in range(1, 5))  # loaded from the cache
    assert ood["training_cost_seconds"]["deep_ensemble_entropy"] == cost["deep_ensemble"]


def test_sgmcmc_rows_sample_for_the_ensembles_budget_and_are_served_by_their_checkpoints(runs):
    """One chain of members x epochs epochs (the deep ensemble's budget), cSGHMC one cycle per member;
    the ood run loads both from their checkpoints and counts what they cost when they ran."""
    config = runs["calibration"][0]["config"]
    sghmc, csghmc = config["sgmcmc"]["sghmc"], config["sgmcmc"]["csgmcmc"]
    assert sghmc["epochs"] == csghmc["epochs"] == 5 * config["epochs"] and csghmc["cycles"] == 5
    assert sghmc["num_chains"] == csghmc["num_chains"] == 1
    cost, ood = config["training_cost_seconds"], runs["ood"][0]["config"]
    assert cost["csghmc"] > 0 and cost["sghmc"] > 0
    assert ood["training_cost_seconds"]["csghmc_entropy"] == cost["csghmc"]
    assert ood["training_cost_seconds"]["sghmc_mi"] == cost["sghmc"]
    assert "SGHMC and cSGHMC" in (runs["calibration"][1] / "report.md").read_text()


def test_a_run_from_the_cache_gives_the_numbers_of_the_run_that_trained(runs, tmp_path, data_root):
    metrics, folder = runs["calibration"]  # trained the MAP and mean-field networks
    assert metrics["config"]["train_seconds"]["map"] > 0
    cache = folder.parent / "cache"
    args = ["run", "calibration", "--quick", "--out", str(tmp_path / "again"), "--data-root", str(data_root),
            "--cache-dir", str(cache), "--no-progress"]
    assert main(args) == 0
    again = json.loads((tmp_path / "again" / "metrics.json").read_text())
    assert again["config"]["train_seconds"]["map"] == 0
    assert again["results"] == metrics["results"]


def test_failure(runs):
    metrics, folder = runs["failure"]
    assert set(metrics["results"]) == {"lenet", "corbiere"}
    assert "SmallConvNet" in metrics["config"]["networks"]["corbiere"]["architecture"]
    assert metrics["config"]["networks"]["corbiere"]["train_seconds"]["dropout"] > 0  # its own network
    assert any(p.name.startswith("corbiere-dropout-") for p in (folder.parent / "cache").iterdir())
    for network in ("lenet", "corbiere"):
        assert metrics["config"]["networks"][network]["confidnet_passes"] == 3  # the option reached the head
        r = metrics["results"][network]["seed0"]
        assert set(r) == {"mcp", "mc_dropout", "confidnet", "tcp_oracle"}
        # the oracle knows the true class: no learned confidence can rank errors better
        assert all(r["tcp_oracle"]["aupr_error"] >= r[k]["aupr_error"] for k in ("mcp", "mc_dropout", "confidnet"))
        for k in ("mcp", "mc_dropout"):
            gap = r["confidnet"][f"aupr_error_minus_{k}"]
            assert gap == pytest.approx(r["confidnet"]["aupr_error"] - r[k]["aupr_error"])
            assert r["confidnet"][f"aupr_error_minus_{k}_ci_low"] <= r["confidnet"][f"aupr_error_minus_{k}_ci_high"]
        assert metrics["results"][network]["mean"]["mcp"]["aupr_error"] == r["mcp"]["aupr_error"]  # one seed
    report = (folder / "report.md").read_text()
    assert "## corbiere" in report and "45.89" in report  # the paper's ConfidNet, beside ours


def test_ood(runs):
    r = runs["ood"][0]["results"]
    assert set(r) == {"mcp", "entropy", "mutual_information", "odin", "laplace", "deep_ensemble_entropy",
                      "deep_ensemble_mi", "multiswag_entropy", "multiswag_mi", "sghmc_entropy", "sghmc_mi",
                      "csghmc_entropy", "csghmc_mi"}
    for row in r.values():
        for s in ("kmnist", "fashion_mnist"):
            assert {f"auroc_{s}", f"aupr_in_{s}", f"aupr_out_{s}", f"fpr_at_95_tpr_{s}"} <= set(row)
        assert row["auroc"] == pytest.approx((row["auroc_kmnist"] + row["auroc_fashion_mnist"]) / 2)
    assert {"temperature", "epsilon"} <= set(r["odin"])


def test_missing_dataset_is_a_clear_error(tmp_path, capsys):
    assert main(["run", "ood", "--quick", "--out", str(tmp_path / "x"), "--data-root", str(tmp_path)]) == 2
    assert "was not found under" in capsys.readouterr().err
