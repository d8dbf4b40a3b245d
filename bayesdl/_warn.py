"""Warnings that point at the user's line.

A warning raised deep inside bayesdl -- often below a ``torch.no_grad`` decorator, a Pyro
handler or a ``contextlib`` wrapper -- would name a line of the library (or of torch) with a
fixed ``stacklevel``. :func:`warn` names the first frame outside bayesdl, torch, Pyro and the
standard wrappers instead: the user's call, whatever path led to the warning.
"""

from __future__ import annotations

import sys
import warnings

__all__ = ["warn", "user_stacklevel"]

#: top-level modules whose frames are never "the user's line"
LIBRARY_MODULES = frozenset({"bayesdl", "torch", "pyro", "contextlib", "functools"})


def user_stacklevel() -> int:
    """The ``stacklevel`` that makes a ``warnings.warn`` called by the caller of this function name
    the first frame outside :data:`LIBRARY_MODULES`."""
    frame, level = sys._getframe(1), 1
    while frame is not None and frame.f_globals.get("__name__", "").partition(".")[0] in LIBRARY_MODULES:
        frame, level = frame.f_back, level + 1
    return level


def warn(message: str, category: type[Warning] = UserWarning) -> None:
    """``warnings.warn(message, category)`` at the user's line (see :func:`user_stacklevel`)."""
    warnings.warn(message, category, stacklevel=user_stacklevel())
