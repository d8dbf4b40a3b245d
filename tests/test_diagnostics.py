"""ArviZ conversion: groups, dims, and log-likelihoods of the predictive each method reports."""

import numpy as np
import pytest
import torch
from test_laplace import _multiclass as _map  # a small MAP MLP on 3 classes
from torch.func import jvp

from bayesdl.evaluation.diagnostics import compare, convergence
from bayesdl.inference import fit_laplace, to_inference_data


def _log_lik(logits, y):
    return torch.log_softmax(logits, -1).gather(-1, y[:, None])[..., 0]


def test_groups_dims_and_log_likelihood_of_the_network_draws():
    model, posterior, x, y = _map()
    idata = to_inference_data(posterior, x, y, num_samples=3)
    assert {"posterior", "log_likelihood", "posterior_predictive", "observed_data"} <= set(idata.groups())
    assert idata.posterior["body.0.weight"].dims == ("chain", "draw", "body.0_out", "body.0_in")
    np.testing.assert_array_equal(idata.observed_data["y"].values, y.numpy())
    # a MAP posterior: every draw is the point estimate
    weights = posterior.point_estimate()
    expected = _log_lik(model.network(x, weights), y).detach()
    np.testing.assert_allclose(idata.log_likelihood["y"].values[0, 2], expected.numpy(), rtol=1e-5)


def test_laplace_log_likelihood_is_that_of_its_linearised_predictive():
    """A Laplace posterior predicts through the linearised network, so its log-likelihoods
    (and PSIS-LOO) must too: checked against an independent linearisation by a JVP."""
    model, posterior, x, y = _map()
    la = fit_laplace(posterior, (x, y), subset="all", structure="full")
    idata = to_inference_data(la, x, y, num_samples=4)
    theta = model.flatten(posterior.point_estimate())
    draws = model.flatten({k: torch.as_tensor(idata.posterior[k].values[0]) for k in model.unflatten(theta)})

    def f(t):
        return model.network(x, model.unflatten(t))

    for s in range(4):
        output, tangent = jvp(f, (theta,), (draws[s] - theta,))
        expected = _log_lik(output + tangent, y).detach()
        np.testing.assert_allclose(idata.log_likelihood["y"].values[0, s], expected.numpy(), rtol=1e-5)
        # ... which is not the raw network's at the same weights
        raw = _log_lik(f(draws[s]), y).detach()
        assert not np.allclose(idata.log_likelihood["y"].values[0, s], raw.numpy(), rtol=1e-5)


def test_compare_needs_log_likelihoods():
    posterior = _map()[1]
    with pytest.raises(ValueError, match="log_likelihood"):
        compare({"map": to_inference_data(posterior, num_samples=2)})


def test_convergence_figures_of_mcmc_draws():
    import arviz as az

    rng = np.random.default_rng(0)
    diverging = np.zeros((2, 300), dtype=bool)
    diverging[1, [3, 50, 299]] = True
    idata = az.from_dict(posterior={"w": rng.normal(size=(2, 300, 3))}, sample_stats={"diverging": diverging})
    figures = convergence(idata)
    table = az.summary(idata)
    assert figures == {"max_r_hat": float(table["r_hat"].max()), "min_ess_bulk": float(table["ess_bulk"].min()),
                       "divergences": 3}
    assert convergence(az.from_dict(posterior={"w": rng.normal(size=(2, 300))}))["divergences"] == 0
