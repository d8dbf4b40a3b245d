"""The recipes of the MNIST studies' networks: cache keys that outlive new fields, and a
plain-PyTorch recipe (SGD, momentum, weight decay) trained by bayesdl exactly as PyTorch trains it."""

import pytest
import torch
from toy_data import cache_ctx, images

from bayesdl.experiments.training import NetworkRecipe, train_network, train_plain
from bayesdl.inference import DropoutGuide


def test_fields_added_later_keep_the_cache_keys_of_earlier_runs():
    # The 50-epoch MAP LeNet of the calibration and OOD studies (seed 0): its entry was written
    # before network, optimizer, momentum and weight_decay existed, and must keep its name.
    recipe = NetworkRecipe(method="map", placement="all", p=0.5, epochs=50, lr=1e-3, final_lr=1e-5, seed=0,
                           train_size=55000, split_seed=0)
    assert recipe.key() == "lenet-map-f5e6ecab661b"
    corbiere = NetworkRecipe(method="dropout", network="corbiere", p=None, optimizer="sgd", momentum=0.9,
                             weight_decay=1e-4, train_size=54000)
    assert corbiere.key().startswith("corbiere-dropout-")
    assert len({corbiere.key(), NetworkRecipe(method="dropout", network="corbiere", p=None,
                                              train_size=54000).key()}) == 2


@pytest.mark.parametrize("fields, message", [
    ({"network": "resnet"}, "network must be one of"),
    ({"optimizer": "rmsprop"}, "optimizer must be one of"),
    ({"network": "corbiere"}, "own dropout rates"),
    ({"p": None}, "needs its dropout rate"),
    ({"momentum": 0.9}, "momentum is an option of sgd"),
])
def test_inconsistent_recipes_are_refused(fields, message):
    with pytest.raises(ValueError, match=message):
        NetworkRecipe(method="dropout", **fields)


def test_sgd_with_weight_decay_steps_exactly_as_plain_pytorch(tmp_path):
    # A deterministic network and full batches: bayesdl's MAP fit (objective summed over the
    # data, prior from the weight decay, SGD at lr / N) must take plain PyTorch's steps.
    # oneDNN picks its convolution algorithm by memory layout (bayesdl's path runs channels-last on
    # the CPU, plain PyTorch the default layout), and its algorithms round differently (3.6e-6 apart
    # after 3 steps under torch 2.14); the reference kernels show the steps are the same steps.
    ctx, train = cache_ctx(tmp_path), images(32)
    recipe = dict(placement=None, epochs=3, lr=0.05, batch_size=32, train_size=32, optimizer="sgd", momentum=0.9,
                  weight_decay=0.1, seed=3)
    with torch.backends.mkldnn.flags(enabled=False):
        posterior, _ = train_network(NetworkRecipe(method="map", **recipe), train, ctx)
        net, _ = train_plain(NetworkRecipe(method="plain", **recipe), train, ctx)
    ours = posterior.point_estimate()
    start = NetworkRecipe(method="plain", **recipe)
    torch.manual_seed(start.seed)
    initial = dict(start.build().named_parameters())
    for name, value in net.named_parameters():
        assert not torch.allclose(value, initial[name])  # it trained
        torch.testing.assert_close(ours[name], value.detach(), rtol=1e-4, atol=1e-6)


def test_the_dropout_prior_term_is_the_weight_decay_on_every_site():
    # kl() = sum(c M^2): per example (the objective is summed over N) a weight decay wd is
    # c / N = wd / 2 on every weight, whatever dropout rate feeds it (0.25 into fc1, 0.5 into fc2).
    n, decay = 54000, 1e-4
    model = NetworkRecipe(method="dropout", network="corbiere", p=None, weight_decay=decay, train_size=n).model()
    guide = DropoutGuide(model, p=None)
    guide.setup(torch.zeros(2, 1, 28, 28))
    assert guide.site_rates["fc1.weight"] == 0.25 and guide.site_rates["fc2.weight"] == 0.5
    torch.testing.assert_close(guide.kl_coefficient, torch.full_like(guide.kl_coefficient, decay * n / 2))
