"""Checks at the public boundary.

Every public function of the library validates what a user hands it with these helpers, so
that bad input fails early with a message that names the argument, says what was wrong and
how to fix it -- never with a traceback from deep inside torch.
"""

from __future__ import annotations

import numbers
from collections.abc import Sequence
from enum import Enum

import numpy as np
import torch

__all__ = [
    "as_tensor",
    "check_finite",
    "check_nonempty",
    "check_same_length",
    "check_positive",
    "check_probability",
    "check_int",
    "check_labels",
    "check_choice",
    "check_device",
]


def as_tensor(value, name: str, *, dtype: torch.dtype | None = None) -> torch.Tensor:
    """Turn a tensor, numpy array or (nested) sequence of numbers into a tensor.

    Torch tensors keep their device; ``dtype`` converts when given. Anything else -- a
    string, a dict, None, a ragged list -- raises ``TypeError`` naming ``name``.
    """
    if isinstance(value, torch.Tensor):
        tensor = value
    elif isinstance(value, (np.ndarray, numbers.Number)) or (
        isinstance(value, Sequence) and not isinstance(value, (str, bytes))
    ):
        try:
            array = np.asarray(value)
        except ValueError as err:  # ragged nested lists
            raise TypeError(f"{name} must be a rectangular array of numbers: {err}") from None
        if array.dtype == object or not (
            np.issubdtype(array.dtype, np.number) or array.dtype == np.bool_
        ):
            raise TypeError(
                f"{name} must hold numbers, got an array of dtype {array.dtype}; "
                "convert it to a float or integer array first"
            )
        tensor = torch.as_tensor(array)
    else:
        raise TypeError(
            f"{name} must be a torch tensor or a numpy array, got {type(value).__name__}"
        )
    if dtype is not None and tensor.dtype != dtype:
        tensor = tensor.to(dtype)
    return tensor


def check_finite(tensor: torch.Tensor, name: str) -> torch.Tensor:
    """Raise ``ValueError`` if ``tensor`` holds NaN or +-Inf; return it unchanged."""
    if tensor.is_floating_point() or tensor.is_complex():
        bad = ~torch.isfinite(tensor)
        if bool(bad.any()):
            count = int(bad.sum())
            raise ValueError(
                f"{name} contains {count} non-finite value(s) (NaN or Inf) out of "
                f"{tensor.numel()}; remove or impute them before calling"
            )
    return tensor


def check_nonempty(tensor: torch.Tensor, name: str) -> torch.Tensor:
    """Raise ``ValueError`` if ``tensor`` has no element along its first dimension."""
    if tensor.dim() == 0:
        raise ValueError(f"{name} must be an array, got a scalar")
    if tensor.shape[0] == 0:
        raise ValueError(f"{name} is empty; pass at least one example")
    return tensor


def check_same_length(first: torch.Tensor, second: torch.Tensor, names: tuple[str, str]) -> None:
    """Raise ``ValueError`` unless both tensors have the same first dimension."""
    if first.shape[0] != second.shape[0]:
        raise ValueError(
            f"{names[0]} and {names[1]} must have the same length, got "
            f"{first.shape[0]} and {second.shape[0]}"
        )


def check_positive(value, name: str, *, allow_zero: bool = False) -> float:
    """Return ``value`` as a float, raising ``ValueError`` unless it is > 0 (>= 0 if allowed)."""
    if isinstance(value, torch.Tensor) and value.numel() == 1:
        value = value.item()
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be a real number, got {type(value).__name__}")
    value = float(value)
    if not np.isfinite(value):
        raise ValueError(f"{name} must be finite, got {value}")
    if value < 0 or (value == 0 and not allow_zero):
        bound = ">= 0" if allow_zero else "> 0"
        raise ValueError(f"{name} must be {bound}, got {value}")
    return value


def check_probability(value, name: str, *, upper_inclusive: bool = False,
                      lower_inclusive: bool = True) -> float:
    """Return ``value`` as a float in [0, 1) (or [0, 1], (0, 1), (0, 1]), else raise ``ValueError``."""
    if isinstance(value, torch.Tensor) and value.numel() == 1:
        value = value.item()
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be a real number, got {type(value).__name__}")
    value = float(value)
    above = 0.0 <= value if lower_inclusive else 0.0 < value
    below = value <= 1.0 if upper_inclusive else value < 1.0
    if not (above and below):  # NaN fails both
        interval = ("[" if lower_inclusive else "(") + "0, 1" + ("]" if upper_inclusive else ")")
        raise ValueError(f"{name} must lie in {interval}, got {value}")
    return value


def check_int(value, name: str, *, minimum: int) -> int:
    """Return ``value`` as an int, raising unless it is an integer >= ``minimum``."""
    if isinstance(value, torch.Tensor) and value.numel() == 1 and not value.is_floating_point():
        value = value.item()
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{name} must be an integer, got {type(value).__name__}")
    if value < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {value}")
    return int(value)


def check_labels(labels, num_classes: int, n: int, name: str = "labels",
                 counted: str = "the predictions") -> torch.Tensor:
    """``labels`` as an int64 tensor ``[n]`` of class indices in ``[0, num_classes)``.

    Accepts integer or integral float arrays, ``[N]`` or ``[N, 1]``; ``counted`` names what
    must have ``n`` entries (for the error message).
    """
    labels = as_tensor(labels, name)
    if labels.is_floating_point():
        check_finite(labels, name)
        if not bool((labels == labels.round()).all()):
            raise ValueError(f"{name} must be integer class indices, got non-integer values")
    labels = labels.reshape(-1) if labels.dim() == 2 and labels.shape[1] == 1 else labels
    if labels.dim() != 1:
        raise ValueError(f"{name} must have shape [N], got shape {tuple(labels.shape)}")
    if labels.shape[0] != n:
        raise ValueError(f"{name} has {labels.shape[0]} entries but {counted} have {n}")
    labels = labels.long()
    if n and (int(labels.min()) < 0 or int(labels.max()) >= num_classes):
        raise ValueError(
            f"{name} must lie in [0, {num_classes}) for {num_classes} classes, got values in "
            f"[{int(labels.min())}, {int(labels.max())}]"
        )
    return labels


def check_choice(value, name: str, choices):
    """Return ``value`` if it is one of ``choices`` (strings or a ``str`` Enum class), else raise
    ``ValueError`` listing them; an Enum class gives back its member."""
    if isinstance(choices, type) and issubclass(choices, Enum):
        allowed = [member.value for member in choices]
        if isinstance(value, choices):
            return value
        if value in allowed:
            return choices(value)
    else:
        allowed = list(choices)
        if value in allowed:
            return value
    raise ValueError(f"{name} must be one of {allowed}, got {value!r}")


def check_device(device) -> torch.device:
    """``device`` (``"cpu"``, ``"cuda"``, ``"cuda:1"``, ``"mps"``, a ``torch.device``) as a
    ``torch.device`` that exists on this machine, else ``ValueError`` naming those that do."""
    if not isinstance(device, (str, torch.device)):
        raise TypeError(f"device must be a string such as 'cpu' or 'cuda', got {type(device).__name__}")
    asked = str(device)
    try:
        device = torch.device(device)
    except RuntimeError:
        device = None
    if device is None or device.type not in ("cpu", "cuda", "mps") or not _exists(device):
        why = ("torch sees no CUDA device" if device is not None and device.type == "cuda"
               and not torch.cuda.is_available() else "no such device on this machine")
        raise ValueError(f"device {asked!r} is not available ({why}); "
                         f"available: {', '.join(available_devices())}")
    return device


def available_devices() -> list[str]:
    """The torch devices this machine has: ``cpu``, then ``cuda:0``... and ``mps`` when present."""
    found = ["cpu"]
    if torch.cuda.is_available():
        found += [f"cuda:{i}" for i in range(torch.cuda.device_count())]
    mps = getattr(torch.backends, "mps", None)
    if mps is not None and mps.is_available():
        found.append("mps")
    return found


def _exists(device: torch.device) -> bool:
    if device.type == "cpu":
        return True
    if device.type == "cuda":
        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
        return count > 0 and (device.index is None or device.index < count)
    mps = getattr(torch.backends, "mps", None)
    return mps is not None and mps.is_available()
