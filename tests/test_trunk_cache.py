"""MC dropout prediction that runs the deterministic trunk once: same samples, fewer passes."""

import pytest
import torch
import torch.nn as nn

from bayesdl.inference import DropoutGuide, Posterior
from bayesdl.models import BNN, DBALCNN, LeNet


def _posterior(net, deterministic=()):
    torch.manual_seed(0)
    model = BNN(net, prior_scale=1.0, deterministic=deterministic)
    guide = DropoutGuide(model, p=None)
    return Posterior(model, guide, method="dropout"), guide


def _conv1_calls(net, posterior, x, num_samples, batch_size):
    calls = []
    hook = net.conv1.register_forward_hook(lambda *_: calls.append(1))
    try:
        torch.manual_seed(7)
        probs = posterior.predict(x, num_samples=num_samples, batch_size=batch_size).probs
    finally:
        hook.remove()
    return probs, len(calls)


@pytest.mark.parametrize("make, deterministic", [(DBALCNN, ()), (DBALCNN, ("conv1", "conv2", "fc2")),
                                                  (lambda: LeNet(dropout="last"), ())],
                         ids=["dbalcnn", "dbalcnn-deterministic-convs", "lenet-last"])
def test_the_trunk_runs_once_per_batch_and_the_samples_are_identical(make, deterministic):
    net = make()
    posterior, guide = _posterior(net, deterministic)
    x = torch.randn(30, 1, 28, 28)
    posterior.predict(x[:2], num_samples=1)  # the one-time set-up runs the network a few times
    cached, cached_calls = _conv1_calls(net, posterior, x, 6, 16)
    guide.cache_trunk = False
    full, full_calls = _conv1_calls(net, posterior, x, 6, 16)
    assert cached_calls == 2 and full_calls == 12  # 2 batches: once each, or once per sample
    assert torch.equal(cached, full)
    assert cached.std(0).max() > 0  # the samples do differ from each other


def test_a_trunk_with_dropout_inside_shares_only_the_layers_before_its_first_slot():
    net = LeNet(dropout="all")  # dropout after each conv block: the trunk is stochastic
    posterior, guide = _posterior(net)
    x = torch.randn(10, 1, 28, 28)
    posterior.predict(x[:2], num_samples=2)  # the one-time check of the shared prefix
    probs, calls = _conv1_calls(net, posterior, x, 5, 16)
    assert calls == 1  # conv1 comes before the first slot: run once, its output repeated 5 times
    assert probs.std(0).max() > 0  # each repeated copy draws its own masks
    guide.cache_trunk = False
    _, calls = _conv1_calls(net, posterior, x, 5, 16)
    assert calls == 5


def _user_net():
    return nn.Sequential(nn.Conv2d(1, 3, 5), nn.ReLU(), nn.MaxPool2d(4), nn.Flatten(),
                         nn.Linear(3 * 6 * 6, 16), nn.ReLU(), nn.Dropout(0.5), nn.Linear(16, 3))


@pytest.mark.parametrize("budget", [1 << 24, 2 * 4 * 16], ids=["one-group", "groups-of-two"])
def test_a_plain_sequential_shares_its_deterministic_prefix_with_the_predictive_of_full_passes(budget):
    net = _user_net()
    with torch.no_grad():
        for parameter in net.parameters():
            parameter.mul_(3)  # larger logits: the masks move the probabilities visibly
    posterior, guide = _posterior(net)
    guide.prefix_budget_elements = budget  # 4 inputs x 16 features: 2 copies a group, or all at once
    x = torch.randn(4, 1, 28, 28)
    posterior.predict(x[:2], num_samples=2)
    calls = []
    hook = net[0].register_forward_hook(lambda *_: calls.append(1))
    torch.manual_seed(3)
    shared = posterior.predict(x, num_samples=4000).probs
    hook.remove()
    assert len(calls) == (1 if budget > 1 << 20 else 2000)
    assert guide.__dict__["_shared_prefix"] is net[6]
    guide.cache_trunk = False
    full = posterior.predict(x, num_samples=4000).probs
    assert shared.std(0).min() > 0.01  # the copies really are different mask draws
    # the same predictive: Monte Carlo error of each mean <= 0.5 / sqrt(4000) ~ 0.008, of each sd smaller
    assert torch.allclose(shared.mean(0), full.mean(0), atol=0.03)
    assert torch.allclose(shared.std(0), full.std(0), atol=0.03)


class _WrongSplit(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(1, 2, 3)
        self.drop = nn.Dropout(0.5)
        self.fc = nn.Linear(2 * 26 * 26, 3)

    def trunk(self, x):
        return self.conv1(x)

    def head(self, h):
        return self.fc(self.drop(h).flatten(1))

    def forward(self, x):  # not head(trunk(x)): an extra ReLU
        return self.fc(self.drop(torch.relu(self.conv1(x))).flatten(1))


def test_a_network_whose_trunk_and_head_do_not_compose_to_forward_is_refused():
    posterior, _ = _posterior(_WrongSplit())
    with pytest.raises(ValueError, match="head\\(trunk\\(x\\)\\)"):
        posterior.predict(torch.randn(4, 1, 28, 28), num_samples=2)
