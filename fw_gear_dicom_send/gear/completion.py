"""The gear's completion report: one row per Flywheel file, the documented columns.

``Images in Series`` counts the DICOM instances found in the file (an archive's
non-DICOM members are not images); ``Images Sent`` those the receiver stored. Why an
instance or file failed is in the job log and in the per-instance report written
beside this one.
"""

import enum
import logging
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from ..gear_reports import COMPLETION_COLUMNS, COMPLETION_PREFIX, TIME_FORMAT
from ..sanitize import safe_name
from ..sending.report import write_table
from .files import FlywheelFile, Session

log = logging.getLogger(__name__)

COLUMNS = COMPLETION_COLUMNS
PREFIX = COMPLETION_PREFIX


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


def report_name(
    session: Session | None,
    acquisition_label: str,
    when: datetime,
    file_name: str = "",
) -> str:
    """``dicom-send_report-<session>[_<acquisition>]_<YYYY-MM-DD_HH-MM-SS>.csv``.

    A run that knows no session or acquisition (a local run, without an
    ``api-key``) is named after the file it sent: ``dicom-send_report-<file>_…``.
    """
    parts = [session.label if session else "", acquisition_label]
    labels = "_".join(safe_name(part) for part in parts if part)
    labels = labels or safe_name(file_name) or "files"
    return f"{PREFIX}{labels}_{when.strftime(TIME_FORMAT)}.csv"


def write_report(results: Iterable[FileResult], path: Path) -> None:
    """Write the report; the file is replaced only once it is complete.

    Files that name no acquisition (a local run, or an input without a
    ``hierarchy``) leave ``Acquisition ID`` empty: the log says so, once.
    """
    rows = list(results)
    unnamed = [r for r in rows if not r.file.acquisition_id]
    if unnamed:
        log.info(
            "%s: Acquisition ID left empty for %d %s: %s",
            path.name,
            len(unnamed),
            "file" if len(unnamed) == 1 else "files",
            _why_no_acquisition(unnamed[0].file),
        )
    write_table(path, COLUMNS, (result.as_csv() for result in rows))


def _why_no_acquisition(file: FlywheelFile) -> str:
    """Why a file has no acquisition ID."""
    if file.session is None:
        return (
            "the file input names no Flywheel acquisition (no api-key input, or "
            "no hierarchy on the file input in config.json)"
        )
    return "its parent in Flywheel is not an acquisition"
