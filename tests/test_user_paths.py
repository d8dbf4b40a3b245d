"""The paths users of peer libraries expect: a plain PyTorch network under Laplace, the probit
predictive through the Posterior, any map-style dataset in ``fit``, diagnostics that say when they
mean nothing, and progress that stays readable in a log."""

from __future__ import annotations

import math
import warnings

import arviz as az
import numpy as np
import pytest
import torch
import torch.nn as nn
from torch.utils.data import DataLoader, IterableDataset, TensorDataset
from toy_data import blobs

from bayesdl.evaluation.diagnostics import convergence_verdict, summary, worst_components
from bayesdl.evaluation.plotting import plot_precision_recall, plot_roc
from bayesdl.inference import (
    DropoutGuide,
    MAPGuide,
    Posterior,
    approximate,
    fit,
    fit_laplace,
    laplace,
    to_inference_data,
)
from bayesdl.models import BNN, MLP


def _blobs(n: int):
    return blobs(n, centers=((2.0, 0.0), (-2.0, 1.0), (0.0, -2.0)), noise=0.6)


def _plain_network(x, y, steps=150):
    """A classifier trained with plain PyTorch (cross-entropy, no prior), as a user has it."""
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(2, 8), nn.Tanh(), nn.Linear(8, 3))
    opt = torch.optim.Adam(net.parameters(), lr=0.05)
    for _ in range(steps):
        opt.zero_grad()
        nn.functional.cross_entropy(net(x), y).backward()
        opt.step()
    return net


# ----------------------------------------------------------------------------- data
def test_fit_accepts_a_map_style_dataset_like_a_tuple():
    x, y = _blobs(120)
    runs = []
    for data in (TensorDataset(x, y), (x, y)):
        torch.manual_seed(0)
        model = BNN(MLP(2, 8, 3), likelihood="categorical")
        runs.append(fit(model, MAPGuide(model), data, epochs=2, batch_size=32, seed=0, progress=False))
    assert runs[0].history.dataset_size == len(x)
    for a, b in zip(runs[0].point_estimate().values(), runs[1].point_estimate().values()):
        torch.testing.assert_close(a, b)  # same batches, same seed: the same fit


def test_fit_refuses_an_iterable_dataset_with_a_way_out():
    class Stream(IterableDataset):
        def __iter__(self):
            yield torch.zeros(2), torch.tensor(0)

    model = BNN(MLP(2, 4, 3), likelihood="categorical")
    with pytest.raises(TypeError, match="wrap an IterableDataset in a DataLoader"):
        fit(model, MAPGuide(model), Stream(), epochs=1, progress=False)


# ----------------------------------------------------------------------------- Laplace
def test_laplace_around_a_plain_pytorch_network():
    x, y = _blobs(120)
    net = _plain_network(x, y)
    before = {k: v.clone() for k, v in net.state_dict().items()}
    posterior = fit_laplace(net, DataLoader(TensorDataset(x, y), batch_size=50), "last_layer", "kron",
                            likelihood="categorical")
    # The MAP is the user's network, which is left as it was and stays trainable.
    torch.testing.assert_close(posterior.predict(x, num_samples=1).probs.shape, torch.Size([1, 120, 3]))
    for key, value in net.state_dict().items():
        torch.testing.assert_close(value, before[key])
    assert all(p.requires_grad for p in net.parameters())
    mean_logits = posterior.bnn.network(x, posterior.point_estimate())
    torch.testing.assert_close(mean_logits, net(x).detach())
    # The same through the registry, with all weights.
    full = approximate("laplace", net, (x, y), likelihood="categorical", subset="all", structure="full")
    assert full.method == "laplace"
    assert full.predictive_probs(x[:4], link_approx="probit").shape == (4, 3)


@pytest.mark.parametrize("call, error, message", [
    (lambda net, x, y: laplace(net), TypeError, "needs its likelihood"),
    (lambda net, x, y: laplace(BNN(net, likelihood="categorical")), TypeError, "holds no trained weights"),
    (lambda net, x, y: approximate("laplace", net, (x, y), likelihood="categorical", epochs=3), TypeError,
     "its own MAP"),
])
def test_laplace_plain_network_errors(call, error, message):
    x, y = _blobs(30)
    with pytest.raises(error, match=message):
        call(nn.Sequential(nn.Linear(2, 3)), x, y)


def test_probit_predictive_through_the_posterior():
    x, y = _blobs(120)
    net = _plain_network(x, y)
    la = laplace(net, "all", "full", likelihood="categorical").fit((x, y)).optimize_prior_precision()
    posterior = Posterior(la.model, la)
    far = torch.tensor([[25.0, -20.0], [-30.0, 30.0]])
    inputs = torch.cat([x[:5], far])
    probit = posterior.predictive_probs(inputs, link_approx="probit", batch_size=3)
    # MacKay's probit approximation of the GLM predictive, computed here from its mean and covariance.
    mean, cov = la.linearised_predictive(inputs)
    expected = torch.softmax(mean / torch.sqrt(1 + math.pi / 8 * cov.diagonal(dim1=-2, dim2=-1)), -1)
    torch.testing.assert_close(probit, expected)
    # Less confident than the MAP far from the data, as a Laplace posterior should be.
    map_probs = torch.softmax(net(far), -1).detach()
    assert bool((probit[5:].max(-1).values < map_probs.max(-1).values).all())


def test_probit_matches_monte_carlo_for_a_binary_model():
    """For one logit, sigmoid(m / sqrt(1 + pi v / 8)) is within about 0.02 of E[sigmoid(f)]."""
    x, y = _blobs(120)
    y = (y == 0).float()
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(2, 8), nn.Tanh(), nn.Linear(8, 1))
    opt = torch.optim.Adam(net.parameters(), lr=0.05)
    for _ in range(150):
        opt.zero_grad()
        nn.functional.binary_cross_entropy_with_logits(net(x)[:, 0], y).backward()
        opt.step()
    posterior = fit_laplace(net, (x, y), "all", "full", likelihood="bernoulli")
    inputs = torch.cat([x[:20], torch.tensor([[8.0, -8.0], [-9.0, 9.0]])])
    probit = posterior.predictive_probs(inputs, link_approx="probit")
    torch.manual_seed(0)
    mc = posterior.predictive_probs(inputs, link_approx="mc", num_samples=20000)
    assert probit.shape == (22, 2)
    assert float((probit - mc).abs().max()) < 0.02


def test_probit_is_refused_where_there_is_no_gaussian_over_outputs():
    x, y = _blobs(60)
    model = BNN(MLP(2, 8, 3, dropout=0.2), likelihood="categorical")
    posterior = fit(model, DropoutGuide(model), (x, y), epochs=2, seed=0, progress=False)
    with pytest.raises(ValueError, match="link_approx='mc'"):
        posterior.predictive_probs(x, link_approx="probit")
    torch.manual_seed(1)
    mc = posterior.predictive_probs(x, num_samples=20, batch_size=16)
    torch.manual_seed(1)
    reference = posterior.predict(x, num_samples=20, batch_size=16).predictive
    torch.testing.assert_close(mc, reference)


# ----------------------------------------------------------------------------- diagnostics
def test_to_inference_data_defaults_by_kind_and_drops_point_mass_sites():
    x, y = _blobs(60)
    model = BNN(MLP(2, 8, 3, dropout=0.2), likelihood="categorical")
    dropout = fit(model, DropoutGuide(model), (x, y), epochs=2, seed=0, progress=False)
    with pytest.warns(UserWarning, match="point masses"):
        idata = to_inference_data(dropout, x, y, progress=False)
    assert idata.posterior.sizes["draw"] == 200
    # The first layer has no dropout slot before it: a point mass, left out and listed.
    kept = set(idata.posterior.data_vars)
    assert "body.0.weight" not in kept and "head.weight" in kept
    assert "body.0.weight" in idata.posterior.attrs["point_mass_sites"]
    map_model = BNN(MLP(2, 8, 3), likelihood="categorical")
    point = fit(map_model, MAPGuide(map_model), (x, y), epochs=2, seed=0, progress=False)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # nothing to warn about for a point mass
        one = to_inference_data(point, x, y, progress=False)
    assert one.posterior.sizes["draw"] == 1


def test_summary_of_one_chain_warns_and_reports_no_r_hat():
    idata = az.from_dict(posterior={"w": np.random.default_rng(0).normal(size=(1, 100))})
    with pytest.warns(UserWarning, match="need several MCMC chains"):
        table = summary(idata)
    assert "r_hat" not in table.columns and "mean" in table.columns


def test_worst_components_and_the_verdict():
    rng = np.random.default_rng(0)
    w = rng.normal(size=(4, 200, 3))
    w[0, :, 1] += 3.0  # one chain elsewhere in component 1
    idata = az.from_dict(posterior={"w": w, "b": rng.normal(size=(4, 200))})
    worst = worst_components(idata, count=2)
    first = next(iter(worst.posterior.data_vars))
    assert first.startswith("w[1], R-hat ") and float(first.split()[-1]) > 1.1
    np.testing.assert_array_equal(worst.posterior[first].values, w[:, :, 1])
    bad = convergence_verdict({"max_r_hat": 1.1, "min_ess_bulk": 20.0, "divergences": 0}, 4)
    assert "not converged" in bad and "target > 400" in bad
    good = convergence_verdict({"max_r_hat": 1.002, "min_ess_bulk": 900.0, "divergences": 0}, 4)
    assert "have converged" in good


# ----------------------------------------------------------------------------- figures
def test_curves_name_the_positive_class_and_show_chance():
    scores = np.r_[np.linspace(0.5, 1, 30), np.linspace(0, 0.6, 10)]
    positive = np.r_[np.ones(30, bool), np.zeros(10, bool)]
    roc = plot_roc({"score": (scores, positive)}, positive="MNIST").axes[0]
    assert "MNIST" in roc.get_ylabel() and "MNIST" in roc.get_xlabel()
    pr = plot_precision_recall({"score": (-scores, ~positive)}, positive="OOD").axes[0]
    chance = [line for line in pr.get_lines() if line.get_label().startswith("chance")]
    assert len(chance) == 1 and math.isclose(chance[0].get_ydata()[0], 0.25)
    log = plot_roc({"score": (scores, positive)}, positive="MNIST", log_fpr=True).axes[0]
    assert log.get_xscale() == "log" and log.get_xlim() == pytest.approx((0.1, 1.0))  # from one negative in 10
    diagonal = next(line for line in log.get_lines() if line.get_label() == "chance")
    assert np.allclose(diagonal.get_xdata(), diagonal.get_ydata()) and diagonal.get_xdata()[0] == pytest.approx(0.1)


# ----------------------------------------------------------------------------- progress
def test_progress_in_a_log_is_a_few_lines_per_run(capsys, monkeypatch):
    import bayesdl.progress as progress

    monkeypatch.setattr(progress, "MIN_INTERVAL", 0.0)
    x, y = _blobs(40)
    model = BNN(MLP(2, 4, 3), likelihood="categorical")
    fit(model, MAPGuide(model), (x, y), epochs=40, batch_size=8, seed=0)  # stderr is captured: not a terminal
    lines = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert 1 <= len(lines) <= 11
    assert all(line.startswith("fit MAPGuide: epoch ") for line in lines)
    assert "epoch 40/40" in lines[-1] and "nll/ex" in lines[-1] and "kl/ex" in lines[-1]  # data term and KL apart
    assert "\r" not in "".join(lines)
    fit(model, MAPGuide(model), (x, y), epochs=3, batch_size=8, seed=0, progress=False)
    assert capsys.readouterr().err == ""
