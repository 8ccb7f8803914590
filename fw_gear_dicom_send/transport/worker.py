"""One worker process of a parallel send: it sends what the main process gives it.

The main process gives a worker a few items at a time (:mod:`.work_queue`), down
a pipe that the sender process passes on (:mod:`.processes`); the worker sends
them as they come (:func:`.cstore.store_stream`, its feed a
:class:`.feed.PipeFeed`) over a client and associations of its own. It opens its
first association at once, proposing the pairs of the send seen so far, and tells
the main process straight up the shared pipe: that association is open
(``ready``: only then is it given items) or was refused (``refused``); an item's
data went out (``sent``); its final outcome, with the seconds from going out to
the answer (``outcome``); an answer tried again (``retry``); the items it hands
back when an association is lost, to be sent by the workers open while it opens
another (``back``, then ``ready`` again, once that one has tried the instance it
kept, if it kept one: :data:`.store_loop.PASSED_ON`); its last association let go
(``closed``). Told to finish, it
sends what it holds and ends; told to retire, it finishes the item on the wire,
releases and ends (what it held goes back to the main process's queue).
"""

# A host name is encoded with the IDNA codec at the first connect, which imports
# it: imported here, in the sender process, not again in each worker forked.
import encodings.idna  # noqa: F401
import time
from typing import Any

from .. import stopping
from ..errors import AssociationError
from .association import Client
from .cstore import store_stream
from .feed import PipeFeed
from .job import Job
from .outcome import Outcome, SendItem
from .processes import Up, log_up
from .retry import Retrier


class _Reporting:
    """A worker's news, sent up as messages."""

    def __init__(self, up: Up, number: int) -> None:
        self._up = up
        self._number = number
        self._sent_at: dict[int, float] = {}

    def sent(self, item: SendItem) -> None:
        """Say that an item's data went out, before its answer is read."""
        self._sent_at[item.index] = time.monotonic()
        self._up.put(("sent", item.index))

    def outcome(self, item: SendItem, outcome: Outcome) -> None:
        """Send an item's final outcome up, with its response time."""
        sent = self._sent_at.pop(item.index, None)
        seconds = time.monotonic() - sent if sent is not None else 0.0
        self._up.put(("outcome", item.index, outcome, seconds))

    def retry(self, item: SendItem, outcome: Outcome) -> None:
        """Say that an answer is tried again (its status, if it had one)."""
        self._sent_at.pop(item.index, None)
        self._up.put(("retry", item.index, outcome.dimse_status))

    def hand_back(self, items: list[SendItem]) -> None:
        """Give items back to the main process, for the workers still open."""
        for item in items:
            self._sent_at.pop(item.index, None)
        self._up.put(("back", self._number, tuple(items)))

    def ready(self) -> None:
        """Say that an association is open: items may come.

        The first, or one after a loss, once that has tried what it kept.
        """
        self._up.put(("ready", self._number))

    def refused(self, exc: AssociationError) -> None:
        """Say that the first association was refused as transient."""
        self._up.put(("refused", self._number, str(exc)))


def work(job: Job, down: Any, up: Up, parent: int, stored: Any) -> None:
    """A worker: send the items given down ``down`` over associations of its own.

    ``stored`` is when any of the run's workers last stored an instance, shared
    by them all (see :class:`.retry.Retrier`).
    """
    stopping.install_child(stopping.WORKER_GRACE)
    stopping.die_with_parent(parent)
    log_up(up, job.log_levels)
    client = Client(job.peer, job.association)
    feed = PipeFeed(down, stopping.requested)
    reporting = _Reporting(up, job.number)
    try:
        for item, outcome in store_stream(
            client,
            feed,
            job.tag,
            Retrier(job.retry, stored),
            stop=stopping.requested,
            on_sent=reporting.sent,
            first_refused=reporting.refused,
            give_up=feed.given_up,
            on_retry=reporting.retry,
            known=job.known,
            on_ready=reporting.ready,
            hand_back=reporting.hand_back,
        ):
            reporting.outcome(item, outcome)
    except AssociationError as exc:
        up.put(("stopped", job.number, str(exc)))
        return
    except KeyboardInterrupt:
        client.abort_all()  # else a negotiating association keeps us alive
        up.put(("stopped", job.number, stopping.INTERRUPTED))
        return
    up.put(("closed", job.number))
    if stopping.requested():
        up.put(("stopped", job.number, stopping.INTERRUPTED))
