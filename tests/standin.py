"""A small stand-in of the Flywheel API, for the real flywheel-sdk client to talk to.

A threaded ``http.server`` on 127.0.0.1, port 0. It holds one hierarchy in memory
(group, project, subjects, sessions, acquisitions, analyses, files), serves the calls
the gear makes, logs every request, and can be told to fail a file's downloads (an
HTTP status or a dropped connection) a number of times or for ever. Like cloud
storage, it can answer late (``latency``: seconds before every answer) and serve
each download stream at a set ``bandwidth`` (bytes per second).
"""

from __future__ import annotations

import email.parser
import email.policy
import itertools
import json
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import TracebackType
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

SECRET = "standin-secret-key"
DROP = "drop"
"""A fault: close the connection halfway through the body."""
_CHUNK = 65536
_PLURALS = {
    "groups": "group",
    "projects": "project",
    "subjects": "subject",
    "sessions": "session",
    "acquisitions": "acquisition",
    "analyses": "analysis",
}


@dataclass(frozen=True)
class Request:
    """One request as the stand-in saw it, and how it answered."""

    method: str
    path: str
    query: str
    status: int | str
    at: float = field(default_factory=time.monotonic)
    """When it was answered (``time.monotonic()``; a download: its last byte)."""


@dataclass(frozen=True)
class Upload:
    """A file uploaded to a container."""

    container_type: str
    container_id: str
    name: str
    content: bytes


@dataclass
class _Fault:
    answers: deque[int | str]
    forever: int | str | None = None


@dataclass
class StandIn:
    """The server's state; build the hierarchy with the methods, then ``start``."""

    containers: dict[str, dict[str, Any]] = field(default_factory=dict)
    blobs: dict[tuple[str, str], Path] = field(default_factory=dict)
    requests: list[Request] = field(default_factory=list)
    uploads: list[Upload] = field(default_factory=list)
    faults: dict[str, _Fault] = field(default_factory=dict)
    latency: float = 0.0
    """Seconds before every answer."""
    bandwidth: float | None = None
    """Bytes per second of each download stream (None: as fast as it goes)."""
    active: int = 0
    """Downloads being served now."""
    most_active: int = 0
    """The most downloads served at once."""
    _ids: itertools.count[int] = field(default_factory=lambda: itertools.count(1))
    _server: ThreadingHTTPServer | None = None
    _lock: threading.Lock = field(default_factory=threading.Lock)

    # -- the hierarchy -------------------------------------------------------------
    def _new(self, kind: str, label: str, parents: dict[str, str | None]) -> str:
        ident = f"{next(self._ids):024x}"
        self.containers[ident] = {
            "_id": ident,
            "label": label,
            "container_type": kind,
            "parents": parents,
            "files": [],
            "info": {},
            "created": "2026-11-22T10:00:00+00:00",
            "modified": "2026-11-22T10:00:00+00:00",
        }
        return ident

    def group(self, ident: str = "radiology") -> str:
        """Add a group (its id is its name)."""
        self.containers[ident] = {
            "_id": ident,
            "label": ident.title(),
            "container_type": "group",
            "parents": {},
            "files": [],
            "info": {},
        }
        return ident

    def project(self, group: str, label: str) -> str:
        """Add a project to a group."""
        return self._new("project", label, {"group": group})

    def subject(self, project: str, label: str) -> str:
        """Add a subject to a project."""
        parents = {**self.containers[project]["parents"], "project": project}
        ident = self._new("subject", label, parents)
        self.containers[ident]["code"] = label
        return ident

    def session(self, subject: str, label: str) -> str:
        """Add a session to a subject."""
        parents = {**self.containers[subject]["parents"], "subject": subject}
        ident = self._new("session", label, parents)
        sub = self.containers[subject]
        self.containers[ident]["subject"] = {
            "_id": subject,
            "label": sub["label"],
            "code": sub["label"],
        }
        return ident

    def acquisition(self, session: str, label: str) -> str:
        """Add an acquisition to a session."""
        parents = {**self.containers[session]["parents"], "session": session}
        return self._new("acquisition", label, parents)

    def analysis(self, parent: str, label: str = "dicom-send run") -> str:
        """Add an analysis under a container."""
        kind = self.containers[parent]["container_type"]
        parents = {**self.containers[parent]["parents"], kind: parent}
        ident = self._new("analysis", label, parents)
        self.containers[ident]["parent"] = {"type": kind, "id": parent}
        self.containers[ident]["inputs"] = []
        return ident

    def add_file(
        self, container: str, path: Path, name: str | None = None, kind: str = "dicom"
    ) -> dict[str, Any]:
        """Add a file (its bytes are read from ``path`` when downloaded)."""
        name = name or path.name
        ident = f"{next(self._ids):024x}"
        doc = self.containers[container]
        entry: dict[str, Any] = {
            "_id": ident,
            "file_id": ident,
            "name": name,
            "type": kind,
            "mimetype": "application/zip"
            if name.endswith(".zip")
            else "application/octet-stream",
            "modality": "CT",
            "size": path.stat().st_size,
            "hash": "0" * 32,
            "version": 1,
            "zip_member_count": None,
            "info": {},
            "tags": [],
            "classification": {},
            "parent_ref": {"type": doc["container_type"], "id": container},
            "created": "2026-11-22T10:00:00+00:00",
            "modified": "2026-11-22T10:00:00+00:00",
        }
        doc["files"].append(entry)
        self.blobs[container, name] = path
        return entry

    def fail(
        self, name: str, *answers: int | str, forever: int | str | None = None
    ) -> None:
        """Answer downloads of ``name`` with ``answers`` first (then ``forever``)."""
        self.faults[name] = _Fault(deque(answers), forever)

    # -- the server ----------------------------------------------------------------
    @property
    def port(self) -> int:
        """The port it listens on."""
        assert self._server is not None
        return int(self._server.server_address[1])

    @property
    def api_key(self) -> str:
        """An api-key that points the SDK at this server over plain HTTP."""
        return f"127.0.0.1:{self.port}:__force_insecure:{SECRET}"

    def downloads(self, name: str) -> list[Request]:
        """The download requests of one file, in order."""
        return [
            r
            for r in self.requests
            if r.method == "GET" and unquote(r.path).endswith(f"/files/{name}")
        ]

    def __enter__(self) -> StandIn:
        handler = type("Handler", (_Handler,), {"standin": self})
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self._server.daemon_threads = True
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        assert self._server is not None
        self._server.shutdown()
        self._server.server_close()

    def next_fault(self, name: str) -> int | str | None:
        """The fault to apply to this download of ``name``, if any."""
        with self._lock:
            fault = self.faults.get(name)
            if fault is None:
                return None
            if fault.answers:
                return fault.answers.popleft()
            return fault.forever


class _Handler(BaseHTTPRequestHandler):
    standin: StandIn
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:
        """Quiet: the stand-in keeps its own request log."""

    def _log(self, status: int | str) -> None:
        url = urlsplit(self.path)
        self.standin.requests.append(Request(self.command, url.path, url.query, status))

    def _json(self, body: Any, status: int = 200) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)
        self._log(status)

    def _error(self, status: int, message: str) -> None:
        self._json({"status_code": status, "message": message}, status)

    def do_GET(self) -> None:
        """Serve the reads."""
        time.sleep(self.standin.latency)
        if self.headers.get("Authorization") != f"scitran-user {SECRET}":
            self._error(401, "not authenticated")
            return
        url = urlsplit(self.path)
        parts = [unquote(p) for p in url.path.split("/") if p]
        query = parse_qs(url.query)
        match parts:
            case ["api", "auth", "status"]:
                self._json(
                    {
                        "origin": {"type": "user", "id": "gear@example.org"},
                        "user_id": "gear@example.org",
                        "user_is_admin": False,
                        "is_device": False,
                        "roles": [],
                    }
                )
            case ["api", "config"]:
                self._json({"features": {"signed_url": False}, "site": {}})
            case ["api", "version"]:
                self._json({"release": "23.0.0", "flywheel_release": "23.0.0"})
            case ["api", "containers", ident]:
                self._container(ident, None)
            case ["api", plural, ident] if plural in _PLURALS:
                self._container(ident, _PLURALS[plural])
            case ["api", "sessions", ident, "acquisitions"]:
                self._children(ident, "acquisition", "session")
            case ["api", "subjects", ident, "sessions"]:
                self._children(ident, "session", "subject")
            case ["api", "acquisitions", ident, "files", name]:
                if "info" in query:
                    self._error(400, "zip info is not served here")
                else:
                    self._download(ident, name)
            case _:
                self._error(404, f"no such endpoint: {url.path}")

    def do_POST(self) -> None:
        """Take uploads."""
        time.sleep(self.standin.latency)
        if self.headers.get("Authorization") != f"scitran-user {SECRET}":
            self._error(401, "not authenticated")
            return
        url = urlsplit(self.path)
        parts = [unquote(p) for p in url.path.split("/") if p]
        length = int(self.headers.get("Content-Length", "0"))
        body = self.rfile.read(length)
        match parts:
            case ["api", plural, ident, "files"] if plural in _PLURALS:
                self._upload(_PLURALS[plural], ident, body)
            case _:
                self._error(404, f"no such endpoint: {url.path}")

    def _container(self, ident: str, kind: str | None) -> None:
        doc = self.standin.containers.get(ident)
        if doc is None or (kind is not None and doc["container_type"] != kind):
            self._error(404, f"{kind or 'container'} {ident} not found")
            return
        self._json(doc)

    def _children(self, ident: str, kind: str, parent_kind: str) -> None:
        if ident not in self.standin.containers:
            self._error(404, f"{parent_kind} {ident} not found")
            return
        self._json(
            [
                doc
                for doc in self.standin.containers.values()
                if doc["container_type"] == kind
                and doc["parents"].get(parent_kind) == ident
            ]
        )

    def _download(self, ident: str, name: str) -> None:
        path = self.standin.blobs.get((ident, name))
        if path is None:
            self._error(404, f"file {name} not found")
            return
        fault = self.standin.next_fault(name)
        if isinstance(fault, int):
            self._error(fault, f"injected failure {fault}")
            return
        size = path.stat().st_size
        self.send_response(200)
        self.send_header("Content-Type", "application/octet-stream")
        self.send_header("Content-Length", str(size))
        self.end_headers()
        # Streamed from disk; a DROP fault cuts the body off halfway.
        remaining = size // 2 if fault == DROP else size
        standin = self.standin
        with standin._lock:
            standin.active += 1
            standin.most_active = max(standin.most_active, standin.active)
        try:
            started, sent = time.monotonic(), 0
            with open(path, "rb") as f:
                while remaining > 0:
                    chunk = f.read(min(_CHUNK, remaining))
                    if not chunk:
                        break
                    self.wfile.write(chunk)
                    remaining -= len(chunk)
                    sent += len(chunk)
                    if standin.bandwidth:
                        due = started + sent / standin.bandwidth
                        time.sleep(max(0.0, due - time.monotonic()))
        finally:
            with standin._lock:
                standin.active -= 1
        if fault == DROP:
            self.wfile.flush()
            self.close_connection = True
        self._log(fault or 200)

    def _upload(self, kind: str, ident: str, body: bytes) -> None:
        if ident not in self.standin.containers:
            self._error(404, f"{kind} {ident} not found")
            return
        head = f"Content-Type: {self.headers['Content-Type']}\r\n\r\n".encode()
        message = email.parser.BytesParser(policy=email.policy.HTTP).parsebytes(
            head + body
        )
        entries = []
        for part in message.iter_parts():
            filename = part.get_filename()
            if part.get_param("name", header="content-disposition") != "file":
                continue
            content = part.get_payload(decode=True)
            assert isinstance(content, bytes) and filename
            self.standin.uploads.append(Upload(kind, ident, filename, content))
            entries.append({"name": filename, "size": len(content)})
        self._json(entries)
