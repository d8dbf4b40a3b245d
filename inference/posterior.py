"""``Posterior``: one object for every approximate posterior -- the seam of the library.

Whatever made it -- a guide fitted by SVI (mean-field, MC dropout, MAP), a Laplace
approximation, NUTS draws, any Pyro guide -- a ``Posterior`` answers the same typed calls,
and nothing outside :mod:`bayesdl.inference` needs to know which method is behind it:

- ``predictive_probs(x, link_approx="mc" | "probit")``: the mean predictive probabilities
  ``[N, C]``, by Monte Carlo or (Laplace) by the probit approximation of the GLM predictive;
- ``predictive_log_probs(x, num_samples)``: their log ``[N, C]``, **differentiable in x**, through
  the predictive the method really uses (what :mod:`bayesdl.inference.attacks` attacks);
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

How much one call may allocate: ``predict``, ``predictive_outputs``, ``predictive_probs``,
``sample``, ``draws`` and ``log_likelihood`` estimate the bytes of their result (``num_samples x N
x outputs x element size``; ``predictive_probs`` per batch, since it averages the samples batch
by batch) before any work, and refuse with a ``ValueError`` above :data:`MAX_RESULT_BYTES`
(8 GiB), saying what it would need and what to do instead. Raise the limit where the memory is
there: ``bayesdl.inference.posterior.MAX_RESULT_BYTES = 64 * 2**30``.
"""

from __future__ import annotations

import numbers
import weakref
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
import pyro
import torch
from pyro import poutine

from bayesdl.checks import check_int
from bayesdl.models.bnn import BNN, bnn_of
from bayesdl.predictions import Prediction
from bayesdl.progress import track

from . import distributed

__all__ = ["Posterior", "Approximation", "Draws", "PyroGuideApproximation", "MAX_RESULT_BYTES"]

#: The most bytes one call of a :class:`Posterior` may allocate for its result (8 GiB): a
#: ``predict(x, num_samples)`` of ``num_samples x N x outputs`` numbers, ``sample(S)`` of ``S``
#: weight vectors, ... A call above it is refused before any work, with the memory it would need
#: and what to do instead. Read at every call: set it to change the limit, e.g.
#: ``bayesdl.inference.posterior.MAX_RESULT_BYTES = 64 * 2**30``.
MAX_RESULT_BYTES = 8 * 2**30


def _bytes(count: float) -> str:
    for unit in ("bytes", "KiB", "MiB", "GiB", "TiB", "PiB"):
        if count < 1024 or unit == "PiB":
            return f"{count:.0f} {unit}" if unit == "bytes" else f"{count:.1f} {unit}"
        count /= 1024
    raise AssertionError("unreachable")


def check_result_size(nbytes: int, what: str, sizes: str, advice: str) -> None:
    """Raise ``ValueError`` if a result of ``nbytes`` exceeds :data:`MAX_RESULT_BYTES`; ``sizes`` says
    how the estimate was made, ``advice`` what to do instead."""
    limit = MAX_RESULT_BYTES
    if nbytes > limit:
        raise ValueError(
            f"{what} would need about {_bytes(nbytes)} for its result ({sizes}), more than the limit of "
            f"{_bytes(limit)} (bayesdl.inference.posterior.MAX_RESULT_BYTES): {advice}; or raise the limit "
            "if the memory is there"
        )


def check_flag(value, name: str) -> bool:
    """``value`` as a bool: True/False (or 0/1), else ``TypeError`` naming ``name``."""
    if isinstance(value, (bool, np.bool_)) or (isinstance(value, numbers.Integral) and value in (0, 1)):
        return bool(value)
    raise TypeError(f"{name} must be True or False, got {value!r}")


#: per model, the network output of one example for each input shape seen (a size probe)
_OUTPUT_PROBES: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def _probe(bnn: BNN, x: torch.Tensor) -> torch.Tensor:
    """The network's output ``[1, ...]`` for one (checked) input like ``x``, at the initial weights --
    what the size of a prediction is estimated from; computed once per model and input shape (or
    taken from a pass the call made anyway, :func:`_remember`)."""
    shapes = _OUTPUT_PROBES.setdefault(bnn, {})
    key = tuple(x.shape[1:])
    if key not in shapes:
        with torch.no_grad():
            shapes[key] = bnn.network(x[:1], bnn.initial_values()).detach()
    return shapes[key]


def _remember(bnn: BNN, x: torch.Tensor, output: torch.Tensor) -> None:
    """Keep the output ``[1, ...]`` of one input like ``x`` as the size probe of that input shape."""
    _OUTPUT_PROBES.setdefault(bnn, {}).setdefault(tuple(x.shape[1:]), output.detach()[:1].clone())


def _prediction_numbers(bnn: BNN, probe: torch.Tensor) -> int:
    """How many numbers ``likelihood.predict`` returns per sample and example: the class
    probabilities, or a regression's mean and noise scale."""
    likelihood = bnn.likelihood
    if likelihood.task == "classification":
        return likelihood.probabilities(probe).numel()
    return 2


def log_class_probabilities(likelihood, outputs: torch.Tensor) -> torch.Tensor:
    """``ln p(y = c | output)`` for every class ``c``, ``[..., N, C]``, from network outputs
    ``[..., N, ...]``: ``log_softmax`` of a categorical likelihood's logits, ``(ln sigmoid(-l),
    ln sigmoid(l))`` of a Bernoulli logit ``l`` -- exact where a probability underflows to 0;
    another classification likelihood by the log of its (clamped) probabilities."""
    from bayesdl.models.likelihoods import Bernoulli, Categorical

    if isinstance(likelihood, Categorical):
        return torch.log_softmax(outputs, dim=-1)
    if isinstance(likelihood, Bernoulli):
        logit = outputs.squeeze(-1) if outputs.dim() >= 2 and outputs.shape[-1] == 1 else outputs
        log_sigmoid = torch.nn.functional.logsigmoid
        return torch.stack([log_sigmoid(-logit), log_sigmoid(logit)], -1)
    probs = likelihood.probabilities(outputs)
    return probs.clamp_min(torch.finfo(probs.dtype).tiny).log()


def log_mean_probabilities(log_probs: torch.Tensor, weights: torch.Tensor | None = None) -> torch.Tensor:
    """``ln sum_s w_s p_s`` ``[N, C]`` of per-draw log-probabilities ``[S, N, C]`` (``w_s = 1/S``
    by default, else ``weights`` ``[S]`` summing to 1), as ``logsumexp_s (ln p_s + ln w_s)``:
    the log of the Monte Carlo posterior predictive, stable where a draw's probability underflows."""
    count = log_probs.shape[0]
    if weights is None:
        return torch.logsumexp(log_probs, dim=0) - float(np.log(count))
    shape = (count,) + (1,) * (log_probs.dim() - 1)
    return torch.logsumexp(log_probs + weights.to(log_probs).log().reshape(shape), dim=0)


@dataclass(frozen=True)
class Draws:
    """Weight draws kept by chain: ``samples[site]`` is ``[chains, draws, *shape]``.

    ``diverging`` ``[chains, draws]`` (bool) marks divergent transitions of MCMC; ``None`` for
    methods without chains, whose independent draws form one chain.

    Every :class:`Posterior` returns one from :meth:`Posterior.draws`::

        >>> import torch.nn as nn
        >>> from bayesdl.models import BNN
        >>> from bayesdl.inference import MeanFieldGuide, Posterior
        >>> model = BNN(nn.Linear(2, 2))
        >>> draws = Posterior(model, MeanFieldGuide(model)).draws(5)    # independent draws: one chain
        >>> draws.num_chains, draws.num_draws, draws.diverging
        (1, 5, None)
        >>> {name: tuple(value.shape) for name, value in draws.samples.items()}
        {'weight': (1, 5, 2, 2), 'bias': (1, 5, 2)}
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

    Example (a point mass at given weights, plugged into a :class:`Posterior`)::

        >>> import torch
        >>> import torch.nn as nn
        >>> from bayesdl.models import BNN
        >>> from bayesdl.inference import Approximation, Posterior
        >>> class Fixed(Approximation):
        ...     is_point_mass = True
        ...     def __init__(self, model, weights):
        ...         self.model, self.weights = model, weights
        ...     def sample_parameters(self, num_samples):
        ...         return {k: v.expand(num_samples, *v.shape) for k, v in self.weights.items()}
        ...     def point_estimate(self):
        ...         return self.weights
        ...     def predictive_outputs(self, x, num_samples):
        ...         out = self.model.network(x, self.weights)
        ...         return out.expand(num_samples, *out.shape)
        >>> model = BNN(nn.Linear(2, 2))
        >>> zeros = {s.name: torch.zeros(s.shape) for s in model.sites}
        >>> posterior = Posterior(model, Fixed(model, zeros), method="zeros")
        >>> posterior.predictive_probs(torch.ones(3, 2))
        tensor([[0.5000, 0.5000],
                [0.5000, 0.5000],
                [0.5000, 0.5000]])
        >>> posterior.sample(4)["weight"].shape
        torch.Size([4, 2, 2])
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

    def draw_bytes(self) -> int | None:
        """The bytes of one joint draw (all sites), for the size check of ``sample`` and ``draws``;
        ``None`` when unknown before drawing. Default: the weights of a BNN model."""
        bnn = bnn_of(self.model)
        return None if bnn is None else bnn.num_latent * bnn.prior_scales.element_size()

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

    def predictive_log_probs(self, x: torch.Tensor, link_approx: str = "mc",
                             num_samples: int = 20) -> torch.Tensor:
        """``ln p(y = c | x, D)`` ``[N, C]`` at checked inputs ``x``, differentiable in ``x``: the log
        of the mean probabilities of ``num_samples`` fresh predictive passes (one for a point
        mass), ``logsumexp_s ln p(y | x, theta_s) - ln S``. What :meth:`Posterior.predictive_log_probs`
        calls; an approximation whose ``predictive_outputs`` is not differentiable in ``x`` (or
        whose predictive is no plain average of passes) overrides it."""
        if link_approx != "mc":
            raise ValueError(
                f"link_approx={link_approx!r} is not available for {type(self).__name__}: it needs a "
                "Gaussian over the network outputs (a Laplace approximation); use link_approx='mc'"
            )
        likelihood = _require_bnn(self.model).likelihood
        passes = 1 if self.is_point_mass else num_samples
        return log_mean_probabilities(log_class_probabilities(likelihood, self.predictive_outputs(x, passes)))

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


def _sites(bnn: BNN) -> list[tuple[str, tuple[int, ...]]]:
    return [(s.name, tuple(s.shape)) for s in bnn.sites]


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
    An autoguide that was never set up (never trained, never called) and cannot be called with
    ``args`` is a ``ValueError`` saying so, rather than an error from inside Pyro.

    Example (an ``AutoNormal`` guide of a one-site Pyro model)::

        >>> import pyro
        >>> import pyro.distributions as dist
        >>> from pyro.infer.autoguide import AutoNormal
        >>> from bayesdl.inference import Posterior, PyroGuideApproximation
        >>> def model():
        ...     pyro.sample("mu", dist.Normal(0.0, 1.0))
        >>> pyro.clear_param_store()
        >>> posterior = Posterior(model, PyroGuideApproximation(model, AutoNormal(model)))
        >>> posterior.sample(5)["mu"].shape, posterior.point_estimate()     # the guide's median
        (torch.Size([5]), {'mu': tensor(0.)})
    """

    def __init__(self, model, guide, args=(), kwargs=None):
        from pyro.infer.autoguide import AutoDelta

        if not callable(guide):
            raise TypeError(f"guide must be a Pyro guide (a callable), got {type(guide).__name__}")
        if not isinstance(args, (tuple, list)):
            raise TypeError(f"args must be a tuple of the model's arguments, got {type(args).__name__}")
        if kwargs is not None and not isinstance(kwargs, Mapping):
            raise TypeError(f"kwargs must be a dict of the model's keyword arguments, got "
                            f"{type(kwargs).__name__}")
        self.model = model
        self.guide = guide
        self.args = tuple(args)
        self.kwargs = dict(kwargs or {})
        self.is_point_mass = isinstance(guide, AutoDelta)

    def _never_set_up(self) -> bool:
        from pyro.infer.autoguide import AutoGuide

        return isinstance(self.guide, AutoGuide) and self.guide.prototype_trace is None

    def _run(self, call):
        """``call()`` (a run of the guide), with the failure of an autoguide never set up explained."""
        fresh = self._never_set_up()
        try:
            return call()
        except (TypeError, AttributeError) as err:
            if not fresh:
                raise
            raise ValueError(
                f"the {type(self.guide).__name__} guide has not been set up: an autoguide creates its "
                "parameters on its first call, with the model's arguments; fit it first (fit(model, guide, "
                "data, elbo=pyro.infer.Trace_ELBO())), or give it the arguments: Posterior(model, "
                f"PyroGuideApproximation(model, guide, args=(x, y))) ({type(err).__name__}: {err})"
            ) from err

    def _draw(self) -> dict[str, torch.Tensor]:
        trace = self._run(lambda: poutine.trace(self.guide).get_trace(*self.args, **self.kwargs))
        return {name: site["value"].detach() for name, site in trace.nodes.items()
                if site["type"] == "sample" and not site["is_observed"]}

    def sample_parameters(self, num_samples: int) -> dict[str, torch.Tensor]:
        first = self._draw()  # the size of a draw is known once one is drawn
        per_draw = sum(v.numel() * v.element_size() for v in first.values())
        check_result_size(num_samples * per_draw, "sample", f"{num_samples:,} draws x {per_draw:,} bytes",
                          "ask for fewer draws")
        draws = [first] + [self._draw() for _ in range(num_samples - 1)]
        return {name: torch.stack([d[name] for d in draws]) for name in draws[0]}

    def point_estimate(self):
        median = getattr(self.guide, "median", None)
        if callable(median):
            return {k: v.detach() for k, v in self._run(lambda: median(*self.args, **self.kwargs)).items()}
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
        if method is not None and not isinstance(method, str):
            raise TypeError(f"method must be the method's name (a string), got {type(method).__name__}")
        mine, theirs = bnn_of(model), bnn_of(getattr(approximation, "model", None))
        if mine is not None and theirs is not None and mine is not theirs and _sites(mine) != _sites(theirs):
            raise ValueError("the approximation was built for another network than model (other latent "
                             "weights); pass the model it approximates")
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

    # ---------------------------------------------------------------- size checks
    def _check_outputs_size(self, what: str, x: torch.Tensor, num_samples: int, *, materialised: bool,
                            prediction: bool, rows: int | None = None, advice: str | None = None) -> None:
        """Refuse (``ValueError``) ``num_samples`` passes over ``rows`` (default: all) inputs ``x``
        whose numbers -- the outputs when ``materialised``, plus the prediction made of them when
        ``prediction`` -- would exceed :data:`MAX_RESULT_BYTES`."""
        bnn = self.bnn
        probe = _probe(bnn, x)
        per_example = (probe[0].numel() if materialised else 0) + (
            _prediction_numbers(bnn, probe) if prediction else 0)
        rows = x.shape[0] if rows is None else rows
        size = probe.element_size()
        if advice is None:
            advice = ("ask for fewer samples, or predict fewer inputs at a time (x[i:i + k]); for the mean "
                      "class probabilities use predictive_probs, which averages the samples batch by batch")
        sizes = f"{num_samples:,} samples x {rows:,} inputs x {per_example:,} numbers x {size} bytes"
        check_result_size(num_samples * rows * per_example * size, what, sizes, advice)

    def _check_draws_size(self, what: str, num_samples: int) -> None:
        per_draw = self._approximation.draw_bytes()
        if per_draw is not None:
            check_result_size(num_samples * per_draw, what, f"{num_samples:,} draws x {per_draw:,} bytes",
                              "ask for fewer draws, or draw them in several calls and reduce each (a running "
                              "mean, a histogram)")

    # ---------------------------------------------------------------- prediction
    @torch.no_grad()
    def predictive_outputs(self, x, num_samples: int = 100, batch_size: int = 1024,
                           progress: bool = False) -> torch.Tensor:
        """Network outputs of ``num_samples`` posterior passes, ``[S, N, ...]`` (logits, means).

        A point mass runs the network once and returns that output ``num_samples`` times (a view).
        Under a launched Fabric (:mod:`bayesdl.inference.distributed`) the inputs are split over
        the ranks and the samples gathered in input order on every rank: call it on every rank.
        A result above :data:`MAX_RESULT_BYTES` (counted as if materialised) is refused first.
        """
        bnn = self.bnn
        x = bnn.check_inputs(x)
        num_samples = check_int(num_samples, "num_samples", minimum=1)
        batch_size = check_int(batch_size, "batch_size", minimum=1)
        progress = check_flag(progress, "progress")
        return self._checked_outputs("predictive_outputs", x, num_samples, batch_size, progress,
                                     materialised=True, prediction=False)

    def _checked_outputs(self, what, x, num_samples, batch_size, progress, *, materialised, prediction):
        """The outputs ``[S, N, ...]``, their size checked first -- for a point mass (or one sample)
        after its one pass, which any prediction makes (so no extra pass learns the output size)."""
        if not (self.is_point_mass or num_samples == 1):
            self._check_outputs_size(what, x, num_samples, materialised=materialised, prediction=prediction)
            return self._outputs(x, num_samples, batch_size, progress)
        outputs = self._outputs(x, 1, batch_size, progress)
        _remember(self.bnn, x, outputs[0])
        if num_samples > 1:
            self._check_outputs_size(what, x, num_samples, materialised=materialised, prediction=prediction)
            outputs = outputs.expand(num_samples, *outputs.shape[1:])
        return outputs

    def _outputs(self, x, num_samples, batch_size, progress):
        passes = 1 if self.is_point_mass else num_samples

        def outputs_of(inputs):
            batches = track(inputs.split(batch_size), unit="batch",
                            desc=f"predict ({passes} samples x {len(inputs):,} inputs)",
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
        bnn, x = self.bnn, self.bnn.check_inputs(x)
        batches = _batches(x, batch_size)
        weights = self.point_estimate()
        return torch.cat([bnn.network(chunk, weights) for chunk in batches])

    @torch.no_grad()
    def point_features(self, x, batch_size: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """``(outputs [N, ...], features [N, H])`` at :meth:`point_estimate`, dropout off: the
        outputs of :meth:`point_outputs` and the input of the output layer (the penultimate
        features a ConfidNet head or a NeuralLinear model reads). On the model's device,
        ``batch_size`` inputs at a time (default: all at once)."""
        bnn, x = self.bnn, self.bnn.check_inputs(x)
        batches = _batches(x, batch_size)
        weights = self.point_estimate()
        pairs = [bnn.features(chunk, weights) for chunk in batches]
        return torch.cat([o for o, _ in pairs]), torch.cat([f for _, f in pairs])

    def predict(self, x, num_samples: int = 100, batch_size: int = 1024,
                progress: bool = False) -> Prediction:
        """Posterior-predictive samples at inputs ``x`` ``[N, ...]``.

        Returns a :class:`~bayesdl.predictions.ClassPrediction` (``probs`` ``[S, N, C]``; binary
        models give ``C = 2``) for classification, or a
        :class:`~bayesdl.predictions.RegressionPrediction` (``mean``, ``noise`` ``[S, N]``) for
        regression. Inputs are processed ``batch_size`` at a time, so ``N`` can be large;
        ``progress`` shows a progress bar over the batches. A prediction that would need more
        than :data:`MAX_RESULT_BYTES` (the outputs and the prediction made of them) is refused
        before any work, with what it would need.

        **Cost.** ``num_samples`` forward passes over all of ``x`` (one for a point mass; MC dropout
        with a deterministic trunk runs the trunk once): ``num_samples x N`` network evaluations,
        where one training epoch over ``n`` points is about ``3 n`` (forward and backward). So the
        default 100 samples over a test set as large as the training set cost about as much as 30
        training epochs -- on small data, more than the training itself. 20-30 samples usually
        suffice for mean probabilities; ``progress=True`` shows the passes as they run.
        """
        bnn = self.bnn
        x = bnn.check_inputs(x)
        num_samples = check_int(num_samples, "num_samples", minimum=1)
        batch_size = check_int(batch_size, "batch_size", minimum=1)
        progress = check_flag(progress, "progress")
        with torch.no_grad():
            # a point mass's outputs are a view of one pass; its prediction is materialised
            outputs = self._checked_outputs("predict", x, num_samples, batch_size, progress,
                                            materialised=not self.is_point_mass, prediction=True)
        return bnn.likelihood.predict(outputs)

    @torch.no_grad()
    def predictive_probs(self, x, link_approx: str = "mc", num_samples: int = 100, batch_size: int = 1024,
                         progress: bool = False) -> torch.Tensor:
        """Posterior-predictive class probabilities ``p(y | x, D)`` ``[N, C]`` (classification).

        ``link_approx="mc"``: the mean of the probabilities of ``num_samples`` posterior passes
        (``predict(x, num_samples).predictive``). ``link_approx="probit"`` (Laplace posteriors):
        the probit approximation of the linearised (GLM) predictive, MacKay (1992),
        ``softmax(f(x; theta*) / sqrt(1 + pi/8 diag(J Sigma J^T)))`` -- deterministic, no sampling;
        the ``link_approx="probit"`` of laplace-torch. Other posteriors refuse it with a
        ``ValueError``. Binary (Bernoulli) models give ``C = 2``. With ``"mc"``, the samples of one
        batch are held at a time: ``num_samples x batch_size`` outputs and probabilities above
        :data:`MAX_RESULT_BYTES` are refused first (pass a smaller ``batch_size``).
        """
        batch_size = check_int(batch_size, "batch_size", minimum=1)
        x, num_samples = self._class_inputs("predictive_probs", "use predict(x).mean for regression", x,
                                            link_approx, num_samples, batch_size,
                                            "pass a smaller batch_size (the samples of one batch are held "
                                            "at a time) or ask for fewer samples")
        progress = check_flag(progress, "progress")
        batches = track(x.split(batch_size), desc=f"predictive_probs ({link_approx})", unit="batch",
                        enabled=progress)
        return torch.cat([self._approximation.predictive_probs(chunk, link_approx, num_samples)
                          for chunk in batches])

    def predictive_log_probs(self, x, num_samples: int = 20, link_approx: str = "mc",
                             batch_size: int | None = None) -> torch.Tensor:
        """The log posterior-predictive class probabilities ``ln p(y = c | x, D)`` ``[N, C]``,
        **differentiable in** ``x`` -- the predictive an attack (:mod:`bayesdl.inference.attacks`)
        or any input-gradient method must take its gradient through.

        It is the predictive this posterior really uses, with fresh randomness at every call:
        ``ln (1/S sum_s p(y | x, theta_s))`` over ``num_samples`` draws (MC dropout masks,
        mean-field or SWAG weights; a point mass runs once), computed as ``logsumexp_s ln p_s - ln S``
        so that it stays finite where a probability underflows; a Laplace approximation through its
        linearised (GLM) network, or with ``link_approx="probit"`` the probit approximation of
        :meth:`predictive_probs`; an ensemble the mixture ``sum_k (S_k / S) p_k`` of its members'
        own predictives. ``exp`` of it is :meth:`predictive_probs` (up to the Monte Carlo noise).
        Not under ``torch.no_grad()``: wrap the call in it when no gradient is needed.

        ``x`` ``[N, ...]`` in the network's input space, ``batch_size`` inputs at a time (default:
        all at once; the graph of every batch is kept until the backward pass). The
        ``num_samples x batch`` outputs above :data:`MAX_RESULT_BYTES` are refused first.
        """
        if batch_size is not None:
            batch_size = check_int(batch_size, "batch_size", minimum=1)
        x, num_samples = self._class_inputs("predictive_log_probs", "use predict(x) for regression", x,
                                            link_approx, num_samples, batch_size,
                                            "pass a smaller batch_size or ask for fewer samples")
        return torch.cat([self._approximation.predictive_log_probs(chunk, link_approx, num_samples)
                          for chunk in _batches(x, batch_size)])

    def _class_inputs(self, what, regression_advice, x, link_approx, num_samples, batch_size, advice):
        """The checks at the boundary of the class-probability calls: a classification model, a
        string ``link_approx``, checked inputs and sample count, and -- for Monte Carlo passes --
        the ``num_samples x batch`` outputs held at once against :data:`MAX_RESULT_BYTES`.
        Returns ``(x, num_samples)`` checked."""
        bnn = self.bnn
        if bnn.likelihood.task != "classification":
            raise ValueError(f"{what} is for classification models; {regression_advice}")
        if not isinstance(link_approx, str):
            raise TypeError(f"link_approx must be a string ('mc' or 'probit'), got "
                            f"{type(link_approx).__name__}")
        x = bnn.check_inputs(x)
        num_samples = check_int(num_samples, "num_samples", minimum=1)
        if link_approx == "mc" and not self.is_point_mass and num_samples > 1:  # one pass: no bigger than x
            rows = x.shape[0] if batch_size is None else min(batch_size, x.shape[0])
            self._check_outputs_size(what, x, num_samples, materialised=True, prediction=True, rows=rows,
                                     advice=advice)
        return x, num_samples

    # ---------------------------------------------------------------- weights
    @torch.no_grad()
    def point_estimate(self) -> dict[str, torch.Tensor]:
        """Representative weights ``{site: tensor}``: the MAP, the variational mean, the weights of
        the dropout network (dropout off), the mean of MCMC draws."""
        return self._approximation.point_estimate()

    @torch.no_grad()
    def sample(self, num_samples: int = 100) -> dict[str, torch.Tensor]:
        """Draws of the latent variables, ``{site: [S, *shape]}`` (refused above
        :data:`MAX_RESULT_BYTES`)."""
        num_samples = check_int(num_samples, "num_samples", minimum=1)
        self._check_draws_size("sample", num_samples)
        with pyro.poutine.block():
            return self._approximation.sample_parameters(num_samples)

    @torch.no_grad()
    def draws(self, num_samples: int = 500) -> Draws:
        """Draws kept by chain, ``[chains, draws, *shape]``, with divergences for MCMC.

        A posterior that holds its draws (NUTS) returns all of them, whatever ``num_samples``;
        others draw ``num_samples`` independent draws, as one chain (refused above
        :data:`MAX_RESULT_BYTES`).
        """
        num_samples = check_int(num_samples, "num_samples", minimum=1)
        if self.fixed_draws is None:
            self._check_draws_size("draws", num_samples)
        with pyro.poutine.block():
            return self._approximation.draws(num_samples)

    def _check_weights(self, weights) -> dict[str, torch.Tensor]:
        """Joint draws ``{site: [S, *shape]}`` of every site of the model, one ``S`` for all."""
        bnn = self.bnn
        if not isinstance(weights, Mapping):
            raise TypeError(f"weights must be a {{site: [S, *shape]}} dict of joint draws (from sample(S) "
                            f"or one chain of draws()), got {type(weights).__name__}")
        missing = [s.name for s in bnn.sites if s.name not in weights]
        if missing:
            raise ValueError(f"weights must hold every site of the model; missing {missing}")
        counts = set()
        for site in bnn.sites:
            value = weights[site.name]
            if not isinstance(value, torch.Tensor) or tuple(value.shape[1:]) != tuple(site.shape):
                shape = tuple(value.shape) if isinstance(value, torch.Tensor) else type(value).__name__
                expected = ", ".join(map(str, site.shape))
                raise ValueError(f"weights[{site.name!r}] must have shape [S, {expected}], got {shape}")
            counts.add(value.shape[0])
        if len(counts) != 1 or 0 in counts:
            raise ValueError(f"every site of weights needs the same number S >= 1 of draws, got "
                             f"{sorted(counts)}")
        return dict(weights)

    @torch.no_grad()
    def outputs_at(self, x, weights: dict[str, torch.Tensor]) -> torch.Tensor:
        """Network outputs ``[S, N, ...]`` at given joint draws ``{site: [S, *shape]}`` (from
        :meth:`sample` or one chain of :meth:`draws`), as this posterior predicts: a Laplace
        approximation through its linearised network, the others through the network."""
        x = self.bnn.check_inputs(x)
        weights = self._check_weights(weights)
        count = next(iter(weights.values())).shape[0]
        if count > 1:
            self._check_outputs_size("outputs_at", x, count, materialised=True, prediction=False,
                                     advice="pass fewer draws at a time")
        return self._approximation.outputs_at(x, weights)

    @torch.no_grad()
    def log_likelihood(self, x, y, draws: Draws | None = None, num_samples: int = 500) -> torch.Tensor:
        """Pointwise log-likelihood ``ln p(y_n | x_n, theta)`` at every draw, ``[chains, draws, N]``
        (on the CPU), through the predictive this posterior uses (see :meth:`outputs_at`).

        ``draws`` defaults to :meth:`draws` ``(num_samples)``.
        """
        x, y = self.bnn.check_data(x, y)
        if draws is None:
            num_samples = check_int(num_samples, "num_samples", minimum=1)
            count = self.fixed_draws or num_samples
        elif not isinstance(draws, Draws):
            raise TypeError(f"draws must be a Draws (from posterior.draws()), got {type(draws).__name__}")
        else:
            count = draws.num_chains * draws.num_draws
        check_result_size(count * x.shape[0] * 4, "log_likelihood", f"{count:,} draws x {x.shape[0]:,} "
                          "inputs x 4 bytes", "ask for fewer draws, or pass fewer inputs at a time")
        draws = self.draws(num_samples) if draws is None else draws
        log_lik = torch.empty(draws.num_chains, draws.num_draws, x.shape[0])
        for c, d, output in self.outputs_by_draw(x, draws):
            log_lik[c, d] = self.bnn.likelihood.log_prob(output, y).cpu()
        return log_lik

    def outputs_by_draw(self, x, draws: Draws):
        """``(chain, draw, outputs [N, ...])`` for every draw of ``draws``, one chain at a time,
        as this posterior predicts (see :meth:`outputs_at`): a generator, so a caller turning each
        pass into several quantities (log-likelihood, replicated targets) runs the network once."""
        if not isinstance(draws, Draws):
            raise TypeError(f"draws must be a Draws (from posterior.draws()), got {type(draws).__name__}")
        x = self.bnn.check_inputs(x)
        self._check_weights({k: v[0] for k, v in draws.samples.items()})  # the sites of one chain
        for c in range(draws.num_chains):
            outputs = self._approximation.outputs_at(x, {k: v[c] for k, v in draws.samples.items()})
            for d, output in enumerate(outputs):
                yield c, d, output

    def __repr__(self) -> str:
        return f"Posterior({self.method}, model={type(self.model).__name__})"
