"""Parallel associations: worker processes, each owning its own associations.

Python threads share one interpreter lock, so N threads framing P-DATA go no faster
than one; processes do (``../shared/notes/performance.md``). Each worker is a
process with its own :class:`~fw_gear_dicom_send.scu.Client` (TLS context included),
retry budget and associations; nothing network-related is shared. Items are split by
series, so a series stays on one association where the split allows; a series is cut
into even contiguous runs only when there are fewer series than workers. A worker
that cannot associate, dies or is interrupted accounts for its own items only.

The workers are forked by a :class:`Sender`: a process of its own that imports the
sending modules (pynetdicom and pydicom: some 0.25 s) as soon as it starts. Started
first, it imports on the other core while this process lists and probes the files,
which need neither; this process never imports them for a send over several
associations. The jobs go down a pipe to the sender, which starts each worker as
its job comes; outcomes and log records come back from the workers over one queue
to the sender, and from the sender up the pipe.
"""

import logging
import logging.handlers
import multiprocessing
import queue as queue_module
import threading
from collections import defaultdict
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from .contexts import plan_batches
from .errors import AssociationError
from .items import Outcome, SendItem
from .logs import OneLine
from .peer import AssociationSettings, Peer
from .retry import Retrier, RetryPolicy
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


def _context() -> Any:
    """Fork, or the fork server if this process runs other threads.

    Forking is cheap and keeps the processes our children, whose CPU time we then
    account for; but forking a process that runs other threads (an embedded
    receiver, a test) can copy a held lock, so then a fork server, importing the
    sending modules once, forks them instead.
    """
    if threading.active_count() == 1:
        return multiprocessing.get_context("fork")
    context = multiprocessing.get_context("forkserver")
    context.set_forkserver_preload(["fw_gear_dicom_send.scu"])
    return context


class Sender:
    """The process that runs the jobs, forking their workers (:func:`run_jobs`).

    It imports the sending modules as soon as it starts, then waits for the jobs.
    Outcomes and log records come back over a pipe. Start it before listing and
    probing; :meth:`close` it in any case.
    """

    def __init__(self) -> None:
        context = _context()
        self._conn, child = context.Pipe()
        self._process = context.Process(
            target=_serve, args=(child, self._conn), name="dicom-send-sender"
        )
        self._process.start()
        child.close()
        self._used = False

    def run(
        self, jobs: Sequence[Job], on_outcome: Callable[[SendItem, Outcome], None]
    ) -> dict[int, str]:
        """Have the jobs run; report each outcome as it comes (see run_jobs).

        Raises:
            KeyboardInterrupt: Interrupted; the workers abort their associations.
        """
        by_index = {item.index: item for job in jobs for item in job.items}
        self._used = True
        for job in jobs:  # one by one: it starts each worker as its job comes
            self._conn.send(job)
        self._conn.send(None)
        while True:
            try:
                message = self._conn.recv()
            except EOFError:  # it died: its workers account for nothing more
                self._process.join(timeout=5)
                why = f"sender process ended (exit code {self._process.exitcode})"
                return {job.number: why for job in jobs}
            if isinstance(message, logging.LogRecord):
                logging.getLogger(message.name).handle(message)
                continue
            kind, *rest = message
            if kind == "outcome":
                index, outcome = rest
                on_outcome(by_index[index], outcome)
            else:  # "end": why each worker that stopped early stopped
                stopped: dict[int, str] = rest[0]
                return stopped

    def close(self) -> None:
        """Wait for it to end; unused, it is stopped mid-import."""
        self._conn.close()
        if not self._used:
            self._process.terminate()
        self._process.join(timeout=5)
        if self._process.is_alive():
            self._process.kill()
            self._process.join()


class _Forward:
    """A queue for a QueueHandler that sends each record down a pipe."""

    def __init__(self, conn: Any) -> None:
        self._conn = conn

    def put_nowait(self, record: logging.LogRecord) -> None:
        self._conn.send(record)


def _serve(conn: Any, ours: Any) -> None:
    """The sender process: import, then run the jobs that come (if any).

    Args:
        conn: Its end of the pipe.
        ours: The other end, which a forked child holds a copy of: closed at once,
            or this end would never see the end of the pipe.
    """
    ours.close()
    from . import scu  # noqa: F401, PLC0415 - what this process is for

    handler = logging.handlers.QueueHandler(_Forward(conn))  # type: ignore[arg-type]
    handler.addFilter(OneLine())  # the record crosses as text: no traceback in it
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(logging.DEBUG)
    try:
        stopped = run_jobs(
            _received(conn),
            lambda index, outcome: conn.send(("outcome", index, outcome)),
        )
    except EOFError:
        return  # nothing to send over several associations after all
    except KeyboardInterrupt:
        return  # the main process was interrupted too, and says so
    conn.send(("end", stopped))


def _received(conn: Any) -> Iterator[Job]:
    """The jobs as they come down the pipe, until None."""
    while (job := conn.recv()) is not None:
        for name, level in job.log_levels:
            logging.getLogger(name).setLevel(level)
        yield job


def run_jobs(
    jobs: Iterable[Job], on_outcome: Callable[[int, Outcome], None]
) -> dict[int, str]:
    """Run each job in a process of its own; report each outcome as it comes.

    A job's worker starts as soon as the job comes, and the job is not kept: the
    memory of a worker, forked from here, holds its own job only (the 10,000
    items of a large send are not copied into each of them).

    Args:
        jobs: The jobs.
        on_outcome: Called with each item's index and outcome.

    Returns:
        For each worker that stopped early, why (its items not reported were not
        sent).

    Raises:
        KeyboardInterrupt: Interrupted; the workers abort their associations.
    """
    context = _context()
    results: Any = context.Queue()
    processes = {}
    for job in jobs:
        process = context.Process(
            target=_work, args=(job, results), name=f"dicom-send-{job.number}"
        )
        process.start()  # which drops its reference to the job
        processes[job.number] = process
        del job
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
                on_outcome(index, outcome)
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
    from .scu import Client, store_all  # noqa: PLC0415 - imported by the sender

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
