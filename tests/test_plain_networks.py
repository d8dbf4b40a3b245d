"""Networks trained with plain PyTorch: MC dropout around them, the Laplace prior precision by
validation, and the warning for a network that ends in Softmax (issue 28, part b)."""

from __future__ import annotations

import math
import warnings

import pytest
import torch
import torch.nn as nn

from bayesdl.inference import approximate
from bayesdl.inference.laplace import laplace
from bayesdl.models import BNN
from bayesdl.models.likelihoods import Gaussian


def _net(p: float = 0.3) -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(3, 16), nn.ReLU(), nn.Dropout(p), nn.Linear(16, 4))


def _hand_mc(net: nn.Module, x, num_samples: int, p: float | None = None) -> torch.Tensor:
    """The MC dropout loop written by hand: eval mode, the dropout layers alone in train mode."""
    saved = [(m, m.p, m.training) for m in net.modules() if isinstance(m, nn.modules.dropout._DropoutNd)]
    net.eval()
    for m, _, _ in saved:
        m.train()
        if p is not None:
            m.p = p
    try:
        with torch.no_grad():
            return torch.stack([net(x) for _ in range(num_samples)])
    finally:
        for m, rate, _ in saved:
            m.p = rate


# ------------------------------------------------------------------ MC dropout around a trained net
@pytest.mark.parametrize("p", [None, 0.6])
def test_mc_dropout_of_a_plain_network_is_the_hand_written_loop(p):
    net = _net()
    x = torch.randn(6, 3)
    posterior = approximate("dropout", net, None, p=p)
    assert posterior.method == "dropout" and not posterior.is_point_mass
    # bayesdl draws the same masks by another sampler (and shares the layers before the dropout
    # layer between passes), so the draws are not those of the loop for a seed: the distribution is.
    torch.manual_seed(3)
    outputs = posterior.predictive_outputs(x, 4000)
    expected = _hand_mc(net, x, 4000, p)
    assert outputs.shape == expected.shape
    scale = float(expected.std(0).max())
    # Monte Carlo error of each mean <= sd / sqrt(4000) ~ 0.016 sd, of each sd ~ 0.011 sd (and of a
    # difference of two such estimates sqrt(2) more): 0.08 sd is five standard errors
    torch.testing.assert_close(outputs.mean(0), expected.mean(0), rtol=0, atol=0.08 * scale)
    torch.testing.assert_close(outputs.std(0), expected.std(0), rtol=0, atol=0.08 * scale)
    assert outputs.std(0).max() > 0.1 * scale  # the masks differ between passes
    torch.manual_seed(3)
    probs = posterior.predict(x, 9).probs
    torch.manual_seed(3)
    torch.testing.assert_close(probs, posterior.predictive_outputs(x, 9).softmax(-1))


def test_mc_dropout_of_a_plain_network_leaves_it_untouched():
    net = _net()
    before = {k: v.clone() for k, v in net.state_dict().items()}
    posterior = approximate("dropout", net, None)
    posterior.predict(torch.randn(4, 3), 5)
    assert net.training and all(m.training for m in net.modules())
    assert [n for n, _ in net.named_parameters()] == ["0.weight", "0.bias", "3.weight", "3.bias"]
    assert all(p.requires_grad for p in net.parameters())
    for key, value in net.state_dict().items():
        assert torch.equal(value, before[key])
    assert net[2].p == 0.3
    point = posterior.point_estimate()
    assert set(point) == set(before)
    for key, value in point.items():
        assert torch.equal(value, before[key])
    net.eval()
    approximate("dropout", net, None, p=0.5).predict(torch.randn(4, 3), 3)
    assert not net.training and not net[2].training and net[2].p == 0.3


def test_mc_dropout_of_a_conv_net_with_dropout2d_and_batch_norm():
    torch.manual_seed(1)
    net = nn.Sequential(nn.Conv2d(1, 4, 3), nn.BatchNorm2d(4), nn.ReLU(), nn.Dropout2d(0.4), nn.Flatten(),
                        nn.Linear(4 * 6 * 6, 3))
    x = torch.randn(5, 1, 8, 8)
    with torch.no_grad():
        net(torch.randn(32, 1, 8, 8))  # running statistics away from their initial values
    posterior = approximate("dropout", net, None)
    torch.manual_seed(4)
    outputs = posterior.predictive_outputs(x, 6)
    torch.manual_seed(4)
    expected = _hand_mc(net, x, 6)  # batch norm in eval mode: its running statistics
    torch.testing.assert_close(outputs, expected, rtol=1e-4, atol=1e-5)


def test_mc_dropout_of_a_regression_network_takes_its_likelihood():
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(2, 8), nn.Tanh(), nn.Dropout(0.2), nn.Linear(8, 1))
    posterior = approximate("dropout", net, None, likelihood=Gaussian(scale=0.1), prior_scale=2.0)
    assert isinstance(posterior.bnn.likelihood, Gaussian)
    assert float(posterior.bnn.prior_scales[0]) == 2.0
    assert posterior.predictive_outputs(torch.randn(3, 2), 4).shape == (4, 3, 1)


def test_mc_dropout_of_a_plain_network_refuses_clearly():
    plain = nn.Sequential(nn.Linear(3, 8), nn.ReLU(), nn.Linear(8, 2))
    for p in (None, 0.5):
        with pytest.raises(ValueError, match=r"no dropout layer .*add dropout layers and train"):
            approximate("dropout", plain, None, p=p)
    with pytest.raises(TypeError, match=r"a trained network is not retrained; options \['epochs', 'lr'\]"):
        approximate("dropout", _net(), None, epochs=3, lr=1e-3)
    with pytest.raises(ValueError, match=r"p is not given and every dropout module of the network has rate 0"):
        approximate("dropout", _net(0.0), None)
    bnn = BNN(_net(), prior_scale=1.0)
    with pytest.raises(TypeError, match=r"likelihood is for a plain network"):
        approximate("dropout", bnn, (torch.randn(4, 3), torch.zeros(4, dtype=torch.long)), likelihood="categorical")
    with pytest.raises(TypeError, match=r"prior_scale is for a plain network"):
        approximate("dropout", bnn, (torch.randn(4, 3), torch.zeros(4, dtype=torch.long)), prior_scale=2.0)


# ------------------------------------------------------------ the prior precision by validation
def _classification_toy():
    """A small MLP trained with plain PyTorch to near-zero training loss on a noisy toy: the
    marginal likelihood and the validation NLL disagree about the prior precision."""
    g = torch.Generator().manual_seed(0)
    x = torch.randn(120, 2, generator=g)
    y = ((x[:, 0] + 0.7 * torch.randn(120, generator=g)) > 0).long()
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(2, 16), nn.Tanh(), nn.Linear(16, 2))
    opt = torch.optim.Adam(net.parameters(), lr=0.05)
    for _ in range(300):
        opt.zero_grad()
        nn.functional.cross_entropy(net(x[:60]), y[:60]).backward()
        opt.step()
    return net, (x[:60], y[:60]), (x[60:], y[60:])


def _nll(la, val, delta):
    saved, la.prior_precision = la.prior_precision, delta
    try:
        probs = la.predictive_probs(val[0])
    finally:
        la.prior_precision = saved
    return float(-torch.log(probs[torch.arange(len(val[1])), val[1]]).mean())


def test_validation_picks_the_grids_argmin_of_the_validation_nll():
    net, train, val = _classification_toy()
    marglik = laplace(net, "all", "full", likelihood="categorical").fit(train).optimize_prior_precision()
    la = laplace(net, "all", "full", likelihood="categorical").fit(train)
    la.optimize_prior_precision("validation", val_data=val)
    grid = [float(v) for v in torch.logspace(-4, 4, 21, dtype=torch.float64)]
    assert list(la.validation_nll_) == grid
    for delta, score in la.validation_nll_.items():
        assert score == pytest.approx(_nll(la, val, delta), rel=1e-6)
    best = min(grid, key=lambda d: la.validation_nll_[d])
    assert la.prior_precision == best
    # marglik's precision lies between grid points: with it on the grid, validation does no worse
    la.optimize_prior_precision("validation", val_data=val, grid=[*grid, marglik.prior_precision])
    assert _nll(la, val, la.prior_precision) <= _nll(la, val, marglik.prior_precision)
    # a grid of one's own, and a loader
    loader = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(*val), batch_size=7)
    own = la.optimize_prior_precision("validation", val_data=loader, grid=[0.1, 1.0, 10.0])
    assert own is la and la.prior_precision in (0.1, 1.0, 10.0)
    assert la.prior_precision == min((0.1, 1.0, 10.0), key=lambda d: la.validation_nll_[d])
    assert la.validation_nll_[1.0] == pytest.approx(_nll(la, val, 1.0), rel=1e-6)


def test_optimize_prior_through_approximate():
    net, train, val = _classification_toy()

    def delta(**options):
        return approximate("laplace", net, train, likelihood="categorical", **options)._approximation.prior_precision

    assert delta() == delta(optimize_prior=True) == delta(optimize_prior="marglik")
    assert delta(optimize_prior=False) == 1.0
    la = laplace(net, "all", "full", likelihood="categorical").fit(train)
    la.optimize_prior_precision("validation", val_data=val)
    assert delta(optimize_prior="validation", val_data=val) == la.prior_precision
    # the default chooses by validation where there is held-out data (issue 28), else by evidence
    assert delta(val_data=val) == la.prior_precision
    with pytest.raises(TypeError, match="would go unused"):
        delta(optimize_prior="marglik", val_data=val)


def test_validation_of_a_gaussian_regression():
    g = torch.Generator().manual_seed(1)
    x = torch.randn(80, 1, generator=g)
    y = torch.sin(2 * x[:, 0]) + 0.1 * torch.randn(80, generator=g)
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(1, 12), nn.Tanh(), nn.Linear(12, 1))
    opt = torch.optim.Adam(net.parameters(), lr=0.03)
    for _ in range(300):
        opt.zero_grad()
        ((net(x[:40])[:, 0] - y[:40]) ** 2).mean().backward()
        opt.step()
    la = laplace(net, "last_layer", "kron", likelihood=Gaussian(scale=0.1)).fit((x[:40], y[:40]))
    la.optimize_prior_precision("validation", val_data=(x[40:], y[40:]), grid=[1e-2, 1.0, 1e2])
    mean, cov = la.linearised_predictive(x[40:])
    var = cov[:, 0, 0] + 0.01
    expected = float((0.5 * (torch.log(2 * math.pi * var) + (y[40:] - mean[:, 0]) ** 2 / var)).mean())
    assert la.validation_nll_[la.prior_precision] == pytest.approx(expected, rel=1e-5)
    assert la.prior_precision == min(la.validation_nll_, key=la.validation_nll_.get)


def test_validation_refuses_bad_inputs():
    net, train, val = _classification_toy()
    la = laplace(net, "all", "full", likelihood="categorical").fit(train)
    with pytest.raises(ValueError, match=r"method must be 'marglik' or 'validation'"):
        la.optimize_prior_precision("gridsearch")
    with pytest.raises(ValueError, match=r"pass val_data"):
        la.optimize_prior_precision("validation")
    with pytest.raises(TypeError, match=r"'marglik' needs neither"):
        la.optimize_prior_precision("marglik", val_data=val)
    for grid, error, message in (([], ValueError, "grid is empty"), ([1.0, -1.0], ValueError, "positive, finite"),
                                 ([1.0, float("nan")], ValueError, "positive, finite"),
                                 ("1e-4", TypeError, "grid must be a sequence"),
                                 (3.0, TypeError, "grid must be a sequence")):
        with pytest.raises(error, match=message):
            la.optimize_prior_precision("validation", val_data=val, grid=grid)
    with pytest.raises(ValueError, match=r"link_approx must be"):
        la.optimize_prior_precision("validation", val_data=val, link_approx="laplace")
    with pytest.raises(ValueError, match=r"val_data, batch 1"):
        la.optimize_prior_precision("validation", val_data=(val[0][:, :1], val[1]))
    with pytest.raises(ValueError, match=r"is empty"):
        la.optimize_prior_precision("validation", val_data=(val[0][:0], val[1][:0]))
    before = la.prior_precision
    assert before == 1.0  # the failed searches left it alone
    with pytest.raises(ValueError, match=r"optimize_prior='validation' .*pass val_data"):
        approximate("laplace", net, train, likelihood="categorical", optimize_prior="validation")
    with pytest.raises(TypeError, match=r"val_data is for optimize_prior='validation'"):
        approximate("laplace", net, train, likelihood="categorical", optimize_prior=False, val_data=val)
    with pytest.raises(TypeError, match=r"does not combine with a prior precision by validation"):
        approximate("laplace", net, train, likelihood="categorical", val_data=val, optimize_noise=True)
    with pytest.raises(TypeError, match=r"optimize_prior must be True or False, 'marglik' or 'validation'"):
        approximate("laplace", net, train, likelihood="categorical", optimize_prior="gridsearch")


# -------------------------------------------------------------------- a network ending in Softmax
@pytest.mark.parametrize("last", [nn.Softmax(dim=-1), nn.LogSoftmax(dim=-1)])
def test_a_network_ending_in_softmax_is_warned_about_at_the_users_line(last):
    name = type(last).__name__
    net = nn.Sequential(nn.Linear(3, 8), nn.ReLU(), nn.Sequential(nn.Linear(8, 2), last))
    with pytest.warns(UserWarning, match=rf"ends in {name} and the categorical likelihood applies softmax .*"
                                         rf"remove the final {name} \(the likelihood expects logits\)") as record:
        BNN(net)
    assert record[0].filename == __file__
    with pytest.warns(UserWarning, match=rf"ends in {name}") as record:  # built by bayesdl for the user
        approximate("dropout", nn.Sequential(nn.Linear(3, 8), nn.Dropout(0.5), nn.Linear(8, 2), last), None)
    assert record[0].filename == __file__


def test_no_softmax_warning_otherwise():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        BNN(nn.Sequential(nn.Linear(3, 2), nn.Softmax(dim=-1)), likelihood="gaussian")
        BNN(nn.Sequential(nn.Linear(3, 2)))
        BNN(nn.Linear(3, 2))

        class Attention(nn.Module):  # a Softmax inside, not at the end
            def __init__(self):
                super().__init__()
                self.block = nn.Sequential(nn.Linear(3, 3), nn.Softmax(dim=-1))
                self.out = nn.Linear(3, 2)

            def forward(self, x):
                return self.out(self.block(x) * x)

        BNN(Attention())
