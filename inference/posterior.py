"""``Posterior``: one object for every approximate posterior -- the seam of the library.

Whatever made it -- a guide fitted by SVI (mean-field, MC dropout, MAP), a Laplace
approximation, NUTS draws, any Pyro guide -- a ``Posterior`` answers the same typed calls,
and nothing outside :mod:`bayesdl.inference` needs to know which method is behind it:

- ``predictive_probs(x, link_approx="mc" | "probit")``: the mean predictive probabilities
  ``[N, C]``, by Monte Carlo or (Laplace) by the probit approximation of the GLM predictive;
- ``predict(x, S)``: posterior-predictive samples as a typed :class:`~bayesdl.predictions.Prediction`,
  :class:`~bayesdl.predictions.ClassPrediction` (``probs`` ``[S, N, C]``) or
  :class:`~bayesdl.predictions.RegressionPrediction` (``mean``, ``noise`` ``[S, N]``);
  ``predictive_outputs(x, S)``: the network outputs behind it ``[S, N, ...]`` (logits, means);
- ``point_estimate()``: representative weights ``{site: tensor}`` (the MAP, the variational
  mean, the dropout network's weights, the mean of MCMC draws); ``point_outputs(x)`` and
  ``point_features(x)``: the network there (dropout off), its outputs and penultimate features;
- ``sample(S)``: weight draws ``{site: [S, *shape]}``; ``draws(S)``: the same kept by chain,
  ``[chains, draws, *shape]``, with divergences where the method has them (:class:`Draws`);
- ``log_likelihood(x, y)``: ``ln p(y_n | x_n, theta)`` at every draw ``[chains, draws, N]``,
  through the predictive the method really uses (a Laplace approximation's linearised
  network) -- what PSIS-LOO needs;
- ``is_point_mass``: a point mass (MAP) computes its prediction once, however many samples
  are asked; ``fixed_draws``: the number of draws a posterior holds (MCMC), ``None`` when it
  draws afresh every time.

An approximation plugs in by subclassing :class:`Approximation`.
"""

from __future__ import annotations

from dataclasses import dataclass

import pyro
import torch
from pyro import poutine

from bayesdl.checks import check_int
from bayesdl.models.bnn import BNN, bnn_of
from bayesdl.predictions import Prediction
from bayesdl.progress import track

from . import distributed

__all__ = ["Posterior", "Approximation", "Draws", "PyroGuideApproximation"]


@dataclass(frozen=True)
class Draws:
    """Weight draws kept by chain: ``samples[site]`` is ``[chains, draws, *shape]``.

    ``diverging`` ``[chains, draws]`` (bool) marks divergent transitions of MCMC; ``None`` for
    methods without chains, whose independent draws form one chain.
    """

    samples: dict[str, torch.Tensor]
    diverging: torch.Tensor | None = None

    @property
    def num_chains(self) -> int:
        return next(iter(self.samples.values())).shape[0]

    @property
    def num_draws(self) -> int:
        """Draws per chain."""
        return next(iter(self.samples.values())).shape[1]


class Approximation:
    """What an approximate posterior provides to :class:`Posterior`.

    Subclasses set ``model`` and implement :meth:`sample_parameters` and :meth:`point_estimate`,
    and for networks (:class:`~bayesdl.models.BNN` models) :meth:`predictive_outputs`; the
    other methods have defaults that hold for most approximations.
    """

    model: object
    #: Every draw is the same weight vector (MAP): a prediction is computed once.
    is_point_mass: bool = False

    @property
    def fixed_draws(self) -> int | None:
        """How many distinct draws the approximation holds (MCMC), ``None`` if it draws afresh."""
        return None

    def sample_parameters(self, num_samples: int) -> dict[str, torch.Tensor]:
        """Weight draws ``{site: [S, *shape]}``."""
        raise NotImplementedError

    def point_estimate(self) -> dict[str, torch.Tensor]:
        """Representative weights ``{site: tensor}``."""
        raise NotImplementedError

    def predictive_outputs(self, x: torch.Tensor, num_samples: int) -> torch.Tensor:
        """``num_samples`` network outputs for posterior prediction at ``x``, ``[S, N, ...]``."""
        raise NotImplementedError

    def predictive_probs(self, x: torch.Tensor, link_approx: str = "mc",
                         num_samples: int = 100) -> torch.Tensor:
        """Mean class probabilities ``[N, C]`` at checked inputs ``x``. ``link_approx="mc"`` (the
        only one by default) averages the probabilities of ``num_samples`` passes; approximations
        with a Gaussian over the outputs (Laplace) add ``"probit"``."""
        if link_approx != "mc":
            raise ValueError(
                f"link_approx={link_approx!r} is not available for {type(self).__name__}: it needs a "
                "Gaussian over the network outputs (a Laplace approximation); use link_approx='mc'"
            )
        likelihood = _require_bnn(self.model).likelihood
        passes = 1 if self.is_point_mass else num_samples
        return likelihood.probabilities(self.predictive_outputs(x, passes)).mean(0)

    def draws(self, num_samples: int) -> Draws:
        """Draws by chain; by default ``num_samples`` independent draws as one chain."""
        return Draws({k: v[None] for k, v in self.sample_parameters(num_samples).items()})

    def outputs_at(self, x: torch.Tensor, weights: dict[str, torch.Tensor]) -> torch.Tensor:
        """Outputs ``[S, N, ...]`` at given joint draws ``{site: [S, *shape]}``, as this
        approximation predicts: by default the network at each draw."""
        bnn = _require_bnn(self.model)
        count = next(iter(weights.values())).shape[0]
        return torch.stack([bnn.network(x, {k: v[s].to(x.device) for k, v in weights.items()})
                            for s in range(count)])


def _batches(x: torch.Tensor, batch_size: int | None):
    """``x`` split into batches of ``batch_size`` (None: one batch)."""
    if batch_size is None:
        return (x,)
    return x.split(check_int(batch_size, "batch_size", minimum=1))


def _require_bnn(model) -> BNN:
    bnn = bnn_of(model)
    if bnn is None:
        raise TypeError(
            "this needs a bayesdl.models.BNN model (a network); for other Pyro models use sample() "
            "or draws() to get the latent draws"
        )
    return bnn


class PyroGuideApproximation(Approximation):
    """Adapter for any Pyro guide (e.g. ``AutoNormal``): draws come from running the guide.

    ``args``/``kwargs`` are the model arguments the guide is called with (autoguides ignore
    them once set up). The point estimate is the guide's ``median()`` where it has one
    (autoguides), else the mean of 1,000 draws. An ``AutoDelta`` guide is a point mass.
    """

    def __init__(self, model, guide, args=(), kwargs=None):
        from pyro.infer.autoguide import AutoDelta

        self.model = model
        self.guide = guide
        self.args = args
        self.kwargs = kwargs or {}
        self.is_point_mass = isinstance(guide, AutoDelta)

    def _draw(self) -> dict[str, torch.Tensor]:
        trace = poutine.trace(self.guide).get_trace(*self.args, **self.kwargs)
        return {name: site["value"].detach() for name, site in trace.nodes.items()
                if site["type"] == "sample" and not site["is_observed"]}

    def sample_parameters(self, num_samples: int) -> dict[str, torch.Tensor]:
        draws = [self._draw() for _ in range(num_samples)]
        return {name: torch.stack([d[name] for d in draws]) for name in draws[0]}

    def point_estimate(self):
        median = getattr(self.guide, "median", None)
        if callable(median):
            return {k: v.detach() for k, v in median(*self.args, **self.kwargs).items()}
        return {k: v.mean(0) for k, v in self.sample_parameters(1000).items()}

    def predictive_outputs(self, x, num_samples):
        bnn = _require_bnn(self.model)
        return torch.stack([bnn.network(x, self._draw()) for _ in range(num_samples)])


class Posterior:
    """An approximate posterior over a model's latent variables.

    Parameters
    ----------
    model:
        The model (a :class:`bayesdl.models.BNN` for predictions; any Pyro model for draws).
    approximation:
        An :class:`Approximation` -- a guide of :mod:`bayesdl.inference.guides`, a Laplace or
        NUTS approximation. A plain Pyro guide is wrapped in :class:`PyroGuideApproximation`.
    history:
        The training history, when the approximation was fitted by :func:`bayesdl.inference.fit`.
    method:
        Its name, e.g. ``"dropout"`` (default: the approximation's class name).

    Example::

        >>> posterior = approximate("dropout", model, loader, epochs=10)    # doctest: +SKIP
        >>> posterior.predict(x_test, num_samples=100).probs.shape          # doctest: +SKIP
        torch.Size([100, 10000, 10])
    """

    def __init__(self, model, approximation, history=None, method: str | None = None):
        if not isinstance(approximation, Approximation):
            if callable(approximation):
                approximation = PyroGuideApproximation(model, approximation)
            else:
                raise TypeError(
                    "approximation must be a bayesdl Approximation (a guide, Laplace, NUTS draws) or a "
                    f"Pyro guide, got {type(approximation).__name__}"
                )
        self.model = model
        self._approximation = approximation
        self.history = history
        self.method = method or type(approximation).__name__

    # ---------------------------------------------------------------- properties
    @property
    def is_point_mass(self) -> bool:
        """Whether every draw is the same weight vector (MAP)."""
        return self._approximation.is_point_mass

    @property
    def fixed_draws(self) -> int | None:
        """How many distinct draws the posterior holds (MCMC), ``None`` if it draws afresh."""
        return self._approximation.fixed_draws

    @property
    def bnn(self) -> BNN:
        """The :class:`bayesdl.models.BNN` behind the model (``TypeError`` for other models)."""
        return _require_bnn(self.model)

    # ---------------------------------------------------------------- prediction
    @torch.no_grad()
    def predictive_outputs(self, x, num_samples: int = 100, batch_size: int = 1024,
                           progress: bool = False) -> torch.Tensor:
        """Network outputs of ``num_samples`` posterior passes, ``[S, N, ...]`` (logits, means).

        A point mass runs the network once and returns that output ``num_samples`` times (a view).
        Under a launched Fabric (:mod:`bayesdl.inference.distributed`) the inputs are split over
        the ranks and the samples gathered in input order on every rank: call it on every rank.
        """
        bnn = self.bnn
        x = bnn.check_inputs(x)
        num_samples = check_int(num_samples, "num_samples", minimum=1)
        batch_size = check_int(batch_size, "batch_size", minimum=1)
        passes = 1 if self.is_point_mass else num_samples

        def outputs_of(inputs):
            batches = track(inputs.split(batch_size), desc=f"predict ({passes} samples)", unit="batch",
                            enabled=progress and distributed.is_writer())
            chunks = [self._approximation.predictive_outputs(chunk, passes) for chunk in batches]
            return torch.cat(chunks, dim=1)

        # Under a launched Fabric the ranks share the inputs and gather the samples in order.
        outputs = distributed.shard_map(outputs_of, x, dim=1)
        return outputs.expand(num_samples, *outputs.shape[1:]) if passes != num_samples else outputs

    def point_outputs(self, x, batch_size: int | None = None) -> torch.Tensor:
        """Network outputs ``[N, ...]`` (logits, means) at :meth:`point_estimate`, dropout off:
        the deterministic network of MC dropout, the MAP of Laplace, the first member of an
        ensemble. On the model's device; differentiable in ``x`` (ODIN and attacks take input
        gradients), so wrap it in ``torch.no_grad()`` when none is needed. ``batch_size`` inputs
        at a time (default: all at once)."""
        bnn, x, weights = self.bnn, self.bnn.check_inputs(x), self.point_estimate()
        return torch.cat([bnn.network(chunk, weights) for chunk in _batches(x, batch_size)])

    @torch.no_grad()
    def point_features(self, x, batch_size: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """``(outputs [N, ...], features [N, H])`` at :meth:`point_estimate`, dropout off: the
        outputs of :meth:`point_outputs` and the input of the output layer (the penultimate
        features a ConfidNet head or a NeuralLinear model reads). On the model's device,
        ``batch_size`` inputs at a time (default: all at once)."""
        bnn, x, weights = self.bnn, self.bnn.check_inputs(x), self.point_estimate()
        pairs = [bnn.features(chunk, weights) for chunk in _batches(x, batch_size)]
        return torch.cat([o for o, _ in pairs]), torch.cat([f for _, f in pairs])

    def predict(self, x, num_samples: int = 100, batch_size: int = 1024,
                progress: bool = False) -> Prediction:
        """Posterior-predictive samples at inputs ``x`` ``[N, ...]``.

        Returns a :class:`~bayesdl.predictions.ClassPrediction` (``probs`` ``[S, N, C]``; binary
        models give ``C = 2``) for classification, or a
        :class:`~bayesdl.predictions.RegressionPrediction` (``mean``, ``noise`` ``[S, N]``) for
        regression. Inputs are processed ``batch_size`` at a time, so ``N`` can be large;
        ``progress`` shows a progress bar over the batches.
        """
        outputs = self.predictive_outputs(x, num_samples, batch_size, progress)
        return self.bnn.likelihood.predict(outputs)

    @torch.no_grad()
    def predictive_probs(self, x, link_approx: str = "mc", num_samples: int = 100, batch_size: int = 1024,
                         progress: bool = False) -> torch.Tensor:
        """Posterior-predictive class probabilities ``p(y | x, D)`` ``[N, C]`` (classification).

        ``link_approx="mc"``: the mean of the probabilities of ``num_samples`` posterior passes
        (``predict(x, num_samples).predictive``). ``link_approx="probit"`` (Laplace posteriors):
        the probit approximation of the linearised (GLM) predictive, MacKay (1992),
        ``softmax(f(x; theta*) / sqrt(1 + pi/8 diag(J Sigma J^T)))`` -- deterministic, no sampling;
        the ``link_approx="probit"`` of laplace-torch. Other posteriors refuse it with a
        ``ValueError``. Binary (Bernoulli) models give ``C = 2``.
        """
        bnn = self.bnn
        if bnn.likelihood.task != "classification":
            raise ValueError("predictive_probs is for classification models; use predict(x).mean for "
                             "regression")
        if not isinstance(link_approx, str):
            raise TypeError(f"link_approx must be a string ('mc' or 'probit'), got "
                            f"{type(link_approx).__name__}")
        x = bnn.check_inputs(x)
        num_samples = check_int(num_samples, "num_samples", minimum=1)
        batch_size = check_int(batch_size, "batch_size", minimum=1)
        batches = track(x.split(batch_size), desc=f"predictive_probs ({link_approx})", unit="batch",
                        enabled=progress)
        return torch.cat([self._approximation.predictive_probs(chunk, link_approx, num_samples)
                          for chunk in batches])

    # ---------------------------------------------------------------- weights
    @torch.no_grad()
    def point_estimate(self) -> dict[str, torch.Tensor]:
        """Representative weights ``{site: tensor}``: the MAP, the variational mean, the weights of
        the dropout network (dropout off), the mean of MCMC draws."""
        return self._approximation.point_estimate()

    @torch.no_grad()
    def sample(self, num_samples: int = 100) -> dict[str, torch.Tensor]:
        """Draws of the latent variables, ``{site: [S, *shape]}``."""
        num_samples = check_int(num_samples, "num_samples", minimum=1)
        with pyro.poutine.block():
            return self._approximation.sample_parameters(num_samples)

    @torch.no_grad()
    def draws(self, num_samples: int = 500) -> Draws:
        """Draws kept by chain, ``[chains, draws, *shape]``, with divergences for MCMC.

        A posterior that holds its draws (NUTS) returns all of them, whatever ``num_samples``;
        others draw ``num_samples`` independent draws, as one chain.
        """
        num_samples = check_int(num_samples, "num_samples", minimum=1)
        with pyro.poutine.block():
            return self._approximation.draws(num_samples)

    @torch.no_grad()
    def outputs_at(self, x, weights: dict[str, torch.Tensor]) -> torch.Tensor:
        """Network outputs ``[S, N, ...]`` at given joint draws ``{site: [S, *shape]}`` (from
        :meth:`sample` or one chain of :meth:`draws`), as this posterior predicts: a Laplace
        approximation through its linearised network, the others through the network."""
        x = self.bnn.check_inputs(x)
        return self._approximation.outputs_at(x, weights)

    @torch.no_grad()
    def log_likelihood(self, x, y, draws: Draws | None = None, num_samples: int = 500) -> torch.Tensor:
        """Pointwise log-likelihood ``ln p(y_n | x_n, theta)`` at every draw, ``[chains, draws, N]``
        (on the CPU), through the predictive this posterior uses (see :meth:`outputs_at`).

        ``draws`` defaults to :meth:`draws` ``(num_samples)``.
        """
        x, y = self.bnn.check_data(x, y)
        draws = self.draws(num_samples) if draws is None else draws
        log_lik = torch.empty(draws.num_chains, draws.num_draws, x.shape[0])
        for c, d, output in self.outputs_by_draw(x, draws):
            log_lik[c, d] = self.bnn.likelihood.log_prob(output, y).cpu()
        return log_lik

    def outputs_by_draw(self, x, draws: Draws):
        """``(chain, draw, outputs [N, ...])`` for every draw of ``draws``, one chain at a time,
        as this posterior predicts (see :meth:`outputs_at`): a generator, so a caller turning each
        pass into several quantities (log-likelihood, replicated targets) runs the network once."""
        x = self.bnn.check_inputs(x)
        for c in range(draws.num_chains):
            outputs = self._approximation.outputs_at(x, {k: v[c] for k, v in draws.samples.items()})
            for d, output in enumerate(outputs):
                yield c, d, output

    def __repr__(self) -> str:
        return f"Posterior({self.method}, model={type(self.model).__name__})"
