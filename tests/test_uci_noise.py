"""The noise model and prior of the UCI study's MC-dropout row against Gal & Ghahramani (2016),
computed independently from the paper's formulas (its code, ``yaringal/DropoutUncertaintyExps``):

- the noise: precision ``tau`` in the units of the targets, so the predictive's noise after the
  back-transform ``affine(y_mean, y_std)`` is ``tau**-0.5`` and the test log-likelihood is
  ``mean_n [logsumexp_t ln N(y_n | y_nt, 1 / tau) - ln T]``;
- the prior: Keras's loss ``MSE + l^2 (1 - p) / (2 N tau) ||W||^2`` on the normalised targets.

A mutation review found ``1 / (tau * y_std)`` for the normalised noise scale (instead of
``1 / (sqrt(tau) * y_std)``) passing the rest of the suite; these tests fail on it.
Tiny fake data (targets with ``y_std`` far from 1, so that a missing or doubled ``y_std`` shows too).
"""

import math

import numpy as np
import pytest
import torch
from scipy.special import logsumexp
from scipy.stats import norm

from bayesdl.experiments.studies.uci import LENGTHSCALE, Benchmark, Settings, dropout_prior_scale
from bayesdl.experiments.studies.uci.specs import dropout_fit
from bayesdl.experiments.uci_data import load_uci, uci_split
from bayesdl.inference import DropoutGuide

TAUS, RATES = (2.0, 4.0, 9.0), (0.05, 0.1, 0.2)  # the grids: their middles are the pair of grid=False


def _fake_uci(root, n=50, y_scale=8.0):
    """A small dataset in the layout of the paper's repository, targets of spread ``~y_scale``."""
    rng = np.random.default_rng(0)
    folder = root / "UCI" / "yacht"
    folder.mkdir(parents=True)
    x = rng.normal(size=(n, 3))
    y = y_scale * (x[:, 0] - 0.5 * x[:, 1] + 0.3 * rng.normal(size=n)) + 20.0
    np.savetxt(folder / "data.txt", np.column_stack([x, y]))
    np.savetxt(folder / "index_features.txt", [0, 1, 2], fmt="%d")
    np.savetxt(folder / "index_target.txt", [3], fmt="%d")
    order = rng.permutation(n)
    np.savetxt(folder / "index_train_0.txt", order[: int(0.8 * n)], fmt="%d")
    np.savetxt(folder / "index_test_0.txt", order[int(0.8 * n):], fmt="%d")
    for file, values in (("n_splits.txt", [1]), ("n_hidden.txt", [6]), ("n_epochs.txt", [2])):
        np.savetxt(folder / file, values, fmt="%d")
    np.savetxt(folder / "dropout_rates.txt", RATES)
    np.savetxt(folder / "tau_values.txt", TAUS)


@pytest.fixture(scope="module")
def uci(tmp_path_factory):
    root = tmp_path_factory.mktemp("data")
    _fake_uci(root)
    settings = Settings(splits=1, epochs=2, min_steps=0, test_samples=40, grid=False)
    bench = Benchmark(root, tmp_path_factory.mktemp("splits"), settings, log=lambda *_: None)
    data = load_uci("yacht", root)
    split = uci_split(data, 0)
    assert split.y_std > 4  # far from 1
    return bench, data, split


@pytest.mark.parametrize("tau", [0.5, 4.0, 25.0])
def test_the_dropout_rows_noise_is_tau_to_the_minus_half_in_original_units(uci, tau):
    bench, data, split = uci
    posterior = dropout_fit(bench, bench.spec("dropout"), data, split, 0.1, tau, seed=0)
    torch.manual_seed(1)
    prediction, metrics = bench.score(posterior, split, 40)
    expected = tau ** -0.5  # the paper: noise variance 1 / tau in the units of the targets
    assert prediction.noise.shape == prediction.mean.shape
    np.testing.assert_allclose(prediction.noise.double().numpy(), expected, rtol=1e-5)
    assert metrics["aleatoric"] == pytest.approx(1.0 / tau, rel=1e-5)
    # the test log-likelihood of the paper's code, from the predictive means alone
    y_t, y = prediction.mean.double().numpy(), split.y_test_raw.double().numpy()
    paper = logsumexp(norm.logpdf(y[None], y_t, expected), axis=0) - math.log(len(y_t))
    assert metrics["log_likelihood"] == pytest.approx(float(paper.mean()), rel=1e-5)


def test_the_dropout_rows_result_holds_the_aleatoric_variance_of_its_tau(uci):
    bench, data, _ = uci
    spec = bench.spec("dropout")
    result = spec.procedure(bench, spec, data, 0)  # grid off: the middle pair of the grids
    assert (result["p"], result["tau"]) == (RATES[1], TAUS[1])
    assert result["aleatoric"] == pytest.approx(1.0 / TAUS[1], rel=1e-5)


@pytest.mark.parametrize("p, y_std, tau, n", [(0.05, 1.0, 0.25, 300), (0.1, 8.0, 4.0, 40), (0.5, 0.3, 100.0, 10_000)])
def test_the_prior_scale_gives_the_papers_weight_decay(p, y_std, tau, n):
    """Keras's weight decay ``l^2 (1 - p) / (2 N tau)`` beside the MSE of the normalised targets.
    The dropout ELBO per example with noise ``sigma^2 = 1 / (tau y_std^2)`` (normalised units) and
    prior ``N(0, s^2)`` is ``MSE / (2 sigma^2) + ||M||^2 / (2 N s^2 (1 - p))``; times ``2 sigma^2``,
    its weight decay is ``sigma^2 / (N s^2 (1 - p))`` -- which must be the paper's, whatever tau and N."""
    s = dropout_prior_scale(p, y_std)
    sigma2 = 1.0 / (tau * y_std**2)
    paper = LENGTHSCALE**2 * (1 - p) / (2 * n * tau)
    assert sigma2 / (n * s**2 * (1 - p)) == pytest.approx(paper, rel=1e-12)


def test_the_dropout_rows_objective_carries_the_papers_weight_decay(uci):
    """The same, from the prior the study builds and the dropout guide's own prior term: per
    example, ``kl_coefficient / N`` times ``||M||^2``, scaled by ``2 sigma^2`` as above."""
    bench, data, split = uci
    p, tau = 0.2, 9.0
    posterior = dropout_fit(bench, bench.spec("dropout"), data, split, p, tau, seed=0)
    guide = DropoutGuide(posterior.bnn, p=p)
    guide.setup(split.x_train)
    n, sigma2 = len(split.x_train), 1.0 / (tau * split.y_std**2)
    paper = LENGTHSCALE**2 * (1 - p) / (2 * n * tau)
    sites = posterior.bnn.sites
    weights = [c for site, c in zip(sites, guide.kl_coefficient.split(posterior.bnn.site_sizes))
               if site.attribute == "weight"]
    assert len(weights) == 2  # both layers of the paper's network sit behind dropout
    for coefficient in weights:
        np.testing.assert_allclose((2 * sigma2 * coefficient.double() / n).numpy(), paper, rtol=1e-5)
