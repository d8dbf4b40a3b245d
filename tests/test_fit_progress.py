"""The progress line of fit: the data term and the KL per example, or the ELBO for a generic ELBO."""

import re

import pyro
import torch

import bayesdl.progress
from bayesdl.inference import MAPGuide, MeanFieldGuide, fit
from bayesdl.models import BNN, MLP


def _data():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(64, 2, generator=g)
    return x, (x[:, 0] > 0).long()


def _lines(capsys, monkeypatch, guide_cls, **options):
    monkeypatch.setattr(bayesdl.progress, "MIN_INTERVAL", 0.0)  # every epoch line, however quick
    monkeypatch.setattr(bayesdl.progress, "is_terminal", lambda: False)  # line mode, as in a log
    torch.manual_seed(0)
    model = BNN(MLP(2, 8, 2), prior_scale=1.0)
    posterior = fit(model, guide_cls(model), _data(), epochs=3, batch_size=16, seed=0, progress=True, **options)
    lines = [line for line in capsys.readouterr().err.splitlines() if line.startswith("fit ")]
    return posterior.history, lines


def test_the_line_shows_the_nll_and_the_kl_per_example(capsys, monkeypatch):
    history, lines = _lines(capsys, monkeypatch, MeanFieldGuide)
    last = next(line for line in lines if "epoch 3/3" in line)
    nll, kl = (float(v) for v in re.search(r"nll/ex (\S+), kl/ex (\S+)", last).groups())
    n = history.dataset_size
    assert nll == float(f"{-history.epoch_log_likelihood[-1] / n:.4g}")
    assert kl == float(f"{history.epoch_kl[-1] / n:.4g}")
    assert "elbo_per_example" not in last


def test_map_shows_the_minus_log_prior_per_example(capsys, monkeypatch):
    history, lines = _lines(capsys, monkeypatch, MAPGuide)
    last = next(line for line in lines if "epoch 3/3" in line)
    assert re.search(r"nll/ex \S+, kl/ex \S+", last)
    assert float(re.search(r"kl/ex (\S+)", last).group(1)) == float(
        f"{history.epoch_kl[-1] / history.dataset_size:.4g}")


def test_a_generic_elbo_falls_back_to_the_elbo(capsys, monkeypatch):
    history, lines = _lines(capsys, monkeypatch, MeanFieldGuide, elbo=pyro.infer.Trace_ELBO())
    last = next(line for line in lines if "epoch 3/3" in line)
    assert "nll/ex" not in last
    value = float(re.search(r"elbo_per_example (\S+)", last).group(1))
    assert value == float(f"{history.epoch_elbo[-1] / history.dataset_size:.4g}")
