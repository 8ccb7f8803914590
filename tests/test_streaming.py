"""Transports that take items as they arrive: a blocking generator, real receivers.

The generator stands in for a pipeline whose next file is still downloading: it
waits (on the receiver's own record, never a sleep) before it gives the rest, so
an instance stored before the generator ended proves that the transport sent it
as it arrived.
"""

import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from pydicom.filewriter import dcmwrite
from pydicom.uid import (
    UID,
    DeflatedExplicitVRLittleEndian,
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
    MRImageStorage,
)

from fw_gear_dicom_send.dicom.probe import probe
from fw_gear_dicom_send.dicom.provenance import ProvenanceTag, splice
from fw_gear_dicom_send.dicom.samples import make_ct
from fw_gear_dicom_send.pacs.receiver import StorageReceiver
from fw_gear_dicom_send.status import InstanceStatus
from fw_gear_dicom_send.transport.association import Client
from fw_gear_dicom_send.transport.cstore import CStore
from fw_gear_dicom_send.transport.outcome import Outcome, SendItem
from fw_gear_dicom_send.transport.peer import AssociationSettings, Peer
from fw_gear_dicom_send.transport.retry import Retrier, RetryPolicy

WAIT = 5.0
"""Seconds the generator waits at most for the receiver to store what it gave."""


class Watching(StorageReceiver):
    """A receiver that notes when it stored each instance and when it had the
    most associations open at once."""

    def __init__(self, out_dir: Path, **kwargs: Any) -> None:
        super().__init__(out_dir, ae_title="STORE-SCP", **kwargs)
        self.stored_at: dict[str, float] = {}
        self.open = 0
        self.most = 0
        self.opens: list[int] = []
        """The number open after each association opened or ended."""
        self.changed = threading.Condition()

    def _on_accepted(self, event: Any) -> None:
        super()._on_accepted(event)
        with self.changed:
            self.open += 1
            self.most = max(self.most, self.open)
            self.opens.append(self.open)
            self.changed.notify_all()

    def _ended(self) -> None:
        with self.changed:
            self.open -= 1
            self.opens.append(self.open)
            self.changed.notify_all()

    def _on_released(self, event: Any) -> None:
        super()._on_released(event)
        self._ended()

    def _on_aborted(self, event: Any) -> None:
        super()._on_aborted(event)
        self._ended()

    def _on_store(self, event: Any) -> Any:
        status = super()._on_store(event)
        with self.changed:
            self.stored_at[event.request.AffectedSOPInstanceUID] = time.monotonic()
            self.changed.notify_all()
        return status

    def wait_for(self, what: Callable[[], bool], timeout: float = WAIT) -> bool:
        with self.changed:
            return self.changed.wait_for(what, timeout)


@pytest.fixture
def watching(tmp_path: Path) -> Iterator[Watching]:
    with Watching(tmp_path / "received") as scp:
        yield scp


def write_item(
    folder: Path,
    index: int,
    *,
    sop_class: str | None = None,
    syntax: str = ExplicitVRLittleEndian,
) -> SendItem:
    """A CT (or another class) instance in ``syntax``, ready to send."""
    ds = make_ct(index, seed="streaming")
    if sop_class is not None:
        ds.SOPClassUID = ds.file_meta.MediaStorageSOPClassUID = UID(sop_class)
    ds.file_meta.TransferSyntaxUID = UID(syntax)
    path = folder / f"{index}.dcm"
    folder.mkdir(parents=True, exist_ok=True)
    dcmwrite(path, ds, enforce_file_format=True)
    info = probe(path, 0x0021)
    inserts = splice(info, ProvenanceTag()) if info.encoding is not None else None
    return SendItem(index, str(path), info, inserts)


class Events:
    """The Events of a transport, recorded."""

    def __init__(self) -> None:
        self.outcomes: dict[int, Outcome] = {}
        self.went_out: set[int] = set()

    def sent(self, item: SendItem) -> None:
        self.went_out.add(item.index)

    def outcome(self, item: SendItem, outcome: Outcome) -> None:
        assert item.index not in self.outcomes, "two outcomes for one item"
        self.outcomes[item.index] = outcome


def slowly(
    items: list[SendItem], scp: Watching, ended: list[float]
) -> Iterator[SendItem]:
    """Give the first item, wait until the receiver stored it, then the rest.

    Records when it ended. A transport that waits for the whole input first
    keeps it waiting :data:`WAIT` seconds, and stores the first instance after
    the generator ended.
    """
    first, *rest = items
    yield first
    scp.wait_for(lambda: first.info.sop_instance_uid in scp.stored_at)
    yield from rest
    ended.append(time.monotonic())


def cstore(scp: StorageReceiver) -> CStore:
    client = Client(Peer("127.0.0.1", scp.port, "STORE-SCP"), AssociationSettings())
    return CStore(client, ProvenanceTag(), Retrier(RetryPolicy()))


def test_cstore_sends_the_first_item_before_the_input_ends(
    watching: Watching, tmp_path: Path
) -> None:
    items = [write_item(tmp_path / "in", i) for i in range(5)]
    ended: list[float] = []
    events = Events()
    result = cstore(watching).send(slowly(items, watching, ended), events)
    assert result.error is None
    assert {o.status for o in events.outcomes.values()} == {InstanceStatus.SENT}
    assert len(events.outcomes) == 5
    first_stored = watching.stored_at[items[0].info.sop_instance_uid]
    assert first_stored < ended[0]
    assert watching.associations == 1  # one class, one syntax: one association


def test_cstore_opens_one_more_association_for_a_late_class_and_syntax(
    watching: Watching, tmp_path: Path
) -> None:
    folder = tmp_path / "in"
    items = [
        write_item(folder, 0),
        write_item(folder, 1),
        write_item(folder, 2, sop_class=MRImageStorage),  # late class
        write_item(folder, 3),
        write_item(folder, 4, syntax=DeflatedExplicitVRLittleEndian),  # late syntax
        write_item(folder, 5, sop_class=MRImageStorage),
        write_item(folder, 6),
    ]
    ended: list[float] = []
    events = Events()
    result = cstore(watching).send(slowly(items, watching, ended), events)
    assert result.error is None
    assert {o.status for o in events.outcomes.values()} == {InstanceStatus.SENT}
    # Each instance arrived in its own class and syntax: none was re-encoded.
    syntaxes = {r.sop_instance_uid: r.transfer_syntax for r in watching.received}
    for item in items:
        assert syntaxes[item.info.sop_instance_uid] == item.transfer_syntax
        assert events.outcomes[item.index].transfer_syntax == item.transfer_syntax
    # The first, then one for the MR class, then one for deflated CT.
    assert watching.associations == 3
    assert watching.stored_at[items[0].info.sop_instance_uid] < ended[0]


def test_cstore_of_a_list_plans_every_context_up_front(
    watching: Watching, tmp_path: Path
) -> None:
    folder = tmp_path / "in"
    items = [
        write_item(folder, 0),
        write_item(folder, 1, sop_class=MRImageStorage),
        write_item(folder, 2, syntax=DeflatedExplicitVRLittleEndian),
        write_item(folder, 3, syntax=ImplicitVRLittleEndian),
    ]
    events = Events()
    assert cstore(watching).send(items, events).error is None
    assert len(events.outcomes) == 4
    assert watching.associations == 1


def test_stow_sends_a_partial_request_while_the_input_waits(tmp_path: Path) -> None:
    from stowserver import StowServer

    from fw_gear_dicom_send.transport.peer import StowSettings
    from fw_gear_dicom_send.transport.stow import Stow

    items = [write_item(tmp_path / "in", i) for i in range(25)]
    first = items[0].info.sop_instance_uid
    stored_when_ended: list[int] = []
    with StowServer() as server:

        def gradually() -> Iterator[SendItem]:
            yield items[0]
            deadline = time.monotonic() + WAIT
            while first not in server.stored and time.monotonic() < deadline:
                time.sleep(0.01)  # waiting on the server's own record
            yield from items[1:]
            stored_when_ended.append(len(server.stored))

        events = Events()
        stow = Stow(
            StowSettings(server.url, batch=10), ProvenanceTag(), Retrier(RetryPolicy())
        )
        result = stow.send(gradually(), events)
    assert result.error is None
    assert {o.status for o in events.outcomes.values()} == {InstanceStatus.SENT}
    assert len(events.outcomes) == 25
    assert stored_when_ended[0] >= 1  # the first was stored before the input ended
    assert server.requests[0].uids == [first]  # alone: nothing more had come
    assert sorted(len(r.uids) for r in server.requests[1:]) == [4, 10, 10]


def test_cstore_streams_into_storescp(tmp_path: Path) -> None:
    from conftest import run_storescp

    items = [write_item(tmp_path / "in", i) for i in range(8)]
    first = items[0].info.sop_instance_uid
    peers = run_storescp(tmp_path)
    peer = next(peers)
    seen = False

    def gradually() -> Iterator[SendItem]:
        nonlocal seen
        yield items[0]
        deadline = time.monotonic() + WAIT
        while time.monotonic() < deadline:
            seen = any(peer.out_dir.glob(f"*{first}*"))  # the receiver's own record
            if seen:
                break
            time.sleep(0.01)
        yield from items[1:]

    try:
        where = Peer("127.0.0.1", peer.port, peer.ae_title)
        client = Client(where, AssociationSettings())
        events = Events()
        result = CStore(client, ProvenanceTag(), Retrier(RetryPolicy())).send(
            gradually(), events
        )
        assert result.error is None
        assert {o.status for o in events.outcomes.values()} == {InstanceStatus.SENT}
        assert len(list(peer.out_dir.iterdir())) == 8
        assert seen  # the first reached the receiver while the rest were to come
    finally:
        next(peers, None)  # stops it
