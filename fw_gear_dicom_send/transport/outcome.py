"""What is sent, and what becomes of it: send items and their outcomes.

Values only, shared by the C-STORE and STOW-RS senders, the worker processes and
the report; nothing here imports pydicom or pynetdicom, so that the process that
lists, probes and reports starts fast.
"""

from dataclasses import dataclass

from ..dicom.probe import DicomInfo
from ..dicom.status_codes import describe
from ..status import InstanceStatus
from .retry import Retry, retry_of_status

WARNING_STATUSES = frozenset({0xB000, 0xB006, 0xB007})


@dataclass(frozen=True, slots=True)
class SendItem:
    """One instance to send."""

    index: int
    """Its row in the report."""
    path: str
    """The file, as text: smaller than a ``Path``, and a send keeps every item
    until it ends."""
    info: DicomInfo
    inserts: tuple[tuple[int, bytes], ...] | None
    """Bytes to splice in when streaming; None when it must be decoded to send."""
    earlier: tuple["Outcome", ...] = ()
    """The outcomes of its attempts over an association that was lost, when the
    worker that made them handed it back to be sent by another."""

    @property
    def sop_class_uid(self) -> str:
        """SOP Class UID."""
        return self.info.sop_class_uid

    @property
    def transfer_syntax(self) -> str:
        """Transfer syntax of the file."""
        return self.info.transfer_syntax

    @property
    def size(self) -> int:
        """Bytes of the file."""
        return self.info.size


@dataclass(frozen=True, slots=True)
class Outcome:
    """What became of one instance."""

    status: InstanceStatus
    dimse_status: int | None = None
    reason: str = ""
    transfer_syntax: str = ""
    """The syntax it was sent in, when it went out."""
    association_lost: bool = False
    """The association died with this instance: it must not be used again."""
    retry: Retry = Retry.FINAL
    """Whether trying again may help."""


def association_lost(reason: str, retry: Retry) -> Outcome:
    """A failure that took the association with it."""
    return Outcome(
        InstanceStatus.FAILED, None, reason, association_lost=True, retry=retry
    )


def outcome_of_status(code: int, comment: str = "") -> Outcome:
    """Map a C-STORE response status (and the peer's error comment) to an outcome."""
    said = f": {comment}" if comment else ""
    if code == 0x0000:
        return Outcome(InstanceStatus.SENT, code)
    if code in WARNING_STATUSES:
        return Outcome(InstanceStatus.WARNING, code, f"warning {describe(code)}{said}")
    return Outcome(
        InstanceStatus.FAILED,
        code,
        f"refused: {describe(code)}{said}",
        retry=retry_of_status(code),
    )
