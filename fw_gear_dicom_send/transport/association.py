"""Associations: opening them, and saying in one line why one did not open.

pynetdicom negotiates and releases associations and runs every DIMSE service but
C-STORE of a send (C-ECHO, C-FIND, C-MOVE, C-GET); C-STORE over an association is
:mod:`.fastpath`'s (or :mod:`.fallback`'s). Every association socket gets
``TCP_NODELAY`` as soon as it connects (:mod:`.tcp`).
"""

import contextlib
import logging
import socket
import threading
import time
import weakref
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from pynetdicom import AE, build_context, build_role, evt
from pynetdicom.association import Association
from pynetdicom.dul import DULServiceProvider
from pynetdicom.pdu import A_ASSOCIATE_AC, A_ASSOCIATE_RJ
from pynetdicom.pdu_primitives import A_ASSOCIATE
from pynetdicom.presentation import PresentationContext

from ..dicom.uids import VERIFICATION
from ..errors import AssociationError
from ..logs import VERBOSE
from .contexts import FALLBACK_SYNTAXES, Proposal, syntax_name
from .hints import (
    ABSTRACT_SYNTAX_NOT_SUPPORTED,
    DATA_RECEIVED,
    PEER_ENDS,
    WE,
    WE_END,
    describe_rejected,
    ended_line,
    no_service_hint,
    rejection_hint,
    unknown_ae,
)
from .outcome import SendItem
from .peer import AssociationSettings, Peer
from .tcp import set_no_delay
from .tls_context import client_context
from .tls_diagnosis import explain_failure, speaks_tls

log = logging.getLogger(__name__)

_REJECTED_TRANSIENT = 2
_TLS_PROBE_TIMEOUT = 5.0
_INVALID_PDU = "Evt19"
"""The state machine's event for an unrecognised or invalid PDU."""


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
    accepted: bool = False  # an A-ASSOCIATE-AC came (perhaps accepting no context)
    invalid_pdu: bool = False  # the peer sent something that is not a DICOM PDU
    ended_by: str = ""
    """Who ended it first: ``we``, or how the peer did (:data:`.hints.PEER_ENDS`)."""
    answered: bool = False  # the peer sent data (a DIMSE message) on it
    end_logged: bool = False


class Client:
    """Opens associations to one peer; C-ECHO; aborts what it opened."""

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
        self._watches: weakref.WeakKeyDictionary[Association, _Watch] = (
            weakref.WeakKeyDictionary()
        )

    def associate(
        self,
        proposals: list[Proposal],
        *,
        roles: Sequence[str] = (),
        handlers: Sequence[tuple[evt.EventType, Callable[..., Any]]] = (),
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

        def on_pdu(event: evt.Event) -> None:
            # As the answer comes off the wire: when the peer closes the connection
            # right after an A-ASSOCIATE-RJ, pynetdicom may see the close first and
            # abort without handing the rejection on to its ACSE.
            pdu = event.pdu
            if isinstance(pdu, A_ASSOCIATE_RJ) and watch.rejection is None:
                watch.rejection = pdu.to_primitive()
            watch.accepted = watch.accepted or isinstance(pdu, A_ASSOCIATE_AC)

        def on_transition(event: evt.Event) -> None:
            fsm_event = event.fsm_event
            if fsm_event == _INVALID_PDU:
                watch.invalid_pdu = True
            elif fsm_event == DATA_RECEIVED and not watch.ended_by:
                watch.answered = True
            if not watch.ended_by and fsm_event in WE_END:
                watch.ended_by = WE
            elif not watch.ended_by and fsm_event in PEER_ENDS:
                watch.ended_by = PEER_ENDS[fsm_event]

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
                (evt.EVT_PDU_RECV, on_pdu),
                (evt.EVT_FSM_TRANSITION, on_transition),
                (evt.EVT_RELEASED, self._log_end),
                (evt.EVT_ABORTED, self._log_end),
                *handlers,
            ],
        )
        if assoc.is_established:
            self._watches[assoc] = watch
            log.log(
                VERBOSE,
                "association with %s opened: %d of %d presentation contexts accepted",
                self.peer,
                len(assoc.accepted_contexts),
                len(contexts),
            )
            return assoc
        _close_socket(assoc)  # pynetdicom leaves it open when the peer hangs up
        if watch.accepted and not assoc.accepted_contexts:
            rejected = list(assoc.rejected_contexts)
            raise NoContextAccepted(
                f"{self.peer} accepts no presentation context for "
                + "; ".join(describe_rejected(rejected))
                + no_service_hint(rejected),
                rejected,
            )
        reason, transient = self._failure_reason(watch, time.monotonic() - started)
        unreachable = not watch.connected and watch.rejection is None
        raise AssociationError(reason, transient=transient, unreachable=unreachable)

    def _log_end(self, event: evt.Event) -> None:
        """EVT_RELEASED, EVT_ABORTED: say so at VERBOSE, and who ended it."""
        watch = self._watches.get(event.assoc)
        if watch is None or watch.end_logged:
            return
        watch.end_logged = True
        how = "released" if event.event is evt.EVT_RELEASED else "aborted"
        by_peer = watch.ended_by not in ("", WE)
        log.log(
            VERBOSE,
            "association with %s %s%s",
            self.peer,
            how,
            " by the peer" if by_peer else "",
        )

    def ended(self, assoc: Association, asked: str) -> str:
        """What the peer did when an association ended before an answer, in a line.

        Args:
            assoc: The association that ended.
            asked: What it was asked (``C-FIND``, ``C-MOVE``, ``C-GET``).

        Returns:
            Who ended it and how (the peer's A-ABORT or A-RELEASE, the connection
            closing, or no answer in time), and the likely cause: a peer that
            accepted us and then ends the association at the first request
            refuses that request from our calling AE title.
        """
        watch = self._watches.get(assoc)
        return ended_line(
            self.peer,
            self.settings.calling_ae,
            watch.ended_by if watch is not None else "",
            asked,
            aborted=assoc.is_aborted,
            dimse_timeout=self.settings.dimse_timeout,
            answered_before=watch is not None and watch.answered,
        )

    def abort_all(self, wait: float = 1.0) -> None:
        """Abort every association of this client, established or still connecting.

        Found by their DUL threads: an association still negotiating is not among
        pynetdicom's active ones, yet its thread would keep the process alive until
        the ACSE timeout. Each gets an A-ABORT if its connection is up; its thread
        stops once idle (the abort sent, the connection closed), or after ``wait``
        seconds whatever state it is in.
        """
        duls = [
            thread
            for thread in threading.enumerate()
            if isinstance(thread, DULServiceProvider) and thread.assoc.ae is self._ae
        ]
        for dul in duls:
            dul.assoc.abort(block=False)
        deadline = time.monotonic() + wait
        running = duls
        while running and time.monotonic() < deadline:
            running = [dul for dul in running if not dul.stop_dul()]  # idle: stopped
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
                f"{r.source_str}: {r.reason_str})"
                + rejection_hint(r, self.settings.calling_ae),
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
        if watch.ended_by == "aborted":
            return (
                f"{peer} aborted the association request: "
                + unknown_ae(self.settings.calling_ae),
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
        from .fastpath import park_reactor  # noqa: PLC0415 - fastpath imports this

        assoc = self.associate([Proposal(VERIFICATION, FALLBACK_SYNTAXES)])
        try:
            park_reactor(assoc, self.settings.acse_timeout)
            status = assoc.send_c_echo()
        finally:
            release(assoc)
        if "Status" not in status:
            raise AssociationError(f"no answer to C-ECHO from {self.peer}")
        return int(status.Status)


def no_context_reason(rejected: list[PresentationContext], item: SendItem) -> str:
    """Why an item has no context among those accepted: its class or its syntax."""
    results = {c.result for c in rejected if c.abstract_syntax == item.sop_class_uid}
    sop = syntax_name(item.sop_class_uid)
    if results == {ABSTRACT_SYNTAX_NOT_SUPPORTED}:
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
