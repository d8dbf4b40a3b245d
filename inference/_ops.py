"""Fused operations for the guides' hot paths.

Pyro BNN training on a CPU is dominated by many small tensor operations (see the project's
performance notes). These autograd functions do the per-step work of the mean-field guide
in a few large operations with hand-written gradients.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch.overrides import TorchFunctionMode

from bayesdl.random import randn_like

__all__ = ["local_reparameterization_noise", "normal_kl", "LocalReparameterization"]

# Added to every pre-activation variance so that sqrt stays differentiable where an input
# patch is all zeros (MNIST backgrounds) and a layer has a deterministic bias.
VARIANCE_FLOOR = 1e-8


class _LRNoise(torch.autograd.Function):
    """``mean + sqrt(var) * eps`` with ``eps ~ N(0, 1)``; backward ``(g, g * eps / (2 sqrt(var)))``."""

    @staticmethod
    def forward(ctx, mean, var):
        std = var.sqrt()
        eps = randn_like(mean)
        out = torch.addcmul(mean, std, eps)
        ctx.save_for_backward(eps.div_(std.mul_(2.0)))
        return out

    @staticmethod
    def backward(ctx, grad):
        (ratio,) = ctx.saved_tensors
        return grad, grad * ratio


def local_reparameterization_noise(mean: torch.Tensor, var: torch.Tensor) -> torch.Tensor:
    """Sample pre-activations ``N(mean, var)`` elementwise, reparameterised."""
    return _LRNoise.apply(mean, var)


class _NormalKL(torch.autograd.Function):
    """``sum(-log_scale + (exp(2 log_scale) + loc^2) * inv_two_prior_var)``; see :func:`normal_kl`."""

    @staticmethod
    def forward(ctx, loc, log_scale, inv_two_prior_var):
        var = torch.exp(2.0 * log_scale)
        ctx.save_for_backward(loc, var, inv_two_prior_var)
        return (torch.addcmul(var, loc, loc) * inv_two_prior_var).sum() - log_scale.sum()

    @staticmethod
    def backward(ctx, grad):
        loc, var, inv = ctx.saved_tensors
        return grad * 2.0 * loc * inv, grad * (2.0 * var * inv - 1.0), None


def normal_kl(loc: torch.Tensor, log_scale: torch.Tensor, inv_two_prior_var: torch.Tensor,
              constant: float) -> torch.Tensor:
    """``KL(N(loc, exp(log_scale)^2) || N(0, s^2))`` summed over all elements.

    Per element, ``ln s - ln sigma + (sigma^2 + mu^2) / (2 s^2) - 1/2``; ``inv_two_prior_var``
    is ``1 / (2 s^2)`` and ``constant`` is ``sum(ln s) - D/2``.
    """
    return _NormalKL.apply(loc, log_scale, inv_two_prior_var) + constant


_LAYER_FUNCTIONS = {F.linear, F.conv1d, F.conv2d, F.conv3d}


class LocalReparameterization(TorchFunctionMode):
    """Within this mode, ``F.linear`` / ``F.conv*`` calls whose weight is a registered mean
    tensor return ``N(mean, var)`` pre-activations, one independent draw per output unit and
    example (Kingma, Salimans & Welling 2015)::

        mean = f(x, mu_W, mu_b),   var = f(x^2, sigma_W^2, sigma_b^2),   out = mean + sqrt(var) eps

    ``variances`` maps ``id(mean tensor)`` to its variance tensor, for weights and biases.
    Any other call runs unchanged, so every module that uses the functional ops (with any
    stride, padding, dilation or groups) is covered.
    """

    def __init__(self, variances: dict[int, torch.Tensor]):
        super().__init__()
        self.variances = variances

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if func in _LAYER_FUNCTIONS:
            args = list(args)
            x = args[0] if args else kwargs.pop("input")
            weight = args[1] if len(args) > 1 else kwargs.pop("weight")
            bias = args[2] if len(args) > 2 else kwargs.pop("bias", None)
            var_weight = self.variances.get(id(weight))
            if var_weight is not None:
                rest = args[3:]
                var_bias = self.variances.get(id(bias)) if bias is not None else None
                if var_bias is None:
                    var_bias = x.new_full((weight.shape[0],), VARIANCE_FLOOR)
                else:
                    var_bias = var_bias + VARIANCE_FLOOR
                mean = func(x, weight, bias, *rest, **kwargs)
                var = func(x * x, var_weight, var_bias, *rest, **kwargs)
                return local_reparameterization_noise(mean, var)
            return func(x, weight, bias, *args[3:], **kwargs)
        return func(*args, **kwargs)
