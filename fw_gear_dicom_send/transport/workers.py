"""Parallel associations: the transport over worker processes.

Python threads share one interpreter lock, so N threads framing P-DATA go no faster
than one; processes do. Each worker is a process with its own
:class:`.association.Client` (TLS context included), retry budget and
associations; nothing network-related is shared (:mod:`.processes`). Items are
split by series, so a series stays on one association where the split allows; a
series is cut into even contiguous runs only when there are fewer series than
workers. A worker that cannot associate, dies or is interrupted accounts for its
own items only.
"""

import logging
from collections import defaultdict
from collections.abc import Iterable, Sequence

from ..dicom.provenance import ProvenanceTag
from .interface import Ended, Events, Unsent
from .outcome import SendItem
from .peer import AssociationSettings, Peer
from .processes import Job, Sender
from .retry import RetryPolicy

log = logging.getLogger(__name__)

_LOGGERS = ("fw_gear_dicom_send", "pynetdicom")
"""Whose log levels the workers take from this process."""


class Workers:
    """The transport of C-STORE over worker processes, one association each.

    Args:
        sender: The sender process that forks the workers.
        peer: The receiver.
        association: How to associate.
        tag: The provenance element.
        retry: The retry policy (each worker has a budget of its own, restarted
            by any worker's stored instance).
        workers: How many workers.
    """

    def __init__(
        self,
        sender: Sender,
        *,
        peer: Peer,
        association: AssociationSettings,
        tag: ProvenanceTag,
        retry: RetryPolicy,
        workers: int,
    ) -> None:
        self._sender = sender
        self._peer = peer
        self._association = association
        self._tag = tag
        self._retry = retry
        self._workers = workers

    def send(self, items: Iterable[SendItem], events: Events) -> Ended:
        """Share the items out (:func:`split`) and have the workers send them.

        Returns:
            For each worker that stopped early, why, for its items.

        Raises:
            KeyboardInterrupt: Interrupted at once (:class:`.stopping.Interrupted`).
        """
        levels = tuple(
            (name, logging.getLogger(name).getEffectiveLevel()) for name in _LOGGERS
        )
        jobs = [
            Job(
                number,
                self._peer,
                self._association,
                self._tag,
                self._retry,
                tuple(share),
                levels,
            )
            for number, share in enumerate(split(list(items), self._workers), start=1)
        ]
        stopped = self._sender.run(jobs, events)
        shares = {job.number: job.items for job in jobs}
        return Ended(
            tuple(
                Unsent(why, frozenset(item.index for item in shares[number]))
                for number, why in stopped.items()
            )
        )


def split(items: Sequence[SendItem], workers: int) -> list[list[SendItem]]:
    """Share items out: whole series where possible, bytes balanced, order kept."""
    series: dict[str, list[SendItem]] = defaultdict(list)
    for item in items:
        series[item.info.series_instance_uid or f"#{item.index}"].append(item)
    units = _cut(list(series.values()), workers)
    shares: list[list[SendItem]] = [[] for _ in range(min(workers, len(units)))]
    loads = [0] * len(shares)
    for unit in sorted(units, key=lambda u: -sum(i.size for i in u)):
        least = loads.index(min(loads))
        shares[least] += unit
        loads[least] += sum(i.size for i in unit)
    return [sorted(share, key=lambda i: i.index) for share in shares if share]


def _cut(units: list[list[SendItem]], workers: int) -> list[list[SendItem]]:
    """Cut units into contiguous runs while there are fewer units than workers.

    Each extra run goes to the unit whose runs are then the longest, so that one
    series of 1000 over 3 workers makes runs of 333, 333 and 334.
    """
    parts = [1] * len(units)
    for _ in range(workers - len(units)):
        widest = max(range(len(units)), key=lambda u: len(units[u]) / parts[u])
        if len(units[widest]) <= parts[widest]:
            break  # every run is a single item already
        parts[widest] += 1
    return [
        unit[len(unit) * k // n : len(unit) * (k + 1) // n]
        for unit, n in zip(units, parts, strict=True)
        for k in range(n)
    ]
