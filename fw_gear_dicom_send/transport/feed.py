"""The items of a send as they arrive: a feed that a sending loop takes them from.

A transport's input is any iterable of send items; its ``__next__`` may block (the
next file is still downloading). A sending loop takes them from a :class:`Feed`
with a wait of its choosing: an item, :data:`Gap.IDLE` if none came within the
wait (the loop then lets its association go), or :data:`Gap.END` once the input is
exhausted (or a stop was asked for). :class:`ListFeed` serves a list known up
front; :class:`ThreadFeed` reads any other iterable in a thread of its own, so
that the loop can wait for it with a timeout and still see a stop.
"""

import enum
import queue
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from typing import Protocol

from .outcome import SendItem

POLL = 0.05
"""Seconds between two looks at the stop predicate while waiting for an item."""


class Gap(enum.Enum):
    """No item taken: why."""

    IDLE = "idle"
    """None came within the wait; more may come."""
    END = "end"
    """None will come (input exhausted, or a stop asked for)."""


class Feed(Protocol):
    """Where a sending loop takes its items from."""

    def take(self, wait: float | None) -> SendItem | Gap:
        """The next item, as it arrives.

        Returns:
            The item; :data:`Gap.IDLE` after ``wait`` seconds (None: no limit)
            without one; or :data:`Gap.END`.
        """
        ...


class ListFeed:
    """The items of a list, all known up front (never idle).

    Args:
        items: The items, in order.
    """

    def __init__(self, items: Iterable[SendItem]) -> None:
        self._items = deque(items)

    def take(self, wait: float | None) -> SendItem | Gap:
        """The next item, or END."""
        return self._items.popleft() if self._items else Gap.END


class _Failed:
    """The input raised: re-raised in the taker's thread."""

    def __init__(self, error: BaseException) -> None:
        self.error = error


class ThreadFeed:
    """Items of any iterable, read ahead by a daemon thread as they arrive.

    The taker waits in slices of :data:`POLL` seconds, ending with END once
    ``stop()`` is true. An exception raised by the input is raised again by
    :meth:`take`. The thread is left blocked in the input if the taker gives up
    (the input's owner ends it).

    Args:
        items: The input; its ``__next__`` may block.
        stop: Whether to stop waiting (a stop asked for).
    """

    def __init__(
        self, items: Iterable[SendItem], stop: Callable[[], bool] = lambda: False
    ) -> None:
        self._queue: queue.SimpleQueue[SendItem | Gap | _Failed] = queue.SimpleQueue()
        self._stop = stop
        self._ended = False
        self._thread = threading.Thread(
            target=self._read, args=(iter(items),), name="send-feed", daemon=True
        )
        self._thread.start()

    def _read(self, items: Iterator[SendItem]) -> None:
        try:
            for item in items:
                self._queue.put(item)
        except BaseException as exc:  # handed to the taker
            self._queue.put(_Failed(exc))
            return
        self._queue.put(Gap.END)

    def take(self, wait: float | None) -> SendItem | Gap:
        """The next item as it arrives; IDLE after ``wait`` seconds; or END.

        Raises:
            Exception: What the input raised.
        """
        if self._ended:
            return Gap.END
        deadline = None if wait is None else time.monotonic() + wait
        while not self._stop():
            left = POLL if deadline is None else deadline - time.monotonic()
            try:
                got = self._queue.get(timeout=max(min(left, POLL), 0.0))
            except queue.Empty:
                if deadline is not None and time.monotonic() >= deadline:
                    return Gap.IDLE
                continue
            if isinstance(got, _Failed):
                self._ended = True
                raise got.error
            if got is Gap.END:
                self._ended = True
            return got
        return Gap.END
