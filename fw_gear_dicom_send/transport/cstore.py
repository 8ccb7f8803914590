"""C-STORE of a send: batches over associations, retries, one outcome per item.

:class:`CStore` is the transport (:mod:`.interface`) over associations of this
process; :func:`store_all` is its loop, which each worker process
(:mod:`.workers`) runs too.
"""

import logging
import os
from collections import deque
from collections.abc import Callable, Iterator, Sequence

from pynetdicom.association import Association

from .. import stopping
from ..dicom.provenance import ProvenanceTag
from ..errors import AssociationError
from ..status import InstanceStatus
from .association import Client, NoContextAccepted, discard, no_context_reason, release
from .attempts import Attempts, pause
from .channel import Channel
from .contexts import Batch, Proposal, plan_batches
from .fastpath import held
from .interface import Ended, Events, unsent
from .outcome import Outcome, SendItem
from .retry import Retrier

log = logging.getLogger(__name__)


class CStore:
    """The transport of C-STORE over associations of this process, one at a time.

    Args:
        client: Who sends.
        tag: The provenance element.
        retrier: The run's retry budget.
    """

    def __init__(self, client: Client, tag: ProvenanceTag, retrier: Retrier) -> None:
        self._client = client
        self._tag = tag
        self._retrier = retrier

    def send(self, items: Sequence[SendItem], events: Events) -> Ended:
        """Send every item (:func:`store_all`), telling ``events``.

        Returns:
            If no association could be opened, that reason for the items not
            reported.

        Raises:
            KeyboardInterrupt: Interrupted at once; the associations are aborted.
        """
        reported: set[int] = set()
        try:
            for item, outcome in store_all(
                self._client,
                plan_batches(list(items)),
                self._tag,
                self._retrier,
                stop=stopping.requested,
                on_sent=events.sent,
            ):
                reported.add(item.index)
                events.outcome(item, outcome)
        except AssociationError as exc:
            return unsent(str(exc), [i for i in items if i.index not in reported])
        except KeyboardInterrupt:
            self._client.abort_all()  # else a negotiating association keeps us alive
            raise
        return Ended()


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

    A transient or ambiguous outcome is tried again after a back-off wait, while
    the retrier's budget lasts (:mod:`.attempts`). An
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
            :meth:`.fastpath.Channel.store`).

    Raises:
        AssociationError: An association could not be opened; the items not yet
            yielded were not sent.
    """
    attempts = Attempts(retrier)
    for batch in batches:
        pending = deque(batch.items)
        while pending:
            try:
                assoc = _associate(client, list(batch.proposals), retrier, stop)
            except NoContextAccepted as exc:
                log.warning("%s", exc)
                for item in pending:
                    reason = no_context_reason(exc.rejected, item)
                    failed = Outcome(InstanceStatus.FAILED, None, reason)
                    yield item, attempts.judge(item, failed).outcome
                break
            if assoc is None:
                return
            usable = False
            wait_after = 0.0
            channel: Channel | None = None
            try:
                with held(assoc, client.settings) as channel:
                    # At least one item per association, so a peer that drops
                    # every association still lets the loop end.
                    while True:
                        item = pending.popleft()
                        outcome = channel.store(item, tag, on_sent)
                        usable = not outcome.association_lost
                        verdict = attempts.judge(item, outcome)
                        if verdict.wait is None:
                            yield item, verdict.outcome
                        else:
                            log.warning(
                                "%s: %s; trying again in %.1f s",
                                os.path.basename(item.path),
                                outcome.reason,
                                verdict.wait,
                            )
                            pending.appendleft(item)
                            if usable:
                                pause(verdict.wait, stop)
                            else:
                                wait_after = verdict.wait
                        if stop() or not (usable and pending and channel.connected):
                            break
            finally:
                # Release only a healthy association: releasing a dead one, or one
                # interrupted mid-message, would wait for an answer that never comes.
                if usable and channel is not None and channel.connected:
                    release(assoc)
                else:
                    discard(assoc)
            if stop() or pause(wait_after, stop):
                return


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
            pause(wait, stop)
    return None
