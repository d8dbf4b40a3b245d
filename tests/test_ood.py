"""OOD scores, ODIN against a direct implementation of its definition."""

import math

import pytest
import torch
import torch.nn as nn

from bayesdl.evaluation import (
    max_probability,
    negative_entropy,
    negative_mutual_information,
    odin_scores,
    ood_metrics,
    tune_odin,
)


def test_sample_based_scores():
    probs = torch.tensor([[[0.9, 0.1], [0.5, 0.5]], [[0.7, 0.3], [0.5, 0.5]]])
    torch.testing.assert_close(max_probability(probs), torch.tensor([0.8, 0.5]))
    assert float(negative_entropy(probs)[1]) == pytest.approx(-math.log(2))
    assert float(negative_mutual_information(probs)[1]) == pytest.approx(0.0, abs=1e-7)
    torch.testing.assert_close(max_probability(probs[0]), torch.tensor([0.9, 0.5]))


def _net():
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(4, 8), nn.Tanh(), nn.Linear(8, 3))


def test_odin_matches_its_definition():
    net = _net()
    x = torch.randn(6, 4)
    t, eps, scale = 10.0, 0.002, 0.3
    # x~ = x - eps/scale * sign(-d/dx log softmax_yhat(f(x)/T)), score = max softmax(f(x~)/T)
    xr = x.clone().requires_grad_()
    log_p = torch.log_softmax(net(xr) / t, -1)
    yhat = log_p.argmax(-1)
    (grad,) = torch.autograd.grad(-log_p[torch.arange(6), yhat].sum(), xr)
    expected = torch.softmax(net(x - eps / scale * grad.sign()) / t, -1).max(-1).values
    torch.testing.assert_close(odin_scores(net, x, t, eps, input_scale=scale), expected.detach())
    many = odin_scores(net, x, t, [0.0, eps], input_scale=scale)
    torch.testing.assert_close(many[eps], expected.detach())
    torch.testing.assert_close(many[0.0], torch.softmax(net(x) / t, -1).max(-1).values.detach())


def test_tune_odin_picks_the_best_grid_point():
    net = _net()
    x_in, x_out = torch.randn(50, 4) * 0.5, torch.randn(50, 4) * 3
    result = tune_odin(net, x_in, x_out, temperatures=(1.0, 100.0), epsilons=(0.0, 0.01), criterion="auroc")
    assert len(result["grid"]) == 4
    assert result["auroc"] == max(g["auroc"] for g in result["grid"])
    best = result
    assert ood_metrics(odin_scores(net, x_in, best["temperature"], best["epsilon"]),
                       odin_scores(net, x_out, best["temperature"], best["epsilon"]))["auroc"] == pytest.approx(best["auroc"])


@pytest.mark.parametrize("kwargs, message", [({"temperature": 0.0, "epsilon": 0.0}, "temperature"),
                                             ({"temperature": 1.0, "epsilon": -1.0}, "epsilon")])
def test_odin_bad_input(kwargs, message):
    with pytest.raises(ValueError, match=message):
        odin_scores(_net(), torch.randn(2, 4), **kwargs)
