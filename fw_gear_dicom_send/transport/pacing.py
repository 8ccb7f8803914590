"""How many associations a send keeps open: the contract between transport and policy.

The transport measures and obeys; a pacing decides. While it sends over worker
processes, the transport hands the pacing a :class:`Sample` every
:data:`SAMPLE_EVERY` seconds and a :class:`Refusal` whenever a new association is
refused as transient (the receiver's association limit, most often), and opens
associations or retires them (each after the instance it is sending) until the
number open is the one the pacing asked for. It never opens more than the items
waiting warrant, and never more than the pacing's ceiling. Work moves to the
associations that are open: nothing is sent twice, and no item waits on an
association that has closed.

:class:`Fixed` is the pacing of ``--associations N``.
"""

from dataclasses import dataclass
from typing import Protocol

SAMPLE_EVERY = 0.05
"""Seconds between two samples."""


@dataclass(frozen=True, slots=True)
class Sample:
    """What the transport measured, cumulative since the send started."""

    elapsed: float
    """Seconds since the send started."""
    open: int
    """Associations open now: accepted, and not yet released."""
    stored: int
    """Instances the receiver stored (sent, or sent with a warning)."""
    answered: int
    """Instances with a final outcome, stored or not."""
    response_seconds: float
    """Sum of the seconds between each answered data set going out and its
    answer coming (divide by ``answered`` for the mean)."""
    out_of_resources: int
    """Answers 0xA7xx (refused: out of resources)."""
    waiting: int
    """Items known and not yet given to an association."""
    busy: float = 0.0
    """CPU-seconds this machine's CPUs (those the send may use) spent busy, by
    any process but the main one (see :mod:`.cpu` for what counts)."""
    cpus: int = 0
    """How many CPUs the send may use (0: their load is unknown)."""


@dataclass(frozen=True, slots=True)
class Refusal:
    """A new association refused as transient."""

    reason: str
    """As the transport says it, e.g. ``receiver rejected the association:
    local limit exceeded``."""
    open: int
    """Associations open when it was refused (the refused one not counted)."""


class Pacing(Protocol):
    """A policy for the number of associations open at once."""

    def start(self) -> int:
        """How many to open first (at least 1)."""
        ...

    def sample(self, sample: Sample) -> int:
        """How many to have open now, given what was measured."""
        ...

    def refused(self, refusal: Refusal) -> int:
        """How many to have open now that a new one was refused."""
        ...

    def summary(self) -> str:
        """How many were used and why no more: one phrase for the log and the report.

        E.g. ``4 associations`` or ``up to 3 associations (the receiver rejected a
        4th: local limit exceeded)``; empty if none was ever open.
        """
        ...


class Fixed:
    """Always the same number of associations (``--associations N``).

    Args:
        count: How many.
    """

    def __init__(self, count: int) -> None:
        self._count = count
        self._most = 0

    def start(self) -> int:
        """``count``."""
        return self._count

    def sample(self, sample: Sample) -> int:
        """``count``."""
        self._most = max(self._most, sample.open)
        return self._count

    def refused(self, refusal: Refusal) -> int:
        """``count``: a refused association is tried again after a wait."""
        return self._count

    def summary(self) -> str:
        """How many were open at most (empty if none ever was)."""
        most = self._most
        return f"{most} association{'s' if most != 1 else ''}" if most else ""
