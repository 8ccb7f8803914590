"""The start of a send: how soon the transport is decided."""

import time
from pathlib import Path

from fw_gear_dicom_send.dicom.samples import write_series
from fw_gear_dicom_send.sending.pipeline import LEAD, STALL, Fetched, Pipeline
from fw_gear_dicom_send.sending.request import SendRequest
from fw_gear_dicom_send.sending.room import Room
from fw_gear_dicom_send.transport.peer import Peer

PACE = STALL / 5
"""Seconds between two inputs of the paced fetcher: never a stall."""


class Paced:
    """Brings local files one every :data:`PACE` seconds (a steady listing)."""

    def __init__(self, paths: list[Path]) -> None:
        self._paths = paths
        self._room: Room | None = None

    def start(self, room: Room) -> None:
        self._room = room

    def fetch(self, index: int) -> Fetched:
        assert self._room is not None
        time.sleep(PACE)
        return Fetched(self._paths[index], self._room.lot())

    def stop(self) -> None:
        pass


def test_peek_returns_once_it_holds_enough_items(tmp_path: Path) -> None:
    paths = write_series(tmp_path / "in", int(3 * LEAD / PACE))
    request = SendRequest(paths=tuple(paths), peer=Peer("127.0.0.1", 104, "ANY"))
    work = tmp_path / "work"
    work.mkdir()
    pipeline = Pipeline(request, paths, work, Room(None), Paced(paths))
    pipeline.start()
    try:
        started = time.monotonic()
        head, whole = pipeline.peek(4)
        took = time.monotonic() - started
        assert len(head) == 4
        assert not whole
        assert took < LEAD / 2
        # The rest still comes, in order, after what peek took.
        rest = list(pipeline)
    finally:
        pipeline.finish(interrupted=False)
    assert [i.index for i in head + rest] == list(range(len(paths)))


def test_peek_without_a_count_takes_what_comes_within_its_lead(tmp_path: Path) -> None:
    paths = write_series(tmp_path / "in", int(3 * LEAD / PACE))
    request = SendRequest(paths=tuple(paths), peer=Peer("127.0.0.1", 104, "ANY"))
    work = tmp_path / "work"
    work.mkdir()
    pipeline = Pipeline(request, paths, work, Room(None), Paced(paths))
    pipeline.start()
    try:
        started = time.monotonic()
        head, whole = pipeline.peek()
        took = time.monotonic() - started
        list(pipeline)
    finally:
        pipeline.finish(interrupted=False)
    assert not whole
    assert took >= LEAD
    assert len(head) > 4


def test_a_small_send_is_peeked_whole(tmp_path: Path) -> None:
    paths = write_series(tmp_path / "in", 3)
    request = SendRequest(paths=tuple(paths), peer=Peer("127.0.0.1", 104, "ANY"))
    work = tmp_path / "work"
    work.mkdir()
    pipeline = Pipeline(request, paths, work, Room(None))
    pipeline.start()
    try:
        head, whole = pipeline.peek(100)
    finally:
        pipeline.finish(interrupted=False)
    assert whole
    assert len(head) == 3
