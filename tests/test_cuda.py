"""The library on a GPU: skipped where torch sees no CUDA device (CI, this project's CPUs).

``benchmarks/gpu_check.sh`` runs these on a GPU machine, with the studies and the speed
benchmark on the GPU.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from bayesdl.inference import MAPGuide, MeanFieldGuide, approximate, distributed, fit, load_checkpoint
from bayesdl.models import BNN, MLP, LeNet

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")


def _images(n=256, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 1, 28, 28, generator=g)
    y = (x[:, 0, :14].mean((1, 2)) > x[:, 0, 14:].mean((1, 2))).long()
    return x, y


@pytest.mark.parametrize("method", ["map", "mean_field", "dropout"])
def test_svi_methods_train_and_predict_on_the_gpu(method, tmp_path):
    x, y = _images()
    model = BNN(LeNet(dropout="all"), prior_scale=1.0)
    posterior = approximate(method, model, (x, y), epochs=2, batch_size=64, seed=0, device="cuda",
                            checkpoint=tmp_path / "ckpt.pt", progress=False)
    assert posterior.bnn.prior_scales.device.type == "cuda"
    probs = posterior.predict(x[:100], num_samples=8).probs  # CPU inputs are moved by the BNN
    assert probs.shape == (8, 100, 10) and probs.device.type == "cuda"  # LeNet: 10 classes
    torch.testing.assert_close(probs.sum(-1), torch.ones(8, 100, device="cuda"))
    assert np.isfinite(posterior.history.elbo).all()


def test_checkpoint_saved_on_the_gpu_loads_on_the_gpu(tmp_path):
    x, y = _images()
    model = BNN(LeNet(dropout="all"), prior_scale=1.0)
    guide = MeanFieldGuide(model)
    fit(model, guide, (x, y), epochs=1, batch_size=64, seed=0, device="cuda", checkpoint=tmp_path / "c.pt",
        progress=False)
    other = BNN(LeNet(dropout="all"), prior_scale=1.0).to("cuda")
    loaded = load_checkpoint(tmp_path / "c.pt", other, MeanFieldGuide(other).to("cuda"))
    expected = guide.point_estimate()
    for site, value in loaded.point_estimate().items():
        torch.testing.assert_close(value, expected[site])


def test_last_layer_laplace_on_the_gpu():
    x, y = _images()
    model = BNN(LeNet(dropout="all"), prior_scale=1.0)
    map_posterior = approximate("map", model, (x, y), epochs=2, batch_size=64, seed=0, device="cuda",
                                progress=False)
    laplace = approximate("laplace", model, (x, y), map_posterior=map_posterior, subset="last_layer",
                          structure="kron")
    probs = laplace.predict(x[:50].cuda(), num_samples=10).probs
    assert probs.shape == (10, 50, 10) and torch.isfinite(probs).all()


def _one_gpu_fabric():
    x, y = _images()
    model = BNN(MLP(28 * 28, [64], 2), prior_scale=1.0)
    posterior = fit(model, MAPGuide(model), (x.flatten(1), y), epochs=3, batch_size=64, seed=0, progress=False)
    probs = posterior.predict(x.flatten(1)[:32], num_samples=2).probs
    return str(model.prior_scales.device), float(probs.sum()), posterior.history.elbo[-1]


@pytest.mark.parametrize("precision", ["32-true", "bf16-mixed"])
def test_fit_through_fabric_on_one_gpu(precision):
    pytest.importorskip("lightning")
    device, total, elbo = distributed.launch(_one_gpu_fabric, devices=1, accelerator="cuda",
                                             precision=precision)
    assert device.startswith("cuda") and np.isfinite(elbo)
    assert total == pytest.approx(2 * 32, rel=1e-3)  # each of 2 samples x 32 inputs sums to one
