"""The send engine: inputs -> probed, tagged instances -> transport -> a row per file.

Used by the command line and the gear alike. Nothing is sent until every input has
been listed and probed (:mod:`.plan`): that is when the presentation contexts are
known, and it lets bad input be reported before the first association. Then one
transport (:mod:`~fw_gear_dicom_send.transport.interface`, picked by
:mod:`.connections`) sends the items: C-STORE in this process over one
association, worker processes over several, or STOW-RS. The outcomes are kept by
item (:class:`.tally.Tally`) and the rows made once the send has ended
(:func:`.tally.account`), then verified if asked.
"""

import logging
import tempfile
import time
from pathlib import Path

from .. import stopping
from ..transport.interface import Ended
from ..transport.outcome import Outcome, SendItem
from ..transport.processes import Sender
from ..transport.tls import risks
from ..transport.tls_context import client_context
from .connections import Connections, likely_parallel, transport_for
from .inputs import check_paths
from .plan import prepare, skip_existing
from .report import Row
from .request import (
    ProgressCallback,
    RunResult,
    SendRequest,
)
from .tally import Tally, account, maybe_stored

log = logging.getLogger(__name__)

__all__ = ["maybe_stored", "send"]


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
    connections = Connections(
        request, Sender() if likely_parallel(request, paths) else None
    )
    try:
        return _run(request, paths, connections, on_progress)
    finally:
        connections.close()


def _run(
    request: SendRequest,
    paths: list[Path],
    connections: Connections,
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
                ended = transport_for(request, connections, to_send).send(
                    to_send, tally
                )
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
            from .verify import verify_rows  # noqa: PLC0415 - see Connections

            try:
                rows = verify_rows(connections.client(), rows)
            except KeyboardInterrupt:
                interrupted = True
        if request.commit is not None and stored and not interrupted:
            from .commit import commit_rows  # noqa: PLC0415 - see Connections

            try:
                rows = commit_rows(connections.client(), rows, request.commit)
            except KeyboardInterrupt:
                interrupted = True
        stopping.settle()
    return RunResult(
        tuple(rows), time.monotonic() - started, error, interrupted, ended.associations
    )
