"""The gear's completion report: one row per Flywheel file, the documented columns.

``Images in Series`` counts the DICOM instances found in the file (an archive's
non-DICOM members are not images); ``Images Sent`` those the receiver stored. Why an
instance or file failed is in the job log and in the per-instance report written
beside this one.
"""

import enum
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from ..sanitize import safe_name
from ..sending.report import write_table
from .files import FlywheelFile, Session

COLUMNS = (
    "Acquisition ID",
    "FW Path",
    "Filename",
    "Images in Series",
    "Images Sent",
    "Status",
)
PREFIX = "dicom-send_report-"


class FileStatus(enum.StrEnum):
    """The ``Status`` column."""

    COMPLETE = "Complete"
    """Every DICOM instance of the file was stored (and it had at least one)."""

    INCOMPLETE = "Incomplete"
    """Some were stored, not all."""

    FAILED = "Failed"
    """None was stored: not downloaded, not sent, or no DICOM instance in it."""


@dataclass(frozen=True, slots=True)
class FileResult:
    """What became of one Flywheel file."""

    file: FlywheelFile
    images: int
    sent: int
    reason: str = ""
    """Why the file is not complete: why it failed as a whole (e.g. its download),
    or why the first of its instances that was not stored was not."""

    @property
    def status(self) -> FileStatus:
        """Complete, Incomplete or Failed."""
        if self.images and self.sent == self.images:
            return FileStatus.COMPLETE
        if self.sent:
            return FileStatus.INCOMPLETE
        return FileStatus.FAILED

    def as_csv(self) -> dict[str, str]:
        """The row as the CSV writes it."""
        return dict(
            zip(
                COLUMNS,
                (
                    self.file.acquisition_id,
                    self.file.fw_path,
                    self.file.name,
                    str(self.images),
                    str(self.sent),
                    self.status.value,
                ),
                strict=True,
            )
        )


def report_name(session: Session | None, acquisition_label: str, when: datetime) -> str:
    """``dicom-send_report-<session>[_<acquisition>]_<YYYY-MM-DD_HH-MM-SS>.csv``."""
    parts = [session.label if session else "", acquisition_label]
    labels = "_".join(safe_name(part) for part in parts if part) or "files"
    return f"{PREFIX}{labels}_{when:%Y-%m-%d_%H-%M-%S}.csv"


def write_report(results: Iterable[FileResult], path: Path) -> None:
    """Write the report; the file is replaced only once it is complete."""
    write_table(path, COLUMNS, (result.as_csv() for result in results))
