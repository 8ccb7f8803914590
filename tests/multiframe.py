"""A large multi-frame instance, for the memory tests and the benchmark."""

from pathlib import Path

from pydicom.filewriter import dcmwrite
from pydicom.uid import generate_uid

from fw_gear_dicom_send.dicom.samples import DEFAULT_SEED, make_ct

ENHANCED_CT_IMAGE_STORAGE = "1.2.840.10008.5.1.4.1.1.2.1"


def write_multiframe(path: Path, megabytes: int, seed: str = DEFAULT_SEED) -> Path:
    """Write one multi-frame CT instance of about ``megabytes`` MB (512 x 512, 16 bit).

    The pixel data is held once while the file is written.
    """
    frames = max(1, megabytes * 1024 * 1024 // (512 * 512 * 2))
    ds = make_ct(0, seed, 512, 512)
    ds.SOPClassUID = ENHANCED_CT_IMAGE_STORAGE
    ds.SOPInstanceUID = generate_uid(entropy_srcs=[seed, "multiframe"])
    ds.file_meta.MediaStorageSOPClassUID = ds.SOPClassUID
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    ds.NumberOfFrames = frames
    ds.PixelData = ds.PixelData * frames
    dcmwrite(path, ds, enforce_file_format=True)
    return path
