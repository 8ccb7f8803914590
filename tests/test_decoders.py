"""Decompression: the syntaxes python-gdcm adds decode to the pixels DCMTK's
``dcmdjpeg`` gives, under the instance's own SOP Instance UID; a DCMTK receiver of
uncompressed syntaxes stores every decompressed instance under its file's UID."""

import subprocess
import warnings
from pathlib import Path

import data_store
import numpy as np
import pytest
from conftest import free_port, need, start, wait_for_port
from pydicom import dcmread
from pydicom.data import get_testdata_file
from pydicom.uid import ExplicitVRLittleEndian

from fw_gear_dicom_send import SendRequest, send
from fw_gear_dicom_send.dicom.pixels import decompress, missing_decoder
from fw_gear_dicom_send.status import InstanceStatus
from fw_gear_dicom_send.transport.peer import Peer
from fw_gear_dicom_send.transport.retry import RetryPolicy

PYDICOM_DATA = Path(str(data_store.__file__)).parent / "data"


def _path(name: str) -> Path:
    found = get_testdata_file(name)
    return Path(found) if found is not None else PYDICOM_DATA / name


@pytest.mark.peer
@pytest.mark.parametrize(
    ("name", "lossy"),
    [
        ("JPGExtended.dcm", True),  # 12-bit JPEG Extended (Process 4)
        ("JPEG-lossy.dcm", True),  # 12-bit JPEG Extended, odd SOS parameters
        ("SC_rgb_jpeg_gdcm.dcm", False),  # JPEG Lossless SV1, RGB
        ("JPEG-LL.dcm", False),  # JPEG Lossless SV1, 16-bit (pydicom-data)
        ("JPGLosslessP14SV1_1s_1f_8b.dcm", False),  # 8-bit (pydicom-data)
    ],
)
def test_gdcm_decodes_as_dcmtk_does(name: str, lossy: bool, tmp_path: Path) -> None:
    dcmdjpeg = need("dcmdjpeg", "dcmtk")
    source = _path(name)
    reference = tmp_path / "reference.dcm"
    subprocess.run(
        [dcmdjpeg, str(source), str(reference)], check=True, capture_output=True
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ds = dcmread(source)
        expected = dcmread(reference).pixel_array
    uid = ds.SOPInstanceUID
    assert missing_decoder(ds.file_meta.TransferSyntaxUID) is None
    decompress(ds)
    assert ds.SOPInstanceUID == uid
    assert ds.file_meta.TransferSyntaxUID == ExplicitVRLittleEndian
    assert np.array_equal(ds.pixel_array, expected)
    if lossy:
        assert ds.LossyImageCompression == "01"


@pytest.mark.peer
def test_storescp_of_uncompressed_syntaxes_stores_the_files_uids(
    tmp_path: Path,
) -> None:
    names = [
        "MR_small_RLE.dcm",
        "JPEG2000.dcm",
        "SC_rgb_jpeg_dcmtk.dcm",
        "JPGExtended.dcm",
        "SC_rgb_jpeg_gdcm.dcm",
        "JPEG-LL.dcm",
        "emri_small_jpeg_ls_lossless.dcm",
    ]
    folder = tmp_path / "in"
    folder.mkdir()
    uids = {}
    for name in names:
        (folder / name).write_bytes(_path(name).read_bytes())
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            uids[name] = str(
                dcmread(_path(name), stop_before_pixels=True).SOPInstanceUID
            )
    binary = need("storescp", "dcmtk")
    out = tmp_path / "out"
    out.mkdir()
    port = free_port()
    # Without +xa, storescp accepts only uncompressed syntaxes.
    proc = start(
        [binary, "-aet", "STORESCP", "-od", str(out), str(port)],
        tmp_path / "storescp.log",
    )
    try:
        wait_for_port(port, proc)
        result = send(
            SendRequest(
                (folder,),
                Peer("127.0.0.1", port, "STORESCP"),
                retry=RetryPolicy(budget=0),
            )
        )
    finally:
        proc.terminate()
        proc.wait(timeout=10)
    rows = {Path(row.file).name: row for row in result.rows}
    for name in names:
        assert rows[name].status is InstanceStatus.SENT, rows[name].reason
        assert rows[name].reason.startswith("decompressed from "), rows[name].reason
        assert rows[name].sop_instance_uid == uids[name]
    stored = {}
    for path in out.iterdir():
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            ds = dcmread(path)
        assert not ds.file_meta.TransferSyntaxUID.is_compressed
        stored[str(ds.SOPInstanceUID)] = str(ds.file_meta.MediaStorageSOPInstanceUID)
    assert stored == {uid: uid for uid in uids.values()}
