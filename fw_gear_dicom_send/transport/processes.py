"""The processes of a parallel send: the sender, and the workers it forks.

A :class:`Sender` is a process of its own that imports the sending modules
(pynetdicom and pydicom) as soon as it starts: started first, it imports on the
other core while the main process lists and probes the files, which need neither;
the main process never imports them for a send over several associations. The
main process sends commands down a pipe to the sender (:func:`relay`): start a
worker, give a worker items, tell it to finish or to retire. The sender forks each
worker as it is asked for, with a pipe of its own that it passes the worker's
commands down. Outcomes and log records come straight up from the workers, over
one pipe that they and the sender share (:class:`Up`); the sender adds when each
worker ended (``exited``). Each worker (:mod:`.worker`) sends what it is given
over a client and associations of its own.
"""

import contextlib
import ctypes
import logging
import logging.handlers
import multiprocessing
import multiprocessing.connection
import os
import pickle
import select
import signal
import threading
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from .. import collector, stopping
from ..logs import OneLine

if TYPE_CHECKING:  # the sender is started before the rest is imported
    from .job import Job

log = logging.getLogger(__name__)

_LENGTH_PREFIX = 4
"""Bytes a connection writes before each message (its length)."""


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
    context.set_forkserver_preload(["fw_gear_dicom_send.transport.worker"])
    return context


class Up:
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
        # Plain pickle: nothing sent up needs multiprocessing's reducers, whose
        # pickler copies its dispatch table for every message.
        data = pickle.dumps(message, pickle.HIGHEST_PROTOCOL)
        with stopping.held_off:
            try:
                if len(data) + _LENGTH_PREFIX <= select.PIPE_BUF:
                    self._conn.send_bytes(data)  # one atomic write
                else:
                    with self._lock:
                        self._conn.send_bytes(data)
            except BrokenPipeError:
                # The main process is gone (killed): nothing can reach it any
                # more, and the kernel is about to end this process too
                # (stopping.die_with_parent); end now, without a traceback.
                os._exit(1)

    put_nowait = put
    """For a :class:`logging.handlers.QueueHandler`."""


class Sender:
    """The process that forks the workers and passes them commands (:func:`relay`).

    It imports the sending modules as soon as it starts, then waits for commands.
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
            args=(jobs_in, Up(messages_out, self._lock), self._jobs, parent),
            name="dicom-send-sender",
        )
        self._process.start()
        # Ours closed, the pipe up ends when the sender and its workers are gone.
        jobs_in.close()
        messages_out.close()
        self._used = False
        self._closed = False

    @contextlib.contextmanager
    def session(self) -> Iterator[None]:
        """While the main process drives the sender: a stop is passed on.

        A stop asked for (:mod:`~fw_gear_dicom_send.stopping`) is passed on to the
        sender, which passes it on to its workers: they send nothing more, and
        report the answers to what is on the wire.
        """
        self._used = True
        cancel = stopping.on_request(self._stop)
        try:
            yield
        finally:
            cancel()

    def command(self, kind: str, *args: object) -> None:
        """Send a command down to the sender.

        ``("start", job)``; for a worker, ``("give", number, items)``,
        ``("finish", number)``, ``("retire", number)``, pickled here once for
        the worker (the sender passes the bytes on as they are); ``("done",)``
        last.
        """
        if kind in {"start", "done"}:
            self._jobs.send((kind, *args))
        else:
            number, *rest = args
            self._jobs.send((kind, number, pickle.dumps((kind, *rest))))

    @property
    def messages(self) -> Any:
        """The pipe up (waitable): log records, and tuples (see :meth:`receive`)."""
        return self._messages

    def receive(self) -> tuple[Any, ...]:
        """The next message up: a log record is handled here (and ``()`` returned).

        Messages: ``("ready", number)``, ``("sent", index)``,
        ``("outcome", index, outcome, seconds)``, ``("retry", index, status)``,
        ``("refused", number, reason)``, ``("closed", number)``,
        ``("stopped", number, why)``, ``("exited", number, exit code)``, and
        ``("end",)`` once every worker has ended.

        Raises:
            EOFError: The sender is gone (and its workers with it).
        """
        message = self._messages.recv()
        if isinstance(message, logging.LogRecord):
            logging.getLogger(message.name).handle(message)
            return ()
        return tuple(message)

    def died(self) -> str:
        """Why the sender is gone (after :meth:`receive` raised EOFError)."""
        self._process.join(timeout=5)
        return f"sender process ended (exit code {self._process.exitcode})"

    def _stop(self) -> None:
        """Pass a stop on to the sender process."""
        if self._process.pid is not None:
            os.kill(self._process.pid, signal.SIGTERM)

    def close(self) -> None:
        """Wait for it to end; unused, it is killed (mid-import, likely).

        Unused, it has forked no worker; a SIGTERM would only ask it to stop
        (:func:`.stopping.install_child`), once its import is done. After a
        stop, it is not waited for long: killed, it takes its workers with it
        (:func:`.stopping.die_with_parent`). Closing it again does nothing.
        """
        if self._closed:
            return
        self._closed = True
        self._jobs.close()
        self._messages.close()
        if not self._used:
            self._process.kill()
        with contextlib.suppress(KeyboardInterrupt):  # stop at once: it is killed
            self._process.join(timeout=0.5 if stopping.requested() else 5)
        if self._process.is_alive():
            self._process.kill()
            self._process.join()


def _serve(jobs_in: Any, up: Up, theirs: Any, parent: int | None) -> None:
    """The sender process: import, then run the commands that come (if any).

    Args:
        jobs_in: Its end of the pipe of commands.
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
        from . import worker  # noqa: F401, PLC0415 - what this process is for

    log_up(up, ())
    try:
        relay(jobs_in, up)
    except KeyboardInterrupt:
        return  # the main process was interrupted too, and says so


def log_up(up: Up, levels: tuple[tuple[str, int], ...]) -> None:
    """Send this process's log records up, as text (no traceback crosses)."""
    handler = logging.handlers.QueueHandler(up)  # type: ignore[arg-type]
    handler.addFilter(OneLine())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(logging.DEBUG)
    for name, level in levels:
        logging.getLogger(name).setLevel(level)


def relay(commands: Any, up: Up) -> None:
    """Run the main process's commands: fork workers, pass their commands down.

    A worker's memory holds what it was given only: the items of a large send
    stay in the main process. A worker that ends otherwise than by returning
    (killed, or an error it did not expect) is said to have stopped; every
    worker's end is said (``exited``) once it has been reaped, after all it said
    itself. A stop asked for is passed on to the workers, and a worker asked for
    after it is not started. If the pipe of commands ends before ``done``, the
    main process is gone, and so are the workers. ``end`` is said once ``done``
    came and every worker has ended.

    Raises:
        KeyboardInterrupt: Interrupted at once; the workers are killed.
    """
    context = _context()
    running: dict[int, tuple[Any, Any]] = {}  # the process, its pipe down
    stored = context.RawValue(ctypes.c_double, 0.0)  # when any worker last stored

    def stop_workers() -> None:  # a signal handler's: it only signals
        for process, _ in list(running.values()):
            os.kill(process.pid, signal.SIGTERM)

    cancel = stopping.on_request(stop_workers)
    done = False
    try:
        while not (done and not running):
            sentinels = {p.sentinel: n for n, (p, _) in running.items()}
            ready = multiprocessing.connection.wait([commands, *sentinels])
            if commands in ready:
                try:
                    command = commands.recv()
                except (EOFError, OSError):  # the main process is gone: so are we
                    return
                if command[0] == "done":
                    done = True
                elif command[0] == "start":
                    _start(context, command[1], up, stored, running)
                elif command[1] in running:
                    with contextlib.suppress(OSError):  # it died: told soon
                        running[command[1]][1].send_bytes(command[2])
            for sentinel in ready:
                if (number := sentinels.get(sentinel)) is not None:
                    process, down = running.pop(number)
                    process.join()
                    down.close()
                    if process.exitcode:
                        code = process.exitcode
                        why = f"worker process {number} ended (exit code {code})"
                        up.put(("stopped", number, why))
                    up.put(("exited", number, process.exitcode))
        up.put(("end",))
    finally:
        cancel()
        for process, _ in running.values():
            if process.is_alive():
                process.kill()
            process.join(timeout=5)


def _start(
    context: Any, job: "Job", up: Up, stored: Any, running: dict[int, tuple[Any, Any]]
) -> None:
    """Fork a worker for the job, with a pipe of its own for its commands."""
    if stopping.requested():
        up.put(("stopped", job.number, stopping.INTERRUPTED))
        up.put(("exited", job.number, 0))
        return
    from .worker import work  # noqa: PLC0415 - imported as the sender started

    down_in, down = context.Pipe(duplex=False)
    process = context.Process(
        target=work,
        args=(job, down_in, up, os.getpid(), stored),
        name=f"dicom-send-{job.number}",
    )
    process.start()
    down_in.close()
    running[job.number] = (process, down)
