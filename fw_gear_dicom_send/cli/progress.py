"""Progress on stderr: of a send, and of a retrieve's sub-operations."""

import logging
import math
import sys
import time
from typing import TYPE_CHECKING, TextIO

from ..sending.request import Progress

if TYPE_CHECKING:
    from ..pacs.retrieve import SubOperations

log = logging.getLogger(__name__)


class ProgressPrinter:
    """A progress line on a terminal; a log line every few seconds otherwise."""

    def __init__(self, stream: TextIO = sys.stderr, interval: float = 5.0) -> None:
        self._stream = stream
        self._tty = stream.isatty()
        self._interval = 0.1 if self._tty else interval
        # A terminal shows the first instance at once; a log waits one interval.
        self._last = -math.inf if self._tty else time.monotonic()
        self._shown = False

    def __call__(self, progress: Progress) -> None:
        """Show progress, at most every interval (always the final count)."""
        now = time.monotonic()
        final = progress.done == progress.total
        if not final and now - self._last < self._interval:
            return
        self._last = now
        rate = progress.done / progress.seconds if progress.seconds > 0 else 0.0
        text = (
            f"{progress.done}/{progress.total} instances, "
            f"{progress.bytes_done / 1e6:.1f}/{progress.bytes_total / 1e6:.1f} MB, "
            f"{rate:.0f} images/s"
        )
        if self._tty:
            width = 24
            filled = width * progress.done // max(progress.total, 1)
            bar = "#" * filled + "." * (width - filled)
            self._stream.write(f"\r[{bar}] {text}")
            if final:
                self._stream.write("\n")
            self._stream.flush()
        elif not final:
            log.info("progress: %s", text)


class RetrieveProgress:
    """Shows a retrieve's sub-operation counts: the first, then every second."""

    def __init__(self, interval: float = 1.0) -> None:
        self._interval = interval
        self._last = -math.inf

    def __call__(self, counts: "SubOperations") -> None:
        """Show the counts, at most every interval."""
        now = time.monotonic()
        if now - self._last >= self._interval:
            self._last = now
            print(f"progress: {counts}", file=sys.stderr, flush=True)
