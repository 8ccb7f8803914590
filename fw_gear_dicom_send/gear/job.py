"""A gear run: gather the job's files, send them, report per Flywheel file.

With a ``file`` input that file is sent; without one, every file of type ``dicom``
under the job's destination is downloaded to the work folder, several at once
(:mod:`.downloads`), each sent as soon as it is there and deleted once its
instances are done with. All of it goes through one engine run (one set of
associations for the whole job), and the engine's rows are added up per Flywheel
file for the completion report.
"""

from __future__ import annotations

import logging
import shutil
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING

from .. import stopping
from ..errors import UsageError
from ..gear_reports import INSTANCE_REPORT_PREFIX
from ..sanitize import printable
from ..sending.engine import send
from ..sending.pipeline import Fetcher
from ..sending.report import ReportError, Row, write_csv
from ..sending.request import RunResult, SendRequest
from ..status import ExitStatus, InstanceStatus
from ..transport.tls_context import client_context
from ..words import count
from .completion import FileResult, FileStatus, report_name, write_report
from .config import FileInput, GearSettings
from .files import FlywheelError, FlywheelFile

if TYPE_CHECKING:
    from .flywheel import Hierarchy

log = logging.getLogger(__name__)

_DOWNLOADS = "downloads"
_SHOWN_FAILURES = 20


@dataclass(frozen=True, slots=True)
class Source:
    """A Flywheel file and where it lies locally, or why it does not."""

    file: FlywheelFile
    path: Path | None
    error: str = ""


def run(settings: GearSettings, hierarchy: Hierarchy | None) -> ExitStatus:
    """Run the gear.

    Args:
        settings: The validated configuration.
        hierarchy: The job's Flywheel (:func:`.flywheel.connect`), if it has an
            api-key input.

    Returns:
        SUCCESS only if every DICOM instance of every file was stored;
        INTERRUPTED if a stop signal came (the reports are written all the same).

    Raises:
        UsageError: The job cannot run as configured (checked before sending).
        FlywheelError: Listing the job's files failed.
    """
    try:
        return _run(settings, hierarchy)
    finally:  # what was downloaded goes, however the run ends
        shutil.rmtree(settings.work_dir / _DOWNLOADS, ignore_errors=True)


def _run(settings: GearSettings, hierarchy: Hierarchy | None) -> ExitStatus:
    started = datetime.now()
    if settings.association.tls is not None:
        client_context(settings.association.tls)  # bad TLS files: stop before anything
    if settings.file is not None:
        file = _describe_input(settings.file, hierarchy)
        sources = [Source(file, settings.file.path)]
        result: RunResult | None = _send(settings, [file], [settings.file.path], None)
    else:
        files = _list_files(settings, hierarchy)
        if not files:
            log.error("no file of type dicom found under the destination")
            return ExitStatus.NOTHING_SENT
        sources, result = _download_and_send(settings, hierarchy, files)
    results = _tally(sources, result)
    reported = True
    if settings.report:
        try:
            _write_reports(
                settings,
                hierarchy,
                sources=sources,
                results=results,
                result=result,
                started=started,
            )
        except ReportError as exc:
            log.error("error: %s", exc)
            reported = False
    _log_summary(results, result)
    if (result is not None and result.interrupted) or stopping.requested():
        log.error("interrupted by %s", stopping.name() or "SIGINT")
        return ExitStatus.INTERRUPTED
    return _exit_status(results) if reported else ExitStatus.REPORT_FAILED


def _list_files(
    settings: GearSettings, hierarchy: Hierarchy | None
) -> list[FlywheelFile]:
    """The DICOM files under the job's destination."""
    if hierarchy is None:
        raise UsageError(
            "nothing to send: there is no file input, and without an api-key input "
            "the destination's files cannot be listed"
        )
    if settings.destination is None:
        raise UsageError("nothing to send: no file input, and no destination")
    files = hierarchy.dicom_files(settings.destination)
    log.info(
        "%d DICOM files in %s %s",
        len(files),
        settings.destination.type,
        settings.destination.id,
    )
    return files


def _download_and_send(
    settings: GearSettings, hierarchy: Hierarchy | None, files: list[FlywheelFile]
) -> tuple[list[Source], RunResult | None]:
    """Download the files, several at once, each sent as soon as it is there."""
    from .downloads import Downloads, destinations  # noqa: PLC0415 - with the SDK

    assert hierarchy is not None
    paths = destinations(files, settings.work_dir / _DOWNLOADS)
    downloads = Downloads(
        hierarchy,
        files,
        paths,
        settings.download_retry_seconds,
        settings.download_concurrency,
    )
    result: RunResult | None = _send(settings, files, paths, downloads)
    errors = downloads.errors
    sources = [
        Source(file, None, errors[i]) if i in errors else Source(file, paths[i])
        for i, file in enumerate(files)
    ]
    if all(source.path is None for source in sources):
        result = None  # nothing was there to send
    return sources, result


def _describe_input(given: FileInput, hierarchy: Hierarchy | None) -> FlywheelFile:
    """The file input as Flywheel knows it; just its name if that cannot be read."""
    bare = FlywheelFile(None, given.parent.id if given.parent else "", "", given.name)
    if hierarchy is None:
        log.info("no api-key input: the report is not attached to a session")
        return bare
    try:
        file = hierarchy.input_file(given.name, given.parent)
    except FlywheelError as exc:
        log.warning("%s; sending the file anyway, the report is not attached", exc)
        return bare
    log.info("sending the input file %s", file.fw_path)
    return file


def _send(
    settings: GearSettings,
    files: Sequence[FlywheelFile],
    paths: Sequence[Path],
    fetcher: Fetcher | None,
) -> RunResult:
    """One engine run over every file: one set of associations for the job."""
    request = SendRequest(
        paths=tuple(paths),
        peer=settings.peer,
        association=settings.association,
        tag=settings.tag,
        work_dir=settings.work_dir,
        labels=tuple(file.fw_path for file in files),
        retry=settings.retry,
        associations=settings.associations,
        max_associations=settings.max_associations,
        verify=settings.verify,
        skip_existing=settings.skip_existing,
        stow=settings.stow,
        commit=settings.commit,
    )
    return send(request, fetcher=fetcher)


def _rows_by_source(
    sources: Sequence[Source], result: RunResult | None
) -> dict[int, list[Row]]:
    """The engine's rows, keyed by the index of their source in ``sources``."""
    rows: dict[int, list[Row]] = defaultdict(list)
    for row in result.rows if result is not None else ():
        rows[row.source].append(row)
    return rows


def _tally(sources: Sequence[Source], result: RunResult | None) -> list[FileResult]:
    by_source = _rows_by_source(sources, result)
    results = []
    for index, source in enumerate(sources):
        rows = by_source.get(index, [])
        images = [row for row in rows if row.status is not InstanceStatus.SKIPPED]
        reason = source.error
        if source.path is not None and not images:
            reason = "no DICOM instance in the file"
            if result is not None and result.interrupted:
                reason = stopping.INTERRUPTED
        elif (
            result is not None
            and result.error
            and not any(row.status.stored for row in images)
        ):
            reason = result.error
        if not reason:  # the first instance of the file that was not stored
            reason = next(
                (row.reason for row in images if not row.status.stored and row.reason),
                "",
            )
        # With verify on, an instance counts as sent only if the receiver shows it.
        unverified = sum(row.verified is False for row in images)
        if unverified and not reason:
            reason = f"{unverified} instances not verified on the receiver"
        # With storage_commitment on, only if the receiver commits to it.
        uncommitted = sum(not r.committed.ok for r in images if r.committed)
        if uncommitted and not reason:
            reason = f"{uncommitted} instances not committed by the receiver"
        results.append(
            FileResult(
                source.file,
                images=len(images),
                sent=sum(
                    row.status.stored
                    and row.verified is not False
                    and (row.committed is None or row.committed.ok)
                    for row in images
                ),
                reason=reason,
            )
        )
    return results


def _exit_status(results: Sequence[FileResult]) -> ExitStatus:
    if all(r.status is FileStatus.COMPLETE for r in results):
        return ExitStatus.SUCCESS
    if not any(r.sent for r in results):
        return ExitStatus.NOTHING_SENT
    return ExitStatus.INCOMPLETE


def _instance_rows(sources: Sequence[Source], result: RunResult | None) -> list[Row]:
    """The engine's rows, plus one for each file that could not be downloaded."""
    rows = list(result.rows) if result is not None else []
    rows += [
        Row(source.file.fw_path, InstanceStatus.FAILED, source.error)
        for source in sources
        if source.path is None
    ]
    return rows


def _write_reports(
    settings: GearSettings,
    hierarchy: Hierarchy | None,
    *,
    sources: Sequence[Source],
    results: Sequence[FileResult],
    result: RunResult | None,
    started: datetime,
) -> None:
    """One completion report per session, attached to it; the instance report."""
    by_session: dict[str, list[FileResult]] = defaultdict(list)
    for file_result in results:
        session = file_result.file.session
        by_session[session.id if session else ""].append(file_result)
    acquisition_level = settings.file is not None or (
        settings.destination is not None and settings.destination.type == "acquisition"
    )
    for session_results in by_session.values():
        first = session_results[0].file
        acquisition = first.acquisition_label if acquisition_level else ""
        path = settings.output_dir / report_name(
            first.session, acquisition, started, first.name
        )
        write_report(session_results, path)
        log.info("report: %s", path.name)
        destination = settings.destination
        if hierarchy is None or first.session is None:
            continue
        if destination and (destination.type, destination.id) == (
            "session",
            first.session.id,
        ):
            continue  # the job's outputs are uploaded to the session already
        try:
            hierarchy.attach(first.session, path)
            log.info("attached %s to session %s", path.name, first.session.label)
        except FlywheelError as exc:
            log.error("%s", exc)
    instance_report = (
        settings.output_dir / f"{INSTANCE_REPORT_PREFIX}{started:%Y-%m-%d_%H-%M-%S}.csv"
    )
    write_csv(_instance_rows(sources, result), instance_report)
    log.info("per-instance report: %s", instance_report.name)


def _log_summary(results: Sequence[FileResult], result: RunResult | None) -> None:
    counts = dict.fromkeys(FileStatus, 0)
    for file_result in results:
        counts[file_result.status] += 1
    log.info(
        "summary: %s: %s",
        count(len(results), "file"),
        ", ".join(f"{n} {status.value}" for status, n in counts.items()),
    )
    if result is not None:
        for line in result.summary.lines():
            log.info("summary: %s", line)
    failed = [r for r in results if r.status is not FileStatus.COMPLETE]
    for file_result in failed[:_SHOWN_FAILURES]:
        why = f": {printable(file_result.reason)}" if file_result.reason else ""
        log.info(
            "summary: %s %s, %d of %d images sent%s",
            file_result.status.value,
            file_result.file.fw_path,
            file_result.sent,
            file_result.images,
            why,
        )
    if len(failed) > _SHOWN_FAILURES:
        log.info(
            "summary: and %d more files not complete (see the per-instance report)",
            len(failed) - _SHOWN_FAILURES,
        )
