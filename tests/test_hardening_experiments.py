"""Issue 29, experiments: what the active-learning loop, ``bdl run --set`` and the study caches
refuse or repair, at their boundary, before any work -- never a torch traceback after a step.

- ``ActiveLearning``: everything accepted at construction runs; bad data, indices, models and
  record paths are refused at their first use with a message saying what to pass;
- ``bdl run ... --set``: a key given twice, and ``max_labels`` below the initial labels, refused;
- the cached results (active-learning records, UCI per-split files) carry a SHA-256 digest: a
  damaged or edited entry is named in a warning, removed and recomputed; an entry written before
  digests is accepted once with a warning and rewritten with its digest.
"""

import json
import math
import re
import warnings

import numpy as np
import pytest
import torch
from torch.utils.data import TensorDataset

from bayesdl.experiments.active_learning import ActiveLearning, ActiveLearningRecord, balanced_initial_indices
from bayesdl.experiments.cli import main
from bayesdl.experiments.io import read_verified_json, write_verified_json
from bayesdl.experiments.registry import run_study
from bayesdl.models import BNN, MLP, Gaussian


# ---------------------------------------------------------------------- the verified JSON pair
def test_verified_json_round_trips_and_names_a_damaged_file(tmp_path):
    path = tmp_path / "entry.json"
    content = {"rmse": 1.2345678, "split": 3, "curve": [0.5, 0.25], "nested": {"a": [1, 2]}}
    write_verified_json(path, content, "bayesdl-test-1")
    assert read_verified_json(path, "bayesdl-test-1") == content
    assert json.loads(path.read_text())["rmse"] == 1.2345678  # still plain JSON to read by eye

    text = path.read_text()
    path.write_text(text.replace("1.2345678", "1.2345679"))  # one digit changed
    with pytest.raises(ValueError, match=re.escape(str(path)) + ".*digest"):
        read_verified_json(path, "bayesdl-test-1")
    path.write_text(text[: len(text) // 2])  # truncated
    with pytest.raises(ValueError, match=re.escape(str(path)) + ".*not valid JSON"):
        read_verified_json(path, "bayesdl-test-1")
    path.write_text(text)
    with pytest.raises(ValueError, match="bayesdl-other-1"):
        read_verified_json(path, "bayesdl-other-1")
    path.write_text(text.replace('"sha256"', '"sha256_"'))
    with pytest.raises(ValueError, match="no digest"):
        read_verified_json(path, "bayesdl-test-1")
    path.write_bytes(b"\xff\xfe\x00garbage")
    with pytest.raises(ValueError, match=re.escape(str(path))):
        read_verified_json(path, "bayesdl-test-1")
    with pytest.raises(ValueError, match="is a folder"):
        read_verified_json(tmp_path, "bayesdl-test-1")
    with pytest.raises(FileNotFoundError):
        read_verified_json(tmp_path / "absent.json", "bayesdl-test-1")
    with pytest.raises(ValueError, match="reserved"):
        write_verified_json(path, {"sha256": "x"}, "bayesdl-test-1")


def test_an_unversioned_file_is_accepted_once_with_a_warning_and_rewritten(tmp_path):
    path = tmp_path / "old.json"
    path.write_text(json.dumps({"rmse": 2.5, "split": 0}))  # as written before digests
    with pytest.raises(ValueError, match="no digest"):
        read_verified_json(path, "bayesdl-test-1")
    with pytest.warns(UserWarning, match=re.escape(str(path)) + ".*without a digest"):
        assert read_verified_json(path, "bayesdl-test-1", accept_unversioned=True) == {"rmse": 2.5, "split": 0}
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # rewritten with its digest: no second warning
        assert read_verified_json(path, "bayesdl-test-1") == {"rmse": 2.5, "split": 0}


# ---------------------------------------------------------------------- the active-learning loop
def _blobs(n, seed):
    g = torch.Generator().manual_seed(seed)
    y = torch.arange(n) % 3
    centers = torch.tensor([[2.0, 0.0], [-1.0, 1.7], [-1.0, -1.7]])
    return TensorDataset(centers[y] + 0.8 * torch.randn(n, 2, generator=g), y)


def _model():
    return BNN(MLP(2, 8, 3, dropout=0.2), prior_scale=1.0)


def _loop(model_fn=_model, **kwargs):
    options = dict(method="dropout", acquisition="bald", acquisition_size=2, max_labels=7, candidates=20,
                   num_samples=3, method_options={"epochs": 2, "batch_size": 16, "lr": 0.05})
    options.update(kwargs)
    return ActiveLearning(model_fn, **options)


@pytest.fixture(scope="module")
def blobs():
    train, test = _blobs(60, 0), _blobs(30, 1)
    exclude = [0, 1, 2]
    initial = balanced_initial_indices(train.tensors[1], 1, seed=0, exclude=exclude)
    return train, test, exclude, initial


def test_a_network_instance_is_refused_as_model_fn():
    with pytest.raises(TypeError, match=re.escape("pass a function returning a fresh BNN, e.g. lambda: BNN(...)")):
        ActiveLearning(_model())


@pytest.mark.parametrize("kwargs, error, message", [
    ({"batch_size": 0}, ValueError, "batch_size must be >= 1"),
    ({"method_options": [("epochs", 2)]}, TypeError, "method_options must be a mapping"),
    ({"acquisition_options": ["num_configurations", 5]}, TypeError, "acquisition_options must be a mapping"),
    ({"acquisition": "batchbald", "acquisition_options": {"num_configuration": 5}}, TypeError,
     "takes no option ['num_configuration']"),
    ({"acquisition": "bald", "acquisition_options": {"num_configurations": 5}}, TypeError,
     "takes no option ['num_configurations']"),
    ({"acquisition": "batchbald", "acquisition_options": {"generator": None}}, ValueError, "the loop sets"),
    ({"acquisition": "batchbald", "acquisition_options": {"num_configurations": 0}}, ValueError,
     "num_configurations must be >= 1"),
    ({"method_options": {"epoch": 2}}, TypeError, "takes no option ['epoch']"),
    ({"device": "nosuch"}, ValueError, "device 'nosuch' is not available"),
])
def test_what_run_would_fail_on_is_refused_at_construction(kwargs, error, message):
    with pytest.raises(error, match=re.escape(message)):
        _loop(**kwargs)


def test_a_valid_batchbald_option_is_accepted():
    loop = _loop(acquisition="batchbald", acquisition_options={"num_configurations": 50, "exact_limit": 9})
    assert loop.acquisition_options == {"num_configurations": 50, "exact_limit": 9}


def test_indices_out_of_range_are_refused(blobs, tmp_path):
    train, test, exclude, initial = blobs
    loop = _loop()
    for bad in ([len(train)], [-1]):
        with pytest.raises(ValueError, match=r"exclude .*\[0, 60\)"):
            loop.start(train, initial, exclude=bad)
        with pytest.raises(ValueError, match=r"exclude .*\[0, 60\)"):
            loop.run(train, initial, test, exclude=bad)
    record = loop.start(train, initial, exclude=exclude)
    with pytest.raises(ValueError, match=r"exclude .*\[0, 60\)"):
        loop.step(record, train, test, exclude=[1000])


def test_x_y_pairs_are_taken_as_datasets_and_other_data_is_refused(blobs):
    train, test, exclude, initial = blobs
    as_sets = _loop().run(train, initial, test, exclude=exclude)
    as_pairs = _loop().run(tuple(train.tensors), initial, list(test.tensors), exclude=exclude,
                           val=tuple(test.tensors))
    assert as_pairs.labels == as_sets.labels and as_pairs.acquired == as_sets.acquired
    assert as_pairs.test_error == as_sets.test_error
    x, y = train.tensors
    with pytest.raises(TypeError, match=r"train must be a TensorDataset or an \(x, y\) pair"):
        _loop().run(x, initial, test)
    with pytest.raises(ValueError, match="train: x and y must have the same length"):
        _loop().run((x, y[:-1]), initial, test)
    with pytest.raises(ValueError, match="test: y must be integer class indices"):
        _loop().run(train, initial, (test.tensors[0], test.tensors[1].float() + 0.5))
    with pytest.raises(ValueError, match=r"y must have shape \[N\]"):
        _loop().run((x, y[:, None].expand(-1, 2)), initial, test)


def test_a_model_that_does_not_classify_is_refused_before_training(blobs, monkeypatch):
    train, test, exclude, initial = blobs
    import bayesdl.experiments.active_learning as al

    def never(*args, **kwargs):
        raise AssertionError("trained a network the loop cannot use")

    monkeypatch.setattr(al, "approximate", never)
    regression = _loop(lambda: BNN(MLP(2, 8, 1), prior_scale=1.0, likelihood=Gaussian(scale=0.1)))
    with pytest.raises(ValueError, match=r"categorical likelihood.*Gaussian"):
        regression.run(train, initial, test, exclude=exclude)
    plain = _loop(lambda: MLP(2, 8, 3, dropout=0.2))
    with pytest.raises(TypeError, match=re.escape("model_fn must return a bayesdl.models.BNN, got MLP")):
        plain.run(train, initial, test, exclude=exclude)


def test_a_record_path_that_is_a_folder_or_under_a_file_is_refused(blobs, tmp_path):
    train, test, exclude, initial = blobs
    loop = _loop()
    with pytest.raises(ValueError, match="is a folder"):
        loop.run(train, initial, test, path=tmp_path, exclude=exclude)
    record = loop.start(train, initial, exclude=exclude)
    with pytest.raises(ValueError, match="is a folder"):
        loop.step(record, train, test, path=tmp_path, exclude=exclude)
    (tmp_path / "file").write_text("")
    with pytest.raises(ValueError, match="is a file"):
        loop.run(train, initial, test, path=tmp_path / "file" / "run.json", exclude=exclude)
    assert record.labels == []


def _change_one_digit(text, key):
    """``text`` with the last digit of the first number after ``key`` changed."""
    number = re.compile(r"-?\d+(\.\d+)?([eE][-+]?\d+)?").search(text, text.index(key) + len(key))
    end = number.end(1) if number.group(1) else number.end()
    digit = text[end - 1]
    return text[:end - 1] + ("1" if digit != "1" else "2") + text[end:]


def _record_after_two_steps(blobs, path):
    train, test, exclude, initial = blobs
    loop = _loop()
    record = loop.start(train, initial, path, exclude)
    for _ in range(2):
        loop.step(record, train, test, path, exclude)
    return record


@pytest.mark.parametrize("damage", ["digit", "truncate"])
def test_a_damaged_record_is_reported_removed_and_recomputed(blobs, tmp_path, damage):
    train, test, exclude, initial = blobs
    path = tmp_path / "run.json"
    whole = _loop().run(train, initial, test, path=tmp_path / "whole.json", exclude=exclude)
    _record_after_two_steps(blobs, path)
    text = path.read_text()
    if damage == "digit":  # one digit of a recorded test error
        path.write_text(_change_one_digit(text, '"test_error"'))
    else:
        path.write_text(text[: len(text) // 3])
    with pytest.warns(UserWarning, match=re.escape(str(path)) + ".*damaged.*recomputed"):
        record = _loop().start(train, initial, path, exclude)
    assert record.labels == [] and not path.exists()
    again = _loop().run(train, initial, test, path=path, exclude=exclude)
    assert again.labels == whole.labels and again.acquired == whole.acquired
    assert again.test_error == whole.test_error
    assert ActiveLearningRecord.load(path) == again


def test_a_record_written_before_digests_is_accepted_once_and_rewritten(blobs, tmp_path):
    train, _, exclude, initial = blobs
    path = tmp_path / "run.json"
    record = _record_after_two_steps(blobs, path)
    content = json.loads(path.read_text())
    old = {k: v for k, v in content.items() if k not in ("format", "sha256")}
    path.write_text(json.dumps(old, indent=2))
    with pytest.warns(UserWarning, match="without a digest"):
        resumed = _loop().start(train, initial, path, exclude)
    assert resumed == record
    assert json.loads(path.read_text())["sha256"]  # rewritten with its digest


def test_a_record_of_the_wrong_shape_is_damaged(tmp_path):
    path = tmp_path / "run.json"
    ActiveLearningRecord(config={}, initial=[1, 2], labels=[2], test_error=[0.5], acquired=[[3]],
                         seconds=[{"train": 1.0, "test": 0.1}]).save(path)
    content = read_verified_json(path, "bayesdl-active-learning-1")
    write_verified_json(path, {**content, "labels": [2, 3]}, "bayesdl-active-learning-1")  # digest matches
    with pytest.raises(ValueError, match=re.escape(str(path)) + ".*labels"):
        ActiveLearningRecord.load(path)


# ---------------------------------------------------------------------- the command line
def _fails(capsys, argv, message):
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("bdl: error: ") and "Traceback" not in err, err
    assert message in err, err


def test_a_set_key_given_twice_is_refused(tmp_path, capsys):
    out = tmp_path / "out"
    _fails(capsys, ["run", "active-learning", "--quick", "--out", str(out), "--set", "seeds=1", "--set", "seeds=2"],
           "--set seeds given twice: 1 and 2")
    _fails(capsys, ["run", "uci", "--quick", "--out", str(out), "--set", "splits=1", "--set", "splits=1"],
           "--set splits given twice: 1 and 1")
    assert not out.exists()


def test_max_labels_below_the_initial_labels_is_refused_before_any_work(tmp_path, capsys):
    from bayesdl.experiments.catalogue import ActiveLearningOptions
    from bayesdl.experiments.studies import active_learning as study

    out = tmp_path / "out"
    _fails(capsys, ["run", "active-learning", "--quick", "--out", str(out), "--set", "max_labels=5"],
           "option max_labels must be more than the 20 initial labels")
    assert not out.exists()
    with pytest.raises(ValueError, match="at least 21"):
        run_study("active-learning", out, quick=True, data_root=tmp_path, options={"max_labels": "20"})
    _fails(capsys, ["run", "active-learning", "--quick", "--out", str(out), "--set", "candidates=5"],
           "option candidates must be at least the 10 points acquired per step")
    # the declaration's minima are the study's protocol
    fields = {f.name: f for f in ActiveLearningOptions.__dataclass_fields__.values()}
    assert fields["max_labels"].metadata["minimum"] == study.INITIAL_PER_CLASS * 10 + 1
    assert fields["candidates"].metadata["minimum"] == study.ACQUISITION_SIZE
    assert ActiveLearningOptions.parse({"max_labels": "21"}).max_labels == 21


# ---------------------------------------------------------------------- the UCI per-split files
def _fake_uci(root, n=40):
    rng = np.random.default_rng(0)
    folder = root / "UCI" / "yacht"
    folder.mkdir(parents=True)
    x = rng.normal(size=(n, 3))
    y = 3.0 * x[:, 0] + 0.3 * rng.normal(size=n)
    np.savetxt(folder / "data.txt", np.column_stack([x, y]))
    np.savetxt(folder / "index_features.txt", [0, 1, 2], fmt="%d")
    np.savetxt(folder / "index_target.txt", [3], fmt="%d")
    for k in range(2):
        order = rng.permutation(n)
        np.savetxt(folder / f"index_train_{k}.txt", order[: int(0.9 * n)], fmt="%d")
        np.savetxt(folder / f"index_test_{k}.txt", order[int(0.9 * n):], fmt="%d")
    for file, values in (("n_splits.txt", [2]), ("n_hidden.txt", [4]), ("n_epochs.txt", [1])):
        np.savetxt(folder / file, values, fmt="%d")
    np.savetxt(folder / "dropout_rates.txt", [0.05])
    np.savetxt(folder / "tau_values.txt", [5.0])


@pytest.fixture
def bench(tmp_path):
    from bayesdl.experiments.studies.uci import Benchmark, Settings

    _fake_uci(tmp_path / "data")
    settings = Settings(splits=2, epochs=1, min_steps=0, other_samples=5)
    return Benchmark(tmp_path / "data", tmp_path / "splits", settings, log=lambda *_: None)


def _summary(bench):
    from bayesdl.experiments.studies.uci import summarise

    return summarise(bench.folder, ["yacht"], ["mean_field"], 2)


@pytest.mark.parametrize("damage", ["digit", "truncate"])
def test_a_damaged_split_is_reported_removed_and_recomputed(bench, damage):
    bench.run(["yacht"], ["mean_field"])
    path = bench.path("yacht", "mean_field", 1)
    assert path.name == "mean_field_01.json"  # the names of earlier runs
    first = _summary(bench)
    text = path.read_text()
    if damage == "digit":
        path.write_text(_change_one_digit(text, '"rmse"'))
    else:
        path.write_text(text[:40])
    with pytest.raises(ValueError, match=re.escape(str(path))):
        _summary(bench)  # never a bare json message, nor an edited number taken as a result
    stamp = bench.path("yacht", "mean_field", 0).stat().st_mtime_ns
    with pytest.warns(UserWarning, match=re.escape(str(path)) + ".*damaged.*recomputed"):
        bench.run(["yacht"], ["mean_field"])
    assert bench.path("yacht", "mean_field", 0).stat().st_mtime_ns == stamp  # the sound split kept
    assert _summary(bench)["yacht"]["mean_field"]["rmse"] == first["yacht"]["mean_field"]["rmse"]


def test_a_split_written_before_digests_is_accepted_once_and_rewritten(bench):
    bench.run(["yacht"], ["mean_field"])
    first = _summary(bench)
    path = bench.path("yacht", "mean_field", 0)
    content = json.loads(path.read_text())
    path.write_text(json.dumps({k: v for k, v in content.items() if k not in ("format", "sha256")}, indent=2))
    with pytest.warns(UserWarning, match=re.escape(str(path)) + ".*without a digest"):
        bench.run(["yacht"], ["mean_field"])
    assert json.loads(path.read_text())["sha256"]
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert _summary(bench) == first
    assert math.isfinite(first["yacht"]["mean_field"]["rmse"])
