"""The outcomes of a send, kept by item, and the report's rows made from them.

While a transport sends, :class:`Tally` (its
:class:`~fw_gear_dicom_send.transport.interface.Events`) keeps each
item's final outcome and the items in flight (their data went out, their answer
has not come), logs failures and reports progress. Once the send has ended,
:func:`account` makes every row at once: the probed rows, each item's outcome, and
for the items without one, why (the transport's reason for them, or the run's).
"""

import logging
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import replace

from ..status import InstanceStatus
from ..transport.interface import Ended
from ..transport.outcome import Outcome, SendItem
from .report import Row
from .request import Progress, ProgressCallback

log = logging.getLogger(__name__)

NOT_SENT = "not sent"
"""The reason of an instance the send ended without, when nothing says why."""


def maybe_stored(cause: str) -> str:
    """The reason of an instance whose data went out and whose answer never came."""
    return (
        f"{cause} after its data went out, before the answer: the receiver may "
        "have stored it (not counted as stored)"
    )


class Tally:
    """The events of a send: outcomes by item, the items in flight, progress.

    Args:
        rows: The probed rows (to name a file in the log).
        items: What is sent (for the totals of progress).
        started: When the run started (``time.monotonic()``).
        on_progress: Called after each outcome.
        on_final: Called with each item whose outcome is final (its file may go).
    """

    def __init__(
        self,
        rows: Sequence[Row],
        items: Sequence[SendItem],
        started: float,
        on_progress: ProgressCallback | None,
        on_final: Callable[[SendItem], None] | None = None,
    ) -> None:
        self._rows = rows
        self._on_final = on_final
        self._started = started
        self._on_progress = on_progress
        self._total = len(items)
        self._bytes_total = sum(item.size for item in items)
        self._bytes_done = 0
        self.outcomes: dict[int, Outcome] = {}
        """The final outcome of each item reported, by index."""
        self.in_flight: set[int] = set()
        """Items whose data went out and whose outcome has not come."""

    def add(self, item: SendItem) -> None:
        """Count one more item to send (items listed while the send goes on)."""
        self._total += 1
        self._bytes_total += item.size

    def sent(self, item: SendItem) -> None:
        """Note that an item's data went out: the receiver may store it now."""
        self.in_flight.add(item.index)

    def outcome(self, item: SendItem, outcome: Outcome) -> None:
        """Keep an item's final outcome; log a failure; report progress."""
        self.in_flight.discard(item.index)
        self.outcomes[item.index] = outcome
        if outcome.status is InstanceStatus.FAILED:
            log.warning("%s: %s", self._rows[item.index].file, outcome.reason)
        self._bytes_done += item.size
        if self._on_final is not None:
            self._on_final(item)
        if self._on_progress is not None:
            self._on_progress(
                Progress(
                    len(self.outcomes),
                    self._total,
                    self._bytes_done,
                    self._bytes_total,
                    time.monotonic() - self._started,
                )
            )


def account(
    rows: Sequence[Row],
    items: Sequence[SendItem],
    outcomes: Mapping[int, Outcome],
    in_flight: set[int],
    ended: Ended,
    *,
    error: str | None,
    interrupted: bool,
) -> list[Row]:
    """Every row of the run: the probed rows, each item's completed.

    An item with an outcome takes it. One without went out and was never
    answered (``in_flight``: the receiver may have stored it), or was not sent;
    the reason is the transport's for it (``ended``), else the run's.

    Args:
        rows: The probed rows, one per input file.
        items: The instances to send, each naming its row.
        outcomes: Final outcomes, by item index.
        in_flight: Indices of the items whose data went out, unanswered.
        ended: The transport's reasons for items it did not send.
        error: Why the run stopped early, if it did.
        interrupted: Whether a stop asked for ended it.
    """
    result = list(rows)
    for item in items:
        row = rows[item.index]
        outcome = outcomes.get(item.index)
        if outcome is not None:
            result[item.index] = replace(
                row,
                status=outcome.status,
                reason=outcome.reason,
                dimse_status=outcome.dimse_status,
                transfer_syntax=outcome.transfer_syntax or row.transfer_syntax,
            )
            continue
        why = ended.reason(item.index)
        if item.index in in_flight:
            cause = why or ("interrupted" if interrupted else error or "no answer")
            reason = maybe_stored(cause)
        else:
            reason = why or error or NOT_SENT
        result[item.index] = replace(row, status=InstanceStatus.FAILED, reason=reason)
    return result
