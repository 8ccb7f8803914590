"""Where Storage Commitment reports arrive: on our association, or one the PACS opens.

The receiver's N-EVENT-REPORT (event type 1: every instance committed, 2: some
failed, each with its Failure Reason) names the transaction it answers. Its
verdicts go to an :class:`Inbox`, whichever association brings them: the one of
the N-ACTION (its handlers are bound there), or one the receiver opens to us, which
:class:`CommitListener` accepts for the Storage Commitment SOP class with the peer
in the SCP role (SCP/SCU role selection).

pynetdicom writes the answer to a report after its handler returns, so a report
on the association of the N-ACTION is answered after the verdicts are known. The
Inbox counts the answers still owed there (:meth:`Inbox.on_sent` sees them go), and
:meth:`Inbox.answered` waits for them: an A-RELEASE-RQ sent first would leave the
answer nowhere to go (PS3.8 allows nothing but an abort after it).
"""

import logging
import threading
import time
from collections import Counter
from collections.abc import Iterator
from types import TracebackType
from typing import Self, cast

from pydicom.dataset import Dataset
from pynetdicom import evt
from pynetdicom.association import Association
from pynetdicom.dimse_primitives import N_EVENT_REPORT
from pynetdicom.pdu import P_DATA_TF
from pynetdicom.transport import ThreadedAssociationServer

from .. import stopping
from ..errors import UsageError
from ..settings import LISTEN_REQUEST_TIMEOUT
from ..transport.contexts import FALLBACK_SYNTAXES
from ..transport.tcp import set_no_delay
from .commit_results import STORAGE_COMMITMENT_PUSH, Committed, Verdict, failure_text
from .server import AcceptorAE, arm_request_deadline

log = logging.getLogger(__name__)

__all__ = ["CommitListener", "Inbox"]

_NO_SUCH_SOP_CLASS = 0x0118
_INVALID_ARGUMENT = 0x0115
_POLL = 0.2
_ANSWER_TIME = 2.0
"""Seconds to wait for the answers to reports on our association to be written."""
_LAST_COMMAND_FRAGMENT = 0x03
"""Message control header bits of a PDV that ends a DIMSE command (PS3.8 E.2)."""


def _references(info: Dataset, keyword: str) -> Iterator[tuple[str, int | None]]:
    """(SOP Instance UID, Failure Reason) of each item of a sequence of ``info``."""
    for item in info.get(keyword) or ():
        uid = str(item.get("ReferencedSOPInstanceUID", "") or "")
        reason = item.get("FailureReason")
        if uid:
            yield uid, None if reason is None else int(reason)


class Inbox:
    """The event reports of our transactions, from whichever association brings them.

    Reports for a transaction not asked for here are answered and ignored.
    """

    def __init__(self) -> None:
        self._lock = threading.Condition()
        self._waiting: set[str] = set()
        self._verdicts: dict[str, Verdict] = {}
        self._owed: Counter[Association] = Counter()

    def expect(self, transaction_uid: str) -> None:
        """Await a report for this transaction."""
        with self._lock:
            self._waiting.add(transaction_uid)

    def forget(self, transaction_uid: str) -> None:
        """Await no report for this transaction (its request was refused)."""
        with self._lock:
            self._waiting.discard(transaction_uid)

    def pending(self) -> int:
        """Transactions still without a report."""
        with self._lock:
            return len(self._waiting)

    def verdicts(self) -> dict[str, Verdict]:
        """What the reports so far said, by SOP Instance UID."""
        with self._lock:
            return dict(self._verdicts)

    def wait(self, deadline: float) -> bool:
        """Wait until every transaction is reported or ``deadline`` (monotonic).

        Returns:
            Whether every transaction was reported.

        Raises:
            stopping.Interrupted: A stop signal came.
        """
        with self._lock:
            while self._waiting:
                if stopping.requested():
                    raise stopping.Interrupted(stopping.received())
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._lock.wait(min(left, _POLL))
            return True

    def answered(self, assoc: Association) -> bool:
        """Wait until the reports that came on ``assoc`` are answered on the wire.

        At most a few seconds; an association no longer established owes nothing.

        Returns:
            Whether nothing is owed on it.
        """
        deadline = time.monotonic() + _ANSWER_TIME
        with self._lock:
            while self._owed[assoc] and assoc.is_established:
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._lock.wait(min(left, _POLL))
            return True

    def on_sent(self, event: evt.Event) -> None:
        """EVT_PDU_SENT handler on our association: count the answers written.

        Nothing else is sent on an association of the N-ACTION once its request
        is out, so each DIMSE command completed after a report is its answer.
        """
        pdu = event.pdu
        if not isinstance(pdu, P_DATA_TF):
            return
        ends = sum(
            1
            for item in pdu.presentation_data_value_items
            if item.presentation_data_value
            and (item.presentation_data_value[0] & _LAST_COMMAND_FRAGMENT)
            == _LAST_COMMAND_FRAGMENT
        )
        if ends:
            with self._lock:
                if self._owed[event.assoc]:
                    self._owed[event.assoc] -= min(ends, self._owed[event.assoc])
                    self._lock.notify_all()

    def on_report(self, event: evt.Event) -> tuple[int, Dataset | None]:
        """EVT_N_EVENT_REPORT handler: record the verdicts of one report."""
        if event.assoc.is_requestor:
            with self._lock:
                self._owed[event.assoc] += 1
        request = cast(N_EVENT_REPORT, event.request)
        event_type = int(request.EventTypeID or 0)
        if str(request.AffectedSOPClassUID or "") != STORAGE_COMMITMENT_PUSH:
            return _NO_SUCH_SOP_CLASS, None
        try:  # decoded here: a malformed data set raises anything
            info = event.event_information
            transaction = str(info.get("TransactionUID", "") or "")
            committed = list(_references(info, "ReferencedSOPSequence"))
            failed = list(_references(info, "FailedSOPSequence"))
            retrieve_ae = str(info.get("RetrieveAETitle", "") or "")
        except Exception as exc:
            log.warning("unreadable Storage Commitment event report: %s", exc)
            return _INVALID_ARGUMENT, None
        log.info(
            "Storage Commitment event report (type %d) for transaction %s from %s: "
            "%d committed, %d failed; Retrieve AE Title %s",
            event_type,
            transaction,
            event.assoc.requestor.ae_title
            if event.assoc.is_acceptor
            else event.assoc.acceptor.ae_title,
            len(committed),
            len(failed),
            retrieve_ae or "not given",
        )
        with self._lock:
            if transaction not in self._waiting:
                log.warning("event report for unknown transaction %s", transaction)
                return 0x0000, None
            self._waiting.discard(transaction)
            for uid, _ in committed:
                self._verdicts[uid] = Verdict(Committed.YES)
            for uid, reason in failed:
                self._verdicts[uid] = Verdict(Committed.NO, failure_text(reason))
            self._lock.notify_all()
        return 0x0000, None


class CommitListener:
    """Accepts the associations a receiver opens to send its event reports.

    Its AE title is ours (the receiver calls the AE it was configured with); it
    takes the Storage Commitment SOP class only, with the peer as SCP, for use
    in a ``with`` block.

    Args:
        inbox: Where the reports go.
        ae_title: Our AE title; a call to another is rejected.
        port: The port to listen on (0: any free port).
        host: The address to listen on.
    """

    def __init__(self, inbox: Inbox, ae_title: str, port: int, host: str) -> None:
        self._inbox = inbox
        self._address = (host, port)
        self._ae = AcceptorAE(ae_title=ae_title)
        self._ae.require_called_aet = True
        self._ae.acse_timeout = LISTEN_REQUEST_TIMEOUT
        self._ae.add_supported_context(
            STORAGE_COMMITMENT_PUSH,
            list(FALLBACK_SYNTAXES),
            scu_role=True,
            scp_role=True,
        )
        self._server: ThreadedAssociationServer | None = None

    @property
    def port(self) -> int:
        """The port it listens on."""
        server = self._server
        if server is None:
            raise RuntimeError("the listener is not running")
        return int(server.server_address[1])

    def __enter__(self) -> Self:
        """Listen.

        Raises:
            UsageError: The port cannot be listened on.
        """
        try:
            self._server = self._ae.start_server(
                self._address,
                block=False,
                evt_handlers=[
                    (evt.EVT_N_EVENT_REPORT, self._inbox.on_report),
                    (evt.EVT_CONN_OPEN, self._on_open),
                ],
            )
        except OSError as exc:
            host, port = self._address
            raise UsageError(
                f"cannot listen for Storage Commitment reports on {host}:{port}: "
                f"{exc.strerror}"
            ) from None
        log.debug("listening for Storage Commitment reports on port %d", self.port)
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server = None

    def _on_open(self, event: evt.Event) -> None:
        set_no_delay(event)
        arm_request_deadline(event.assoc, LISTEN_REQUEST_TIMEOUT)
