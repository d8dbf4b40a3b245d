"""The sentiment study (issue 30): the data protocol on synthetic reviews, bad data files, the quick
run end to end and its resume, and the speed benchmark at a tiny size."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from bayesdl.experiments.registry import run_study
from bayesdl.experiments.text_data import AUTHORS, Review, load_reviews, sentiment_split

ROOT = Path(__file__).resolve().parents[1]


def _reviews(count=40, seed=0):
    g = torch.Generator().manual_seed(seed)
    words = [f"w{i}" for i in range(30)]
    out = []
    for k in range(count):
        length = int(torch.randint(3, 25, (1,), generator=g))
        tokens = tuple(words[int(i)] for i in torch.randint(0, 30, (length,), generator=g))
        out.append(Review(tokens, k / count, f"synthetic:{k + 1}"))
    return out


def test_the_split_follows_the_papers_protocol():
    reviews = _reviews()
    s = sentiment_split(reviews, seed=3, vocabulary=10, max_length=8)
    assert s.x_train.dtype == torch.long and s.x_train.shape[1] == 8 and s.vocab_size == 12
    assert int(s.x_train.max()) < s.vocab_size and bool((s.x_train != 0).any(1).all())
    # standardised on the training part
    assert float(s.y_train.mean()) == pytest.approx(0.0, abs=1e-5)
    assert float(s.y_train.std()) == pytest.approx(1.0, abs=1e-4)
    # every test chunk keeps its review's rating; chunks in order, left-padded
    by_text = {" ".join(r.tokens): r.rating for r in reviews}
    for text, rating, row in zip(s.texts_test, s.rating_test.tolist(), s.x_test):
        assert any(text in full for full in by_text) and len(text.split()) <= 8
        words = row[row != 0]
        assert len(words) == len(text.split()) and bool((row[: 8 - len(words)] == 0).all())
        assert rating == pytest.approx(next(v for full, v in by_text.items() if text in full), abs=1e-6)
    # the cut is moved to the next review boundary: at most 20% test chunks, and every test review
    # is whole in the test set (its chunks joined are the whole review), none shared with training
    total = len(s.x_train) + len(s.x_test)
    assert 0.1 <= len(s.x_test) / total <= 0.2
    for k in set(s.test_review.tolist()):
        joined = " ".join(t for t, r in zip(s.texts_test, s.test_review.tolist()) if r == k)
        assert joined in by_text
    # the seed shuffles
    assert not torch.equal(sentiment_split(reviews, 4, 10, 8).x_test[:3], s.x_test[:3])


def _write_root(tmp_path, rating_lines=None, review_lines=None):
    for author in AUTHORS:
        folder = tmp_path / "scaledata" / author
        folder.mkdir(parents=True)
        (folder / f"subj.{author}").write_text("\n".join(review_lines or ["a good film", "a bad film"]) + "\n")
        (folder / f"rating.{author}").write_text("\n".join(rating_lines or ["0.8", "0.2"]) + "\n")
    return tmp_path


def test_bad_data_files_are_refused_naming_the_file_and_line(tmp_path):
    assert len(load_reviews(_write_root(tmp_path / "good"))) == 8
    with pytest.raises(ValueError, match=r"rating\.Dennis\+Schwartz:2: the rating 1.3 lies outside \[0, 1\]"):
        load_reviews(_write_root(tmp_path / "high", rating_lines=["0.5", "1.3"]))
    with pytest.raises(ValueError, match=r":1: the rating -0.1 lies outside"):
        load_reviews(_write_root(tmp_path / "low", rating_lines=["-0.1", "0.3"]))
    with pytest.raises(ValueError, match="is not a number"):
        load_reviews(_write_root(tmp_path / "text", rating_lines=["good", "0.3"]))
    with pytest.raises(ValueError, match=r"subj\.Dennis\+Schwartz:2: the review is empty"):
        load_reviews(_write_root(tmp_path / "empty", review_lines=["fine", "  "]))
    with pytest.raises(ValueError, match=r"2 reviews but .* 3 ratings"):
        load_reviews(_write_root(tmp_path / "count", rating_lines=["0.1", "0.2", "0.3"]))
    with pytest.raises(FileNotFoundError, match="scaledata"):
        load_reviews(tmp_path / "nowhere")


@pytest.fixture(scope="module")
def scale_root():
    root = os.environ.get("BAYESDL_DATA")
    if root and (Path(root) / "scaledata").is_dir():
        return Path(root)
    if os.environ.get("BAYESDL_REQUIRE_DATA") == "1":
        pytest.fail(f"BAYESDL_REQUIRE_DATA=1 but no scaledata under BAYESDL_DATA={root!r}")
    pytest.skip("set BAYESDL_DATA to a data root with scaledata/ to run this test")


@pytest.mark.slow
@pytest.mark.data
def test_the_quick_run_writes_every_row_and_resumes_from_its_cache(scale_root, tmp_path):
    cache = tmp_path / "cache"
    first = run_study("sentiment", tmp_path / "run", quick=True, data_root=scale_root, cache_dir=cache,
                      progress=False)
    results = first["results"]
    assert {"variational", "naive", "map", "mean_field", "ranking"} <= set(results)
    for row in ("variational", "naive", "map", "mean_field"):
        r = results[row]
        for metric in ("rmse", "nll", "coverage_50", "coverage_90", "coverage_95", "aleatoric", "epistemic"):
            assert set(r[metric]) >= {"mean", "se", "per_seed"}
        assert 0 < r["rmse"]["mean"] < 0.5  # rating units, [0, 1] scale
        assert len(r["uncertain"]["most"]) == 5
    # the dropout rows have an epistemic part, MAP none
    assert results["variational"]["epistemic"]["mean"] > 0 and results["map"]["epistemic"]["mean"] == 0
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert metrics["results"]["variational"]["rmse"] == results["variational"]["rmse"]
    assert (tmp_path / "run" / "test_rmse_by_epoch.png").stat().st_size > 0
    # a rerun reads every finished row from the cache: the same numbers
    again = run_study("sentiment", tmp_path / "run", quick=True, data_root=scale_root, cache_dir=cache,
                      progress=False)
    assert again["results"] == results
    # a longer run continues the shorter one's checkpoints (one more epoch each)
    longer = run_study("sentiment", tmp_path / "run3", quick=True, data_root=scale_root, cache_dir=cache,
                       progress=False, options={"epochs": "3"})
    curve = json.loads((tmp_path / "run3" / "metrics.json").read_text())
    assert longer["results"]["map"]["rmse"]["mean"] > 0 and curve["config"]["options"]["epochs"] == 3


@pytest.mark.slow
def test_rnn_speed_runs_at_a_tiny_size(tmp_path):
    out = tmp_path / "rnn_speed.json"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MPLBACKEND": "Agg"}
    done = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "rnn_speed.py"), "--train", "128", "--predict",
                           "32", "--length", "12", "--vocab", "300", "--hidden", "8", "--samples", "4", "--rounds",
                           "1", "--json", str(out)], cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(out.read_text())
    assert set(result["ratios"]) == {"variational / plain_cell", "plain_fused / plain_cell",
                                     "predict T=4: bayesdl / plain loops"}
    assert all(value > 0 for value in result["ratios"].values())
