"""The mixed zip into DCMTK storescp and Orthanc, started by the tests.

These never skip in CI (CI=true): .ci/run installs dcmtk and orthanc.
"""

from pathlib import Path

import pytest
from checks import assert_tagged_copy
from conftest import ExternalPeer, MixedZip
from pydicom import dcmread

from fw_gear_dicom_send.engine import SendRequest, send
from fw_gear_dicom_send.scu import AssociationSettings, Client, Peer
from fw_gear_dicom_send.status import ExitStatus, InstanceStatus

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
