"""Storage Commitment Push Model, as its SCU (PS3.4 Annex J, IHE RAD-10).

A C-STORE answered 0x0000 says the receiver got the bytes; Storage Commitment asks
it to take responsibility for them. One N-ACTION (action type 1) per batch of
instances carries a Transaction UID and the Referenced SOP Sequence (class and
instance UID of each); the receiver answers, usually later, with an N-EVENT-REPORT
naming the transaction: event type 1 when it committed to every instance, 2 when
some failed (the Failed SOP Sequence, each with its Failure Reason). The report
comes on the association of the N-ACTION if that is still open, else on one the
receiver opens to us: :class:`CommitListener` accepts those, for the Storage
Commitment SOP class with the peer in the SCP role (SCP/SCU role selection).
Either way the report goes to the same :class:`Inbox`.
"""

import logging
import threading
import time
from collections.abc import Iterator, Sequence
from types import TracebackType
from typing import Self, cast

from pydicom.dataset import Dataset
from pydicom.uid import generate_uid
from pynetdicom import evt
from pynetdicom.association import Association
from pynetdicom.dimse_primitives import N_EVENT_REPORT
from pynetdicom.status import GENERAL_STATUS, STORAGE_COMMITMENT_SERVICE_CLASS_STATUS

from .. import stopping
from ..errors import AssociationError, UsageError
from ..settings import COMMIT_BATCH, LISTEN_REQUEST_TIMEOUT
from ..transport.association import Client, NoContextAccepted, discard, release
from ..transport.association import set_no_delay as _set_no_delay
from ..transport.contexts import FALLBACK_SYNTAXES, Proposal
from .commit_results import Committed, Reference, Verdict, failure_text
from .server import AcceptorAE, arm_request_deadline

log = logging.getLogger(__name__)

__all__ = [
    "STORAGE_COMMITMENT_PUSH",
    "CommitListener",
    "Inbox",
    "check_supported",
    "request_commitment",
]

STORAGE_COMMITMENT_PUSH = "1.2.840.10008.1.20.1"
"""Storage Commitment Push Model SOP Class UID."""
_WELL_KNOWN_INSTANCE = "1.2.840.10008.1.20.1.1"
"""Storage Commitment Push Model SOP Instance UID (the one instance)."""
_NAME = f"the Storage Commitment Push Model SOP Class ({STORAGE_COMMITMENT_PUSH})"
_REQUEST_COMMITMENT = 1
"""Action Type ID of the request for storage commitment."""
_ALL_COMMITTED = 1
_SOME_FAILED = 2
_NO_SUCH_ACTION = 0x0123
_INVALID_ARGUMENT = 0x0115
_POLL = 0.2


def _proposal() -> Proposal:
    return Proposal(STORAGE_COMMITMENT_PUSH, FALLBACK_SYNTAXES)


def check_supported(client: Client) -> None:
    """Stop before anything is sent if the receiver does not take Storage Commitment.

    One association proposing the SOP class alone, released at once. A receiver
    that cannot be reached is left for the send to report.

    Raises:
        UsageError: The receiver accepts no context for the SOP class.
    """
    try:
        assoc = client.associate([_proposal()])
    except NoContextAccepted:
        raise UsageError(
            f"{client.peer} does not support {_NAME}: it cannot commit to what "
            "it stores (--commit)"
        ) from None
    except AssociationError as exc:
        log.debug("Storage Commitment not checked: %s", exc)
        return
    release(assoc)


def _status_text(code: int) -> str:
    if code == 0x0000:
        return "0x0000 (Success)"
    for table in (STORAGE_COMMITMENT_SERVICE_CLASS_STATUS, GENERAL_STATUS):
        if code in table and table[code][1]:
            return f"0x{code:04X} ({table[code][1]})"
    return f"0x{code:04X} (unknown status)"


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

    def on_report(self, event: evt.Event) -> tuple[int, Dataset | None]:
        """EVT_N_EVENT_REPORT handler: record the verdicts of one report."""
        request = cast(N_EVENT_REPORT, event.request)
        event_type = int(request.EventTypeID or 0)
        if str(request.AffectedSOPClassUID or "") != STORAGE_COMMITMENT_PUSH:
            return _NO_SUCH_ACTION, None
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
        self._server: object | None = None

    @property
    def port(self) -> int:
        """The port it listens on."""
        server = self._server
        if server is None:
            raise RuntimeError("the listener is not running")
        return int(server.server_address[1])  # type: ignore[attr-defined]

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
            self._server.shutdown()  # type: ignore[attr-defined]
            self._server = None

    def _on_open(self, event: evt.Event) -> None:
        _set_no_delay(event)
        arm_request_deadline(event.assoc, LISTEN_REQUEST_TIMEOUT)


def _batches(references: Sequence[Reference], size: int) -> Iterator[list[Reference]]:
    for start in range(0, len(references), size):
        yield list(references[start : start + size])


def _action_data(transaction: str, batch: Sequence[Reference]) -> Dataset:
    data = Dataset()
    data.TransactionUID = transaction
    items = []
    for ref in batch:
        item = Dataset()
        item.ReferencedSOPClassUID = ref.sop_class_uid
        item.ReferencedSOPInstanceUID = ref.sop_instance_uid
        items.append(item)
    data.ReferencedSOPSequence = items
    return data


def request_commitment(
    client: Client,
    references: Sequence[Reference],
    inbox: Inbox,
    *,
    timeout: float,
    batch: int = COMMIT_BATCH,
) -> dict[str, Verdict]:
    """Ask the receiver to commit to these instances; wait for its answers.

    One association carries an N-ACTION per batch; it stays open while the
    answers are awaited (the receiver may report on it), until every transaction
    is reported or ``timeout`` seconds have passed since the first N-ACTION.
    Reports on associations the receiver opens reach ``inbox`` through a
    :class:`CommitListener` the caller runs.

    Returns:
        A verdict for every reference, by SOP Instance UID.

    Raises:
        stopping.Interrupted: A stop signal came while waiting.
    """
    verdicts: dict[str, Verdict] = {}
    if not references:
        return verdicts
    waited = f"no answer within {timeout:g} s"
    try:
        assoc = client.associate(
            [_proposal()], handlers=[(evt.EVT_N_EVENT_REPORT, inbox.on_report)]
        )
    except AssociationError as exc:
        log.error("cannot ask for Storage Commitment: %s", exc)
        why = f"cannot ask for Storage Commitment: {exc}"
        return {r.sop_instance_uid: _unknown(why) for r in references}
    deadline = time.monotonic() + timeout
    try:
        for chunk in _batches(references, batch):
            if not assoc.is_established:
                why = "the association ended before the N-ACTION"
                verdicts |= {r.sop_instance_uid: _unknown(why) for r in chunk}
                continue
            verdicts |= _ask(assoc, chunk, inbox)
        if not inbox.wait(deadline):
            log.warning(
                "no Storage Commitment report for %d transactions within %g s",
                inbox.pending(),
                timeout,
            )
    finally:
        if assoc.is_established:
            release(assoc)
        else:
            discard(assoc)
    reported = inbox.verdicts()
    for ref in references:
        uid = ref.sop_instance_uid
        if uid in verdicts:
            continue
        verdicts[uid] = reported.get(uid, _unknown(waited))
    return verdicts


def _unknown(why: str) -> Verdict:
    return Verdict(Committed.UNKNOWN, why)


def _ask(
    assoc: Association, batch: list[Reference], inbox: Inbox
) -> dict[str, Verdict]:
    """Send one N-ACTION; the verdicts it settles at once (a refusal), by UID."""
    transaction = generate_uid()
    inbox.expect(transaction)
    status, _ = assoc.send_n_action(
        _action_data(transaction, batch),
        _REQUEST_COMMITMENT,
        STORAGE_COMMITMENT_PUSH,
        _WELL_KNOWN_INSTANCE,
    )
    code = int(status.Status) if "Status" in status else None
    if code is None:
        why = "no answer to the N-ACTION"
    elif code == 0x0000:
        log.info(
            "Storage Commitment requested for %d instances: transaction %s, "
            "N-ACTION status %s",
            len(batch),
            transaction,
            _status_text(code),
        )
        return {}
    else:
        why = f"N-ACTION refused: {_status_text(code)}"
    inbox.forget(transaction)
    log.error("Storage Commitment transaction %s: %s", transaction, why)
    state = Committed.UNKNOWN if code is None else Committed.NO
    return {ref.sop_instance_uid: Verdict(state, why) for ref in batch}
