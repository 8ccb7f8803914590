"""The processes of a parallel send: the sender, and the workers it forks.

A :class:`Sender` is a process of its own that imports the sending modules
(pynetdicom and pydicom) as soon as it starts: started first, it imports on the
other core while the main process lists and probes the files, which need neither;
the main process never imports them for a send over several associations. The
jobs go down a pipe to the sender, which forks each worker as its job comes
(:func:`run_jobs`); outcomes and log records come straight up from the workers,
over one pipe that they and the sender share (:class:`_Up`). Each worker
(:func:`_work`) sends its job's items with :class:`.cstore.CStore`, over a client
and associations of its own.
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
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from multiprocessing.reduction import ForkingPickler
from typing import Any

from .. import collector, stopping
from ..dicom.provenance import ProvenanceTag
from ..logs import OneLine
from .interface import Events
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

    def run(self, jobs: Sequence[Job], events: Events) -> dict[int, str]:
        """Have the jobs run; tell ``events`` of each item as its news comes.

        A stop asked for (:mod:`~fw_gear_dicom_send.stopping`) is passed on to the
        sender, which passes it on to its workers: they send nothing more, and
        report the answers to what is on the wire.

        Args:
            jobs: What each worker sends.
            events: Told when an item's data set has gone out (before its
                answer comes), and of its final outcome.

        Returns:
            For each worker that stopped early, why (its items not reported were
            not sent, or were on the wire if they were said to be sent), in the
            order they stopped.

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
            return self._receive(jobs, by_index, events)
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
        events: Events,
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
                events.outcome(by_index[index], outcome)
            elif kind == "sent":
                events.sent(by_index[rest[0]])
            elif kind == "stopped":  # a worker's own reason comes first
                number, why = rest
                stopped.setdefault(number, why)
            else:  # "end": every worker has ended, and said what it did
                return stopped

    def close(self) -> None:
        """Wait for it to end; unused, it is killed (mid-import, likely).

        Unused, it has forked no worker; a SIGTERM would only ask it to stop
        (:func:`.stopping.install_child`), once its import is done. After a
        stop, it is not waited for long: killed, it takes its workers with it
        (:func:`.stopping.die_with_parent`).
        """
        self._jobs.close()
        self._messages.close()
        if not self._used:
            self._process.kill()
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
    with collector.importing():  # no collection while importing, none scans them again
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


class _Reporting:
    """A worker's events (:class:`.interface.Events`), sent up as messages."""

    def __init__(self, up: _Up) -> None:
        self._up = up

    def sent(self, item: SendItem) -> None:
        """Say that an item's data went out, before its answer is read."""
        self._up.put(("sent", item.index))

    def outcome(self, item: SendItem, outcome: Outcome) -> None:
        """Send an item's final outcome up."""
        self._up.put(("outcome", item.index, outcome))


def _work(job: Job, up: _Up, parent: int, stored: Any) -> None:
    """A worker: send the job's items over associations of its own.

    Each data set that has gone out is said (``sent``) before its answer is
    read, so that the main process knows which ones the receiver may have
    stored if the answer never comes. ``stored`` is set, for all the workers,
    once one of them has stored an instance (see :class:`.retry.Retrier`).
    """
    stopping.install_child(stopping.WORKER_GRACE)
    stopping.die_with_parent(parent)
    _log_up(up, job.log_levels)
    from .association import Client  # noqa: PLC0415 - imported by the sender
    from .cstore import CStore  # noqa: PLC0415 - imported by the sender

    client = Client(job.peer, job.association)
    transport = CStore(client, job.tag, Retrier(job.retry, stored))
    try:
        ended = transport.send(job.items, _Reporting(up))
    except KeyboardInterrupt:
        up.put(("stopped", job.number, stopping.INTERRUPTED))
        return
    if ended.error is not None:
        up.put(("stopped", job.number, ended.error))
    elif stopping.requested():
        up.put(("stopped", job.number, stopping.INTERRUPTED))
