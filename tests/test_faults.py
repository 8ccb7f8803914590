"""Faults: every instance ends stored, or failed with the reason; transient faults
end with everything stored; the exit status says which."""

import csv
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from conftest import ExternalPeer, need, run_storescp
from faults import FaultProxy, FaultyReceiver
from multiframe import write_multiframe
from pydicom import dcmread
from pydicom.data import get_testdata_file
from pydicom.uid import ExplicitVRLittleEndian, ImplicitVRLittleEndian
from test_cli import run, send_args

from fw_gear_dicom_send import RunResult, SendRequest, send
from fw_gear_dicom_send.dicom.samples import copy_as_new, write_series
from fw_gear_dicom_send.pacs.receiver import StorageReceiver
from fw_gear_dicom_send.settings import DEFAULT_ASSOCIATIONS
from fw_gear_dicom_send.status import ExitStatus, InstanceStatus
from fw_gear_dicom_send.transport.association import Client, release
from fw_gear_dicom_send.transport.contexts import Proposal
from fw_gear_dicom_send.transport.peer import AssociationSettings, Peer
from fw_gear_dicom_send.transport.retry import RetryPolicy

SENT = InstanceStatus.SENT
FAILED = InstanceStatus.FAILED


@pytest.fixture
def series(tmp_path: Path) -> Path:
    folder = tmp_path / "series"
    write_series(folder, 4, seed="faults", rows=256, columns=256)
    return folder


def send_to(
    folder: Path, port: int, budget: float = 20, dimse_timeout: float = 30
) -> RunResult:
    return send(
        SendRequest(
            paths=(folder,),
            peer=Peer("127.0.0.1", port, "STORE-SCP"),
            association=AssociationSettings(dimse_timeout=dimse_timeout),
            retry=RetryPolicy(budget=budget, first_wait=0.1, max_wait=0.5),
        )
    )


def read_rows(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def statuses(result: RunResult) -> list[InstanceStatus]:
    return [row.status for row in result.rows]


def test_out_of_resources_is_retried_until_stored(tmp_path: Path, series: Path) -> None:
    with FaultyReceiver(tmp_path / "in", answers=[0xA700, 0xA702]) as scp:
        result = send_to(series, scp.port)
    assert statuses(result) == [SENT] * 4
    assert result.exit_status is ExitStatus.SUCCESS
    assert scp.stores == 6
    assert result.rows[0].reason.startswith(
        "stored after 3 attempts; first: refused: 0xA700"
    )


@pytest.mark.parametrize("answer", [0xA900, 0xC000, 0xA801])
def test_permanent_refusals_are_not_retried(
    tmp_path: Path, series: Path, answer: int
) -> None:
    with FaultyReceiver(tmp_path / "in", answers=[answer]) as scp:
        result = send_to(series, scp.port)
    assert statuses(result) == [FAILED, SENT, SENT, SENT]
    assert result.rows[0].dimse_status == answer
    assert f"0x{answer:04X}" in result.rows[0].reason
    assert scp.stores == 4  # no second try
    assert result.exit_status is ExitStatus.INCOMPLETE


def test_the_receivers_error_comment_is_in_the_reason(
    tmp_path: Path, series: Path
) -> None:
    with FaultyReceiver(
        tmp_path / "in", answers=[0xA900], comment="Patient ID mismatch"
    ) as scp:
        result = send_to(series, scp.port)
    assert result.rows[0].reason == (
        "refused: 0xA900 (Data Set Does Not Match SOP Class): Patient ID mismatch"
    )
    assert statuses(result) == [FAILED, SENT, SENT, SENT]


def test_an_abort_mid_association(tmp_path: Path, series: Path) -> None:
    with FaultyReceiver(tmp_path / "in", abort_on=[2]) as scp:
        result = send_to(series, scp.port)
    assert statuses(result) == [SENT] * 4
    assert "may have received it twice" in result.rows[1].reason
    assert scp.associations == 2
    assert len(scp.received) == 4


def test_a_receiver_that_never_answers(tmp_path: Path, series: Path) -> None:
    with FaultyReceiver(tmp_path / "in", silent_on=[1], silence=3) as scp:
        result = send_to(series, scp.port, dimse_timeout=1)
    assert statuses(result) == [SENT] * 4
    assert "sent again (2 attempts)" in result.rows[0].reason
    assert len(scp.received) == 4


def test_a_never_answering_receiver_with_no_retries(
    tmp_path: Path, series: Path
) -> None:
    with FaultyReceiver(tmp_path / "in", silent_on=[1], silence=3) as scp:
        result = send_to(series, scp.port, budget=0, dimse_timeout=1)
    assert statuses(result) == [FAILED, SENT, SENT, SENT]
    assert "no response within 1 s (DIMSE timeout)" in result.rows[0].reason


@pytest.mark.parametrize("how", ["cut", "reset"])
def test_a_connection_broken_mid_pdu(
    receiver: StorageReceiver, series: Path, how: str
) -> None:
    """The proxy breaks the first connection 40 KB in: inside the first data set."""
    with FaultProxy(receiver.port, [(how, 40_000)]) as proxy:
        result = send_to(series, proxy.port)
    assert proxy.used[:2] == [how, "pass"]
    assert statuses(result) == [SENT] * 4
    assert len(receiver.received) == 4
    assert receiver.associations == 2


def test_a_receiver_that_stops_reading_mid_instance(
    receiver: StorageReceiver, tmp_path: Path
) -> None:
    """The proxy stops reading 100 KB into a 24 MB instance, then the next
    connection passes: the write times out, and the instance goes again."""
    (tmp_path / "in").mkdir()
    big = write_multiframe(tmp_path / "in" / "big.dcm", 24)
    with FaultProxy(receiver.port, [("stall", 100_000)]) as proxy:
        result = send_to(big.parent, proxy.port, dimse_timeout=1)
    assert proxy.used[:2] == ["stall", "pass"]
    assert statuses(result) == [SENT]
    assert result.rows[0].reason == (
        "stored after 2 attempts; first: association lost while sending: the "
        "receiver took nothing in for 1 s (DIMSE timeout)"
    )
    assert len(receiver.received) == 1


def test_transient_rejections_are_waited_out(
    receiver: StorageReceiver, series: Path
) -> None:
    with FaultProxy(receiver.port, [("reject",), ("reject",)]) as proxy:
        result = send_to(series, proxy.port)
    assert proxy.used == ["reject", "reject", "pass"]
    assert statuses(result) == [SENT] * 4


def test_a_permanent_rejection_fails_at_once(
    receiver: StorageReceiver, series: Path, tmp_path: Path
) -> None:
    started = time.monotonic()
    result = run(
        *send_args(series, receiver.port, "NOT-THE-AE"),
        f"--report={tmp_path / 'r.csv'}",
    )
    assert time.monotonic() - started < 10
    assert result.returncode == ExitStatus.NOTHING_SENT
    assert "Traceback" not in result.stderr
    assert "association rejected by NOT-THE-AE" in result.stderr
    assert "Called AE title not recognised" in result.stderr
    rows = read_rows(tmp_path / "r.csv")
    assert [r["status"] for r in rows] == ["failed"] * 4
    assert all("Called AE title not recognised" in r["reason"] for r in rows)


def test_a_receiver_taking_one_association_at_a_time(
    make_receiver: Callable[..., StorageReceiver], series: Path
) -> None:
    """Another sender holds the only association; ours is refused as transient
    until it is released."""
    scp = make_receiver(max_associations=1)
    holder = Client(Peer("127.0.0.1", scp.port, "STORE-SCP"), AssociationSettings())
    held = holder.associate([Proposal("1.2.840.10008.1.1", (ImplicitVRLittleEndian,))])
    timer = threading.Timer(1.5, release, args=(held,))
    timer.start()
    try:
        result = send_to(series, scp.port)
    finally:
        timer.join()
    assert statuses(result) == [SENT] * 4
    assert scp.associations == 2


def test_an_uncompressed_only_receiver_gets_compressed_files_decompressed(
    make_receiver: Callable[..., StorageReceiver], tmp_path: Path
) -> None:
    """Acceptance 4: RLE, JPEG Baseline, JPEG 2000, JPEG-LS, JPEG Lossless
    (Process 14) and 12-bit JPEG Extended (both by GDCM) arrive decompressed under
    their own SOP Instance UIDs; the lossy ones stay marked lossy. A JPEG 2000
    file no decoder can read fails with the reason."""
    scp = make_receiver(transfer_syntaxes=[ExplicitVRLittleEndian])
    folder = tmp_path / "compressed"
    names = {
        "rle": "SC_rgb_rle.dcm",
        "baseline": "SC_rgb_jpeg_dcmtk.dcm",
        "j2k": "JPEG2000.dcm",
        "jpeg-ls": "MR_small_jpeg_ls_lossless.dcm",
        "lossless": "SC_rgb_jpeg_gdcm.dcm",
        "12-bit": "JPEG-lossy.dcm",
        "broken": "JPEG2000-embedded-sequence-delimiter.dcm",
    }
    for label, name in names.items():
        source = get_testdata_file(name)
        assert source is not None
        copy_as_new(Path(source), folder / f"{label}.dcm", seed=label)
    result = send(
        SendRequest(
            (folder,),
            Peer("127.0.0.1", scp.port, "STORE-SCP"),
            retry=RetryPolicy(budget=0),
        )
    )
    rows = {Path(row.file).stem: row for row in result.rows}
    decoded = ("rle", "baseline", "j2k", "jpeg-ls", "lossless", "12-bit")
    for label in decoded:
        assert rows[label].status is SENT, rows[label].reason
        assert rows[label].reason.startswith("decompressed from ")
        assert rows[label].transfer_syntax == ExplicitVRLittleEndian
    assert rows["broken"].status is FAILED
    assert "cannot decompress JPEG 2000" in rows["broken"].reason
    received = {r.sop_instance_uid: dcmread(r.path) for r in scp.received}
    by_label = {label: received[rows[label].sop_instance_uid] for label in decoded}
    for label, ds in by_label.items():
        assert ds.SOPInstanceUID == rows[label].sop_instance_uid
    assert by_label["baseline"].LossyImageCompression == "01"
    assert by_label["j2k"].LossyImageCompression == "01"
    assert by_label["12-bit"].LossyImageCompression == "01"
    assert "LossyImageCompression" not in by_label["rle"]
    for ds in by_label.values():
        assert ds.file_meta.TransferSyntaxUID == ExplicitVRLittleEndian
        assert len(ds.PixelData) == ds.Rows * ds.Columns * ds.SamplesPerPixel * (
            ds.BitsAllocated // 8
        ) * int(ds.get("NumberOfFrames", 1))
    assert result.exit_status is ExitStatus.INCOMPLETE


@pytest.mark.peer
def test_a_receiver_killed_mid_run_then_resumed(tmp_path: Path) -> None:
    """Acceptance 3: storescp is killed while 300 files go to it. Every file is in
    the report, the exit is non-zero, no traceback; a second run with --resume
    sends only what is missing, and between them the two receivers hold it all."""
    need("storescp", "dcmtk")
    folder = tmp_path / "study"
    paths = write_series(folder, 300, seed="killed")
    report = tmp_path / "first.csv"
    first_dir = tmp_path / "first"
    first_dir.mkdir()
    log = tmp_path / "first.log"  # a file: a pipe not read until the end could fill
    for peer in run_storescp(first_dir, name="killed"):
        with log.open("w") as err:
            proc = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "fw_gear_dicom_send",
                    *send_args(folder, peer.port, "STORESCP"),
                    f"--report={report}",
                    "--retry-time=1",
                    "-v",
                ],
                stderr=err,
                text=True,
            )
            _kill_when(peer, at_least=30)
            proc.wait(timeout=60)
    stderr = log.read_text()
    assert proc.returncode in (ExitStatus.INCOMPLETE, ExitStatus.NOTHING_SENT)
    assert "Traceback" not in stderr, stderr[-6000:]
    rows = read_rows(report)
    assert len(rows) == len(paths)
    sent = [r for r in rows if r["status"] == "sent"]
    # When the 30th file appeared, each association may have had one instance
    # written by the receiver whose answer had not come back: not counted as sent.
    held = sum(1 for _ in peer.out_dir.iterdir())
    assert 30 - DEFAULT_ASSOCIATIONS <= len(sent) <= held < len(paths), stderr[-6000:]
    assert all(r["reason"] for r in rows if r["status"] != "sent")

    second = tmp_path / "second.csv"
    for peer in run_storescp(tmp_path, name="again"):
        result = run(
            *send_args(folder, peer.port, "STORESCP"),
            f"--report={second}",
            f"--resume={report}",
        )
        again = {dcmread(p).SOPInstanceUID for p in peer.out_dir.iterdir()}
    assert result.returncode == ExitStatus.SUCCESS, result.stderr
    assert len(again) == len(paths) - len(sent)
    rows = read_rows(second)
    assert {r["status"] for r in rows} == {"sent"}
    resumed = [r for r in rows if "earlier run" in r["reason"]]
    assert len(resumed) == len(sent)
    everything = {r["sop_instance_uid"] for r in sent} | {str(u) for u in again}
    assert len(everything) == len(paths)


def _kill_when(peer: ExternalPeer, at_least: int) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if sum(1 for _ in peer.out_dir.iterdir()) >= at_least:
            break
        time.sleep(0.005)
    peer.proc.send_signal(signal.SIGKILL)
    peer.proc.wait()
