"""Guides: approximate posteriors over the latent weights of a :class:`bayesdl.models.BNN`.

Every guide is a Pyro guide -- an ``nn.Module`` called with the model's arguments, sampling
the same sites as the model -- so it works with ``pyro.infer.SVI`` and any Pyro ELBO. Each
also exposes the structure that makes training and prediction fast:

- ``network_output(x)``: one stochastic pass with *independent noise per example*
  (local reparameterization for mean-field, per-example masks for dropout), used by
  :class:`bayesdl.inference.BNNElbo` to estimate the expected log-likelihood;
- ``predictive_output(x)``: one pass for posterior prediction;
- ``kl()``: ``E_q[ln q(W) - ln p(W)]``, in closed form;
- ``sample_parameters(S)``: weight draws ``{site: [S, *shape]}``;
- ``point_estimate()``: representative weights ``{site: tensor}`` (mean / MAP).

Every guide is an :class:`~bayesdl.inference.posterior.Approximation`, so ``fit`` returns it
inside a ``Posterior``.

Weights are stored as flat vectors ``[D]`` (see :meth:`bayesdl.models.BNN.unflatten`), so the KL and
the optimizer update run as a few large operations instead of one per tensor.

A note on point masses. For a Delta site Pyro takes ``ln q = 0``, so ``Trace_ELBO`` with a
MAP or dropout guide computes ``E_q[ln p(y | W)] + E_q[ln p(W)]``. ``kl()`` follows that
convention (it is ``-E_q[ln p(W)]``), so :class:`BNNElbo` and ``Trace_ELBO`` estimate the
same number. The true KL of a point mass is infinite; the missing term is a constant that
does not depend on the guide's parameters (Gal & Ghahramani 2016, appendix).
"""

from __future__ import annotations

import math
from typing import ClassVar

import pyro
import pyro.distributions as dist
import torch
import torch.nn as nn

from bayesdl.checks import check_int, check_positive, check_probability
from bayesdl.models.bnn import BNN
from bayesdl.models.networks import dropout_modules

from ._ops import LocalReparameterization, normal_kl
from .posterior import Approximation, log_class_probabilities, log_mean_probabilities

__all__ = ["BNNGuide", "MeanFieldGuide", "DropoutGuide", "MAPGuide"]

_LR_MODULES = (nn.Linear, nn.Conv1d, nn.Conv2d, nn.Conv3d)


def _in_groups(n: int, num_samples: int, copies: int, run) -> torch.Tensor:
    """``num_samples`` passes ``[S, N, ...]`` over ``N = n`` inputs, ``copies`` at a time:
    ``run(k)`` returns ``k`` passes as one batch ``[k N, ...]`` (pass-major)."""
    chunks = []
    for start in range(0, num_samples, copies):
        k = min(copies, num_samples - start)
        out = run(k)
        chunks.append(out.view(k, n, *out.shape[1:]))
    return torch.cat(chunks)


class BNNGuide(nn.Module, Approximation):
    """Base class of the guides of a :class:`bayesdl.models.BNN`.

    Every guide has the same interface::

        >>> import torch
        >>> import torch.nn as nn
        >>> from bayesdl.models import BNN
        >>> _ = torch.manual_seed(0)
        >>> x = torch.rand(8, 2); y = (x.sum(1) > 1).long()     # 8 points in [0, 1]^2, 2 classes
        >>> from bayesdl.inference import BNNGuide, MAPGuide, MeanFieldGuide
        >>> model = BNN(nn.Linear(2, 2))
        >>> for guide in (MeanFieldGuide(model), MAPGuide(model)):
        ...     print(isinstance(guide, BNNGuide), tuple(guide.network_output(x).shape),
        ...           tuple(guide.sample_parameters(3)["weight"].shape), guide.kl().dim())
        True (8, 2) (3, 2, 2) 0
        True (8, 2) (3, 2, 2) 0
    """

    def __init__(self, model: BNN):
        if not isinstance(model, BNN):
            raise TypeError(
                f"{type(self).__name__} needs a bayesdl.models.BNN, got {type(model).__name__}; "
                "wrap the network first: BNN(net, prior_scale, likelihood)"
            )
        super().__init__()
        # Not a submodule: the guide's parameters and state_dict are its own.
        self.__dict__["model"] = model
        prior_var = model.prior_scales.double() ** 2
        self.register_buffer("inv_two_prior_var", (0.5 / prior_var).to(model.prior_scales.dtype),
                             persistent=False)
        self._log_normaliser = float(0.5 * torch.log(2 * math.pi * prior_var).sum())

    # The interface every guide implements -----------------------------------

    @classmethod
    def prior_rates(cls, model: BNN, x: torch.Tensor) -> dict[str, float]:
        """``{site: p}``: the sites whose prior term this guide's objective carries divided by
        ``1 - p`` (a weight behind dropout of rate ``p``; see :class:`DropoutGuide`), for a network
        taking inputs like ``x``. Empty for guides whose prior term is the prior's own (the
        default). Lets a recipe written as a weight decay pick the equivalent prior per site
        without knowing which guide it trains."""
        return {}
    def network_output(self, x: torch.Tensor) -> torch.Tensor:
        """One stochastic pass for training, independent noise per example, ``[N, ...]``."""
        raise NotImplementedError

    def predictive_output(self, x: torch.Tensor) -> torch.Tensor:
        """One pass for posterior prediction, ``[N, ...]``."""
        return self.network_output(x)

    def kl(self) -> torch.Tensor:
        """``E_q[ln q(W) - ln p(W)]`` (Pyro's convention ``ln q = 0`` for point masses)."""
        raise NotImplementedError

    def sample_flat(self, num_samples: int) -> torch.Tensor:
        """``num_samples`` weight draws as flat vectors ``[S, D]``."""
        raise NotImplementedError

    def point_flat(self) -> torch.Tensor:
        """Representative weights as a flat vector ``[D]``: the mean of q, or the MAP."""
        raise NotImplementedError

    def point_estimate(self) -> dict[str, torch.Tensor]:
        """Representative weights ``{site: tensor}``: the mean of q, or the MAP."""
        return self.model.unflatten(self.point_flat())

    def site_distributions(self) -> dict[str, dist.Distribution]:
        """The guide's distribution of every latent site, as the Pyro guide samples them."""
        raise NotImplementedError

    # Shared machinery ---------------------------------------------------------
    def predictive_outputs(self, x: torch.Tensor, num_samples: int) -> torch.Tensor:
        """``num_samples`` predictive passes stacked, ``[S, N, ...]``."""
        self.setup(x)
        return torch.stack([self.predictive_output(x) for _ in range(num_samples)])

    def sample_parameters(self, num_samples: int = 1) -> dict[str, torch.Tensor]:
        """Weight draws from q, ``{site: [num_samples, *shape]}``."""
        num_samples = check_int(num_samples, "num_samples", minimum=1)
        with torch.no_grad():
            return self.model.unflatten(self.sample_flat(num_samples))

    def forward(self, *args, **kwargs) -> dict[str, torch.Tensor]:
        """The Pyro guide: sample every latent site of the model (arguments as the model's)."""
        pyro.module(type(self).__name__, self)
        x = args[0] if args else kwargs.get("x")
        if x is not None:
            self.setup(x)
        return {name: pyro.sample(name, d) for name, d in self.site_distributions().items()}

    def setup(self, x: torch.Tensor) -> None:
        """Set up on a batch of inputs (the dropout guide maps its masks to the weights here).

        Idempotent. ``fit`` and the guide's own passes call it on their first batch; a guide
        loaded by ``load_checkpoint`` is set up from the input shape its checkpoint records.
        """


class MeanFieldGuide(BNNGuide):
    """Factorised Gaussian ``q(W) = prod_i N(w_i | mu_i, sigma_i^2)`` (Blundell et al. 2015).

    Parameters: ``loc`` ``[D]`` (initialised at the network's initial weights) and
    ``log_scale`` ``[D]`` (initialised at ``ln init_scale``; small scales let the network fit
    the data before the KL widens them).

    Training uses the local reparameterization trick (Kingma, Salimans & Welling 2015) for
    ``Linear`` and ``Conv`` layers: instead of one weight draw per minibatch, each example
    gets its own pre-activation draw ``N(x mu, x^2 sigma^2)``, which costs one extra matrix
    product per layer and lowers the variance of the gradient. For convolutions the draws
    are independent per output position, which ignores the weight sharing between positions
    of one image: a standard approximation (Molchanov et al. 2017) in training. Prediction
    draws whole weight tensors, one per pass shared by the batch, so the predictive is exact
    under q. Other latent tensors are reparameterised once per minibatch. The KL is in
    closed form.

    **Which layers draw per example** (``local_reparameterization``): ``"all"`` (the default) uses
    the trick on ``Linear`` and ``Conv`` layers; ``"linear"`` on ``Linear`` layers only, each
    convolution's weights drawn once per minibatch (Blundell et al.'s estimator there); ``"none"``
    draws every weight tensor once per minibatch. ``"linear"`` and ``"none"`` are unbiased
    estimates of the ELBO; ``"all"`` is too for dense layers, and for convolutions it is the
    approximation above (output positions independent). Per-example draws need a second
    convolution (of ``x^2`` with ``sigma^2``) and noise of the size of every feature map, so on a
    CPU ``"linear"`` trains a LeNet close to a plain network's speed, at a higher gradient variance
    for the convolutions' scale parameters (``benchmarks/mean_field_estimators.py`` measures speed,
    gradient variance and one-epoch NLL
    of the three).

    Example::

        >>> import torch
        >>> import torch.nn as nn
        >>> from bayesdl.models import BNN
        >>> _ = torch.manual_seed(0)
        >>> x = torch.rand(8, 2); y = (x.sum(1) > 1).long()     # 8 points in [0, 1]^2, 2 classes
        >>> from bayesdl.inference import MeanFieldGuide, fit
        >>> model = BNN(nn.Linear(2, 2), prior_scale=1.0)
        >>> guide = MeanFieldGuide(model, init_scale=0.01)
        >>> guide.loc.shape, guide.scale.detach()[:2]                 # D = 6 weights
        (torch.Size([6]), tensor([0.0100, 0.0100]))
        >>> posterior = fit(model, guide, (x, y), epochs=2, lr=1e-2, seed=0, progress=False)
        >>> samples = posterior.predict(x[:3], num_samples=5).probs     # one weight draw per sample
        >>> samples.shape, bool((samples[0] != samples[1]).any())
        (torch.Size([5, 3, 2]), True)
    """

    #: The accepted values of ``local_reparameterization`` and the layers each one covers.
    ESTIMATORS: ClassVar[dict[str, tuple[type, ...]]] = {
        "all": _LR_MODULES, "linear": (nn.Linear,), "none": ()}

    def __init__(self, model: BNN, init_scale: float = 1e-3, local_reparameterization: str = "all"):
        super().__init__(model)
        init_scale = check_positive(init_scale, "init_scale")
        if local_reparameterization not in self.ESTIMATORS:
            raise ValueError(
                f"local_reparameterization must be one of {sorted(self.ESTIMATORS)} (the layers whose "
                f"pre-activations are drawn per example), got {local_reparameterization!r}")
        self.local_reparameterization = local_reparameterization
        lr_modules = self.ESTIMATORS[local_reparameterization]
        init = model.initial_values()
        self.loc = nn.Parameter(init.clone())
        self.log_scale = nn.Parameter(torch.full_like(init, math.log(init_scale)))
        # sum(ln s) - D/2: the parameter-free part of the closed-form KL
        self._kl_constant = float(torch.log(model.prior_scales.double()).sum()) - 0.5 * model.num_latent
        lr_sites = set()
        for site in model.sites:
            module = model.net.get_submodule(site.module_name) if site.module_name else model.net
            if lr_modules and isinstance(module, lr_modules) and site.attribute == "weight":
                lr_sites.add(site.name)
                bias = f"{site.module_name}.bias" if site.module_name else "bias"
                if any(s.name == bias for s in model.sites):
                    lr_sites.add(bias)
        self._lr_sites = frozenset(lr_sites)

    @property
    def scale(self) -> torch.Tensor:
        return self.log_scale.exp()

    def network_output(self, x):
        variance = torch.exp(2.0 * self.log_scale)
        # In the layout the network runs in, so that the LR mode recognises these tensors.
        locs = self.model.prepare_weights(self.model.unflatten(self.loc), x)
        variances = self.model.prepare_weights(self.model.unflatten(variance), x)
        weights, registry = {}, {}
        for site in self.model.sites:
            loc = locs[site.name]
            if site.name in self._lr_sites:
                weights[site.name] = loc
                registry[id(loc)] = variances[site.name]
            else:
                weights[site.name] = loc + variances[site.name].sqrt() * torch.randn_like(loc)
        with LocalReparameterization(registry):
            return self.model.network(x, weights)

    def predictive_output(self, x):
        return self.model.network(x, self.sample_flat(1)[0])

    def kl(self):
        return normal_kl(self.loc, self.log_scale, self.inv_two_prior_var, self._kl_constant)

    def sample_flat(self, num_samples):
        eps = torch.randn(num_samples, self.loc.shape[0], dtype=self.loc.dtype, device=self.loc.device)
        return self.loc + self.log_scale.exp() * eps

    def point_flat(self):
        return self.loc.detach()

    def site_distributions(self):
        locs = self.model.unflatten(self.loc)
        scales = self.model.unflatten(self.log_scale.exp())
        return {s.name: dist.Normal(locs[s.name], scales[s.name]).to_event(len(s.shape))
                for s in self.model.sites}


class _PointGuide(BNNGuide):
    """Weights ``M`` ``[D]`` with optional Bernoulli masks; ``kl() = sum(c M^2) + const``.

    ``c`` is ``1 / (2 s^2)`` times ``E[z^2] / (1 - p)^2 = 1 / (1 - p)`` for weights whose input
    units are dropped at rate ``p`` (1 for the rest), so that ``kl() = -E_q[ln p(W)]``.
    """

    def __init__(self, model: BNN):
        super().__init__(model)
        self.weights = nn.Parameter(model.initial_values().clone())
        self.register_buffer("kl_coefficient", self.inv_two_prior_var.clone(), persistent=False)

    def kl(self):
        return (self.kl_coefficient * self.weights * self.weights).sum() + self._log_normaliser

    def point_flat(self):
        return self.weights.detach()

    def site_distributions(self):
        """Point masses at one draw (the weights themselves, or one mask draw for dropout)."""
        draw = self.model.unflatten(self.sample_flat(1)[0])
        return {s.name: dist.Delta(draw[s.name], event_dim=len(s.shape)) for s in self.model.sites}


class MAPGuide(_PointGuide):
    """A point mass ``q(W) = delta(W - theta)``: MAP estimation, the baseline of every study.

    The ELBO reduces to the log joint ``ln p(y | theta) + ln p(theta)``: the likelihood with
    the prior as an L2 penalty ``||theta||^2 / (2 s^2)``. A point mass: a prediction is one pass.

    Example::

        >>> import torch
        >>> import torch.nn as nn
        >>> from bayesdl.models import BNN
        >>> _ = torch.manual_seed(0)
        >>> x = torch.rand(8, 2); y = (x.sum(1) > 1).long()     # 8 points in [0, 1]^2, 2 classes
        >>> from bayesdl.inference import MAPGuide, fit
        >>> model = BNN(nn.Linear(2, 2))
        >>> posterior = fit(model, MAPGuide(model), (x, y), epochs=2, seed=0, progress=False)
        >>> samples = posterior.predict(x[:3], num_samples=4).probs     # one pass, repeated
        >>> posterior.is_point_mass, samples.shape, bool((samples == samples[0]).all())
        (True, torch.Size([4, 3, 2]), True)
    """

    is_point_mass = True

    def network_output(self, x):
        return self.model.network(x, self.weights)

    def sample_flat(self, num_samples):
        return self.weights.detach().expand(num_samples, -1)


class DropoutGuide(_PointGuide):
    """MC dropout as variational inference (Gal & Ghahramani 2016).

    For a layer whose input units are dropped at rate ``p``, with inverted dropout::

        q(W) :  W = M diag(z) / (1 - p),    z_j ~ Bernoulli(1 - p)  (one per input unit)

    ``M`` is learned; layers with no dropout slot before them are point masses at ``M``.
    The network's dropout modules (:class:`bayesdl.models.Dropout` or any ``nn.Dropout``) mark where
    the masks act; ``p`` sets every slot's rate (``None`` keeps each slot's own rate).

    **Training.** The expected log-likelihood is estimated with an independent mask per
    example, exactly as standard dropout does -- never one mask per minibatch, which trains
    poorly -- and without materialising per-example weight matrices: ``W_n x_n`` is
    ``M (z_n * x_n) / (1 - p)``, i.e. dropout on the layer's input. Each example's term is
    then an unbiased estimate of its own expectation, so the sum is an unbiased estimate of
    the expected log-likelihood.

    **Prior term, derivation.** With the prior ``W ~ N(0, s^2 I)``::

        -E_q[ln p(W)] = E_z ||M diag(z)||^2 / (2 s^2 (1 - p)^2) + const
                      = ||M||^2 / (2 s^2 (1 - p)) + const            (E z_j^2 = 1 - p)

    With ``N`` training points and the ELBO divided by ``N`` this is weight decay
    ``lambda ||M||^2`` with ``lambda = 1 / (2 N s^2 (1 - p))``. It is Gal's KL approximation
    ``(1 - p) l^2 / (2 N) ||M'||^2`` written for the inverted-dropout parameters
    ``M = (1 - p) M'`` with prior precision ``l^2 = 1 / s^2``. Assumptions, as in the paper:
    the entropy of q is replaced by that of the Bernoulli masks (a constant), which holds in
    the limit of Gal's mixture of two narrow Gaussians; biases are point masses.

    For convolutions the masks act on each element of the input feature map, as dropout does
    in the paper's Caffe models. Weight draws from :meth:`sample_parameters` mask the
    columns of the unfolded kernel (input channel x kernel position), ``q(W) = M diag(z)`` on
    image patches; both give the same prior term.

    **Layers that declare their masks.** A module whose weights are masked in another way than
    "a slot before the layer drops its inputs" says so with ``masked_weights() -> {attribute: (slot,
    axis)}``: a recurrent layer's input and recurrent weights, a word embedding's rows
    (:mod:`bayesdl.models.recurrent`). Those sites take the slot's rate in the prior term, and weight
    draws mask them along ``axis``. A network whose masks are all drawn per example may define
    ``mc_batch_copies(x, S)``: :meth:`predictive_outputs` then runs that many of the ``S`` passes as
    one pass over ``x`` repeated (the recurrent networks, whose passes are long loops over time).

    **MC prediction reuses the deterministic trunk.** When the network splits as
    ``head(trunk(x))`` (:attr:`bayesdl.models.BNN.has_trunk`) and no active dropout slot runs
    inside ``trunk``, :meth:`predictive_outputs` runs the trunk once per batch and only the head
    ``T`` times (Baal's "MC caching"). The masks are drawn by the same slots in the same order,
    so for a fixed seed the samples are identical to ``T`` full passes.

    Any other network (a user's ``nn.Sequential``, say) shares its **deterministic prefix**: the
    layers a pass runs before it reaches the first active slot run once, and the activation entering
    that slot is repeated ``T`` times along the batch (in groups, within
    :attr:`prefix_budget_elements`), so every copy draws its own masks from there on. The passes
    have the distribution of ``T`` full passes (not the same draws for a seed: the masks come in
    another order). Whether repeating there is the same function is checked once, dropout off, on
    two inputs; a network that reads its input again after the slot runs ``T`` full passes.
    ``cache_trunk = False`` switches both off.

    Example::

        >>> import torch
        >>> import torch.nn as nn
        >>> from bayesdl.models import BNN
        >>> _ = torch.manual_seed(0)
        >>> x = torch.rand(8, 2); y = (x.sum(1) > 1).long()     # 8 points in [0, 1]^2, 2 classes
        >>> from bayesdl.models import MLP
        >>> from bayesdl.inference import DropoutGuide, fit
        >>> model = BNN(MLP(2, 16, 2, dropout=0.5))
        >>> guide = DropoutGuide(model)                    # p=0.5 in every slot (None: the slots' own)
        >>> guide.setup(x)
        >>> guide.site_rates                               # the slot before the head drops its inputs
        {'body.0.weight': 0.0, 'body.0.bias': 0.0, 'head.weight': 0.5, 'head.bias': 0.0}
        >>> posterior = fit(model, guide, (x, y), epochs=2, seed=0, progress=False)
        >>> samples = posterior.predict(x[:3], num_samples=4).probs      # one mask draw per sample
        >>> samples.shape, bool((samples[0] != samples[1]).any())
        (torch.Size([4, 3, 2]), True)
    """

    #: Reuse the deterministic layers across the MC passes of a prediction (see the class notes).
    cache_trunk: bool = True
    #: Most elements of the repeated activation when the passes share their deterministic prefix
    #: (float32: 64 MiB); more passes than fit run in groups.
    prefix_budget_elements: int = 1 << 24

    def __init__(self, model: BNN, p: float | None = 0.5):
        super().__init__(model)
        slots = dropout_modules(model.net)
        if not slots:
            raise ValueError(
                "the network has no dropout modules, so the dropout guide has nowhere to draw "
                "masks: build it with dropout slots (e.g. LeNet(dropout='all'), "
                "MLP(..., dropout=0.5)) or use MeanFieldGuide / MAPGuide"
            )
        self.p = None if p is None else check_probability(p, "p")
        self._slots = slots
        if not any(self.rates.values()):
            why = ("p=0" if self.p is not None
                   else "p is not given and every dropout module of the network has rate 0")
            raise ValueError(
                f"{why}, so the masks would drop nothing and the posterior would be a point mass: pass a "
                "rate (e.g. approximate('dropout', model, data, p=0.5)), build the network with dropout > 0, "
                "or use the 'map' method for a point estimate"
            )
        self._site_rate: dict[str, float] | None = None
        self._trunk_cacheable: bool | None = None  # decided on the first prediction

    @property
    def rates(self) -> dict[nn.Module, float]:
        """Dropout rate of every slot."""
        return {m: (self.p if self.p is not None else float(m.p)) for m in self._slots}

    @classmethod
    def prior_rates(cls, model: BNN, x: torch.Tensor) -> dict[str, float]:
        """Each site's dropout rate (nonzero ones), as a guide of the network's own rates maps
        them on a pass of ``x`` (see :meth:`BNNGuide.prior_rates`)."""
        probe = cls(model, p=None)
        probe.setup(x)
        return {site: p for site, p in probe.site_rates.items() if p > 0}

    @property
    def site_rates(self) -> dict[str, float]:
        """Dropout rate acting on every latent site (0 for sites with no slot before them)."""
        self._require_setup()
        return dict(self._site_rate)

    def setup(self, x):
        if self._site_rate is not None:
            return
        model = self.model
        owners = {}
        for site in model.sites:
            module = model.net.get_submodule(site.module_name) if site.module_name else model.net
            owners.setdefault(module, []).append(site)
        order: list[nn.Module] = []
        hooks = [m.register_forward_hook(lambda m, *_: order.append(m))
                 for m in list(owners) + self._slots]
        try:
            with torch.no_grad():
                model.network(x[:2], self.weights)
        finally:
            for hook in hooks:
                hook.remove()
        rates, site_rate, pending, mask_axis = self.rates, {}, None, {}
        for module in order:
            if module in rates:
                pending = module
            elif module in owners:
                # a module may declare which slot masks which of its weights, along which axis
                # (recurrent layers: the input and recurrent weights; a word embedding: its rows)
                hook = getattr(module, "masked_weights", None)
                declared = hook() if callable(hook) else {}
                for site in owners[module]:
                    if site.name in site_rate:
                        continue
                    if site.attribute in declared:
                        slot, axis = declared[site.attribute]
                        site_rate[site.name] = rates.get(slot, 0.0)
                        mask_axis[site.name] = axis
                    else:
                        feeds = site.attribute == "weight" and pending is not None
                        site_rate[site.name] = rates[pending] if feeds else 0.0
                pending = None
        coefficient = self.inv_two_prior_var.clone()
        for site, chunk in zip(model.sites, coefficient.split(model.site_sizes)):
            chunk /= 1.0 - site_rate.get(site.name, 0.0)
        self.kl_coefficient = coefficient
        self._mask_axis = mask_axis
        self._site_rate = site_rate

    def _require_setup(self):
        if self._site_rate is None:
            raise RuntimeError(
                "the dropout guide maps its masks on the first batch it sees; call "
                "guide.setup(x) (or network_output(x)) on inputs first"
            )

    def kl(self):
        self._require_setup()
        return super().kl()

    def network_output(self, x):
        self.setup(x)
        return self.model.network(x, self.weights, dropout=self.rates)

    def predictive_outputs(self, x, num_samples):
        """``num_samples`` MC dropout passes ``[S, N, ...]``; the deterministic trunk runs once
        when the network has one (see the class notes)."""
        self.setup(x)
        copies = getattr(self.model.net, "mc_batch_copies", None)
        if callable(copies) and num_samples > 1:
            return self._batched_passes(x, num_samples, copies(x, num_samples))
        if not (self.cache_trunk and self._has_deterministic_trunk(x)):
            first = self._first_active_slot(x) if self.cache_trunk and num_samples > 1 else None
            if first is None:
                return super().predictive_outputs(x, num_samples)
            return self._prefix_passes(first, x, num_samples)
        features = self.model.network(x, self.weights, part="trunk")
        return torch.stack([self.model.network(features, self.weights, dropout=self.rates, part="head")
                            for _ in range(num_samples)])

    def _prefix_passes(self, slot: nn.Module, x, num_samples: int) -> torch.Tensor:
        """``num_samples`` passes ``[S, N, ...]`` with the layers before the first active ``slot``
        run once per group of passes: the activation entering ``slot`` is repeated along the batch,
        as many copies at a time as keep the repeated activation within
        :attr:`prefix_budget_elements` elements."""
        per_copy = max(1, x.shape[0] * self.__dict__["_prefix_numel"])
        copies = max(1, min(num_samples, self.prefix_budget_elements // per_copy))
        return _in_groups(x.shape[0], num_samples, copies,
                          lambda k: self._repeated_at(slot, x, k, self.rates))

    def _batched_passes(self, x, num_samples: int, copies: int) -> torch.Tensor:
        """``num_samples`` passes ``[S, N, ...]`` run ``copies`` at a time as one pass over ``x``
        repeated: for a network that draws every mask per example (it says so by defining
        ``mc_batch_copies(x, S)``, how many copies fit one pass), the repeated rows are
        independent passes."""
        return _in_groups(x.shape[0], num_samples, copies, lambda k: self.model.network(
            x.repeat(k, *([1] * (x.dim() - 1))), self.weights, dropout=self.rates))

    def predictive_log_probs(self, x, link_approx="mc", num_samples=20):
        """``ln (1/T sum_t p(y | x, z_t))`` ``[N, C]`` over ``T = num_samples`` mask draws,
        differentiable in ``x`` (for attacks), with the deterministic layers before the first
        active slot run once: the activation entering that slot is repeated ``T`` times along the
        batch, so each copy draws its own masks there and in every later slot, exactly as ``T``
        passes do, and the shared layers take one forward and one backward pass (their input
        gradient sums the ``T`` copies'). A network where that is not the same function (checked
        once, dropout off, on two inputs) runs ``T`` full passes."""
        self.setup(x)
        first = self._first_active_slot(x) if link_approx == "mc" and num_samples > 1 else None
        if first is None:
            return super().predictive_log_probs(x, link_approx, num_samples)
        outputs = self._repeated_at(first, x, num_samples, self.rates)
        outputs = outputs.reshape(num_samples, x.shape[0], *outputs.shape[1:])
        return log_mean_probabilities(log_class_probabilities(self.model.likelihood, outputs))

    def _repeated_at(self, slot: nn.Module, x, copies: int, rates) -> torch.Tensor:
        """The network's outputs ``[copies N, ...]`` with the input of ``slot`` (its first call)
        repeated ``copies`` times along the batch."""
        called = []

        def repeat(module, args):
            if called:
                return None
            called.append(module)
            return (torch.cat([args[0]] * copies), *args[1:])

        handle = slot.register_forward_pre_hook(repeat)
        try:
            return self.model.network(x, self.weights, dropout=rates)
        finally:
            handle.remove()

    def _first_active_slot(self, x) -> nn.Module | None:
        """The active slot a pass reaches first, when repeating its input gives ``T`` passes of the
        network (checked once, on two inputs, dropout off); else None."""
        if self.__dict__.get("_shared_prefix", False) is False:  # not decided yet
            active = {m for m, p in self.rates.items() if p > 0}
            seen: list[tuple[nn.Module, int]] = []  # (slot, elements per example entering it)
            hooks = [m.register_forward_hook(lambda m, _, out: seen.append((m, out[0].numel())))
                     for m in active]
            try:
                with torch.no_grad():
                    whole = self.model.network(x[:2], self.weights)
            finally:
                for hook in hooks:
                    hook.remove()
            slot, self.__dict__["_prefix_numel"] = seen[0] if seen else (None, 0)
            if slot is not None:
                try:
                    with torch.no_grad():
                        repeated = self._repeated_at(slot, x[:2], 2, None)
                    if repeated.shape != (2 * whole.shape[0], *whole.shape[1:]) or not torch.allclose(
                            repeated, torch.cat([whole, whole]), rtol=1e-4, atol=1e-5):
                        slot = None
                except RuntimeError:
                    slot = None
            self.__dict__["_shared_prefix"] = slot  # not a submodule: a reference to one of the network's
        return self.__dict__["_shared_prefix"]

    def _has_deterministic_trunk(self, x) -> bool:
        """Whether the network splits as ``head(trunk(x))`` with no active slot in the trunk
        (checked once, on two inputs, with hooks on the slots)."""
        if self._trunk_cacheable is None:
            model = self.model
            cacheable = model.has_trunk
            if cacheable:
                active = [m for m, p in self.rates.items() if p > 0]
                seen = []
                hooks = [m.register_forward_hook(lambda m, *_: seen.append(m)) for m in active]
                try:
                    with torch.no_grad():
                        features = model.network(x[:2], self.weights, part="trunk")
                finally:
                    for hook in hooks:
                        hook.remove()
                cacheable = not seen
                if cacheable:
                    with torch.no_grad():
                        split = model.network(features, self.weights, part="head")
                        whole = model.network(x[:2], self.weights)
                    if split.shape != whole.shape or not torch.allclose(split, whole, rtol=1e-4, atol=1e-5):
                        raise ValueError(
                            f"{type(model.net).__name__}.head(trunk(x)) differs from forward(x): a network "
                            "that defines trunk and head must compute forward(x) = head(trunk(x)) (or set "
                            "guide.cache_trunk = False to always run full passes)"
                        )
            self._trunk_cacheable = cacheable
        return self._trunk_cacheable

    def sample_flat(self, num_samples):
        self._require_setup()
        draws = self.weights.detach().expand(num_samples, -1).clone()
        for site, chunk in zip(self.model.sites, draws.split(self.model.site_sizes, dim=-1)):
            p = self._site_rate.get(site.name, 0.0)
            if p > 0:
                view = chunk.view(num_samples, *site.shape)
                mask_shape = (num_samples, 1, *site.shape[1:])
                axis = self._mask_axis.get(site.name)
                if axis is not None:  # declared by the layer: the mask indexes that axis only
                    mask_shape = tuple(n if d == axis else 1 for d, n in enumerate(site.shape))
                    mask_shape = (num_samples, *mask_shape)
                keep = torch.rand(mask_shape, device=view.device).ge_(p).to(view.dtype)
                view.mul_(keep / (1.0 - p))
        return draws
