"""Stopping on SIGINT or SIGTERM: what is on the wire is answered, then the report.

An entry point (the ``send`` command, the gear) runs within :func:`handling`. The
first SIGINT or SIGTERM then *asks* the run to stop: :func:`requested` turns true, the
callbacks given to :func:`on_request` run (the sender process is told), no further
instance is sent, and those on the wire get :data:`GRACE` seconds for their answer.
When those seconds are up, or at a second signal, :class:`Interrupted` is raised in
the main thread wherever it is. The engine honours both and returns its rows; the
entry point writes the report and chooses the exit status (:func:`exit_status`).

The sender process and its workers call :func:`install_child`: a stop signal, from
the main process or sent to the whole process group (Ctrl-C, systemd), asks them to
stop in the same way, with a shorter grace so that they report before the main
process gives up; further signals change nothing. They also call
:func:`die_with_parent`, so that none of them goes on sending for a parent that was
killed without a chance to clean up.
"""

import contextlib
import ctypes
import logging
import os
import signal
import time
from collections.abc import Callable, Iterator
from types import FrameType

from .status import ExitStatus

log = logging.getLogger(__name__)

GRACE = 3.0
"""Seconds the main process waits, after the first signal, for what is on the wire."""
SENDER_GRACE = GRACE - 0.5
"""The sender process's: it reports its workers' end before the main gives up."""
WORKER_GRACE = GRACE - 1.0
"""A worker's: its last answers reach the main process before it gives up."""
INTERRUPTED = "interrupted before it was sent"
"""The reason of an instance that was not sent because the run was stopped."""

_PR_SET_PDEATHSIG = 1
_STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)


class Interrupted(KeyboardInterrupt):
    """The run must stop at once: a second signal, or the grace is over."""

    def __init__(self, signum: int) -> None:
        """Say which signal stopped the run."""
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


class _State:
    """This process's stop request: the first signal, and what to do at it."""

    signum = 0
    child = False
    holding = False
    """Whether :class:`Interrupted` must wait (:data:`held_off`)."""
    overdue = False
    """Whether it is waiting."""
    grace = GRACE
    callbacks: list[Callable[[], None]] = []  # noqa: RUF012 - reset by _reset


def _reset(*, child: bool, grace: float) -> None:
    _State.signum = 0
    _State.child = child
    _State.grace = grace
    _State.callbacks = []
    _State.holding = False
    _State.overdue = False


@contextlib.contextmanager
def handling(grace: float = GRACE) -> Iterator[None]:
    """An entry point's: SIGINT and SIGTERM ask the run to stop; a second stops it.

    On leaving, the earlier handlers are back, and so is an earlier alarm (a
    test's timeout); no deadline of ours is left running.
    """
    earlier = {
        signum: signal.getsignal(signum) for signum in (*_STOP_SIGNALS, signal.SIGALRM)
    }
    timer, _ = signal.getitimer(signal.ITIMER_REAL)  # someone else's alarm
    due = time.monotonic() + timer
    _reset(child=False, grace=grace)
    _handle_signals()
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        for signum, handler in earlier.items():
            signal.signal(signum, handler)
        if timer:
            signal.setitimer(signal.ITIMER_REAL, max(due - time.monotonic(), 1e-3))


def install_child(grace: float) -> None:
    """The sender's and a worker's: a stop signal asks it to stop, once."""
    _reset(child=True, grace=grace)
    _handle_signals()


def _handle_signals() -> None:
    for signum in _STOP_SIGNALS:
        signal.signal(signum, _on_signal)
    signal.signal(signal.SIGALRM, _on_overdue)


def _on_signal(signum: int, frame: FrameType | None) -> None:
    if _State.signum:
        if _State.child:
            return  # the main process decides when to stop at once
        raise Interrupted(_State.signum)
    _State.signum = signum
    signal.setitimer(signal.ITIMER_REAL, _State.grace)
    for callback in _State.callbacks:
        with contextlib.suppress(OSError):
            callback()


def _on_overdue(signum: int, frame: FrameType | None) -> None:
    if not _State.signum:
        return
    if _State.holding:
        _State.overdue = True
        return
    raise Interrupted(_State.signum)


class _HeldOff:
    """While in it, the grace running out does not interrupt (it does on leaving).

    For a message written whole to a pipe that others share.
    """

    def __enter__(self) -> None:
        _State.holding = True

    def __exit__(self, *exc: object) -> None:
        _State.holding = False
        if _State.overdue:
            _State.overdue = False
            raise Interrupted(_State.signum)


held_off = _HeldOff()


def requested() -> bool:
    """Whether a stop signal came."""
    return _State.signum != 0


def received() -> int:
    """The first stop signal that came, 0 if none."""
    return _State.signum


def name() -> str:
    """The name of the first stop signal that came (``SIGTERM``), or ``""``."""
    return signal.Signals(_State.signum).name if _State.signum else ""


def on_request(callback: Callable[[], None]) -> Callable[[], None]:
    """Have ``callback`` run at the first stop signal (at once if it came already).

    Returns:
        A function that cancels it.
    """
    _State.callbacks.append(callback)
    if _State.signum:
        with contextlib.suppress(OSError):
            callback()

    def cancel() -> None:
        with contextlib.suppress(ValueError):
            _State.callbacks.remove(callback)

    return cancel


def settle() -> None:
    """The stop was honoured: no deadline any more (a second signal still stops)."""
    if _State.signum:
        signal.setitimer(signal.ITIMER_REAL, 0)


def exit_status(status: ExitStatus) -> ExitStatus:
    """An entry point's exit status: 143 rather than 130 if SIGTERM stopped it."""
    if status is ExitStatus.INTERRUPTED and _State.signum == signal.SIGTERM:
        return ExitStatus.TERMINATED
    return status


def die_with_parent(parent: int | None = None) -> None:
    """Have the kernel kill this process when its parent ends (Linux; else nothing).

    Args:
        parent: The parent's process ID, if known: if it ended already (before
            this was asked for), this process ends at once.
    """
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        failed = libc.prctl(_PR_SET_PDEATHSIG, int(signal.SIGKILL), 0, 0, 0)
    except (OSError, AttributeError):
        return
    if failed:
        log.debug("prctl(PR_SET_PDEATHSIG): errno %d", ctypes.get_errno())
        return
    if parent is not None and os.getppid() != parent:
        os._exit(1)  # orphaned already
