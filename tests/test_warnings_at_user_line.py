"""Every warning of the library names the user's line, not a line of bayesdl or torch
(issue 28: "warnings point into torch (stacklevel) rather than the user's line")."""

from __future__ import annotations

import warnings

import arviz as az
import numpy as np
import pytest
import torch
from torch import nn

from bayesdl._warn import user_stacklevel, warn
from bayesdl.evaluation.diagnostics import summary
from bayesdl.inference import DropoutGuide, MAPGuide, approximate, fit, to_inference_data
from bayesdl.models import BNN, MLP


def _data(n=40):
    g = torch.Generator().manual_seed(0)
    x = torch.randn(n, 2, generator=g)
    return x, (x[:, 0] > 0).long()


def _at_this_file(record) -> list[str]:
    """The files the recorded warnings name, other than this one."""
    return [f"{w.filename}:{w.lineno}: {w.message}" for w in record if w.filename != __file__]


def test_fit_with_zero_epochs_names_the_callers_line():
    x, y = _data()
    model = BNN(MLP(2, 4, 2), likelihood="categorical")
    with pytest.warns(UserWarning, match="epochs=0") as record:
        fit(model, MAPGuide(model), (x, y), epochs=0, progress=False)
    assert not _at_this_file(record)
    with pytest.warns(UserWarning, match="epochs=0") as record:  # through the registry too
        approximate("map", model, (x, y), epochs=0, progress=False)
    assert not _at_this_file(record)


def test_a_network_ending_in_softmax_is_named_at_the_users_line():
    with pytest.warns(UserWarning, match="ends in Softmax") as record:
        BNN(nn.Sequential(nn.Linear(2, 2), nn.Softmax(dim=-1)), likelihood="categorical")
    assert not _at_this_file(record)


def test_point_mass_sites_and_one_chain_summaries_are_named_at_the_users_line():
    x, y = _data()
    model = BNN(MLP(2, 6, 2, dropout=0.2), likelihood="categorical")
    posterior = fit(model, DropoutGuide(model), (x, y), epochs=1, seed=0, progress=False)
    with pytest.warns(UserWarning, match="point masses") as record:
        to_inference_data(posterior, x, y, num_samples=20, progress=False)
    assert not _at_this_file(record)
    idata = az.from_dict(posterior={"w": np.random.default_rng(0).normal(size=(1, 50))})
    with pytest.warns(UserWarning, match="several MCMC chains") as record:
        summary(idata)
    assert not _at_this_file(record)


def test_the_level_skips_frames_of_torch_wrappers():
    """A library function below ``torch.no_grad`` (a torch frame between it and the user) still
    names the user's line: the frames of torch and contextlib are skipped like bayesdl's."""
    namespace = {"__name__": "bayesdl.fake", "warn": warn, "torch": torch}
    exec("@torch.no_grad()\ndef deep():\n    warn('from deep inside')\n", namespace)
    with warnings.catch_warnings(record=True) as record:
        warnings.simplefilter("always")
        namespace["deep"]()
    assert [w.filename for w in record] == [__file__]
    assert user_stacklevel() == 1  # called from here, outside the library: this very line
