"""The TCP options of an association's socket: no waits for acknowledgements.

With Nagle's algorithm on, a small write waits until what went before it is
acknowledged, and the peer delays its acknowledgement (40 ms or more on Linux) in
the hope of sending it with data: a C-STORE whose request or response goes out in
more than one write waits that long. Our sockets switch Nagle off
(:func:`set_no_delay`); a receiver that leaves it on is answered at once
(:func:`ack_at_once`).
"""

import contextlib
import socket

from pynetdicom import evt


def set_no_delay(event: evt.Event) -> None:
    """EVT_CONN_OPEN handler: switch Nagle off on the association's socket."""
    sock = event.assoc.dul.socket
    if sock is not None and sock.socket is not None:
        sock.socket.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)


_QUICKACK: int | None = getattr(socket, "TCP_QUICKACK", None)  # Linux only


def ack_at_once(sock: socket.socket) -> None:
    """Have the kernel acknowledge at once what arrives next on ``sock`` (Linux).

    Called once a request has gone out, before its response is read. A receiver
    with Nagle's algorithm on (DCMTK from 3.6.2 and Debian's Orthanc, unless
    ``TCP_NODELAY=1`` is set in their environment) that writes its response in
    two pieces holds the second until the first is acknowledged: per C-STORE.
    ``TCP_QUICKACK`` does not last, hence once per response.
    """
    if _QUICKACK is not None:
        with contextlib.suppress(OSError):  # closed meanwhile: the read will say
            sock.setsockopt(socket.IPPROTO_TCP, _QUICKACK, 1)
