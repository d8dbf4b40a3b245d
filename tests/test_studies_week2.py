"""The week-2 studies in quick mode, and `bdl diagnose` on their output."""

import json

import numpy as np
import pytest

from bayesdl.experiments.cli import main
from bayesdl.experiments.diagnose import diagnose


@pytest.fixture(scope="module")
def logistic_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("runs") / "logistic"
    assert main(["run", "logistic-2d", "--quick", "--out", str(out), "--no-progress"]) == 0
    return out


@pytest.mark.slow
def test_logistic_quick_run(logistic_run):
    metrics = json.loads((logistic_run / "metrics.json").read_text())
    r = metrics["results"]
    assert set(r) == {"map", "laplace", "mean_field", "sghmc", "nuts"}
    for method in r.values():
        assert {"accuracy", "nll", "ece", "mean_confidence_far", "tv_to_nuts"} <= set(method)
        assert method["accuracy"] > 0.9  # the blobs are separable
    # what the course shows: MAP stays confident far from the data, Laplace and NUTS do not
    assert r["map"]["mean_confidence_far"] > r["laplace"]["mean_confidence_far"]
    assert r["map"]["mean_confidence_far"] > r["nuts"]["mean_confidence_far"]
    # the approximations of the posterior are closer to NUTS than the point estimate is
    assert r["laplace"]["tv_to_nuts"] < r["map"]["tv_to_nuts"]
    assert r["mean_field"]["tv_to_nuts"] < r["map"]["tv_to_nuts"]
    assert r["nuts"]["max_r_hat"] < 1.1
    for name in ("uncertainty_maps.png", "training_curves.png", "nuts_rank.png", "inference_nuts.nc",
                 "inference_map.nc", "report.md"):
        assert (logistic_run / name).stat().st_size > 0


def test_logistic_saved_draws_and_loo_agree_with_a_hand_computation(logistic_run):
    """The saved NUTS log-likelihoods are those of logistic regression at the saved draws on the
    study's training data, recomputed here by hand; the reported elpd_loo lies below the in-sample
    log predictive density (a harmonic mean of likelihoods is below their arithmetic mean) by
    p_loo, at most about the number of parameters (3) for this regular model."""
    from bayesdl.evaluation.diagnostics import load
    from bayesdl.experiments.data import linear_blobs

    idata = load(logistic_run / "inference_nuts.nc")
    x, y = linear_blobs(40, seed=0)  # the quick study's training set (seed 0)
    w = idata.posterior["weight"].values  # [chains, draws, 1, 2]
    b = idata.posterior["bias"].values  # [chains, draws, 1]
    f = np.einsum("cdok,nk->cdn", w, x.double().numpy()) + b
    expected = np.where(y.numpy() == 1, -np.logaddexp(0, -f), -np.logaddexp(0, f))
    np.testing.assert_allclose(idata.log_likelihood["y"].values, expected, rtol=1e-5, atol=1e-6)
    log_lik = expected.reshape(-1, expected.shape[-1])
    lppd = float((np.logaddexp.reduce(log_lik, axis=0) - np.log(len(log_lik))).sum())
    elpd_loo = json.loads((logistic_run / "metrics.json").read_text())["results"]["nuts"]["elpd_loo"]
    assert 0 < lppd - elpd_loo < 3


@pytest.mark.slow
def test_diagnose_shows_the_saved_run_again(logistic_run, tmp_path):
    text = diagnose(logistic_run, plots=tmp_path)
    assert "nuts: convergence" in text and "max R-hat" in text
    assert "PSIS-LOO comparison" in text
    assert (tmp_path / "rank_nuts.png").stat().st_size > 0
    assert main(["diagnose", str(logistic_run)]) == 0


def test_diagnose_errors(tmp_path, capsys):
    assert main(["diagnose", str(tmp_path)]) == 2
    assert "no ArviZ data" in capsys.readouterr().err
    assert main(["diagnose", str(tmp_path / "missing")]) == 2


@pytest.mark.slow
def test_two_moons_quick_run(tmp_path):
    out = tmp_path / "moons"
    assert main(["run", "two-moons", "--quick", "--out", str(out), "--no-progress"]) == 0
    r = json.loads((out / "metrics.json").read_text())["results"]
    assert set(r) == {"map", "mean_field", "mc_dropout", "laplace", "sghmc", "csgmcmc", "nuts"}
    assert {"mc_error_10_samples", "roughness_10_samples"} <= set(r["mc_dropout"])
    assert "roughness_10_samples" not in r["nuts"]  # NUTS draws are picked deterministically
    report = (out / "report.md").read_text()
    assert "MC dropout" in report and "mean_field" not in report.split("## Diagnostics")[0]
    assert "**Quick mode**" in report.splitlines()[2]  # under the title: not the study's results
    assert "converged" in report and "Pareto k > 0.7" in report
    assert all(m["accuracy"] > 0.85 for m in r.values())
    # a point mass has no epistemic part; every posterior has some far from the data
    assert r["map"]["mean_mutual_information_far"] == 0.0
    assert all(r[m]["mean_mutual_information_far"] > 0.01 for m in ("mean_field", "mc_dropout", "laplace", "nuts"))
    # the SG-MCMC rows: chains ArviZ judges, TV to NUTS like the other rows, their cost recorded
    for name in ("sghmc", "csgmcmc"):
        assert {"tv_to_nuts", "max_r_hat", "min_ess_bulk"} <= set(r[name])
        assert (out / f"inference_{name}.nc").stat().st_size > 0 and (out / f"{name}_rank.png").stat().st_size > 0
    assert "SG-MCMC against NUTS" in report
    # the saved NUTS log-likelihoods: the 2-16-2 ReLU network at the saved draws, written out here
    from bayesdl.evaluation.diagnostics import load
    from bayesdl.experiments.data import two_moons

    idata = load(out / "inference_nuts.nc")
    p = idata.posterior
    x, y = two_moons(60, noise=0.15, seed=0)  # the quick study's training set (seed 0)
    hidden = np.einsum("cdhk,nk->cdnh", p["body.0.weight"].values, x.double().numpy()) + p["body.0.bias"].values[:, :, None]
    logits = np.einsum("cdnh,cdoh->cdno", np.maximum(hidden, 0), p["head.weight"].values) + p["head.bias"].values[:, :, None]
    log_probs = logits - np.logaddexp.reduce(logits, axis=-1, keepdims=True)
    expected = np.take_along_axis(log_probs, y.numpy()[None, None, :, None], -1)[..., 0]
    np.testing.assert_allclose(idata.log_likelihood["y"].values, expected, rtol=1e-5, atol=1e-5)
