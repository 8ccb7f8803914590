"""How a send reaches the receiver: the connections it makes, and its transport.

:class:`Connections` makes a client in this process or a sender process when first
needed; :func:`transport_for` picks the transport of a request (STOW-RS, C-STORE
here, or C-STORE over worker processes).
"""

import logging
from pathlib import Path
from typing import TYPE_CHECKING

from ..transport.interface import Transport
from ..transport.outcome import SendItem
from ..transport.processes import Sender
from ..transport.retry import Retrier
from ..transport.workers import Workers
from .request import SendRequest

if TYPE_CHECKING:
    from ..transport.association import Client

log = logging.getLogger(__name__)

_ITEMS_PER_WORKER = 16
_LARGE_INPUT = 32 << 20


class Connections:
    """How this send reaches the receiver: a client here, a sender process.

    Each is made when first needed, and this process imports pynetdicom and pydicom
    only for a client of its own: a send over one association, ``verify`` and
    ``skip_existing``. A send over several associations goes through a
    :class:`~fw_gear_dicom_send.transport.processes.Sender`, best started before
    the files are listed and probed.
    """

    def __init__(self, request: SendRequest, sender: Sender | None) -> None:
        self._request = request
        self._client: Client | None = None
        self._sender = sender

    def client(self) -> "Client":
        """A client in this process (pynetdicom's AE is set up on the first call)."""
        if self._client is None:
            from ..transport.association import Client  # noqa: PLC0415 - see the class

            assert self._request.peer is not None
            self._client = Client(self._request.peer, self._request.association)
        return self._client

    def sender(self) -> Sender:
        """The sender process."""
        if self._sender is None:
            self._sender = Sender()
        return self._sender

    def close(self) -> None:
        """Let the sender process go, if there is one."""
        if self._sender is not None:
            self._sender.close()


def transport_for(
    request: SendRequest, connections: Connections, items: list[SendItem]
) -> Transport:
    """The transport for the request: STOW-RS, or C-STORE here or in workers."""
    size = sum(item.size for item in items) / 1e6
    if request.stow is not None:
        stow = request.stow
        log.info(
            "sending %d instances (%.1f MB) by STOW-RS to %s, %d per request, "
            "%d requests at once",
            len(items),
            size,
            stow,
            stow.batch,
            stow.parallel,
        )
        from ..transport.stow import Stow  # noqa: PLC0415 - http.client, for STOW-RS

        return Stow(stow, request.tag, Retrier(request.retry))
    assert request.peer is not None
    tls = request.association.tls
    workers = min(request.most_associations, max(1, len(items) // _ITEMS_PER_WORKER))
    log.info(
        "sending %d instances (%.1f MB) to %s%s%s",
        len(items),
        size,
        request.peer,
        f" over TLS ({tls.profile.value})" if tls is not None else "",
        f" on {workers} associations at once" if workers > 1 else "",
    )
    if workers == 1:
        from ..transport.cstore import CStore  # noqa: PLC0415 - see Connections

        return CStore(connections.client(), request.tag, Retrier(request.retry))
    return Workers(
        connections.sender(),
        peer=request.peer,
        association=request.association,
        tag=request.tag,
        retry=request.retry,
        workers=workers,
    )


def likely_parallel(request: SendRequest, paths: list[Path]) -> bool:
    """Whether the send will likely go over several associations.

    A few small files go over one association; a folder, many files or a large
    file (an archive, probably) likely over several.
    """
    if request.peer is None or request.most_associations < 2:
        return False
    if len(paths) >= 2 * _ITEMS_PER_WORKER:
        return True
    return any(
        not path.is_file() or path.stat().st_size >= _LARGE_INPUT for path in paths
    )
