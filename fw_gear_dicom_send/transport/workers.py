"""Parallel associations: the transport over worker processes, sharing one queue.

Python threads share one interpreter lock, so N threads framing P-DATA go no faster
than one; processes do. Each worker is a process with its own
:class:`.association.Client` (TLS context included), retry budget and
associations; nothing network-related is shared (:mod:`.processes`). The main
process keeps the work (:class:`.work_queue.WorkQueue`): items wait there as
they arrive, and each worker is given a few at a time, a series kept on one
association where that is possible. The main process waits on the input (read
by a thread, :class:`.feed.Arrivals`) and on the workers' news at once.

How many workers there are is the pacing's (:mod:`.pacing`): it is asked at the
start, every :data:`~.pacing.SAMPLE_EVERY` seconds with what was measured, and at
each transient refusal of a new association; workers are started, or retired
(each after the item on its wire), until that many are open, never more than
the items not yet sent warrant (one per :data:`ITEMS_PER_WORKER`). What a worker
held and did not send goes back to the queue when it ends, dies or retires, for
the others; what it sent and was never answered is its own (the receiver may
have stored it: never sent twice). Once a worker has failed (it could not
associate, or died), no other is started: the rest go to those still open, and
when none is left the rest are not sent, for the first failure's reason.
"""

import logging
import selectors
import time
from collections.abc import Callable, Iterable, Sequence

from .. import stopping
from ..dicom.provenance import ProvenanceTag
from . import cpu
from .feed import Arrivals
from .interface import Ended, Events, Unsent
from .job import Job
from .outcome import Outcome, SendItem
from .pacing import SAMPLE_EVERY, Pacing, Refusal, Sample
from .peer import AssociationSettings, Peer
from .processes import Sender
from .retry import RetryPolicy
from .work_queue import State, WorkQueue

log = logging.getLogger(__name__)

ITEMS_PER_WORKER = 16
"""Items not yet sent that warrant one more worker."""
_LOGGERS = ("fw_gear_dicom_send", "pynetdicom")
"""Whose log levels the workers take from this process."""
_OUT_OF_RESOURCES = 0xA700


class Workers:
    """The transport of C-STORE over worker processes, one association each.

    Args:
        sender: The sender process that forks the workers.
        peer: The receiver.
        association: How to associate.
        tag: The provenance element.
        retry: The retry policy (each worker has a budget of its own, restarted
            by any worker's stored instance).
        pacing: How many workers (associations) at once.
    """

    def __init__(
        self,
        sender: Sender,
        *,
        peer: Peer,
        association: AssociationSettings,
        tag: ProvenanceTag,
        retry: RetryPolicy,
        pacing: Pacing,
    ) -> None:
        self._sender = sender
        self._pacing = pacing
        self._job = (peer, association, tag, retry)

    def send(self, items: Iterable[SendItem], events: Events) -> Ended:
        """Have the workers send the items as they arrive.

        Returns:
            For each worker that stopped early, why, for the items it had sent
            unanswered; the first failure's reason for the items none sent; the
            pacing's summary.

        Raises:
            KeyboardInterrupt: Interrupted at once (:class:`.stopping.Interrupted`).
        """
        levels = tuple(
            (name, logging.getLogger(name).getEffectiveLevel()) for name in _LOGGERS
        )
        peer, association, tag, retry = self._job

        def job(number: int, known: tuple[tuple[str, str], ...]) -> Job:
            return Job(number, peer, association, tag, retry, levels, known)

        run = _Run(self._sender, self._pacing, events, job)
        with self._sender.session():
            ended = run.drive(items)
        if ended.associations:
            log.info("sent over %s", ended.associations)
        return ended


class _Run:
    """One send over workers: the queue, the workers, the measures."""

    def __init__(
        self,
        sender: Sender,
        pacing: Pacing,
        events: Events,
        job: Callable[[int, tuple[tuple[str, str], ...]], Job],
    ) -> None:
        self._sender = sender
        self._pacing = pacing
        self._events = events
        self._job = job
        self._queue = WorkQueue()
        self._started = time.monotonic()
        self._cpus = cpu.usable()
        self._cpu_at_start = cpu.busy_seconds(self._cpus)
        self._own_at_start = time.process_time()
        self._target = max(1, pacing.start())
        self._refusals: list[tuple[frozenset[int], str, bool]] = []
        """Refusals not yet told to the pacing (:meth:`_tell_refusals`): the
        workers racing, why, and whether transient."""
        self._next = 1
        self._why: dict[int, str] = {}
        self._unsent: list[Unsent] = []
        self._failure: str | None = None
        self._input_done = False
        self._done_said = False
        self._stored = self._answered = self._busy = 0
        self._response = 0.0

    def drive(self, items: Iterable[SendItem]) -> Ended:
        """Send everything; the end of the send."""
        arrivals: Arrivals | None = None
        if isinstance(items, Sequence):
            for item in items:
                self._queue.add(item)
            self._input_done = True
        else:
            arrivals = Arrivals(items)
        due = self._started + SAMPLE_EVERY
        messages = self._sender.messages
        selector = selectors.DefaultSelector()  # one for the run: no set-up per wake
        selector.register(messages, selectors.EVENT_READ)
        if arrivals is not None:
            selector.register(arrivals.fileno(), selectors.EVENT_READ)
        try:
            while True:
                self._steer()
                reading = arrivals is not None and not self._input_done
                if reading and (stopping.requested() or self._done_said):
                    assert arrivals is not None
                    selector.unregister(arrivals.fileno())
                    self._input_done = True  # nothing more is read
                ready = {
                    key.fd
                    for key, _ in selector.select(max(0.0, due - time.monotonic()))
                }
                if arrivals is not None and arrivals.fileno() in ready:
                    for item in arrivals.take():
                        self._queue.add(item)
                    if arrivals.ended:
                        selector.unregister(arrivals.fileno())
                        self._input_done = True
                while messages.fileno() in ready:
                    try:
                        message = self._sender.receive()
                    except EOFError:  # it died: its workers account for nothing more
                        why = self._sender.died()
                        outstanding = self._queue.outstanding()
                        return self._end((Unsent(why, outstanding),))
                    if message == ("end",):
                        return self._end(())
                    if message:
                        self._handle(message)
                        self._tell_refusals()
                    # another waiting? (the pipe's poll() sets up a selector a call)
                    ready = {key.fd for key, _ in selector.select(0)}
                if time.monotonic() >= due:
                    self._sample()
                    due = time.monotonic() + SAMPLE_EVERY
        finally:
            selector.close()
            if arrivals is not None:
                arrivals.close()

    def _tell_refusals(self) -> None:
        """Tell the pacing of each refusal once the workers it raced with know.

        The receiver may have counted any worker negotiating when it refused
        one: a refusal is told once each of those is open or refused too, with
        the number then open. One for good is told only if some are open (the
        receiver takes no more than those); with none open, the send fails.
        """
        shares = self._queue.shares
        while self._refusals:
            racing, reason, transient = self._refusals[0]
            if any(shares[n].state is State.STARTING for n in racing):
                return
            del self._refusals[0]
            open_ = sum(1 for s in shares.values() if s.ready and s.open)
            if transient or open_:
                refusal = Refusal(reason, open_)
                self._target = max(1, self._pacing.refused(refusal))

    def _end(self, more: tuple[Unsent, ...]) -> Ended:
        summary = self._pacing.summary()
        return Ended((*self._unsent, *more), associations=summary)

    def _sample(self) -> None:
        queue = self._queue
        busy, cpus = self._cpu_load()
        sample = Sample(
            elapsed=time.monotonic() - self._started,
            open=sum(
                1 for s in queue.shares.values() if s.ready and s.open and not s.lost
            ),
            stored=self._stored,
            answered=self._answered,
            response_seconds=self._response,
            out_of_resources=self._busy,
            waiting=queue.waiting,
            busy=busy,
            cpus=cpus,
        )
        self._target = max(1, self._pacing.sample(sample))

    def _cpu_load(self) -> tuple[float, int]:
        """The sample's ``busy`` and ``cpus`` (``0.0, 0`` if unknown).

        Busy but for this process's own work (listing, probing and reading the
        input, the report), which does not grow with the associations.
        """
        now, start = cpu.busy_seconds(self._cpus), self._cpu_at_start
        if now is None or start is None or now[1] != start[1]:
            return 0.0, 0
        own = time.process_time() - self._own_at_start
        return max(0.0, now[0] - start[0] - own), now[1]

    def _handle(self, message: tuple[object, ...]) -> None:
        """One message from a worker or the sender."""
        kind, *rest = message
        queue, events = self._queue, self._events
        if kind == "sent":
            item = queue.sent(int(rest[0]))  # type: ignore[call-overload]
            if item is not None:
                events.sent(item)
        elif kind == "outcome":
            index, outcome, seconds = rest
            assert isinstance(outcome, Outcome) and isinstance(seconds, float)
            item = queue.answered(int(index))  # type: ignore[call-overload]
            if item is not None:
                self._answered += 1
                self._stored += outcome.status.stored
                self._response += seconds
                self._busy += _busy(outcome.dimse_status)
                events.outcome(item, outcome)
        elif kind == "closed":
            queue.shares[int(rest[0])].closed = True  # type: ignore[call-overload]
        elif kind == "ready":
            queue.ready(int(rest[0]))  # type: ignore[call-overload]
        elif kind == "retry":
            self._busy += _busy(rest[1])
        elif kind == "back":
            number, items = int(rest[0]), list(rest[1])  # type: ignore[call-overload]
            queue.hand_back(number, items)
        elif kind == "refused":
            number, reason = int(rest[0]), str(rest[1])  # type: ignore[call-overload]
            share = queue.shares[number]
            if share.state is State.STARTING:
                share.state = State.REFUSED
            racing = frozenset(
                s.number for s in queue.shares.values() if s.state is State.STARTING
            )
            self._refusals.append((racing, reason, True))
        elif kind == "stopped":
            number, reason = int(rest[0]), str(rest[1])  # type: ignore[call-overload]
            self._why.setdefault(number, reason)
            share = queue.shares[number]
            if share.state is State.STARTING:  # refused for good: told if others open
                share.state = State.REFUSED
                racing = frozenset(
                    s.number for s in queue.shares.values() if s.state is State.STARTING
                )
                self._refusals.append((racing, reason, False))
        elif kind == "exited":
            self._exited(int(rest[0]))  # type: ignore[call-overload]

    def _exited(self, number: int) -> None:
        """A worker ended: what it held waits again; what it had flying is its."""
        flying = self._queue.ended(number)
        why = self._why.get(number)
        if why is not None and self._failure is None:
            self._failure = why
        if flying:
            cause = why or f"worker process {number} ended"
            self._unsent.append(Unsent(cause, frozenset(flying)))

    def _steer(self) -> None:
        """Start or retire workers; give them work; say when all is done."""
        queue = self._queue
        if self._done_said:
            return
        shares = list(queue.shares.values())
        alive = [s for s in shares if s.alive]
        stopping_ = stopping.requested()
        if not (stopping_ or self._failure is not None):
            warrant = max(1, queue.unsent // ITEMS_PER_WORKER)
            while len(alive) < min(self._target, warrant) and queue.waiting:
                alive.append(queue.start(self._next))
                known = tuple(queue.pairs)
                self._sender.command("start", self._job(self._next, known))
                self._next += 1
        if len(alive) > self._target:
            # The refused first, then those not yet sending, the newest first.
            order = {State.REFUSED: 0, State.STARTING: 1, State.SENDING: 2}
            alive.sort(key=lambda s: (order[s.state], -s.number))
            for share in alive[: len(alive) - self._target]:
                share.state = State.RETIRING
                self._sender.command("retire", share.number)
        if not stopping_:
            for share in queue.shares.values():
                given = queue.top_up(share.number)
                if given:
                    self._sender.command("give", share.number, tuple(given))
            if self._input_done and not queue.unsent:
                self._finish_idle()
        if self._finished(stopping_):
            self._sample()  # the last measure, with the workers still open
            for share in queue.shares.values():
                if share.state is not State.ENDED:
                    self._sender.command("finish", share.number)
            self._sender.command("done")
            self._done_said = True

    def _finish_idle(self) -> None:
        """Every item has gone out: a worker with none left to answer ends now.

        It releases its association while the others wait for their last
        answers, rather than with them all once the last answer came. While any
        worker still holds items, the others stay open: should it fail, what it
        held goes to them.
        """
        for share in self._queue.shares.values():
            if share.state is State.SENDING and not (share.held or share.flying):
                share.state = State.RETIRING
                self._sender.command("finish", share.number)

    def _finished(self, stopping_: bool) -> bool:
        """Whether nothing more will be sent: all done, or no one left to."""
        queue = self._queue
        if self._input_done and queue.done:
            return True
        if any(s.state is not State.ENDED for s in queue.shares.values()):
            return False
        if stopping_:
            return True
        if self._failure is not None:
            left = queue.drain()
            if left:
                items = frozenset(item.index for item in left)
                self._unsent.append(Unsent(self._failure, items))
            return True
        return False


def _busy(status: object) -> int:
    """1 for an answer 0xA7xx (out of resources), else 0."""
    return int(isinstance(status, int) and status & 0xFF00 == _OUT_OF_RESOURCES)
