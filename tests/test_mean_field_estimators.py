"""Mean-field VI's choice of which layers draw pre-activations per example (local_reparameterization)."""

import pytest
import torch
import torch.nn as nn

from bayesdl.inference import MeanFieldGuide, approximate
from bayesdl.models import BNN


class _ConvNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(1, 2, 3)
        self.fc = nn.Linear(2 * 4 * 4, 3)

    def forward(self, x):
        self.conv_out = self.conv(x)
        return self.fc(self.conv_out.flatten(1))


def _guide(estimator):
    torch.manual_seed(0)
    model = BNN(_ConvNet(), prior_scale=1.0)
    return model, MeanFieldGuide(model, init_scale=0.5, local_reparameterization=estimator)


@pytest.mark.parametrize("estimator, conv_per_example, dense_per_example",
                         [("all", True, True), ("linear", False, True), ("none", False, False)])
def test_each_estimator_draws_per_example_exactly_in_the_layers_it_names(estimator, conv_per_example,
                                                                        dense_per_example):
    model, guide = _guide(estimator)
    x = torch.randn(1, 1, 6, 6).expand(2, 1, 6, 6).contiguous()  # two identical examples
    out = guide.network_output(x)
    conv = model.net.conv_out

    def drawn_per_example(a, b):
        # Identical rows under one shared weight draw can still differ by a rounding step (a BLAS
        # kernel may tile the two rows differently, 2.4e-7 seen); draws per example differ by O(0.1).
        gap = (a - b).abs().max().item()
        assert gap < 1e-5 or gap > 1e-2, f"a gap of {gap:.2g} is neither rounding nor a separate draw"
        return gap > 1e-2

    assert drawn_per_example(conv[0], conv[1]) is conv_per_example
    # one shared draw of every weight gives identical outputs for identical inputs
    assert drawn_per_example(out[0], out[1]) is (conv_per_example or dense_per_example)


@pytest.mark.parametrize("make, per_example", [(_ConvNet, "linear"), (lambda: nn.Sequential(
    nn.Linear(36, 8), nn.ReLU(), nn.Linear(8, 3)), "all")], ids=["conv-net", "dense-net"])
def test_per_example_draws_keep_each_examples_distribution(make, per_example):
    """Drawing a layer's pre-activations per example changes only the correlation between
    examples: each example's output has the distribution it has under one shared draw of every
    weight (for dense layers; for a convolution only 'linear' and 'none' are exact, 'all' also
    treats its output positions as independent)."""
    torch.manual_seed(1)
    x = torch.randn(3, 1, 6, 6)
    moments = {}
    for estimator in (per_example, "none"):
        torch.manual_seed(0)
        net = make()
        model = BNN(net, prior_scale=1.0)
        guide = MeanFieldGuide(model, init_scale=0.5, local_reparameterization=estimator)
        inputs = x if isinstance(net, _ConvNet) else x.flatten(1)
        with torch.no_grad():
            draws = torch.stack([guide.network_output(inputs) for _ in range(6000)])
        moments[estimator] = draws.mean(0), draws.std(0)
    (mean_a, sd_a), (mean_b, sd_b) = moments[per_example], moments["none"]
    # Monte Carlo error of a mean: sd / sqrt(6000) ~ 0.013 sd; of an sd: ~ 0.009 sd
    assert torch.allclose(mean_a, mean_b, atol=0.06 * float(sd_a.max()))
    assert torch.allclose(sd_a, sd_b, rtol=0.06)


def test_an_unknown_estimator_is_refused_at_the_boundary():
    model = BNN(_ConvNet(), prior_scale=1.0)
    data = (torch.randn(8, 1, 6, 6), torch.randint(0, 3, (8,)))
    with pytest.raises(ValueError, match=r"local_reparameterization must be one of \['all', 'linear', 'none'\]"):
        approximate("mean_field", model, data, epochs=1, progress=False, local_reparameterization="conv")


def test_the_fast_estimator_trains_through_the_method_registry():
    torch.manual_seed(0)
    model = BNN(_ConvNet(), prior_scale=1.0)
    x = torch.randn(64, 1, 6, 6)
    y = (x.flatten(1).sum(1) > 0).long()
    posterior = approximate("mean_field", model, (x, y), epochs=30, lr=0.02, batch_size=32, progress=False,
                            local_reparameterization="linear")
    accuracy = (posterior.predict(x, num_samples=20).probs.mean(0).argmax(1) == y).float().mean()
    assert accuracy > 0.85  # a linearly separable rule, learned through conv + dense
