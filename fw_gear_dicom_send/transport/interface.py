"""The one interface of the transports: send items, tell what became of each.

In-process C-STORE (:class:`.cstore.CStore`), parallel worker processes
(:class:`.workers.Workers`) and DICOMweb STOW-RS (:class:`.stow.Stow`) all
implement :class:`Transport`: ``send(items, events)`` tells ``events`` of every
data set that went out (:meth:`Events.sent`) and of every final outcome
(:meth:`Events.outcome`), and returns :class:`Ended`: for the items it reported
nothing of, why they were not sent. The engine drives all three alike.

``items`` is any iterable, whose ``__next__`` may block (the next file is still
downloading): each item is sent as soon as it arrives. A list (any sequence) is
known up front, and planned so. A transport that stops early does not drain the
iterable: the items it never took are covered by :attr:`Ended.error`.

A stop asked for (:mod:`~fw_gear_dicom_send.stopping`) makes a transport send
nothing more and return once what is on the wire is answered; raised at once
(``KeyboardInterrupt``), it leaves the transport with its connections closed.
"""

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Protocol

from .outcome import Outcome, SendItem


class Events(Protocol):
    """What a transport tells while it sends."""

    def sent(self, item: SendItem) -> None:
        """An item's data went out: the receiver may store it from now on."""

    def outcome(self, item: SendItem, outcome: Outcome) -> None:
        """An item's final outcome (once per item)."""


@dataclass(frozen=True, slots=True)
class Unsent:
    """Why some items were not sent: one reason for a group of them."""

    reason: str
    items: frozenset[int]
    """The indices (:attr:`.outcome.SendItem.index`) it is the reason of: those
    with no outcome reported were not sent, or went out and were never
    answered."""


@dataclass(frozen=True, slots=True)
class Ended:
    """How a transport's send ended."""

    unsent: tuple[Unsent, ...] = ()
    """Why items were not sent, first stop first; empty if all were reported (or
    a stop asked for ended the send)."""
    associations: str = ""
    """How many associations were used and why no more (the pacing's
    :meth:`~.pacing.Pacing.summary`); empty if the transport has none to tell."""

    @property
    def error(self) -> str | None:
        """The first reason that sending stopped early, if it did."""
        return self.unsent[0].reason if self.unsent else None

    def reason(self, index: int) -> str | None:
        """Why the item with this index was not sent, if a stop covers it."""
        return next((u.reason for u in self.unsent if index in u.items), None)


def unsent(reason: str, items: Sequence[SendItem]) -> Ended:
    """The end of a send that stopped for ``reason`` before these items."""
    return Ended((Unsent(reason, frozenset(item.index for item in items)),))


class Transport(Protocol):
    """A way of getting instances to the receiver."""

    def send(self, items: Iterable[SendItem], events: Events) -> Ended:
        """Send every item as it arrives, telling ``events``; why the rest were not.

        Raises:
            KeyboardInterrupt: Interrupted at once (:class:`.stopping.Interrupted`).
        """
