"""The shared work of a send over worker processes: who holds what, by item.

The main process keeps it (:class:`WorkQueue`): items wait by series, in the
order they arrived; each worker is given a few at a time (:meth:`WorkQueue.top_up`),
from the series it is on where it can, else from a series no other worker is on,
so that a series stays on one association where that is possible. An item given
is *held* by its worker until its data goes out (*flying*) or it is answered.
When a worker ends, the items it held go back to the queue, in front; those
flying stay its (the receiver may have stored them: never sent twice). When a
worker loses its association, it hands back what it has not sent, the item lost
included (it was to be tried again anyway) unless that one has now lost two
(:data:`.store_loop.PASSED_ON`: the worker keeps it, and it stays the worker's),
and is given nothing more until a new association of its own is open and has
tried what it kept: the items handed back wait, in front, for the workers open.
"""

import enum
from collections import OrderedDict, deque
from dataclasses import dataclass, field

from .outcome import SendItem

HOLD = 8
"""Items a worker holds at most (none until its first association is open); it
is given more once it holds half as many."""


class State(enum.Enum):
    """Where a worker is."""

    STARTING = "starting"
    """Started, its association not yet open (negotiating)."""
    REFUSED = "refused"
    """Its first association was refused as transient; it tries again."""
    SENDING = "sending"
    """Its first association is open: it is given items."""
    RETIRING = "retiring"
    """Told to stop: it finishes the item on the wire, then ends."""
    ENDED = "ended"


# Tuples: their members are found by identity, without hashing (asked often).
_OPEN = (State.STARTING, State.SENDING, State.RETIRING)
_ALIVE = (State.STARTING, State.SENDING, State.REFUSED)


@dataclass
class Share:
    """One worker's part of the work."""

    number: int
    state: State = State.STARTING
    held: dict[int, SendItem] = field(default_factory=dict)
    """Given to it, neither gone out nor answered."""
    flying: dict[int, SendItem] = field(default_factory=dict)
    """Gone out, not answered."""
    series: str = ""
    """The series it was last given items of."""
    ready: bool = False
    """Whether its first association opened."""
    lost: bool = False
    """Whether it lost its association and has not opened another yet."""
    closed: bool = False
    """Whether it said it has let its last association go (it is ending)."""

    @property
    def open(self) -> bool:
        """Whether its association is open or negotiating (retiring: still open)."""
        return self.state in _OPEN and not self.closed

    @property
    def alive(self) -> bool:
        """Whether it counts towards the associations asked for."""
        return self.state in _ALIVE


def series_of(item: SendItem) -> str:
    """The series an item belongs to (itself, if it names none)."""
    return item.info.series_instance_uid or f"#{item.index}"


class WorkQueue:
    """The items waiting, and each worker's share.

    Args:
        hold: Items a worker holds at most.
    """

    def __init__(self, hold: int = HOLD) -> None:
        self._hold = hold
        self._waiting: OrderedDict[str, deque[SendItem]] = OrderedDict()
        self._count = 0
        self.shares: dict[int, Share] = {}
        self._owner: dict[int, int] = {}
        """The worker holding or flying each item given, by item index."""
        self.pairs: dict[tuple[str, str], None] = {}
        """Every (SOP Class, transfer syntax) pair seen, in order."""

    @property
    def waiting(self) -> int:
        """Items known and not given to a worker."""
        return self._count

    @property
    def unsent(self) -> int:
        """Items still to send: waiting, held by a worker, or kept by one.

        Kept: flying with a worker whose association was lost, which tries it
        again on its next (:data:`.store_loop.PASSED_ON`).
        """
        return self._count + sum(
            len(s.held) + (len(s.flying) if s.lost else 0) for s in self.shares.values()
        )

    @property
    def done(self) -> bool:
        """Whether nothing waits, nothing is held and nothing is flying."""
        return not self._owner and not self._count

    def add(self, item: SendItem) -> None:
        """An item arrived."""
        self._waiting.setdefault(series_of(item), deque()).append(item)
        self._count += 1
        self.pairs.setdefault((item.sop_class_uid, item.transfer_syntax))

    def drain(self) -> list[SendItem]:
        """Take every item waiting (that no worker will send)."""
        items = [item for run in self._waiting.values() for item in run]
        self._waiting.clear()
        self._count = 0
        return items

    def start(self, number: int) -> Share:
        """A worker was started."""
        share = self.shares[number] = Share(number)
        return share

    def top_up(self, number: int) -> list[SendItem]:
        """Items to give the worker now, up to what it may hold; noted as held."""
        share = self.shares[number]
        if share.state is not State.SENDING or share.lost:
            return []  # not open
        if len(share.held) > self._hold // 2:
            return []  # enough for now: a few at a time
        given: list[SendItem] = []
        while len(share.held) < self._hold and self._count:
            run = self._waiting.get(share.series)
            if not run:
                share.series = self._next_series()
                run = self._waiting[share.series]
            item = run.popleft()
            if not run:
                del self._waiting[share.series]
            self._count -= 1
            share.held[item.index] = item
            self._owner[item.index] = number
            given.append(item)
        return given

    def _next_series(self) -> str:
        """The oldest series no worker is on; else the oldest."""
        taken = {s.series for s in self.shares.values() if s.alive}
        return next(
            (k for k in self._waiting if k not in taken), next(iter(self._waiting))
        )

    def item(self, index: int) -> SendItem | None:
        """A given item (held or flying), by index."""
        number = self._owner.get(index)
        if number is None:
            return None
        share = self.shares[number]
        return share.held.get(index) or share.flying.get(index)

    def outstanding(self) -> frozenset[int]:
        """The indices of the items waiting, held or flying."""
        waiting = (item.index for run in self._waiting.values() for item in run)
        return frozenset((*self._owner, *waiting))

    def sent(self, index: int) -> SendItem | None:
        """An item's data went out: the item, if it was given."""
        number = self._owner.get(index)
        if number is None:
            return None
        share = self.shares[number]
        item = share.held.pop(index, None)
        if item is not None:
            share.flying[index] = item
        return share.flying.get(index)

    def ready(self, number: int) -> None:
        """A worker's association is open: give it work.

        Its first, or one after a loss, once that has tried what it kept.
        """
        share = self.shares[number]
        share.ready, share.lost = True, False
        if share.state in {State.STARTING, State.REFUSED}:
            share.state = State.SENDING

    def hand_back(self, number: int, items: list[SendItem]) -> None:
        """A worker lost its association: the items it gives back wait again.

        They wait in front, as it gave them (carrying their earlier attempts), for
        any worker: it leaves their series. Until its next association is open
        (:meth:`ready`) it is given nothing.
        """
        share = self.shares[number]
        share.lost, share.series = True, ""
        back = [item for item in items if self._owner.get(item.index) == number]
        for item in back:
            share.held.pop(item.index, None)
            share.flying.pop(item.index, None)
            del self._owner[item.index]
        self._in_front(back)

    def _in_front(self, items: list[SendItem]) -> None:
        """Items to wait again before all others, each series' in index order."""
        for item in sorted(items, key=lambda i: -i.index):
            key = series_of(item)
            run = self._waiting.setdefault(key, deque())
            self._waiting.move_to_end(key, last=False)
            run.appendleft(item)
            self._count += 1

    def answered(self, index: int) -> SendItem | None:
        """An item's final outcome came: the item, if it was given."""
        number = self._owner.pop(index, None)
        if number is None:
            return None
        share = self.shares[number]
        return share.held.pop(index, None) or share.flying.pop(index, None)

    def ended(self, number: int) -> set[int]:
        """A worker ended: what it held waits again, in front; what it had flying.

        Returns:
            The indices of the items it sent and never answered.
        """
        share = self.shares[number]
        share.state = State.ENDED
        for index in share.held:
            del self._owner[index]
        self._in_front(list(share.held.values()))
        share.held.clear()
        flying = set(share.flying)
        share.flying.clear()
        for index in flying:
            del self._owner[index]
        return flying
