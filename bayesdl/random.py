"""Fast i.i.d. noise shaped like a tensor, whatever its memory layout.

``torch.randn_like`` keeps the memory layout of its argument, and PyTorch's CPU samplers
take a slow path for tensors that are not contiguous in the default layout: on channels-last
feature maps (which :class:`bayesdl.models.BNN` uses for images on the CPU) ``normal_`` is about 4x
slower. Noise is i.i.d., so it can be drawn into a flat buffer and viewed with the target's
strides: the same distribution and layout, on the fast path.
"""

from __future__ import annotations

import torch

__all__ = ["randn_like", "rand_like"]


def _dense_permuted(t: torch.Tensor) -> bool:
    """Is ``t`` dense in memory but in a layout other than the default (e.g. channels-last)?"""
    if t.is_contiguous():
        return False
    if t.dim() == 4:
        return t.is_contiguous(memory_format=torch.channels_last)
    if t.dim() == 5:
        return t.is_contiguous(memory_format=torch.channels_last_3d)
    return False


def randn_like(t: torch.Tensor) -> torch.Tensor:
    """Standard normal noise with the shape, dtype, device and layout of ``t``."""
    if _dense_permuted(t):
        return torch.randn(t.numel(), dtype=t.dtype, device=t.device).as_strided(t.shape, t.stride())
    return torch.randn_like(t)


def rand_like(t: torch.Tensor) -> torch.Tensor:
    """Uniform [0, 1) noise with the shape, dtype, device and layout of ``t``."""
    if _dense_permuted(t):
        return torch.rand(t.numel(), dtype=t.dtype, device=t.device).as_strided(t.shape, t.stride())
    return torch.rand_like(t)
