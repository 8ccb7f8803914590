"""What a Storage Commitment answer says of each instance: values only.

Kept apart from :mod:`.commitment` (which imports pynetdicom) so that the report
can hold and print them without importing the network.
"""

import enum
from dataclasses import dataclass

__all__ = [
    "FAILURE_REASONS",
    "STORAGE_COMMITMENT_PUSH",
    "Committed",
    "Reference",
    "Verdict",
    "failure_text",
]

STORAGE_COMMITMENT_PUSH = "1.2.840.10008.1.20.1"
"""Storage Commitment Push Model SOP Class UID."""

FAILURE_REASONS = {
    0x0110: "Processing failure",
    0x0112: "No such object instance",
    0x0119: "Class / Instance conflict",
    0x0122: "Referenced SOP Class not supported",
    0x0131: "Duplicate transaction UID",
    0x0213: "Resource limitation",
}
"""The Failure Reason (0008,1197) values of a Failed SOP Sequence (PS3.3 C.14.1.1)."""


class Committed(enum.StrEnum):
    """Whether the receiver committed to keep an instance."""

    YES = "yes"
    """Listed in the Referenced SOP Sequence of an event report."""
    NO = "no"
    """Listed in the Failed SOP Sequence, or the request was refused."""
    UNKNOWN = "unknown"
    """No answer: no event report in time, or one that did not list it."""


@dataclass(frozen=True, slots=True)
class Verdict:
    """The receiver's answer for one instance, and why when not committed."""

    state: Committed
    why: str = ""

    @property
    def ok(self) -> bool:
        """Whether the receiver committed to the instance."""
        return self.state is Committed.YES

    @property
    def text(self) -> str:
        """The ``committed`` column: ``yes``, ``no: 0x0112 (...)``, ``unknown: ...``."""
        return f"{self.state.value}: {self.why}" if self.why else self.state.value

    @classmethod
    def parse(cls, text: str) -> "Verdict | None":
        """A verdict as :attr:`text` writes it; None for an empty or unknown cell."""
        state, _, why = text.partition(":")
        try:
            return cls(Committed(state.strip()), why.strip())
        except ValueError:
            return None


@dataclass(frozen=True, slots=True)
class Reference:
    """One instance to ask about: its SOP Class UID and SOP Instance UID."""

    sop_class_uid: str
    sop_instance_uid: str


def failure_text(reason: int | None) -> str:
    """A Failure Reason in words: ``0x0112 (No such object instance)``."""
    if reason is None:
        return "no Failure Reason given"
    return f"0x{reason:04X} ({FAILURE_REASONS.get(reason, 'unknown reason')})"
