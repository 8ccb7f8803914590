"""DICOMweb STOW-RS: the second transport, for receivers that speak no DIMSE.

Instances go in batches, each one POST of a ``multipart/related;
type="application/dicom"`` body to ``{url}/studies`` (PS3.18 10.5). Each part is
the instance as a Part 10 file: a file meta header made for it, then the file's own
data set bytes with the provenance element spliced in, exactly as C-STORE sends
them. The body is streamed with a Content-Length computed beforehand, from a 1 MB
buffer: a batch is never in memory, whatever its size.

Why the standard library's ``http.client`` and not dicomweb-client or httpx:
dicomweb-client's ``store_instances`` takes decoded pydicom datasets and encodes
the whole multipart body in memory (a 630 MB instance would need twice that), and
it cannot send a file's bytes as they lie; httpx would stream a generator body but
adds five packages for what one keep-alive connection per thread does here.

Per-instance results come from the response (``application/dicom+json``):
ReferencedSOPSequence items are stored (with WarningReason: a warning),
FailedSOPSequence items failed, with FailureReason in hex and words. HTTP 200 means
all were stored; 202 some; 409 none; any other error fails the whole batch with its
HTTP status. 5xx, 429 and broken connections are retried with back-off while the
retry budget lasts, honouring Retry-After. Requests run in parallel, one keep-alive
connection per thread. TLS (https) verifies the server by default, with the same CA
options as DIMSE.
"""

import http.client
import json
import logging
import os
import secrets
import socket
import ssl
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, replace
from email.utils import parsedate_to_datetime

from .. import stopping
from ..dicom.provenance import ProvenanceTag, tag_dataset
from ..dicom.statuses import Service, describe
from ..status import InstanceStatus
from .outcome import Outcome, SendItem, outcome_of_status, with_history
from .peer import StowSettings
from .retry import Retrier, Retry, RetryPolicy
from .tls import TlsSettings
from .tls_context import client_context
from .tls_diagnosis import speaks_tls
from .wire import Payload

log = logging.getLogger(__name__)

__all__ = [
    "parse_response",
    "store_all",
]

_CRLF = b"\r\n"
_BUFFER = 1 << 20
_MAX_RESPONSE = 64 << 20
_MAX_BATCH_BYTES = 256 << 20
_REFERENCED_SOP_SEQUENCE = "00081199"
_FAILED_SOP_SEQUENCE = "00081198"
_REFERENCED_SOP_INSTANCE_UID = "00081155"
_FAILURE_REASON = "00081197"
_WARNING_REASON = "00081196"
_ALL_STORED = 200
_SOME_STORED = 202
_NONE_STORED = 409
_TOO_MANY_REQUESTS = 429
_SERVER_ERROR = 500
_MAX_RETRY_AFTER = 300.0
_TLS_PROBE_TIMEOUT = 5.0
_TRANSIENT_REASONS = frozenset({0x0110})


def _sequence(body: dict[str, object], tag: str) -> list[dict[str, object]]:
    element = body.get(tag)
    if not isinstance(element, dict):
        return []
    value = element.get("Value")
    return (
        [item for item in value if isinstance(item, dict)]
        if isinstance(value, list)
        else []
    )


def _first(item: dict[str, object], tag: str) -> object:
    element = item.get(tag)
    if isinstance(element, dict) and isinstance(element.get("Value"), list):
        values = element["Value"]
        return values[0] if values else None
    return None


def parse_response(status: int, body: bytes, uids: Sequence[str]) -> dict[str, Outcome]:
    """The outcome of each instance of a batch from a STOW-RS response.

    Args:
        status: The HTTP status (200, 202 or 409).
        body: The response body (``application/dicom+json``).
        uids: The SOP Instance UIDs of the batch.
    """
    try:
        parsed = json.loads(body) if body.strip() else {}
    except ValueError:
        parsed = {}
    if isinstance(parsed, list):  # some servers wrap the data set in an array
        parsed = parsed[0] if parsed and isinstance(parsed[0], dict) else {}
    if not isinstance(parsed, dict):
        parsed = {}
    outcomes: dict[str, Outcome] = {}
    for item in _sequence(parsed, _REFERENCED_SOP_SEQUENCE):
        uid = _first(item, _REFERENCED_SOP_INSTANCE_UID)
        warning = _first(item, _WARNING_REASON)
        if isinstance(warning, int) and warning:
            outcomes[str(uid)] = Outcome(
                InstanceStatus.WARNING,
                warning,
                f"warning {describe(warning, Service.STOW)}",
            )
        else:
            outcomes[str(uid)] = Outcome(InstanceStatus.SENT, 0x0000)
    for item in _sequence(parsed, _FAILED_SOP_SEQUENCE):
        uid = _first(item, _REFERENCED_SOP_INSTANCE_UID)
        reason = _first(item, _FAILURE_REASON)
        code = reason if isinstance(reason, int) else None
        if code is None:
            outcomes[str(uid)] = Outcome(
                InstanceStatus.FAILED, None, "refused (no FailureReason given)"
            )
        else:
            dimse = outcome_of_status(code)
            retry = Retry.TRANSIENT if code in _TRANSIENT_REASONS else dimse.retry
            outcomes[str(uid)] = Outcome(
                InstanceStatus.FAILED,
                code,
                f"refused: {describe(code, Service.STOW)}",
                retry=retry,
            )
    result = {}
    for uid in uids:
        if uid in outcomes:
            result[uid] = outcomes[uid]
        elif status == _ALL_STORED:  # 200: every instance was stored
            result[uid] = Outcome(InstanceStatus.SENT, 0x0000)
        else:
            result[uid] = Outcome(
                InstanceStatus.FAILED,
                None,
                f"not in the STOW-RS response (HTTP {status})",
            )
    return result


@dataclass(frozen=True, slots=True)
class _Part:
    """One instance of a request: its Part 10 header and its data set."""

    item: SendItem
    head: bytes
    """Preamble, DICM and file meta; or the whole file when it was decoded."""
    streamed: bool
    """Whether the data set follows from the file (else ``head`` is all)."""
    length: int
    """Bytes of the part's content."""
    note: str = ""


def _part10_header(item: SendItem) -> bytes:
    """A preamble, ``DICM`` and a file meta group naming the item."""
    # pydicom only once sending starts: ``dicom-send`` starts without it.
    from pydicom.dataset import FileMetaDataset  # noqa: PLC0415
    from pydicom.filebase import DicomBytesIO  # noqa: PLC0415
    from pydicom.filewriter import write_file_meta_info  # noqa: PLC0415
    from pydicom.uid import PYDICOM_IMPLEMENTATION_UID, UID  # noqa: PLC0415

    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = UID(item.sop_class_uid)
    meta.MediaStorageSOPInstanceUID = UID(item.info.sop_instance_uid)
    meta.TransferSyntaxUID = UID(item.transfer_syntax)
    meta.ImplementationClassUID = PYDICOM_IMPLEMENTATION_UID
    out = DicomBytesIO()
    out.is_little_endian = True
    out.is_implicit_VR = False
    out.write(b"\x00" * 128 + b"DICM")
    write_file_meta_info(out, meta, enforce_standard=True)
    return out.getvalue()


def _decoded(item: SendItem, tag: ProvenanceTag) -> bytes:
    """The file decoded, tagged and encoded again in its syntax, after a header.

    For deflated files, and files whose bytes contradict their syntax.
    """
    from ..dicom.transcode import (  # noqa: PLC0415 - see _part10_header
        encode,
        group_length_offsets,
        read_dataset,
    )

    ds = read_dataset(item.path)
    offsets = group_length_offsets(ds)
    tag_dataset(ds, tag)
    return _part10_header(item) + encode(ds, item.transfer_syntax, offsets)


def _part(item: SendItem, tag: ProvenanceTag) -> _Part:
    """The item as a part of a request.

    Raises:
        OSError: The file is gone, unreadable, or not the size it was probed at.
    """
    if item.inserts is None:
        whole = _decoded(item, tag)
        return _Part(item, whole, streamed=False, length=len(whole), note="decoded")
    if os.stat(item.path).st_size != item.info.size:
        raise OSError("file changed since it was probed")
    head = _part10_header(item)
    data = item.info.dataset_length + sum(len(d) for _, d in item.inserts)
    return _Part(item, head, streamed=True, length=len(head) + data)


class _Connection:
    """One keep-alive HTTP(S) connection; remade after any error."""

    def __init__(self, settings: StowSettings, context: ssl.SSLContext | None) -> None:
        self._settings = settings
        self._context = context
        self._conn: http.client.HTTPConnection | None = None
        self._buffer = memoryview(bytearray(_BUFFER))

    def _open(self) -> http.client.HTTPConnection:
        if self._conn is None:
            url = self._settings.endpoint
            host, port = url.hostname or "", url.port
            if url.scheme == "https":
                self._conn = http.client.HTTPSConnection(
                    host, port, timeout=self._settings.timeout, context=self._context
                )
            else:
                self._conn = http.client.HTTPConnection(
                    host, port, timeout=self._settings.timeout
                )
        return self._conn

    def close(self) -> None:
        """Close the connection (a later request opens a new one)."""
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    def post(self, parts: Sequence[_Part]) -> tuple[int, str, dict[str, str], bytes]:
        """Stream one multipart request.

        Returns:
            The response's status, reason phrase, headers and body.

        Raises:
            OSError, http.client.HTTPException: The connection broke.
        """
        boundary = secrets.token_hex(16)
        separator = f"--{boundary}\r\nContent-Type: application/dicom\r\n\r\n".encode()
        closing = f"--{boundary}--\r\n".encode()
        length = sum(len(separator) + p.length + len(_CRLF) for p in parts)
        length += len(closing)
        url = self._settings.endpoint
        conn = self._open()
        try:
            conn.putrequest("POST", url.path + (f"?{url.query}" if url.query else ""))
            conn.putheader(
                "Content-Type",
                f'multipart/related; type="application/dicom"; boundary={boundary}',
            )
            conn.putheader("Content-Length", str(length))
            conn.putheader("Accept", "application/dicom+json")
            if self._settings.auth is not None:
                conn.putheader("Authorization", self._settings.auth.header)
            conn.endheaders()
            for part in parts:
                conn.send(separator + part.head)
                if part.streamed:
                    self._send_data_set(conn, part.item)
                conn.send(_CRLF)
            conn.send(closing)
            response = conn.getresponse()
            body = response.read(_MAX_RESPONSE)
            if not response.isclosed():  # more than we read: do not reuse it
                self.close()
            headers = {k.lower(): v for k, v in response.getheaders()}
            if response.will_close:
                self.close()
            return response.status, response.reason, headers, body
        except BaseException:
            self.close()
            raise

    def _send_data_set(self, conn: http.client.HTTPConnection, item: SendItem) -> None:
        info = item.info
        with open(item.path, "rb", buffering=0) as f:
            payload = Payload(f, info.dataset_offset, info.size, item.inserts or ())
            remaining = payload.length
            while remaining:
                n = payload.readinto(self._buffer[: min(_BUFFER, remaining)])
                if not n:
                    raise OSError("file changed while being sent (shorter than probed)")
                conn.send(self._buffer[:n])
                remaining -= n


def batches(items: Sequence[SendItem], size: int) -> Iterator[list[SendItem]]:
    """Items in order, ``size`` at a time and at most 256 MB a batch (at least one)."""
    batch: list[SendItem] = []
    total = 0
    for item in items:
        if batch and (len(batch) >= size or total + item.size > _MAX_BATCH_BYTES):
            yield batch
            batch, total = [], 0
        batch.append(item)
        total += item.size
    if batch:
        yield batch


def _retry_after(headers: dict[str, str]) -> float | None:
    value = headers.get("retry-after")
    if not value:
        return None
    try:
        seconds = float(value)
    except ValueError:
        try:
            seconds = parsedate_to_datetime(value).timestamp() - time.time()
        except (TypeError, ValueError):
            return None
    return min(max(seconds, 0.0), _MAX_RETRY_AFTER)


class _Sender:
    """Sends batches over per-thread connections, retrying what may work later."""

    def __init__(
        self, settings: StowSettings, tag: ProvenanceTag, retrier: Retrier
    ) -> None:
        self._settings = settings
        self._tag = tag
        self._retrier = retrier
        self._lock = threading.Lock()
        self._local = threading.local()
        self._context = (
            client_context(settings.tls or TlsSettings())
            if settings.endpoint.scheme == "https"
            else None
        )
        self._connections: list[_Connection] = []

    def _connection(self) -> _Connection:
        conn: _Connection | None = getattr(self._local, "conn", None)
        if conn is None:
            conn = _Connection(self._settings, self._context)
            self._local.conn = conn
            with self._lock:
                self._connections.append(conn)
        return conn

    def close(self) -> None:
        """Close every connection."""
        for conn in self._connections:
            conn.close()

    def send(self, batch: list[SendItem]) -> list[tuple[SendItem, Outcome]]:
        """Send one batch until every item has a final outcome."""
        final: dict[int, Outcome] = {}
        earlier: dict[int, list[Outcome]] = {}
        waits: dict[int, Iterator[float]] = {}
        pending = list(batch)
        while pending:
            outcomes, wait_at_least = self._attempt(pending)
            again = []
            longest = 0.0
            for item in pending:
                outcome = outcomes[item.index]
                if outcome.retry is Retry.FINAL:
                    final[item.index] = outcome
                    continue
                it = waits.setdefault(item.index, self._retrier.waits())
                wait = next(it, None)
                if wait is None:  # the budget is spent: this outcome is final
                    final[item.index] = outcome
                    continue
                earlier.setdefault(item.index, []).append(outcome)
                again.append(item)
                longest = max(longest, wait, wait_at_least or 0.0)
            if again:
                log.warning(
                    "STOW-RS to %s: %s; trying %d instances again in %.1f s",
                    self._settings,
                    outcomes[again[0].index].reason,
                    len(again),
                    longest,
                )
                time.sleep(longest)
            pending = again
        for index, outcome in final.items():  # each told its attempts once, here
            if outcome.status.stored:
                self._retrier.stored()
            final[index] = _history(outcome, earlier.get(index, []))
        return [(item, final[item.index]) for item in batch]

    def _attempt(
        self, items: list[SendItem]
    ) -> tuple[dict[int, Outcome], float | None]:
        """One request; each item's outcome, and the wait the server asked for."""
        parts = []
        outcomes: dict[int, Outcome] = {}
        for item in items:
            try:
                parts.append(_part(item, self._tag))
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
        if status in (_ALL_STORED, _SOME_STORED, _NONE_STORED):
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
        return _all(parts, outcomes, why, retry), _retry_after(
            headers
        ) if transient else None


def _history(outcome: Outcome, earlier: list[Outcome]) -> Outcome:
    return with_history(
        outcome, earlier, lost="a connection broke after the request went out"
    )


def _describe_untrusted(endpoint: str, exc: ssl.SSLCertVerificationError) -> str:
    why = exc.verify_message or exc.reason or str(exc)
    return (
        f"the certificate of {endpoint} is not trusted: {why}; add the CA that "
        "issued it (--tls-ca)"
    )


def _all(
    parts: Sequence[_Part], outcomes: dict[int, Outcome], reason: str, retry: Retry
) -> dict[int, Outcome]:
    for part in parts:
        outcomes[part.item.index] = Outcome(
            InstanceStatus.FAILED, None, reason, retry=retry
        )
    return outcomes


def store_all(
    settings: StowSettings,
    items: Sequence[SendItem],
    tag: ProvenanceTag,
    policy: RetryPolicy,
    on_outcome: Callable[[SendItem, Outcome], None],
    *,
    on_sent: Callable[[SendItem], None] | None = None,
) -> None:
    """Send every item by STOW-RS; report each final outcome as batches finish.

    A stop asked for (:mod:`~fw_gear_dicom_send.stopping`) cancels the batches
    not yet started; those under way are answered first.

    Args:
        settings: Where and how.
        items: What.
        tag: The provenance element.
        policy: The retry policy.
        on_outcome: Called with each item's final outcome.
        on_sent: Called, when interrupted at once, for each item of a request
            under way (the server may have stored it).

    Raises:
        UsageError: The TLS settings cannot be used.
    """
    sender = _Sender(settings, tag, Retrier(policy))
    try:
        with ThreadPoolExecutor(
            max_workers=settings.parallel, thread_name_prefix="stow"
        ) as pool:
            futures: dict[Future[list[tuple[SendItem, Outcome]]], list[SendItem]] = {
                pool.submit(sender.send, batch): batch
                for batch in batches(items, settings.batch)
            }

            def cancel() -> None:
                for future in futures:
                    future.cancel()

            stop = stopping.on_request(cancel)
            try:
                for future in futures:
                    if future.cancelled():
                        continue
                    for item, outcome in future.result():
                        on_outcome(item, outcome)
            except KeyboardInterrupt:
                cancel()
                for future, batch in futures.items():
                    if future.running() and on_sent is not None:
                        for item in batch:
                            on_sent(item)
                raise
            finally:
                stop()
    finally:
        sender.close()
