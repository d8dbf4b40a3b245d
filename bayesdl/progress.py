"""Progress that stays readable in a terminal and in a log file.

On a terminal (``sys.stderr.isatty()``) progress is a tqdm bar redrawn in place. Anywhere
else -- output piped to a file, a CI log, ``nohup`` -- a redrawn bar writes one line per
redraw (hundreds of kilobytes for one training run), so progress is printed instead as a
few plain lines per loop: at most about ``lines`` of them, each with the count, the elapsed
time and the latest values, at least ``MIN_INTERVAL`` seconds apart, and a final line for
loops that took a second or more (loops quicker than that print nothing). Training loops
report per epoch through :meth:`Progress.epoch`.

Every loop of the library that shows progress (``fit``, ``Posterior.predict``, ``nuts``,
``to_inference_data``, the studies' own loops) goes through :func:`progress_bar` or
:func:`track`, so ``progress=False`` (``bdl run --no-progress``) silences all of them.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Iterable, Iterator

__all__ = ["Progress", "progress_bar", "track", "is_terminal", "MIN_INTERVAL"]

#: Seconds between two progress lines in a log (line mode).
MIN_INTERVAL = 2.0


def is_terminal() -> bool:
    """Whether stderr is an interactive terminal (where a redrawn bar is readable)."""
    stream = sys.stderr
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError):  # closed or replaced streams
        return False


def _format(values: dict) -> str:
    def cell(value):
        return f"{value:.4g}" if isinstance(value, float) else str(value)

    return ", ".join(f"{k} {cell(v)}" for k, v in values.items())


class Progress:
    """A progress report over ``total`` units: a tqdm bar on a terminal, a few lines elsewhere.

    ``update(n)`` counts units, ``set_postfix(**values)`` sets the values shown (on the bar;
    in line mode, in the next line), ``epoch(i, epochs, **values)`` ends an epoch of a
    training loop (a line in line mode, at most about ``lines`` per run), ``close()`` ends
    the loop (in line mode, a last line with the total time). Usable as a context manager.
    """

    def __init__(self, total: int | None = None, desc: str = "", unit: str = "it", enabled: bool = True,
                 lines: int = 10, terminal: bool | None = None):
        self.total, self.desc, self.unit = total, desc, unit
        self.enabled = bool(enabled)
        self.lines = max(int(lines), 1)
        self.count = 0
        self.values: dict = {}
        self._start = self._last = time.perf_counter()
        self._printed = 0  # milestones passed (line mode)
        self._lines_written = 0
        self._bar = None
        self._closed = False
        terminal = is_terminal() if terminal is None else terminal
        if self.enabled and terminal:
            from tqdm.auto import tqdm

            self._bar = tqdm(total=total, desc=desc, unit=unit, leave=False)

    @property
    def line_mode(self) -> bool:
        return self.enabled and self._bar is None

    def _line(self, text: str, final: bool = False) -> None:
        now = time.perf_counter()
        if final:
            if not self._lines_written and now - self._start < 1.0:
                return
        elif now - self._last < MIN_INTERVAL:
            return
        self._last = now
        self._lines_written += 1
        print(f"{self.desc}: {text} ({now - self._start:.1f} s)", file=sys.stderr, flush=True)

    def update(self, n: int = 1) -> None:
        self.count += n
        if self._bar is not None:
            self._bar.update(n)
        elif self.line_mode and self.total:
            # A line each time another 1/lines of the total is done.
            milestone = self.count * self.lines // self.total
            if milestone > self._printed and self.count < self.total:
                self._printed = milestone
                extra = f"; {_format(self.values)}" if self.values else ""
                self._line(f"{self.count}/{self.total} {self.unit}{extra}")

    def set_postfix(self, **values) -> None:
        self.values = values
        if self._bar is not None:
            self._bar.set_postfix({k: (f"{v:.4f}" if isinstance(v, float) else v) for k, v in values.items()})

    def epoch(self, index: int, epochs: int, **values) -> None:
        """Epoch ``index`` (0-based) of ``epochs`` ended with ``values`` (e.g. the ELBO)."""
        self.set_postfix(epoch=index + 1, **values)
        if not self.line_mode:
            return
        every = max(1, -(-epochs // self.lines))  # ceil: about `lines` lines per run
        self._printed = self.lines  # epoch lines replace the count milestones
        text = f"epoch {index + 1}/{epochs}; {_format(values)}"
        if index + 1 == epochs:
            self._line(text, final=True)
        elif (index + 1) % every == 0:
            self._line(text)

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        if self._bar is not None:
            self._bar.close()
        elif self.line_mode and self._printed < self.lines:
            extra = f"; {_format(self.values)}" if self.values else ""
            self._line(f"done, {self.count} {self.unit}{extra}", final=True)

    def __enter__(self) -> Progress:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def progress_bar(total: int | None = None, desc: str = "", unit: str = "it", enabled: bool = True,
                 lines: int = 10) -> Progress:
    """A :class:`Progress` over ``total`` units (see the module docstring)."""
    return Progress(total, desc, unit, enabled, lines)


def track(iterable: Iterable, desc: str = "", total: int | None = None, unit: str = "it",
          enabled: bool = True, lines: int = 10) -> Iterator:
    """Iterate over ``iterable`` with progress (a bar on a terminal, a few lines elsewhere)."""
    if total is None:
        try:
            total = len(iterable)  # type: ignore[arg-type]
        except TypeError:
            total = None
    with Progress(total, desc, unit, enabled, lines) as bar:
        for item in iterable:
            yield item
            bar.update()
