"""A STOW-RS endpoint on 127.0.0.1 that answers as it is told, for the tests.

It reads each multipart body as it streams in (never whole), keeps the instances'
UIDs and provenance values (not the files), and answers per instance: stored,
stored with a warning, or failed with a FailureReason; or the whole request with an
HTTP error, for the first N requests.
"""

import http.server
import io
import json
import re
import ssl
import threading
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any, Self

from pydicom import dcmread

_BOUNDARY = re.compile(r'boundary="?([^";]+)"?')


@dataclass
class Request:
    """What one request carried."""

    status: int
    uids: list[str]
    authorization: str | None
    content_length: int


@dataclass
class StowServer:
    """Answers STOW-RS requests on a free port of 127.0.0.1.

    Args:
        errors: HTTP statuses (with Retry-After seconds, or None) for the first
            requests; then it stores.
        fail: SOP Instance UID -> FailureReason, failed every time.
        warn: SOP Instance UID -> WarningReason.
        tls: A server-side TLS context (https).
        token: Require ``Authorization: Bearer <token>`` (401 otherwise).
        discard: Read each body in 1 MB pieces and keep nothing (for large
            instances); answer 200 with an empty data set.
        keep: Keep each part's bytes exactly as they came (``parts``).
    """

    errors: Iterable[tuple[int, float | None]] = ()
    fail: dict[str, int] = field(default_factory=dict)
    warn: dict[str, int] = field(default_factory=dict)
    tls: ssl.SSLContext | None = None
    token: str | None = None
    discard: bool = False
    keep: bool = False
    requests: list[Request] = field(default_factory=list)
    stored: dict[str, str | None] = field(default_factory=dict)
    """SOP Instance UID -> the provenance value (0021,xx00) it carried."""
    parts: list[bytes] = field(default_factory=list)
    """With ``keep``: every part's content, in order of arrival."""

    def __post_init__(self) -> None:
        self._errors = deque(self.errors)
        self._lock = threading.Lock()
        server = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: Any) -> None:
                pass

            def do_POST(self) -> None:
                server._post(self)

        self._httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._httpd.daemon_threads = True
        if self.tls is not None:
            self._httpd.socket = self.tls.wrap_socket(
                self._httpd.socket, server_side=True
            )

    @property
    def url(self) -> str:
        scheme = "https" if self.tls is not None else "http"
        return f"{scheme}://127.0.0.1:{self._httpd.server_address[1]}/dicom-web"

    def __enter__(self) -> Self:
        threading.Thread(target=self._httpd.serve_forever, daemon=True).start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()

    def _post(self, handler: http.server.BaseHTTPRequestHandler) -> None:
        length = int(handler.headers.get("Content-Length", "0"))
        auth = handler.headers.get("Authorization")
        if self.discard:
            left = length
            while left:
                left -= len(handler.rfile.read(min(left, 1 << 20)))
            self._answer(handler, 200, b"{}", {})
            self._log(200, [], auth, length)
            return
        uids = self._read_parts(handler, length, self.parts if self.keep else None)
        with self._lock:
            error = self._errors.popleft() if self._errors else None
        if self.token is not None and auth != f"Bearer {self.token}":
            error = (401, None)
        if error is not None:
            status, retry_after = error
            headers = {"Retry-After": str(retry_after)} if retry_after else {}
            self._answer(handler, status, b"", headers)
            self._log(status, uids, auth, length)
            return
        referenced, failed = [], []
        for uid, provenance in uids:
            if uid in self.fail:
                failed.append(_item(uid, "00081197", self.fail[uid]))
                continue
            item = (
                _item(uid, "00081196", self.warn[uid])
                if uid in self.warn
                else _item(uid)
            )
            referenced.append(item)
            with self._lock:
                self.stored[uid] = provenance
        body: dict[str, Any] = {}
        if referenced:
            body["00081199"] = {"vr": "SQ", "Value": referenced}
        if failed:
            body["00081198"] = {"vr": "SQ", "Value": failed}
        status = 200 if not failed else 202 if referenced else 409
        self._answer(handler, status, json.dumps(body).encode(), {})
        self._log(status, uids, auth, length)

    def _log(
        self,
        status: int,
        uids: list[tuple[str, str | None]],
        auth: str | None,
        length: int,
    ) -> None:
        with self._lock:
            self.requests.append(Request(status, [u for u, _ in uids], auth, length))

    @staticmethod
    def _answer(
        handler: http.server.BaseHTTPRequestHandler,
        status: int,
        body: bytes,
        headers: dict[str, str],
    ) -> None:
        handler.send_response(status)
        handler.send_header("Content-Type", "application/dicom+json")
        handler.send_header("Content-Length", str(len(body)))
        for name, value in headers.items():
            handler.send_header(name, value)
        handler.end_headers()
        handler.wfile.write(body)

    @staticmethod
    def _read_parts(
        handler: http.server.BaseHTTPRequestHandler,
        length: int,
        kept: list[bytes] | None = None,
    ) -> list[tuple[str, str | None]]:
        """Each part's SOP Instance UID and provenance value, read as it streams."""
        match = _BOUNDARY.search(handler.headers.get("Content-Type", ""))
        assert match, handler.headers.get("Content-Type")
        delimiter = b"\r\n--" + match.group(1).encode()
        data = b"\r\n" + handler.rfile.read(length)  # small test instances
        parts = data.split(delimiter)[1:-1]
        found = []
        for part in parts:
            _, _, content = part.partition(b"\r\n\r\n")
            if kept is not None:
                kept.append(content)
            ds = dcmread(io.BytesIO(content), stop_before_pixels=True)
            try:
                provenance = ds.get_private_item(0x0021, 0x00, "Flywheel").value
            except KeyError:
                provenance = None
            found.append((str(ds.SOPInstanceUID), provenance))
        return found


def _item(uid: str, reason_tag: str | None = None, reason: int = 0) -> dict[str, Any]:
    item: dict[str, Any] = {
        "00081150": {"vr": "UI", "Value": ["1.2.840.10008.5.1.4.1.1.2"]},
        "00081155": {"vr": "UI", "Value": [uid]},
    }
    if reason_tag is not None:
        item[reason_tag] = {"vr": "US", "Value": [reason]}
    return item
