"""Worker processes that share one queue, fed as items arrive, paced by a policy.

Real receivers on 127.0.0.1: the in-process pynetdicom receiver (which notes when
it stored each instance and how many associations it had open) and DCMTK
storescp. The pacing here is a small test double, not a mock of the network.
"""

import os
import signal
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from conftest import run_storescp
from pydicom.uid import DeflatedExplicitVRLittleEndian, MRImageStorage
from test_streaming import Events, Watching, slowly, write_item
from test_workers import _descendants

from fw_gear_dicom_send.dicom.provenance import ProvenanceTag
from fw_gear_dicom_send.status import InstanceStatus
from fw_gear_dicom_send.transport.interface import Ended
from fw_gear_dicom_send.transport.outcome import SendItem
from fw_gear_dicom_send.transport.pacing import Fixed, Pacing, Refusal, Sample
from fw_gear_dicom_send.transport.peer import AssociationSettings, Peer
from fw_gear_dicom_send.transport.processes import Sender
from fw_gear_dicom_send.transport.retry import RetryPolicy
from fw_gear_dicom_send.transport.workers import Workers


def send_over_workers(
    port: int,
    items: Any,
    events: Events,
    pacing: Pacing,
    ae_title: str = "STORE-SCP",
    retry: RetryPolicy | None = None,
) -> Ended:
    sender = Sender()
    try:
        workers = Workers(
            sender,
            peer=Peer("127.0.0.1", port, ae_title),
            association=AssociationSettings(),
            tag=ProvenanceTag(),
            retry=retry or RetryPolicy(),
            pacing=pacing,
        )
        return workers.send(items, events)
    finally:
        sender.close()


@pytest.fixture
def watching(tmp_path: Path) -> Iterator[Watching]:
    with Watching(tmp_path / "received") as scp:
        yield scp


@pytest.fixture(scope="module")
def many(tmp_path_factory: pytest.TempPathFactory) -> list[SendItem]:
    folder = tmp_path_factory.mktemp("many")
    return [write_item(folder, i) for i in range(240)]


def test_workers_send_the_first_item_before_the_input_ends(
    watching: Watching, many: list[SendItem]
) -> None:
    ended: list[float] = []
    events = Events()
    result = send_over_workers(
        watching.port, slowly(many[:40], watching, ended), events, Fixed(2)
    )
    assert result.unsent == ()
    assert len(events.outcomes) == 40
    assert {o.status for o in events.outcomes.values()} == {InstanceStatus.SENT}
    assert watching.stored_at[many[0].info.sop_instance_uid] < ended[0]
    assert result.associations == "2 associations"


def test_workers_stream_into_storescp(tmp_path: Path, many: list[SendItem]) -> None:
    storescps = run_storescp(tmp_path, "--fork")
    peer = next(storescps)
    first = many[0].info.sop_instance_uid
    seen = False

    def gradually() -> Iterator[SendItem]:
        nonlocal seen
        yield many[0]
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            seen = any(peer.out_dir.glob(f"*{first}*"))  # the receiver's own record
            if seen:
                break
            time.sleep(0.01)
        yield from many[1:40]

    try:
        events = Events()
        result = send_over_workers(
            peer.port, gradually(), events, Fixed(2), ae_title=peer.ae_title
        )
        assert result.unsent == ()
        assert {o.status for o in events.outcomes.values()} == {InstanceStatus.SENT}
        assert len(list(peer.out_dir.iterdir())) == 40
        assert seen  # the first reached the receiver while the rest were to come
    finally:
        next(storescps, None)  # stops it


def test_workers_send_a_late_class_and_syntax(
    watching: Watching, tmp_path: Path, many: list[SendItem]
) -> None:
    late = [
        write_item(tmp_path, 1000, sop_class=MRImageStorage),
        write_item(tmp_path, 1001, syntax=DeflatedExplicitVRLittleEndian),
    ]
    items = [*many[:20], late[0], *many[20:30], late[1], *many[30:40]]
    ended: list[float] = []
    events = Events()
    result = send_over_workers(
        watching.port, slowly(items, watching, ended), events, Fixed(2)
    )
    assert result.unsent == ()
    assert {o.status for o in events.outcomes.values()} == {InstanceStatus.SENT}
    syntaxes = {r.sop_instance_uid: r.transfer_syntax for r in watching.received}
    for item in items:
        assert syntaxes[item.info.sop_instance_uid] == item.transfer_syntax


class _KillingOne(Watching):
    """Kills one sending worker (SIGKILL) when the tenth C-STORE comes."""

    killed: int | None = None

    def _on_store(self, event: Any) -> Any:
        with self._lock:
            kill = len(self.stored_at) >= 9 and self.killed is None
            if kill:
                # Workers are forked by the sender, itself by the fork server.
                self.killed = _descendants(os.getpid(), 3)[0]
        if kill:
            os.kill(self.killed, signal.SIGKILL)  # type: ignore[arg-type]
        return super()._on_store(event)


def test_the_items_of_a_killed_worker_are_sent_by_the_others(
    tmp_path: Path, many: list[SendItem]
) -> None:
    with _KillingOne(tmp_path / "in") as scp:
        events = Events()
        result = send_over_workers(scp.port, iter(many[:80]), events, Fixed(3))
    assert scp.killed is not None
    # What it had sent unanswered is its own: the receiver may have stored it.
    flying = {index for u in result.unsent for index in u.items}
    assert len(flying) <= 1
    assert all("exit code -9" in u.reason for u in result.unsent)
    # Everything else was sent, by the others: what it held and had not sent too.
    sent = {i for i, o in events.outcomes.items() if o.status is InstanceStatus.SENT}
    assert sent | flying == set(range(80))
    assert len({r.sop_instance_uid for r in scp.received}) == 80


class Steps:
    """A pacing that asks for 1, then 3 at the first sample with that one open,
    then 2 two samples after the first with 3 open."""

    def __init__(self) -> None:
        self.samples: list[tuple[float, Sample]] = []
        self.changed: list[tuple[float, int]] = [(time.monotonic(), 1)]
        self.open_since: int | None = None
        """The sample at which the first association was open."""
        self.three_since: int | None = None
        """The sample at which 3 were open."""

    def start(self) -> int:
        return 1

    def sample(self, sample: Sample) -> int:
        self.samples.append((time.monotonic(), sample))
        if self.open_since is None and sample.open >= 1:
            self.open_since = len(self.samples)
        if self.open_since is None:
            return 1
        if self.three_since is None and sample.open >= 3:
            self.three_since = len(self.samples)
        three = self.three_since is None or len(self.samples) - self.three_since < 2
        want = 3 if three else 2
        if want != self.changed[-1][1]:
            self.changed.append((time.monotonic(), want))
        return want

    def refused(self, refusal: Refusal) -> int:
        raise AssertionError(f"no refusal expected: {refusal}")

    def summary(self) -> str:
        return "steps"


class Slow(Watching):
    """Takes 20 ms per instance; notes each change in the associations open."""

    def __init__(self, out_dir: Path, **kwargs: Any) -> None:
        super().__init__(out_dir, **kwargs)
        self.timeline: list[tuple[float, int]] = []

    def _on_store(self, event: Any) -> Any:
        time.sleep(0.02)
        return super()._on_store(event)

    def _on_accepted(self, event: Any) -> None:
        super()._on_accepted(event)
        self.timeline.append((time.monotonic(), self.open))

    def _ended(self) -> None:
        super()._ended()
        self.timeline.append((time.monotonic(), self.open))


def test_the_associations_open_follow_the_pacing(
    tmp_path: Path, many: list[SendItem]
) -> None:
    pacing = Steps()
    with Slow(tmp_path / "in") as scp:
        events = Events()
        result = send_over_workers(scp.port, iter(many), events, pacing)
    assert result.unsent == ()
    assert {o.status for o in events.outcomes.values()} == {InstanceStatus.SENT}
    (_, one), (to_three, three), (to_two, two) = pacing.changed
    assert (one, three, two) == (1, 3, 2)

    def most(start: float, end: float) -> int:
        return max((n for t, n in scp.timeline if start <= t < end), default=0)

    assert most(0, to_three) == 1
    assert most(to_three, to_two) == 3
    grace = 0.3  # the retired one finishes the instance on its wire
    assert most(to_two + grace, time.monotonic()) <= 2
    assert scp.timeline[-1][1] == 0  # all released in the end
    assert any(s.open == 3 for _, s in pacing.samples)


class Eager:
    """A pacing that asks for 5, and for as many as were open at a refusal."""

    def __init__(self) -> None:
        self.refusals: list[Refusal] = []
        self.lock = threading.Lock()

    def start(self) -> int:
        return 5

    def sample(self, sample: Sample) -> int:
        return 5 if not self.refusals else self.refusals[-1].open

    def refused(self, refusal: Refusal) -> int:
        self.refusals.append(refusal)
        return refusal.open

    def summary(self) -> str:
        return f"refused {len(self.refusals)}"


def test_refusals_beyond_the_receivers_limit_reach_the_pacing(
    tmp_path: Path, many: list[SendItem]
) -> None:
    pacing = Eager()
    with Slow(tmp_path / "in", max_associations=3) as scp:
        events = Events()
        result = send_over_workers(scp.port, many[:160], events, pacing)
    assert pacing.refusals
    assert all("local limit exceeded" in r.reason.lower() for r in pacing.refusals)
    assert all(r.open <= 3 for r in pacing.refusals)
    assert result.unsent == ()
    assert len(events.outcomes) == 160
    assert {o.status for o in events.outcomes.values()} == {InstanceStatus.SENT}
    assert scp.most <= 3
    assert result.associations == f"refused {len(pacing.refusals)}"
