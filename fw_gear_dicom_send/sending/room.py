"""The work folder's room: the bytes a send holds on disk at once, bounded.

Every byte a send writes to its work folder (a download, an archive member
extracted) is taken from one :class:`Room` before it is written, and given back
when the file is deleted. Bytes are taken by *lots*, one per input, in input
order; a lot is *done* once its input is listed. The first lot not done (the
front: the input being downloaded or listed now) takes while there is room; when
there is none it waits for the files of the instances being sent
(:meth:`Room.hold`), whose outcomes will make room, and goes on all the same if
none is being sent, so that the send never waits on itself. The lots after it
(downloads ahead) leave room for what the front has yet to download (its
``expected`` bytes) and a third of the room for the members it extracts ahead of
the send, so that the transport always has work.
"""

import threading
from collections import OrderedDict

__all__ = ["DEFAULT_CAPACITY", "Lot", "Room", "Shut"]

DEFAULT_CAPACITY = 128 << 20
"""Bytes the work folder holds in flight by default."""
_WAIT = 0.1


class Shut(Exception):
    """The room is shut: the send has ended, nothing more is to be written."""


class Room:
    """Bytes in flight in the work folder, bounded by ``capacity`` (None: not)."""

    def __init__(self, capacity: int | None = DEFAULT_CAPACITY) -> None:
        self._capacity = capacity
        self._ready = threading.Condition()
        self._open: OrderedDict[int, Lot] = OrderedDict()
        self._next = 0
        self._used = 0
        self._peak = 0
        self._shut = False
        self._waiting = 0
        self._sending = 0

    @property
    def waiting(self) -> bool:
        """Whether a lot is waiting for room now."""
        return self._waiting > 0

    @property
    def capacity(self) -> int | None:
        """The bound, if any."""
        return self._capacity

    @property
    def used(self) -> int:
        """Bytes held now."""
        return self._used

    @property
    def peak(self) -> int:
        """The most bytes held at once."""
        return self._peak

    def lot(self, expected: int = 0) -> "Lot":
        """A new lot, after every lot made before it.

        Args:
            expected: Bytes it will write first (a download's size), reserved
                for it once it is the head.
        """
        with self._ready:
            lot = Lot(self, self._next, expected)
            self._open[self._next] = lot
            self._next += 1
            return lot

    def hold(self) -> None:
        """Count one more file whose instance is being sent (it will go)."""
        with self._ready:
            self._sending += 1

    def unhold(self) -> None:
        """A file counted by :meth:`hold` is done with."""
        with self._ready:
            self._sending -= 1
            self._ready.notify_all()

    def unbind(self) -> None:
        """Let every lot take what it asks from now on (nothing is sent any more)."""
        with self._ready:
            self._capacity = None
            self._ready.notify_all()

    def shut(self) -> None:
        """Refuse every take from now on (:class:`Shut`): writers stop."""
        with self._ready:
            self._shut = True
            self._ready.notify_all()

    # -- for lots, under the lock ------------------------------------------------
    def _fits(self, lot: "Lot", n: int) -> bool:
        if self._capacity is None:
            return True
        front = next((o for o in self._open.values() if not o.finished), None)
        if front is None or front is lot:
            return self._used + n <= self._capacity or not self._sending
        reserve = max(0, front.expected - front.taken) + self._capacity // 3
        return self._used + n + reserve <= self._capacity

    def _take(self, lot: "Lot", n: int) -> None:
        with self._ready:
            while not self._fits(lot, n):
                if self._shut:
                    raise Shut
                self._waiting += 1
                try:
                    self._ready.wait(_WAIT)
                finally:
                    self._waiting -= 1
            if self._shut:
                raise Shut
            lot.held += n
            lot.taken += n
            self._used += n
            self._peak = max(self._peak, self._used)

    def _give(self, lot: "Lot", n: int) -> None:
        with self._ready:
            n = min(n, lot.held)
            lot.held -= n
            self._used -= n
            self._retire(lot)
            self._ready.notify_all()

    def _done(self, lot: "Lot") -> None:
        with self._ready:
            lot.finished = True
            self._retire(lot)
            self._ready.notify_all()

    def _retire(self, lot: "Lot") -> None:
        if lot.finished and lot.held == 0:
            self._open.pop(lot.number, None)


class Lot:
    """The bytes one input holds in the work folder (made by :meth:`Room.lot`)."""

    def __init__(self, room: Room, number: int, expected: int) -> None:
        self.room = room
        self.number = number
        self.expected = expected
        self.held = 0
        """Bytes it holds now."""
        self.taken = 0
        """Bytes it has taken in all."""
        self.finished = False
        """Whether it will take no more (:meth:`done`)."""

    def take(self, n: int) -> None:
        """Take ``n`` bytes, waiting for room.

        Raises:
            Shut: The room was shut (the send has ended).
        """
        self.room._take(self, n)

    def give(self, n: int) -> None:
        """Give back ``n`` bytes (a file of this lot was deleted)."""
        self.room._give(self, n)

    def done(self) -> None:
        """Say it takes no more: it leaves the room when it holds nothing."""
        self.room._done(self)
