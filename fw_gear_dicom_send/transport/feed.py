"""The items of a send as they arrive: a feed that a sending loop takes them from.

A transport's input is any iterable of send items; its ``__next__`` may block (the
next file is still downloading). A sending loop takes them from a :class:`Feed`
with a wait of its choosing: an item, :data:`Gap.IDLE` if none came within the
wait (the loop then lets its association go), or :data:`Gap.END` once the input is
exhausted (or a stop was asked for). :class:`ListFeed` serves a list known up
front; :class:`ThreadFeed` reads any other iterable in a thread of its own, so
that the loop can wait for it with a timeout and still see a stop.
"""

import contextlib
import enum
import os
import pickle
import queue
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from typing import Any, Protocol

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


class PipeFeed:
    """A worker's items, as the main process gives them down a pipe.

    Messages: ``("give", items)`` adds items; ``("finish",)`` ends the feed once
    the items given are taken; ``("retire",)`` ends it at once (the items not
    taken go back to the main process's queue, which knows them).

    Args:
        conn: The worker's end of the pipe.
        stop: Whether to stop waiting (a stop asked for).
    """

    def __init__(self, conn: Any, stop: Callable[[], bool]) -> None:
        self._conn = conn
        self._stop = stop
        self._items: deque[SendItem] = deque()
        self._finished = False
        self._retired = False

    def _read(self, wait: float) -> None:
        """Read what came down within ``wait`` seconds."""
        try:
            while not self._finished and self._conn.poll(wait):
                wait = 0.0
                kind, *rest = pickle.loads(self._conn.recv_bytes())  # noqa: S301 - ours
                if kind == "give":
                    self._items.extend(rest[0])
                elif kind == "retire":
                    self._retired = self._finished = True
                    self._items.clear()
                else:
                    self._finished = True
        except (EOFError, OSError):  # the main process (or the sender) is gone
            self._finished = True

    def given_up(self) -> bool:
        """Whether the worker was told to retire, or to finish with nothing left."""
        self._read(0.0)
        return self._retired or (self._finished and not self._items)

    def take(self, wait: float | None) -> SendItem | Gap:
        """The next item given; IDLE after ``wait`` seconds; or END."""
        deadline = None if wait is None else time.monotonic() + wait
        while True:
            if self._items and not self._retired:
                return self._items.popleft()
            if self._finished or self._stop():
                return Gap.END
            left = POLL if deadline is None else deadline - time.monotonic()
            if left <= 0:
                self._read(0.0)  # what came already, even without a wait
                if self._items or self._finished:
                    continue
                return Gap.IDLE
            self._read(min(left, POLL))


class Arrivals:
    """Items of any iterable read by a daemon thread; waitable by file descriptor.

    The main process of a send over workers waits on :meth:`fileno` and its
    workers' messages at once (``multiprocessing.connection.wait``), then takes
    what arrived (:meth:`take`).

    Args:
        items: The input; its ``__next__`` may block.
    """

    def __init__(self, items: Iterable[SendItem]) -> None:
        self._items: deque[SendItem | Gap | _Failed] = deque()
        self._read_fd, self._write_fd = os.pipe()
        os.set_blocking(self._read_fd, False)
        self.ended = False
        threading.Thread(
            target=self._read, args=(iter(items),), name="send-arrivals", daemon=True
        ).start()

    def _read(self, items: Iterator[SendItem]) -> None:
        last: Gap | _Failed = Gap.END
        try:
            for item in items:
                self._items.append(item)
                os.write(self._write_fd, b".")
        except BaseException as exc:  # handed to the taker
            last = _Failed(exc)
        self._items.append(last)
        with contextlib.suppress(OSError):  # the taker is gone
            os.write(self._write_fd, b".")
        os.close(self._write_fd)

    def fileno(self) -> int:
        """Readable when items arrived."""
        return self._read_fd

    def take(self) -> list[SendItem]:
        """The items that arrived; :attr:`ended` is set once the input is done.

        Raises:
            Exception: What the input raised.
        """
        with contextlib.suppress(BlockingIOError):
            os.read(self._read_fd, 1 << 16)
        taken: list[SendItem] = []
        while self._items:
            got = self._items.popleft()
            if isinstance(got, _Failed):
                self.ended = True
                raise got.error
            if isinstance(got, Gap):
                self.ended = True
            else:
                taken.append(got)
        return taken

    def close(self) -> None:
        """Stop listening (the thread ends at its next item, if one comes)."""
        with contextlib.suppress(OSError):
            os.close(self._read_fd)
