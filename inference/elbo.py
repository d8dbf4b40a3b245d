"""``BNNElbo``: the minibatch ELBO of a BNN and one of its guides, in one network pass.

For a minibatch ``B`` of a training set of size ``N``::

    ELBO ~= N / |B| * sum_{n in B} ln p(y_n | x_n, W_n)  -  kl_weight * KL(q || p),   W_n ~ q

Two choices that peer libraries leave to the user, and that users most often get wrong:

**KL scaling.** The KL term is counted once per *step*, against the log-likelihood scaled
up to the full dataset (``N / |B|``), as the data plate of :class:`bayesdl.models.BNN` does. Dividing
the KL by the number of batches instead, or forgetting ``N`` (KL against a per-batch mean
log-likelihood), over-weights the prior by a factor ``|B|`` or ``N`` and makes the posterior
collapse onto it. ``fit`` passes ``N = len(loader.dataset)``. The reported values are for
the whole dataset; divide by ``N`` for per-example nats.

**Samples in training vs prediction.** Training draws *one* noise sample per example per
step (``num_particles=1``): the stochastic gradient is already noisy through the minibatch,
and more particles cost a full network pass each for little gain. Prediction needs many
passes -- ``Posterior.predict(x, num_samples=100)`` averages 100 -- because uncertainty
estimates (entropy, mutual information, variation ratio) are themselves Monte-Carlo
estimates whose error shrinks like ``1 / sqrt(S)``.

The estimator differs from ``pyro.infer.Trace_ELBO`` only in its variance: it uses
per-example noise (local reparameterization, per-example dropout masks) and the KL in
closed form. Its expectation is the same (tested against ``Trace_ELBO``).
"""

from __future__ import annotations

import torch
from pyro.infer import ELBO

from bayesdl.checks import check_int, check_positive
from bayesdl.models.bnn import bnn_of

from .guides import BNNGuide

__all__ = ["BNNElbo"]


class BNNElbo(ELBO):
    """Structured ELBO for a :class:`bayesdl.models.BNN` and a :class:`bayesdl.inference.guides.BNNGuide`.

    A ``pyro.infer.ELBO`` that :func:`bayesdl.inference.fit` trains with; its
    :meth:`differentiable_loss` (and :meth:`terms`) also serve a hand-written torch loop. Not for
    ``pyro.infer.SVI``: SVI optimises the parameters it sees registered by ``pyro.param`` calls
    while computing the loss, and a BNN guide is a plain ``nn.Module`` that makes none, so
    ``SVI.step`` would update nothing.
    ``kl_weight`` multiplies the KL (1 is the ELBO; other values give tempered posteriors).
    Model arguments: ``(x, y, dataset_size=None)``.

    Example::

        >>> import torch
        >>> import torch.nn as nn
        >>> from bayesdl.models import BNN
        >>> _ = torch.manual_seed(0)
        >>> x = torch.rand(8, 2); y = (x.sum(1) > 1).long()     # 8 points in [0, 1]^2, 2 classes
        >>> from bayesdl.inference import BNNElbo, MeanFieldGuide
        >>> model = BNN(nn.Linear(2, 2))
        >>> guide = MeanFieldGuide(model)
        >>> elbo = BNNElbo()
        >>> log_lik, kl = elbo.terms(model, guide, x, y, dataset_size=80)   # x is a tenth of the data
        >>> log_lik.dim(), kl.dim()
        (0, 0)
        >>> loss = elbo.differentiable_loss(model, guide, x, y, dataset_size=80)  # kl_weight * KL - E ln p
        >>> loss.backward()
        >>> guide.loc.grad.shape
        torch.Size([6])
    """

    def __init__(self, num_particles: int = 1, kl_weight: float = 1.0):
        super().__init__(num_particles=check_int(num_particles, "num_particles", minimum=1))
        self.kl_weight = check_positive(kl_weight, "kl_weight", allow_zero=True)

    def terms(self, model, guide, x, y, dataset_size=None) -> tuple[torch.Tensor, torch.Tensor]:
        """``(expected log-likelihood scaled to the dataset, KL)``, both differentiable."""
        bnn = bnn_of(model)
        if bnn is None or not isinstance(guide, BNNGuide):
            raise TypeError(
                "BNNElbo needs a bayesdl.models.BNN and one of its guides (MeanFieldGuide, DropoutGuide, "
                "MAPGuide); for other Pyro models or guides use pyro.infer.Trace_ELBO"
            )
        if guide.model is not bnn:
            raise ValueError("the guide was built for another model; build it with this model")
        n = x.shape[0]
        total = 0.0
        for _ in range(self.num_particles):
            total = total + bnn.likelihood.log_prob(guide.network_output(x), y).sum()
        scale = (n if dataset_size is None else dataset_size) / (n * self.num_particles)
        return total * scale, guide.kl()

    def differentiable_loss(self, model, guide, *args, **kwargs):
        """``-ELBO`` as a differentiable scalar."""
        log_likelihood, kl = self.terms(model, guide, *args, **kwargs)
        return self.kl_weight * kl - log_likelihood

    def _get_trace(self, model, guide, args, kwargs):
        raise NotImplementedError("BNNElbo does not trace the model; it runs the guide's network pass")

    def loss(self, model, guide, *args, **kwargs) -> float:
        with torch.no_grad():
            return float(self.differentiable_loss(model, guide, *args, **kwargs))

    def loss_and_grads(self, model, guide, *args, **kwargs) -> float:
        loss = self.differentiable_loss(model, guide, *args, **kwargs)
        loss.backward()
        return float(loss)
