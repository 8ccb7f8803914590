"""The send engine: inputs -> probed, tagged instances -> transport -> a row per file.

Used by the command line and the gear alike. Nothing is sent until every input has
been listed and probed (:mod:`.plan`): that is when the presentation contexts are
known, and it lets bad input be reported before the first association. Then one
transport (:mod:`~fw_gear_dicom_send.transport.interface`) sends the items:
C-STORE in this process over one association, worker processes over several, or
STOW-RS. The outcomes are
kept by item (:class:`.tally.Tally`) and the rows made once the send has ended
(:func:`.tally.account`), then verified if asked.
"""

import logging
import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING

from .. import stopping
from ..transport.interface import Ended, Transport
from ..transport.outcome import Outcome, SendItem
from ..transport.processes import Sender
from ..transport.retry import Retrier
from ..transport.tls import risks
from ..transport.tls_context import client_context
from ..transport.workers import Workers
from .inputs import check_paths
from .plan import prepare, skip_existing
from .report import Row
from .request import (
    ProgressCallback,
    RunResult,
    SendRequest,
)
from .tally import Tally, account, maybe_stored

if TYPE_CHECKING:
    from ..transport.association import Client

log = logging.getLogger(__name__)

__all__ = ["maybe_stored", "send"]

_ITEMS_PER_WORKER = 16
_LARGE_INPUT = 32 << 20


class _Connections:
    """How this send reaches the receiver: a client here, a sender process.

    Each is made when first needed, and this process imports pynetdicom and pydicom
    only for a client of its own: a send over one association, ``verify`` and
    ``skip_existing``. A send over several associations goes through a
    :class:`~fw_gear_dicom_send.transport.processes.Sender`, best started before
    the files are listed and probed.
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
        held: dict[int, Outcome] = {}
        interrupted = False
        try:
            prepare(paths, Path(work), request, rows, items)
            if stopping.requested():
                raise stopping.Interrupted(stopping.received())
            if request.skip_existing and items and request.peer is not None:
                held = skip_existing(connections.client(), rows, items)
        except KeyboardInterrupt:
            interrupted = True
        to_send = [item for item in items if item.index not in held]
        tally = Tally(rows, to_send, started, on_progress)
        ended = Ended()
        if to_send and not interrupted:
            try:
                ended = _transport(request, connections, to_send).send(to_send, tally)
                if stopping.requested():  # what was not sent was interrupted
                    raise stopping.Interrupted(stopping.received())
            except KeyboardInterrupt:
                interrupted = True
        error: str | None
        if interrupted:
            ended, error = Ended(), stopping.INTERRUPTED
        else:
            error = ended.error
            if error is not None:
                log.error("%s", error)
        rows = account(
            rows,
            items,
            {**held, **tally.outcomes},
            tally.in_flight,
            ended,
            error=error,
            interrupted=interrupted,
        )
        stored = any(r.status.stored for r in rows)
        if request.verify and request.peer is not None and stored and not interrupted:
            from .verify import verify_rows  # noqa: PLC0415 - see _Connections

            try:
                rows = verify_rows(connections.client(), rows)
            except KeyboardInterrupt:
                interrupted = True
        stopping.settle()
    return RunResult(tuple(rows), time.monotonic() - started, error, interrupted)


def _transport(
    request: SendRequest, connections: _Connections, items: list[SendItem]
) -> Transport:
    """The transport for the request: STOW-RS, or C-STORE here or in workers."""
    size = sum(item.size for item in items) / 1e6
    if request.stow is not None:
        stow = request.stow
        log.info(
            "sending %d instances (%.1f MB) by STOW-RS to %s, %d per request, "
            "%d requests at once",
            len(items),
            size,
            stow,
            stow.batch,
            stow.parallel,
        )
        from ..transport.stow import Stow  # noqa: PLC0415 - http.client, for STOW-RS

        return Stow(stow, request.tag, Retrier(request.retry))
    assert request.peer is not None
    tls = request.association.tls
    workers = min(request.associations, max(1, len(items) // _ITEMS_PER_WORKER))
    log.info(
        "sending %d instances (%.1f MB) to %s%s%s",
        len(items),
        size,
        request.peer,
        f" over TLS ({tls.profile.value})" if tls is not None else "",
        f" on {workers} associations at once" if workers > 1 else "",
    )
    if workers == 1:
        from ..transport.cstore import CStore  # noqa: PLC0415 - see _Connections

        return CStore(connections.client(), request.tag, Retrier(request.retry))
    return Workers(
        connections.sender(),
        peer=request.peer,
        association=request.association,
        tag=request.tag,
        retry=request.retry,
        workers=workers,
    )


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
