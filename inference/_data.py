"""Data plumbing shared by fit and Laplace: loaders from tensors, dataset sizes, batches."""

from __future__ import annotations

import torch
from torch.utils.data import (
    BatchSampler,
    DataLoader,
    Dataset,
    IterableDataset,
    RandomSampler,
    SequentialSampler,
    TensorDataset,
    default_collate,
)

from bayesdl.checks import as_tensor, check_finite, check_int, check_nonempty

__all__ = ["as_loader", "dataset_size_of", "batch_to", "check_batch"]


def as_loader(data, batch_size: int, shuffle: bool) -> DataLoader:
    """A DataLoader from a DataLoader, a map-style ``Dataset`` of ``(x, y)`` pairs
    (``TensorDataset``, a torchvision dataset; batched by ``batch_size``), or a tuple ``(x, y)``
    of tensors.

    Tensors -- a tuple, a ``TensorDataset``, or a ``DataLoader`` over a ``TensorDataset`` with
    the default collation and no worker processes -- are read a whole batch at a time (one
    index of each tensor per batch) instead of example by example and stacked: the same
    batches, in the same order, from the same random draws (the loader's own sampler), at a
    fraction of the cost (per-example fetching and collation were about 30% of a plain LeNet
    epoch on a 2-core CPU). Any other loader is used as it is."""
    if isinstance(data, DataLoader):
        return _whole_batches(data)
    if isinstance(data, TensorDataset):
        order = RandomSampler(data) if shuffle else SequentialSampler(data)
        return DataLoader(data, sampler=BatchSampler(order, batch_size, drop_last=False), batch_size=None)
    if isinstance(data, Dataset) and not isinstance(data, IterableDataset):
        # Shuffling draws from torch's global generator: seeded by `seed`, saved in checkpoints.
        return DataLoader(data, batch_size=batch_size, shuffle=shuffle)
    if isinstance(data, tuple) and len(data) == 2:
        x = as_tensor(data[0], "x")
        y = as_tensor(data[1], "y")
        if x.dim() == 0 or y.dim() == 0 or x.shape[0] != y.shape[0]:
            raise ValueError(
                f"x and y must have the same length, got shapes {tuple(x.shape)} and {tuple(y.shape)}"
            )
        check_nonempty(x, "x")
        # Shuffling draws from torch's global generator: seeded by `seed`, saved in checkpoints.
        # The batch sampler indexes the tensors once per batch (not once per example): the same
        # batches as DataLoader(..., batch_size, shuffle), without a per-example fetch and stack.
        dataset = TensorDataset(x, y)
        order = RandomSampler(dataset) if shuffle else SequentialSampler(dataset)
        return DataLoader(dataset, sampler=BatchSampler(order, batch_size, drop_last=False), batch_size=None)
    raise TypeError(
        f"data must be a torch DataLoader or a tuple (x, y) of tensors, or a map-style Dataset of (x, y) "
        f"pairs (e.g. TensorDataset), got {type(data).__name__}; wrap an IterableDataset in a DataLoader"
    )


def _whole_batches(loader: DataLoader) -> DataLoader:
    """``loader`` reading whole batches of its ``TensorDataset`` (see :func:`as_loader`): its own
    batch sampler (so its sampler's random draws) handed to a loader that indexes the tensors
    once per batch; ``loader`` itself when it is anything else (workers, a collate function of
    its own, a dataset that is not a ``TensorDataset``, no automatic batching)."""
    if (isinstance(loader.dataset, TensorDataset) and loader.num_workers == 0
            and loader.batch_size is not None and loader.collate_fn is default_collate
            and type(loader) is DataLoader):
        return DataLoader(loader.dataset, sampler=loader.batch_sampler, batch_size=None,
                          pin_memory=loader.pin_memory, generator=loader.generator)
    return loader


def dataset_size_of(loader: DataLoader, dataset_size: int | None) -> int:
    """The number of training examples: ``dataset_size`` if given, else the dataset's length."""
    if dataset_size is not None:
        return check_int(dataset_size, "dataset_size", minimum=1)
    try:
        size = len(loader.dataset)
    except TypeError:
        raise ValueError(
            "the loader's dataset has no length; pass dataset_size=N (the number of training "
            "examples) so the ELBO can scale the likelihood"
        ) from None
    if size == 0:
        raise ValueError("the training data is empty; pass a loader with at least one example")
    return size


def batch_to(batch, device):
    """``(x, y)`` of a batch, moved to ``device`` (if given)."""
    if not isinstance(batch, (tuple, list)) or len(batch) < 2:
        raise ValueError("each batch must be a pair (x, y)")
    x, y = batch[0], batch[1]
    if device is not None:
        x = x.to(device, non_blocking=True)
        y = y.to(device, non_blocking=True)
    return x, y


def check_batch(bnn, x, y, out_shape, where: str):
    """Checks of a training batch that cost no network pass: finite inputs, targets that fit
    outputs of shape ``[B, *out_shape]`` (learned once from the first batch). ``where`` (e.g.
    ``"epoch 3, batch 7"``) starts the message of any ``ValueError``."""
    try:
        if not x.is_floating_point() or x.dtype != bnn.prior_scales.dtype:
            x = x.to(bnn.prior_scales.dtype)
        check_finite(x, "x")
        if y.shape[:1] != x.shape[:1]:
            raise ValueError(f"the batch has {x.shape[0]} inputs but {y.shape[0] if y.dim() else 0} targets")
        like = torch.empty((x.shape[0], *out_shape), device="meta")
        return x, bnn.likelihood.check_targets(y, like)
    except ValueError as err:
        raise ValueError(f"{where}: {err}") from None
