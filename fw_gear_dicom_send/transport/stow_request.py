"""The STOW-RS request: instances as Part 10 parts of one streamed multipart POST.

Each part is the instance as a Part 10 file: a file meta header made for it, then
the file's own data set bytes with the provenance element spliced in, exactly as
C-STORE sends them. The body is streamed with a Content-Length computed
beforehand, from a 1 MB buffer: a batch is never in memory, whatever its size.
"""

import http.client
import os
import secrets
import ssl
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass

from ..dicom.provenance import ProvenanceTag
from .outcome import SendItem
from .peer import StowSettings
from .wire import Payload

_CRLF = b"\r\n"
_BUFFER = 1 << 20
_MAX_RESPONSE = 64 << 20
MAX_BATCH_BYTES = 256 << 20


@dataclass(frozen=True, slots=True)
class Part:
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
    """A preamble, ``DICM`` and a file meta group naming the item in its syntax."""
    # pydicom only once sending starts: ``dicom-send`` starts without it.
    from ..dicom.transcode import part10_header  # noqa: PLC0415

    info = item.info
    return part10_header(
        info.sop_class_uid, info.sop_instance_uid, item.transfer_syntax
    )


def _decoded(item: SendItem, tag: ProvenanceTag) -> bytes:
    """The file decoded, tagged and encoded again in its syntax, after a header.

    For deflated files, and files whose bytes contradict their syntax.
    """
    from ..dicom.transcode import decoded_payload  # noqa: PLC0415 - see _part10_header

    syntax = item.transfer_syntax
    data, _ = decoded_payload(item.path, syntax, syntax, tag)
    return _part10_header(item) + data


def part_of(item: SendItem, tag: ProvenanceTag) -> Part:
    """The item as a part of a request.

    Raises:
        OSError: The file is gone, unreadable, or not the size it was probed at.
    """
    if item.inserts is None:
        whole = _decoded(item, tag)
        return Part(item, whole, streamed=False, length=len(whole), note="decoded")
    if os.stat(item.path).st_size != item.info.size:
        raise OSError("file changed since it was probed")
    head = _part10_header(item)
    data = item.info.dataset_length + sum(len(d) for _, d in item.inserts)
    return Part(item, head, streamed=True, length=len(head) + data)


class Connection:
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

    def post(self, parts: Sequence[Part]) -> tuple[int, str, dict[str, str], bytes]:
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


def batches(items: Iterable[SendItem], size: int) -> Iterator[list[SendItem]]:
    """Items in order, ``size`` at a time and at most 256 MB a batch (at least one)."""
    batch: list[SendItem] = []
    total = 0
    for item in items:
        if batch and (len(batch) >= size or total + item.size > MAX_BATCH_BYTES):
            yield batch
            batch, total = [], 0
        batch.append(item)
        total += item.size
    if batch:
        yield batch
