"""How a send reaches the receiver: the connections it makes, and its transport.

:class:`Connections` makes a client in this process or a sender process when first
needed; :func:`transport_for` picks the transport of a request (STOW-RS, C-STORE
here, or C-STORE over worker processes).
"""

import logging
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING

from ..transport.adaptive import pacing_for
from ..transport.interface import Transport
from ..transport.outcome import SendItem
from ..transport.pacing import Pacing
from ..transport.processes import Sender
from ..transport.retry import Retrier
from ..transport.workers import ITEMS_PER_WORKER, Workers
from ..words import count
from .request import SendRequest

if TYPE_CHECKING:
    from ..transport.association import Client

log = logging.getLogger(__name__)


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

    @property
    def started(self) -> bool:
        """Whether a sender process was started (for a likely parallel send)."""
        return self._sender is not None

    def close(self) -> None:
        """Let the sender process go, if there is one."""
        if self._sender is not None:
            self._sender.close()


def transport_for(
    request: SendRequest,
    connections: Connections,
    items: Iterable[SendItem],
    pacing: Pacing | None = None,
    *,
    listing: bool = False,
) -> Transport:
    """The transport for the request: STOW-RS, or C-STORE here or in workers.

    A list's count decides, as it always has: one association for fewer than
    ``2 * ITEMS_PER_WORKER`` items, else workers. Items that arrive as they go
    (any other iterable) go over workers when the request allows several
    associations and the sender process was started for it
    (:func:`.early.likely_parallel`): they start with one, and more as the items not yet
    sent warrant. ``pacing`` decides how many at once (default: the request's,
    :func:`~fw_gear_dicom_send.transport.adaptive.pacing_for`). ``listing``: the
    list is what was listed so far, and more comes (the log line says so).
    """
    known = isinstance(items, Sequence)
    what = (
        f"{count(len(items), 'instance')} ({sum(i.size for i in items) / 1e6:.1f} MB)"
        if isinstance(items, Sequence)
        else "instances as they come"
    )
    if listing and isinstance(items, Sequence):
        what = f"instances as they are listed ({what} so far)"
    if request.stow is not None:
        stow = request.stow
        log.info(
            "sending %s by STOW-RS to %s, %d per request, %d requests at once",
            what,
            stow,
            stow.batch,
            stow.parallel,
        )
        from ..transport.stow import Stow  # noqa: PLC0415 - http.client, for STOW-RS

        return Stow(stow, request.tag, Retrier(request.retry))
    assert request.peer is not None
    tls = request.association.tls
    if isinstance(items, Sequence):
        workers = min(request.most_associations, max(1, len(items) // ITEMS_PER_WORKER))
        parallel = workers > 1
    else:
        workers = request.most_associations
        parallel = workers > 1 and connections.started
    log.info(
        "sending %s to %s%s%s",
        what,
        request.peer,
        f" over TLS ({tls.profile.value})" if tls is not None else "",
        (
            f" on {workers} associations at once"
            if known and isinstance(request.associations, int)
            else f" on up to {workers} associations at once"
        )
        if parallel
        else "",
    )
    if not parallel:
        from ..transport.cstore import CStore  # noqa: PLC0415 - see Connections

        return CStore(connections.client(), request.tag, Retrier(request.retry))
    return Workers(
        connections.sender(),
        peer=request.peer,
        association=request.association,
        tag=request.tag,
        retry=request.retry,
        pacing=pacing or pacing_for(request.associations, request.max_associations),
    )
