"""The attempts of each instance: when to try it again, and its final outcome told.

One loop of retries for every transport (C-STORE and STOW-RS): after each attempt
the transport asks :meth:`Attempts.judge` whether the outcome is final. A transient
or ambiguous one (:mod:`.retry`) is tried again after a back-off wait while the run's
budget (:class:`.retry.Retrier`) lasts; the final outcome's reason then tells of
the earlier attempts (:func:`with_history`). Every wait between attempts is a
:func:`pause`, which a stop asked for
(:func:`~fw_gear_dicom_send.stopping.requested`) ends at once.
"""

import dataclasses
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass

from .outcome import Outcome, SendItem
from .retry import Retrier, Retry

LOST_ASSOCIATION = (
    "an association was lost after the data went out and before the response"
)
"""What an ambiguous attempt of C-STORE was, in the report."""
_POLL = 0.05
"""Seconds between two looks at the stop predicate while pausing."""


def pause(seconds: float, stop: Callable[[], bool]) -> bool:
    """Wait ``seconds``, ending early once ``stop()`` is true; whether it is.

    Every transport waits between attempts here, so that a stop (the
    transport's ``stop``: :func:`~fw_gear_dicom_send.stopping.requested`) never
    waits out a back-off or a server's Retry-After. A stop asked for already
    ends it before any wait.
    """
    deadline = time.monotonic() + seconds
    while not stop():
        left = deadline - time.monotonic()
        if left <= 0:
            return False
        time.sleep(min(left, _POLL))
    return True


@dataclass(frozen=True, slots=True)
class Verdict:
    """What to do after an attempt: report its outcome, or wait and try again."""

    outcome: Outcome
    """Final: the outcome to report, told with the earlier attempts. Else this
    attempt's outcome."""
    wait: float | None = None
    """Seconds to wait before the next attempt; None when the outcome is final."""


class Attempts:
    """The earlier attempts and back-off waits of the items of one sender.

    Args:
        retrier: The run's budget and waits.
        lost: What an ambiguous earlier attempt means, for the report (the
            transport's words for a request that went out and was not answered).
    """

    def __init__(self, retrier: Retrier, lost: str = LOST_ASSOCIATION) -> None:
        self._retrier = retrier
        self._lost = lost
        self._earlier: dict[int, list[Outcome]] = {}
        self._waits: dict[int, Iterator[float]] = {}

    def judge(self, item: SendItem, outcome: Outcome) -> Verdict:
        """Whether an attempt's outcome is final; if not, the wait before the next.

        A final outcome of a stored instance restarts the budget. An outcome
        worth another try is final all the same once the budget is spent.
        """
        if outcome.retry is not Retry.FINAL:
            waits = self._waits.setdefault(item.index, self._retrier.waits())
            wait = next(waits, None)
            if wait is not None:
                self._earlier.setdefault(item.index, list(item.earlier)).append(outcome)
                return Verdict(outcome, wait)
        self._waits.pop(item.index, None)
        earlier = self._earlier.pop(item.index, None)
        if earlier is None:
            earlier = list(item.earlier)
        if outcome.status.stored:
            self._retrier.stored()
        return Verdict(with_history(outcome, earlier, self._lost))

    def asked_wait(self, seconds: float | None) -> float:
        """A wait the receiver asked for (Retry-After), cut to the budget left.

        A receiver that asks for more than the budget left gets its next try when
        the budget ends, not long after it. 0 if none was asked for.
        """
        if seconds is None:
            return 0.0
        return max(0.0, min(seconds, self._retrier.left))

    def may_have_arrived(self, item: SendItem) -> bool:
        """Whether an attempt of an item still to be tried again was ambiguous.

        Its data went out and no answer came: if the item is never tried again
        (a stop), the receiver may have stored it.
        """
        return any(
            o.retry is Retry.AMBIGUOUS
            for o in self._earlier.get(item.index, item.earlier)
        )

    def associations_lost(self, item: SendItem) -> int:
        """How many of the item's attempts so far lost their association."""
        earlier = self._earlier.get(item.index, item.earlier)
        return sum(outcome.association_lost for outcome in earlier)

    def hand_back(self, item: SendItem) -> SendItem:
        """The item, carrying its earlier attempts, for another sender to try.

        This sender forgets it: the next attempt and its final outcome are the
        other's, whose report still tells of these attempts.
        """
        self._waits.pop(item.index, None)
        earlier = self._earlier.pop(item.index, None)
        if not earlier:
            return item
        return dataclasses.replace(item, earlier=tuple(earlier))


def with_history(
    outcome: Outcome, earlier: list[Outcome], lost: str = LOST_ASSOCIATION
) -> Outcome:
    """The final outcome, its reason telling of earlier attempts if there were.

    Args:
        outcome: The last attempt's outcome.
        earlier: The outcomes of the attempts before it, first first.
        lost: What an ambiguous earlier attempt means, for the report.
    """
    if not earlier:
        return outcome
    tries = f"{len(earlier) + 1} attempts"
    if outcome.status.stored:
        if any(o.retry is Retry.AMBIGUOUS for o in earlier):
            note = (
                f"sent again ({tries}): {lost}, so the receiver may have "
                "received it twice"
            )
        else:
            note = f"stored after {tries}; first: {earlier[0].reason}"
        reason = f"{outcome.reason}; {note}" if outcome.reason else note
        return dataclasses.replace(outcome, reason=reason)
    if outcome.retry is Retry.FINAL:  # refused for good at the last attempt
        return dataclasses.replace(outcome, reason=f"{outcome.reason} ({tries})")
    return dataclasses.replace(
        outcome, reason=f"{outcome.reason} ({tries}, retries given up)"
    )
