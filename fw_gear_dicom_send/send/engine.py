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
from typing import TYPE_CHECKING

from .. import stopping
from ..dicom.probe import DicomInfo, NotSendable, dataset_digest, probe
from ..dicom.provenance import ProvenanceTag, TaggingError, splice
from ..errors import AssociationError, MalformedDicomError, UsageError
from ..settings import DEFAULT_ASSOCIATIONS
from ..status import ExitStatus, InstanceStatus
from ..transport.contexts import plan_batches
from ..transport.outcome import Outcome, SendItem
from ..transport.peer import AssociationSettings, Peer, StowSettings
from ..transport.retry import Retrier, RetryPolicy
from ..transport.tls import risks
from ..transport.tls_context import client_context
from ..transport.workers import Job, Sender, split
from .budget import Limits
from .inputs import InputFile, InputProblem, check_paths, collect
from .report import Row, Summary, summarize

if TYPE_CHECKING:
    from ..transport.association import Client

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class SendRequest:
    """Everything a send needs."""

    paths: tuple[Path, ...]
    peer: Peer | None = None
    """The DIMSE receiver (C-STORE); or ``stow`` instead."""
    association: AssociationSettings = field(default_factory=AssociationSettings)
    tag: ProvenanceTag = field(default_factory=ProvenanceTag)
    limits: Limits = field(default_factory=Limits)
    work_dir: Path | None = None
    """Where archives are extracted (a temporary folder inside it); system temp if
    None."""
    labels: tuple[str, ...] = ()
    """How the report names each path, in order (default: the path itself)."""
    retry: RetryPolicy = field(default_factory=RetryPolicy)
    associations: int = DEFAULT_ASSOCIATIONS
    """Associations at once (worker processes); fewer for small sends."""
    already_stored: frozenset[str] = frozenset()
    """SOP Instance UIDs stored by an earlier run: reported, not sent again."""
    skip_existing: bool = False
    """Ask the receiver first (C-FIND) and send only what it does not hold."""
    verify: bool = False
    """Afterwards, ask the receiver (C-FIND) whether it holds every instance
    stored; an instance it does not show makes the run incomplete."""
    stow: StowSettings | None = None
    """Send by DICOMweb STOW-RS instead of C-STORE."""

    def __post_init__(self) -> None:
        if (self.peer is None) == (self.stow is None):
            raise UsageError("send to a DIMSE receiver or by STOW-RS: one of the two")
        if self.stow is not None and (self.verify or self.skip_existing):
            raise UsageError("verify and skip-existing ask a DIMSE receiver (C-FIND)")


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
    """Stopped by SIGINT or SIGTERM (:mod:`~fw_gear_dicom_send.stopping`); the rows
    not sent say so, and the entry point says which signal in its exit status."""

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


class _Connections:
    """How this send reaches the receiver: a client here, a sender process.

    Each is made when first needed, and this process imports pynetdicom and pydicom
    only for a client of its own: a send over one association, ``verify`` and
    ``skip_existing``. A send over several associations goes through a
    :class:`.workers.Sender`, best started before the files are
    listed and probed.
    """

    def __init__(self, request: SendRequest, sender: Sender | None) -> None:
        self._request = request
        self._client: Client | None = None
        self._sender = sender

    def client(self) -> "Client":
        """A client in this process (pynetdicom's AE is set up on the first call)."""
        if self._client is None:
            from ..transport.association import Client  # noqa: PLC0415 - see the class

            assert self._request.peer is not None
            self._client = Client(self._request.peer, self._request.association)
        return self._client

    def sender(self) -> Sender:
        """The sender process."""
        if self._sender is None:
            self._sender = Sender()
        return self._sender

    def close(self) -> None:
        """Let the sender process go, if there is one."""
        if self._sender is not None:
            self._sender.close()


_ITEMS_PER_WORKER = 16
_LARGE_INPUT = 32 << 20
_NOT_SENT = "not sent"


def maybe_stored(cause: str) -> str:
    """The reason of an instance whose data went out and whose answer never came."""
    return (
        f"{cause} after its data went out, before the answer: the receiver may "
        "have stored it (not counted as stored)"
    )


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
    # TLS files are checked here, before anything is sent.
    stow_tls = request.stow.tls if request.stow is not None else None
    for tls in (request.association.tls if request.peer else None, stow_tls):
        if tls is not None:
            client_context(tls)
    if request.peer is not None and request.association.tls is not None:
        for risk in risks(request.association.tls):
            log.warning("%s", risk)
    # Started first, the sender process imports pynetdicom while we list and probe.
    connections = _Connections(
        request, Sender() if _likely_parallel(request, paths) else None
    )
    try:
        return _run(request, paths, connections, on_progress)
    finally:
        connections.close()


def _run(
    request: SendRequest,
    paths: list[Path],
    connections: _Connections,
    on_progress: ProgressCallback | None,
) -> RunResult:
    """List, probe, send (and verify): the rows of every input file."""
    started = time.monotonic()
    with tempfile.TemporaryDirectory(
        prefix="dicom-send-", dir=request.work_dir
    ) as work:
        rows: list[Row] = []
        items: list[SendItem] = []
        error = None
        interrupted = False
        try:
            _prepare(paths, Path(work), request, rows, items)
            if stopping.requested():
                raise stopping.Interrupted(stopping.received())
            if request.skip_existing and items and request.peer is not None:
                items = _skip_existing(connections.client(), rows, items)
        except KeyboardInterrupt:
            interrupted = True
            items = []
        recorder = _Recorder(rows, items, started, on_progress)
        if items:
            try:
                if request.stow is not None:
                    _stow_items(request.stow, request, items, recorder)
                elif request.peer is not None:
                    _send_items(
                        connections,
                        request.peer,
                        request,
                        items,
                        rows=rows,
                        recorder=recorder,
                    )
            except AssociationError as exc:
                error = str(exc)
                log.error("%s", error)
            except KeyboardInterrupt:
                interrupted = True
        if interrupted:
            error = stopping.INTERRUPTED
        for index in recorder.in_flight:  # went out, never answered
            row = rows[index]
            if row.reason != _NOT_SENT:
                cause = row.reason
            else:
                cause = "interrupted" if interrupted else error or "no answer"
            rows[index] = replace(row, reason=maybe_stored(cause))
        if error is not None:
            rows[:] = [
                replace(row, reason=error) if row.reason == _NOT_SENT else row
                for row in rows
            ]
        stored = any(r.status.stored for r in rows)
        if request.verify and request.peer is not None and stored and not interrupted:
            from .verify import verify_rows  # noqa: PLC0415 - see _Connections

            try:
                rows[:] = verify_rows(connections.client(), rows)
            except KeyboardInterrupt:
                interrupted = True
        stopping.settle()
    return RunResult(tuple(rows), time.monotonic() - started, error, interrupted)


def _likely_parallel(request: SendRequest, paths: list[Path]) -> bool:
    """Whether the send will likely go over several associations.

    A few small files go over one association; a folder, many files or a large
    file (an archive, probably) likely over several.
    """
    if request.peer is None or request.associations < 2:
        return False
    if len(paths) >= 2 * _ITEMS_PER_WORKER:
        return True
    return any(
        not path.is_file() or path.stat().st_size >= _LARGE_INPUT for path in paths
    )


def _prepare(
    paths: list[Path],
    work: Path,
    request: SendRequest,
    rows: list[Row] | None = None,
    items: list[SendItem] | None = None,
) -> tuple[list[Row], list[SendItem]]:
    """List and probe every input: a row for each, a send item for each instance.

    A stop asked for ends the listing: the rows are those of the files listed
    (appended to ``rows`` and ``items`` as they come, if given).
    """
    rows = [] if rows is None else rows
    items = [] if items is None else items
    seen: dict[str, _First] = {}
    for entry in collect(paths, work, request.limits, request.labels):
        if stopping.requested():
            break
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
            study_instance_uid=info.study_instance_uid,
            series_instance_uid=info.series_instance_uid,
        )
        first = seen.get(info.sop_instance_uid)
        if first is not None:
            rows.append(_duplicate(row, first, str(entry.path), info))
            continue
        seen[info.sop_instance_uid] = _First(entry.name, str(entry.path), info)
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
        items.append(SendItem(len(rows), str(entry.path), info, inserts))
        rows.append(row)
    return rows, items


class _First:
    """The first file seen with a SOP Instance UID; its digest made when needed."""

    __slots__ = ("_digest", "info", "name", "path")

    def __init__(self, name: str, path: str, info: DicomInfo) -> None:
        self.name = name
        self.path = path
        self.info = info
        self._digest: bytes | None = None

    def digest(self) -> bytes:
        """The digest of its data set (OSError: it cannot be read)."""
        if self._digest is None:
            self._digest = dataset_digest(self.path, self.info)
        return self._digest


def _duplicate(row: Row, first: _First, path: str, info: DicomInfo) -> Row:
    """The row of a file whose SOP Instance UID an earlier file has.

    The same data set is skipped; another data set under the same UID fails, as
    the receiver would keep only one of the two.
    """
    try:
        same = info.dataset_length == first.info.dataset_length and (
            dataset_digest(path, info) == first.digest()
        )
    except OSError as exc:
        return replace(row, reason=f"cannot read: {exc}")
    if same:
        return replace(
            row,
            status=InstanceStatus.SKIPPED,
            reason=f"duplicate SOP Instance UID of {first.name}",
        )
    conflict = replace(
        row,
        reason=f"duplicate SOP Instance UID of {first.name} with a different data "
        "set: not sent (the receiver would keep only one of them)",
    )
    log.warning("%s: %s", conflict.file, conflict.reason)
    return conflict


def _skip_existing(
    client: "Client", rows: list[Row], items: list[SendItem]
) -> list[SendItem]:
    """Ask the receiver what it holds; mark those rows, keep the others to send.

    If the receiver cannot be asked, everything is sent (and the log says why).
    """
    from ..pacs.query import QueryError  # noqa: PLC0415 - see _Connections
    from .verify import present  # noqa: PLC0415

    try:
        held = present(client, (rows[item.index] for item in items))
    except (AssociationError, QueryError) as exc:
        log.warning("cannot ask the receiver what it holds (%s): sending all", exc)
        return items
    for item in items:
        if item.info.sop_instance_uid in held:
            rows[item.index] = replace(
                rows[item.index],
                status=InstanceStatus.SENT,
                reason="already on the receiver (C-FIND), not sent again",
            )
    log.info("%d of %d instances are already on the receiver", len(held), len(items))
    return [item for item in items if item.info.sop_instance_uid not in held]


def _problem(
    entry: InputFile | InputProblem, status: InstanceStatus, reason: str
) -> Row:
    return Row(entry.name, status, reason, source=entry.source)


def _stow_items(
    stow: StowSettings,
    request: SendRequest,
    items: list[SendItem],
    recorder: "_Recorder",
) -> None:
    log.info(
        "sending %d instances (%.1f MB) by STOW-RS to %s, %d per request, "
        "%d requests at once",
        len(items),
        sum(item.size for item in items) / 1e6,
        stow,
        stow.batch,
        stow.parallel,
    )
    from ..transport.stow import store_all  # noqa: PLC0415 - http.client, only for STOW-RS

    store_all(stow, items, request.tag, request.retry, recorder, on_sent=recorder.sent)
    if stopping.requested():
        raise stopping.Interrupted(stopping.received())


def _send_items(
    connections: _Connections,
    peer: Peer,
    request: SendRequest,
    items: list[SendItem],
    *,
    rows: list[Row],
    recorder: "_Recorder",
) -> None:
    tls = request.association.tls
    workers = min(request.associations, max(1, len(items) // _ITEMS_PER_WORKER))
    log.info(
        "sending %d instances (%.1f MB) to %s%s%s",
        len(items),
        sum(item.size for item in items) / 1e6,
        peer,
        f" over TLS ({tls.profile.value})" if tls is not None else "",
        f" on {workers} associations at once" if workers > 1 else "",
    )
    if workers == 1:
        from ..transport.cstore import store_all  # noqa: PLC0415 - see _Connections

        client = connections.client()
        try:
            outcomes = store_all(
                client,
                plan_batches(items),
                request.tag,
                Retrier(request.retry),
                stop=stopping.requested,
                on_sent=recorder.sent,
            )
            for item, outcome in outcomes:
                recorder(item, outcome)
        except KeyboardInterrupt:
            client.abort_all()  # else a negotiating association keeps us alive
            raise
        if stopping.requested():
            raise stopping.Interrupted(stopping.received())
        return
    shares = split(items, workers)
    levels = tuple(
        (name, logging.getLogger(name).getEffectiveLevel())
        for name in ("fw_gear_dicom_send", "pynetdicom")
    )
    jobs = [
        Job(
            number,
            peer,
            request.association,
            request.tag,
            request.retry,
            tuple(share),
            levels,
        )
        for number, share in enumerate(shares, start=1)
    ]
    stopped = connections.sender().run(jobs, recorder, recorder.sent)
    if stopping.requested():  # what was not sent was interrupted, however it ended
        raise stopping.Interrupted(stopping.received())
    if stopped:
        for job in jobs:
            why = stopped.get(job.number)
            if why is None:
                continue
            for item in job.items:
                if rows[item.index].reason == _NOT_SENT:
                    rows[item.index] = replace(rows[item.index], reason=why)
        raise AssociationError(next(iter(stopped.values())))


class _Recorder:
    """Puts each outcome in its row, logs failures, reports progress."""

    def __init__(
        self,
        rows: list[Row],
        items: list[SendItem],
        started: float,
        on_progress: ProgressCallback | None,
    ) -> None:
        self._rows = rows
        self._started = started
        self._on_progress = on_progress
        self._total = len(items)
        self._bytes_total = sum(item.size for item in items)
        self._done = 0
        self._bytes_done = 0
        self.in_flight: set[int] = set()
        """Rows whose data went out and whose outcome has not come."""

    def sent(self, item: SendItem) -> None:
        """Note that an item's data went out: the receiver may store it now."""
        self.in_flight.add(item.index)

    def __call__(self, item: SendItem, outcome: Outcome) -> None:
        """Record one outcome."""
        self.in_flight.discard(item.index)
        row = self._rows[item.index]
        self._rows[item.index] = replace(
            row,
            status=outcome.status,
            reason=outcome.reason,
            dimse_status=outcome.dimse_status,
            transfer_syntax=outcome.transfer_syntax or row.transfer_syntax,
        )
        if outcome.status is InstanceStatus.FAILED:
            log.warning("%s: %s", row.file, outcome.reason)
        self._done += 1
        self._bytes_done += item.size
        if self._on_progress is not None:
            self._on_progress(
                Progress(
                    self._done,
                    self._total,
                    self._bytes_done,
                    self._bytes_total,
                    time.monotonic() - self._started,
                )
            )
