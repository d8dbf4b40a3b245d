"""The active-learning loop on a tiny synthetic problem: records, resumption, any method."""

import json

import pytest
import torch
from torch.utils.data import TensorDataset

from bayesdl.experiments.active_learning import ActiveLearning, ActiveLearningRecord, balanced_initial_indices
from bayesdl.models import BNN, MLP


def _blobs(n, seed):
    g = torch.Generator().manual_seed(seed)
    y = torch.arange(n) % 3
    centers = torch.tensor([[2.0, 0.0], [-1.0, 1.7], [-1.0, -1.7]])
    return TensorDataset(centers[y] + 0.8 * torch.randn(n, 2, generator=g), y)


def _model():
    return BNN(MLP(2, 16, 3, dropout=0.2), prior_scale=1.0)


def _loop(**kwargs):
    options = dict(method="dropout", acquisition="bald", acquisition_size=2, max_labels=10, candidates=20,
                   num_samples=4, method_options={"epochs": 3, "batch_size": 16, "lr": 0.05})
    options.update(kwargs)
    return ActiveLearning(_model, **options)


@pytest.fixture(scope="module")
def data():
    train, test = _blobs(120, 0), _blobs(60, 1)
    exclude = [0, 1, 2]
    initial = balanced_initial_indices(train.tensors[1], 1, seed=0, exclude=exclude)
    return train, test, exclude, initial


def test_balanced_initial_indices(data):
    train, _, exclude, initial = data
    labels = train.tensors[1][initial]
    assert sorted(labels.tolist()) == [0, 1, 2]
    assert not set(initial) & set(exclude)
    two = balanced_initial_indices(train.tensors[1], 2, seed=1)
    assert torch.bincount(train.tensors[1][two]).tolist() == [2, 2, 2]
    with pytest.raises(ValueError, match="class"):
        balanced_initial_indices(train.tensors[1], 100, seed=0)


def test_a_run_records_every_step_and_never_acquires_twice(data, tmp_path):
    train, test, exclude, initial = data
    path = tmp_path / "run.json"
    loop = _loop(method_options={"epochs": 30, "batch_size": 16, "lr": 0.05})
    record = loop.run(train, initial, test, path=path, exclude=exclude, val=_blobs(30, 2))
    assert record.labels == [3, 5, 7, 9, 11]
    assert [len(a) for a in record.acquired] == [2, 2, 2, 2, 0]
    labelled = record.labelled
    assert len(set(labelled)) == len(labelled) == 11
    assert not set(labelled) & set(exclude)
    assert len(record.test_error) == len(record.val_error) == 5
    assert all(0.0 <= e <= 1.0 for e in record.test_error)
    assert record.test_error[-1] < 0.2  # separable blobs: a few labels suffice
    assert ActiveLearningRecord.load(path) == record
    assert json.loads(path.read_text())["acquired"] == record.acquired


def test_an_interrupted_run_resumes_and_acquires_what_an_uninterrupted_one_does(data, tmp_path):
    train, test, exclude, initial = data
    whole = _loop(acquisition="random").run(train, initial, test, path=tmp_path / "whole.json", exclude=exclude)
    path = tmp_path / "parts.json"
    loop = _loop(acquisition="random")
    record = loop.start(train, initial, path, exclude)
    for _ in range(2):  # interrupted after two steps
        loop.step(record, train, test, path, exclude)
    resumed = _loop(acquisition="random").run(train, initial, test, path=path, exclude=exclude)
    assert resumed.labels == whole.labels
    assert resumed.acquired == whole.acquired
    assert resumed.test_error == whole.test_error


def test_a_record_is_reused_for_another_max_labels(data, tmp_path):
    train, test, exclude, initial = data
    path = tmp_path / "run.json"
    short = _loop(max_labels=6).run(train, initial, test, path=path, exclude=exclude)
    assert short.labels == [3, 5, 7] and short.acquired[-1] == []
    longer = _loop(max_labels=10).run(train, initial, test, path=path, exclude=exclude)
    assert longer.labels == [3, 5, 7, 9, 11]
    assert longer.acquired[:2] == short.acquired[:2]
    cut = _loop(max_labels=6).start(train, initial, path, exclude)
    assert cut.labels == [3, 5, 7] and cut.acquired[-1] == [] and cut.test_error == longer.test_error[:3]


def test_another_configuration_at_the_same_path_is_refused(data, tmp_path):
    train, test, exclude, initial = data
    path = tmp_path / "run.json"
    _loop(max_labels=4).run(train, initial, test, path=path, exclude=exclude)
    with pytest.raises(ValueError, match="another configuration"):
        _loop(max_labels=4, acquisition="max_entropy").start(train, initial, path, exclude)


@pytest.mark.parametrize("method", ["mean_field", "map"])
def test_any_method_of_the_registry(data, method):
    train, test, exclude, initial = data
    record = _loop(method=method, max_labels=5, acquisition="batchbald",
                   acquisition_options={"num_configurations": 50}).run(train, initial, test, exclude=exclude)
    assert record.labels == [3, 5]
    assert len(record.acquired[0]) == 2


def test_bad_settings_get_clear_errors(data):
    train, _, _, initial = data
    with pytest.raises(ValueError, match="unknown inference method"):
        _loop(method="hmc")
    with pytest.raises(ValueError, match="unknown acquisition function"):
        _loop(acquisition="entropy")
    with pytest.raises(ValueError, match="the loop sets them"):
        _loop(method_options={"seed": 1})
    with pytest.raises(ValueError, match="distinct"):
        _loop().start(train, [5, 5], None)
    with pytest.raises(ValueError, match="exclude"):
        _loop().start(train, initial, None, exclude=initial[:1])
