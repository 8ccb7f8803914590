"""Decompression: the syntaxes python-gdcm adds decode to the pixels DCMTK's
``dcmdjpeg`` gives, under the instance's own SOP Instance UID."""

import subprocess
import warnings
from pathlib import Path

import data_store
import numpy as np
import pytest
from conftest import need
from pydicom import dcmread
from pydicom.data import get_testdata_file
from pydicom.uid import ExplicitVRLittleEndian

from fw_gear_dicom_send.pixels import decompress, missing_decoder

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
