"""Progress of a run with a count to reach: a bar on a terminal, log lines otherwise.

On a terminal one bar (rich) shows instances, MB, the rate and the time left; the
library is imported only when a bar is shown, so a run that shows none (``-h``, a
log, CI) does not pay for it. Elsewhere (the gear's log, CI) a log line says the
same every few seconds. The command line's send and retrieve, and any download
with a count and a size, report through :class:`Meter`.
"""

import atexit
import logging
import os
import sys
import time
from dataclasses import dataclass
from typing import TextIO

__all__ = ["LOG_INTERVAL", "Meter", "Reading"]

log = logging.getLogger(__name__)

LOG_INTERVAL = 5.0
"""Seconds between two log lines when no bar is shown."""
_MB = 1e6
_FALLBACK_SIZE = (100, 24)
"""Columns and lines of a terminal that does not tell its size."""


@dataclass(frozen=True, slots=True)
class Reading:
    """How far a run has come."""

    done: int
    total: int | None
    """None while unknown."""
    bytes_done: int | None = None
    """None when not counted (a move to another AE)."""
    bytes_total: int | None = None
    """None when unknown (the bytes still to come are not known)."""
    seconds: float = 0.0
    """Since the run started; 0 when the meter is to measure it itself."""

    @property
    def final(self) -> bool:
        """The count is reached."""
        return self.total is not None and self.done >= self.total

    def megabytes(self) -> str:
        """``12.3/45.6 MB``, ``12.3 MB`` without a total, empty if not counted."""
        if self.bytes_done is None:
            return ""
        if self.bytes_total is None:
            return f"{self.bytes_done / _MB:.1f} MB"
        return f"{self.bytes_done / _MB:.1f}/{self.bytes_total / _MB:.1f} MB"


class Meter:
    """Shows readings: a rich bar on a terminal, a log line every few seconds else.

    Args:
        unit: What is counted (``instances``).
        rate_unit: What the rate is in (``images/s``).
        stream: Where the bar goes; a bar is shown only if it is a terminal.
        interval: Seconds between two log lines without a bar.
        logger: Where the log lines go.
    """

    def __init__(
        self,
        unit: str = "instances",
        stream: TextIO | None = None,
        *,
        rate_unit: str = "images/s",
        interval: float = LOG_INTERVAL,
        logger: logging.Logger = log,
    ) -> None:
        self._unit = unit
        self._rate_unit = rate_unit
        self._stream = sys.stderr if stream is None else stream
        self._tty = _is_terminal(self._stream)
        self._interval = interval
        self._log = logger
        self._started = time.monotonic()
        self._last = self._started
        self._bar: _Bar | None = None

    @property
    def on_terminal(self) -> bool:
        """A bar is shown (the stream is a terminal)."""
        return self._tty

    def __call__(self, reading: Reading) -> None:
        """Show a reading: the bar is redrawn, a log line written every interval."""
        if self._tty:
            self._draw(reading)
            return
        now = time.monotonic()
        if reading.final or now - self._last < self._interval:
            return
        self._last = now
        self._log.info("progress: %s", self.line(reading, now - self._started))

    def close(self) -> None:
        """End the bar (its last state stays on the terminal)."""
        if self._bar is not None:
            self._bar.close()
            self._bar = None

    def __enter__(self) -> "Meter":
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    def line(self, reading: Reading, seconds: float) -> str:
        """``40/100 instances, 1.2/3.0 MB, 12 images/s`` (the log line's text)."""
        elapsed = reading.seconds or seconds
        rate = reading.done / elapsed if elapsed > 0 else 0.0
        total = "" if reading.total is None else f"/{reading.total}"
        size = reading.megabytes()
        return ", ".join(
            part
            for part in (
                f"{reading.done}{total} {self._unit}",
                size,
                f"{rate:.0f} {self._rate_unit}",
            )
            if part
        )

    def _draw(self, reading: Reading) -> None:
        now = time.monotonic()
        elapsed = reading.seconds or now - self._started
        left = _left(reading, elapsed)
        text = f"{self.line(reading, elapsed)}, {left} left"
        if self._bar is None:
            self._bar = _Bar(self._stream)
        self._bar.show(reading.done, reading.total, text)
        if reading.final:
            self.close()


class _Bar:
    """One rich progress bar on a terminal, with our text beside it."""

    def __init__(self, stream: TextIO) -> None:
        from rich.console import Console  # noqa: PLC0415 - only when a bar is shown
        from rich.progress import BarColumn, Progress, TextColumn  # noqa: PLC0415

        columns, lines = _size(stream)
        console = Console(
            file=stream,
            width=columns or _FALLBACK_SIZE[0],
            height=lines or _FALLBACK_SIZE[1],
        )
        self._progress = Progress(
            BarColumn(),
            TextColumn("{task.description}"),
            console=console,
            refresh_per_second=10,
        )
        self._task = self._progress.add_task("", total=None)
        self._progress.start()
        # A run that ends before its count (an error, Ctrl-C) still ends the bar
        # and shows the cursor again.
        atexit.register(self.close)

    def show(self, done: int, total: int | None, text: str) -> None:
        """Redraw with these numbers."""
        self._progress.update(self._task, completed=done, total=total, description=text)

    def close(self) -> None:
        """Draw the last state and leave it on the terminal (once)."""
        atexit.unregister(self.close)
        self._progress.stop()


def _left(reading: Reading, elapsed: float) -> str:
    """``0:01:05``: the time left at the rate so far; ``?`` when it cannot be told."""
    if reading.total is None or reading.done <= 0 or elapsed <= 0:
        return "?"
    seconds = round(max(reading.total - reading.done, 0) * elapsed / reading.done)
    minutes, second = divmod(seconds, 60)
    hours, minute = divmod(minutes, 60)
    return f"{hours}:{minute:02d}:{second:02d}"


def _size(stream: TextIO) -> tuple[int, int]:
    """The terminal's columns and lines; 0 for what it does not say."""
    try:
        size = os.get_terminal_size(stream.fileno())
    except (AttributeError, ValueError, OSError):
        return 0, 0
    return size.columns, size.lines


def _is_terminal(stream: TextIO) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):
        return False
