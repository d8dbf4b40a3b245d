"""Start-up checks of the installed environment.

:func:`check_torchvision` imports torchvision and, when that fails because the installed
torchvision was built for another torch (the usual symptom: ``RuntimeError: operator
torchvision::nms does not exist``), raises an :class:`ImportError` that names both versions
and the pip command installing a matching pair. The library calls it where it first imports
torchvision, and ``bdl`` before running a study that uses it, so that a mismatched pair is
named at once rather than deep inside a run or a test.
"""

from __future__ import annotations

import importlib
import re
from importlib.metadata import PackageNotFoundError, version

__all__ = ["check_torchvision", "matching_torchvision", "torchvision_fix"]

_CPU_INDEX = "https://download.pytorch.org/whl/cpu"


def _installed(name: str) -> str | None:
    try:
        return version(name)
    except PackageNotFoundError:
        return None


def matching_torchvision(torch_version: str) -> str | None:
    """The torchvision release series built for ``torch_version`` (``"2.5.1+cpu"`` -> ``"0.20.*"``),
    or None for a version outside the torch 2.x rule (torchvision 0.(m + 15) goes with torch 2.m)."""
    found = re.match(r"(\d+)\.(\d+)", torch_version)
    if not found or found.group(1) != "2":
        return None
    return f"0.{int(found.group(2)) + 15}.*"


def torchvision_fix(torch_version: str | None, torchvision_version: str | None) -> str:
    """The sentence telling how to install a matching torch/torchvision pair."""
    plain = (torch_version or "").split("+")[0]
    pair = matching_torchvision(plain) if plain else None
    index = f" --index-url {_CPU_INDEX}" if torch_version and "+cpu" in torch_version else ""
    if pair:
        command = f'pip install "torch=={plain}" "torchvision=={pair}"{index}'
    else:
        command = f"pip install --upgrade torch torchvision{index}"
    cpu = "" if index else f" (without a GPU, add --index-url {_CPU_INDEX} for the CPU-only wheels)"
    return f"install a matching pair: {command}{cpu}; see the README's Set-up"


def _import_torchvision():
    return importlib.import_module("torchvision")


def check_torchvision():
    """Import torchvision and return it; an :class:`ImportError` naming the torch and torchvision
    versions and the fix if it is missing or does not work with the installed torch."""
    try:
        return _import_torchvision()
    except (RuntimeError, ImportError, OSError) as err:
        torch_version, vision_version = _installed("torch"), _installed("torchvision")
        if vision_version is None:
            raise ImportError(
                f"torchvision is not installed (torch {torch_version}); it is needed for the MNIST "
                f"datasets: {torchvision_fix(torch_version, None)}") from err
        raise ImportError(
            f"torchvision {vision_version} does not work with torch {torch_version} "
            f"({type(err).__name__}: {str(err).strip().splitlines()[0] if str(err).strip() else err!r}); "
            f"the two must be built for each other: {torchvision_fix(torch_version, vision_version)}"
        ) from err
