"""SWAG: a Gaussian fitted to the SGD iterates (Maddox, Izmailov, Garipov, Vetrov & Wilson 2019).

After a burn-in, SGD with a constant learning rate keeps bouncing around a mode; SWAG keeps
the first and second moments of its iterates ``theta_1 .. theta_T`` (collected every
``collect_every`` steps) and the last ``K`` deviations from the running mean::

    theta_SWA = 1/T sum_i theta_i                  (the SWA solution, Izmailov et al. 2018)
    Sigma_diag = diag(1/T sum_i theta_i^2 - theta_SWA^2)
    D_hat = [theta_i - theta_bar_i]  for the last K collections  (D x K; theta_bar_i is the
                                      running mean after collecting theta_i, as in the paper)

and approximates the posterior by ``N(theta_SWA, 1/2 (Sigma_diag + D_hat D_hat^T / (K - 1)))``,
sampled as in the paper (eq. 1 and its sampling procedure)::

    theta~ = theta_SWA + 1/sqrt(2) Sigma_diag^(1/2) z1 + 1/sqrt(2 (K - 1)) D_hat z2,
    z1 ~ N(0, I_D),  z2 ~ N(0, I_K).

``rank=0`` is SWAG-Diagonal, ``N(theta_SWA, Sigma_diag)``. Mandt, Hoffman & Blei (2017)
show that SGD with a constant learning rate samples a Gaussian centred at the optimum; for
Bayesian linear regression the SWA mean is then the closed-form posterior mean (tested).

:class:`SWAGGuide` trains exactly like :class:`~bayesdl.inference.MAPGuide` (the MAP
objective, the prior as weight decay), so :func:`~bayesdl.inference.fit` runs SWAG's SGD phase
with its checkpoints; the moments are buffers of the guide, so a checkpoint keeps them and an
interrupted SWAG phase resumes. :func:`fit_swag` runs that phase from a MAP solution.
MultiSWAG (Wilson & Izmailov 2020) is an ensemble of SWAGs: ``approximate("multiswag", ...)``.
"""

from __future__ import annotations

import math

import torch

from bayesdl.checks import check_int, check_positive, check_probability

from ._data import as_loader, dataset_size_of
from .guides import MAPGuide
from .posterior import Posterior
from .svi import fit

__all__ = ["SWAGGuide", "fit_swag"]

_VAR_CLAMP = 1e-30


class SWAGGuide(MAPGuide):
    """SWAG over the weights of a :class:`~bayesdl.models.BNN` (see the module docstring).

    Parameters
    ----------
    model:
        The BNN.
    rank:
        ``K``, the number of deviation columns kept (the paper uses 20); 0 for SWAG-Diagonal.
    collect_every:
        Collect the iterate every this many optimizer steps (after ``burn_in``).
    burn_in:
        Optimizer steps before the first collection.
    init:
        Starting weights ``[D]`` or ``{site: tensor}`` (e.g. a MAP's ``point_estimate()``);
        default: the network's initial weights.

    Training (``network_output``, ``kl``) is the MAP's, at the current iterate ``weights``;
    collection happens after optimizer steps once :meth:`attach` hooked the optimizer (as
    :func:`fit_swag` does), or by calling :meth:`collect` directly. As a Pyro guide it is the
    point mass SGD trains. Prediction and draws use the SWAG Gaussian.

    Example (iterates collected by hand; :func:`fit_swag` collects them during SGD)::

        >>> import torch
        >>> import torch.nn as nn
        >>> from bayesdl.models import BNN
        >>> from bayesdl.inference import SWAGGuide
        >>> model = BNN(nn.Linear(1, 1), likelihood="gaussian")        # 2 weights
        >>> guide = SWAGGuide(model, rank=2)
        >>> for w in ([1.0, 0.0], [2.0, 0.0], [3.0, 1.0]):
        ...     guide.collect(torch.tensor(w))
        >>> int(guide.num_collected), guide.point_flat()                # the SWA mean
        (3, tensor([2.0000, 0.3333]))
        >>> guide.diagonal_variance.round(decimals=4)
        tensor([0.6667, 0.2222], dtype=torch.float64)
        >>> guide.covariance().shape, guide.sample_flat(5).shape
        (torch.Size([2, 2]), torch.Size([5, 2]))
    """

    is_point_mass = False

    def __init__(self, model, rank: int = 20, collect_every: int = 1, burn_in: int = 0, init=None):
        super().__init__(model)
        self.rank = check_int(rank, "rank", minimum=0)
        self.collect_every = check_int(collect_every, "collect_every", minimum=1)
        self.burn_in = check_int(burn_in, "burn_in", minimum=0)
        if init is not None:
            if isinstance(init, dict):
                missing = [s.name for s in model.sites if s.name not in init]
                if missing:
                    raise ValueError(f"init must hold every site of the model, e.g. a MAP's "
                                     f"point_estimate(); missing {missing}")
            flat = model.flatten(init) if isinstance(init, dict) else torch.as_tensor(init)
            if flat.shape != self.weights.shape:
                raise ValueError(f"init has shape {tuple(flat.shape)}; the network has "
                                 f"{self.weights.shape[0]} weights")
            if flat.is_floating_point() and not bool(torch.isfinite(flat).all()):
                raise ValueError("init holds NaN or Inf weights: start SWAG from a finite MAP (train it "
                                 "again with a smaller learning rate)")
            with torch.no_grad():
                self.weights.copy_(flat.to(self.weights))
        size = self.weights.shape[0]
        # Moments in float64: the variance is a difference of two close numbers.
        self.register_buffer("swa_mean", torch.zeros(size, dtype=torch.float64))
        self.register_buffer("swa_sq_mean", torch.zeros(size, dtype=torch.float64))
        self.register_buffer("deviations", torch.zeros(self.rank, size, dtype=self.weights.dtype))
        self.register_buffer("num_collected", torch.zeros((), dtype=torch.long))
        self.register_buffer("num_steps", torch.zeros((), dtype=torch.long))

    # ------------------------------------------------------------- collection
    def attach(self, optimizer: torch.optim.Optimizer) -> torch.optim.Optimizer:
        """Hook ``optimizer`` so that every step counts, and every ``collect_every``-th step
        after the burn-in collects the iterate. Returns the optimizer."""
        optimizer.register_step_post_hook(lambda *_: self._after_step())
        return optimizer

    def _after_step(self) -> None:
        self.num_steps += 1
        since = int(self.num_steps) - self.burn_in
        if since > 0 and since % self.collect_every == 0:
            self.collect()

    @torch.no_grad()
    def collect(self, weights: torch.Tensor | None = None) -> None:
        """Add an iterate ``[D]`` (default: the current ``weights``) to the moments and the
        deviation matrix."""
        theta = (self.weights if weights is None else torch.as_tensor(weights)).detach()
        if theta.shape != self.weights.shape:
            raise ValueError(f"an iterate has {self.weights.shape[0]} weights, got shape "
                             f"{tuple(theta.shape)}")
        theta = theta.to(self.swa_mean)
        n = int(self.num_collected)
        self.swa_mean.mul_(n / (n + 1)).add_(theta / (n + 1))
        self.swa_sq_mean.mul_(n / (n + 1)).add_(theta * theta / (n + 1))
        if self.rank:
            self.deviations[n % self.rank] = (theta - self.swa_mean).to(self.deviations)
        self.num_collected += 1

    # ------------------------------------------------------------- the Gaussian
    def _require_collected(self, low_rank: bool) -> int:
        n = int(self.num_collected)
        if n == 0:
            raise RuntimeError("SWAG has collected no iterate yet: train it with fit_swag (or call "
                               "collect())")
        columns = min(n, self.rank)
        if low_rank and self.rank and columns < 2:
            raise RuntimeError(
                f"SWAG has collected {n} iterate(s); its low-rank part needs at least 2 (it divides by "
                "K - 1): collect more (more epochs or a smaller collect_every) or use rank=0 (SWAG-Diagonal)"
            )
        return columns

    @property
    def diagonal_variance(self) -> torch.Tensor:
        """``Sigma_diag`` ``[D]``: the iterates' variance per weight (clamped at 1e-30)."""
        self._require_collected(low_rank=False)
        return (self.swa_sq_mean - self.swa_mean ** 2).clamp_min(_VAR_CLAMP)

    @property
    def deviation_matrix(self) -> torch.Tensor:
        """``D_hat^T`` ``[K, D]``: the deviations kept (in storage order, which does not matter)."""
        return self.deviations[: min(int(self.num_collected), self.rank)]

    def covariance(self) -> torch.Tensor:
        """The dense covariance ``[D, D]`` SWAG samples from: ``(Sigma_diag + D_hat D_hat^T /
        (K - 1)) / 2``, or ``Sigma_diag`` for rank 0. For small models (``D^2`` numbers)."""
        if self.weights.shape[0] > 5000:
            raise ValueError(f"the dense covariance of {self.weights.shape[0]} weights is too big; draw "
                             "samples instead")
        columns = self._require_collected(low_rank=True)
        variance = torch.diag(self.diagonal_variance)
        if not self.rank:
            return variance
        dev = self.deviation_matrix.to(variance)
        return 0.5 * (variance + dev.T @ dev / (columns - 1))

    def sample_flat(self, num_samples):
        num_samples = check_int(num_samples, "num_samples", minimum=1)
        columns = self._require_collected(low_rank=True)
        mean, std = self.swa_mean, self.diagonal_variance.sqrt()
        z1 = torch.randn(num_samples, mean.shape[0], dtype=mean.dtype, device=mean.device)
        if not self.rank:
            return (mean + std * z1).to(self.weights.dtype)
        z2 = torch.randn(num_samples, columns, dtype=mean.dtype, device=mean.device)
        low_rank = z2 @ self.deviation_matrix.to(mean.dtype)
        draws = mean + std * z1 / math.sqrt(2.0) + low_rank / math.sqrt(2.0 * (columns - 1))
        return draws.to(self.weights.dtype)

    def point_flat(self):
        """The SWA mean ``theta_SWA``."""
        self._require_collected(low_rank=False)
        return self.swa_mean.to(self.weights.dtype)

    def predictive_output(self, x):
        return self.model.network(x, self.sample_flat(1)[0])

    def site_distributions(self):
        """The point mass at the current iterate: what the SGD phase optimises."""
        import pyro.distributions as dist

        weights = self.model.unflatten(self.weights)
        return {s.name: dist.Delta(weights[s.name], event_dim=len(s.shape)) for s in self.model.sites}


#: options of ``fit`` that describe the data and the run rather than the optimiser: shared by
#: the MAP and the SWAG phase of ``approximate("swag", ...)`` (given flat or in ``map_training``)
SHARED_FIT_OPTIONS = frozenset({"seed", "device", "progress", "batch_size", "dataset_size", "shuffle",
                                "resume"})


def check_phase(epochs, lr, momentum, rank, collect_every, burn_in, prefix: str = "") -> tuple:
    """The options of SWAG's SGD phase, checked before any work: ``epochs`` >= 1, ``lr`` > 0,
    ``momentum`` in [0, 1), ``rank`` >= 0, ``collect_every`` >= 1 (or None), ``burn_in`` >= 0.
    ``prefix`` names them as the caller takes them (``swag_`` for ``approximate("swag", ...)``)."""
    epochs = check_int(epochs, f"{prefix}epochs", minimum=1)
    lr = check_positive(lr, f"{prefix}lr")
    momentum = check_probability(momentum, f"{prefix}momentum")
    rank = check_int(rank, "rank", minimum=0)
    if collect_every is not None:
        collect_every = check_int(collect_every, "collect_every", minimum=1)
    burn_in = check_int(burn_in, "burn_in", minimum=0)
    return epochs, lr, momentum, rank, collect_every, burn_in


def _check_collections(epochs: int, steps_per_epoch: int, rank: int, collect_every: int,
                       burn_in: int) -> None:
    """Refuse a phase that cannot collect what SWAG needs: one iterate, two for the low-rank part
    (counted on the whole loader: a data-parallel rank steps less, never more)."""
    steps = epochs * steps_per_epoch
    most = max(0, (steps - burn_in) // collect_every)
    run = f"{epochs} epoch(s) x {steps_per_epoch} step(s), burn_in={burn_in}, collect_every={collect_every}"
    if most == 0:
        raise ValueError(f"this SWAG phase collects at most 0 iterates ({run}): lower burn_in or "
                         "collect_every, or train more epochs")
    if rank and most < 2:
        raise ValueError(f"rank={rank} needs at least 2 collected iterates (the low-rank part divides by "
                         f"K - 1), but this SWAG phase collects at most {most} ({run}): train more epochs, "
                         "lower collect_every, or use rank=0 (SWAG-Diagonal)")


def fit_swag(map_posterior: Posterior, data, *, epochs: int = 10, lr: float = 0.01, momentum: float = 0.9,
             rank: int = 20, collect_every: int | None = None, burn_in: int = 0, batch_size: int = 128,
             shuffle: bool = True, dataset_size: int | None = None, **fit_options) -> Posterior:
    """SWAG's SGD phase from a MAP solution: ``epochs`` of SGD (``momentum``, constant ``lr``)
    on the MAP objective, collecting the iterate every ``collect_every`` steps (default: once
    per epoch, as in the paper) after ``burn_in`` steps. Returns the SWAG ``Posterior``.

    ``lr`` is the learning rate of the *per-example* objective (mean cross-entropy plus the
    prior's weight decay divided by ``N``), the scale SWAG's papers quote; the optimiser steps
    on ``fit``'s whole-dataset objective with ``lr / N``. ``fit_options`` go to
    :func:`~bayesdl.inference.fit` (``seed``, ``device``, ``checkpoint``, ``resume``, ...).

    Checked before any work: ``epochs`` >= 1, ``lr`` > 0, ``momentum`` in [0, 1), ``rank`` >= 0,
    ``collect_every`` >= 1, ``burn_in`` >= 0, and that the phase can collect an iterate (two for
    ``rank`` >= 1).

    Example::

        >>> import torch
        >>> import torch.nn as nn
        >>> from bayesdl.models import BNN
        >>> _ = torch.manual_seed(0)
        >>> x = torch.rand(8, 2); y = (x.sum(1) > 1).long()     # 8 points in [0, 1]^2, 2 classes
        >>> from bayesdl.inference import approximate
        >>> posterior = approximate("map", BNN(nn.Linear(2, 2)), (x, y), epochs=2, seed=0, progress=False)
        >>> from bayesdl.inference import fit_swag
        >>> swag = fit_swag(posterior, (x, y), epochs=3, lr=0.01, rank=2, batch_size=4, seed=0,
        ...                 progress=False)
        >>> swag.is_point_mass, swag.predict(x[:3], num_samples=4).probs.shape
        (False, torch.Size([4, 3, 2]))
    """
    if not isinstance(map_posterior, Posterior):
        raise TypeError(f"fit_swag starts from a MAP Posterior, got {type(map_posterior).__name__}")
    for name in ("optimizer", "lr_schedule", "scheduler"):
        if name in fit_options:
            raise TypeError(f"SWAG runs SGD with a constant learning rate; it takes no {name!r}")
    if "config" in fit_options:
        raise TypeError("fit_swag takes its epochs, lr and fit's run options (seed, device, checkpoint, ...) "
                        "as keywords, not as config=")
    epochs, lr, momentum, rank, collect_every, burn_in = check_phase(
        epochs, lr, momentum, rank, collect_every, burn_in)
    loader = as_loader(data, check_int(batch_size, "batch_size", minimum=1), shuffle)
    n_data = dataset_size_of(loader, dataset_size)
    if collect_every is None:
        collect_every = max(len(loader), 1)
    try:
        steps_per_epoch = len(loader)
    except TypeError:  # an iterable dataset of unknown length: the phase says so after it ran
        steps_per_epoch = None
    if steps_per_epoch is not None:
        _check_collections(epochs, steps_per_epoch, rank, collect_every, burn_in)
    model = map_posterior.model
    guide = SWAGGuide(model, rank=rank, collect_every=collect_every, burn_in=burn_in,
                      init=map_posterior.point_estimate())

    def sgd(params):
        return guide.attach(torch.optim.SGD(params, lr=lr / n_data, momentum=momentum))

    posterior = fit(model, guide, loader, epochs=epochs, optimizer=sgd, dataset_size=n_data, **fit_options)
    guide._require_collected(low_rank=False)  # e.g. burn_in longer than the phase: say so now
    return posterior
