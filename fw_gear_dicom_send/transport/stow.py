"""DICOMweb STOW-RS: the transport for receivers that speak no DIMSE.

Instances go in batches, each one POST of a ``multipart/related;
type="application/dicom"`` body to ``{url}/studies`` (PS3.18 10.5), streamed
(:mod:`.stow_request`); each instance's outcome comes from the response
(:mod:`.stow_response`). Any other answer than 200, 202 or 409 fails the whole
batch with its HTTP status. 5xx, 429 and broken connections are retried with
back-off while the retry budget lasts (:mod:`.attempts`), honouring Retry-After
as far as the budget goes; a stop asked for ends these waits at once.
Requests run in parallel, one keep-alive connection per thread. TLS (https)
verifies the server by default, with the same CA options as DIMSE.
"""

import http.client
import logging
import socket
import ssl
import threading
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, replace

from .. import stopping
from ..dicom.provenance import ProvenanceTag
from ..status import InstanceStatus
from .attempts import Attempts, pause
from .feed import Gap, ThreadFeed
from .interface import Ended, Events
from .outcome import Outcome, SendItem
from .peer import StowSettings
from .retry import Retrier, Retry
from .stow_request import MAX_BATCH_BYTES, Connection, Part, batches, part_of
from .stow_response import (
    ALL_STORED,
    NONE_STORED,
    SOME_STORED,
    parse_response,
    retry_after,
)
from .tls import TlsSettings
from .tls_context import client_context
from .tls_diagnosis import speaks_tls

log = logging.getLogger(__name__)

_TOO_MANY_REQUESTS = 429
_SERVER_ERROR = 500
_TLS_PROBE_TIMEOUT = 5.0
_LOST_REQUEST = "a connection broke after the request went out"
"""What an ambiguous attempt of STOW-RS was, in the report."""


class Stow:
    """The transport of STOW-RS: batches of instances, several requests at once.

    Args:
        settings: Where and how.
        tag: The provenance element.
        retrier: The run's retry budget.

    Raises:
        UsageError: The TLS settings cannot be used.
    """

    def __init__(
        self, settings: StowSettings, tag: ProvenanceTag, retrier: Retrier
    ) -> None:
        self._settings = settings
        self._batches = _Batches(settings, tag, retrier, stopping.requested)

    def send(self, items: Iterable[SendItem], events: Events) -> Ended:
        """Send every item as it arrives; tell each final outcome as its batch ends.

        Items go in requests of ``batch`` (:func:`.stow_request.batches` for a
        sequence). Items that arrive one by one are gathered into a request
        until it is full, or until none more came for :data:`GATHER` seconds
        while a request could go (fewer than ``parallel`` under way), or the
        input ends: the server is never left idle while items wait. At most
        ``parallel`` requests are under way at once.

        A stop asked for (:mod:`~fw_gear_dicom_send.stopping`) starts no further
        request; those under way are answered first, and those waiting to be
        tried again are not (not sent; or said to be sent, if an earlier request
        of theirs broke after it went out). Interrupted at once, the items of the
        requests under way are said to be sent (the server may have stored
        them).

        Raises:
            KeyboardInterrupt: Interrupted at once.
        """
        settings = self._settings
        under_way: deque[tuple[Future[_Answers], list[SendItem]]] = deque()
        try:
            with ThreadPoolExecutor(
                max_workers=settings.parallel, thread_name_prefix="stow"
            ) as pool:
                try:
                    for batch in self._gathered(items, under_way, events):
                        while len(under_way) >= settings.parallel:
                            _report(under_way.popleft()[0], events)
                        if stopping.requested():
                            break
                        under_way.append(
                            (pool.submit(self._batches.send, batch), batch)
                        )
                    while under_way:
                        _report(under_way.popleft()[0], events)
                except KeyboardInterrupt:
                    for future, batch in under_way:
                        future.cancel()
                        if future.running():
                            for item in batch:
                                events.sent(item)
                    raise
        finally:
            self._batches.close()
        return Ended()

    def _gathered(
        self,
        items: Iterable[SendItem],
        under_way: "deque[tuple[Future[_Answers], list[SendItem]]]",
        events: Events,
    ) -> Iterator[list[SendItem]]:
        """The requests' batches, as the items arrive; answers told meanwhile."""
        size = self._settings.batch
        if isinstance(items, Sequence):
            yield from batches(items, size)
            return
        feed = ThreadFeed(items, stopping.requested)
        batch: list[SendItem] = []
        total = 0
        while True:
            while under_way and under_way[0][0].done():
                _report(under_way.popleft()[0], events)
            got = feed.take(GATHER)
            if got is Gap.END:
                break
            if got is Gap.IDLE:
                if batch and len(under_way) < self._settings.parallel:
                    yield batch
                    batch, total = [], 0
                continue
            assert not isinstance(got, Gap)
            if batch and total + got.size > MAX_BATCH_BYTES:
                yield batch
                batch, total = [], 0
            batch.append(got)
            total += got.size
            if len(batch) >= size:
                yield batch
                batch, total = [], 0
        if batch:
            yield batch


GATHER = 0.05
"""Seconds without a new item after which a partial request goes, if it can."""


def _report(future: "Future[_Answers]", events: Events) -> None:
    """Wait for a request's answers; tell each item's."""
    answers = future.result()
    for item, outcome in answers.outcomes:
        events.outcome(item, outcome)
    for item in answers.maybe_stored:
        events.sent(item)


@dataclass(frozen=True, slots=True)
class _Answers:
    """What became of a batch's items."""

    outcomes: list[tuple[SendItem, Outcome]]
    """The final outcome of each item that has one: all, unless a stop came."""
    maybe_stored: list[SendItem]
    """Items a stop left without one whose earlier request may have reached the
    server (its connection broke after the request went out)."""


class _Batches:
    """Sends batches over per-thread connections, retrying what may work later.

    Args:
        settings: Where and how.
        tag: The provenance element.
        retrier: The run's retry budget.
        stop: Whether to stop: once true, nothing is tried again (nor waited for).
    """

    def __init__(
        self,
        settings: StowSettings,
        tag: ProvenanceTag,
        retrier: Retrier,
        stop: Callable[[], bool],
    ) -> None:
        self._settings = settings
        self._tag = tag
        self._retrier = retrier
        self._stop = stop
        self._lock = threading.Lock()
        self._local = threading.local()
        self._context = (
            client_context(settings.tls or TlsSettings())
            if settings.endpoint.scheme == "https"
            else None
        )
        self._connections: list[Connection] = []

    def _connection(self) -> Connection:
        conn: Connection | None = getattr(self._local, "conn", None)
        if conn is None:
            conn = Connection(self._settings, self._context)
            self._local.conn = conn
            with self._lock:
                self._connections.append(conn)
        return conn

    def close(self) -> None:
        """Close every connection."""
        for conn in self._connections:
            conn.close()

    def send(self, batch: list[SendItem]) -> _Answers:
        """Send one batch until every item has a final outcome, or a stop comes.

        A stop ends the wait before another request; the items waiting for it
        get no outcome.
        """
        attempts = Attempts(self._retrier, lost=_LOST_REQUEST)
        final: dict[int, Outcome] = {}
        pending = list(batch)
        while pending:
            outcomes, asked = self._attempt(pending)
            again = []
            longest = 0.0
            for item in pending:
                verdict = attempts.judge(item, outcomes[item.index])
                if verdict.wait is None:
                    final[item.index] = verdict.outcome
                else:
                    again.append(item)
                    longest = max(longest, verdict.wait)
            pending = again
            if again:
                longest = max(longest, attempts.asked_wait(asked))
                log.warning(
                    "STOW-RS to %s: %s; trying %d instances again in %.1f s",
                    self._settings,
                    outcomes[again[0].index].reason,
                    len(again),
                    longest,
                )
                if pause(longest, self._stop):
                    break
        return _Answers(
            [(item, final[item.index]) for item in batch if item.index in final],
            [item for item in pending if attempts.may_have_arrived(item)],
        )

    def _attempt(
        self, items: list[SendItem]
    ) -> tuple[dict[int, Outcome], float | None]:
        """One request; each item's outcome, and the wait the server asked for."""
        parts = []
        outcomes: dict[int, Outcome] = {}
        for item in items:
            try:
                parts.append(part_of(item, self._tag))
            except OSError as exc:  # one file, not the batch
                reason = f"cannot read: {exc.strerror or exc}"
                outcomes[item.index] = Outcome(InstanceStatus.FAILED, None, reason)
            except Exception as exc:  # pydicom cannot decode it
                outcomes[item.index] = Outcome(
                    InstanceStatus.FAILED, None, f"cannot re-encode: {exc}"
                )
        if not parts:
            return outcomes, None
        try:
            status, reason, headers, body = self._connection().post(parts)
        except ssl.SSLCertVerificationError as exc:
            why = _describe_untrusted(str(self._settings), exc)
            return _all(parts, outcomes, why, Retry.FINAL), None
        except ssl.SSLError as exc:  # a handshake that will fail again
            why = f"TLS with {self._settings} failed: {exc.reason or exc}"
            return _all(parts, outcomes, why, Retry.FINAL), None
        except (ConnectionRefusedError, socket.gaierror) as exc:
            url = self._settings.endpoint
            why = f"cannot connect to {url.hostname}:{url.port or url.scheme} "
            return _all(parts, outcomes, why + f"({exc.strerror})", Retry.FINAL), None
        except (OSError, http.client.HTTPException) as exc:
            url = self._settings.endpoint
            host, port = url.hostname or "", url.port or 80
            if url.scheme == "http" and speaks_tls(host, port, _TLS_PROBE_TIMEOUT):
                why = f"the server at {host}:{port} speaks TLS: use an https URL"
                return _all(parts, outcomes, why, Retry.FINAL), None
            # The request may have gone out whole before the connection broke.
            why = f"connection to {self._settings} broke ({exc or type(exc).__name__})"
            return _all(parts, outcomes, why, Retry.AMBIGUOUS), None
        if status in (ALL_STORED, SOME_STORED, NONE_STORED):
            found = parse_response(
                status, body, [p.item.info.sop_instance_uid for p in parts]
            )
            for part in parts:
                outcome = replace(
                    found[part.item.info.sop_instance_uid],
                    transfer_syntax=part.item.transfer_syntax,
                )
                if part.note and outcome.status.stored:
                    outcome = replace(
                        outcome,
                        reason="; ".join(x for x in (outcome.reason, part.note) if x),
                    )
                outcomes[part.item.index] = outcome
            return outcomes, None
        transient = status == _TOO_MANY_REQUESTS or status >= _SERVER_ERROR
        why = f"HTTP {status} {reason}".rstrip()
        retry = Retry.TRANSIENT if transient else Retry.FINAL
        return _all(parts, outcomes, why, retry), retry_after(
            headers
        ) if transient else None


def _describe_untrusted(endpoint: str, exc: ssl.SSLCertVerificationError) -> str:
    why = exc.verify_message or exc.reason or str(exc)
    return (
        f"the certificate of {endpoint} is not trusted: {why}; add the CA that "
        "issued it (--tls-ca)"
    )


def _all(
    parts: Sequence[Part], outcomes: dict[int, Outcome], reason: str, retry: Retry
) -> dict[int, Outcome]:
    for part in parts:
        outcomes[part.item.index] = Outcome(
            InstanceStatus.FAILED, None, reason, retry=retry
        )
    return outcomes
