"""C-STORE through pynetdicom's own ``send_c_store``: the fast path's fallback.

Only pynetdicom's public API, so that it keeps working across pynetdicom releases.
It calls ``Association.send_c_store`` with a file path and binds event handlers
with ``Association.bind``; it takes the socket of ``Association.dul.socket`` (for
its timeout); it sets two documented settings, and puts them back:
``pynetdicom._config.STORE_SEND_CHUNKED_DATASET`` (a data set is sent in chunks as
it lies in the file) and the ``dimse_timeout`` property. And it swaps one public
attribute: the DUL's outgoing queue, ``dul.to_provider_queue``, is replaced for the
rest of the association by a queue of its own (:class:`_Throttle`). That relies on
pynetdicom looking the attribute up at each use, which it does not document; a
queue there that is not a plain, empty ``queue.Queue`` is left in place, and the
data set then goes unthrottled.

Each instance is written to a temporary Part 10 file (in the system's temporary
folder, ``TMPDIR``; removed once sent): a file meta header made for it, then the
same bytes the fast path sends (the file's own data set with the provenance
element spliced in, or its re-encoding), copied a megabyte at a time. pynetdicom
queues the P-DATA of a data set as fast as it reads the file; the swapped queue
keeps a few megabytes waiting at most while the channel lasts (with no maximum PDU
length, pynetdicom reads the data set whole).

The outcomes and reasons are the fast path's. The DIMSE timeout means the same:
the socket's timeout while the data set goes out (a receiver that takes nothing in
for that long), then the time the response may take once the last fragment has
gone. ``send_c_store`` runs in a thread of its own, so that the caller's thread
calls ``on_sent`` once pynetdicom has written the data set's last fragment. Before
each, the caller's ``park`` (:func:`fallback_held`) stops the association's
reactor thread, which ``send_c_store``'s own pause does not always do.
"""

import contextlib
import os
import queue
import socket
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from pydicom.dataset import Dataset
from pydicom.multival import MultiValue
from pynetdicom import _config, evt
from pynetdicom.association import Association
from pynetdicom.pdu import A_ABORT_RQ, A_RELEASE_RQ
from pynetdicom.pdu_primitives import P_DATA

from ..dicom.transcode import part10_header
from ..status import InstanceStatus
from .channel import Channel, OnSent, Store, socket_timeout
from .outcome import Outcome, SendItem, association_lost, outcome_of_status
from .peer import AssociationSettings
from .retry import Retry
from .tcp import ack_at_once
from .wire import Payload

_COPY_SIZE = 1 << 20
_QUEUED_BYTES = 4 << 20
"""About how many bytes of P-DATA may wait in pynetdicom's queue."""
_P_DATA_TF = 0x04
FAILED = InstanceStatus.FAILED
COPIES_DIR: str | None = None
"""Where the copies are written; None: the system's temporary folder (``TMPDIR``)."""


class _Watch:
    """What pynetdicom's DUL thread saw of one C-STORE (set by event handlers)."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.progress = time.monotonic()
        """When a PDU of ours last went out."""
        self.data_out = False
        """The data set's last fragment went out."""
        self.timed_out = False
        """No response came within the DIMSE timeout after it."""
        self.ended = ""
        """How the peer ended the association, if it did."""
        self.answered = False
        """A DIMSE message (the response) came."""
        self.timer: threading.Timer | None = None
        self.settled = threading.Event()
        """Set once the data set went out, or the C-STORE ended without it."""


class FallbackChannel(Channel):
    """A channel that sends each C-STORE with pynetdicom's ``send_c_store``."""

    def __init__(
        self,
        assoc: Association,
        settings: AssociationSettings,
        park: Callable[[], None],
    ) -> None:
        """Wrap an established association (see :func:`fallback_held`)."""
        super().__init__(assoc, settings)
        self._park = park
        self._watch = _Watch()
        self._buffer = bytearray(_COPY_SIZE)
        self.closed = False
        """The connection closed."""

    @property
    def connected(self) -> bool:
        """Whether the association can still carry data."""
        return bool(self.assoc.is_established and not self.closed)

    def send(self, store: Store) -> Outcome:
        """Write ``item`` as a Part 10 file and send it with ``send_c_store``."""
        item, on_sent = store.item, store.on_sent
        if self.closed or not self.assoc.is_established:
            return association_lost("association lost before sending", Retry.TRANSIENT)
        try:
            fd, name = tempfile.mkstemp(".dcm", "dicom-send-", COPIES_DIR)
        except OSError as exc:
            return Outcome(FAILED, None, f"cannot write a copy to send: {exc}")
        try:
            with open(fd, "wb") as f:
                syntax = str(store.context.transfer_syntax[0])
                why = self._write(f, item, syntax, store.payload)
            if why:
                return Outcome(FAILED, None, why)
            return self._send_file(name, on_sent, item)
        finally:
            with contextlib.suppress(OSError):
                os.unlink(name)

    def _write(self, f: Any, item: SendItem, syntax: str, payload: Payload) -> str:
        """Write the Part 10 file: preamble, file meta for ``syntax``, the payload.

        Returns:
            Why it could not be written, or "".
        """
        # pynetdicom takes the C-STORE's UIDs from the copy's file meta: a UID with
        # a backslash must read back as the one value the file has.
        header = part10_header(
            item.info.sop_class_uid, item.info.sop_instance_uid, syntax, whole_uids=True
        )
        view = memoryview(self._buffer)
        remaining = payload.length
        try:
            f.write(header)
        except OSError as exc:
            return f"cannot write a copy to send: {exc}"
        while remaining:
            try:
                filled = payload.readinto(view[: min(remaining, len(view))])
                if not filled:
                    raise OSError("file changed while being sent (shorter than probed)")
            except OSError as exc:
                return f"cannot read file: {exc}"
            try:
                f.write(view[:filled])
            except OSError as exc:
                return f"cannot write a copy to send: {exc}"
            remaining -= filled
        return ""

    def _send_file(self, path: str, on_sent: OnSent | None, item: SendItem) -> Outcome:
        """Send the file with ``send_c_store`` in a thread of its own; its outcome.

        This thread waits for the data set to go out (then tells ``on_sent``), and
        then for ``send_c_store`` to return; a signal's exception interrupts either
        wait, and the association is then aborted, which ends the other thread.
        """
        watch = self._watch = _Watch()
        assoc = self.assoc
        answer: list[Dataset | Exception] = []
        message_id = self.next_message_id()

        def run() -> None:
            try:
                answer.append(assoc.send_c_store(path, msg_id=message_id))
            except Exception as exc:  # handed to the caller
                answer.append(exc)
            finally:
                watch.settled.set()

        self._park()
        timeout = assoc.dimse_timeout
        assoc.dimse_timeout = None  # the response's wait starts once the data is out
        try:
            thread = threading.Thread(target=run, name="C-STORE", daemon=True)
            thread.start()
            watch.settled.wait()
            if watch.data_out and on_sent is not None:
                on_sent(item)
            thread.join()
        finally:
            assoc.dimse_timeout = timeout
            with watch.lock:
                if watch.timer is not None:
                    watch.timer.cancel()
        status = answer[0]
        if isinstance(status, RuntimeError):  # no longer established
            return association_lost("association lost before sending", Retry.TRANSIENT)
        if isinstance(status, Exception):
            return Outcome(FAILED, None, f"pynetdicom cannot send it: {status}")
        if "Status" in status:
            comment = status.get("ErrorComment", "")
            if isinstance(comment, MultiValue):
                comment = "\\".join(str(c) for c in comment)
            return outcome_of_status(int(status.Status), str(comment).strip(" \x00"))
        return self._lost(watch)

    def _lost(self, watch: _Watch) -> Outcome:
        """The outcome of a C-STORE that got no response, from what was seen."""
        limit = self.settings.dimse_timeout
        with watch.lock:
            data_out, timed_out, ended = watch.data_out, watch.timed_out, watch.ended
            idle = time.monotonic() - watch.progress
        if not data_out:
            if idle >= limit * 0.9:
                return association_lost(
                    f"association lost while sending: the receiver took nothing in "
                    f"for {limit:g} s (DIMSE timeout)",
                    Retry.TRANSIENT,
                )
            return association_lost(
                "association lost while sending (aborted by the peer or "
                "connection closed)",
                Retry.TRANSIENT,
            )
        if timed_out:
            return association_lost(
                f"no response within {limit:g} s (DIMSE timeout)", Retry.AMBIGUOUS
            )
        why = ended or "no valid C-STORE-RSP came"
        return association_lost(
            f"association lost before the response ({why})", Retry.AMBIGUOUS
        )

    # Event handlers: they run in pynetdicom's DUL thread.

    def on_data_sent(self, event: evt.Event) -> None:
        """EVT_DATA_SENT: note progress, and when the data set's end went out."""
        data: bytes = event.data
        watch = self._watch
        with watch.lock:
            watch.progress = time.monotonic()
            if data[:1] != bytes([_P_DATA_TF]) or not _ends_data_set(data):
                return
            watch.data_out = True
            watch.settled.set()
            transport = event.assoc.dul.socket
            if transport is not None and transport.socket is not None:
                ack_at_once(transport.socket)
            watch.timer = threading.Timer(self.settings.dimse_timeout, self._expire)
            watch.timer.daemon = True
            watch.timer.start()

    def on_pdu_recv(self, event: evt.Event) -> None:
        """EVT_PDU_RECV: note an A-ABORT or A-RELEASE-RQ from the peer."""
        pdu = event.pdu
        with self._watch.lock:
            if isinstance(pdu, A_ABORT_RQ) and not self._watch.ended:
                self._watch.ended = (
                    f"A-ABORT, source {pdu.source}, reason {pdu.reason_diagnostic}"
                )
            elif isinstance(pdu, A_RELEASE_RQ) and not self._watch.ended:
                self._watch.ended = "the peer asked to release the association mid-way"

    def on_dimse_recv(self, event: evt.Event) -> None:
        """EVT_DIMSE_RECV: the response came; the timer must not end it now."""
        with self._watch.lock:
            self._watch.answered = True

    def on_conn_close(self, event: evt.Event) -> None:
        """EVT_CONN_CLOSE: note that the connection closed."""
        self.closed = True
        with self._watch.lock:
            if not self._watch.ended and not self._watch.timed_out:
                self._watch.ended = "the connection closed"
        # send_c_store waits for its response with no time limit (the timer keeps
        # the DIMSE timeout, once the data set is out): nothing more can come, so
        # end that wait as pynetdicom's own timeout would.
        self.assoc.dimse.msg_queue.put((None, None))

    def _expire(self) -> None:
        """No response within the DIMSE timeout: end the connection.

        Shutting the socket down makes pynetdicom see the connection close, which
        ends its wait for the response. The plain socket's shutdown: an
        SSLSocket's own would drop its TLS state under the thread reading it.
        """
        with self._watch.lock:
            if self._watch.answered:
                return
            self._watch.timed_out = True
        transport = self.assoc.dul.socket
        sock = transport.socket if transport is not None else None
        if sock is not None:
            with contextlib.suppress(OSError):
                socket.socket.shutdown(sock, socket.SHUT_RDWR)


def _ends_data_set(pdu: bytes) -> bool:
    """Whether a P-DATA-TF PDU carries the last fragment of a data set."""
    offset = 6
    while offset + 6 <= len(pdu):
        length = int.from_bytes(pdu[offset : offset + 4], "big")
        control = pdu[offset + 5]
        if control & 0x03 == 0x02:  # a data set's, the last
            return True
        offset += 4 + length
    return False


class _Throttle(queue.Queue[Any]):
    """The DUL's outgoing queue, kept short while a data set goes out.

    pynetdicom queues every P-DATA of a data set as fast as it reads the file;
    with this queue in ``dul.to_provider_queue``, queueing waits once ``limit``
    primitives are waiting to go, until half of them went, so that a data set is
    never in memory whole. It never waits once the connection is gone (nor the
    DUL thread), and then drops the P-DATA that could no longer go out.
    """

    def __init__(self, channel: FallbackChannel, limit: int) -> None:
        super().__init__()
        self.limit = limit
        """Primitives waiting before ``put`` waits; 0: no limit."""
        self._channel = channel

    def _gone(self) -> bool:
        return self._channel.closed or not self._channel.assoc.dul.is_alive()

    def put(self, item: Any, block: bool = True, timeout: float | None = None) -> None:
        """Queue a primitive; once ``limit`` are waiting, first let half go."""
        if self.limit:
            with self.not_full:
                if self._qsize() >= self.limit:
                    while self._qsize() > self.limit // 2 and not self._gone():
                        self.not_full.wait(0.05)
            if isinstance(item, P_DATA) and self._gone():
                return
        super().put(item, block, timeout)


def _throttled(channel: FallbackChannel, max_pdu: int) -> "_Throttle | None":
    """Put a :class:`_Throttle` in place of the DUL's empty outgoing queue."""
    dul = channel.assoc.dul
    current = getattr(dul, "to_provider_queue", None)
    if type(current) is not queue.Queue or current.qsize():
        return None
    limit = max(2, _QUEUED_BYTES // max_pdu) if max_pdu else 2
    throttle = _Throttle(channel, limit)
    dul.to_provider_queue = throttle
    return throttle


@contextmanager
def fallback_held(
    assoc: Association,
    settings: AssociationSettings,
    park: Callable[[], None],
) -> Iterator[FallbackChannel]:
    """A :class:`FallbackChannel` over ``assoc``, for as long as we send over it.

    Meanwhile the association's socket has the DIMSE timeout (pynetdicom's has
    none once connected), its event handlers watch the C-STOREs, pynetdicom
    sends a data set from its file in chunks, never decoded, and its outgoing
    queue is kept short (:class:`_Throttle`).

    Args:
        assoc: An established association.
        settings: Its timeouts.
        park: Called before each ``send_c_store``: it returns once the
            association's reactor thread is stopped (``send_c_store``'s own
            pause can let the reactor take the response).
    """
    channel = FallbackChannel(assoc, settings, park)
    handlers = [
        (evt.EVT_DATA_SENT, channel.on_data_sent),
        (evt.EVT_PDU_RECV, channel.on_pdu_recv),
        (evt.EVT_DIMSE_RECV, channel.on_dimse_recv),
        (evt.EVT_CONN_CLOSE, channel.on_conn_close),
    ]
    for event, handler in handlers:
        assoc.bind(event, handler)
    chunked = _config.STORE_SEND_CHUNKED_DATASET
    _config.STORE_SEND_CHUNKED_DATASET = True
    throttle = _throttled(channel, int(assoc.acceptor.maximum_length or 0))
    try:
        with socket_timeout(assoc, settings.dimse_timeout):
            yield channel
    finally:
        _config.STORE_SEND_CHUNKED_DATASET = chunked
        if throttle is not None:
            throttle.limit = 0
        for event, handler in handlers:
            assoc.unbind(event, handler)
