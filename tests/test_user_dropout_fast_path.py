"""A user's plain nn.Dropout draws its masks with bayesdl's sampler during bayesdl's passes only."""

import torch
import torch.nn as nn

from bayesdl.inference import approximate
from bayesdl.models import BNN, Dropout


def _net():
    return nn.Sequential(nn.Linear(5, 400), nn.ReLU(), nn.Dropout(0.3), nn.Linear(400, 2))


def test_the_users_dropout_uses_the_fast_sampler_in_a_pass_and_is_itself_again_after():
    net = _net()
    seen = []
    net[2].register_forward_hook(lambda module, inputs, output: seen.append((type(module), inputs[0], output)))
    model = BNN(net, prior_scale=1.0)
    x, y = torch.randn(64, 5), torch.randint(0, 2, (64,))
    posterior = approximate("dropout", model, (x, y), epochs=1, batch_size=64, progress=False, p=None)
    assert seen and all(cls is Dropout for cls, _, _ in seen)  # every bayesdl pass ran the fast sampler
    assert type(net[2]) is nn.Dropout and net[2].p == 0.3  # and the user's module is unchanged after

    seen.clear()
    with torch.no_grad():
        posterior.predict(x, num_samples=3)
    _, inputs, output = seen[-1]
    live = inputs != 0  # after the ReLU: units the mask can act on
    kept = output[live] != 0
    # inverted dropout at the slot's own rate: ~30% of live units zeroed, the kept ones scaled by 1 / 0.7
    assert abs(1 - float(kept.float().mean()) - 0.3) < 0.03
    assert torch.allclose(output[live][kept], inputs[live][kept] / 0.7)


def test_outside_bayesdl_the_network_is_a_plain_torch_network():
    net = _net()
    BNN(net, prior_scale=1.0)
    net.train()
    torch.manual_seed(0)
    out = net[2](torch.ones(1000, 10))
    assert type(net[2]) is nn.Dropout
    assert abs(float((out == 0).float().mean()) - 0.3) < 0.05
