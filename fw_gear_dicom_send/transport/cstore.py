"""C-STORE of a send: items over associations as they arrive, retries, outcomes.

:class:`CStore` is the transport (:mod:`.interface`) over associations of this
process. :func:`store_all` sends batches planned up front; :func:`store_stream`
sends items as a feed (:mod:`.feed`) gives them, which each worker process
(:mod:`.workers`) does too. Both run one loop.
"""

import logging
import os
from collections import deque
from collections.abc import Callable, Generator, Iterable, Iterator, Sequence
from dataclasses import dataclass

from pynetdicom.association import Association

from .. import stopping
from ..dicom.provenance import ProvenanceTag
from ..errors import AssociationError
from ..status import InstanceStatus
from .association import Client, NoContextAccepted, discard, no_context_reason, release
from .attempts import Attempts, pause
from .channel import Channel
from .contexts import Batch, Growing, Planned, plan_batches
from .fastpath import held
from .feed import Feed, Gap, ListFeed, ThreadFeed
from .interface import Ended, Events, unsent
from .opening import open_retrying
from .outcome import Outcome, SendItem
from .retry import Retrier

log = logging.getLogger(__name__)

_Done = tuple[SendItem, Outcome]


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

    def send(self, items: Iterable[SendItem], events: Events) -> Ended:
        """Send every item (:func:`store_all` or :func:`store_stream`).

        A sequence is planned up front (:func:`.contexts.plan_batches`); any other
        iterable is sent as it arrives, its presentation contexts growing with it
        (:class:`.contexts.Growing`).

        Returns:
            If no association could be opened, that reason for the items taken and
            not reported (those never taken from ``items`` are left to
            :attr:`.interface.Ended.error`).

        Raises:
            KeyboardInterrupt: Interrupted at once; the associations are aborted.
        """
        taken: dict[int, SendItem] = {}
        if isinstance(items, Sequence):
            taken = {item.index: item for item in items}
            outcomes = store_all(
                self._client,
                plan_batches(list(items)),
                self._tag,
                self._retrier,
                stop=stopping.requested,
                on_sent=events.sent,
            )
        else:
            outcomes = store_stream(
                self._client,
                _Taking(ThreadFeed(items, stopping.requested), taken),
                self._tag,
                self._retrier,
                stop=stopping.requested,
                on_sent=events.sent,
            )
        try:
            for item, outcome in outcomes:
                taken.pop(item.index, None)
                events.outcome(item, outcome)
        except AssociationError as exc:
            return unsent(str(exc), list(taken.values()))
        except KeyboardInterrupt:
            self._client.abort_all()  # else a negotiating association keeps us alive
            raise
        return Ended()


class _Taking:
    """A feed that notes each item taken (until its outcome is reported)."""

    def __init__(self, feed: Feed, taken: dict[int, SendItem]) -> None:
        self._feed = feed
        self._taken = taken

    def take(self, wait: float | None) -> SendItem | Gap:
        got = self._feed.take(wait)
        if not isinstance(got, Gap):
            self._taken[got.index] = got
        return got


def store_all(
    client: Client,
    batches: list[Batch[SendItem]],
    tag: ProvenanceTag,
    retrier: Retrier,
    *,
    stop: Callable[[], bool] = lambda: False,
    on_sent: Callable[[SendItem], None] | None = None,
) -> Iterator[_Done]:
    """Send batches, one association each; yield the final outcome of every item.

    Each batch goes as :func:`store_stream` sends, over the contexts planned for
    it.

    Args:
        client: Who sends.
        batches: What, over which presentation contexts.
        tag: The provenance element.
        retrier: The run's retry budget.
        stop: Whether to stop (see :func:`store_stream`).
        on_sent: Called when an instance's data set has gone out.

    Raises:
        AssociationError: An association could not be opened; the items not yet
            yielded were not sent.
    """
    loop = _Loop(client, tag, retrier, Attempts(retrier), stop, on_sent)
    for batch in batches:
        if stop():
            return
        yield from loop.run(ListFeed(batch.items), Planned(batch.proposals))


def store_stream(
    client: Client,
    feed: Feed,
    tag: ProvenanceTag,
    retrier: Retrier,
    *,
    stop: Callable[[], bool] = lambda: False,
    on_sent: Callable[[SendItem], None] | None = None,
    first_refused: Callable[[AssociationError], None] | None = None,
    give_up: Callable[[], bool] = lambda: False,
    on_retry: Callable[[SendItem, Outcome], None] | None = None,
    known: Iterable[tuple[str, str]] = (),
    on_ready: Callable[[], None] = lambda: None,
    hand_back: Callable[[list[SendItem]], None] | None = None,
) -> Iterator[_Done]:
    """Send items as the feed gives them; yield the final outcome of every item.

    The first item goes out as soon as it comes. An association proposes the
    contexts of every pair seen so far (:class:`.contexts.Growing`); an item
    whose pair it did not propose is sent over a new one. An association the
    feed leaves idle for :data:`IDLE` seconds is released, and a new one opened
    when the next item comes.

    A transient or ambiguous outcome is tried again after a back-off wait, while
    the retrier's budget lasts (:mod:`.attempts`). An association lost mid-way (or
    after a response timeout) is aborted, never used again, and a new one is
    opened for the rest; so is one rejected as transient, after a wait. Items
    whose contexts the receiver all rejects fail, each with the reason; the others
    go on.

    Args:
        client: Who sends.
        feed: The items, as they arrive.
        tag: The provenance element.
        retrier: The run's retry budget.
        stop: Whether to stop: once true, no further instance is sent (nor
            waited for); the one on the wire is answered first.
        on_sent: Called when an instance's data set has gone out (see
            :meth:`.channel.Channel.store`).
        first_refused: Told when the first association is refused as transient
            (before it waits and tries again).
        give_up: Whether to give up opening the first association (then the
            items taken are left unsent, not reported).
        on_retry: Told of an attempt whose outcome is tried again.
        known: (SOP Class, transfer syntax) pairs to propose before any item:
            then the first association is opened at once, before an item is
            taken, and ``on_ready`` told once it is open (or refused every
            context), so that items are given to an open association only.
        on_ready: See ``known``.
        hand_back: Told, when an association is lost, of the items this loop
            still had to send (the one lost included, carrying its attempts) and
            of those the feed gave and it had not taken (perhaps none): others
            send them from then on. The loop then opens a new association before
            it takes another item, and tells ``on_ready`` again. An instance
            that has lost more than :data:`PASSED_ON` associations is kept and
            tried again here, after the back-off wait: one that ends every
            association does not hop from one to the next.

    Raises:
        AssociationError: An association could not be opened; the items taken
            and not yet yielded were not sent.
    """
    loop = _Loop(client, tag, retrier, Attempts(retrier), stop, on_sent)
    loop.first_refused, loop.give_up, loop.on_retry = first_refused, give_up, on_retry
    loop.on_ready, loop.hand_back = on_ready, hand_back
    yield from loop.run(feed, Growing(known=known))


IDLE = 10.0
"""Seconds an association is kept open while the feed gives nothing."""
PASSED_ON = 1
"""Associations an instance may lose and still be handed to another: lost again,
the loop that lost it keeps it, and waits before it tries again."""


@dataclass
class _Loop:
    """The loop of :func:`store_all` and :func:`store_stream`: what it sends with."""

    client: Client
    tag: ProvenanceTag
    retrier: Retrier
    attempts: Attempts
    stop: Callable[[], bool]
    on_sent: Callable[[SendItem], None] | None
    first_refused: Callable[[AssociationError], None] | None = None
    give_up: Callable[[], bool] = lambda: False
    on_retry: Callable[[SendItem, Outcome], None] | None = None
    on_ready: Callable[[], None] = lambda: None
    hand_back: Callable[[list[SendItem]], None] | None = None

    def run(self, feed: Feed, plan: Planned | Growing) -> Iterator[_Done]:
        """Send what the feed gives over associations that ``plan`` proposes.

        A plan that knows pairs before any item (:attr:`.contexts.Growing.known`)
        has the first association opened before the first item is taken; so is
        the one after a lost association whose items were handed back.
        """
        pending: deque[SendItem] = deque()
        refused: NoContextAccepted | None = None
        """The receiver's refusal of every context, while no new pair came."""
        opened = False
        ahead = isinstance(plan, Growing) and plan.known
        while True:
            if ahead:
                ahead = False
                try:
                    assoc = open_retrying(
                        self.client,
                        plan.proposals(None),
                        self.retrier,
                        self._stop_or_give_up,
                        None if opened else self.first_refused,
                    )
                except NoContextAccepted as exc:
                    log.warning("%s", exc)
                    refused, assoc = exc, None
                else:
                    if assoc is None:
                        return
                    opened = True
                self.on_ready()
            else:
                if not pending:
                    got = feed.take(None)
                    if isinstance(got, Gap):
                        return
                    pending.append(got)
                if refused is not None and plan.covers(pending[0]):
                    item = pending.popleft()
                    reason = no_context_reason(refused.rejected, item)
                    failed = Outcome(InstanceStatus.FAILED, None, reason)
                    yield item, self.attempts.judge(item, failed).outcome
                    continue
                try:
                    assoc = open_retrying(
                        self.client,
                        plan.proposals(pending[0]),
                        self.retrier,
                        self.stop if opened else self._stop_or_give_up,
                        None if opened else self.first_refused,
                    )
                except NoContextAccepted as exc:
                    log.warning("%s", exc)
                    refused = exc
                    continue
                if assoc is None:
                    return
                opened, refused = True, None
            if assoc is None:
                continue
            wait_after, lost = yield from self._over(assoc, pending, feed, plan)
            if lost and self.hand_back is not None:
                if not self._hand_back(pending, feed):
                    return
                ahead = True
            if self.stop() or pause(wait_after, self.stop):
                return

    def _hand_back(self, pending: deque[SendItem], feed: Feed) -> bool:
        """Give back what this loop took and did not send, the item lost included.

        Those given and not yet taken go back too. While this loop opens a new
        association, the associations still open send them. An item that lost
        more than :data:`PASSED_ON` associations stays, to be tried here again.

        Returns:
            Whether the feed may give more (it did not end).
        """
        assert self.hand_back is not None
        kept = None
        if pending and self.attempts.associations_lost(pending[0]) > PASSED_ON:
            kept = pending.popleft()
        while True:
            got = feed.take(0.0)
            if isinstance(got, Gap):
                break
            pending.append(got)
        self.hand_back([self.attempts.hand_back(item) for item in pending])
        pending.clear()
        if kept is not None:
            pending.append(kept)
        return got is Gap.IDLE

    def _stop_or_give_up(self) -> bool:
        return self.stop() or self.give_up()

    def _over(
        self,
        assoc: Association,
        pending: deque[SendItem],
        feed: Feed,
        plan: Planned | Growing,
    ) -> Generator[_Done, None, tuple[float, bool]]:
        """Send over one association while it serves.

        Returns:
            The wait before the next association, and whether this one was lost
            (aborted, or its connection closed).
        """
        usable = True
        healthy = False
        wait_after = 0.0
        channel: Channel | None = None
        stop = self.stop
        try:
            with held(assoc, self.client.settings) as channel:
                # An association opened for an item sends it at least, so a peer
                # that drops every association still lets the loop end.
                while True:
                    if not pending:
                        got = feed.take(IDLE)
                        if isinstance(got, Gap):
                            break
                        pending.append(got)
                    if not plan.covers(pending[0]):
                        break  # a pair this association did not propose
                    item = pending.popleft()
                    usable = False  # until answered: interrupted, it is dropped
                    outcome = channel.store(item, self.tag, self.on_sent)
                    usable = not outcome.association_lost
                    verdict = self.attempts.judge(item, outcome)
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
                        if self.on_retry is not None:
                            self.on_retry(item, outcome)
                        if usable:
                            pause(verdict.wait, stop)
                        else:
                            wait_after = verdict.wait
                    if stop() or not (usable and channel.connected):
                        break
        finally:
            # Release only a healthy association: releasing a dead one, or one
            # interrupted mid-message, would wait for an answer that never comes.
            healthy = usable and channel is not None and channel.connected
            if healthy:
                release(assoc)
            else:
                discard(assoc)
        return wait_after, not healthy
