"""The attempts of each instance: when to try it again, and its final outcome told.

One loop of retries for every transport (C-STORE and STOW-RS): after each attempt
the transport asks :meth:`Attempts.judge` whether the outcome is final. A transient
or ambiguous one (:mod:`.retry`) is tried again after a back-off wait while the run's
budget (:class:`.retry.Retrier`) lasts; the final outcome's reason then tells of
the earlier attempts (:func:`with_history`).
"""

import dataclasses
from collections.abc import Iterator
from dataclasses import dataclass

from .outcome import Outcome, SendItem
from .retry import Retrier, Retry

LOST_ASSOCIATION = (
    "an association was lost after the data went out and before the response"
)
"""What an ambiguous attempt of C-STORE was, in the report."""


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
                self._earlier.setdefault(item.index, []).append(outcome)
                return Verdict(outcome, wait)
        self._waits.pop(item.index, None)
        earlier = self._earlier.pop(item.index, [])
        if outcome.status.stored:
            self._retrier.stored()
        return Verdict(with_history(outcome, earlier, self._lost))


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
