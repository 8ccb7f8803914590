"""The send engine: inputs -> probed, tagged instances -> transport -> a row per file.

Used by the command line and the gear alike. The inputs are listed, extracted and
probed while the transport sends (:mod:`.pipeline`): one transport
(:mod:`~fw_gear_dicom_send.transport.interface`, picked by :mod:`.connections`)
takes the items as they come, C-STORE in this process over one association,
worker processes over several, or STOW-RS, and each file is deleted from the
work folder once its instances' outcomes are final, so that the work folder holds
at most ``work_budget`` bytes (:mod:`.room`). With ``skip_existing`` everything is
listed first, then the receiver asked (C-FIND), then the rest sent. The outcomes
are kept by item (:class:`.tally.Tally`) and the rows made once the send has
ended (:func:`.tally.account`), then verified if asked.
"""

import itertools
import logging
import tempfile
import time
from collections.abc import Iterable
from pathlib import Path

from .. import stopping
from ..transport.interface import Ended
from ..transport.outcome import Outcome, SendItem
from ..transport.processes import Sender
from ..transport.tls import risks
from ..transport.tls_context import client_context
from ..transport.workers import ITEMS_PER_WORKER
from .connections import Connections, transport_for
from .early import likely_parallel
from .inputs import check_paths
from .pipeline import Fetcher, Pipeline
from .plan import skip_existing
from .report import Row
from .request import (
    ProgressCallback,
    RunResult,
    SendRequest,
)
from .room import Room
from .tally import Tally, account, maybe_stored

log = logging.getLogger(__name__)


__all__ = ["maybe_stored", "send"]


def send(
    request: SendRequest,
    on_progress: ProgressCallback | None = None,
    fetcher: Fetcher | None = None,
    *,
    sender: Sender | None = None,
) -> RunResult:
    """Send every DICOM instance found under the request's paths.

    Args:
        request: Inputs, receiver, settings.
        on_progress: Called after each instance has been sent (or failed).
        fetcher: Brings the inputs to ``request.paths`` first (the gear's
            downloads); an input it cannot bring has no rows.
        sender: A sender process started for this request already
            (:func:`.early.started`); closed once the send is done. Without one,
            the send starts its own if it likely goes over several associations.

    Returns:
        One row per input file, in input order.

    Raises:
        UsageError: An input does not exist, the TLS settings cannot be used,
            or Storage Commitment was asked of a receiver that does not offer it.
    """
    connections = Connections(request, sender)
    try:
        paths = _checked(request, fetcher)
        if sender is None and likely_parallel(request, paths):
            # Started first, it imports pynetdicom while we list and probe.
            connections.sender()
        return _run(request, paths, connections, on_progress, fetcher)
    finally:
        connections.close()


def _checked(request: SendRequest, fetcher: Fetcher | None) -> list[Path]:
    """The inputs, once the request is checked (before anything is sent).

    Raises:
        UsageError: See :func:`send`.
    """
    paths = list(request.paths) if fetcher is not None else check_paths(request.paths)
    # TLS files are checked here, before anything is sent.
    stow_tls = request.stow.tls if request.stow is not None else None
    for tls in (request.association.tls if request.peer else None, stow_tls):
        if tls is not None:
            client_context(tls)
    if request.peer is not None and request.association.tls is not None:
        for risk in risks(request.association.tls):
            log.warning("%s", risk)
    if request.commit is not None:  # before anything is sent (or downloaded)
        from .commit import check_commitment  # noqa: PLC0415 - pynetdicom

        check_commitment(request)
    return paths


def _run(
    request: SendRequest,
    paths: list[Path],
    connections: Connections,
    on_progress: ProgressCallback | None,
    fetcher: Fetcher | None,
) -> RunResult:
    """List, probe and send (and verify): the rows of every input file."""
    started = time.monotonic()
    with tempfile.TemporaryDirectory(
        prefix="dicom-send-", dir=request.work_dir
    ) as work:
        first = request.skip_existing and request.peer is not None
        room = Room(None if first else request.work_budget)
        pipeline = Pipeline(request, paths, Path(work), room, fetcher)
        tally = Tally(pipeline.rows, (), started, on_progress, pipeline.release)
        held: dict[int, Outcome] = {}
        ended = Ended()
        interrupted = False
        try:
            try:
                feed: Pipeline | list[SendItem] = pipeline
                if first:
                    held = _list_first(pipeline, connections, tally)
                    feed = [i for i in pipeline.items if i.index not in held]
                else:
                    pipeline.on_item = tally.add
                    pipeline.start()
                ended = _send(request, connections, feed, tally)
                if stopping.requested():  # what was not sent was interrupted
                    raise stopping.Interrupted(stopping.received())
            except KeyboardInterrupt:
                interrupted = True
            finally:
                pipeline.finish(interrupted=interrupted)
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
            pipeline.rows,
            pipeline.items,
            {**held, **tally.outcomes},
            tally.in_flight,
            ended,
            error=error,
            interrupted=interrupted,
        )
        if not interrupted:
            rows, interrupted = _after(request, connections, rows)
        stopping.settle()
    return RunResult(
        tuple(rows), time.monotonic() - started, error, interrupted, ended.associations
    )


def _after(
    request: SendRequest, connections: Connections, rows: list[Row]
) -> tuple[list[Row], bool]:
    """After the send: verify, then ask for Storage Commitment, if asked.

    Returns:
        The rows, with what the receiver said; whether a stop interrupted it.
    """
    if request.peer is None or not any(r.status.stored for r in rows):
        return rows, False
    try:
        if request.verify:
            from .verify import verify_rows  # noqa: PLC0415 - see Connections

            rows = verify_rows(connections.client(), rows)
        if request.commit is not None:
            from .commit import commit_rows  # noqa: PLC0415 - see Connections

            rows = commit_rows(connections.client(), rows, request.commit)
    except KeyboardInterrupt:
        return rows, True
    return rows, False


def _list_first(
    pipeline: Pipeline, connections: Connections, tally: Tally
) -> dict[int, Outcome]:
    """List everything, then ask the receiver what it holds (``skip_existing``)."""
    pipeline.run()
    if stopping.requested():
        raise stopping.Interrupted(stopping.received())
    held = {}
    if pipeline.items:
        held = skip_existing(connections.client(), pipeline.rows, pipeline.items)
    for item in pipeline.items:
        if item.index in held:
            pipeline.release(item)
        else:
            tally.add(item)
    return held


def _send(
    request: SendRequest,
    connections: Connections,
    feed: Pipeline | list[SendItem],
    tally: Tally,
) -> Ended:
    """Send what the feed brings, once it brings something.

    What is listed within a moment is taken first (:meth:`.Pipeline.peek`), or
    for a send over several associations what is listed until it is enough to
    give each association its share. If that is all, or that much, its count
    decides the transport as for a list (the rest then comes as it goes);
    otherwise the transport decides for items that come as they go.
    """
    # This many items give each association its share: the count decides, and
    # the listing is not waited for any longer. Over one association or by STOW-RS
    # it decides nothing: what comes within the lead is taken.
    deciding = ITEMS_PER_WORKER * request.most_associations
    by_count = request.peer is not None and request.most_associations > 1
    if isinstance(feed, list):
        head, whole = feed, True
    else:
        head, whole = feed.peek(deciding if by_count else None)
    if not head:
        return Ended()
    items: Iterable[SendItem] = head
    if not whole:
        items = itertools.chain(head, feed)
    enough = whole or len(head) >= deciding
    chosen = transport_for(
        request, connections, head if enough else items, listing=not whole
    )
    return chosen.send(items, tally)
