"""Progress on stderr: of a send, and of a retrieve's sub-operations.

On a terminal each shows one bar (:class:`~fw_gear_dicom_send.progress.Meter`);
otherwise a send logs a line every few seconds and a retrieve prints the PACS's
counts every second.
"""

import logging
import math
import sys
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, TextIO

from ..progress import LOG_INTERVAL, Meter, Reading
from ..sending.request import Progress

if TYPE_CHECKING:
    from ..pacs.retrieve import SubOperations

log = logging.getLogger(__name__)


class ProgressPrinter:
    """A send's progress: a bar on a terminal; a log line every few seconds otherwise.

    Args:
        stream: Where the bar goes (if it is a terminal).
        interval: Seconds between two log lines without a bar (the first comes
            after one interval; the final count is left to the summary).
    """

    def __init__(
        self, stream: TextIO = sys.stderr, interval: float = LOG_INTERVAL
    ) -> None:
        self._meter = Meter(stream=stream, interval=interval, logger=log)

    def __call__(self, progress: Progress) -> None:
        """Show how far the send has come."""
        self._meter(
            Reading(
                progress.done,
                progress.total,
                progress.bytes_done,
                progress.bytes_total,
                progress.seconds,
            )
        )


class RetrieveProgress:
    """A retrieve's progress from the PACS's pending responses.

    On a terminal a bar of the sub-operations done (completed, failed or
    warning) out of those done and remaining, with the MB filed so far when
    ``filed_bytes`` counts them; otherwise the counts, the first at once, then
    at most every ``interval`` seconds.

    Args:
        filed_bytes: The bytes filed so far (None for a move to another AE).
        stream: Where the bar or the counts go.
        interval: Seconds between two printed counts without a bar.
    """

    def __init__(
        self,
        filed_bytes: Callable[[], int] | None = None,
        stream: TextIO | None = None,
        interval: float = 1.0,
    ) -> None:
        self._stream = sys.stderr if stream is None else stream
        self._filed_bytes = filed_bytes
        self._start = filed_bytes() if filed_bytes is not None else 0
        self._meter = Meter(stream=self._stream, logger=log)
        self._interval = interval
        self._last = -math.inf

    def __call__(self, counts: "SubOperations") -> None:
        """Show the counts: on the bar, or printed at most every interval."""
        if self._meter.on_terminal:
            done = counts.completed + counts.failed + counts.warning
            total = None if counts.remaining is None else done + counts.remaining
            self._meter(Reading(done, total, self._size()))
            return
        now = time.monotonic()
        if now - self._last >= self._interval:
            self._last = now
            print(f"progress: {counts}", file=self._stream, flush=True)

    def finish(self, counts: "SubOperations") -> None:
        """Show the final counts on the bar, and end it (nothing without a bar)."""
        if self._meter.on_terminal:
            done = counts.completed + counts.failed + counts.warning
            self._meter(Reading(done, done, self._size()))
        self._meter.close()

    def close(self) -> None:
        """End the bar, if one is shown, where it stands."""
        self._meter.close()

    def _size(self) -> int | None:
        if self._filed_bytes is None:
            return None
        return self._filed_bytes() - self._start
