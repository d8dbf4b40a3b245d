"""The dropout Q-network of the bandits study: one mask per episode, deterministic and resumable runs."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch

pytest.importorskip("gymnasium")

from bayesdl.experiments.studies.bandits.dqn import QNetwork, dqn_runs, run_dqn

OPTIONS = SimpleNamespace(dqn_steps=150, dqn_seeds=1, q_dropout=0.1, warmup=50, replay=1000, target_every=20,
                          decay=100)


def test_a_held_mask_is_one_network_and_training_masks_are_per_example():
    net = QNetwork(4, 2, 64, 0.5)
    masks = net.masks(torch.Generator().manual_seed(0))
    s = torch.randn(8, 4)
    assert torch.equal(net(s, masks=masks), net(s, masks=masks))           # one network for the episode
    same = s[:1].expand(8, 4)
    outputs = net(same)                                                      # training: per-example masks
    assert not all(torch.allclose(outputs[0], outputs[i]) for i in range(1, 8))
    assert torch.allclose(net(same, dropout=False)[0], net(same, dropout=False)[7])
    assert {float(v) for v in masks[0].unique()} <= {0.0, 2.0}               # kept units scaled by 1 / (1 - p)


def test_runs_are_deterministic_and_served_from_the_cache(tmp_path, monkeypatch):
    first = run_dqn("thompson", 0, OPTIONS)
    assert first == run_dqn("thompson", 0, OPTIONS)
    assert sum(first["returns"]) == OPTIONS.dqn_steps  # CartPole pays 1 per step
    assert first["batches"][-1] == OPTIONS.dqn_steps - OPTIONS.warmup
    ctx = SimpleNamespace(seed=0, progress=False)
    runs = dqn_runs(ctx, OPTIONS, tmp_path)
    assert runs[("thompson", 0)] == first and set(runs) == {("thompson", 0), ("epsilon_greedy", 0)}
    import bayesdl.experiments.studies.bandits.dqn as dqn

    monkeypatch.setattr(dqn, "run_dqn", lambda *a: pytest.fail("a saved run was recomputed"))
    assert dqn_runs(ctx, OPTIONS, tmp_path) == runs
