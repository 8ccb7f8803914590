"""The per-file report: one row for every input file, and the run's summary."""

import contextlib
import csv
import os
import stat
from collections import Counter
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from ..atomic import partial_of, replacing
from ..errors import DicomSendError, UsageError
from ..pacs.commit_results import Verdict
from ..sanitize import CsvWriter
from ..status import ExitStatus, InstanceStatus
from ..words import count

COLUMNS = (
    "file",
    "status",
    "sop_instance_uid",
    "sop_class_uid",
    "transfer_syntax",
    "dimse_status",
    "reason",
    "bytes",
    "verified",
    "committed",
)
RESUMED = "stored by an earlier run (resumed), not sent again"
"""The reason of an instance an earlier run's report says was stored."""
ON_RECEIVER = "already on the receiver (C-FIND), not sent again"
"""The reason of an instance the receiver said it held before the send."""
_REQUIRED_TO_RESUME = frozenset(COLUMNS) - {"verified", "committed"}
_RESUME_MAX_BYTES = 1 << 30
"""A report to resume from larger than this (1 GiB, some 5 million rows) is
refused rather than read."""


@dataclass(frozen=True, slots=True)
class Row:
    """The account of one input file (an archive member counts as a file)."""

    file: str
    status: InstanceStatus
    reason: str = ""
    sop_instance_uid: str = ""
    sop_class_uid: str = ""
    transfer_syntax: str = ""
    """The syntax the instance was sent in (or is encoded in, if not sent)."""
    dimse_status: int | None = None
    bytes: int = 0
    """Size of the file."""
    source: int = 0
    """Index of the named input (file, folder or archive) it came from; not a
    column."""
    study_instance_uid: str = ""
    """Not a column: to verify, the study of the instance."""
    series_instance_uid: str = ""
    """Not a column: to verify, the series of the instance."""
    verified: bool | None = None
    """Whether the receiver, asked afterwards, holds the instance; None if not
    asked (or not stored)."""
    committed: Verdict | None = None
    """Whether the receiver committed to keep the instance (Storage
    Commitment); None if not asked (or not stored)."""

    @property
    def stored_before(self) -> bool:
        """Stored before this run (resumed, or found on the receiver): not sent."""
        return self.status.stored and self.reason.startswith((RESUMED, ON_RECEIVER))

    def as_csv(self) -> dict[str, str]:
        """The row as the CSV writes it."""
        return {
            "file": self.file,
            "status": self.status.value,
            "sop_instance_uid": self.sop_instance_uid,
            "sop_class_uid": self.sop_class_uid,
            "transfer_syntax": self.transfer_syntax,
            "dimse_status": (
                "" if self.dimse_status is None else f"0x{self.dimse_status:04X}"
            ),
            "reason": self.reason,
            "bytes": str(self.bytes),
            "verified": ""
            if self.verified is None
            else "yes"
            if self.verified
            else "no",
            "committed": "" if self.committed is None else self.committed.text,
        }


class ReportError(DicomSendError):
    """A report could not be written (disk full, no permission)."""


def write_csv(rows: Iterable[Row], path: Path) -> None:
    """Write the report; the file is replaced only once it is complete."""
    write_table(path, COLUMNS, (row.as_csv() for row in rows))


def _regular_or_missing(path: Path) -> bool:
    """Whether ``path`` (a link: what it names) is a regular file or does not exist."""
    try:
        return stat.S_ISREG(os.stat(path).st_mode)
    except FileNotFoundError:
        return True
    except OSError:  # unreadable: the write reports it
        return True


def check_replaceable(path: Path, label: str = "the report") -> None:
    """Refuse a report path that is a device, FIFO or anything but a regular file.

    A report is written beside its path and moved over it: a device such as
    ``/dev/full`` or a FIFO there would be replaced by a file.

    Args:
        path: Where the report goes.
        label: How the message names it (the command line: ``--report``).

    Raises:
        UsageError: ``path`` or its ``.partial`` exists and is neither a regular
            file nor a folder.
    """
    for target in (path, partial_of(path)):
        if target.is_dir() or _regular_or_missing(target):
            continue  # a folder: the caller's own check names it
        named = "" if target == path else f": {target}"
        raise UsageError(
            f"{label} {path}{named} is not a regular file (a device or FIFO "
            "would be replaced)"
        )


def write_table(
    path: Path, columns: Sequence[str], rows: Iterable[dict[str, str]]
) -> None:
    """Write a CSV with a header; the file is replaced only once it is complete.

    Cells that a spreadsheet would take for a formula are quoted
    (:class:`~fw_gear_dicom_send.sanitize.CsvWriter`).

    Raises:
        ReportError: It cannot be written; nothing partial is left.
    """
    if not (_regular_or_missing(path) and _regular_or_missing(partial_of(path))):
        raise ReportError(f"cannot write the report {path}: not a regular file")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with (
            replacing(path) as partial,
            open(partial, "w", newline="", encoding="utf-8") as f,
        ):
            writer = CsvWriter(f, columns)
            writer.writeheader()
            writer.writerows(rows)
    except OSError as exc:
        raise ReportError(
            f"cannot write the report {path}: {exc.strerror or exc}"
        ) from None


def is_report(path: Path) -> bool:
    """Whether ``path`` starts with the header of a dicom-send report."""
    header = ",".join(COLUMNS).encode("ascii")
    try:
        with open(path, "rb") as f:
            return f.read(len(header) + 2).rstrip(b"\r\n") == header
    except OSError:
        return False


def read_stored(path: Path, label: str = "the report") -> frozenset[str]:
    """SOP Instance UIDs that a report says were stored (sent or warning).

    Args:
        path: The report of an earlier run.
        label: How messages name it (the command line: ``--resume``).

    Raises:
        UsageError: The report cannot be read, is not a regular file, is larger
            than 1 GiB, or is not one of ours.
    """
    with reading(path, label) as reader:
        return frozenset(
            row["sop_instance_uid"]
            for row in reader
            if row["sop_instance_uid"]
            and row["status"] in (InstanceStatus.SENT, InstanceStatus.WARNING)
        )


@contextlib.contextmanager
def reading(path: Path, label: str = "the report") -> Iterator["csv.DictReader[str]"]:
    """The rows of a report of ours, read as they are iterated.

    Args:
        path: The report of an earlier run.
        label: How messages name it (the command line: ``--resume``).

    Raises:
        UsageError: The report cannot be read, is not a regular file, is larger
            than 1 GiB, or is not one of ours.
    """
    try:
        # Not blocking: opening a FIFO to read waits for a writer. fstat of the
        # open file: what is read is what was checked.
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
        with open(fd, newline="", encoding="utf-8") as f:
            info = os.fstat(fd)
            if not stat.S_ISREG(info.st_mode):
                raise UsageError(f"{label} {path} is not a regular file")
            if info.st_size > _RESUME_MAX_BYTES:
                raise UsageError(
                    f"{label} {path} is larger than 1 GiB: not a dicom-send report"
                )
            os.set_blocking(fd, True)
            reader = csv.DictReader(f)
            if not set(reader.fieldnames or ()) >= _REQUIRED_TO_RESUME:
                raise UsageError(f"{path} is not a dicom-send report")
            yield reader
    except OSError as exc:
        raise UsageError(f"cannot read the report {path}: {exc.strerror}") from None
    except (csv.Error, UnicodeDecodeError) as exc:
        raise UsageError(f"cannot read the report {path}: {exc}") from None


@dataclass(frozen=True, slots=True)
class Summary:
    """Counts and speed of a run."""

    files: int
    counts: dict[InstanceStatus, int]
    bytes_stored: int
    """Bytes of the instances this run stored (not those stored before)."""
    seconds: float
    verified: int = 0
    """Stored instances the receiver was found to hold, when asked."""
    unverified: int = 0
    """Stored instances the receiver was asked for and did not show."""
    committed: int = 0
    """Stored instances the receiver committed to keep (Storage Commitment)."""
    uncommitted: int = 0
    """Stored instances the receiver did not commit to keep (Storage Commitment:
    failed, or no answer)."""
    already: int = 0
    """Instances stored before this run (``--resume``, ``--skip-existing``),
    counted in ``stored`` but not in this run's rate and bytes."""
    associations: str = ""
    """How many associations the send used, and why no more (``4 associations``,
    ``up to 3 associations (the receiver rejected a 4th: …)``); empty when it did
    not go over worker processes."""

    @property
    def instances(self) -> int:
        """DICOM instances found (everything not skipped)."""
        return self.files - self.counts.get(InstanceStatus.SKIPPED, 0)

    @property
    def stored(self) -> int:
        """Instances the receiver stored."""
        return self.counts.get(InstanceStatus.SENT, 0) + self.counts.get(
            InstanceStatus.WARNING, 0
        )

    @property
    def exit_status(self) -> ExitStatus:
        """SUCCESS only when every instance was stored and there was one."""
        if self.stored == 0:
            return ExitStatus.NOTHING_SENT
        if self.stored < self.instances or self.unverified or self.uncommitted:
            return ExitStatus.INCOMPLETE
        return ExitStatus.SUCCESS

    def lines(self) -> list[str]:
        """The summary as printed at the end of a run.

        The rate and megabytes are this run's transfers; instances stored before
        it are counted apart (``; 134 already stored``), and a run that
        transferred nothing gives no rate.
        """
        now = self.stored - self.already
        to_send = self.instances - self.already
        megabytes = self.bytes_stored / 1e6
        counts = ", ".join(
            f"{self.counts.get(status, 0)} {status.value}" for status in InstanceStatus
        )
        stored = (
            f"{count(now, 'instance')} stored"
            if self.already and now == to_send
            else f"{now} of {count(to_send, 'instance')} stored"
        )
        if now:
            rate = now / max(self.seconds, 1e-9)
            stored += (
                f", {megabytes:.1f} MB in {self.seconds:.2f} s ({rate:.1f} "
                f"images/s, {megabytes / max(self.seconds, 1e-9):.1f} MB/s)"
            )
        else:
            stored += f" in {self.seconds:.2f} s"
        if self.already:
            stored += f"; {self.already} already stored"
        if self.associations:
            stored += f"; over {self.associations}"
        lines = [f"{count(self.files, 'file')}: {counts}", stored]
        if self.verified or self.unverified:
            lines.append(
                f"{self.verified} verified on the receiver, "
                f"{self.unverified} not verified"
            )
        lines += commitment_lines(self.committed, self.uncommitted)
        return lines


def commitment_lines(committed: int, uncommitted: int) -> list[str]:
    """The summary's line on Storage Commitment, if the receiver was asked."""
    if not (committed or uncommitted):
        return []
    return [f"{committed} committed by the receiver, {uncommitted} not committed"]


def summarize(rows: Sequence[Row], seconds: float, associations: str = "") -> Summary:
    """Summarize a run's rows (sent over ``associations``, as the pacing says)."""
    return Summary(
        associations=associations,
        files=len(rows),
        counts=dict(Counter(row.status for row in rows)),
        bytes_stored=sum(
            row.bytes for row in rows if row.status.stored and not row.stored_before
        ),
        seconds=seconds,
        verified=sum(1 for row in rows if row.verified is True),
        unverified=sum(1 for row in rows if row.verified is False),
        committed=sum(1 for r in rows if r.committed and r.committed.ok),
        uncommitted=sum(1 for r in rows if r.committed and not r.committed.ok),
        already=sum(1 for row in rows if row.stored_before),
    )
