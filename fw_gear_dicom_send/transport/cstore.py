"""C-STORE of a send: batches over associations, retries, one outcome per item."""

import dataclasses
import logging
import os
import time
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass

from pynetdicom.association import Association

from ..dicom.provenance import ProvenanceTag
from ..errors import AssociationError
from ..status import InstanceStatus
from .association import Client, NoContextAccepted, discard, no_context_reason, release
from .contexts import Batch, Proposal
from .fastpath import connected, held
from .outcome import (
    Outcome,
    SendItem,
    with_history,
)
from .retry import Retrier, Retry

log = logging.getLogger(__name__)


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
                        no_context_reason(exc.rejected, attempts.item),
                    )
                    yield attempts.item, with_history(outcome, attempts.earlier)
                break
            if assoc is None:
                return
            usable = False
            wait_after = 0.0
            try:
                with held(assoc, client.settings) as channel:
                    # At least one item per association, so a peer that drops
                    # every association still lets the loop end.
                    while True:
                        attempts = pending.popleft()
                        outcome = channel.store(attempts.item, tag, on_sent)
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
