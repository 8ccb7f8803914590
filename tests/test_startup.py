"""The start of a send: how soon the transport is decided and the sender started."""

import multiprocessing
import subprocess
import sys
import time
from pathlib import Path

import pytest

from fw_gear_dicom_send.dicom.samples import write_series
from fw_gear_dicom_send.errors import UsageError
from fw_gear_dicom_send.pacs.receiver import StorageReceiver
from fw_gear_dicom_send.sending.early import started
from fw_gear_dicom_send.sending.engine import send
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


def _paced_pipeline(tmp_path: Path) -> tuple[list[Path], Pipeline]:
    """A series of three LEADs' worth of files, listed at PACE each."""
    paths = write_series(tmp_path / "in", int(3 * LEAD / PACE))
    request = SendRequest(paths=tuple(paths), peer=Peer("127.0.0.1", 104, "ANY"))
    work = tmp_path / "work"
    work.mkdir()
    return paths, Pipeline(request, paths, work, Room(None), Paced(paths))


def test_peek_returns_once_it_holds_enough_items(tmp_path: Path) -> None:
    paths, pipeline = _paced_pipeline(tmp_path)
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
    _, pipeline = _paced_pipeline(tmp_path)
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


def senders() -> list[multiprocessing.process.BaseProcess]:
    """This process's sender processes still running."""
    return [
        p for p in multiprocessing.active_children() if p.name == "dicom-send-sender"
    ]


def test_the_command_line_starts_the_sender_before_it_imports_the_engine() -> None:
    code = (
        "import sys; import fw_gear_dicom_send.cli.send; "
        "print('fw_gear_dicom_send.sending.engine' in sys.modules)"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    )
    assert out.stdout.strip() == "False"


_RECORDING = """
import multiprocessing, sys
from fw_gear_dicom_send.transport import processes
made = []
init = processes.Sender.__init__
def recording(self):
    made.append("fw_gear_dicom_send.cli.send" in sys.modules)
    init(self)
processes.Sender.__init__ = recording
from fw_gear_dicom_send.cli.main import main
try:
    status = main(sys.argv[1:])
except SystemExit as exc:
    status = exc.code
print(made, status, len(multiprocessing.active_children()))
"""
"""Runs the command line; prints, for each sender started, whether ``send``'s
module was imported by then, the exit status, and the child processes left."""


def test_the_command_line_starts_the_sender_first_and_the_send_keeps_it(
    receiver: StorageReceiver, tmp_path: Path
) -> None:
    write_series(tmp_path / "in", 40)
    out = subprocess.run(
        [
            sys.executable, "-c", _RECORDING, "-q", "send", str(tmp_path / "in"),
            "--host=127.0.0.1", f"--port={receiver.port}", "--called-ae=STORE-SCP",
            "--associations=2", f"--report={tmp_path / 'report.csv'}",
        ],
        capture_output=True, text=True, check=False, timeout=120,
    )  # fmt: skip
    assert out.stdout.split()[-3:] == ["[False]", "0", "0"], out.stderr
    assert receiver.associations == 2
    assert len(receiver.received) == 40


@pytest.mark.parametrize(
    ("words", "status"),
    [(["send", "--help"], "0"), (["send", "--host=127.0.0.1"], "2"),
     (["send", "one.dcm"], "0")],
    ids=["help", "usage error", "one file"],
)  # fmt: skip
def test_a_sender_started_first_and_not_needed_is_closed(
    receiver: StorageReceiver, tmp_path: Path, words: list[str], status: str
) -> None:
    write_series(tmp_path, 1)
    one = next(tmp_path.iterdir())
    words = [str(one) if w == "one.dcm" else w for w in words]
    peer = ["--host=127.0.0.1", f"--port={receiver.port}", "--called-ae=STORE-SCP"]
    args = [*words, *(peer if words[-1] == str(one) else [])]
    out = subprocess.run(
        [sys.executable, "-c", _RECORDING, "-q", *args],
        capture_output=True, text=True, check=False, timeout=60, cwd=tmp_path,
    )  # fmt: skip
    assert out.stdout.split()[-3:] == ["[False]", status, "0"], out.stderr


def test_a_sender_given_sends_and_is_closed(
    receiver: StorageReceiver, tmp_path: Path
) -> None:
    paths = write_series(tmp_path / "in", 40)
    request = SendRequest(
        paths=(tmp_path / "in",),
        peer=Peer("127.0.0.1", receiver.port, "STORE-SCP"),
        associations=2,
    )
    with started(request) as sender:
        assert sender is not None
        result = send(request, sender=sender)
        assert not senders()  # the send closed it
    assert result.summary.stored == len(paths)
    assert result.associations.startswith("2 ")
    assert len(receiver.received) == len(paths)


def test_a_sender_given_is_closed_when_the_request_is_refused(tmp_path: Path) -> None:
    request = SendRequest(
        paths=(tmp_path / "missing",),
        peer=Peer("127.0.0.1", 104, "ANY"),
        associations=4,
    )
    with started(request) as sender:
        assert sender is not None
        assert senders()
        with pytest.raises(UsageError, match="missing"):
            send(request, sender=sender)
        assert not senders()


def test_started_closes_the_sender_whatever_ends_the_block(tmp_path: Path) -> None:
    request = SendRequest(
        paths=(tmp_path,), peer=Peer("127.0.0.1", 104, "ANY"), associations=4
    )
    with pytest.raises(KeyboardInterrupt), started(request) as sender:
        assert sender is not None
        raise KeyboardInterrupt
    assert not senders()


def test_no_sender_for_a_send_over_one_association(tmp_path: Path) -> None:
    request = SendRequest(
        paths=(tmp_path,), peer=Peer("127.0.0.1", 104, "ANY"), associations=1
    )
    with started(request) as sender:
        assert sender is None
