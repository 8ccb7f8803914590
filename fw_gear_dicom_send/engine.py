"""The send engine: inputs -> probed, tagged instances -> C-STORE -> one row per file.

Used by the command line and the gear alike. Nothing is sent until every input has
been listed and probed: that is when the presentation contexts are known, and it lets
bad input be reported before the first association.
"""

import logging
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path

from .contexts import plan_batches
from .dicomfile import NotSendable, probe
from .errors import AssociationError, MalformedDicomError
from .inputs import InputFile, InputProblem, Limits, check_paths, collect
from .report import Row, Summary, summarize
from .retry import Retrier, RetryPolicy
from .scu import AssociationSettings, Client, Peer, SendItem, store_all
from .status import ExitStatus, InstanceStatus
from .tagging import ProvenanceTag, TaggingError, splice
from .tls import risks

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class SendRequest:
    """Everything a send needs."""

    paths: tuple[Path, ...]
    peer: Peer
    association: AssociationSettings = field(default_factory=AssociationSettings)
    tag: ProvenanceTag = field(default_factory=ProvenanceTag)
    limits: Limits = field(default_factory=Limits)
    work_dir: Path | None = None
    """Where archives are extracted (a temporary folder inside it); system temp if
    None."""
    labels: tuple[str, ...] = ()
    """How the report names each path, in order (default: the path itself)."""
    retry: RetryPolicy = field(default_factory=RetryPolicy)
    already_stored: frozenset[str] = frozenset()
    """SOP Instance UIDs stored by an earlier run: reported, not sent again."""


@dataclass(frozen=True, slots=True)
class Progress:
    """How far a send has come."""

    done: int
    total: int
    bytes_done: int
    bytes_total: int
    seconds: float


@dataclass(frozen=True, slots=True)
class RunResult:
    """The rows of a run and what stopped it, if anything did."""

    rows: tuple[Row, ...]
    seconds: float
    error: str | None = None
    """Why sending stopped early, if it did: no association could be opened, or
    the run was interrupted."""
    interrupted: bool = False
    """Stopped by Ctrl-C (the rows not yet sent say so)."""

    @property
    def summary(self) -> Summary:
        """Counts and speed."""
        return summarize(self.rows, self.seconds)

    @property
    def exit_status(self) -> ExitStatus:
        """INTERRUPTED if stopped by the user, else what the rows say."""
        if self.interrupted:
            return ExitStatus.INTERRUPTED
        return self.summary.exit_status


ProgressCallback = Callable[[Progress], None]
_NOT_SENT = "not sent"


def send(
    request: SendRequest, on_progress: ProgressCallback | None = None
) -> RunResult:
    """Send every DICOM instance found under the request's paths.

    Args:
        request: Inputs, receiver, settings.
        on_progress: Called after each instance has been sent (or failed).

    Returns:
        One row per input file, in input order.

    Raises:
        UsageError: An input does not exist, or the TLS settings cannot be used.
    """
    paths = check_paths(request.paths)
    client = Client(request.peer, request.association)  # TLS files checked here
    if request.association.tls is not None:
        for risk in risks(request.association.tls):
            log.warning("%s", risk)
    started = time.monotonic()
    with tempfile.TemporaryDirectory(
        prefix="dicom-send-", dir=request.work_dir
    ) as work:
        rows, items = _prepare(paths, Path(work), request)
        error = None
        interrupted = False
        if items:
            try:
                _send_items(
                    client,
                    request,
                    items,
                    rows,
                    started=started,
                    on_progress=on_progress,
                )
            except AssociationError as exc:
                error = str(exc)
                log.error("%s", error)
            except KeyboardInterrupt:
                interrupted = True
                error = "interrupted before it was sent"
            if error is not None:
                rows[:] = [
                    replace(row, reason=error) if row.reason == _NOT_SENT else row
                    for row in rows
                ]
    return RunResult(tuple(rows), time.monotonic() - started, error, interrupted)


def _prepare(
    paths: list[Path], work: Path, request: SendRequest
) -> tuple[list[Row], list[SendItem]]:
    """List and probe every input; rows for all, send items for the instances."""
    rows: list[Row] = []
    items: list[SendItem] = []
    seen: dict[str, str] = {}
    for entry in collect(paths, work, request.limits, request.labels):
        if isinstance(entry, InputProblem):
            rows.append(_problem(entry, entry.status, entry.reason))
            continue
        try:
            info = probe(entry.path, request.tag.group)
        except NotSendable as exc:
            rows.append(_problem(entry, InstanceStatus.SKIPPED, exc.reason))
            continue
        except MalformedDicomError as exc:
            rows.append(_problem(entry, InstanceStatus.FAILED, str(exc)))
            continue
        except OSError as exc:
            rows.append(_problem(entry, InstanceStatus.FAILED, f"cannot read: {exc}"))
            continue
        row = Row(
            entry.name,
            InstanceStatus.FAILED,
            _NOT_SENT,
            sop_instance_uid=info.sop_instance_uid,
            sop_class_uid=info.sop_class_uid,
            transfer_syntax=info.transfer_syntax,
            bytes=info.size,
            source=entry.source,
        )
        first = seen.get(info.sop_instance_uid)
        if first is not None:
            rows.append(
                replace(
                    row,
                    status=InstanceStatus.SKIPPED,
                    reason=f"duplicate SOP Instance UID of {first}",
                )
            )
            continue
        seen[info.sop_instance_uid] = entry.name
        if info.sop_instance_uid in request.already_stored:
            rows.append(
                replace(
                    row,
                    status=InstanceStatus.SENT,
                    reason="stored by an earlier run (resumed), not sent again",
                )
            )
            continue
        try:
            inserts = splice(info, request.tag) if info.streamable else None
        except TaggingError as exc:
            rows.append(replace(row, reason=str(exc)))
            continue
        items.append(SendItem(len(rows), entry.path, info, inserts))
        rows.append(row)
    return rows, items


def _problem(
    entry: InputFile | InputProblem, status: InstanceStatus, reason: str
) -> Row:
    return Row(entry.name, status, reason, source=entry.source)


def _send_items(
    client: Client,
    request: SendRequest,
    items: list[SendItem],
    rows: list[Row],
    *,
    started: float,
    on_progress: ProgressCallback | None,
) -> None:
    tls = request.association.tls
    log.info(
        "sending %d instances (%.1f MB) to %s%s",
        len(items),
        sum(item.size for item in items) / 1e6,
        request.peer,
        f" over TLS ({tls.profile.value})" if tls is not None else "",
    )
    try:
        _record(
            client,
            items,
            rows,
            started=started,
            on_progress=on_progress,
            tag=request.tag,
            retry=request.retry,
        )
    except KeyboardInterrupt:
        client.abort_all()  # else a negotiating association keeps the process alive
        raise


def _record(
    client: Client,
    items: list[SendItem],
    rows: list[Row],
    *,
    started: float,
    on_progress: ProgressCallback | None,
    tag: ProvenanceTag,
    retry: RetryPolicy,
) -> None:
    """Send the items and put each outcome in its row."""
    bytes_total = sum(item.size for item in items)
    bytes_done = 0
    outcomes = store_all(client, plan_batches(items), tag, Retrier(retry))
    for done, (item, outcome) in enumerate(outcomes, start=1):
        rows[item.index] = replace(
            rows[item.index],
            status=outcome.status,
            reason=outcome.reason,
            dimse_status=outcome.dimse_status,
            transfer_syntax=outcome.transfer_syntax or rows[item.index].transfer_syntax,
        )
        if outcome.status is InstanceStatus.FAILED:
            log.warning("%s: %s", rows[item.index].file, outcome.reason)
        bytes_done += item.size
        if on_progress is not None:
            on_progress(
                Progress(
                    done,
                    len(items),
                    bytes_done,
                    bytes_total,
                    time.monotonic() - started,
                )
            )
