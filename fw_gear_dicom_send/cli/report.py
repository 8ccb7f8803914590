"""What a command leaves: output paths checked first, a send's report and summary.

A report path that cannot be written, or would replace an input, is refused
before anything is sent; at the end the report is written and the summary printed.
"""

import logging
import os
import sys
from collections.abc import Sequence
from pathlib import Path

from .. import stopping
from ..atomic import partial_of
from ..errors import UsageError
from ..logs import VERBOSE, said
from ..sending.report import (
    ReportError,
    Row,
    check_replaceable,
    is_report,
    write_csv,
)
from ..sending.request import RunResult
from ..status import ExitStatus, InstanceStatus
from . import PROG

log = logging.getLogger(__name__)

SHOWN_FAILURES = 20
"""Failed files named in the log at the end of a run; the rest are counted."""


def check_writable(
    report: Path | None, inputs: Sequence[Path] = (), *, replaced: bool = False
) -> None:
    """Fail before sending if the report cannot be written or would replace an input.

    Args:
        report: The path given, if any.
        inputs: The inputs it may not replace.
        replaced: The report is written beside and moved over the path: the path
            must be a regular file or not exist (a device or FIFO would be
            replaced by a file).
    """
    if report is None:
        return
    if replaced:
        check_replaceable(report, "--report")
    _check_not_an_input(report, inputs)
    try:
        report.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise UsageError(f"cannot write the report {report}: {exc.strerror}") from None
    if report.is_dir() or not os.access(report.parent, os.W_OK):
        raise UsageError(f"cannot write the report {report}")


def _check_not_an_input(report: Path, inputs: Sequence[Path]) -> None:
    """Refuse a report path that would replace an input file.

    The report and its ``.partial`` may not be an input, nor an existing file in
    an input folder other than an earlier report; links count as the file they
    name.

    Raises:
        UsageError: It is.
    """
    for target in (report, partial_of(report)):
        if not target.is_file() or is_report(target):
            continue
        where = target.resolve()
        for given in inputs:
            if given.exists() and (
                os.path.samefile(given, target)
                or (given.is_dir() and where.is_relative_to(given.resolve()))
            ):
                raise UsageError(
                    f"--report {report} would overwrite the input {target}"
                )


def finish(result: RunResult, report: Path | None) -> ExitStatus:
    """Write the report, if asked for, and print the summary.

    Returns:
        The run's exit status; REPORT_FAILED if the report could not be written.
    """
    written = None
    if report is not None:
        try:
            write_csv(result.rows, report)
            written = report
        except ReportError as exc:
            log.error("%s", exc)
    log_outcomes(result.rows, written, result.error)
    for line in result.summary.lines():
        print(line)
    if written is not None:
        print(f"report: {written}")
    if result.interrupted:
        by = f" by {stopping.name()}" if stopping.name() else ""
        print(f"{PROG}: interrupted{by}", file=sys.stderr)
        return result.exit_status
    return ExitStatus.REPORT_FAILED if report != written else result.exit_status


def log_outcomes(
    rows: Sequence[Row], report: Path | None, error: str | None = None
) -> None:
    """Name the failed files in the log, each with its reason.

    The first :data:`SHOWN_FAILURES`, then how many more; with ``-v`` (VERBOSE)
    every file's decision instead, whatever it was. A failure the log has named
    already (as it happened) is not named again, nor are the files that failed
    for the error that stopped the run: that one line says why for them all (a
    receiver that cannot be reached), and the summary counts them.

    Args:
        rows: The run's rows.
        report: The report written, if one was (where the rest are).
        error: Why the run stopped early, if it did.
    """
    if log.isEnabledFor(VERBOSE):
        for row in rows:
            why = f": {row.reason}" if row.reason else ""
            log.log(VERBOSE, "%s: %s%s", row.file, row.status.value, why)
        return
    failed = [
        row
        for row in rows
        if row.status is InstanceStatus.FAILED
        and row.reason != error
        and not said(f"{row.file}: {row.reason}")
    ]
    for row in failed[:SHOWN_FAILURES]:
        log.warning("failed: %s: %s", row.file, row.reason)
    more = len(failed) - SHOWN_FAILURES
    if more > 0:
        where = f"the report {report} names" if report else "--report FILE names"
        log.warning("… and %d more failed (%s every file)", more, where)
