"""Parallel associations: worker processes, each owning its own associations.

Python threads share one interpreter lock, so N threads framing P-DATA go no faster
than one; processes do. Each worker is a process with its own
:class:`.association.Client` (TLS context included), retry budget and
associations; nothing network-related is shared. Items are split by
series, so a series stays on one association where the split allows; a series is cut
into even contiguous runs only when there are fewer series than workers. A worker
that cannot associate, dies or is interrupted accounts for its own items only.

The workers are forked by a :class:`Sender`: a process of its own that imports the
sending modules (pynetdicom and pydicom: some 0.25 s) as soon as it starts. Started
first, it imports on the other core while this process lists and probes the files,
which need neither; this process never imports them for a send over several
associations. The jobs go down a pipe to the sender, which starts each worker as
its job comes; outcomes and log records come straight up from the workers, over
one pipe that they and the sender share.
"""

import contextlib
import ctypes
import logging
import logging.handlers
import multiprocessing
import multiprocessing.connection
import os
import select
import signal
import threading
from collections import defaultdict
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from multiprocessing.reduction import ForkingPickler
from typing import Any

from .. import collector, stopping
from ..dicom.provenance import ProvenanceTag
from ..errors import AssociationError
from ..logs import OneLine
from .contexts import plan_batches
from .outcome import Outcome, SendItem
from .peer import AssociationSettings, Peer
from .retry import Retrier, RetryPolicy

log = logging.getLogger(__name__)

_LENGTH_PREFIX = 4
"""Bytes a connection writes before each message (its length)."""


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
    context.set_forkserver_preload(["fw_gear_dicom_send.transport.cstore"])
    return context


class _Up:
    """The way up to the main process, shared by the sender and its workers.

    One pipe for all of them: each message is pickled first, then written whole,
    so that messages never interleave: a small one (an outcome) in one write of at
    most ``PIPE_BUF`` bytes, which a pipe takes whole and at once; a larger one
    under a lock. So a worker killed while it writes an outcome (the OOM killer,
    SIGKILL) leaves no lock held that would block the others for good. A
    worker's outcomes thus reach the main process directly, in one hop, and with
    no feeder thread in the worker to contend for its interpreter lock with the
    sending.
    """

    def __init__(self, conn: Any, lock: Any) -> None:
        self._conn = conn
        self._lock = lock

    def put(self, message: object) -> None:
        """Send a message up."""
        data = ForkingPickler.dumps(message)
        with stopping.held_off:
            if len(data) + _LENGTH_PREFIX <= select.PIPE_BUF:
                self._conn.send_bytes(data)  # one atomic write
            else:
                with self._lock:
                    self._conn.send_bytes(data)

    put_nowait = put
    """For a :class:`logging.handlers.QueueHandler`."""


class Sender:
    """The process that runs the jobs, forking their workers (:func:`run_jobs`).

    It imports the sending modules as soon as it starts, then waits for the jobs.
    Outcomes and log records come straight from the workers over one pipe. Start
    it before listing and probing; :meth:`close` it in any case.
    """

    def __init__(self) -> None:
        context = _context()
        jobs_in, self._jobs = context.Pipe(duplex=False)
        self._messages, messages_out = context.Pipe(duplex=False)
        # Kept: by a fork server, the sender opens the lock by name, after start().
        self._lock = context.Lock()
        # Forked from here, it can tell whether this process ended before it
        # asked to die with its parent; from a fork server, it cannot.
        parent = os.getpid() if context.get_start_method() == "fork" else None
        self._process = context.Process(
            target=_serve,
            args=(jobs_in, _Up(messages_out, self._lock), self._jobs, parent),
            name="dicom-send-sender",
        )
        self._process.start()
        # Ours closed, the pipe up ends when the sender and its workers are gone.
        jobs_in.close()
        messages_out.close()
        self._used = False

    def run(
        self,
        jobs: Sequence[Job],
        on_outcome: Callable[[SendItem, Outcome], None],
        on_sent: Callable[[SendItem], None] | None = None,
    ) -> dict[int, str]:
        """Have the jobs run; report each outcome as it comes.

        A stop asked for (:mod:`~fw_gear_dicom_send.stopping`) is passed on to the
        sender, which passes it on to its workers: they send nothing more, and
        report the answers to what is on the wire.

        Args:
            jobs: What each worker sends.
            on_outcome: Called with each item's final outcome.
            on_sent: Called when an item's data set has gone out, before its
                answer (its outcome) comes.

        Returns:
            For each worker that stopped early, why (its items not reported were
            not sent, or were on the wire if ``on_sent`` was called for them).

        Raises:
            KeyboardInterrupt: Interrupted at once (:class:`.stopping.Interrupted`).
        """
        by_index = {item.index: item for job in jobs for item in job.items}
        self._used = True
        cancel = stopping.on_request(self._stop)
        try:
            for job in jobs:  # one by one: it starts each worker as its job comes
                self._jobs.send(job)
            self._jobs.send(None)
            return self._receive(jobs, by_index, on_outcome, on_sent)
        finally:
            cancel()

    def _stop(self) -> None:
        """Pass a stop on to the sender process."""
        if self._process.pid is not None:
            os.kill(self._process.pid, signal.SIGTERM)

    def _receive(
        self,
        jobs: Sequence[Job],
        by_index: dict[int, SendItem],
        on_outcome: Callable[[SendItem, Outcome], None],
        on_sent: Callable[[SendItem], None] | None,
    ) -> dict[int, str]:
        stopped: dict[int, str] = {}
        while True:
            try:
                message = self._messages.recv()
            except EOFError:  # it died: its workers account for nothing more
                self._process.join(timeout=5)
                why = f"sender process ended (exit code {self._process.exitcode})"
                return {job.number: stopped.get(job.number, why) for job in jobs}
            if isinstance(message, logging.LogRecord):
                logging.getLogger(message.name).handle(message)
                continue
            kind, *rest = message
            if kind == "outcome":
                index, outcome = rest
                on_outcome(by_index[index], outcome)
            elif kind == "sent":
                if on_sent is not None:
                    on_sent(by_index[rest[0]])
            elif kind == "stopped":  # a worker's own reason comes first
                number, why = rest
                stopped.setdefault(number, why)
            else:  # "end": every worker has ended, and said what it did
                return stopped

    def close(self) -> None:
        """Wait for it to end; unused, it is stopped mid-import.

        After a stop, it is not waited for long: killed, it takes its workers
        with it (:func:`.stopping.die_with_parent`).
        """
        self._jobs.close()
        self._messages.close()
        if not self._used:
            self._process.terminate()
        with contextlib.suppress(KeyboardInterrupt):  # stop at once: it is killed
            self._process.join(timeout=0.5 if stopping.requested() else 5)
        if self._process.is_alive():
            self._process.kill()
            self._process.join()


def _serve(jobs_in: Any, up: _Up, theirs: Any, parent: int | None) -> None:
    """The sender process: import, then run the jobs that come (if any).

    Args:
        jobs_in: Its end of the pipe of jobs.
        up: The way up, for its workers and itself.
        theirs: The main process's end of the pipe of jobs, which a forked child
            holds a copy of: closed at once, or this end would never see the end
            of the pipe.
        parent: The main process's ID, if it is the parent of this one (then
            this one dies with it).
    """
    stopping.install_child(stopping.SENDER_GRACE)
    if parent is not None:
        # Not by a fork server's death, which a SIGTERM to the group brings: the
        # end of the pipe of jobs tells that the main process is gone.
        stopping.die_with_parent(parent)
    theirs.close()
    with collector.importing():  # 20 ms of collections; none scans them again
        from . import cstore  # noqa: F401, PLC0415 - what this process is for

    _log_up(up, ())
    try:
        run_jobs(_received(jobs_in), up, jobs_in)
    except EOFError:
        return  # nothing to send over several associations after all
    except KeyboardInterrupt:
        return  # the main process was interrupted too, and says so
    up.put(("end",))


def _log_up(up: _Up, levels: tuple[tuple[str, int], ...]) -> None:
    """Send this process's log records up, as text (no traceback crosses)."""
    handler = logging.handlers.QueueHandler(up)  # type: ignore[arg-type]
    handler.addFilter(OneLine())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(logging.DEBUG)
    for name, level in levels:
        logging.getLogger(name).setLevel(level)


def _received(conn: Any) -> Iterator[Job]:
    """The jobs as they come down the pipe, until None."""
    while (job := conn.recv()) is not None:
        for name, level in job.log_levels:
            logging.getLogger(name).setLevel(level)
        yield job


def run_jobs(jobs: Iterable[Job], up: _Up, watch: Any = None) -> None:
    """Run each job in a process of its own, which sends its outcomes up.

    A job's worker starts as soon as the job comes, and the job is not kept: the
    memory of a worker, forked from here, holds its own job only (the 10,000
    items of a large send are not copied into each of them). A worker that ends
    otherwise than by returning (killed, or an error it did not expect) is said to
    have stopped, once it has ended. A stop asked for is passed on to the
    workers; a job that comes after it is not started.

    Args:
        jobs: The jobs, as they come.
        up: The way up.
        watch: A connection that nothing more is sent down once the jobs have
            come: if it ends, the main process is gone, and so are the workers.

    Raises:
        KeyboardInterrupt: Interrupted at once; the workers are killed.
    """
    context = _context()
    processes: dict[int, Any] = {}
    running: dict[int, Any] = {}  # not yet reaped: their IDs are still theirs
    stored = context.RawValue(ctypes.c_bool, False)  # by any worker of the run

    def stop_workers() -> None:  # a signal handler's: it only signals
        for process in list(running.values()):
            os.kill(process.pid, signal.SIGTERM)

    cancel = stopping.on_request(stop_workers)
    try:
        for job in jobs:
            if stopping.requested():
                up.put(("stopped", job.number, stopping.INTERRUPTED))
                continue
            process = context.Process(
                target=_work,
                args=(job, up, os.getpid(), stored),
                name=f"dicom-send-{job.number}",
            )
            process.start()  # which drops its reference to the job
            processes[job.number] = running[job.number] = process
            del job
        _wait(running, up, watch)
    finally:
        cancel()
        for process in processes.values():
            if process.is_alive():
                process.kill()
            process.join(timeout=5)


def _wait(running: dict[int, Any], up: _Up, watch: Any) -> None:
    """Wait for the workers to end; kill them if ``watch`` ends first.

    Each is taken out of ``running`` once it has ended and been reaped.
    """
    while running:
        sentinels = {process.sentinel: number for number, process in running.items()}
        ready = multiprocessing.connection.wait(
            [*sentinels, *([watch] if watch is not None else [])]
        )
        if watch is not None and watch in ready:
            try:
                watch.recv()
            except (EOFError, OSError):  # the main process is gone: so are we
                for process in running.values():
                    process.kill()
                return
        for sentinel in ready:
            number = sentinels.get(sentinel)
            if number is None:
                continue
            process = running[number]
            process.join()
            del running[number]
            if process.exitcode:
                why = f"worker process {number} ended (exit code {process.exitcode})"
                up.put(("stopped", number, why))


def _work(job: Job, up: _Up, parent: int, stored: Any) -> None:
    """A worker: send the job's items over associations of its own.

    Each data set that has gone out is said (``sent``) before its answer is
    read, so that the main process knows which ones the receiver may have
    stored if the answer never comes. ``stored`` is set, for all the workers,
    once one of them has stored an instance (see :func:`.scu.store_all`).
    """
    stopping.install_child(stopping.WORKER_GRACE)
    stopping.die_with_parent(parent)
    _log_up(up, job.log_levels)
    from .association import Client  # noqa: PLC0415 - imported by the sender
    from .cstore import store_all  # noqa: PLC0415 - imported by the sender

    def sent(item: SendItem) -> None:
        up.put(("sent", item.index))

    client = Client(job.peer, job.association)
    try:
        for item, outcome in store_all(
            client,
            plan_batches(list(job.items)),
            job.tag,
            Retrier(job.retry, stored),
            stop=stopping.requested,
            on_sent=sent,
        ):
            up.put(("outcome", item.index, outcome))
    except AssociationError as exc:
        up.put(("stopped", job.number, str(exc)))
    except KeyboardInterrupt:
        client.abort_all()
        up.put(("stopped", job.number, stopping.INTERRUPTED))
    else:
        if stopping.requested():
            up.put(("stopped", job.number, stopping.INTERRUPTED))
