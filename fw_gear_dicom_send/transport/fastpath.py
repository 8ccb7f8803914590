"""The fast path of C-STORE, and the only module that touches pynetdicom's internals.

:func:`held` is how a send gets a :class:`.channel.Channel` for an association.
On the fast path (:class:`FastChannel`) we hold the association's socket while
sending: C-STORE goes through :mod:`.wire`, the request's fixed-layout command (the
bytes pynetdicom would encode, property-tested), then the data set as P-DATA
fragments read from a :class:`.wire.Payload` (never a decoded ``Dataset`` nor a
path), then the response, read in the same thread. Holding the socket takes
private parts of pynetdicom (:data:`PRIVATE_NEEDS`), so the fast path checks itself
at its first use in a process: pynetdicom must be the version it was built for
(:data:`PINNED_PYNETDICOM`, the pin of ``pyproject.toml``) and a real association
must have every private attribute it uses. If not, one warning says why, and every
association of the process goes through :mod:`.fallback` (pynetdicom's own
``send_c_store``), which has the same interface and outcomes. The environment
variable ``DICOM_SEND_FAST_PATH=off`` (or ``0``, ``false``, ``no``) forces the
fallback; it is read once per process.

The DUL state names (PS3.8 9.2: ``Sta1`` idle, ``Sta2`` awaiting an association
request, ``Sta6`` established) are read here too, for the receiver and the send.
"""

import functools
import logging
import os
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import pynetdicom
from pynetdicom.association import Association

from .channel import Channel, Store, socket_timeout
from .fallback import fallback_held
from .outcome import Outcome, association_lost, outcome_of_status
from .peer import AssociationSettings
from .retry import Retry
from .tcp import ack_at_once
from .wire import Framer, PeerEnded, read_store_response, store_command

log = logging.getLogger(__name__)

PINNED_PYNETDICOM = "3.0.4"
"""The pynetdicom version the fast path is built for (``pyproject.toml``'s pin)."""
SWITCH = "DICOM_SEND_FAST_PATH"
"""Environment variable: ``off``, ``0``, ``false`` or ``no`` forces the fallback."""
_OFF = frozenset({"off", "0", "false", "no"})
_REACTOR_NEEDS = (
    "Association._reactor_checkpoint",
    "Association._is_paused",
    "Association._reactor_checkpoint._cond._waiters",
)
"""What :func:`park_reactor` relies on."""
PRIVATE_NEEDS = (
    *_REACTOR_NEEDS,
    "DULServiceProvider._is_transport_event",
    "DULServiceProvider._process_recv_primitive",
    "DULServiceProvider._idle_timer.restart",
    "DULServiceProvider.state_machine.current_state == 'Sta6'",
)
"""What of pynetdicom the fast path relies on beyond its public API."""
_ESTABLISHED = "Sta6"
_AWAITING_REQUEST = frozenset({"Sta1", "Sta2"})
_PARKED_LOOK = 0.1
"""Seconds the DUL thread waits, while we hold the socket, before it looks for a
primitive of ours (an abort from another thread, say); letting go wakes it at once."""


class _Verdict:
    """Whether this process sends on the fast path; decided at its first use."""

    lock = threading.Lock()
    switched_on: bool | None = None
    """The switch, read once; None: not yet read."""
    usable: bool | None = None
    """The self-check's result; None: not yet checked."""


def switched_on() -> bool:
    """Whether ``DICOM_SEND_FAST_PATH`` leaves the fast path on (read once)."""
    if _Verdict.switched_on is None:
        value = os.environ.get(SWITCH, "").strip().lower()
        _Verdict.switched_on = value not in _OFF
        if not _Verdict.switched_on:
            log.debug(
                "C-STORE through pynetdicom's send_c_store (%s=%s)", SWITCH, value
            )
    return _Verdict.switched_on


def fast(assoc: Association) -> bool:
    """Whether to send over this association on the fast path.

    The first call of a process with the switch on checks pynetdicom's version
    and this association's private attributes; a failed check is one warning,
    and the fallback for the rest of the process.
    """
    if not switched_on():
        return False
    with _Verdict.lock:
        if _Verdict.usable is None:
            why = check(assoc)
            _Verdict.usable = not why
            if why:
                log.warning(
                    "the C-STORE fast path is off: %s; sending through pynetdicom's "
                    "send_c_store instead",
                    why,
                )
        return _Verdict.usable


def check(assoc: Association) -> str:
    """Why the fast path cannot hold this (established) association; "" if it can."""
    version = str(getattr(pynetdicom, "__version__", "unknown"))
    if version != PINNED_PYNETDICOM:
        return f"pynetdicom is {version}, not {PINNED_PYNETDICOM} it is built for"
    missing = [need for need in PRIVATE_NEEDS if not _has(assoc, need)]
    if missing:
        return f"pynetdicom {version} lacks {', '.join(missing)}"
    return ""


def _has(assoc: Association, need: str) -> bool:
    """Whether ``need`` (an entry of :data:`PRIVATE_NEEDS`) holds for ``assoc``."""
    path, _, expected = need.partition(" == ")
    owner, *names = path.split(".")
    value: object = assoc if owner == "Association" else getattr(assoc, "dul", None)
    for name in names:
        value = getattr(value, name, _MISSING)
        if value is _MISSING:
            return False
    return not expected or value == expected.strip("'")


_MISSING = object()


def _state(assoc: Association) -> str | None:
    """The DUL state name of an association, None if pynetdicom hides it."""
    machine = getattr(assoc.dul, "state_machine", None)
    state = getattr(machine, "current_state", None)
    return state if isinstance(state, str) else None


def connected(assoc: Association) -> bool:
    """Whether the association can carry data.

    While its reactor is held (the fast path), pynetdicom does not update
    ``is_established`` when the peer aborts or the connection closes; the DUL's
    state machine, run by its own thread, always knows. Otherwise
    ``is_established`` is enough.
    """
    if not (_Verdict.usable and _Verdict.switched_on):
        return bool(assoc.is_established)
    return bool(assoc.is_established and _state(assoc) == _ESTABLISHED)


def awaiting_request(assoc: Association) -> bool:
    """Whether an acceptor's connection has yet to deliver its A-ASSOCIATE-RQ."""
    return _state(assoc) in _AWAITING_REQUEST


@contextmanager
def held(assoc: Association, settings: AssociationSettings) -> Iterator[Channel]:
    """The channel to send C-STOREs on over ``assoc``, for as long as it is held.

    The fast path's (:class:`FastChannel`) if :func:`fast`, else the fallback's
    (:class:`.fallback.FallbackChannel`), which parks the reactor
    (:func:`park_reactor`) before each ``send_c_store``. The channel serves only
    inside this context.
    """
    if fast(assoc):
        manager = _held_fast(assoc, settings)
    else:
        park = functools.partial(park_reactor, assoc, settings.acse_timeout)
        manager = fallback_held(assoc, settings, park)
    with manager as channel:
        try:
            yield channel
        finally:
            channel.open = False


class FastChannel(Channel):
    """A channel that writes requests and reads responses on the socket itself."""

    def __init__(self, assoc: Association, settings: AssociationSettings) -> None:
        """Wrap an association whose socket :func:`held` has taken."""
        super().__init__(assoc, settings)
        self._framer = Framer()

    @property
    def connected(self) -> bool:
        """Whether the association can still carry data."""
        return connected(self.assoc)

    def send(self, store: Store) -> Outcome:
        """Write the request and its data set on the socket; read the response."""
        item = store.item
        assoc = self.assoc
        info = item.info
        message_id = self.next_message_id()
        command = store_command(message_id, info.sop_class_uid, info.sop_instance_uid)
        context_id = int(store.context.context_id)  # type: ignore[arg-type]
        max_pdu = int(assoc.acceptor.maximum_length or 0)

        transport = assoc.dul.socket
        sock = transport.socket if transport is not None else None
        if sock is None:
            return association_lost("association lost before sending", Retry.TRANSIENT)
        try:
            sent = self._framer.write(
                sock,
                lambda: connected(assoc),
                (command, context_id, max_pdu),
                store.payload,
            )
        except TimeoutError:  # it has part of the data set, never the whole
            return association_lost(
                f"association lost while sending: the receiver took nothing in for "
                f"{self.settings.dimse_timeout:g} s (DIMSE timeout)",
                Retry.TRANSIENT,
            )
        except OSError as exc:  # the file, mid-way: the peer has half a data set
            return association_lost(f"cannot read file: {exc}", Retry.FINAL)
        if not sent:
            return association_lost(
                "association lost while sending (aborted by the peer or "
                "connection closed)",
                Retry.TRANSIENT,
            )
        if store.on_sent is not None:
            store.on_sent(item)
        ack_at_once(sock)
        try:
            rsp = read_store_response(sock)
        except TimeoutError:
            return association_lost(
                f"no response within {self.settings.dimse_timeout:g} s (DIMSE timeout)",
                Retry.AMBIGUOUS,
            )
        except (PeerEnded, OSError) as exc:
            why = str(exc) or type(exc).__name__
            return association_lost(
                f"association lost before the response ({why})", Retry.AMBIGUOUS
            )
        if rsp.message_id != message_id:
            return association_lost(
                f"a C-STORE-RSP to message {rsp.message_id} came for message "
                f"{message_id}",
                Retry.AMBIGUOUS,
            )
        return outcome_of_status(rsp.status, rsp.error_comment)


def _nothing_to_read() -> bool:
    return False


@contextmanager
def _held_fast(assoc: Association, settings: AssociationSettings) -> Iterator[Channel]:
    """Take the association's socket for as long as we send over it.

    While held, both pynetdicom threads keep off the socket: the association's
    reactor is parked, and the DUL thread no longer looks for incoming PDUs, so
    requests are written and their responses read by the caller's thread alone
    (:mod:`.wire`), with the DIMSE timeout on the socket; a
    TLS socket, which one thread must not read while another writes, is safe too.
    On leaving, pynetdicom gets everything back, with its idle timer restarted.
    Meanwhile the DUL thread waits (:class:`_Parked`) instead of looping every
    millisecond: every wake of it would contend for the interpreter lock with the
    sending.

    The reactor is parked first (:func:`park_reactor`). Then the DUL thread's
    look for incoming PDUs is swapped for one that finds none, and its look for
    primitives for :class:`_Parked`; the socket is ours only once that thread has
    come round to :class:`_Parked`: a look begun before the swap may still be
    reading the socket, and would take a response meant for us.
    """
    park_reactor(assoc, settings.acse_timeout)
    dul = assoc.dul
    parked = _Parked(dul._process_recv_primitive)
    setattr(dul, "_is_transport_event", _nothing_to_read)  # noqa: B010 - a method
    # With nothing to read, its loop only waits for our primitives (none come
    # while held, but from another thread): it need not wake meanwhile.
    setattr(dul, "_process_recv_primitive", parked)  # noqa: B010 - a method
    try:  # from here on, even a wait interrupted by a signal puts everything back
        if not _wait(parked.entered.is_set, assoc, settings.acse_timeout):
            log.warning(
                "pynetdicom's DUL thread did not come round within %g s; "
                "sending anyway",
                settings.acse_timeout,
            )
        with socket_timeout(assoc, settings.dimse_timeout):
            yield FastChannel(assoc, settings)
    finally:
        del dul._is_transport_event
        del dul._process_recv_primitive
        parked.let_go()
        dul._idle_timer.restart()
        assoc._reactor_checkpoint.set()


def park_reactor(assoc: Association, timeout: float) -> None:
    """Stop the association's reactor thread until its checkpoint is set again.

    pynetdicom's own send methods pause the reactor by clearing its checkpoint,
    then trust ``_is_paused``, which stays True for a moment after the reactor
    resumes from the previous pause: a response that comes in that moment is
    taken off the DIMSE queue by the reactor as an unexpected message, and the
    sender waits for it in vain. Parked means blocked on the cleared checkpoint;
    that is waited for, at most ``timeout`` seconds (a warning if it runs out).
    Call it before each request pynetdicom sends: the first on an association is
    exposed too, if the reactor thread is switched out between the two lines that
    set the flag. Nothing is done if pynetdicom lacks the parts this takes.
    """
    if not all(_has(assoc, need) for need in _REACTOR_NEEDS):
        return
    checkpoint = assoc._reactor_checkpoint
    checkpoint.clear()

    def is_parked() -> bool:
        if not assoc.is_alive():  # the reactor thread has ended
            return True
        return bool(assoc._is_paused and checkpoint._cond._waiters)  # type: ignore[attr-defined]

    if not _wait(is_parked, assoc, timeout):
        log.warning(
            "pynetdicom's association reactor did not stop within %g s; sending anyway",
            timeout,
        )


def _wait(done: Callable[[], bool], assoc: Association, timeout: float) -> bool:
    """Poll ``done`` until it holds; False if ``timeout`` seconds run out first.

    An association that has ended is not waited for: nothing will be read on it.
    """
    deadline = time.monotonic() + timeout
    while not done():
        if not connected(assoc):
            return True
        if time.monotonic() > deadline:
            return False
        time.sleep(0.0001)
    return True


class _Parked:
    """The DUL thread's look for primitives while held: a wait, then the look.

    Args:
        look: The DUL's own ``_process_recv_primitive``.
    """

    def __init__(self, look: Callable[[], bool]) -> None:
        self._look = look
        self._let_go = threading.Event()
        self.entered = threading.Event()
        """The DUL thread has called it: it is no longer in a look of its own."""

    def __call__(self) -> bool:
        """Wait until let go (or :data:`_PARKED_LOOK`), then look."""
        self.entered.set()
        self._let_go.wait(_PARKED_LOOK)
        return self._look()

    def let_go(self) -> None:
        """End the wait: the DUL thread loops as pynetdicom made it again."""
        self._let_go.set()


__all__ = [
    "PINNED_PYNETDICOM",
    "SWITCH",
    "FastChannel",
    "awaiting_request",
    "check",
    "connected",
    "held",
    "park_reactor",
    "switched_on",
]
