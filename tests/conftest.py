"""Shared fixtures.

Tests that need the real datasets read them from $BAYESDL_DATA (CI points it at
../shared/data). Without it they are skipped -- unless BAYESDL_REQUIRE_DATA=1, as in CI,
where a missing dataset is a failure. Nothing is ever downloaded.
"""

from __future__ import annotations

import os
from pathlib import Path

import pyro
import pytest
import torch


def pytest_collection_modifyitems(config, items):
    """Every test that asks for ``data_root`` is a ``data`` test (``-m "not data"`` leaves it out),
    whether or not it carries the marker itself."""
    for item in items:
        if "data_root" in getattr(item, "fixturenames", ()) and item.get_closest_marker("data") is None:
            item.add_marker(pytest.mark.data)


@pytest.fixture(autouse=True)
def _seed_and_clean_param_store():
    pyro.set_rng_seed(0)
    pyro.clear_param_store()
    yield
    pyro.clear_param_store()


@pytest.fixture(scope="session")
def data_root() -> Path:
    root = os.environ.get("BAYESDL_DATA")
    if root and (Path(root) / "MNIST" / "raw").is_dir():
        return Path(root)
    if os.environ.get("BAYESDL_REQUIRE_DATA") == "1":
        pytest.fail(f"BAYESDL_REQUIRE_DATA=1 but no MNIST under BAYESDL_DATA={root!r}")
    pytest.skip("set BAYESDL_DATA to a torchvision root with MNIST to run this test")


@pytest.fixture
def rng():
    return torch.Generator().manual_seed(0)
