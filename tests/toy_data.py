"""Toy data shared by the tests: three Gaussian blobs in 2-D, a 3-class problem a small MLP
learns in a few steps, and random MNIST-shaped images with the minimal run context the study
cache needs (imported as ``from toy_data import blobs``; pytest puts this folder on the path)."""

from types import SimpleNamespace

import torch
from torch.utils.data import TensorDataset

#: the blob centres most tests use
CENTERS = ((0.0, 2.0), (2.0, -1.0), (-2.0, -1.0))


def blobs(n: int, seed: int = 0, centers=CENTERS, noise: float = 0.5) -> tuple[torch.Tensor, torch.Tensor]:
    """``(x [n, 2], y [n])``: labels drawn uniformly over the classes, each point ``noise``-spread
    around its class centre; the same ``(n, seed)`` gives the same data."""
    g = torch.Generator().manual_seed(seed)
    y = torch.randint(0, len(centers), (n,), generator=g)
    return torch.tensor(centers)[y] + noise * torch.randn(n, 2, generator=g), y


def images(n: int = 32, seed: int = 0) -> TensorDataset:
    """``n`` random ``[1, 28, 28]`` images with random labels in 0..9: MNIST's shapes, no data."""
    g = torch.Generator().manual_seed(seed)
    return TensorDataset(torch.randn(n, 1, 28, 28, generator=g), torch.randint(0, 10, (n,), generator=g))


def cache_ctx(tmp_path) -> SimpleNamespace:
    """What the study cache (``bayesdl.experiments.training``) reads of a run context: a cache
    folder under ``tmp_path``, the CPU, no progress output."""
    return SimpleNamespace(cache_dir=tmp_path / "cache", folder=SimpleNamespace(final=tmp_path / "out"),
                           device=torch.device("cpu"), progress=False)
