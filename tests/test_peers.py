"""The mixed zip into DCMTK storescp and Orthanc, started by the tests.

These never skip in CI (CI=true): .ci/run installs dcmtk and orthanc.
"""

from pathlib import Path

import pytest
from checks import assert_tagged_copy
from conftest import ExternalPeer, MixedZip, run_storescp
from pydicom import dcmread
from pydicom.filewriter import dcmwrite

from fw_gear_dicom_send import SendRequest, send
from fw_gear_dicom_send.dicom.samples import make_ct, write_series
from fw_gear_dicom_send.pacs.receiver import StorageReceiver
from fw_gear_dicom_send.status import ExitStatus, InstanceStatus
from fw_gear_dicom_send.transport.association import Client
from fw_gear_dicom_send.transport.peer import AssociationSettings, Peer

pytestmark = pytest.mark.peer


def check_all_arrived(
    result_rows: int, received: dict[str, Path], mixed: MixedZip
) -> None:
    assert result_rows == 27
    assert set(received) == set(mixed.sources)
    for uid, source in mixed.sources.items():
        assert_tagged_copy(received[uid], source)


def test_mixed_zip_into_storescp(mixed_zip: MixedZip, storescp: ExternalPeer) -> None:
    peer = Peer("127.0.0.1", storescp.port, storescp.ae_title)
    assert Client(peer, AssociationSettings()).echo() == 0x0000
    result = send(SendRequest((mixed_zip.path,), peer))
    stored = [row for row in result.rows if row.status is InstanceStatus.SENT]
    assert len(stored) == 23, [
        r for r in result.rows if r.status is not InstanceStatus.SENT
    ]
    received = {str(dcmread(p).SOPInstanceUID): p for p in storescp.out_dir.iterdir()}
    check_all_arrived(len(result.rows), received, mixed_zip)
    assert result.summary.exit_status is ExitStatus.INCOMPLETE  # the truncated file


def test_mixed_zip_into_orthanc(
    mixed_zip: MixedZip, orthanc: ExternalPeer, tmp_path: Path
) -> None:
    peer = Peer("127.0.0.1", orthanc.port, orthanc.ae_title)
    result = send(SendRequest((mixed_zip.path,), peer))
    stored = [row for row in result.rows if row.status is InstanceStatus.SENT]
    assert len(stored) == 23, [
        r for r in result.rows if r.status is not InstanceStatus.SENT
    ]
    ids = orthanc.rest_json("/instances")
    assert isinstance(ids, list)
    received = {}
    for index, orthanc_id in enumerate(ids):
        path = tmp_path / f"{index}.dcm"
        path.write_bytes(orthanc.rest(f"/instances/{orthanc_id}/file"))
        received[str(dcmread(path).SOPInstanceUID)] = path
    check_all_arrived(len(result.rows), received, mixed_zip)


@pytest.fixture(scope="module")
def varied(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Instances of 8 KB to 8 MB: fragments from one to thousands per instance, and
    writes of the lean data path that end mid-instance."""
    folder = tmp_path_factory.mktemp("varied")
    for index, side in enumerate((64, 256, 512, 2048)):
        dcmwrite(
            folder / f"{side}.dcm",
            make_ct(index, seed="varied", rows=side, columns=side),
            enforce_file_format=True,
        )
    write_series(folder / "series", 40, seed="varied-series", rows=256, columns=256)
    return folder


@pytest.mark.parametrize("max_pdu", [4096, 16384, 131072])
def test_the_receivers_pdu_size_from_minimum_to_maximum(
    varied: Path, tmp_path: Path, max_pdu: int
) -> None:
    """DCMTK's --max-pdu bounds (4096..131072): every instance arrives bit-exact
    (plus the element) whatever the fragment size, on parallel associations too."""
    for peer in run_storescp(tmp_path, "--max-pdu", str(max_pdu)):
        result = send(
            SendRequest(
                (varied,),
                Peer("127.0.0.1", peer.port, peer.ae_title),
                associations=2,
            )
        )
        assert result.exit_status is ExitStatus.SUCCESS, result.error
        received = {str(dcmread(p).SOPInstanceUID): p for p in peer.out_dir.iterdir()}
    sources = {str(dcmread(p).SOPInstanceUID): p for p in varied.rglob("*.dcm")}
    assert set(received) == set(sources)
    for uid, source in sources.items():
        assert_tagged_copy(received[uid], source)


def test_a_receiver_s_pdu_size_below_dcmtk_s_minimum(
    varied: Path, receiver: StorageReceiver
) -> None:
    """1024 bytes: a megabyte of data set is over a thousand PDUs, more than one
    ``sendmsg`` takes; every instance still arrives bit-exact."""
    receiver._ae.maximum_pdu_size = 1024  # what it offers when associating
    sources = [varied / "512.dcm", varied / "2048.dcm"]
    result = send(
        SendRequest(tuple(sources), Peer("127.0.0.1", receiver.port, receiver.ae_title))
    )
    assert result.exit_status is ExitStatus.SUCCESS, result.error
    assert len(receiver.received) == 2
    for got in receiver.received:
        source = next(
            p for p in sources if dcmread(p).SOPInstanceUID == got.sop_instance_uid
        )
        assert_tagged_copy(got.path, source)


def test_parallel_associations_into_orthanc(
    varied: Path, orthanc: ExternalPeer
) -> None:
    result = send(
        SendRequest(
            (varied,),
            Peer("127.0.0.1", orthanc.port, orthanc.ae_title),
            associations=2,
        )
    )
    assert result.exit_status is ExitStatus.SUCCESS, result.error
    ids = orthanc.rest_json("/instances")
    assert isinstance(ids, list)
    assert len(ids) == 44
