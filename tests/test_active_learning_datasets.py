"""The active-learning loop on any map-style Dataset, in several sittings (``steps``), with labels
from an oracle."""

import json

import pytest
import torch
from torch.utils.data import Dataset, Subset, TensorDataset

import bayesdl.experiments.active_learning as al
from bayesdl.experiments.active_learning import ActiveLearning, ActiveLearningRecord, balanced_initial_indices
from bayesdl.models import BNN, MLP


def _blobs(n, seed):
    g = torch.Generator().manual_seed(seed)
    y = torch.arange(n) % 3
    centers = torch.tensor([[2.0, 0.0], [-1.0, 1.7], [-1.0, -1.7]])
    return TensorDataset(centers[y] + 0.8 * torch.randn(n, 2, generator=g), y)


class _Items(Dataset):
    """A map-style dataset of (tensor, int) items, like a torchvision dataset with ToTensor."""

    def __init__(self, tensors):
        self.x, self.y = tensors.tensors

    def __len__(self):
        return len(self.y)

    def __getitem__(self, i):
        return self.x[i], int(self.y[i])


def _loop(**kwargs):
    options = dict(method="dropout", acquisition="random", acquisition_size=2, max_labels=9, candidates=20,
                   num_samples=4, method_options={"epochs": 2, "batch_size": 16, "lr": 0.05})
    options.update(kwargs)
    return ActiveLearning(lambda: BNN(MLP(2, 8, 3, dropout=0.2), prior_scale=1.0), **options)


@pytest.fixture(scope="module")
def data():
    full, test = _blobs(150, 0), _blobs(40, 1)
    keep = list(range(0, 150, 3)) + list(range(1, 150, 3))  # a Subset, not in order
    train = TensorDataset(*(t[keep] for t in full.tensors))
    initial = balanced_initial_indices(train.tensors[1], 1, seed=0)
    return full, keep, train, test, initial


def test_a_subset_and_a_generic_dataset_run_as_their_tensors(data, tmp_path):
    full, keep, train, test, initial = data
    reference = _loop().run(train, initial, test, path=tmp_path / "tensors.json")
    subset = _loop().run(Subset(full, keep), initial, Subset(test, range(len(test))), path=tmp_path / "s.json")
    items = _loop().run(_Items(train), initial, _Items(test), val=_Items(test), path=tmp_path / "i.json")
    for record in (subset, items):
        assert record.acquired == reference.acquired
        assert record.test_error == reference.test_error
    # the saved record has the format of a run without an oracle: no new entry
    assert "oracle_labels" not in json.loads((tmp_path / "tensors.json").read_text())
    assert ActiveLearningRecord.load(tmp_path / "tensors.json") == reference


def test_a_dataset_whose_items_are_no_pairs_gets_a_clear_error(data):
    *_, test, initial = data

    class Singles(Dataset):
        def __len__(self):
            return 5

        def __getitem__(self, i):
            return torch.zeros(2)

    with pytest.raises(TypeError, match=r"train\[0\] must be an \(x, y\) pair"):
        _loop().run(Singles(), [0], test)
    with pytest.raises(TypeError, match="TensorDataset or an"):
        _loop().run(object(), initial, test)


def test_steps_stops_and_the_next_call_resumes(data, tmp_path):
    _, _, train, test, initial = data
    whole = _loop().run(train, initial, test, path=tmp_path / "whole.json")
    path = tmp_path / "parts.json"
    first = _loop().run(train, initial, test, path=path, steps=2)
    assert len(first.labels) == 2 and not _loop().done(first)
    assert _loop().run(train, initial, test, path=path, steps=0).labels == first.labels
    rest = _loop().run(train, initial, test, path=path, steps=None)
    assert rest.acquired == whole.acquired and rest.test_error == whole.test_error
    with pytest.raises(ValueError, match="steps"):
        _loop().run(train, initial, test, steps=-1)


def test_an_oracle_labels_what_was_acquired(data, tmp_path, monkeypatch):
    _, _, train, test, initial = data
    calls = []

    def oracle(indices):
        calls.append(list(indices))
        return [0] * len(indices)  # a person who answers "class 0" to everything

    path = tmp_path / "oracle.json"
    loop = _loop()
    record = loop.run(train, initial, test, path=path, steps=2, oracle=oracle)
    assert calls == record.acquired[:2]
    assert record.oracle_labels == [[i, 0] for step in record.acquired[:2] for i in step]
    saved = ActiveLearningRecord.load(path)
    assert saved.oracle_labels == record.oracle_labels
    # the oracle's labels replace the dataset's in what the next step trains on
    y = saved.apply_labels(train.tensors[1])
    assert y[[i for i, _ in record.oracle_labels]].tolist() == [0] * len(record.oracle_labels)
    assert train.tensors[1].tolist() == data[2].tensors[1].tolist()  # the dataset itself is untouched
    seen = {}
    real = al.approximate

    def spy(method, model, data, **options):
        seen["y"] = data[1].clone()
        return real(method, model, data, **options)

    monkeypatch.setattr(al, "approximate", spy)
    resumed = _loop().run(train, initial, test, path=path, steps=1, oracle=oracle)  # resumed: not asked again
    labelled_after_two = record.initial + [i for step in record.acquired[:2] for i in step]
    assert seen["y"].tolist() == y[labelled_after_two].tolist()
    assert calls[:2] == record.acquired[:2] and len(calls) == 3 and calls[2] == resumed.acquired[2]


def test_a_wrong_oracle_answer_is_refused_and_not_recorded(data, tmp_path):
    _, _, train, test, initial = data
    path = tmp_path / "bad.json"
    with pytest.raises(ValueError, match="returned 1 labels for 2"):
        _loop().run(train, initial, test, path=path, oracle=lambda idx: [0])
    assert not path.exists()
    with pytest.raises(ValueError, match="integer class labels"):
        _loop().run(train, initial, test, oracle=lambda idx: [-1] * len(idx))
    with pytest.raises(TypeError, match="oracle must be a function"):
        _loop().run(train, initial, test, oracle=[1, 2])
