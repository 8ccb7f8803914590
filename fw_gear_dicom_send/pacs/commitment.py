"""Storage Commitment Push Model, as its SCU (PS3.4 Annex J, IHE RAD-10).

A C-STORE answered 0x0000 says the receiver got the bytes; Storage Commitment asks
it to take responsibility for them. One N-ACTION (action type 1) per batch of
instances carries a Transaction UID and the Referenced SOP Sequence (class and
instance UID of each); the receiver answers, usually later, with an N-EVENT-REPORT
naming the transaction: event type 1 when it committed to every instance, 2 when
some failed (the Failed SOP Sequence, each with its Failure Reason). The report
comes on the association of the N-ACTION if that is still open, else on one the
receiver opens to us (:mod:`.commit_inbox`). Either way the report goes to the
same :class:`~.commit_inbox.Inbox`.
"""

import logging
import time
from collections.abc import Iterator, Sequence

from pydicom.dataset import Dataset
from pydicom.uid import generate_uid
from pynetdicom import evt
from pynetdicom.association import Association
from pynetdicom.status import (
    GENERAL_STATUS,
    STATUS_SUCCESS,
    STATUS_WARNING,
    STORAGE_COMMITMENT_SERVICE_CLASS_STATUS,
    code_to_category,
)

from ..errors import AssociationError, UsageError
from ..settings import COMMIT_BATCH
from ..transport.association import Client, NoContextAccepted, discard, release
from ..transport.contexts import FALLBACK_SYNTAXES, Proposal
from ..transport.fastpath import park_reactor
from .commit_inbox import CommitListener, Inbox
from .commit_results import STORAGE_COMMITMENT_PUSH, Committed, Reference, Verdict

log = logging.getLogger(__name__)

__all__ = [
    "STORAGE_COMMITMENT_PUSH",
    "CommitListener",
    "Inbox",
    "check_supported",
    "request_commitment",
]

_WELL_KNOWN_INSTANCE = "1.2.840.10008.1.20.1.1"
"""Storage Commitment Push Model SOP Instance UID (the one instance)."""
_NAME = f"the Storage Commitment Push Model SOP Class ({STORAGE_COMMITMENT_PUSH})"
_REQUEST_COMMITMENT = 1
"""Action Type ID of the request for storage commitment."""


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

    Each batch has its own association carrying its one N-ACTION: a report that
    comes on it while the next N-ACTION awaits its answer would be taken for that
    answer. Each stays open while the answers are awaited (the receiver may
    report on it), until every transaction is reported or ``timeout`` seconds
    have passed since the first request, and is released once the reports that
    came on it are answered. Reports on associations the receiver
    opens reach ``inbox`` through a :class:`CommitListener` the caller runs.

    Returns:
        A verdict for every reference, by SOP Instance UID.

    Raises:
        stopping.Interrupted: A stop signal came while waiting.
    """
    verdicts: dict[str, Verdict] = {}
    if not references:
        return verdicts
    waited = f"no answer within {timeout:g} s"
    deadline = time.monotonic() + timeout
    opened: list[Association] = []
    try:
        for chunk in _batches(references, batch):
            try:
                assoc = client.associate(
                    [_proposal()],
                    handlers=[
                        (evt.EVT_N_EVENT_REPORT, inbox.on_report),
                        (evt.EVT_PDU_SENT, inbox.on_sent),
                    ],
                )
            except AssociationError as exc:
                log.error("cannot ask for Storage Commitment: %s", exc)
                why = f"cannot ask for Storage Commitment: {exc}"
                verdicts |= {r.sop_instance_uid: _unknown(why) for r in chunk}
                continue
            opened.append(assoc)
            park_reactor(assoc, client.settings.acse_timeout)
            verdicts |= _ask(assoc, chunk, inbox)
        if not inbox.wait(deadline):
            log.warning(
                "no Storage Commitment report for %d transactions within %g s",
                inbox.pending(),
                timeout,
            )
    finally:
        for assoc in opened:
            if assoc.is_established and inbox.answered(assoc):
                release(assoc)
            else:
                discard(assoc)
    reported = inbox.verdicts()
    for ref in references:
        uid = ref.sop_instance_uid
        if uid not in verdicts:
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
    elif code_to_category(code) in (STATUS_SUCCESS, STATUS_WARNING):
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
