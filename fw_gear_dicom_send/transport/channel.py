"""What C-STORE over an association does before and after the wire: the channel.

A :class:`Channel` is what a held association yields (``fastpath.held``): the one
object that C-STOREs go through. It chooses the presentation context, makes the
data set to send (the file's own bytes with the provenance element spliced in; the
file decoded and re-encoded only when the receiver refuses its transfer syntax) and
turns what came back into an :class:`.outcome.Outcome`. How the request goes out
and the response comes back is its subclass's: :mod:`.fastpath` writes them on the
socket itself, :mod:`.fallback` hands them to pynetdicom's ``send_c_store``. A
channel serves only while its context is open; afterwards :meth:`Channel.store`
refuses.
"""

import abc
import contextlib
import dataclasses
from collections.abc import Callable, Iterator
from dataclasses import dataclass

from pynetdicom.association import Association
from pynetdicom.presentation import PresentationContext

from ..dicom.provenance import ProvenanceTag
from ..dicom.transcode import decoded_payload, is_compressed
from ..status import InstanceStatus
from .association import no_context_reason
from .contexts import FALLBACK_SYNTAXES
from .outcome import Outcome, SendItem
from .peer import AssociationSettings
from .wire import Payload

OnSent = Callable[[SendItem], None]
"""Told of an item once its data set has gone out, before its answer."""


@dataclass(frozen=True, slots=True)
class Store:
    """One C-STORE for a channel to send."""

    context: PresentationContext
    """The accepted context it goes in."""
    item: SendItem
    payload: Payload
    """Its data set, as it goes on the wire."""
    on_sent: OnSent | None
    """Told once the whole data set went out."""


class ChannelClosed(RuntimeError):
    """A channel was used after its association was given back."""


class Channel(abc.ABC):
    """A held association: the object to send C-STOREs on.

    Only a held association's context makes one (``fastpath.held``), and it
    serves only until that context ends.
    """

    def __init__(self, assoc: Association, settings: AssociationSettings) -> None:
        """Wrap an association that its context has taken for sending."""
        self.assoc = assoc
        self.settings = settings
        self.open = True
        """False once the context that made it has ended."""
        self._message_id = 0

    @property
    @abc.abstractmethod
    def connected(self) -> bool:
        """Whether the association can still carry data: what a sender asks.

        False once the peer aborted or released it, or its connection closed,
        whichever way the subclass learns of it (pynetdicom's ``is_established``
        alone lags behind while the fast path holds the socket). It stays
        meaningful after the context ends, for the choice between releasing the
        association and discarding it.
        """

    def next_message_id(self) -> int:
        """The Message ID of the next request: 1 to 65535, then 1 again."""
        self._message_id = self._message_id % 0xFFFF + 1
        return self._message_id

    def store(
        self, item: SendItem, tag: ProvenanceTag, on_sent: OnSent | None = None
    ) -> Outcome:
        """Send one instance over the held association.

        Args:
            item: The instance.
            tag: The provenance element.
            on_sent: Called once the whole data set went out, before the answer
                is read: from then on, the receiver may have stored it.

        Returns:
            The outcome; a failure with its reason if it could not go out.

        Raises:
            ChannelClosed: The association's context has ended.
        """
        if not self.open:
            raise ChannelClosed("C-STORE on an association no longer held")
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
                outcome = self.send(Store(context, item, payload, on_sent))
        else:
            try:
                data, note = decoded_payload(
                    item.path, item.transfer_syntax, syntax, tag
                )
            except Exception as exc:
                reason = (
                    str(exc)
                    if is_compressed(item.transfer_syntax)
                    else f"cannot re-encode: {exc}"
                )
                return Outcome(InstanceStatus.FAILED, None, reason)
            payload = Payload.from_bytes(data)
            outcome = self.send(Store(context, item, payload, on_sent))
            if note and outcome.status.stored:
                reason = f"{outcome.reason}; {note}" if outcome.reason else note
                outcome = dataclasses.replace(outcome, reason=reason)
        return dataclasses.replace(outcome, transfer_syntax=syntax)

    @abc.abstractmethod
    def send(self, store: Store) -> Outcome:
        """Send the C-STORE-RQ of ``store.item`` with ``store.payload`` as its data set.

        Returns:
            What the response said, or why none came.
        """


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


@contextlib.contextmanager
def socket_timeout(assoc: Association, seconds: float) -> Iterator[None]:
    """The association's socket waits at most ``seconds`` inside; then as before."""
    transport = assoc.dul.socket
    sock = transport.socket if transport is not None else None
    previous = sock.gettimeout() if sock is not None else None
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.settimeout(seconds)
    try:
        yield
    finally:
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.settimeout(previous)
