"""While we send over an association, no pynetdicom thread takes what comes back.

pynetdicom runs two threads per association: the DUL thread reads the socket, the
reactor takes DIMSE messages off its queue. A response either of them takes is
lost to the sender, who then waits for it until a timeout. Each test slows one of
those threads at the moment it could race, and watches that it never runs while
a C-STORE is under way.
"""

import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from pydicom import dcmread
from pydicom.dataset import Dataset
from pynetdicom import AE, evt
from pynetdicom.association import Association
from pynetdicom.dimse_primitives import C_FIND, C_STORE
from pynetdicom.dul import DULServiceProvider

from fw_gear_dicom_send.dicom.probe import probe
from fw_gear_dicom_send.dicom.provenance import ProvenanceTag, splice
from fw_gear_dicom_send.dicom.samples import write_series
from fw_gear_dicom_send.pacs.levels import Model
from fw_gear_dicom_send.pacs.query import _matches
from fw_gear_dicom_send.pacs.receiver import StorageReceiver
from fw_gear_dicom_send.settings import RECEIVER_AE_TITLE
from fw_gear_dicom_send.transport import fastpath
from fw_gear_dicom_send.transport.association import Client, release
from fw_gear_dicom_send.transport.contexts import FALLBACK_SYNTAXES, Proposal
from fw_gear_dicom_send.transport.fallback import FallbackChannel
from fw_gear_dicom_send.transport.fastpath import FastChannel, held
from fw_gear_dicom_send.transport.outcome import SendItem
from fw_gear_dicom_send.transport.peer import AssociationSettings, Peer

TAG = ProvenanceTag()
SLOW = 0.05
"""Seconds the slowed thread takes: long beside a C-STORE on loopback."""


@pytest.fixture
def items(tmp_path: Path) -> list[SendItem]:
    paths = write_series(tmp_path / "series", 8, seed="races", rows=16, columns=16)
    found = []
    for index, path in enumerate(paths):
        info = probe(path, TAG.group)
        found.append(SendItem(index, str(path), info, splice(info, TAG)))
    return found


@contextmanager
def _associated(
    receiver: StorageReceiver, items: list[SendItem], settings: AssociationSettings
) -> Iterator[Association]:
    """An association to ``receiver`` for the items' SOP class, released after."""
    ds = dcmread(items[0].path, stop_before_pixels=True)
    syntax = str(ds.file_meta.TransferSyntaxUID)
    client = Client(Peer("127.0.0.1", receiver.port, RECEIVER_AE_TITLE), settings)
    assoc = client.associate([Proposal(str(ds.SOPClassUID), (syntax,))])
    try:
        yield assoc
    finally:
        release(assoc)


def _windows(
    assoc: Association,
    settings: AssociationSettings,
    items: list[SendItem],
    kind: type,
) -> list[tuple[float, float]]:
    """Send ``items`` three times over ``assoc``; when each round ran.

    Every instance must be stored, on a channel of class ``kind``.
    """
    windows = []
    for _ in range(3):
        with held(assoc, settings) as channel:
            assert isinstance(channel, kind)
            start = time.monotonic()
            outcomes = [channel.store(item, TAG) for item in items]
            windows.append((start, time.monotonic()))
        assert [o.status.stored for o in outcomes] == [True] * len(items), [
            o.reason for o in outcomes
        ]
    return windows


def test_the_dul_thread_has_left_the_socket_before_the_fast_path_sends(
    monkeypatch: pytest.MonkeyPatch,
    switch: Callable[[str | None], None],
    receiver: StorageReceiver,
    items: list[SendItem],
) -> None:
    """A look at the socket the DUL thread began before the fast path took it
    could read a response; the fast path sends only once that look has ended."""
    switch(None)
    original = DULServiceProvider._is_transport_event
    looks: list[tuple[float, float]] = []

    def slow_look(self: DULServiceProvider) -> bool:
        if not self.assoc.is_requestor:  # the receiver's own
            return original(self)
        start = time.monotonic()
        time.sleep(SLOW)
        try:
            return original(self)
        finally:
            looks.append((start, time.monotonic()))

    monkeypatch.setattr(DULServiceProvider, "_is_transport_event", slow_look)
    settings = AssociationSettings(dimse_timeout=5)
    with _associated(receiver, items, settings) as assoc:
        windows = _windows(assoc, settings, items, FastChannel)
    during = [
        (look, window)
        for look in looks
        for window in windows
        if look[0] < window[1] and look[1] > window[0]
    ]
    assert looks
    assert not during


class _SlowWake(threading.Event):
    """An event whose waiters take :data:`SLOW` to go on once it is set.

    As the reactor's checkpoint: the reactor still says it is paused meanwhile.
    """

    def wait(self, timeout: float | None = None) -> bool:
        woke = super().wait(timeout)
        time.sleep(SLOW)
        return woke


def _slow_reactor(
    monkeypatch: pytest.MonkeyPatch, assoc: Association, kind: type
) -> list[bool]:
    """Give ``assoc``'s reactor a :class:`_SlowWake` checkpoint; the list it
    returns says, for each request of class ``kind`` sent, whether the reactor
    was running then."""
    running_at_request: list[bool] = []
    checkpoint = _SlowWake()
    checkpoint.set()
    assoc._reactor_checkpoint = checkpoint
    dimse = assoc.dimse
    send_msg = dimse.send_msg

    def watched(primitive: object, context_id: int) -> None:
        if isinstance(primitive, kind):
            stopped = assoc._is_paused and checkpoint._cond._waiters  # type: ignore[attr-defined]
            running_at_request.append(not stopped)
        send_msg(primitive, context_id)  # type: ignore[arg-type]

    monkeypatch.setattr(dimse, "send_msg", watched)
    return running_at_request


def test_the_reactor_is_stopped_whenever_the_fallback_sends_a_request(
    monkeypatch: pytest.MonkeyPatch,
    switch: Callable[[str | None], None],
    receiver: StorageReceiver,
    items: list[SendItem],
) -> None:
    """pynetdicom's send_c_store trusts a flag that says paused a moment after the
    reactor resumed; a response in that moment went to the reactor, which dropped
    it. The fallback sends each request only once the reactor is truly stopped."""
    switch("off")
    settings = AssociationSettings(dimse_timeout=5)
    with _associated(receiver, items, settings) as assoc:
        running_at_request = _slow_reactor(monkeypatch, assoc, C_STORE)
        _windows(assoc, settings, items, FallbackChannel)
    assert len(running_at_request) == 3 * len(items)
    assert not any(running_at_request)


@pytest.fixture
def finder() -> Iterator[int]:
    """A Query/Retrieve SCP answering each C-FIND with one match; its port."""

    def answer(event: evt.Event) -> Iterator[tuple[int, Dataset | None]]:
        match = Dataset()
        match.QueryRetrieveLevel = "STUDY"
        match.StudyInstanceUID = "1.2.3.4"
        yield 0xFF00, match

    ae = AE(ae_title="QR-SCP")
    ae.add_supported_context(Model.STUDY_ROOT.find_uid())
    server = ae.start_server(
        ("127.0.0.1", 0), block=False, evt_handlers=[(evt.EVT_C_FIND, answer)]
    )
    assert server is not None
    yield int(server.server_address[1])
    server.shutdown()


def test_the_reactor_is_stopped_for_each_c_find_of_an_association(
    monkeypatch: pytest.MonkeyPatch, finder: int
) -> None:
    """A windowed find asks C-FIND after C-FIND on one association: each goes out
    with the reactor stopped, and each gets its match."""
    client = Client(Peer("127.0.0.1", finder, "QR-SCP"), AssociationSettings())
    model = Model.STUDY_ROOT.find_uid()
    assoc = client.associate([Proposal(model, FALLBACK_SYNTAXES)])
    try:
        running_at_request = _slow_reactor(monkeypatch, assoc, C_FIND)
        identifier = Dataset()
        identifier.QueryRetrieveLevel = "STUDY"
        identifier.StudyInstanceUID = ""
        keys = ["StudyInstanceUID"]
        for _ in range(5):
            found = list(_matches(client, assoc, identifier, model, keys))
            assert found == [{"StudyInstanceUID": "1.2.3.4"}]
    finally:
        release(assoc)
    assert len(running_at_request) == 5
    assert not any(running_at_request)


def test_a_wait_for_the_dul_thread_cut_short_gives_pynetdicom_its_socket_back(
    monkeypatch: pytest.MonkeyPatch,
    switch: Callable[[str | None], None],
    receiver: StorageReceiver,
    items: list[SendItem],
) -> None:
    """A signal while waiting for the DUL thread (a stop) leaves nothing swapped:
    the association can still be aborted, which needs the DUL thread to read."""
    switch(None)
    settings = AssociationSettings()
    with _associated(receiver, items, settings) as assoc:
        assert fastpath.fast(assoc)
        waits = 0
        wait = fastpath._wait

        def cut_short(*args: object) -> bool:
            nonlocal waits
            waits += 1
            if waits == 2:  # the reactor's wait is the first
                raise KeyboardInterrupt
            return wait(*args)  # type: ignore[arg-type]

        monkeypatch.setattr(fastpath, "_wait", cut_short)
        with pytest.raises(KeyboardInterrupt), held(assoc, settings):
            pass
        assert "_is_transport_event" not in vars(assoc.dul)
        ended = threading.Thread(target=assoc.abort, daemon=True)
        ended.start()
        ended.join(10)
        assert not ended.is_alive()
        assert not assoc.is_established
