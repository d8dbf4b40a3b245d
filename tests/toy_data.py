"""Toy data shared by the tests: three Gaussian blobs in 2-D, a 3-class problem a small MLP
learns in a few steps (imported as ``from toy_data import blobs``; pytest puts this folder
on the path)."""

import torch

#: the blob centres most tests use
CENTERS = ((0.0, 2.0), (2.0, -1.0), (-2.0, -1.0))


def blobs(n: int, seed: int = 0, centers=CENTERS, noise: float = 0.5) -> tuple[torch.Tensor, torch.Tensor]:
    """``(x [n, 2], y [n])``: labels drawn uniformly over the classes, each point ``noise``-spread
    around its class centre; the same ``(n, seed)`` gives the same data."""
    g = torch.Generator().manual_seed(seed)
    y = torch.randint(0, len(centers), (n,), generator=g)
    return torch.tensor(centers)[y] + noise * torch.randn(n, 2, generator=g), y
