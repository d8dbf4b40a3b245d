"""``BNN``: any torch network lifted into a Pyro model.

The latent variables are the network's weights, one Pyro sample site per parameter tensor
(named as in ``net.named_parameters()``, e.g. ``"conv1.weight"``), with a prior from
:mod:`bayesdl.models.priors`; the observations come from a likelihood of :mod:`bayesdl.models.likelihoods`
inside a data plate::

    W_k ~ prior_k                                    for every latent tensor k
    with plate("data", size=dataset_size, subsample=batch):
        y_n ~ likelihood(net(x_n; W))

With ``dataset_size`` set to the training-set size and a minibatch of ``B`` examples, the
plate scales the log-likelihood by ``dataset_size / B``, so the minibatch ELBO is an unbiased
estimate of the full-data ELBO (the KL term is counted once per step, not once per example).

Bayesian logistic regression is ``BNN(nn.Linear(d, 1), likelihood="bernoulli")``.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from contextlib import contextmanager
from dataclasses import dataclass

import pyro
import torch
import torch.nn as nn
from torch.func import functional_call

from bayesdl._warn import warn
from bayesdl.checks import as_tensor, check_finite, check_int, check_nonempty

from .likelihoods import Categorical, Likelihood, make_likelihood
from .networks import Dropout, dropout_modules
from .priors import NormalPrior

__all__ = ["BNN", "Site", "bnn_of"]


@dataclass(frozen=True)
class Site:
    """One latent weight tensor: its site name, owning module, shape and slice of the flat vector.

    A model lists its sites in :attr:`BNN.sites`::

        >>> import torch.nn as nn
        >>> from bayesdl.models import BNN
        >>> model = BNN(nn.Linear(2, 1), likelihood="bernoulli")
        >>> model.sites[0]
        Site(name='weight', module_name='', attribute='weight', shape=torch.Size([1, 2]), offset=0)
        >>> [(s.name, s.offset, s.numel) for s in model.sites]   # slices of the flat weight vector
        [('weight', 0, 2), ('bias', 2, 1)]
    """

    name: str
    module_name: str
    attribute: str
    shape: torch.Size
    offset: int

    @property
    def numel(self) -> int:
        return self.shape.numel()


@contextmanager
def dropout_rates(net: nn.Module, rates: float | Mapping[nn.Module, float] | None):
    """Run ``net`` with its dropout slots set: ``None`` switches them off, a float sets every
    slot to that rate (active), a mapping sets each listed slot. Restores them on exit.

    Within the context, a plain ``nn.Dropout`` of the user's network draws its masks with
    :class:`bayesdl.models.Dropout`'s sampler (the same inverted dropout; about twice as fast on a
    CPU as ``F.dropout``'s Bernoulli draws): its class is swapped for the pass and restored after,
    so the network is unchanged outside bayesdl's passes."""
    slots = dropout_modules(net)
    saved = [(m, m.p, m.training, type(m)) for m in slots]
    try:
        for m in slots:
            if type(m) is nn.Dropout:
                m.__class__ = Dropout
            if rates is None:
                m.training = False
            else:
                p = rates if isinstance(rates, float) else rates.get(m, 0.0)
                m.p, m.training = p, p > 0
        yield
    finally:
        for m, p, training, cls in saved:
            m.p, m.training = p, training
            m.__class__ = cls


def channels_last(t: torch.Tensor) -> torch.Tensor:
    """``t`` ``[N, C, H, W]`` with the canonical channels-last strides: ``t`` itself when it has
    them, else a copy (also when ``C = 1`` or ``H = W = 1``, where ``contiguous(memory_format=...)``
    keeps the default strides because they satisfy both layouts). A tensor that cannot take a
    memory format -- one batched by ``torch.func.vmap`` (per-example gradients) -- is returned as
    it is: the layout is a speed-up only, the results are the same."""
    _, c, h, w = t.shape
    if t.stride() == (h * w * c, 1, w * c, c):
        return t
    try:
        return t.to(memory_format=torch.channels_last)
    except RuntimeError:  # "required rank 4 tensor": vmap's batched tensors hide their batch dimension
        return t


def _final_module(net: nn.Module) -> nn.Module:
    """The module a network's output comes out of, as far as its structure says: the last layer of
    an ``nn.Sequential`` (recursively); for another module, its last registered submodule when that
    is a leaf or an ``nn.Sequential`` (else the module itself: its ``forward`` decides)."""
    module = net
    while True:
        children = list(module.children())
        if not children:
            return module
        last = children[-1]
        if not (isinstance(module, nn.Sequential) or isinstance(last, nn.Sequential)
                or not any(True for _ in last.children())):
            return module
        module = last


def _warn_double_softmax(net: nn.Module, likelihood: Likelihood) -> None:
    """Warn when a network ends in ``Softmax``/``LogSoftmax`` and the categorical likelihood applies
    softmax to its outputs again (it expects logits)."""
    if not isinstance(likelihood, Categorical):
        return
    last = _final_module(net)
    if isinstance(last, (nn.Softmax, nn.LogSoftmax)):
        name = type(last).__name__
        warn(
            f"the network ends in {name} and the categorical likelihood applies softmax to its outputs: "
            f"remove the final {name} (the likelihood expects logits)")


class BNN(nn.Module):
    """A Pyro model whose latent variables are the weights of ``net``.

    Parameters
    ----------
    net:
        Any ``nn.Module`` mapping inputs ``[N, ...]`` to outputs ``[N, ...]``. Its latent
        parameters become buffers holding their initial values (so ``BNN.parameters()``
        lists only what is learned as a point estimate); ``net`` keeps working as a plain
        network with those values.
    prior_scale:
        Standard deviation of the default i.i.d. ``N(0, prior_scale^2)`` prior.
    likelihood:
        ``"categorical"``, ``"bernoulli"``, ``"gaussian"`` (learned noise) or a
        :class:`~bayesdl.models.likelihoods.Likelihood` (e.g. ``Gaussian(scale=0.1)``).
    prior:
        A prior object (default ``NormalPrior(prior_scale)``; per-layer scales through
        ``NormalPrior(layer_scales=...)``).
    deterministic:
        Names (or name prefixes) of modules whose parameters stay deterministic: learned
        by maximum likelihood, with no prior and no posterior (``""`` names the whole net).

    Example::

        >>> import torch.nn as nn
        >>> model = BNN(nn.Linear(2, 1), prior_scale=1.0, likelihood="bernoulli")
        >>> [s.name for s in model.sites]
        ['weight', 'bias']
        >>> model.site_sizes, model.num_latent
        ([2, 1], 3)
    """

    def __init__(self, net: nn.Module, prior_scale: float = 1.0,
                 likelihood: str | Likelihood = "categorical", *, prior=None,
                 deterministic: Iterable[str] = ()):
        super().__init__()
        if not isinstance(net, nn.Module):
            raise TypeError(f"net must be a torch nn.Module, got {type(net).__name__}")
        if isinstance(net, BNN):
            raise TypeError("net is already a BNN; pass the plain network")
        self.net = net
        self.likelihood = make_likelihood(likelihood)
        _warn_double_softmax(net, self.likelihood)
        self.prior = prior if prior is not None else NormalPrior(prior_scale)
        if isinstance(deterministic, str):
            deterministic = [deterministic]
        keep = tuple(deterministic)
        known = {name for name, _ in net.named_modules()} | {n for n, _ in net.named_parameters()}
        unknown = [d for d in keep if d not in known]
        if unknown:
            raise ValueError(f"deterministic names {unknown} match no module or parameter of the network")

        sites, offset = [], 0
        for name, param in list(net.named_parameters()):
            if any(d == "" or name == d or name.startswith(d + ".") for d in keep):
                continue
            module_name, _, attribute = name.rpartition(".")
            module = net.get_submodule(module_name) if module_name else net
            del module._parameters[attribute]
            module.register_buffer(attribute, param.detach().clone())
            sites.append(Site(name, module_name, attribute, param.shape, offset))
            offset += param.numel()
        if not sites:
            raise ValueError("the network has no latent parameter: every parameter was marked deterministic")
        self.sites: tuple[Site, ...] = tuple(sites)
        self._sizes = [s.numel for s in sites]
        scales = torch.cat([torch.full((s.numel,), self.prior.scale_for(s.name)) for s in sites])
        self.register_buffer("prior_scales", scales, persistent=False)
        # Channels-last layout for images on CPU: decided on the first 4-D batch (None = not yet).
        self._channels_last: bool | None = None
        self._accepted_shapes: set[tuple[int, ...]] = set()  # per-example input shapes check_inputs passed

    @property
    def channels_last(self) -> bool | None:
        """Whether image batches on the CPU run in channels-last layout (see :meth:`network`):
        decided on the first 4-D batch, ``None`` until then."""
        return self._channels_last

    # ------------------------------------------------------------ flat weights
    @property
    def site_sizes(self) -> list[int]:
        """The number of weights of each site, in :attr:`sites` order: how a flat weight vector
        ``[..., D]`` splits into sites (``flat.split(model.site_sizes, dim=-1)``). A new list
        each time (read-only); it sums to :attr:`num_latent`."""
        return list(self._sizes)

    @property
    def num_latent(self) -> int:
        """Total number of latent weights ``D``."""
        return sum(self.site_sizes)

    def initial_values(self) -> torch.Tensor:
        """The network's initial latent weights as one flat vector ``[D]``."""
        buffers = dict(self.net.named_buffers())
        return torch.cat([buffers[s.name].reshape(-1) for s in self.sites])

    def unflatten(self, flat: torch.Tensor) -> dict[str, torch.Tensor]:
        """Views of a flat weight vector ``[..., D]`` as ``{site: [..., *shape]}``."""
        lead = flat.shape[:-1]
        return {s.name: chunk.view(*lead, *s.shape)
                for s, chunk in zip(self.sites, flat.split(self.site_sizes, dim=-1))}

    def flatten(self, weights: Mapping[str, torch.Tensor]) -> torch.Tensor:
        """Inverse of :meth:`unflatten`: ``{site: [..., *shape]}`` -> ``[..., D]``."""
        first = weights[self.sites[0].name]
        lead = first.shape[: first.dim() - len(self.sites[0].shape)]
        return torch.cat([weights[s.name].reshape(*lead, s.numel) for s in self.sites], dim=-1)

    # -------------------------------------------------------------- the network
    def _use_channels_last(self, x: torch.Tensor) -> bool:
        return x.dim() == 4 and x.device.type == "cpu" and self._channels_last is not False

    def prepare_weights(self, weights: Mapping[str, torch.Tensor],
                        x: torch.Tensor) -> dict[str, torch.Tensor]:
        """``weights`` in the memory layout the network will run in for inputs like ``x``.

        Images on the CPU run in channels-last layout, which oneDNN convolves about twice as
        fast as the default layout (PyTorch's CPU performance guide); results are the same up
        to float rounding. Conversion is a no-op for tensors already in that layout.

        A kernel with one input channel (a first layer on grey images) satisfies both layouts'
        contiguity, so ``contiguous(memory_format=...)`` would keep its default strides, and oneDNN
        then runs that convolution's backward pass in a mixed, slow layout (2-3x a plain pass): the
        strides are set explicitly (:func:`channels_last`).
        """
        if not self._use_channels_last(x):
            return dict(weights)
        return {k: channels_last(v) if v.dim() == 4 else v for k, v in weights.items()}

    def network(self, x: torch.Tensor, weights: Mapping[str, torch.Tensor] | torch.Tensor,
                dropout: float | Mapping[nn.Module, float] | None = None,
                part: str | None = None) -> torch.Tensor:
        """``net(x)`` with the latent weights replaced by ``weights`` (a dict or a flat ``[D]``).

        Dropout slots are off unless ``dropout`` gives their rates (used by the dropout guide).
        Images on the CPU run channels-last (see :meth:`prepare_weights`); a network that
        cannot (one that calls ``.view`` on its feature maps, say) is detected on its first
        batch and keeps the default layout. ``part`` runs one method of the network instead
        of ``forward`` (``"trunk"``, ``"head"``: see :meth:`has_trunk`).
        """
        if isinstance(weights, torch.Tensor):
            weights = self.unflatten(weights)
        if part is None:
            target, prefix = self.net, ""
        else:
            target, prefix = self._part(part), "net."

        def call(inputs, named):
            return functional_call(target, {prefix + k: v for k, v in named.items()}, (inputs,))

        with dropout_rates(self.net, dropout):
            if self._use_channels_last(x):
                # The head takes the trunk's output in the layout the trunk made it, as inside
                # forward (the dropout masks are drawn in that layout).
                fast_x = x if part == "head" else channels_last(x)
                if self._channels_last:
                    return call(fast_x, self.prepare_weights(weights, x))
                try:  # first image batch: does the network accept channels-last tensors?
                    output = call(fast_x, self.prepare_weights(weights, x))
                    self._channels_last = True
                    return output
                except RuntimeError:
                    self._channels_last = False
            return call(x, weights)

    @property
    def has_trunk(self) -> bool:
        """Whether the network splits as ``forward(x) = head(trunk(x))`` (methods ``trunk`` and
        ``head``; see :mod:`bayesdl.models.networks`), so ``network(x, w, part="trunk")`` and
        ``part="head"`` run its two halves."""
        return callable(getattr(self.net, "trunk", None)) and callable(getattr(self.net, "head", None))

    def _part(self, name: str) -> nn.Module:
        """A module whose forward is ``net.<name>`` (for ``functional_call``; parameters under ``net.``)."""
        if name not in ("trunk", "head") or not self.has_trunk:
            raise ValueError(f"part must be 'trunk' or 'head' of a network that defines both, got {name!r} "
                             f"for {type(self.net).__name__}")
        parts = self.__dict__.setdefault("_parts", {})  # plain dict: not submodules, not in state_dict
        if name not in parts:
            parts[name] = _NetPart(self.net, name)
        return parts[name]

    def last_linear(self) -> tuple[str, nn.Linear]:
        """``(name, module)`` of the output layer: ``net.last_layer`` if the network names one,
        else its last ``nn.Linear``."""
        named = dict(self.net.named_modules())
        layer = getattr(self.net, "last_layer", None)
        if isinstance(layer, nn.Linear):
            return next(n for n, m in named.items() if m is layer), layer
        linears = [(n, m) for n, m in named.items() if isinstance(m, nn.Linear)]
        if not linears:
            raise ValueError("the network has no nn.Linear output layer")
        return linears[-1]

    @contextmanager
    def capture_features(self):
        """Within this context, every pass through the network appends the input of its output
        layer (see :meth:`last_linear`), flattened to ``[N, H]``, to the yielded list --
        whatever computes the pass (a guide's stochastic training pass, a prediction, ...)."""
        captured: list[torch.Tensor] = []
        hook = self.last_linear()[1].register_forward_hook(
            lambda module, inputs, output: captured.append(inputs[0].reshape(inputs[0].shape[0], -1)))
        try:
            yield captured
        finally:
            hook.remove()

    def features(self, x: torch.Tensor, weights: Mapping[str, torch.Tensor] | torch.Tensor
                 ) -> tuple[torch.Tensor, torch.Tensor]:
        """``(outputs [N, ...], features [N, H])``: the network at ``weights`` (dropout off) and
        the input of its output layer."""
        with self.capture_features() as captured:
            output = self.network(x, weights)
        return output, captured[-1]

    # --------------------------------------------------------------- validation
    def check_inputs(self, x) -> torch.Tensor:
        """``x`` as a non-empty, finite tensor ``[N, ...]`` of the model's dtype (integer or
        float64 input is converted) on its device, of a shape the network takes: one example
        is run through it (no gradient), so a wrong feature width or rank is a ``ValueError``
        here rather than an error inside torch or a prediction of the wrong shape. A network
        with a ``validate_inputs(x)`` method (token ids: :class:`~bayesdl.models.RecurrentRegressor`)
        checks the raw inputs first, before any conversion."""
        x = as_tensor(x, "x")
        validate = getattr(self.net, "validate_inputs", None)
        if callable(validate):
            x = validate(x)
        check_nonempty(x, "x")
        if x.dim() < 2:
            raise ValueError(
                f"x must have shape [N, ...] (examples first), got a 1-D array of shape {tuple(x.shape)}: "
                "for one example pass x[None], for N examples of one feature pass x[:, None]"
            )
        if x.dtype != self.prior_scales.dtype:
            x = x.to(self.prior_scales.dtype)
        check_finite(x, "x")
        x = x.to(self.prior_scales.device)
        shape = tuple(x.shape[1:])
        if shape in self._accepted_shapes:  # the network took examples of this shape before
            return x
        with torch.no_grad():
            try:
                output = self.network(x[:1], self.initial_values())
            except RuntimeError as err:
                raise ValueError(
                    f"the network cannot take inputs of shape {tuple(x.shape)}: {err}"
                ) from None
        try:
            self.likelihood.check_targets(torch.zeros(1, dtype=torch.long), output)
        except ValueError as err:
            raise ValueError(
                f"inputs of shape {tuple(x.shape)} give network outputs of shape "
                f"{(x.shape[0], *output.shape[1:])}, which the {type(self.likelihood).__name__} "
                f"likelihood cannot use ({err}); check the rank and width of x"
            ) from None
        self._accepted_shapes.add(shape)
        return x

    def check_data(self, x, y) -> tuple[torch.Tensor, torch.Tensor]:
        """Validate a batch at the boundary: shapes, finiteness, labels in range.

        Runs the network once (no gradient) to learn its output shape.
        """
        x = self.check_inputs(x)
        if y is None:
            raise ValueError("y is missing: training needs targets")
        y = as_tensor(y, "y")
        if y.dim() == 0 or y.shape[0] != x.shape[0]:
            raise ValueError(f"x has {x.shape[0]} examples but y has shape {tuple(y.shape)}")
        with torch.no_grad():
            try:
                output = self.network(x, self.initial_values())
            except RuntimeError as err:
                raise ValueError(
                    f"the network cannot take inputs of shape {tuple(x.shape)}: {err}"
                ) from None
        y = self.likelihood.check_targets(y, output)
        return x, y.to(x.device)

    # --------------------------------------------------------------- the model
    def model(self, x: torch.Tensor, y: torch.Tensor | None = None,
              dataset_size: int | None = None) -> torch.Tensor:
        """The Pyro model: sample the weights, run the network, observe ``y``.

        ``dataset_size`` is the number of training examples when ``x`` is a minibatch
        (default: ``len(x)``). Returns the network output.
        """
        if any(True for _ in self.parameters()):
            pyro.module("bnn", self)
        buffers = dict(self.net.named_buffers())
        weights = {s.name: pyro.sample(s.name, self.prior.distribution(s.name, buffers[s.name]))
                   for s in self.sites}
        output = self.network(x, weights)
        n = output.shape[0]
        size = n if dataset_size is None else check_int(dataset_size, "dataset_size", minimum=n)
        with pyro.plate("data", size=size, subsample=torch.arange(n, device=output.device)):
            pyro.sample("obs", self.likelihood.distribution(output), obs=self.likelihood.observed(y))
        return output

    forward = model

    def __repr__(self) -> str:
        return (f"BNN({type(self.net).__name__}, {self.num_latent} latent weights in "
                f"{len(self.sites)} sites, prior={self.prior!r}, "
                f"likelihood={type(self.likelihood).__name__})")


class _NetPart(nn.Module):
    """``forward`` calls one method of ``net`` (which it holds as the submodule ``net``)."""

    def __init__(self, net: nn.Module, method: str):
        super().__init__()
        self.net = net
        self.method = method

    def forward(self, x):
        return getattr(self.net, self.method)(x)


def bnn_of(model) -> BNN | None:
    """The :class:`BNN` behind ``model`` (the module itself or its bound ``model`` method).

    Example::

        >>> import torch.nn as nn
        >>> from bayesdl.models import BNN, bnn_of
        >>> model = BNN(nn.Linear(2, 2))
        >>> bnn_of(model) is model, bnn_of(model.model) is model, bnn_of(nn.Linear(2, 2))
        (True, True, None)
    """
    if isinstance(model, BNN):
        return model
    owner = getattr(model, "__self__", None)
    return owner if isinstance(owner, BNN) else None
