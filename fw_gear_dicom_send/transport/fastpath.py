"""The fast path of C-STORE: we hold the association's socket while sending.

While an association is held (:func:`held`), C-STORE goes through :mod:`.wire`: the
request's fixed-layout command (the bytes pynetdicom would encode, property-tested),
then the data set as P-DATA fragments read from a :class:`.wire.Payload` (the file's
own bytes with the provenance element spliced in, never a decoded ``Dataset`` nor a
path), then the response, read in the same thread. Only when the receiver refuses a
file's own transfer syntax is the file decoded and re-encoded in one it accepted.
"""

import contextlib
import dataclasses
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from pydicom.uid import UID
from pynetdicom.association import Association
from pynetdicom.presentation import PresentationContext

from ..dicom.pixels import decompress
from ..dicom.provenance import ProvenanceTag, tag_dataset
from ..dicom.transcode import encode, group_length_offsets, read_dataset
from ..status import InstanceStatus
from .association import no_context_reason
from .contexts import FALLBACK_SYNTAXES
from .outcome import (
    Outcome,
    SendItem,
    association_lost,
    outcome_of_status,
)
from .peer import AssociationSettings
from .retry import Retry
from .wire import Framer, Payload, PeerEnded, read_store_response, store_command


def connected(assoc: Association) -> bool:
    """Whether the association can carry data: its DUL is in state Sta6.

    While its reactor is held, pynetdicom does not update ``is_established``
    when the peer aborts or the connection closes; the DUL's state machine,
    run by its own thread, always knows.
    """
    return bool(
        assoc.is_established and assoc.dul.state_machine.current_state == "Sta6"
    )


_HELD_LOOP_DELAY = 0.01
"""Seconds between the DUL thread's idle loops while we hold the socket: at most
this much later does it see the release or abort that follows."""


def _nothing_to_read() -> bool:
    return False


class Channel:
    """A held association: the object to send C-STOREs on (from :func:`held`)."""

    def __init__(self, assoc: Association, settings: AssociationSettings) -> None:
        """Wrap an association whose socket :func:`held` has taken."""
        self.assoc = assoc
        self.settings = settings
        self._message_id = 0
        self._framer = Framer()

    @property
    def connected(self) -> bool:
        """Whether the association can still carry data."""
        return connected(self.assoc)

    def store(
        self,
        item: SendItem,
        tag: ProvenanceTag,
        on_sent: Callable[[SendItem], None] | None = None,
    ) -> Outcome:
        """Send one instance over the held association.

        Args:
            item: The instance.
            tag: The provenance element.
            on_sent: Called once the whole data set went out, before the answer
                is read: from then on, the receiver may have stored it.

        Returns:
            The outcome; a failure with its reason if it could not go out.
        """
        assoc = self.assoc
        context = choose_context(assoc.accepted_contexts, item)
        if context is None:
            reason = no_context_reason(assoc.rejected_contexts, item)
            return Outcome(InstanceStatus.FAILED, None, reason)
        syntax = str(context.transfer_syntax[0])
        if item.inserts is not None and syntax == item.transfer_syntax:
            try:
                f = open(item.path, "rb", buffering=0)  # noqa: SIM115 - closed below
            except OSError as exc:  # gone or unreadable since it was probed
                return Outcome(InstanceStatus.FAILED, None, f"cannot read: {exc}")
            with f:
                payload = Payload(
                    f, item.info.dataset_offset, item.info.size, item.inserts
                )
                outcome = self._send(context, item, payload, on_sent)
        else:
            note = ""
            try:
                payload, note = self._decoded(item, syntax, tag)
            except Exception as exc:
                reason = (
                    str(exc)
                    if UID(item.transfer_syntax).is_compressed
                    else f"cannot re-encode: {exc}"
                )
                return Outcome(InstanceStatus.FAILED, None, reason)
            outcome = self._send(context, item, payload, on_sent)
            if note and outcome.status.stored:
                reason = f"{outcome.reason}; {note}" if outcome.reason else note
                outcome = dataclasses.replace(outcome, reason=reason)
        return dataclasses.replace(outcome, transfer_syntax=syntax)

    @staticmethod
    def _decoded(
        item: SendItem, syntax: str, tag: ProvenanceTag
    ) -> tuple[Payload, str]:
        """Decode the file (decompressing it if needed), tag it, encode in ``syntax``.

        Returns:
            The payload, and a note for the report if the file was decompressed.
        """
        ds = read_dataset(item.path)
        offsets = group_length_offsets(ds)
        source = UID(item.transfer_syntax)
        target = UID(syntax)
        note = ""
        if source.is_compressed and target != source:
            decompress(ds)  # ValueError: cannot
            note = (
                f"decompressed from {source.name} to {target.name}: the receiver "
                f"accepts no {source.name}"
            )
        tag_dataset(ds, tag)
        return Payload.from_bytes(encode(ds, target, offsets)), note  # ValueError

    def _send(
        self,
        context: PresentationContext,
        item: SendItem,
        payload: Payload,
        on_sent: Callable[[SendItem], None] | None,
    ) -> Outcome:
        assoc = self.assoc
        info = item.info
        self._message_id = self._message_id % 0xFFFF + 1
        command = store_command(
            self._message_id, info.sop_class_uid, info.sop_instance_uid
        )
        context_id = int(context.context_id)  # type: ignore[arg-type]
        max_pdu = int(assoc.acceptor.maximum_length or 0)

        transport = assoc.dul.socket
        sock = transport.socket if transport is not None else None
        if sock is None:
            return association_lost("association lost before sending", Retry.TRANSIENT)
        try:
            sent = self._framer.write(
                sock, lambda: connected(assoc), (command, context_id, max_pdu), payload
            )
        except TimeoutError:  # it has part of the data set, never the whole
            return association_lost(
                f"association lost while sending: the receiver took nothing in for "
                f"{self.settings.dimse_timeout:g} s (DIMSE timeout)",
                Retry.TRANSIENT,
            )
        except OSError as exc:  # the file, mid-way: the peer has half a data set
            return association_lost(f"cannot read file: {exc}", Retry.FINAL)
        if not sent:
            return association_lost(
                "association lost while sending (aborted by the peer or "
                "connection closed)",
                Retry.TRANSIENT,
            )
        if on_sent is not None:
            on_sent(item)
        try:
            rsp = read_store_response(sock)
        except TimeoutError:
            return association_lost(
                f"no response within {self.settings.dimse_timeout:g} s (DIMSE timeout)",
                Retry.AMBIGUOUS,
            )
        except (PeerEnded, OSError) as exc:
            why = str(exc) or type(exc).__name__
            return association_lost(
                f"association lost before the response ({why})", Retry.AMBIGUOUS
            )
        if rsp.message_id != self._message_id:
            return association_lost(
                f"a C-STORE-RSP to message {rsp.message_id} came for message "
                f"{self._message_id}",
                Retry.AMBIGUOUS,
            )
        return outcome_of_status(rsp.status, rsp.error_comment)


def choose_context(
    accepted: list[PresentationContext], item: SendItem
) -> PresentationContext | None:
    """The accepted context to send an item in: its own syntax, else a fallback.

    A fallback (an uncompressed syntax) serves a file pydicom can re-encode, and a
    compressed file, which is then decompressed.
    """
    mine = [c for c in accepted if c.abstract_syntax == item.sop_class_uid]
    for context in mine:
        if context.transfer_syntax[0] == item.transfer_syntax:
            return context
    for syntax in FALLBACK_SYNTAXES:
        for context in mine:
            if context.transfer_syntax[0] == syntax:
                return context
    return None


@contextmanager
def held(assoc: Association, settings: AssociationSettings) -> Iterator[Channel]:
    """Take the association's socket for as long as we send over it.

    While held, both pynetdicom threads keep off the socket: the association's
    reactor is parked, and the DUL thread no longer looks for incoming PDUs, so
    requests are written and their responses read by the caller's thread alone
    (:mod:`.wire`), with the DIMSE timeout on the socket; a
    TLS socket, which one thread must not read while another writes, is safe too.
    On leaving, pynetdicom gets everything back, with its idle timer restarted.
    Meanwhile the DUL thread loops every 10 ms instead of every millisecond.

    The reactor must be parked, not paused: pynetdicom's own ``send_c_store``
    pauses it per message and trusts ``_is_paused``, which stays True for a
    moment after the reactor resumes. Parked means blocked on the cleared event;
    it is waited for, at most the ACSE timeout.
    """
    checkpoint = assoc._reactor_checkpoint
    checkpoint.clear()
    deadline = time.monotonic() + settings.acse_timeout
    while not (assoc._is_paused and checkpoint._cond._waiters):  # type: ignore[attr-defined]
        if not connected(assoc) or time.monotonic() > deadline:
            break
        time.sleep(0.0001)
    dul = assoc.dul
    setattr(dul, "_is_transport_event", _nothing_to_read)  # noqa: B010 - a method
    # With nothing to read, its loop only waits for our primitives (none come
    # while held): it need not wake every millisecond meanwhile.
    loop_delay = dul._run_loop_delay
    dul._run_loop_delay = _HELD_LOOP_DELAY
    transport = dul.socket
    sock = transport.socket if transport is not None else None
    previous = sock.gettimeout() if sock is not None else None
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.settimeout(settings.dimse_timeout)
    try:
        yield Channel(assoc, settings)
    finally:
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.settimeout(previous)
        del dul._is_transport_event
        dul._run_loop_delay = loop_delay
        dul._idle_timer.restart()
        checkpoint.set()
