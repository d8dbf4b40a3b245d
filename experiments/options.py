"""A study's options, declared once: ``bdl run STUDY --set KEY=VALUE``, ``bdl list``, the Python API.

A study declares its options as one frozen dataclass deriving from :class:`StudyOptions`, each
field made by :func:`option` with its help, its default for a full run and (optionally) the
quick preset. From that one declaration,

- ``--set KEY=VALUE`` is parsed by the field's type (``int``, ``float``, ``bool``, ``str``,
  ``X | None`` spelt ``none``, ``tuple[str, ...]`` as a comma-separated list), with its
  ``minimum`` and ``choices`` checked: :meth:`StudyOptions.parse`;
- an unknown key, or a bad value, is refused naming the valid ones, before any work;
- ``bdl list`` prints the names and help (:meth:`StudyOptions.describe`).

Kept free of heavy imports (no torch), like the catalogue that holds the declarations::

    @dataclass(frozen=True)
    class UCIOptions(StudyOptions):
        dataset: str = option("a UCI set, or all", "all", choices=("all", *UCI_DATASETS))
        splits: int | None = option("the first N standard splits (none: all)", None, quick=2)

Where a new study goes: its options here-style in :mod:`bayesdl.experiments.catalogue`, its code
in one module of :mod:`bayesdl.experiments.studies` that reads ``ctx.options.<name>``.
"""

from __future__ import annotations

import dataclasses
import typing
from collections.abc import Callable
from dataclasses import MISSING, dataclass

__all__ = ["StudyOptions", "option", "NoOptions"]


def option(help: str, default=None, *, quick=MISSING, minimum: float | None = 1,
           choices: tuple | None = None, parse: Callable[[str], object] | None = None,
           message: str | None = None):
    """A study option: a dataclass field with its ``help`` (for ``bdl list``), its ``default``
    for a full run, its ``quick`` preset (default: the same), the ``minimum`` a number must
    reach (None: any), the ``choices`` a string or each item of a list must be one of, and an
    optional ``parse(text)`` replacing the parsing by type. ``message`` (a format string of
    ``{name}``, ``{text}`` and ``{choices}``) replaces the default error for a value out of range
    or outside ``choices``."""
    metadata = {"help": help, "quick": default if quick is MISSING else quick, "minimum": minimum,
                "choices": choices, "parse": parse, "message": message}
    if isinstance(default, (list, dict, set)):
        raise TypeError("an option's default must be immutable (a tuple, not a list)")
    return dataclasses.field(default=default, metadata=metadata)


@dataclass(frozen=True)
class StudyOptions:
    """Base of the option declarations of the studies (see the module notes)."""

    @classmethod
    def names(cls) -> tuple[str, ...]:
        return tuple(f.name for f in dataclasses.fields(cls))

    @classmethod
    def describe(cls) -> list[tuple[str, str]]:
        """``(name, help)`` of every option, in declaration order (what ``bdl list`` prints),
        the help ending with the declared default and quick preset (when they are not ``None``)."""
        described = []
        for f in dataclasses.fields(cls):
            default, quick = f.default, f.metadata["quick"]
            shown = [] if default is None and quick is None else [f"default {_shown(default)}"]
            if quick != default:
                shown.append(f"quick {_shown(quick)}")
            described.append((f.name, f.metadata["help"] + (f" [{'; '.join(shown)}]" if shown else "")))
        return described

    @classmethod
    def preset(cls, quick: bool = False) -> StudyOptions:
        """The options of a full run, or of a quick run (``--quick``), none given."""
        return cls(**{f.name: f.metadata["quick"] if quick else f.default for f in dataclasses.fields(cls)})

    @classmethod
    def parse(cls, given: dict | None = None, quick: bool = False, study: str = "this study") -> StudyOptions:
        """The preset changed by ``given`` (``{name: text}``, as ``--set`` gives them; values of
        the option's own type are taken too). Raises ``ValueError`` for an unknown name or a bad
        value, naming what the study takes."""
        given = dict(given or {})
        unknown = sorted(set(given) - set(cls.names()))
        if unknown:
            raise ValueError(f"study {study!r} has no option {unknown}; "
                             f"its options: {list(cls.names()) or 'none'}")
        hints = typing.get_type_hints(cls)
        fields = {f.name: f for f in dataclasses.fields(cls)}
        changes = {name: _value(fields[name], hints[name], value) for name, value in given.items()}
        return dataclasses.replace(cls.preset(quick), **changes)


@dataclass(frozen=True)
class NoOptions(StudyOptions):
    """The options of a study that takes none."""


def _shown(value) -> str:
    """A value as ``--set`` takes it."""
    if value is None:
        return "none"
    if isinstance(value, tuple):
        return ",".join(map(str, value))
    return str(value).lower() if isinstance(value, bool) else str(value)


def _value(field: dataclasses.Field, hint, value):
    """The option ``field`` (annotated ``hint``) from ``value``: a ``--set`` text, or a value."""
    meta, name = field.metadata, field.name
    if not isinstance(value, str):
        return _checked(field, value, value)
    text = value
    if meta["parse"] is not None:
        try:
            return meta["parse"](text)
        except ValueError as error:
            raise ValueError(f"option {name}={text!r}: {error}") from None
    args = typing.get_args(hint)
    optional = type(None) in args
    if optional and text.strip().lower() == "none":
        return None
    kind = next((a for a in args if a is not type(None)), hint) if optional else hint
    if typing.get_origin(kind) is tuple:
        items = tuple(item.strip() for item in text.split(",") if item.strip())
        return _checked(field, items, text)
    try:
        if kind is bool:
            if text.strip().lower() not in ("true", "false", "1", "0"):
                raise ValueError
            parsed = text.strip().lower() in ("true", "1")
        else:
            parsed = kind(text)
    except ValueError:
        raise ValueError(f"option {name}={text!r} is not a valid {getattr(kind, '__name__', kind)}"
                         + (" (or none)" if optional else "")) from None
    return _checked(field, parsed, text)


def _checked(field: dataclasses.Field, value, text):
    """``value`` after the checks of its range and choices."""
    meta, name = field.metadata, field.name
    choices = meta["choices"]
    if choices is not None:
        items = value if isinstance(value, tuple) else (value,)
        if not items or any(item not in choices for item in items):
            template = meta["message"] or "option {name} must be one of {choices}, got {text!r}"
            raise ValueError(template.format(name=name, choices=list(choices), text=text))
    minimum = meta["minimum"]
    if (minimum is not None and isinstance(value, (int, float)) and not isinstance(value, bool)
            and value < minimum):
        raise ValueError((meta["message"] or "option {name} must be >= {minimum}, got {text!r}").format(
            name=name, minimum=f"{minimum:g}", text=text, choices=choices))
    return value
