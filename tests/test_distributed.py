"""Data-parallel fit and sharded predict: two gloo processes on the CPU through Lightning Fabric.

Each test forks two ranks (``ddp_fork``: no re-import, a few seconds); the rank functions return
plain numbers or NumPy arrays (tensors do not survive the return queue once a rank has exited).
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
import warnings

import numpy as np
import pytest
import torch

from bayesdl.experiments.cli import main
from bayesdl.experiments.io import SCHEMA_KEYS
from bayesdl.inference import BNNElbo, DropoutGuide, MAPGuide, approximate, distributed, fit
from bayesdl.models import BNN, MLP

needs_lightning = pytest.mark.skipif(importlib.util.find_spec("lightning") is None,
                                     reason='needs Lightning: pip install -e ".[distributed]"')

TWO_RANKS = {"devices": 2, "strategy": "ddp_fork", "accelerator": "cpu"}


def _from_every_rank(value) -> list:
    """``value`` of every rank, in rank order (what ``launch`` returns from rank 0)."""
    values = [None] * distributed.world_size()
    torch.distributed.all_gather_object(values, value)
    return values


def _data(n: int, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 3, generator=g)
    y = (x[:, 0] - x[:, 1] > 0).long()
    return x, y


def _model(p: float = 0.0):
    torch.manual_seed(0)
    return BNN(MLP(3, [16], 2, dropout=p), prior_scale=1.0)


class RecordingElbo(BNNElbo):
    """The default objective, remembering every minibatch and its local log-likelihood."""

    def __init__(self):
        super().__init__()
        self.inputs, self.log_likelihoods = [], []

    def terms(self, model, guide, x, y, dataset_size=None):
        log_lik, kl = super().terms(model, guide, x, y, dataset_size)
        self.inputs.append(x.detach().clone())
        self.log_likelihoods.append(float(log_lik.detach()))
        return log_lik, kl


def _map_two_steps(record: bool):
    """MAP by plain SGD (whose step, unlike Adam's first, scales with the gradient), two steps of
    8 examples each, in input order."""
    x, y = _data(16)
    model = _model()
    elbo = RecordingElbo()
    posterior = fit(model, MAPGuide(model), (x, y), epochs=1, batch_size=8, shuffle=False, seed=0, elbo=elbo,
                    optimizer=lambda params: torch.optim.SGD(params, lr=1e-3), progress=False)
    weights = {k: v.numpy().copy() for k, v in posterior.point_estimate().items()}
    seen = torch.cat(elbo.inputs).numpy() if record else None
    return weights, posterior.history.elbo, seen


@needs_lightning
def test_two_ranks_take_one_step_of_one_process_on_the_union_batch():
    one, one_elbo, _ = _map_two_steps(record=False)
    ranks = distributed.launch(_rank_map_steps, **TWO_RANKS)
    (two, two_elbo, seen0), (_, elbo1, seen1) = ranks
    for site in one:
        np.testing.assert_allclose(two[site], one[site], rtol=1e-5, atol=1e-7)
    # the recorded ELBO is the ranks' mean, i.e. one process's estimate on the union batch
    np.testing.assert_allclose(two_elbo, one_elbo, rtol=1e-5)
    assert two_elbo == elbo1
    # each rank saw its own half of every step: 2 steps x 4 examples, disjoint, together all 16
    x, _ = _data(16)
    assert seen0.shape == seen1.shape == (8, 3)
    together = np.concatenate([seen0, seen1])
    assert sorted(map(tuple, together.round(6))) == sorted(map(tuple, x.numpy().round(6)))


def _rank_map_steps():
    weights, elbo, seen = _map_two_steps(record=True)
    gathered = distributed.current().all_gather(torch.from_numpy(weights["head.bias"]))
    assert torch.equal(gathered[0], gathered[1])  # DDP keeps the ranks' parameters identical
    return _from_every_rank((weights, elbo, seen))


def _rank_dropout_masks():
    x, y = _data(8)
    # Every example twice in a row: rank 0 gets the even positions, rank 1 the odd ones --
    # the same 8 examples, so the two ranks' log-likelihoods differ only by their dropout masks.
    x, y = x.repeat_interleave(2, 0), y.repeat_interleave(2, 0)
    model = _model(p=0.5)
    elbo = RecordingElbo()
    fit(model, DropoutGuide(model), (x, y), epochs=2, batch_size=16, shuffle=False, seed=0, elbo=elbo,
        progress=False)
    after = float(torch.rand(()))  # the generator outside fit: the same on every rank
    return _from_every_rank((elbo.log_likelihoods, torch.cat(elbo.inputs).numpy(), after))


@needs_lightning
def test_each_rank_draws_its_own_dropout_masks():
    (ll0, seen0, after0), (ll1, seen1, after1) = distributed.launch(_rank_dropout_masks, **TWO_RANKS)
    np.testing.assert_array_equal(seen0, seen1)  # the same inputs and weights on both ranks ...
    assert len(ll0) == len(ll1) == 2
    assert all(a != b for a, b in zip(ll0, ll1))  # ... but other masks
    assert ll0[0] != ll0[1]  # and other masks again in the next epoch
    assert after0 == after1


def _rank_predict(n: int):
    x, y = _data(32)
    model = _model(p=0.5)
    map_posterior = fit(model, MAPGuide(model), (x, y), epochs=1, batch_size=32, seed=0, progress=False)
    x_test, _ = _data(n, seed=1)
    sharded = map_posterior.predict(x_test, num_samples=3, batch_size=4).probs
    with distributed.single_process():  # the same prediction in this process alone
        whole = map_posterior.predict(x_test, num_samples=3).probs
    dropout = fit(model, DropoutGuide(model), (x, y), epochs=1, batch_size=32, seed=0, progress=False)
    # Two identical halves: rank 0 predicts the first, rank 1 the second -- with their own masks.
    twice = dropout.predict(torch.cat([x_test[:6], x_test[:6]]), num_samples=4).probs
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        approximate("laplace", model, (x, y), map_posterior=map_posterior)
    said = any("laplace is not data-parallel" in str(w.message) for w in caught)
    return _from_every_rank((sharded.numpy(), whole.numpy(), twice.numpy(), said))


@needs_lightning
def test_predict_shards_the_inputs_and_gathers_the_samples_in_order():
    n = 11  # not a multiple of the ranks: the last shard is padded, the padding dropped
    (sharded0, whole, twice0, said0), (sharded1, _, twice1, said1) = distributed.launch(_rank_predict, n,
                                                                                         **TWO_RANKS)
    assert sharded0.shape == whole.shape == (3, n, 2)
    np.testing.assert_allclose(sharded0, whole, rtol=1e-6, atol=1e-7)  # in input order
    np.testing.assert_array_equal(sharded0, sharded1)  # every rank gets the whole prediction
    np.testing.assert_array_equal(twice0, twice1)
    assert twice0.shape == (4, 12, 2)
    assert not np.allclose(twice0[:, :6], twice0[:, 6:])  # each rank drew its own dropout masks
    assert said0 and not said1  # Laplace says, once and on rank 0, that it is not data-parallel


def _rank_resume(folder):
    x, y = _data(32)

    def weights(epochs, name, resume=False):
        model = _model(p=0.5)
        guide = DropoutGuide(model)
        fit(model, guide, (x, y), epochs=epochs, batch_size=8, seed=0, checkpoint=os.path.join(folder, name),
            resume=resume, progress=False)
        return guide.point_flat().numpy().copy()

    straight = weights(2, "straight.pt")
    weights(1, "resumed.pt")
    resumed = weights(2, "resumed.pt", resume=True)
    return _from_every_rank((straight, resumed))


@needs_lightning
@pytest.mark.slow
def test_data_parallel_checkpoints_are_written_by_rank_0_and_resume_exactly(tmp_path):
    original = os.replace

    def recording_replace(src, dst, *args, **kwargs):
        with open(tmp_path / "writes", "a") as f:
            f.write(f"{distributed.current().global_rank}\t{os.path.basename(dst)}\n")
        return original(src, dst, *args, **kwargs)

    os.replace = recording_replace  # the forked ranks inherit it
    try:
        (straight0, resumed0), (straight1, resumed1) = distributed.launch(_rank_resume, str(tmp_path), **TWO_RANKS)
    finally:
        os.replace = original
    log = [line.split("\t") for line in (tmp_path / "writes").read_text().splitlines()]
    # one atomic write per epoch, all by rank 0: 2 (straight) + 1 + 1 (resumed from epoch 1)
    assert log == [["0", "straight.pt"]] * 2 + [["0", "resumed.pt"]] * 2
    # each rank's noise stream is fixed by (seed, rank, epoch): resuming gives the same weights
    np.testing.assert_array_equal(resumed0, straight0)
    np.testing.assert_array_equal(straight0, straight1)
    np.testing.assert_array_equal(resumed0, resumed1)


@needs_lightning
@pytest.mark.slow
def test_quick_study_on_two_ranks_writes_its_results_once(tmp_path):
    from bayesdl.experiments.registry import run_study

    log = tmp_path / "writes"
    out = tmp_path / "run"
    original = os.replace

    def recording_replace(src, dst, *args, **kwargs):
        # every atomic write ends in os.replace; the forked ranks inherit this wrapper
        rank = distributed.current().global_rank if distributed.current() else -1
        with open(log, "a") as f:
            f.write(f"{rank}\t{os.fspath(dst)}\n")
        return original(src, dst, *args, **kwargs)

    os.replace = recording_replace
    try:
        metrics = run_study("logistic-2d", out, quick=True, progress=False, devices=2, strategy="ddp_fork")
    finally:
        os.replace = original
    assert tuple(json.loads((out / "metrics.json").read_text())) == SCHEMA_KEYS
    assert metrics["config"]["distributed"]["world_size"] == 2
    # The run is built in a staging folder beside `out` and swapped in whole (experiments/io.py):
    # every file written there, and so into `out`, comes from rank 0, once.
    writes = [line.split("\t") for line in log.read_text().splitlines()]
    beside_out = [(rank, dst) for rank, dst in writes if dst.startswith(str(tmp_path / ".run.staging-"))]
    assert beside_out and {rank for rank, _ in beside_out} == {"0"}
    destinations = [dst for _, dst in beside_out]
    assert len(destinations) == len(set(destinations))
    assert any(dst.endswith("/metrics.json") for _, dst in beside_out)
    assert (out / "report.md").exists() and list(out.glob("*.png"))
    assert not list(tmp_path.glob(".run.staging-*"))


@needs_lightning
@pytest.mark.slow
def test_bdl_run_with_two_devices_writes_the_same_schema(tmp_path):
    """The user's path: `bdl run STUDY --devices 2` (Lightning re-runs the command for rank 1)."""
    out = tmp_path / "two"
    result = subprocess.run([sys.executable, "-m", "bayesdl.experiments", "run", "logistic-2d", "--quick",
                             "--no-progress", "--devices", "2", "--out", str(out)],
                            capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    metrics = json.loads((out / "metrics.json").read_text())
    assert tuple(metrics) == SCHEMA_KEYS
    assert metrics["config"]["distributed"] == {"devices": 2, "num_nodes": 1, "strategy": "ddp",
                                                "precision": "32-true", "world_size": 2}
    assert set(metrics["results"]) >= {"map", "laplace", "mean_field", "nuts"}
    assert result.stdout.count("results in") == 1  # rank 0 alone reports
    assert "nuts is not data-parallel" in result.stderr


@pytest.mark.slow
def test_without_a_launch_nothing_imports_lightning():
    script = ("import sys, torch\n"
              "from bayesdl.inference import MAPGuide, fit\n"
              "from bayesdl.models import BNN, MLP\n"
              "model = BNN(MLP(3, [4], 2), prior_scale=1.0)\n"
              "x = torch.randn(8, 3)\n"
              "fit(model, MAPGuide(model), (x, (x[:, 0] > 0).long()), epochs=1, progress=False)"
              ".predict(x, num_samples=2)\n"
              "print('lightning' in sys.modules)\n")
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True)
    assert result.stdout.strip().splitlines()[-1] == "False"


def test_devices_without_lightning_is_a_clear_error(tmp_path, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "lightning", None)
    monkeypatch.setitem(sys.modules, "lightning.fabric", None)
    assert main(["run", "regression", "--quick", "--devices", "2", "--out", str(tmp_path)]) == 2
    assert 'pip install -e ".[distributed]"' in capsys.readouterr().err
    assert not (tmp_path / "metrics.json").exists()


@pytest.mark.parametrize("options, message", [
    ({"devices": 0}, "devices must be a positive integer"),
    ({"num_nodes": 1.5}, "num_nodes must be a positive integer"),
    ({"devices": 2, "strategy": "fsdp"}, "strategy must be one of"),
    ({"devices": 2, "precision": "8-bit"}, "precision must be one of"),
    ({"devices": 2, "precision": "16-mixed"}, "loss scaling.*use bf16-mixed"),
])
def test_launch_rejects_bad_settings(options, message):
    with pytest.raises(ValueError, match=message):
        distributed.launch(**options)


def test_one_process_is_the_default():
    assert distributed.current() is None and distributed.world_size() == 1 and distributed.is_writer()
