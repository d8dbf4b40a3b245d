"""Tensors are read a whole batch at a time (issue 35, the data path): a tuple, a TensorDataset,
or a plain DataLoader over one give the same batches from the same random draws as the
per-example DataLoader, and so the same training."""

from __future__ import annotations

import pytest
import torch
from torch.utils.data import DataLoader, TensorDataset, default_collate

from bayesdl.inference import DropoutGuide, fit
from bayesdl.inference._data import as_loader
from bayesdl.models import BNN, MLP


def _data(n=50):
    g = torch.Generator().manual_seed(0)
    return torch.randn(n, 3, generator=g), torch.randint(0, 2, (n,), generator=g)


def _batches(loader, seed):
    torch.manual_seed(seed)
    return [tuple(t.clone() for t in b) for epoch in range(2) for b in loader]


@pytest.mark.parametrize("shuffle", [True, False])
@pytest.mark.parametrize("drop_last", [True, False])
def test_a_loader_over_a_tensor_dataset_gives_the_same_batches_read_whole(shuffle, drop_last):
    data = TensorDataset(*_data())
    plain = DataLoader(data, batch_size=8, shuffle=shuffle, drop_last=drop_last)
    fast = as_loader(plain, 8, shuffle)
    assert fast is not plain and fast.batch_size is None  # whole batches: the batch sampler indexes once
    assert len(fast) == len(plain)
    expected, got = _batches(plain, 3), _batches(fast, 3)
    assert len(got) == len(expected)
    for (xa, ya), (xb, yb) in zip(expected, got):
        assert torch.equal(xa, xb) and torch.equal(ya, yb)
    # A TensorDataset given directly gives the batches of DataLoader(dataset, batch_size, shuffle).
    direct = as_loader(data, 8, shuffle)
    reference = DataLoader(data, batch_size=8, shuffle=shuffle)
    for (xa, ya), (xb, yb) in zip(_batches(reference, 4), _batches(direct, 4)):
        assert torch.equal(xa, xb) and torch.equal(ya, yb)


def test_other_loaders_are_used_as_they_are():
    data = TensorDataset(*_data())
    custom = DataLoader(data, batch_size=8, collate_fn=lambda b: default_collate(b))
    assert as_loader(custom, 8, False) is custom
    assert as_loader(DataLoader(data, batch_size=None), 8, False).batch_size is None


def test_fit_through_the_whole_batch_path_trains_exactly_as_example_by_example():
    x, y = _data(64)
    runs = []
    for collate in (None, lambda b: default_collate(b)):  # the second keeps the per-example path
        torch.manual_seed(5)  # the same initial network
        model = BNN(MLP(3, 8, 2, dropout=0.3), likelihood="categorical")
        loader = DataLoader(TensorDataset(x, y), batch_size=16, shuffle=True,
                            **({"collate_fn": collate} if collate else {}))
        posterior = fit(model, DropoutGuide(model), loader, epochs=3, seed=0, progress=False)
        runs.append(posterior.point_estimate())
    for site in runs[0]:
        assert torch.equal(runs[0][site], runs[1][site]), site
