"""Checkpoints and caches prove their integrity: a SHA-256 digest of their content is written
with them and verified on every load; tampered content is named; one safe loader for all."""

import os
import pickle
import stat
import warnings
import zipfile

import pytest
import torch
from toy_data import blobs, cache_ctx, images

from bayesdl.atomic import atomic_path, remove_stale_temporaries
from bayesdl.experiments.training import NetworkRecipe, train_network, train_plain
from bayesdl.inference import MeanFieldGuide, fit, load_checkpoint
from bayesdl.inference.checkpoints import CHECKPOINT_FORMAT, save_state, state_digest
from bayesdl.models import BNN, MLP


def _model():
    torch.manual_seed(0)
    return BNN(MLP(2, 8, 3), prior_scale=1.0)


@pytest.fixture
def checkpoint(tmp_path):
    x, y = blobs(40)
    model = _model()
    path = tmp_path / "fit.pt"
    fit(model, MeanFieldGuide(model), (x, y), epochs=2, batch_size=20, seed=0, checkpoint=path, progress=False)
    return path


def _load_fresh(path):
    model = _model()
    return load_checkpoint(path, model, MeanFieldGuide(model))


def _flip_a_tensor_byte(path):
    """Flip one byte inside the largest tensor's stored bytes (the zip is not compressed)."""
    with zipfile.ZipFile(path) as archive:
        info = max((i for i in archive.infolist() if "/data/" in i.filename), key=lambda i: i.file_size)
    with open(path, "r+b") as handle:
        handle.seek(info.header_offset + 26)
        name_len, extra_len = (int.from_bytes(handle.read(2), "little") for _ in range(2))
        offset = info.header_offset + 30 + name_len + extra_len + info.file_size // 2
        handle.seek(offset)
        byte = handle.read(1)
        handle.seek(offset)
        handle.write(bytes([byte[0] ^ 0x40]))


def test_a_checkpoint_loads_and_carries_its_digest(checkpoint):
    state = torch.load(checkpoint, weights_only=True)
    assert state["format"] == CHECKPOINT_FORMAT
    stored = state.pop("sha256")
    assert stored == state_digest(state) and len(stored) == 64
    assert torch.isfinite(_load_fresh(checkpoint).predict(blobs(40)[0], num_samples=3).probs).all()


def test_corrupted_tensor_bytes_fail_the_digest(checkpoint):
    _flip_a_tensor_byte(checkpoint)
    with pytest.raises(ValueError, match="does not match its SHA-256 digest"):
        _load_fresh(checkpoint)


def _tamper(path, change, redigest=True):
    """Rewrite a checkpoint with ``change(state)`` applied; ``redigest`` recomputes the digest as a
    careful forger would, so that only the content checks can catch it."""
    state = torch.load(path, weights_only=True)
    state.pop("sha256")
    change(state)
    if redigest:
        kind = state.pop("format")
        save_state(path, state, kind)
    else:
        torch.save(state, path)


@pytest.mark.parametrize("change, message", [
    (lambda s: s.pop("guide_class"), r"lacks the entries \['guide_class'\]"),
    (lambda s: s.pop("epoch"), r"lacks the entries \['epoch'\]"),
    (lambda s: s.update(epoch="2"), r"epoch \(str, not int\)"),
    (lambda s: s.update(epoch=-1), "records epoch -1"),
    (lambda s: s["history"].update(surprise=[1.0]), r"unknown entries \['surprise'\]"),
    (lambda s: s.update(history=[]), r"history \(list, not dict\)"),
    (lambda s: next(iter(s["guide_state"].values())).fill_(float("nan")), r"non-finite \(NaN/Inf\) values in guide_state"),
    (lambda s: s.update(format="bayesdl-checkpoint-1"), "is not a bayesdl checkpoint of this version"),
])
def test_tampered_content_is_named(checkpoint, change, message):
    _tamper(checkpoint, change)
    with pytest.raises(ValueError, match=message):
        _load_fresh(checkpoint)


def test_an_edited_checkpoint_without_a_new_digest_is_refused(checkpoint):
    _tamper(checkpoint, lambda s: s.update(epoch=1), redigest=False)
    with pytest.raises(ValueError, match="has no digest"):
        _load_fresh(checkpoint)


def test_resuming_from_a_tampered_checkpoint_is_a_clear_error(checkpoint):
    _tamper(checkpoint, lambda s: s.pop("optimizer_state"))
    x, y = blobs(40)
    model = _model()
    with pytest.raises(ValueError, match=r"lacks the entries \['optimizer_state'\]"):
        fit(model, MeanFieldGuide(model), (x, y), epochs=3, checkpoint=checkpoint, resume=True, progress=False)


class _Payload:
    def __reduce__(self):
        return (print, ("this must never run",))


def test_an_unpicklable_file_is_refused_without_advice_to_unpickle_it(tmp_path, capsys):
    path = tmp_path / "evil.pt"
    torch.save({"format": CHECKPOINT_FORMAT, "payload": _Payload()}, path)
    with pytest.raises(ValueError, match="other than tensors and plain values, which are never loaded") as info:
        _load_fresh(path)
    assert "weights_only" not in str(info.value)
    assert "this must never run" not in capsys.readouterr().out
    path.write_bytes(pickle.dumps({"not": "a torch file"}, protocol=2)[:10])
    with pytest.raises(ValueError, match="is not a readable bayesdl checkpoint") as info:
        _load_fresh(path)
    assert "weights_only" not in str(info.value)


def test_a_truncated_checkpoint_is_a_clear_error(checkpoint):
    data = checkpoint.read_bytes()
    checkpoint.write_bytes(data[: len(data) // 2])
    with pytest.raises(ValueError, match=r"is not a readable bayesdl checkpoint .*corrupted or truncated"):
        _load_fresh(checkpoint)


def test_checkpoints_respect_the_umask(tmp_path):
    old = os.umask(0o022)
    try:
        x, y = blobs(40)
        model = _model()
        path = tmp_path / "fit.pt"
        fit(model, MeanFieldGuide(model), (x, y), epochs=1, checkpoint=path, progress=False)
    finally:
        os.umask(old)
    assert stat.S_IMODE(path.stat().st_mode) == 0o644


# ------------------------------------------------------------------ the study cache
def test_a_damaged_cache_entry_is_trained_again(tmp_path):
    ctx, train = cache_ctx(tmp_path), images()
    recipe = NetworkRecipe(method="map", epochs=1, batch_size=16, train_size=len(train))
    first, seconds = train_network(recipe, train, ctx)
    assert seconds > 0
    path = ctx.cache_dir / f"{recipe.key()}.pt"
    x = train.tensors[0][:8]
    expected = first.predict(x, num_samples=1).probs
    _, seconds = train_network(recipe, train, ctx)
    assert seconds == 0.0  # a sound entry is loaded
    _flip_a_tensor_byte(path)
    with pytest.warns(UserWarning, match="is damaged and is trained again: .*SHA-256 digest"):
        again, seconds = train_network(recipe, train, ctx)
    assert seconds > 0
    assert torch.allclose(again.predict(x, num_samples=1).probs, expected)  # the same network, retrained


def test_the_plain_network_cache_uses_the_safe_loader(tmp_path):
    ctx, train = cache_ctx(tmp_path), images()
    recipe = NetworkRecipe(method="plain", epochs=1, batch_size=16, train_size=len(train))
    ctx.cache_dir.mkdir()
    path = ctx.cache_dir / f"{recipe.key()}.pt"
    torch.save({"net": _Payload(), "epoch_loss": []}, path)  # an untrusted file in the cache
    with pytest.warns(UserWarning, match="is damaged and is trained again: .*never loaded"):
        net, info = train_plain(recipe, train, ctx)
    assert info["seconds"] > 0 and len(info["epoch_loss"]) == 1
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        again, info = train_plain(recipe, train, ctx)  # now cached, verified, loaded
    assert info["seconds"] == 0.0
    x = train.tensors[0][:4]
    assert torch.equal(again(x), net(x))


def test_stale_temporaries_are_removed_but_live_ones_kept(tmp_path):
    stale = tmp_path / ".lenet.pt.abc123.tmp"
    stale.mkdir()
    (stale / "lenet.pt").write_bytes(b"half a checkpoint")  # its writer was killed: nobody holds its lock
    with atomic_path(tmp_path / "other.pt") as live:
        live.write_bytes(b"being written")
        assert remove_stale_temporaries(tmp_path) == [stale]
        assert live.exists()
    assert not stale.exists() and (tmp_path / "other.pt").read_bytes() == b"being written"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["other.pt"]
