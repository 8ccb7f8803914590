"""A receiver in front of a receiver: a limit on associations at once, a far PACS.

:class:`LimitingProxy` forwards each connection to a receiver on 127.0.0.1 and,
as a PACS that limits associations per AE title does, answers an association
request beyond ``limit`` connections at once with A-ASSOCIATE-RJ rejected-transient,
service-provider (presentation), local limit exceeded: the answer pynetdicom's
``AE.maximum_associations`` gives (``tests/test_limited.py`` checks they read
alike). With ``delay``, everything the receiver says is held that long (each
C-STORE answered late, as by a far PACS). In front of DCMTK ``storescp --fork`` it
makes fast receivers of both kinds for the tests and ``bench/adaptive.py``.

Forwarding costs little CPU: the sender's bytes go socket to socket through a
pipe with ``splice(2)`` (no copy into this process), one thread per direction.
"""

import contextlib
import fcntl
import os
import queue
import socket
import struct
import threading
import time
from types import TracebackType

from faults import TRANSIENT_REJECT

_CHUNK = 1 << 20
PERMANENT_REJECT = bytes([0x03, 0, 0, 0, 0, 4, 0, 1, 1, 1])
"""A-ASSOCIATE-RJ: rejected-permanent (1), service user (1), no reason given (1)."""


def _read_pdu(sock: socket.socket) -> bytes:
    """One whole PDU (header and body), or what came before the peer hung up."""
    data = b""
    while len(data) < 6 or len(data) < 6 + struct.unpack(">I", data[2:6])[0]:
        chunk = sock.recv(_CHUNK)
        if not chunk:
            break
        data += chunk
    return data


def splice_all(src: socket.socket, dst: socket.socket) -> None:
    """Move bytes from src to dst until src ends, through a pipe (no user copy).

    The pipe holds up to a megabyte where the system allows it (Linux's default
    is 64 KiB): a large instance then crosses in a few calls, not dozens, so the
    proxy costs this machine less CPU, as a real network would cost it none.
    """
    read_end, write_end = os.pipe()
    with contextlib.suppress(OSError):  # a lower fs.pipe-max-size: the default
        fcntl.fcntl(write_end, fcntl.F_SETPIPE_SZ, _CHUNK)
    try:
        while moved := os.splice(src.fileno(), write_end, _CHUNK):
            while moved:
                moved -= os.splice(read_end, dst.fileno(), moved)
    finally:
        os.close(read_end)
        os.close(write_end)


def copy_late(src: socket.socket, dst: socket.socket, delay: float) -> None:
    """Copy src to dst, each piece ``delay`` seconds after it came.

    A delay line, as a long network is: the pieces are read as they come and each
    goes out when its time is due, so a PDU the receiver writes in two pieces
    (DCMTK writes a C-STORE answer's PDU header and its data apart) is late by
    ``delay`` once, not once per piece.
    """
    due: queue.SimpleQueue[tuple[float, bytes] | None] = queue.SimpleQueue()

    def send_due() -> None:
        with contextlib.suppress(OSError):
            while (piece := due.get()) is not None:
                when, data = piece
                if (wait := when - time.monotonic()) > 0:
                    time.sleep(wait)
                dst.sendall(data)

    sender = threading.Thread(target=send_due, daemon=True)
    sender.start()
    try:
        while data := src.recv(_CHUNK):
            due.put((time.monotonic() + delay, data))
    finally:
        due.put(None)
        sender.join()


def pump(src: socket.socket, dst: socket.socket, delay: float) -> None:
    """Forward one direction (``delay`` seconds late, else spliced), then shut both."""
    with contextlib.suppress(OSError):
        if delay:
            copy_late(src, dst, delay)
        else:
            splice_all(src, dst)
    for sock in (src, dst):
        with contextlib.suppress(OSError):
            sock.shutdown(socket.SHUT_RDWR)


class LimitingProxy:
    """A proxy to ``127.0.0.1:target`` taking ``limit`` connections at once.

    Args:
        target: The receiver's port.
        limit: Connections forwarded at once; beyond, association requests are
            rejected as transient (local limit exceeded). None: no limit.
        delay: Seconds to hold what the receiver says.
        rejection: The answer beyond ``limit``; :data:`PERMANENT_REJECT` makes a
            receiver that refuses one more for good.
    """

    def __init__(
        self,
        target: int,
        *,
        limit: int | None = None,
        delay: float = 0.0,
        rejection: bytes = TRANSIENT_REJECT,
    ) -> None:
        self.target, self.limit, self.delay = target, limit, delay
        self.rejection = rejection
        """The A-ASSOCIATE-RJ PDU beyond the limit."""
        self.rejected = 0
        """Association requests rejected."""
        self.most = 0
        """The most connections forwarded at once."""
        self._open = 0
        self._lock = threading.Lock()
        self._server = socket.create_server(("127.0.0.1", 0), backlog=128)
        self._sockets: list[socket.socket] = []

    @property
    def port(self) -> int:
        """The port to connect to."""
        return int(self._server.getsockname()[1])

    def __enter__(self) -> "LimitingProxy":
        threading.Thread(target=self._accept, daemon=True).start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        with contextlib.suppress(OSError):
            self._server.shutdown(socket.SHUT_RDWR)
        self._server.close()
        for sock in list(self._sockets):
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self._server.accept()
            except OSError:
                return
            client.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            with self._lock:
                full = self.limit is not None and self._open >= self.limit
                if not full:
                    self._open += 1
                    self.most = max(self.most, self._open)
            target = self._reject if full else self._forward
            threading.Thread(target=target, args=(client,), daemon=True).start()

    def _reject(self, client: socket.socket) -> None:
        with client, contextlib.suppress(OSError):
            _read_pdu(client)  # the A-ASSOCIATE-RQ
            client.sendall(self.rejection)
            with self._lock:
                self.rejected += 1
            client.shutdown(socket.SHUT_WR)
            client.recv(1)  # until the requestor closes

    def _forward(self, client: socket.socket) -> None:
        try:
            upstream = socket.create_connection(("127.0.0.1", self.target))
        except OSError:
            client.close()
            self._closed()
            return
        upstream.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self._sockets += [client, upstream]
        back = threading.Thread(
            target=pump, args=(upstream, client, self.delay), daemon=True
        )
        back.start()
        pump(client, upstream, 0.0)
        back.join()
        for sock in (client, upstream):
            sock.close()
            with contextlib.suppress(ValueError):
                self._sockets.remove(sock)
        self._closed()

    def _closed(self) -> None:
        with self._lock:
            self._open -= 1
