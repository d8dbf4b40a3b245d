"""Basis functions for linear-in-the-parameters regression (Bishop, PRML ch. 3.1).

A basis maps scalar inputs ``x`` of shape ``[N]`` (or ``[N, 1]``) to a design matrix
``Phi`` of shape ``[N, D]``. Outputs are float64 tensors.
"""

from __future__ import annotations

import torch

from bayesdl.checks import as_tensor, check_finite, check_int, check_positive

__all__ = ["PolynomialBasis", "GaussianBasis", "as_inputs"]


def as_inputs(x, name: str = "x") -> torch.Tensor:
    """Scalar inputs as a float64 tensor of shape ``[N]`` (from ``[N]`` or ``[N, 1]``)."""
    x = as_tensor(x, name, dtype=torch.float64)
    if x.dim() == 2 and x.shape[1] == 1:
        x = x[:, 0]
    if x.dim() != 1:
        raise ValueError(f"{name} must have shape [N] or [N, 1], got shape {tuple(x.shape)}")
    if x.shape[0] == 0:
        raise ValueError(f"{name} is empty; pass at least one point")
    return check_finite(x, name)


class PolynomialBasis:
    """Features ``[1, x, x^2, ..., x^degree]``; ``degree=1`` is the linear basis.

    Example::

        >>> PolynomialBasis(2)([2.0]).tolist()
        [[1.0, 2.0, 4.0]]
    """

    def __init__(self, degree: int):
        self.degree = check_int(degree, "degree", minimum=0)

    @property
    def num_features(self) -> int:
        return self.degree + 1

    def __call__(self, x) -> torch.Tensor:
        x = as_inputs(x)
        powers = torch.arange(self.degree + 1, dtype=torch.float64)
        return x[:, None] ** powers

    def __repr__(self) -> str:
        return f"PolynomialBasis(degree={self.degree})"


class GaussianBasis:
    """Features ``exp(-(x - mu_j)^2 / (2 scale^2))`` for each center ``mu_j``.

    There is no constant feature unless ``bias=True``, in which case a column of ones comes
    first. Far from every center all features vanish, so the predictive variance of a
    Bayesian linear model on this basis tends to the noise variance ``1/beta``.

    Example::

        >>> GaussianBasis([0.0, 1.0], scale=1.0)([0.0]).round(decimals=4).tolist()
        [[1.0, 0.6065]]
    """

    def __init__(self, centers, scale: float, bias: bool = False):
        centers = as_tensor(centers, "centers", dtype=torch.float64).reshape(-1)
        if centers.numel() == 0:
            raise ValueError("centers is empty; pass at least one center")
        self.centers = check_finite(centers, "centers")
        self.scale = check_positive(scale, "scale")
        self.bias = bool(bias)

    @property
    def num_features(self) -> int:
        return self.centers.numel() + int(self.bias)

    def __call__(self, x) -> torch.Tensor:
        x = as_inputs(x)
        phi = torch.exp(-((x[:, None] - self.centers) ** 2) / (2 * self.scale**2))
        if self.bias:
            phi = torch.cat([torch.ones_like(x)[:, None], phi], dim=1)
        return phi

    def __repr__(self) -> str:
        return (f"GaussianBasis(centers={self.centers.numel()} in [{float(self.centers.min()):g}, "
                f"{float(self.centers.max()):g}], scale={self.scale:g}, bias={self.bias})")
