"""``TrainingHistory``: what ``fit`` records of the objective while it trains."""

from __future__ import annotations

from dataclasses import dataclass, field

__all__ = ["TrainingHistory"]


@dataclass
class TrainingHistory:
    """Per-step and per-epoch values of the objective, for the whole dataset (nats).

    ``elbo = log_likelihood - kl_weight * kl``; ``log_likelihood`` and ``kl`` are empty when
    a generic Pyro ELBO was used (it reports only the total).

    ``fit`` returns one as ``posterior.history``::

        >>> import torch
        >>> import torch.nn as nn
        >>> from bayesdl.models import BNN
        >>> _ = torch.manual_seed(0)
        >>> x = torch.rand(8, 2); y = (x.sum(1) > 1).long()     # 8 points in [0, 1]^2, 2 classes
        >>> from bayesdl.inference import MeanFieldGuide, fit
        >>> model = BNN(nn.Linear(2, 2))
        >>> history = fit(model, MeanFieldGuide(model), (x, y), epochs=3, batch_size=4, seed=0,
        ...               progress=False).history
        >>> len(history.elbo), len(history.epoch_elbo), history.dataset_size    # 2 steps per epoch
        (6, 3, 8)
        >>> abs(history.elbo[0] - (history.log_likelihood[0] - history.kl[0])) < 1e-3
        True
        >>> sorted(history.as_dict())[:3]
        ['dataset_size', 'elbo', 'epoch_elbo']
    """

    elbo: list[float] = field(default_factory=list)
    log_likelihood: list[float] = field(default_factory=list)
    kl: list[float] = field(default_factory=list)
    epoch_elbo: list[float] = field(default_factory=list)
    epoch_log_likelihood: list[float] = field(default_factory=list)
    epoch_kl: list[float] = field(default_factory=list)
    dataset_size: int = 0
    seconds: float = 0.0

    def as_dict(self) -> dict:
        return {k: getattr(self, k) for k in self.__dataclass_fields__}

    def end_epoch(self, start: int) -> None:
        """Close an epoch whose steps are those from index ``start`` on: append the mean of its
        per-step ``elbo`` (and ``log_likelihood``, ``kl`` when recorded) to the ``epoch_*`` lists.
        :func:`~bayesdl.inference.fit` calls it after every epoch."""
        for name in ("elbo", "log_likelihood", "kl"):
            steps = getattr(self, name)[start:]
            if steps:
                getattr(self, f"epoch_{name}").append(sum(steps) / len(steps))
