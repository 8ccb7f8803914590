"""Parallel associations: worker processes, each owning its own associations.

Python threads share one interpreter lock, so N threads framing P-DATA go no faster
than one; processes do (``../shared/notes/performance.md``). Each worker is a
process with its own :class:`~fw_gear_dicom_send.scu.Client` (TLS context included),
retry budget and associations; nothing network-related is shared. Items are split by
series, so a series stays on one association where the split allows; a series is cut
into contiguous runs only when there are fewer series than workers. Outcomes and log
records come back over one queue; a worker that cannot associate, dies or is
interrupted accounts for its own items only.
"""

import logging
import logging.handlers
import multiprocessing
import queue as queue_module
import threading
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from .contexts import plan_batches
from .errors import AssociationError
from .logs import OneLine
from .retry import Retrier, RetryPolicy
from .scu import AssociationSettings, Client, Outcome, Peer, SendItem, store_all
from .tagging import ProvenanceTag

log = logging.getLogger(__name__)

_POLL = 0.2


@dataclass(frozen=True, slots=True)
class Job:
    """What one worker sends, and how (all picklable)."""

    number: int
    peer: Peer
    association: AssociationSettings
    tag: ProvenanceTag
    retry: RetryPolicy
    items: tuple[SendItem, ...]
    log_levels: tuple[tuple[str, int], ...]


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


def run_jobs(
    jobs: Sequence[Job], on_outcome: Callable[[SendItem, Outcome], None]
) -> dict[int, str]:
    """Run the jobs in parallel processes; report each outcome as it comes.

    Returns:
        For each worker that stopped early, why (its items not reported were not
        sent).

    Raises:
        KeyboardInterrupt: Interrupted; the workers abort their associations.
    """
    # Forking is cheap (nothing to import again) and keeps the workers our
    # children, whose CPU time we then account for; but forking a process that
    # runs other threads (an embedded receiver, a test) can copy a held lock, so
    # then a fork server, importing this package once, forks them instead.
    if threading.active_count() == 1:
        context: Any = multiprocessing.get_context("fork")
    else:
        context = multiprocessing.get_context("forkserver")
        context.set_forkserver_preload([__name__])
    results: Any = context.Queue()
    processes = {
        job.number: context.Process(
            target=_work, args=(job, results), name=f"dicom-send-{job.number}"
        )
        for job in jobs
    }
    by_index = {item.index: item for job in jobs for item in job.items}
    for process in processes.values():
        process.start()
    stopped: dict[int, str] = {}
    running = set(processes)
    try:
        while running:
            try:
                message = results.get(timeout=_POLL)
            except queue_module.Empty:
                for number in list(running):
                    process = processes[number]
                    if not process.is_alive():
                        running.discard(number)
                        stopped.setdefault(
                            number,
                            f"worker process {number} ended (exit code "
                            f"{process.exitcode})",
                        )
                continue
            if isinstance(message, logging.LogRecord):
                logging.getLogger(message.name).handle(message)
                continue
            kind, number, *rest = message
            if kind == "outcome":
                index, outcome = rest
                on_outcome(by_index[index], outcome)
            elif kind == "stopped":
                stopped[number] = rest[0]
            elif kind == "done":
                running.discard(number)
    except KeyboardInterrupt:
        for process in processes.values():
            process.join(timeout=5)  # they got the SIGINT too: they abort and go
        raise
    finally:
        for process in processes.values():
            process.join(timeout=5)
            if process.is_alive():
                process.kill()
    return stopped


def _work(job: Job, results: Any) -> None:
    """A worker: send the job's items over associations of its own."""
    handler = logging.handlers.QueueHandler(results)
    handler.addFilter(OneLine())  # the record crosses as text: no traceback in it
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(logging.DEBUG)
    for name, level in job.log_levels:
        logging.getLogger(name).setLevel(level)
    client = Client(job.peer, job.association)
    try:
        for item, outcome in store_all(
            client, plan_batches(list(job.items)), job.tag, Retrier(job.retry)
        ):
            results.put(("outcome", job.number, item.index, outcome))
    except AssociationError as exc:
        results.put(("stopped", job.number, str(exc)))
    except KeyboardInterrupt:
        client.abort_all()
        results.put(("stopped", job.number, "interrupted before it was sent"))
    finally:
        results.put(("done", job.number))
