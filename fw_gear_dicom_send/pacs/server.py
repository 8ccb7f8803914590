"""pynetdicom's association server, hardened against connections that stall.

Each TLS handshake runs in its connection's own thread, within the ACSE timeout; a
connection that has not delivered its association request counts against no limit
and is closed when its deadline passes; a failed connection is one log line.
"""

import contextlib
import logging
import socket
import ssl
import sys
import threading
from typing import Any

from pynetdicom import AE
from pynetdicom.association import Association
from pynetdicom.transport import ThreadedAssociationServer

from ..transport.fastpath import awaiting_request

log = logging.getLogger(__name__)

__all__ = ["AcceptorAE", "arm_request_deadline"]


class _Server(ThreadedAssociationServer):
    """pynetdicom's server, with each TLS handshake in its connection's thread.

    pynetdicom handshakes in the thread that accepts connections, with no time
    limit: one silent connection would stop every other. Here the handshake runs
    in the connection's own thread, for at most the AE's ACSE timeout. Each read
    and write of a connection waits at most the AE's network timeout (a peer that
    stops in the middle of a PDU is let go). A failed connection is one log line,
    not socketserver's traceback.
    """

    def get_request(self) -> tuple[socket.socket, tuple[str, int]]:
        """Accept a connection; wrap it for TLS without handshaking yet."""
        assert self.socket is not None
        sock, address = self.socket.accept()
        sock.settimeout(self.ae.network_timeout)
        if self.ssl_context is not None:
            sock = self.ssl_context.wrap_socket(
                sock, server_side=True, do_handshake_on_connect=False
            )
        return sock, address

    def process_request_thread(
        self,
        request: socket.socket | tuple[bytes, socket.socket],
        client_address: tuple[str, int] | str,
    ) -> None:
        """Handshake (TLS), then serve the connection."""
        if isinstance(request, ssl.SSLSocket):
            before = request.gettimeout()
            try:
                request.settimeout(self.ae.acse_timeout)
                request.do_handshake()
                request.settimeout(before)
            except (OSError, ValueError) as exc:
                log.debug("TLS handshake with %s failed: %s", client_address, exc)
                self.shutdown_request(request)
                return
        super().process_request_thread(request, client_address)

    def handle_error(
        self,
        request: socket.socket | tuple[bytes, socket.socket],
        client_address: tuple[str, int] | str,
    ) -> None:
        """Log a connection's failure in one line."""
        log.warning("connection from %s failed: %s", client_address, sys.exc_info()[1])


class AcceptorAE(AE):
    """An AE whose association limit counts only connections that asked for one.

    pynetdicom compares the number of its acceptor threads with
    ``maximum_associations`` when a request arrives; a thread still awaiting its
    peer's A-ASSOCIATE-RQ (a bare TCP connection, or one that sent part of a
    PDU) is left out of that count. Its servers are :class:`_Server`.
    """

    def make_server(self, *args: Any, **kwargs: Any) -> Any:
        """The server pynetdicom would make, as a :class:`_Server`."""
        kwargs["server_class"] = _Server
        return super().make_server(*args, **kwargs)

    @property
    def active_associations(self) -> list[Association]:
        """The association threads, less those still awaiting a request."""
        return [
            assoc
            for assoc in super().active_associations
            if not awaiting_request(assoc)
        ]


def arm_request_deadline(assoc: Association, seconds: float) -> None:
    """Close ``assoc``'s connection if it has no association request in ``seconds``."""
    deadline = threading.Timer(seconds, _close_if_no_request, (assoc,))
    deadline.daemon = True
    deadline.start()


def _close_if_no_request(assoc: Association) -> None:
    """Close a connection that has not delivered its A-ASSOCIATE-RQ by now.

    The association's own timer (ARTIM) is not looked at while it waits for the
    rest of a PDU, so a peer that sends a few bytes and stops would hold the
    connection for ever: shutting the socket down ends that wait.
    """
    if not awaiting_request(assoc):
        return
    wrapper = assoc.dul.socket
    sock = wrapper.socket if wrapper is not None else None
    if sock is None:
        return
    log.debug("closing %s: no association request in time", assoc.requestor.address)
    # Reading only: the reader sees the end of the stream, and pynetdicom then
    # shuts down and closes the socket as for a peer that hung up (a socket shut
    # down both ways here would fail its shutdown, and be left open). The plain
    # socket's shutdown: an SSLSocket's own would drop its TLS state under the
    # thread reading from it. OSError: it is already closed.
    with contextlib.suppress(OSError):
        socket.socket.shutdown(sock, socket.SHUT_RD)
