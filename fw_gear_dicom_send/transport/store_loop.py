"""The loop that stores items over one association after another.

:class:`StoreLoop` takes items from a feed (:mod:`.feed`), opens an association
that proposes their contexts (:mod:`.contexts`), stores them on it (its
:class:`.channel.Channel`) and asks :class:`.attempts.Attempts` whether each
outcome is final; a lost association is discarded and, in a worker, what it
held is handed back to the others. :mod:`.cstore` drives it for this process
and for each worker.
"""

import logging
import os
from collections import deque
from collections.abc import Callable, Generator, Iterator
from dataclasses import dataclass

from pynetdicom.association import Association

from ..dicom.provenance import ProvenanceTag
from ..errors import AssociationError
from ..status import InstanceStatus
from .association import Client, NoContextAccepted, discard, no_context_reason, release
from .attempts import Attempts, pause
from .channel import Channel
from .contexts import Growing, Planned, Proposal
from .fastpath import held
from .feed import Feed, Gap
from .opening import open_retrying
from .outcome import Outcome, SendItem
from .retry import Retrier

log = logging.getLogger(__name__)

Done = tuple[SendItem, Outcome]
"""An item and its final outcome."""

IDLE = 10.0
"""Seconds an association is kept open while the feed gives nothing."""
PASSED_ON = 1
"""Associations an instance may lose and still be handed to another: lost again,
the loop that lost it keeps it, and waits before it tries again."""


@dataclass
class StoreLoop:
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
    ready_owed: bool = False
    """Whether ``on_ready`` waits for a kept instance to be tried."""

    def run(self, feed: Feed, plan: Planned | Growing) -> Iterator[Done]:
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
                ahead_got = self._open_ahead(plan, pending, first=not opened)
                if ahead_got is None:
                    return
                if isinstance(ahead_got, NoContextAccepted):
                    refused, assoc = ahead_got, None
                else:
                    assoc, opened = ahead_got, True
            else:
                if not pending:
                    self._ready_now()
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
                    assoc = self._opening(
                        plan.proposals(pending[0]),
                        pending,
                        self.stop if opened else self._stop_or_give_up,
                        first=not opened,
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

    def _open_ahead(
        self, plan: Planned | Growing, pending: deque[SendItem], *, first: bool
    ) -> Association | NoContextAccepted | None:
        """Open an association before an item is taken; tell ``on_ready``.

        A kept instance (:meth:`_hand_back`) is tried first, and ``on_ready`` told
        once it has been (:meth:`_ready_now`).

        Returns:
            The association; the receiver's refusal of every context; None if the
            loop is to end (a stop, or ``give_up``: retired, or giving up the
            first association).
        """
        try:
            assoc = self._opening(
                plan.proposals(None), pending, self._stop_or_give_up, first=first
            )
        except NoContextAccepted as exc:
            log.warning("%s", exc)
            self.ready_owed = False
            self.on_ready()
            return exc
        if assoc is None:
            return None
        self.ready_owed = bool(pending)
        if not self.ready_owed:
            self.on_ready()
        return assoc

    def _opening(
        self,
        proposals: list[Proposal],
        pending: deque[SendItem],
        stop: Callable[[], bool],
        *,
        first: bool,
    ) -> Association | None:
        """:func:`.opening.open_retrying`; what this loop held goes back if none opens.

        Handed back (if this loop hands back at all) when no association can be
        opened, or it gave up (retired) meanwhile; not on a stop.

        Raises:
            AssociationError: No association (NoContextAccepted: every context
                refused; then nothing is handed back).
        """
        try:
            assoc = open_retrying(
                self.client,
                proposals,
                self.retrier,
                stop,
                self.first_refused if first else None,
            )
        except NoContextAccepted:
            raise
        except AssociationError:
            self._give_back(pending)
            raise
        if assoc is None and not self.stop():
            self._give_back(pending)
        return assoc

    def _give_back(self, pending: deque[SendItem]) -> None:
        """Hand back what this loop held, if it hands back at all."""
        if pending and self.hand_back is not None:
            self.hand_back([self.attempts.hand_back(item) for item in pending])
            pending.clear()

    def _ready_now(self) -> None:
        """Tell ``on_ready`` if it waited for a kept instance to be tried."""
        if self.ready_owed:
            self.ready_owed = False
            self.on_ready()

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
        if kept is not None and got is Gap.END:  # told to finish: others send it
            pending.appendleft(kept)
            kept = None
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
    ) -> Generator[Done, None, tuple[float, bool]]:
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
                        self._ready_now()
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
                    if usable:  # a kept instance was tried: others may come
                        self._ready_now()
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
