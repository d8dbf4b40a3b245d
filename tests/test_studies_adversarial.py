"""The adversarial study in quick mode on the real MNIST: its shape, its invariants, its resumption."""

from __future__ import annotations

import json

import pytest

from bayesdl.experiments.catalogue import STUDIES
from bayesdl.experiments.cli import main

pytestmark = [pytest.mark.data, pytest.mark.slow]
ROWS = ("map", "mc_dropout", "deep_ensemble", "laplace", "mean_field")
KINDS = ("fgsm", "pgd", "transfer_fgsm", "transfer_pgd", "uniform_noise")


def _run(out, cache, data_root):
    assert main(["run", "adversarial", "--quick", "--out", str(out), "--data-root", str(data_root),
                 "--cache-dir", str(cache), "--no-progress"]) == 0
    return json.loads((out / "metrics.json").read_text())


@pytest.fixture(scope="module")
def quick(tmp_path_factory, data_root):
    base = tmp_path_factory.mktemp("adversarial")
    return _run(base / "run", base / "cache", data_root), base, data_root


def test_every_row_perturbation_and_radius_is_measured(quick):
    metrics, base, _ = quick
    mean = metrics["results"]["mean"]
    assert tuple(mean) == ROWS
    for row in ROWS:
        assert tuple(mean[row]) == KINDS
        clean = mean[row]["fgsm"]["0"]
        for kind in KINDS:
            cells = mean[row][kind]
            assert list(cells) == ["0", "0.05", "0.1", "0.2", "0.3"]
            assert cells["0"]["accuracy"] == clean["accuracy"]  # radius 0: the clean images
            assert [cells["0"][f"auroc_{s}"] for s in ("mcp", "entropy", "mutual_information")] == pytest.approx([0.5] * 3)
            assert all(0 <= c["accuracy"] <= 1 and 0 <= c["auroc_mcp"] <= 1 for c in cells.values())
        # the MAP's MI is 0 everywhere: its MI cannot rank anything
        assert [c["auroc_mutual_information"] for c in mean["map"][kind].values()] == pytest.approx([0.5] * 5)
    # the transfer of the MAP's images to the MAP is its own white-box attack
    assert mean["map"]["transfer_pgd"] == mean["map"]["pgd"] and mean["map"]["transfer_fgsm"] == mean["map"]["fgsm"]
    assert mean["map"]["pgd"]["0.3"]["accuracy"] < mean["map"]["pgd"]["0"]["accuracy"]
    for name in ("accuracy_vs_epsilon.png", "detection_auroc_vs_epsilon.png", "adversarial_digits.png"):
        assert (base / "run" / name).stat().st_size > 0
    report = (base / "run" / "report.md").read_text()
    assert "## Targets" in report and "MI AUROC" in report and "Noise control" in report


def test_a_rerun_resumes_from_the_verified_pieces(quick):
    metrics, base, data_root = quick
    pieces = sorted((base / "cache" / "adversarial").glob("*.json"))
    assert len(pieces) == len(ROWS) * (1 + len(KINDS) * 4)
    damaged = pieces[3]
    text = damaged.read_text()
    damaged.write_text(text[: len(text) // 2])  # truncated: it fails its verification
    again = _run(base / "again", base / "cache", data_root)
    assert again["results"] == metrics["results"]  # the damaged piece was computed again, the rest read
    assert json.loads(damaged.read_text())["sha256"]


def test_the_options_are_declared_once_with_the_paper_schedule_as_an_option():
    options = STUDIES["adversarial"].options
    full, quick = options.parse({}), options.parse({}, quick=True)
    assert (full.epochs, full.seeds, full.images, full.attack_samples, full.steps) == (3, 3, 1000, 20, 10)
    assert full.epsilons == (0.0, 0.05, 0.1, 0.2, 0.3) and quick.seeds == 1
    paper = options.parse({"epochs": "50", "samples": "100", "images": "none", "epsilons": "0.3,0,0.1"})
    assert (paper.epochs, paper.samples, paper.images, paper.epsilons) == (50, 100, None, (0.0, 0.1, 0.3))
    with pytest.raises(ValueError, match=r"numbers in \[0, 1\]"):
        options.parse({"epsilons": "0.1,2"})
