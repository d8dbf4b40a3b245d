"""Priors over network weights."""

from __future__ import annotations

from collections.abc import Mapping

import pyro.distributions as dist
import torch

from bayesdl.checks import check_positive

__all__ = ["NormalPrior"]


class NormalPrior:
    """Independent ``N(0, scale^2)`` on every latent weight, with optional per-layer scales.

    Parameters
    ----------
    scale:
        Default prior standard deviation.
    layer_scales:
        ``{name prefix: scale}``; a site named ``"fc1.weight"`` takes the scale of the longest
        matching prefix (``"fc1"`` or ``"fc1.weight"``), else ``scale``.

    Example::

        >>> prior = NormalPrior(1.0, layer_scales={"fc2": 0.1})
        >>> prior.scale_for("fc2.weight"), prior.scale_for("conv1.bias")
        (0.1, 1.0)
    """

    def __init__(self, scale: float = 1.0, layer_scales: Mapping[str, float] | None = None):
        self.scale = check_positive(scale, "prior_scale")
        self.layer_scales = {
            str(name): check_positive(value, f"layer_scales[{name!r}]")
            for name, value in (layer_scales or {}).items()
        }

    def scale_for(self, site: str) -> float:
        """Prior standard deviation of the site named ``site``."""
        best, best_len = self.scale, -1
        for prefix, value in self.layer_scales.items():
            if (site == prefix or site.startswith(prefix + ".")) and len(prefix) > best_len:
                best, best_len = value, len(prefix)
        return best

    def distribution(self, site: str, like: torch.Tensor) -> dist.Distribution:
        """The prior of site ``site`` shaped like ``like``, as one event."""
        zeros = torch.zeros_like(like)
        return dist.Normal(zeros, self.scale_for(site)).to_event(like.dim())

    def __repr__(self) -> str:
        extra = f", layer_scales={self.layer_scales}" if self.layer_scales else ""
        return f"NormalPrior(scale={self.scale:g}{extra})"
