"""``Posterior``: one object for every approximate posterior.

Whatever made it -- a guide fitted by SVI (mean-field, MC dropout, MAP), a Laplace
approximation, NUTS draws, any Pyro guide -- a ``Posterior`` answers the same calls:

- ``predict(x, num_samples)``: posterior-predictive samples, probabilities ``[S, N, C]`` for
  classification, ``RegressionPrediction(mean [S, N], noise [S, N])`` for regression;
- ``sample(num_samples)``: weight draws ``{site: [S, *shape]}``.

An approximation plugs in by providing ``sample_parameters(S)`` and, for networks,
``predictive_outputs(x, S)`` (network outputs ``[S, N, ...]``); see :class:`Approximation`.
"""

from __future__ import annotations

from typing import NamedTuple, Protocol

import pyro
import torch
from pyro import poutine
from tqdm.auto import tqdm

from bayesdl.checks import check_int
from bayesdl.models.bnn import BNN, bnn_of

__all__ = ["Posterior", "RegressionPrediction", "Approximation", "PyroGuideApproximation"]


class RegressionPrediction(NamedTuple):
    """Posterior-predictive samples for regression: ``y ~ N(mean[s, n], noise[s, n]^2)``."""

    mean: torch.Tensor
    noise: torch.Tensor

    def moments(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Predictive mean and variance ``[N]`` of the mixture over samples."""
        mean = self.mean.mean(0)
        variance = self.mean.var(0, unbiased=False) + (self.noise**2).mean(0)
        return mean, variance


class Approximation(Protocol):
    """What a posterior approximation provides to :class:`Posterior`."""

    def sample_parameters(self, num_samples: int) -> dict[str, torch.Tensor]: ...

    def predictive_outputs(self, x: torch.Tensor, num_samples: int) -> torch.Tensor: ...


class PyroGuideApproximation:
    """Adapter for any Pyro guide (e.g. ``AutoNormal``): draws come from running the guide.

    ``args``/``kwargs`` are the model arguments the guide is called with (autoguides ignore
    them once set up).
    """

    def __init__(self, model, guide, args=(), kwargs=None):
        self.model = model
        self.guide = guide
        self.args = args
        self.kwargs = kwargs or {}

    def _draw(self) -> dict[str, torch.Tensor]:
        trace = poutine.trace(self.guide).get_trace(*self.args, **self.kwargs)
        return {name: site["value"].detach() for name, site in trace.nodes.items()
                if site["type"] == "sample" and not site["is_observed"]}

    def sample_parameters(self, num_samples: int) -> dict[str, torch.Tensor]:
        draws = [self._draw() for _ in range(num_samples)]
        return {name: torch.stack([d[name] for d in draws]) for name in draws[0]}

    def predictive_outputs(self, x, num_samples):
        bnn = bnn_of(self.model)
        if bnn is None:
            raise TypeError("predict needs a bayesdl.models.BNN model; use sample() for the latent draws")
        return torch.stack([bnn.network(x, self._draw()) for _ in range(num_samples)])


class Posterior:
    """An approximate posterior over a model's latent variables.

    Parameters
    ----------
    model:
        The model (a :class:`bayesdl.models.BNN` for ``predict``; any Pyro model for ``sample``).
    approximation:
        A guide of :mod:`bayesdl.inference.guides`, a Laplace or NUTS approximation, or anything
        with ``sample_parameters`` (and ``predictive_outputs`` for networks). A plain Pyro
        guide is wrapped in :class:`PyroGuideApproximation`.
    history:
        The training history, when the approximation was fitted by :func:`bayesdl.inference.fit`.

    Example::

        >>> posterior = fit(model, DropoutGuide(model), loader, epochs=10)   # doctest: +SKIP
        >>> probs = posterior.predict(x_test, num_samples=100)              # doctest: +SKIP
        >>> probs.shape                                                     # doctest: +SKIP
        torch.Size([100, 10000, 10])
    """

    def __init__(self, model, approximation, history=None):
        if not hasattr(approximation, "sample_parameters"):
            if callable(approximation):
                approximation = PyroGuideApproximation(model, approximation)
            else:
                raise TypeError(
                    f"approximation must be a guide or provide sample_parameters(), got "
                    f"{type(approximation).__name__}"
                )
        self.model = model
        self.approximation = approximation
        self.history = history

    @property
    def method(self) -> str:
        """Name of the approximation, e.g. ``"DropoutGuide"``."""
        return type(self.approximation).__name__

    def _bnn(self) -> BNN:
        bnn = bnn_of(self.model)
        if bnn is None:
            raise TypeError(
                "predict needs a bayesdl.models.BNN model; for other Pyro models use sample() to get "
                "draws of the latent sites"
            )
        return bnn

    @torch.no_grad()
    def predictive_outputs(self, x, num_samples: int = 100, batch_size: int = 1024,
                           progress: bool = False) -> torch.Tensor:
        """Network outputs of ``num_samples`` posterior passes, ``[S, N, ...]`` (logits, means)."""
        bnn = self._bnn()
        x = bnn.check_inputs(x)
        num_samples = check_int(num_samples, "num_samples", minimum=1)
        batch_size = check_int(batch_size, "batch_size", minimum=1)
        batches = x.split(batch_size)
        if progress:
            batches = tqdm(batches, desc=f"predict ({num_samples} samples)", unit="batch", leave=False)
        chunks = [self.approximation.predictive_outputs(chunk, num_samples) for chunk in batches]
        return torch.cat(chunks, dim=1)

    def predict(self, x, num_samples: int = 100, batch_size: int = 1024, progress: bool = False):
        """Posterior-predictive samples at inputs ``x`` ``[N, ...]``.

        Returns class probabilities ``[S, N, C]`` for classification (binary models give
        ``C = 2``), or :class:`RegressionPrediction` with ``mean`` and ``noise`` ``[S, N]`` for
        regression. Inputs are processed ``batch_size`` at a time, so ``N`` can be large;
        ``progress`` shows a progress bar over the batches.
        """
        outputs = self.predictive_outputs(x, num_samples, batch_size, progress)
        prediction = self._bnn().likelihood.predict(outputs)
        if isinstance(prediction, tuple):
            return RegressionPrediction(*prediction)
        return prediction

    @torch.no_grad()
    def sample(self, num_samples: int = 100) -> dict[str, torch.Tensor]:
        """Draws of the latent variables, ``{site: [S, *shape]}``."""
        num_samples = check_int(num_samples, "num_samples", minimum=1)
        with pyro.poutine.block():
            return self.approximation.sample_parameters(num_samples)

    def __repr__(self) -> str:
        return f"Posterior({self.method}, model={type(self.model).__name__})"
