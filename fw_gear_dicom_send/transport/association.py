"""Associations and C-STORE: the network side of sending.

pynetdicom negotiates and releases associations and runs every other DIMSE service
(C-ECHO, C-FIND, C-MOVE, C-GET). C-STORE goes through
:mod:`.wire` while we hold the association (:func:`held`): the
request's fixed-layout command (the bytes pynetdicom would encode, property-tested),
then the data set as P-DATA fragments read from a
:class:`.wire.Payload`, the file's own bytes with the provenance
element spliced in, never a decoded ``Dataset`` (which pynetdicom would re-encode in
memory) nor a path (which it can only send from an offset to the end of the file);
then the response, read in the same thread. Only when the receiver refuses a file's
own transfer syntax is the file decoded and re-encoded in one it accepted.

Every association socket gets ``TCP_NODELAY`` as soon as it connects: with Nagle's
algorithm on, each C-STORE waits for a delayed ACK (40 ms and more).
"""

import contextlib
import dataclasses
import logging
import os
import socket
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from pydicom.uid import UID
from pynetdicom import AE, build_context, build_role, evt
from pynetdicom.association import Association
from pynetdicom.dul import DULServiceProvider
from pynetdicom.pdu_primitives import A_ASSOCIATE
from pynetdicom.presentation import PresentationContext

from ..dicom.pixels import decompress
from ..dicom.provenance import ProvenanceTag, tag_dataset
from ..dicom.transcode import encode, group_length_offsets, read_dataset
from ..dicom.uids import VERIFICATION
from ..errors import AssociationError
from ..status import InstanceStatus
from .contexts import FALLBACK_SYNTAXES, Batch, Proposal, syntax_name
from .outcome import (
    Outcome,
    SendItem,
    association_lost,
    outcome_of_status,
    with_history,
)
from .peer import AssociationSettings, Peer
from .retry import Retrier, Retry
from .tls import client_context, explain_failure, speaks_tls
from .wire import Framer, Payload, PeerEnded, read_store_response, store_command

log = logging.getLogger(__name__)

_REJECTED_TRANSIENT = 2
_HELD_LOOP_DELAY = 0.01
"""Seconds between the DUL thread's idle loops while we hold the socket: at most
this much later does it see the release or abort that follows."""
_TLS_PROBE_TIMEOUT = 5.0
_INVALID_PDU = "Evt19"
"""The state machine's event for an unrecognised or invalid PDU."""
_ABSTRACT_SYNTAX_NOT_SUPPORTED = 0x03


class NoContextAccepted(AssociationError):
    """The receiver accepted the association but none of its presentation contexts.

    Not transient: it will answer the same next time.
    """

    def __init__(self, message: str, rejected: list[PresentationContext]) -> None:
        """Say why, with the contexts it rejected."""
        super().__init__(message)
        self.rejected = rejected


@dataclass
class _Watch:
    """What the event handlers saw of an association attempt."""

    connected: bool = False
    rejection: A_ASSOCIATE | None = None
    accepted: bool = False
    """An A-ASSOCIATE-AC came (though perhaps with no context accepted)."""
    invalid_pdu: bool = False
    """The peer sent something that is not a DICOM Upper Layer PDU."""


def set_no_delay(event: evt.Event) -> None:
    """EVT_CONN_OPEN handler: switch Nagle off on the association's socket."""
    sock = event.assoc.dul.socket
    if sock is not None and sock.socket is not None:
        sock.socket.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)


class Client:
    """Opens associations to one peer and sends over them."""

    def __init__(self, peer: Peer, settings: AssociationSettings) -> None:
        """Set up; nothing is sent yet.

        Raises:
            UsageError: The TLS settings cannot be used (a file is missing or
                unreadable, a key does not match its certificate, ...).
        """
        self.peer = peer
        self.settings = settings
        self._tls = client_context(settings.tls) if settings.tls is not None else None
        self._ae = AE(ae_title=settings.calling_ae)
        self._ae.connection_timeout = settings.connect_timeout
        self._ae.acse_timeout = settings.acse_timeout
        self._ae.dimse_timeout = settings.dimse_timeout
        self._ae.network_timeout = settings.network_timeout
        self._message_id = 0
        self._framer = Framer()

    def associate(
        self,
        proposals: list[Proposal],
        *,
        roles: Sequence[str] = (),
        handlers: Sequence[tuple[evt.InterventionEvent, Callable[..., Any]]] = (),
    ) -> Association:
        """Open an association proposing these contexts.

        Args:
            proposals: The presentation contexts.
            roles: SOP classes for which we also propose the SCP role (the
                storage classes of a C-GET).
            handlers: Event handlers to bind (e.g. EVT_C_STORE for a C-GET).

        Raises:
            NoContextAccepted: The receiver accepts none of the contexts.
            AssociationError: With a one-line reason naming the peer.
        """
        self._check_resolvable()
        watch = _Watch()

        def on_acse(event: evt.Event) -> None:
            primitive = event.primitive  # type: ignore[attr-defined]
            if isinstance(primitive, A_ASSOCIATE):
                if primitive.result in (1, 2):
                    watch.rejection = primitive
                elif primitive.result == 0:
                    watch.accepted = True

        def on_transition(event: evt.Event) -> None:
            if event.fsm_event == _INVALID_PDU:
                watch.invalid_pdu = True

        def on_connect(event: evt.Event) -> None:
            watch.connected = True
            set_no_delay(event)

        contexts = [
            build_context(p.abstract_syntax, list(p.transfer_syntaxes))
            for p in proposals
        ]
        started = time.monotonic()
        assoc = self._ae.associate(
            self.peer.host,
            self.peer.port,
            contexts=contexts,
            ae_title=self.peer.called_ae,
            tls_args=(self._tls, self.peer.host) if self._tls is not None else None,
            ext_neg=[build_role(uid, scu_role=False, scp_role=True) for uid in roles]
            or None,
            evt_handlers=[
                (evt.EVT_CONN_OPEN, on_connect),
                (evt.EVT_ACSE_RECV, on_acse),
                (evt.EVT_FSM_TRANSITION, on_transition),
                *handlers,
            ],
        )
        if assoc.is_established:
            self._message_id = 0
            return assoc
        _close_socket(assoc)  # pynetdicom leaves it open when the peer hangs up
        if watch.accepted and not assoc.accepted_contexts:
            rejected = list(assoc.rejected_contexts)
            raise NoContextAccepted(
                f"{self.peer} accepts no presentation context for "
                + "; ".join(_describe_rejected(rejected)),
                rejected,
            )
        reason, transient = self._failure_reason(watch, time.monotonic() - started)
        unreachable = not watch.connected and watch.rejection is None
        raise AssociationError(reason, transient=transient, unreachable=unreachable)

    def abort_all(self, wait: float = 1.0) -> None:
        """Abort every association of this client, established or still connecting.

        Found by their DUL threads: an association still negotiating is not among
        pynetdicom's active ones, yet its thread would keep the process alive until
        the ACSE timeout. Each gets an A-ABORT if its connection is up, then its
        thread is stopped whatever state it is in.
        """
        duls = [
            thread
            for thread in threading.enumerate()
            if isinstance(thread, DULServiceProvider) and thread.assoc.ae is self._ae
        ]
        for dul in duls:
            dul.assoc.abort(block=False)
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline and any(
            dul.state_machine.current_state != "Sta1" for dul in duls
        ):
            time.sleep(0.01)
        for dul in duls:
            dul.kill_dul()
            dul.join(timeout=wait)

    def _check_resolvable(self) -> None:
        try:
            socket.getaddrinfo(self.peer.host, self.peer.port, type=socket.SOCK_STREAM)
        except OSError as exc:
            raise AssociationError(
                f"cannot resolve host {self.peer.host!r} ({exc.strerror or exc})"
            ) from None

    def _failure_reason(self, watch: _Watch, elapsed: float) -> tuple[str, bool]:
        """Why the association did not open, and whether a later try may work.

        Refused for now (rejected-transient), hung up on, or kept waiting (a busy
        receiver that takes one association at a time) may work later; not
        reached at all, refused for good, a TLS problem, or a peer that answers
        with something other than DICOM (an HTTP server, say) will not.
        """
        peer = self.peer
        if watch.rejection is not None:
            r = watch.rejection
            return (
                f"association rejected by {peer} ({r.result_str}, "
                f"{r.source_str}: {r.reason_str})",
                r.result == _REJECTED_TRANSIENT,
            )
        tls = self._tls_problem(watch, elapsed)
        if tls is not None:
            return tls, False
        if watch.invalid_pdu:
            return (
                f"the peer at {peer.host}:{peer.port} did not answer as a DICOM "
                "Upper Layer (what came back is not a DICOM PDU): is that the "
                "receiver's DICOM port?",
                False,
            )
        if not watch.connected:
            timeout = self.settings.connect_timeout
            why = (
                f"no answer within {timeout:g} s"
                if elapsed >= timeout * 0.9
                else self._probe_tcp()  # a quick failure: connect again to learn why
            )
            return f"cannot connect to {peer.host}:{peer.port} ({why})", False
        if elapsed >= self.settings.acse_timeout:
            return (
                f"no answer to the association request from {peer} within "
                f"{self.settings.acse_timeout:g} s",
                True,
            )
        return f"association with {peer} aborted during negotiation", True

    def _tls_problem(self, watch: _Watch, elapsed: float) -> str | None:
        """Why TLS kept the association from opening, if it did.

        With TLS on, a second handshake tells what went wrong; with TLS off, if the
        peer hung up on our association request, a handshake tells whether it
        wanted TLS.
        """
        host, port = self.peer.host, self.peer.port
        timeout = self.settings.connect_timeout
        if self._tls is not None and self.settings.tls is not None:
            return explain_failure(host, port, self.settings.tls, self._tls, timeout)
        hung_up = watch.connected and elapsed < self.settings.acse_timeout
        if hung_up and speaks_tls(host, port, min(timeout, _TLS_PROBE_TIMEOUT)):
            return f"the peer at {host}:{port} speaks TLS: turn TLS on to reach it"
        return None

    def _probe_tcp(self) -> str:
        """Connect once more, by hand, to learn why connecting failed."""
        try:
            with socket.create_connection(
                (self.peer.host, self.peer.port), timeout=self.settings.connect_timeout
            ):
                return "the connection closed at once"
        except TimeoutError:
            return f"no answer within {self.settings.connect_timeout:g} s"
        except OSError as exc:
            return exc.strerror or str(exc)

    def echo(self) -> int:
        """Send a C-ECHO; return its status.

        Raises:
            AssociationError: No association, or no answer.
        """
        assoc = self.associate([Proposal(VERIFICATION, FALLBACK_SYNTAXES)])
        try:
            status = assoc.send_c_echo()
        finally:
            release(assoc)
        if "Status" not in status:
            raise AssociationError(f"no answer to C-ECHO from {self.peer}")
        return int(status.Status)

    def store(
        self,
        assoc: Association,
        item: SendItem,
        tag: ProvenanceTag,
        on_sent: Callable[[SendItem], None] | None = None,
    ) -> Outcome:
        """Send one instance over an established association whose reactor is held.

        Args:
            assoc: The association.
            item: The instance.
            tag: The provenance element.
            on_sent: Called once the whole data set went out, before the answer
                is read: from then on, the receiver may have stored it.

        Returns:
            The outcome; a failure with its reason if it could not go out.
        """
        context = choose_context(assoc.accepted_contexts, item)
        if context is None:
            return Outcome(InstanceStatus.FAILED, None, _no_context_reason(assoc, item))
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
                outcome = self._send(assoc, context, item, payload, on_sent)
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
            outcome = self._send(assoc, context, item, payload, on_sent)
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
        assoc: Association,
        context: PresentationContext,
        item: SendItem,
        payload: Payload,
        on_sent: Callable[[SendItem], None] | None,
    ) -> Outcome:
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


def _describe_rejected(rejected: list[PresentationContext]) -> list[str]:
    """Each SOP class of rejected contexts, with its syntaxes or why it was refused."""
    syntaxes: dict[str, list[str]] = {}
    results: dict[str, set[int]] = {}
    for context in rejected:
        sop = str(context.abstract_syntax)
        names = syntaxes.setdefault(sop, [])
        names.extend(
            syntax_name(str(ts))
            for ts in context.transfer_syntax
            if syntax_name(str(ts)) not in names
        )
        results.setdefault(sop, set()).add(int(context.result or 0))
    return [
        f"{syntax_name(sop)} (abstract syntax not supported)"
        if results[sop] == {_ABSTRACT_SYNTAX_NOT_SUPPORTED}
        else f"{syntax_name(sop)} in {', '.join(names)}"
        for sop, names in syntaxes.items()
    ]


def _no_context_reason(assoc: Association, item: SendItem) -> str:
    return _no_context_reason_in(assoc.rejected_contexts, item)


def _no_context_reason_in(rejected: list[PresentationContext], item: SendItem) -> str:
    results = {c.result for c in rejected if c.abstract_syntax == item.sop_class_uid}
    sop = syntax_name(item.sop_class_uid)
    if results == {_ABSTRACT_SYNTAX_NOT_SUPPORTED}:
        return f"receiver does not support {sop} (abstract syntax not supported)"
    return (
        f"receiver accepted no presentation context for {sop} in "
        f"{syntax_name(item.transfer_syntax)}"
    )


def release(assoc: Association) -> None:
    """Release an association if it is still up."""
    if assoc.is_established:
        assoc.release()


def discard(assoc: Association) -> None:
    """Abort an association we will not use again, and close its socket.

    After a connection reset pynetdicom's DUL stops without closing the socket;
    aborting then has nothing to do, and the socket would stay open.
    """
    assoc.abort()
    _close_socket(assoc)


def _close_socket(assoc: Association) -> None:
    transport = assoc.dul.socket
    if transport is not None and transport.socket is not None:
        with contextlib.suppress(OSError):
            transport.socket.close()


def connected(assoc: Association) -> bool:
    """Whether the association can carry data: its DUL is in state Sta6.

    While its reactor is held, pynetdicom does not update ``is_established``
    when the peer aborts or the connection closes; the DUL's state machine,
    run by its own thread, always knows.
    """
    return bool(
        assoc.is_established and assoc.dul.state_machine.current_state == "Sta6"
    )


def _nothing_to_read() -> bool:
    return False


@contextmanager
def held(assoc: Association, settings: AssociationSettings) -> Iterator[None]:
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
        yield
    finally:
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.settimeout(previous)
        del dul._is_transport_event
        dul._run_loop_delay = loop_delay
        dul._idle_timer.restart()
        checkpoint.set()


@dataclass
class _Attempts:
    """An item on its way, with what became of its earlier attempts."""

    item: SendItem
    earlier: list[Outcome] = dataclasses.field(default_factory=list)
    waits: Iterator[float] | None = None


def store_all(
    client: Client,
    batches: list[Batch[SendItem]],
    tag: ProvenanceTag,
    retrier: Retrier,
    *,
    stop: Callable[[], bool] = lambda: False,
    on_sent: Callable[[SendItem], None] | None = None,
) -> Iterator[tuple[SendItem, Outcome]]:
    """Send batches, one association each; yield the final outcome of every item.

    A transient or ambiguous outcome (see :mod:`.retry`) is
    tried again after a back-off wait, while the retrier's budget lasts. An
    association lost mid-way (or after a response timeout) is aborted, never used
    again, and a new one is opened for the rest of its batch; so is one rejected
    as transient, after a wait. A batch whose contexts the receiver all rejects
    fails, each item with the reason, and the next batch goes on.

    Args:
        client: Who sends.
        batches: What, over which presentation contexts.
        tag: The provenance element.
        retrier: The run's retry budget.
        stop: Whether to stop: once true, no further instance is sent (nor
            waited for); the one on the wire is answered first.
        on_sent: Called when an instance's data set has gone out (see
            :meth:`Client.store`).

    Raises:
        AssociationError: An association could not be opened; the items not yet
            yielded were not sent.
    """
    for batch in batches:
        pending = deque(_Attempts(item) for item in batch.items)
        while pending:
            try:
                assoc = _associate(client, list(batch.proposals), retrier, stop)
            except NoContextAccepted as exc:
                log.warning("%s", exc)
                for attempts in pending:
                    outcome = Outcome(
                        InstanceStatus.FAILED,
                        None,
                        _no_context_reason_in(exc.rejected, attempts.item),
                    )
                    yield attempts.item, with_history(outcome, attempts.earlier)
                break
            if assoc is None:
                return
            usable = False
            wait_after = 0.0
            try:
                with held(assoc, client.settings):
                    # At least one item per association, so a peer that drops
                    # every association still lets the loop end.
                    while True:
                        attempts = pending.popleft()
                        outcome = client.store(assoc, attempts.item, tag, on_sent)
                        usable = not outcome.association_lost
                        wait = _again(attempts, outcome, retrier)
                        if wait is None:
                            if outcome.status.stored:
                                retrier.stored()
                            yield attempts.item, with_history(outcome, attempts.earlier)
                        else:
                            pending.appendleft(attempts)
                            if usable:
                                _pause(wait, stop)
                            else:
                                wait_after = wait
                        if stop() or not (usable and pending and connected(assoc)):
                            break
            finally:
                # Release only a healthy association: releasing a dead one, or one
                # interrupted mid-message, would wait for an answer that never comes.
                if usable and connected(assoc):
                    release(assoc)
                else:
                    discard(assoc)
            if stop() or _pause(wait_after, stop):
                return


def _pause(seconds: float, stop: Callable[[], bool]) -> bool:
    """Sleep, ending early once ``stop()`` is true; whether it is."""
    deadline = time.monotonic() + seconds
    while not stop():
        left = deadline - time.monotonic()
        if left <= 0:
            return False
        time.sleep(min(left, 0.05))
    return True


def _associate(
    client: Client,
    proposals: list[Proposal],
    retrier: Retrier,
    stop: Callable[[], bool],
) -> Association | None:
    """Open an association; wait and try again while it is refused as transient.

    A transient refusal is e.g. the receiver's association limit being reached.
    A receiver that cannot be reached (connection refused or reset, no answer)
    after this run stored something there is restarting: that is transient too.
    Before anything was stored, it is a configuration error, and fails at once.

    Returns:
        The association; None if ``stop()`` turned true meanwhile.
    """
    waits: Iterator[float] | None = None
    while not stop():
        try:
            return client.associate(proposals)
        except AssociationError as exc:
            if not (exc.transient or (exc.unreachable and retrier.has_stored)):
                raise
            waits = waits or retrier.waits()
            wait = next(waits, None)
            if wait is None:
                raise
            log.warning("%s; trying again in %.1f s", exc, wait)
            _pause(wait, stop)
    return None


def _again(attempts: _Attempts, outcome: Outcome, retrier: Retrier) -> float | None:
    """The wait before trying the item again, or None if this outcome is final."""
    if outcome.retry is Retry.FINAL:
        return None
    attempts.waits = attempts.waits or retrier.waits()
    wait = next(attempts.waits, None)
    if wait is not None:
        attempts.earlier.append(outcome)
        log.warning(
            "%s: %s; trying again in %.1f s",
            os.path.basename(attempts.item.path),
            outcome.reason,
            wait,
        )
    return wait
