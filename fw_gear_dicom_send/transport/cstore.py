"""C-STORE of a send: items over associations as they arrive, retries, outcomes.

:class:`CStore` is the transport (:mod:`.interface`) over associations of this
process. :func:`store_all` sends batches planned up front; :func:`store_stream`
sends items as a feed (:mod:`.feed`) gives them, which each worker process
(:mod:`.workers`) does too. Both run one loop (:mod:`.store_loop`).
"""

import logging
from collections.abc import Callable, Iterable, Iterator, Sequence

from .. import stopping
from ..dicom.provenance import ProvenanceTag
from ..errors import AssociationError
from .association import Client
from .attempts import Attempts
from .contexts import Batch, Growing, Planned, plan_batches
from .feed import Feed, Gap, ListFeed, ThreadFeed
from .interface import Ended, Events, unsent
from .outcome import Outcome, SendItem
from .retry import Retrier
from .store_loop import Done, StoreLoop

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
) -> Iterator[Done]:
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
    loop = StoreLoop(client, tag, retrier, Attempts(retrier), stop, on_sent)
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
) -> Iterator[Done]:
    """Send items as the feed gives them; yield the final outcome of every item.

    The first item goes out as soon as it comes. An association proposes the
    contexts of every pair seen so far (:class:`.contexts.Growing`); an item
    whose pair it did not propose is sent over a new one. An association the
    feed leaves idle for :data:`.store_loop.IDLE` seconds is released, and a new
    one opened when the next item comes.

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
        give_up: Whether to give up opening an association (the worker was
            retired): the first (then the items taken are left unsent, not
            reported), or one after a loss (then they are handed back).
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
            that has lost more than :data:`.store_loop.PASSED_ON` associations
            is kept and tried again here, after the back-off wait, before
            ``on_ready``: one that ends every association does not hop from
            one to the next. (It goes back with the rest if the feed has ended,
            if no new association can be opened, or if ``give_up`` turns true
            while one is.)

    Raises:
        AssociationError: An association could not be opened; the items taken
            and not yet yielded were not sent (or handed back).
    """
    loop = StoreLoop(client, tag, retrier, Attempts(retrier), stop, on_sent)
    loop.first_refused, loop.give_up, loop.on_retry = first_refused, give_up, on_retry
    loop.on_ready, loop.hand_back = on_ready, hand_back
    yield from loop.run(feed, Growing(known=known))
