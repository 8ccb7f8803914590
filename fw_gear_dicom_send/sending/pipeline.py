"""The pipeline of a send: inputs listed, extracted and probed while it sends.

A producer thread takes the inputs in order (each fetched first when a
:class:`Fetcher` brings them, as the gear's downloads do), lists and extracts them
(:class:`.inputs.Lister`), probes every file (:class:`.plan.Planner`) and appends
its row; each instance to send goes into the feed, which the transport iterates
as items arrive (``__next__`` waits for the next). The feed holds at most
:data:`WINDOW` bytes (and a sixteenth of the room) not yet taken by the
transport, so that archive members are extracted just before they are sent.

Every file the send writes (a member extracted, a download) takes its bytes from
the work folder's :class:`.room.Room` and is deleted, its bytes given back, as soon
as it is done with: an instance's file once its outcome is final
(:meth:`Pipeline.release`, from the tally), a downloaded archive once its members
are extracted, any other file once probed.
"""

import logging
import queue
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from .. import stopping
from ..transport.outcome import SendItem
from .inputs import InputFile, Lister
from .plan import Planner
from .report import Row
from .request import SendRequest
from .room import Lot, Room, Shut

log = logging.getLogger(__name__)

__all__ = ["LEAD", "STALL", "WINDOW", "Fetched", "Fetcher", "Pipeline"]

WINDOW = 8 << 20
"""Bytes of instances in the feed, not yet taken by the transport, at most."""
LEAD = 0.25
"""Seconds :meth:`Pipeline.peek` lists before the send starts, at most: a small
send is listed whole first, and planned as a list."""
STALL = 0.1
"""Seconds without a new item after which :meth:`Pipeline.peek` stops short."""
_WAIT = 0.1


@dataclass(frozen=True, slots=True)
class Fetched:
    """An input brought to the local disk, or not."""

    path: Path | None
    """Where it lies; None if it could not be brought (the fetcher says why)."""
    lot: Lot | None = None
    """What it takes from the work folder's room (its bytes, its members')."""
    owned: bool = False
    """Whether the send deletes it once done with it."""


class Fetcher(Protocol):
    """Brings the inputs of a send to the local disk, several at once."""

    def start(self, room: Room) -> None:
        """Start bringing them, each input's lot made from ``room`` in order."""

    def fetch(self, index: int) -> Fetched:
        """The input ``index`` once it is there (waits for it)."""

    def stop(self) -> None:
        """Bring nothing more; return once nothing is being brought."""


@dataclass(frozen=True, slots=True)
class _Hold:
    path: Path
    lot: Lot


class Pipeline:
    """Lists, probes and feeds a request's inputs; deletes what is done with.

    Args:
        request: The send.
        paths: Its inputs, in order (where each will lie, with a fetcher).
        work: The work folder for extracted members.
        room: The work folder's room.
        fetcher: Brings the inputs first, if given.
    """

    def __init__(
        self,
        request: SendRequest,
        paths: Sequence[Path],
        work: Path,
        room: Room,
        fetcher: Fetcher | None = None,
    ) -> None:
        self.rows: list[Row] = []
        """Every row so far, in input order."""
        self.items: list[SendItem] = []
        """Every instance to send so far."""
        self._request = request
        self._paths = paths
        self._work = work
        self._room = room
        self._fetcher = fetcher
        self._planner = Planner(request)
        self._lister = Lister(work, request.limits)
        self._ready = threading.Condition()
        self._feed: deque[SendItem] = deque()
        self._queued = 0
        capacity = room.capacity
        self._window = WINDOW if capacity is None else min(WINDOW, capacity // 16)
        self._listed = False
        self._closed = False
        self._holds: dict[int, _Hold] = {}
        self._held_paths: set[Path] = set()
        self._failure: BaseException | None = None
        self._feeding = True
        self.on_item: Callable[[SendItem], None] | None = None
        """Called with each item fed, in the producer's thread (progress totals)."""
        self._done_with: queue.SimpleQueue[int | None] = queue.SimpleQueue()
        self._producer = threading.Thread(
            target=self._produce, name="dicom-send-inputs", daemon=True
        )
        self._reaper = threading.Thread(
            target=self._reap, name="dicom-send-reaper", daemon=True
        )

    # -- running ---------------------------------------------------------------------
    def start(self) -> None:
        """List and probe in a thread of its own, feeding as it goes."""
        self._reaper.start()
        if self._fetcher is not None:
            self._fetcher.start(self._room)
        self._producer.start()

    def run(self) -> None:
        """List and probe everything here, then return (nothing is fed)."""
        self._reaper.start()
        if self._fetcher is not None:
            self._fetcher.start(self._room)
        self._feeding = False  # the caller sends self.items once all are listed
        self._produce()
        self._raise_failure()

    def finish(self, *, interrupted: bool) -> None:
        """Feed nothing more: list what is left (unless interrupted), clean up.

        What is listed from now on is not sent, and its files are deleted at once.
        """
        with self._ready:
            self._closed = True
            self._ready.notify_all()
        if interrupted:
            self._room.shut()
        else:
            self._room.unbind()
        try:
            if self._producer.is_alive():
                self._producer.join()
        finally:
            if self._fetcher is not None:
                self._fetcher.stop()
            self._done_with.put(None)
            if self._reaper.is_alive():
                self._reaper.join()
        self._raise_failure()

    def _raise_failure(self) -> None:
        if self._failure is not None:
            raise self._failure

    # -- the feed --------------------------------------------------------------------
    def __iter__(self) -> "Pipeline":
        """The feed: the items to send, as they come."""
        return self

    def __next__(self) -> SendItem:
        """The next item to send; waits for it. Ends once all are listed."""
        with self._ready:
            while not self._feed:
                if self._listed or self._closed or stopping.requested():
                    raise StopIteration
                self._ready.wait(_WAIT)
            item = self._feed.popleft()
            self._queued -= item.size
            self._ready.notify_all()
            return item

    def peek(self, enough: int | None = None) -> tuple[list[SendItem], bool]:
        """Take the items that come within :data:`LEAD` seconds off the feed.

        Args:
            enough: Stop once this many items are taken (None: no such limit).

        Returns:
            The items, and whether they are all there is (the listing ended). It
            stops sooner, with what it has, once it holds ``enough`` items, when
            the next item is slow to come (:data:`STALL`: a download, say) or the
            work folder's room makes a lot wait (more would come only as these
            are sent).
        """
        head: list[SendItem] = []
        started = last = time.monotonic()
        with self._ready:
            while True:
                if self._feed:
                    item = self._feed.popleft()
                    self._queued -= item.size
                    head.append(item)
                    last = time.monotonic()
                    self._ready.notify_all()
                    if enough is not None and len(head) >= enough:
                        return head, self._listed and not self._feed
                    continue
                if self._listed or self._closed or stopping.requested():
                    return head, self._listed
                now = time.monotonic()
                late = now - started > LEAD or now - last > STALL
                if head and (late or self._room.waiting):
                    return head, False
                self._ready.wait(_WAIT / 10)

    def release(self, item: SendItem) -> None:
        """The item's outcome is final: its file goes (from the tally's events)."""
        self._done_with.put(item.index)

    # -- the producer ----------------------------------------------------------------
    def _produce(self) -> None:
        try:
            for source, named in enumerate(self._paths):
                if stopping.requested():
                    break
                labels = self._request.labels
                label = labels[source] if source < len(labels) else str(named)
                path = named
                if self._fetcher is not None:
                    fetched = self._fetcher.fetch(source)
                    if fetched.path is None:
                        continue
                    path = fetched.path
                else:
                    fetched = Fetched(named, self._room.lot())
                try:
                    self._expand(source, label, path, fetched)
                finally:
                    if fetched.lot is not None:
                        if fetched.owned and path not in self._held_paths:
                            self._delete(path, fetched.lot)
                        fetched.lot.done()
        except Shut:
            pass  # interrupted: the rows listed so far are the run's
        except BaseException as exc:
            self._failure = exc
        finally:
            with self._ready:
                self._listed = True
                self._ready.notify_all()

    def _expand(self, source: int, label: str, path: Path, fetched: Fetched) -> None:
        lot = fetched.lot
        for entry in self._lister.expand(source, label, path, lot):
            if stopping.requested():
                break
            item = self._planner.add(entry, self.rows)
            if not isinstance(entry, InputFile) or lot is None:
                continue
            ours = entry.path == path and fetched.owned
            ours = ours or entry.path.is_relative_to(self._work)
            if item is None:
                if ours and entry.path != path:
                    self._delete(entry.path, lot)
                continue
            if ours:
                with self._ready:
                    self._holds[item.index] = _Hold(entry.path, lot)
                    self._held_paths.add(entry.path)
                self._room.hold()
            self._feed_item(item)

    def _feed_item(self, item: SendItem) -> None:
        with self._ready:
            self.items.append(item)
            if self._closed:
                hold = self._holds.pop(item.index, None)
                if hold is not None:
                    self._delete(hold.path, hold.lot)
                    self._room.unhold()
                return
            if not self._feeding:
                return
        if self.on_item is not None:
            self.on_item(item)
        with self._ready:
            while (
                self._queued >= self._window
                and not self._closed
                and not stopping.requested()
            ):
                self._ready.wait(_WAIT)
            self._feed.append(item)
            self._queued += item.size
            self._ready.notify_all()

    # -- deleting --------------------------------------------------------------------
    def _reap(self) -> None:
        while (index := self._done_with.get()) is not None:
            with self._ready:
                hold = self._holds.pop(index, None)
            if hold is not None:
                self._delete(hold.path, hold.lot)
                self._room.unhold()

    def _delete(self, path: Path, lot: Lot) -> None:
        self._planner.forget(path)
        try:
            size = path.stat().st_size
            path.unlink()
        except OSError as exc:
            log.debug("cannot delete %s: %s", path, exc)
            return
        lot.give(size)
