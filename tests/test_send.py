"""Sending into a real pynetdicom Storage SCP on 127.0.0.1."""

import csv
import socket
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from checks import assert_tagged_copy, provenance
from conftest import MixedZip, sha256
from pydicom import dcmread
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.filewriter import dcmwrite
from pydicom.uid import (
    UID,
    CTImageStorage,
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
    RLELossless,
    generate_uid,
)
from pynetdicom import AllStoragePresentationContexts

from fw_gear_dicom_send import SendRequest, send
from fw_gear_dicom_send.cli.main import main
from fw_gear_dicom_send.dicom.probe import probe
from fw_gear_dicom_send.dicom.samples import make_ct
from fw_gear_dicom_send.pacs.receiver import StorageReceiver
from fw_gear_dicom_send.sending.report import COLUMNS
from fw_gear_dicom_send.status import ExitStatus, InstanceStatus
from fw_gear_dicom_send.transport.association import Client, release
from fw_gear_dicom_send.transport.contexts import Proposal
from fw_gear_dicom_send.transport.peer import AssociationSettings, Peer
from fw_gear_dicom_send.transport.retry import Retrier, RetryPolicy

SENT = InstanceStatus.SENT


def peer_of(scp: StorageReceiver, ae: str | None = None) -> Peer:
    return Peer("127.0.0.1", scp.port, ae or scp.ae_title)


def read_report(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as f:
        reader = csv.DictReader(f)
        assert tuple(reader.fieldnames or ()) == COLUMNS
        return list(reader)


def test_mixed_zip_into_an_scp_preferring_implicit_vr(
    mixed_zip: MixedZip, receiver: StorageReceiver, tmp_path: Path
) -> None:
    before = sha256(mixed_zip.path)
    report = tmp_path / "report.csv"
    status = main(
        [
            "send",
            str(mixed_zip.path),
            "--host=127.0.0.1",
            f"--port={receiver.port}",
            "--called-ae=STORE-SCP",
            f"--report={report}",
        ]
    )
    assert status == ExitStatus.INCOMPLETE  # the truncated CT failed

    rows = read_report(report)
    assert len(rows) == 27
    by_member = {row["file"].split("!", 1)[1]: row for row in rows}
    for name, expected in mixed_zip.junk.items():
        assert by_member[name]["status"] == expected, by_member[name]
        assert by_member[name]["reason"]
    assert "truncated" in by_member[mixed_zip.truncated]["reason"]
    assert [row["status"] for row in rows].count("sent") == 23
    for row in rows:
        if row["status"] == "sent":
            assert row["dimse_status"] == "0x0000"

    received = {r.sop_instance_uid: r for r in receiver.received}
    assert set(received) == set(mixed_zip.sources)
    for uid, source in mixed_zip.sources.items():
        assert_tagged_copy(received[uid].path, source)
    assert received_syntaxes(receiver) >= {RLELossless}
    assert sha256(mixed_zip.path) == before


def received_syntaxes(scp: StorageReceiver) -> set[str]:
    return {r.transfer_syntax for r in scp.received}


def test_an_implicit_only_receiver_gets_every_file_re_encoded(
    mixed_zip: MixedZip, make_receiver: Callable[..., StorageReceiver]
) -> None:
    """Uncompressed and deflated files are re-encoded; the RLE one decompressed."""
    scp = make_receiver(transfer_syntaxes=[ImplicitVRLittleEndian])
    result = send(SendRequest((mixed_zip.path,), peer_of(scp)))

    rows = {row.file.split("!", 1)[1]: row for row in result.rows}
    rle = rows["MR/mr-rle.dcm"]
    assert rle.status is SENT
    assert rle.reason == (
        "decompressed from RLE Lossless to Implicit VR Little Endian: the receiver "
        "accepts no RLE Lossless"
    )
    assert rows["CT/ct-00003.dcm"].status is SENT
    assert rows["CT/ct-00003.dcm"].transfer_syntax == ImplicitVRLittleEndian
    assert rows["MR/mr-deflated.dcm"].status is SENT
    assert received_syntaxes(scp) == {ImplicitVRLittleEndian}
    assert len(scp.received) == 23
    by_uid = {r.sop_instance_uid: r.path for r in scp.received}
    for uid, source in mixed_zip.sources.items():
        if source.name == "r.dcm":  # the RLE file: compare with it decompressed
            decoded = dcmread(source)
            decoded.decompress()
            got = dcmread(by_uid[uid])
            assert got.PixelData == decoded.PixelData
            assert provenance(got) == [b"DICOM Send"]
        else:
            assert_tagged_copy(by_uid[uid], source)
    assert result.summary.exit_status is ExitStatus.INCOMPLETE  # the truncated one


@pytest.mark.parametrize(
    ("answer", "status", "exit_status"),
    [
        (0xB000, InstanceStatus.WARNING, ExitStatus.SUCCESS),
        (0xB007, InstanceStatus.WARNING, ExitStatus.SUCCESS),
        (0xA700, InstanceStatus.FAILED, ExitStatus.NOTHING_SENT),
        (0xC000, InstanceStatus.FAILED, ExitStatus.NOTHING_SENT),
    ],
)
def test_dimse_statuses_are_reported_in_hex(
    answer: int,
    status: InstanceStatus,
    exit_status: ExitStatus,
    make_receiver: Callable[..., StorageReceiver],
    tmp_path: Path,
) -> None:
    path = tmp_path / "ct.dcm"
    dcmwrite(path, make_ct(0), enforce_file_format=True)
    scp = make_receiver(status=answer)
    result = send(SendRequest((path,), peer_of(scp), retry=RetryPolicy(budget=1)))
    (row,) = result.rows
    assert row.status is status
    assert row.dimse_status == answer
    assert f"0x{answer:04X}" in row.reason
    assert result.summary.exit_status is exit_status
    # Only "out of resources" is worth another try.
    assert ("retries given up" in row.reason) is (answer & 0xFF00 == 0xA700)


def test_a_tagged_file_is_not_tagged_twice(
    receiver: StorageReceiver,
    make_receiver: Callable[..., StorageReceiver],
    tmp_path: Path,
) -> None:
    path = tmp_path / "ct.dcm"
    dcmwrite(path, make_ct(1), enforce_file_format=True)
    send(SendRequest((path,), peer_of(receiver)))
    (first,) = receiver.received
    second_scp = make_receiver()
    send(SendRequest((first.path,), peer_of(second_scp)))
    (second,) = second_scp.received
    ds = dcmread(second.path)
    assert provenance(ds) == [b"DICOM Send"]
    assert len(ds.group_dataset(0x0021)) == 2


def test_a_taken_creator_slot_moves_the_block_and_keeps_element_order(
    receiver: StorageReceiver, tmp_path: Path
) -> None:
    ds = make_ct(2)
    ds.add_new(0x00210010, "LO", "SIEMENS MR SDS 01")
    ds.add_new(0x00211001, "LO", "vendor value")
    ds.add_new(0x00290010, "LO", "OTHER")
    path = tmp_path / "vendor.dcm"
    dcmwrite(path, ds, enforce_file_format=True)
    result = send(SendRequest((path,), peer_of(receiver)))
    assert result.rows[0].status is SENT
    (got,) = receiver.received
    probe(got.path, 0x0021)  # raises if the spliced elements are out of order
    stored = dcmread(got.path)
    assert stored[0x00210011].value == "Flywheel"
    assert stored[0x00211100].value == "DICOM Send"
    assert stored[0x00211001].value == "vendor value"
    assert_tagged_copy(got.path, path)


def test_a_custom_provenance_element(receiver: StorageReceiver, tmp_path: Path) -> None:
    path = tmp_path / "ct.dcm"
    dcmwrite(path, make_ct(3), enforce_file_format=True)
    status = main(
        [
            "send",
            str(path),
            "--host=127.0.0.1",
            f"--port={receiver.port}",
            "--called-ae=STORE-SCP",
            "--group=33",
            "--identifier=Site Export",
            "--tag-value=Sent by test",
        ]
    )
    assert status == ExitStatus.SUCCESS
    stored = dcmread(receiver.received[0].path)
    assert provenance(stored, 0x0033, b"Site Export") == [b"Sent by test"]


def _bare_instance(sop_class: str, index: int) -> Dataset:
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    uid = generate_uid(entropy_srcs=["classes", str(index)])
    ds.file_meta.MediaStorageSOPClassUID = UID(sop_class)
    ds.file_meta.MediaStorageSOPInstanceUID = uid
    ds.SOPClassUID = sop_class
    ds.SOPInstanceUID = uid
    ds.PatientID = "CLASSES"
    return ds


def test_more_contexts_than_one_association_holds(
    receiver: StorageReceiver, tmp_path: Path
) -> None:
    classes = [cx.abstract_syntax for cx in AllStoragePresentationContexts][:70]
    for index, sop_class in enumerate(classes):
        path = tmp_path / "many" / f"{index}.dcm"
        path.parent.mkdir(exist_ok=True)
        dcmwrite(path, _bare_instance(str(sop_class), index), enforce_file_format=True)
    result = send(SendRequest((tmp_path / "many",), peer_of(receiver), associations=1))
    # Each class needs 2 contexts (its syntax and the fallback): 140 > 128.
    assert receiver.associations == 2
    assert all(row.status is SENT for row in result.rows)
    assert len(receiver.received) == 70


def test_an_unsupported_sop_class_fails_only_its_files(
    receiver: StorageReceiver, tmp_path: Path
) -> None:
    folder = tmp_path / "in"
    folder.mkdir()
    dcmwrite(
        folder / "odd.dcm", _bare_instance("1.2.3.4.5.6", 0), enforce_file_format=True
    )
    dcmwrite(folder / "ct.dcm", make_ct(4), enforce_file_format=True)
    result = send(SendRequest((folder,), peer_of(receiver)))
    rows = {Path(row.file).name: row for row in result.rows}
    assert rows["ct.dcm"].status is SENT
    assert rows["odd.dcm"].status is InstanceStatus.FAILED
    assert "does not support 1.2.3.4.5.6" in rows["odd.dcm"].reason
    assert result.summary.exit_status is ExitStatus.INCOMPLETE


def test_a_folder_with_archives_inside(
    receiver: StorageReceiver, tmp_path: Path
) -> None:
    import tarfile

    folder = tmp_path / "in"
    (folder / "sub").mkdir(parents=True)
    dcmwrite(folder / "sub" / "a.dcm", make_ct(10), enforce_file_format=True)
    dcmwrite(tmp_path / "b.dcm", make_ct(11), enforce_file_format=True)
    with tarfile.open(folder / "series.tar.xz", "w:xz") as tar:
        tar.add(tmp_path / "b.dcm", "deep/b.dcm")
    result = send(SendRequest((folder,), peer_of(receiver)))
    names = sorted(row.file.removeprefix(str(folder)) for row in result.rows)
    assert names == ["/series.tar.xz!deep/b.dcm", "/sub/a.dcm"]
    assert all(row.status is SENT for row in result.rows)


def test_the_same_instance_twice_is_sent_once(
    receiver: StorageReceiver, tmp_path: Path
) -> None:
    path = tmp_path / "ct.dcm"
    dcmwrite(path, make_ct(5), enforce_file_format=True)
    copy = tmp_path / "copy.dcm"
    copy.write_bytes(path.read_bytes())
    result = send(SendRequest((path, path, copy), peer_of(receiver)))
    assert [row.status for row in result.rows] == [
        SENT,
        InstanceStatus.SKIPPED,
        InstanceStatus.SKIPPED,
    ]
    assert result.rows[2].reason == f"duplicate SOP Instance UID of {path}"
    assert len(receiver.received) == 1
    assert result.summary.exit_status is ExitStatus.SUCCESS


def test_associations_are_released_and_sockets_have_no_delay(
    receiver: StorageReceiver, tmp_path: Path
) -> None:
    path = tmp_path / "ct.dcm"
    dcmwrite(path, make_ct(6), enforce_file_format=True)
    send(SendRequest((path,), peer_of(receiver)))
    assert (receiver.associations, receiver.released, receiver.aborted) == (1, 1, 0)

    client = Client(peer_of(receiver), AssociationSettings())
    assoc = client.associate([Proposal(CTImageStorage, (ExplicitVRLittleEndian,))])
    try:
        sock = assoc.dul.socket
        assert sock is not None and sock.socket is not None
        assert sock.socket.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY) != 0
    finally:
        release(assoc)


class AbortingReceiver(StorageReceiver):
    """Aborts the association on its first C-STORE(s), then stores normally."""

    def __init__(self, out_dir: Path, aborts: int, **kwargs: Any) -> None:
        super().__init__(out_dir, **kwargs)
        self.aborts = aborts

    def _on_store(self, event: Any) -> int | Dataset:
        if self.aborts:
            self.aborts -= 1
            event.assoc.abort()
            return 0xC000
        return super()._on_store(event)


@pytest.mark.parametrize("budget", [0, 30])
def test_a_lost_association_is_replaced_and_its_instance_sent_again(
    tmp_path: Path, budget: float
) -> None:
    """The receiver drops the association on the first C-STORE, after the data set
    went out. Without retries that instance fails and the rest go on a new
    association; with retries it is sent again, and the report says it may be
    there twice."""
    folder = tmp_path / "in"
    folder.mkdir()
    for index in range(3):
        dcmwrite(folder / f"{index}.dcm", make_ct(20 + index), enforce_file_format=True)
    with AbortingReceiver(tmp_path / "received", aborts=1) as scp:
        settings = AssociationSettings(dimse_timeout=60)
        result = send(
            SendRequest(
                (folder,),
                peer_of(scp),
                association=settings,
                retry=RetryPolicy(budget=budget),
            )
        )
    first, *rest = result.rows
    if budget:
        assert first.status is SENT
        assert "sent again (2 attempts)" in first.reason
        assert "may have received it twice" in first.reason
        assert len(scp.received) == 3
    else:
        assert first.status is InstanceStatus.FAILED
        assert "association lost" in first.reason
    assert [row.status for row in rest] == [SENT, SENT]
    assert scp.associations == 2
    assert result.seconds < 20  # the dead association was not waited on


def test_a_file_gone_since_it_was_probed_fails_alone(
    receiver: StorageReceiver, tmp_path: Path
) -> None:
    from fw_gear_dicom_send.dicom.provenance import ProvenanceTag, splice
    from fw_gear_dicom_send.transport.contexts import plan_batches
    from fw_gear_dicom_send.transport.cstore import store_all
    from fw_gear_dicom_send.transport.outcome import SendItem

    items = []
    for index in range(2):
        path = tmp_path / f"{index}.dcm"
        dcmwrite(path, make_ct(30 + index), enforce_file_format=True)
        info = probe(path, 0x0021)
        items.append(SendItem(index, str(path), info, splice(info, ProvenanceTag())))
    Path(items[0].path).unlink()
    client = Client(peer_of(receiver), AssociationSettings())
    retrier = Retrier(RetryPolicy())
    outcomes = dict(store_all(client, plan_batches(items), ProvenanceTag(), retrier))
    gone, kept = (outcomes[item] for item in items)
    assert gone.status is InstanceStatus.FAILED
    assert "cannot read" in gone.reason
    assert not gone.association_lost
    assert kept.status is SENT
    assert receiver.associations == 1
