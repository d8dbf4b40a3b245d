"""BNN as a Pyro model: sites, priors, likelihoods, plate scaling, bad input."""

import math

import pyro
import pytest
import torch
import torch.nn as nn
from pyro import poutine

from bayesdl.models import BNN, MLP, Gaussian, LeNet, NormalPrior


def test_sites_follow_named_parameters_and_become_buffers():
    net = MLP(3, [5, 4], 2)
    names = [n for n, _ in net.named_parameters()]
    model = BNN(net, prior_scale=0.5)
    assert [s.name for s in model.sites] == names
    assert list(model.parameters()) == []  # every weight is latent: nothing learned as a point
    assert model.num_latent == sum(p.numel() for p in MLP(3, [5, 4], 2).parameters())
    flat = torch.randn(model.num_latent)
    assert torch.equal(model.flatten(model.unflatten(flat)), flat)
    assert net(torch.randn(2, 3)).shape == (2, 2)  # the plain network still works


def test_deterministic_layers_and_per_layer_scales():
    model = BNN(MLP(3, 5, 2), prior=NormalPrior(1.0, layer_scales={"head": 0.1}), deterministic=["body.0"])
    assert [s.name for s in model.sites] == ["head.weight", "head.bias"]
    assert {n for n, _ in model.named_parameters()} == {"net.body.0.weight", "net.body.0.bias"}
    assert torch.allclose(model.prior_scales, torch.full((12,), 0.1))


def test_model_trace_log_joint():
    torch.manual_seed(0)
    model = BNN(nn.Linear(2, 1), prior_scale=2.0, likelihood="bernoulli")
    x = torch.randn(8, 2)
    y = torch.randint(0, 2, (8,))
    trace = poutine.trace(model.model).get_trace(x, y)
    w, b = trace.nodes["weight"]["value"], trace.nodes["bias"]["value"]
    prior = torch.distributions.Normal(0, 2.0)
    logits = x @ w.T + b
    expected = prior.log_prob(w).sum() + prior.log_prob(b).sum() + \
        torch.distributions.Bernoulli(logits=logits.squeeze(-1)).log_prob(y.float()).sum()
    assert float(trace.log_prob_sum()) == pytest.approx(float(expected), rel=1e-6)


def test_data_plate_scales_a_minibatch_to_the_dataset():
    model = BNN(nn.Linear(2, 3))
    x, y = torch.randn(10, 2), torch.randint(0, 3, (10,))
    trace = poutine.trace(model.model).get_trace(x, y, dataset_size=1000)
    trace.compute_log_prob()
    obs = trace.nodes["obs"]
    assert obs["scale"] == pytest.approx(100.0)


def test_gaussian_likelihood_fixed_and_learned():
    fixed = BNN(nn.Linear(1, 1), likelihood=Gaussian(scale=0.3))
    assert list(fixed.parameters()) == []
    learned = BNN(nn.Linear(1, 1), likelihood="gaussian")
    assert [n for n, _ in learned.named_parameters()] == ["likelihood.log_scale"]
    out = torch.tensor([[0.5]])
    assert float(fixed.likelihood.log_prob(out, torch.tensor([0.5]))) == pytest.approx(
        -math.log(0.3) - 0.5 * math.log(2 * math.pi))


@pytest.mark.parametrize(
    "make, error, message",
    [
        (lambda: BNN("not a net"), TypeError, "nn.Module"),
        (lambda: BNN(MLP(2, 3, 2), likelihood="poisson"), ValueError, "likelihood must be one of"),
        (lambda: BNN(MLP(2, 3, 2), prior_scale=0.0), ValueError, "prior_scale must be > 0"),
        (lambda: BNN(MLP(2, 3, 2), deterministic=["nope"]), ValueError, "match no module"),
        (lambda: BNN(nn.Linear(2, 2), deterministic=[""]), ValueError, "no latent parameter"),
    ],
)
def test_bad_construction(make, error, message):
    with pytest.raises(error, match=message):
        make()


@pytest.mark.parametrize(
    "x, y, message",
    [
        (torch.randn(4, 1, 28, 28), torch.tensor([0, 1, 2, 10]), r"y \(labels\) must lie in \[0, 10\)"),
        (torch.randn(4, 1, 28, 28), torch.tensor([0, 1, 2]), "4 examples"),
        (torch.randn(4, 3, 32, 32), torch.tensor([0, 1, 2, 3]), r"expects images of shape \[N, C, 28, 28\]"),
        (torch.randn(4, 2, 28, 28), torch.tensor([0, 1, 2, 3]), "cannot take inputs of shape"),
        (torch.full((2, 1, 28, 28), float("nan")), torch.tensor([0, 1]), "non-finite"),
        (torch.empty(0, 1, 28, 28), torch.empty(0), "empty"),
        (torch.randn(2, 1, 28, 28), torch.tensor([0.5, 1.0]), "integer class indices"),
    ],
)
def test_check_data(x, y, message):
    model = BNN(LeNet())
    with pytest.raises(ValueError, match=message):
        model.check_data(x, y)


@pytest.mark.slow
def test_pyro_svi_with_autonormal_runs_on_a_bnn():
    # The naive Pyro route works on the same model object.
    from pyro.infer import SVI, Trace_ELBO
    from pyro.infer.autoguide import AutoNormal

    model = BNN(MLP(2, 4, 2))
    guide = AutoNormal(model.model)
    svi = SVI(model.model, guide, pyro.optim.Adam({"lr": 0.01}), Trace_ELBO())
    x, y = torch.randn(16, 2), torch.randint(0, 2, (16,))
    losses = [svi.step(x, y) for _ in range(3)]
    assert all(math.isfinite(v) for v in losses)


def test_images_run_channels_last_with_the_same_result():
    torch.manual_seed(0)
    model = BNN(LeNet(dropout=None))
    x = torch.randn(6, 1, 28, 28)
    weights = model.initial_values()
    fast = model.network(x, weights)
    assert model.channels_last is True
    # the same network in the default layout, outside the BNN
    reference = torch.func.functional_call(model.net, model.unflatten(weights), (x,))
    assert reference.is_contiguous()
    torch.testing.assert_close(fast, reference, rtol=1e-4, atol=1e-5)


class _ViewNet(nn.Module):
    """A network that calls .view on its image input: it cannot run channels-last."""

    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(3 * 8 * 8, 2)

    def forward(self, x):
        return self.fc(x.view(x.shape[0], -1))


def test_networks_that_need_the_default_layout_fall_back():
    torch.manual_seed(0)
    model = BNN(_ViewNet())
    x = torch.randn(4, 3, 8, 8)
    out = model.network(x, model.initial_values())
    assert model.channels_last is False  # detected once, then the default layout
    expected = x.reshape(4, -1) @ model.unflatten(model.initial_values())["fc.weight"].T \
        + model.unflatten(model.initial_values())["fc.bias"]
    torch.testing.assert_close(out, expected)
    assert model.network(x[:2], model.initial_values()).shape == (2, 2)


def test_noise_keeps_the_layout_and_the_distribution():
    from bayesdl.random import rand_like, randn_like

    t = torch.empty(64, 8, 10, 10).contiguous(memory_format=torch.channels_last)
    torch.manual_seed(1)
    a = randn_like(t)
    torch.manual_seed(1)
    assert torch.equal(a, randn_like(t))
    assert a.is_contiguous(memory_format=torch.channels_last) and a.shape == t.shape
    assert abs(float(a.mean())) < 0.02 and abs(float(a.std()) - 1) < 0.02
    u = rand_like(t)
    assert u.is_contiguous(memory_format=torch.channels_last)
    assert 0 <= float(u.min()) and float(u.max()) < 1 and abs(float(u.mean()) - 0.5) < 0.01
