"""Adversarial examples against a posterior predictive: FGSM and PGD in the L-infinity ball.

An attack on a Bayesian model must attack the predictive the model is deployed with,

    p(y | x, D) ~= 1/T sum_t p(y | x, theta_t),

not one draw of it (a fixed dropout mask is another model than the one deployed): the loss is
the negative log posterior predictive of the true label, ``L(x) = -sum_n ln p(y_n | x_n, D)``,
and its input gradient is taken through :meth:`bayesdl.inference.Posterior.predictive_log_probs`
-- the mean over ``T`` fresh draws for MC dropout, mean-field VI and SWAG (a new draw at every
step: the expectation over the randomness, Athalye et al. 2018), the linearised (GLM) predictive
for a Laplace approximation, the mixture for an ensemble, one pass for a MAP. Nothing here asks
which method is behind the posterior.

- :func:`fgsm` -- the fast gradient sign method (Goodfellow et al. 2015):
  ``x' = clip(x + eps sign(grad_x L(x)), low, high)``;
- :func:`pgd` -- projected gradient descent (Madry et al. 2018; the BIM of Kurakin et al. 2017
  without the random start): from ``x_0 = clip(x + U(-eps, eps))`` (or ``x``),
  ``x_{k+1} = clip(x + clamp(x_k + alpha sign(grad L(x_k)) - x, -eps, eps), low, high)``;
- :func:`random_perturbation` -- the control: noise of the same L-infinity size, uniform in
  ``[-eps, eps]`` or of random signs ``+-eps`` (the size and L2 norm of an FGSM step).

Units. Inputs and ``epsilon`` are in the data's units -- pixels in ``bounds = (0, 1)`` -- and the
network may see them normalised, ``(x - mean) / std`` (``normalization=(mean, std)``, floats or one
value per channel), as the MNIST networks of :mod:`bayesdl.experiments` do: the attack moves and
clips pixels, and maps them through the normalisation on every pass. Images ``[N, C, ...]``;
the result has the shape, dtype and device of ``x``.

Example::

    >>> from bayesdl.inference.attacks import pgd
    >>> x_adv = pgd(posterior, pixels, labels, epsilon=0.1, steps=10, num_samples=20,
    ...             normalization=(0.1307, 0.3081))                        # doctest: +SKIP
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch

from bayesdl.checks import as_tensor, check_finite, check_int, check_labels, check_nonempty, check_positive

from .posterior import Posterior, check_flag

__all__ = ["fgsm", "pgd", "random_perturbation", "attack_loss_gradient"]


def _check_epsilon(epsilon, name: str = "epsilon") -> float:
    number = isinstance(epsilon, (int, float)) or (isinstance(epsilon, torch.Tensor) and epsilon.numel() == 1)
    if isinstance(epsilon, bool) or not number:
        raise TypeError(f"{name} must be a number (the L-infinity radius in the data's units), got "
                        f"{type(epsilon).__name__}")
    value = float(epsilon)
    if not math.isfinite(value) or value < 0:
        raise ValueError(f"{name} must be a finite number >= 0 (the L-infinity radius in the data's units, "
                         f"e.g. 0.1 for pixels in [0, 1]), got {value}")
    return value


def _check_bounds(bounds) -> tuple[float, float]:
    try:
        low, high = (float(b) for b in bounds)
    except (TypeError, ValueError):
        raise TypeError(f"bounds must be a pair (low, high) of numbers, the data range (e.g. (0, 1) for "
                        f"pixels), got {bounds!r}") from None
    if not (math.isfinite(low) and math.isfinite(high) and low < high):
        raise ValueError(f"bounds must be finite with low < high, got {(low, high)}")
    return low, high


def _check_inputs(x, bounds) -> torch.Tensor:
    """``x`` as a finite float tensor ``[N, ...]`` inside ``bounds``."""
    x = as_tensor(x, "x")
    check_nonempty(x, "x")
    if not x.is_floating_point():
        x = x.float()
    check_finite(x, "x")
    low, high = bounds
    below, above = float(x.min()), float(x.max())
    if below < low or above > high:
        raise ValueError(
            f"x must lie in the data range bounds={bounds} (the units epsilon is in), got values in "
            f"[{below:.4g}, {above:.4g}]: pass the inputs before normalisation (pixels: x * std + mean) "
            "and the normalisation as normalization=(mean, std), or give the range as bounds=(low, high)")
    return x.detach()


def _normalizer(normalization, x: torch.Tensor):
    """``pixels -> network inputs``: ``(p - mean) / std`` broadcast over the channels (dim 1)."""
    if normalization is None:
        return lambda p: p
    pair = isinstance(normalization, Sequence) and not isinstance(normalization, (str, bytes))
    if not pair or len(normalization) != 2:
        raise TypeError(f"normalization must be a pair (mean, std) of numbers or per-channel sequences, got "
                        f"{normalization!r}")
    shape = (1, -1) + (1,) * (x.dim() - 2)
    mean, std = (as_tensor(v, f"normalization {n}").to(x.dtype).reshape(-1)
                 for v, n in zip(normalization, ("mean", "std")))
    for value, name in ((mean, "mean"), (std, "std")):
        check_finite(value, f"normalization {name}")
        if value.numel() not in (1, x.shape[1] if x.dim() > 1 else 1):
            raise ValueError(f"normalization {name} must be one number or one per channel ({x.shape[1]}), "
                             f"got {value.numel()} values")
    if bool((std <= 0).any()):
        raise ValueError(f"normalization std must be > 0, got {std.tolist()}")
    mean, std = mean.reshape(shape), std.reshape(shape)
    return lambda p: (p - mean.to(p.device)) / std.to(p.device)


class _Setup:
    """The checked arguments of an attack: posterior, pixels, labels, range, normalisation."""

    def __init__(self, posterior, x, y, bounds, normalization, num_samples, link_approx, batch_size):
        if not isinstance(posterior, Posterior):
            raise TypeError(f"posterior must be a bayesdl Posterior (from approximate(...)), got "
                            f"{type(posterior).__name__}")
        self.posterior = posterior
        self.bounds = _check_bounds(bounds)
        self.x = _check_inputs(x, self.bounds)
        self.normalize = _normalizer(normalization, self.x)
        self.num_samples = check_int(num_samples, "num_samples", minimum=1)
        self.link_approx = link_approx
        self.batch_size = check_int(batch_size, "batch_size", minimum=1)
        with torch.no_grad():  # the number of classes, and a wrong input shape named before any work
            classes = posterior.predictive_log_probs(self.normalize(self.x[:1]), 1, link_approx).shape[-1]
        self.y = check_labels(y, classes, self.x.shape[0], name="y (labels)", counted="the inputs x")

    def gradient(self, x_adv: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """``grad_x -sum_n ln p(y_n | x_n, D)`` at pixels ``x_adv`` (one batch)."""
        with torch.enable_grad():
            pixels = x_adv.detach().clone().requires_grad_(True)
            log_probs = self.posterior.predictive_log_probs(self.normalize(pixels), self.num_samples,
                                                            self.link_approx)
            loss = -log_probs.gather(1, y.to(log_probs.device)[:, None]).sum()
            (grad,) = torch.autograd.grad(loss, pixels)
        return grad

    def batches(self):
        """``(slice, pixels, labels)`` of every batch."""
        for start in range(0, self.x.shape[0], self.batch_size):
            part = slice(start, start + self.batch_size)
            yield part, self.x[part], self.y[part]

    def clip(self, x_adv: torch.Tensor) -> torch.Tensor:
        return x_adv.clamp(*self.bounds)


def attack_loss_gradient(posterior: Posterior, x, y, *, bounds=(0.0, 1.0), normalization=None,
                         num_samples: int = 20, link_approx: str = "mc",
                         batch_size: int = 256) -> torch.Tensor:
    """The input gradient ``grad_x L`` ``[N, ...]`` (pixels, the shape of ``x``) of the attack loss
    ``L(x) = -sum_n ln p(y_n | x_n, D)``, the negative log posterior predictive of the labels ``y``
    ``[N]`` through ``num_samples`` fresh draws (see the module notes; arguments as :func:`fgsm`)."""
    setup = _Setup(posterior, x, y, bounds, normalization, num_samples, link_approx, batch_size)
    return torch.cat([setup.gradient(xb, yb).to(setup.x.device) for _, xb, yb in setup.batches()])


def fgsm(posterior: Posterior, x, y, epsilon: float, *, bounds=(0.0, 1.0), normalization=None,
         num_samples: int = 20, link_approx: str = "mc", batch_size: int = 256) -> torch.Tensor:
    """The fast gradient sign method (Goodfellow et al. 2015) against the posterior predictive:
    ``x' = clip(x + epsilon sign(grad_x L(x)), low, high)``, ``L = -sum_n ln p(y_n | x_n, D)``.

    ``x`` ``[N, ...]`` in the data's units inside ``bounds`` (pixels in ``[0, 1]``); ``y`` ``[N]``
    the true labels; ``epsilon >= 0`` the L-infinity radius in the same units; ``normalization
    = (mean, std)`` what the network sees, ``(x - mean) / std``; ``num_samples`` the draws ``T``
    of the predictive per gradient (a point mass runs once); ``link_approx`` passed to
    :meth:`~bayesdl.inference.Posterior.predictive_log_probs` (``"probit"`` for Laplace);
    ``batch_size`` images per backward pass. Returns the adversarial inputs, shape, dtype and
    device of ``x``.

    Example (a logistic-regression MAP; its loss is convex in ``x``, so the step cannot lower it)::

        >>> import torch
        >>> import torch.nn as nn
        >>> from bayesdl.models import BNN
        >>> _ = torch.manual_seed(0)
        >>> x = torch.rand(8, 2); y = (x.sum(1) > 1).long()     # 8 points in [0, 1]^2, 2 classes
        >>> from bayesdl.inference import approximate
        >>> posterior = approximate("map", BNN(nn.Linear(2, 2)), (x, y), epochs=2, seed=0, progress=False)
        >>> from bayesdl.inference import fgsm
        >>> x_adv = fgsm(posterior, x, y, epsilon=0.1)
        >>> x_adv.shape, bool((x_adv - x).abs().max() <= 0.1 + 1e-6)    # inside the L-infinity ball
        (torch.Size([8, 2]), True)
        >>> bool(((0 <= x_adv) & (x_adv <= 1)).all())                    # and inside bounds=(0, 1)
        True
        >>> def nll(inputs):
        ...     return -posterior.predictive_log_probs(inputs).gather(1, y[:, None]).sum()
        >>> bool(nll(x_adv) > nll(x))
        True
    """
    epsilon = _check_epsilon(epsilon)
    setup = _Setup(posterior, x, y, bounds, normalization, num_samples, link_approx, batch_size)
    adversarial = setup.x.clone()
    if epsilon == 0:
        return adversarial
    for part, xb, yb in setup.batches():
        step = epsilon * setup.gradient(xb, yb).sign().to(xb.device)
        adversarial[part] = setup.clip(xb + step)
    return adversarial


def pgd(posterior: Posterior, x, y, epsilon: float, *, steps: int = 10, step_size: float | None = None,
        random_start: bool = True, bounds=(0.0, 1.0), normalization=None, num_samples: int = 20,
        link_approx: str = "mc", batch_size: int = 256,
        generator: torch.Generator | None = None) -> torch.Tensor:
    """Projected gradient descent in the L-infinity ball (Madry et al. 2018) against the posterior
    predictive, ``steps`` signed-gradient steps of size ``alpha = step_size`` (default
    ``2.5 epsilon / steps``, Madry et al.'s), each projected back onto the ball and the data range::

        x_0     = clip(x + U(-epsilon, epsilon))            (random_start; else x_0 = x)
        x_{k+1} = clip(x + clamp(x_k + alpha sign(grad L(x_k)) - x, -epsilon, epsilon))

    with fresh posterior draws at every step (an expectation over the randomness). The random
    start is drawn for all of ``x`` at once from ``generator`` (default: torch's global one), as
    torchattacks' ``PGD`` draws it. Other arguments as :func:`fgsm`; returns ``[N, ...]`` like ``x``.

    Example::

        >>> import torch
        >>> import torch.nn as nn
        >>> from bayesdl.models import BNN
        >>> _ = torch.manual_seed(0)
        >>> x = torch.rand(8, 2); y = (x.sum(1) > 1).long()     # 8 points in [0, 1]^2, 2 classes
        >>> from bayesdl.inference import approximate
        >>> posterior = approximate("map", BNN(nn.Linear(2, 2)), (x, y), epochs=2, seed=0, progress=False)
        >>> from bayesdl.inference import pgd
        >>> x_adv = pgd(posterior, x, y, epsilon=0.1, steps=3, generator=torch.Generator().manual_seed(0))
        >>> x_adv.shape, bool((x_adv - x).abs().max() <= 0.1 + 1e-6)    # inside the L-infinity ball
        (torch.Size([8, 2]), True)
        >>> bool(((0 <= x_adv) & (x_adv <= 1)).all())                    # and inside bounds=(0, 1)
        True
    """
    epsilon = _check_epsilon(epsilon)
    steps = check_int(steps, "steps", minimum=1)
    alpha = 2.5 * epsilon / steps if step_size is None else check_positive(step_size, "step_size")
    random_start = check_flag(random_start, "random_start")
    if generator is not None and not isinstance(generator, torch.Generator):
        raise TypeError(f"generator must be a torch.Generator, got {type(generator).__name__}")
    setup = _Setup(posterior, x, y, bounds, normalization, num_samples, link_approx, batch_size)
    if epsilon == 0:
        return setup.x.clone()
    start = setup.x.clone()
    if random_start:
        start = setup.clip(start + torch.empty_like(start).uniform_(-epsilon, epsilon, generator=generator))
    adversarial = start
    for part, xb, yb in setup.batches():
        current = start[part]
        for _ in range(steps):
            moved = current + alpha * setup.gradient(current, yb).sign().to(xb.device)
            current = setup.clip(xb + (moved - xb).clamp(-epsilon, epsilon))
        adversarial[part] = current
    return adversarial


def random_perturbation(x, epsilon: float, *, kind: str = "uniform", bounds=(0.0, 1.0),
                        generator: torch.Generator | None = None) -> torch.Tensor:
    """Noise of L-infinity size ``epsilon``, the control of an attack: ``clip(x + delta)`` with
    ``delta ~ U(-epsilon, epsilon)`` per entry (``kind="uniform"``) or ``delta = +-epsilon`` with
    random signs (``kind="sign"``: the size and L2 norm of an FGSM step, not its direction).
    ``x`` ``[N, ...]`` inside ``bounds``; returns ``[N, ...]`` like ``x``.

    Example::

        >>> import torch
        >>> from bayesdl.inference import random_perturbation
        >>> x = torch.full((2, 3), 0.5)
        >>> noisy = random_perturbation(x, 0.1, kind="sign", generator=torch.Generator().manual_seed(0))
        >>> sorted({round(v, 4) for v in noisy.flatten().tolist()})       # every entry moved by +-0.1
        [0.4, 0.6]
        >>> random_perturbation(torch.ones(1, 2), 0.1, kind="sign").max() <= 1   # clipped to bounds
        tensor(True)
    """
    epsilon = _check_epsilon(epsilon)
    if kind not in ("uniform", "sign"):
        raise ValueError(f"kind must be 'uniform' or 'sign', got {kind!r}")
    if generator is not None and not isinstance(generator, torch.Generator):
        raise TypeError(f"generator must be a torch.Generator, got {type(generator).__name__}")
    bounds = _check_bounds(bounds)
    x = _check_inputs(x, bounds)
    delta = torch.empty_like(x).uniform_(-1.0, 1.0, generator=generator)
    if kind == "sign":
        delta = torch.where(delta >= 0, 1.0, -1.0).to(x.dtype)
    return (x + epsilon * delta).clamp(*bounds)
