"""A multi-output Gaussian likelihood with missing targets: the reward model of a bandit agent.

A bandit network predicts the reward of every arm, ``output`` ``[N, K]``, but only the pulled
arm's reward is observed (Riquelme et al. 2018, sec. 3: the loss is the squared error on the
observed arm only). The targets are ``[N, K]`` with ``NaN`` at every output that was not
observed; the log-likelihood of an example is the sum over its observed outputs::

    ln p(y_n | output_n) = sum_{k : y_nk observed} ln N(y_nk | output_nk, scale^2)

so an unobserved output contributes neither a term nor a gradient.
"""

from __future__ import annotations

import math
import typing

import pyro.distributions as dist
import torch
from pyro.distributions.torch_distribution import TorchDistribution
from torch.distributions import constraints

from bayesdl.checks import as_tensor
from bayesdl.predictions import RegressionPrediction

from .likelihoods import Gaussian

__all__ = ["MaskedGaussian", "MaskedNormal"]


class MaskedNormal(TorchDistribution):
    """``N(loc, scale^2)`` over ``[..., K]`` vectors (event shape ``[K]``) whose ``NaN`` entries are
    missing: :meth:`log_prob` sums the observed entries only, :meth:`sample` draws all of them."""

    arg_constraints: typing.ClassVar[dict] = {"loc": constraints.real, "scale": constraints.positive}
    support = constraints.real_vector
    has_rsample = True

    def __init__(self, loc: torch.Tensor, scale: torch.Tensor, validate_args=None):
        self.loc, self.scale = loc, scale.expand_as(loc)
        super().__init__(loc.shape[:-1], loc.shape[-1:], validate_args=False)

    def rsample(self, sample_shape=()):
        shape = self._extended_shape(sample_shape)
        return self.loc.expand(shape) + self.scale.expand(shape) * torch.randn(shape, dtype=self.loc.dtype,
                                                                                device=self.loc.device)

    def log_prob(self, value):
        observed = ~torch.isnan(value)
        filled = torch.where(observed, value, self.loc)
        terms = dist.Normal(self.loc, self.scale).log_prob(filled)
        return torch.where(observed, terms, torch.zeros_like(terms)).sum(-1)


class MaskedGaussian(Gaussian):
    """``y_nk ~ N(output_nk, scale^2)`` for the observed entries of targets ``[N, K]`` (``NaN``:
    not observed, e.g. the rewards of the arms a bandit did not pull); see the module notes.

    ``scale=None`` learns one noise scale shared by the outputs (type-II maximum likelihood, from
    ``init_scale``); a number fixes it. Each example must observe at least one output. Predictions
    are :class:`RegressionPrediction` with ``mean`` and ``noise`` ``[S, N, K]``.

    ``BNN`` checks a network's output shape with integer class labels ``[N]``; those are accepted
    as that shape check only (they are never observed: :meth:`log_prob` needs ``[N, K]``).

        >>> lik = MaskedGaussian(scale=1.0)
        >>> y = torch.tensor([[0.5, float("nan")]])        # arm 0 pulled, reward 0.5
        >>> lik.log_prob(torch.tensor([[0.5, 9.0]]), y)    # only arm 0 counts
        tensor([-0.9189])
    """

    def check_targets(self, y, output):
        if output.dim() != 2:
            raise ValueError(f"a masked Gaussian needs outputs [N, K] (one per arm), got "
                             f"{tuple(output.shape)}")
        y = as_tensor(y, "y")
        if y.dim() == 1 and not y.is_floating_point() and y.shape[0] == output.shape[0]:
            return y  # the output-shape probe of BNN.check_inputs
        if y.shape != output.shape:
            raise ValueError(f"y must have shape {tuple(output.shape)} (one reward per arm, NaN where not "
                             f"observed) to match the outputs, got {tuple(y.shape)}")
        y = y.to(output.dtype)
        observed = ~torch.isnan(y)
        if bool(torch.isinf(y).any()):
            raise ValueError("y holds infinite values; mark an unobserved output by NaN")
        if not bool(observed.any(-1).all()):
            raise ValueError("every example must observe at least one output (a row of y is all NaN)")
        return y

    def distribution(self, output):
        return MaskedNormal(output, self.scale.to(output.dtype))

    def log_prob(self, output, y):
        if y.dim() != 2:
            raise ValueError(f"a masked Gaussian observes targets [N, K] with NaN where missing, got shape "
                             f"{tuple(y.shape)}")
        observed = ~torch.isnan(y)
        residual = torch.where(observed, y - output, torch.zeros_like(output))
        terms = -0.5 * (residual / self.scale) ** 2 - self.log_scale - 0.5 * math.log(2 * math.pi)
        return torch.where(observed, terms, torch.zeros_like(terms)).sum(-1)

    def predict(self, output):
        return RegressionPrediction(output, self.scale.detach().to(output.dtype).expand_as(output))

    def sample_targets(self, output, generator):
        noise = torch.randn(output.shape, generator=generator)
        return output.detach().cpu() + float(self.scale.detach()) * noise

    def output_hessian(self, output):
        raise NotImplementedError(
            "the Hessian of a masked Gaussian depends on which outputs each target observes, so its GGN is "
            "not defined by the output alone; a Laplace approximation of a bandit network is not supported")

    def noise_mismatch(self, mean_log_prob: float) -> str | None:
        return None  # the per-example log-likelihood sums a varying number of outputs
