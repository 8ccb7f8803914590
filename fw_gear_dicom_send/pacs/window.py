"""A daily window of local time for moves, to keep them out of working hours.

As pacsanini does: ``move --window 20:00-06:00`` waits until the window opens.
"""

import datetime
import logging
import re
import time
from collections.abc import Callable
from dataclasses import dataclass

from ..errors import UsageError

log = logging.getLogger(__name__)

__all__ = ["TimeWindow"]

_WINDOW = re.compile(r"^(\d{1,2}):(\d{2})-(\d{1,2}):(\d{2})$")
_DAY = 24 * 3600


@dataclass(frozen=True, slots=True)
class TimeWindow:
    """A daily window of local time, e.g. 20:00-06:00 (it may span midnight)."""

    start: datetime.time
    end: datetime.time

    @classmethod
    def parse(cls, text: str) -> "TimeWindow":
        """``HH:MM-HH:MM``.

        Raises:
            UsageError: Not of that form, or not a time of day.
        """
        match = _WINDOW.match(text.strip())
        try:
            if match is None:
                raise ValueError(text)
            h1, m1, h2, m2 = (int(g) for g in match.groups())
            window = cls(datetime.time(h1, m1), datetime.time(h2, m2))
        except ValueError:
            raise UsageError(f"--window takes HH:MM-HH:MM, got {text!r}") from None
        if window.start == window.end:
            raise UsageError("--window must not start and end at the same time")
        return window

    def wait(self, now: datetime.datetime) -> float:
        """Seconds from ``now`` until the window is open (0 inside it)."""
        seconds = now.hour * 3600 + now.minute * 60 + now.second
        start = self.start.hour * 3600 + self.start.minute * 60
        end = self.end.hour * 3600 + self.end.minute * 60
        inside = (
            start <= seconds < end if start < end else seconds >= start or seconds < end
        )
        return 0.0 if inside else float((start - seconds) % _DAY)

    def wait_until_open(self, sleep: Callable[[float], None] = time.sleep) -> None:
        """Block until the window is open."""
        wait = self.wait(datetime.datetime.now())
        if wait > 0:
            opens = datetime.datetime.now() + datetime.timedelta(seconds=wait)
            log.info(
                "outside the window %s-%s: waiting until %s",
                self.start.strftime("%H:%M"),
                self.end.strftime("%H:%M"),
                opens.strftime("%Y-%m-%d %H:%M"),
            )
            sleep(wait)
