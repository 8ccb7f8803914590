"""Deterministic sample data: synthetic CT series and pydicom's bundled files.

The same seed always gives the same bytes and UIDs, so the demo, the tests and the
benchmark can regenerate their data instead of committing it.
"""

import shutil
import zipfile
from array import array
from collections.abc import Iterator
from functools import cache
from pathlib import Path

from pydicom import dcmread
from pydicom.data import get_testdata_file
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.filewriter import dcmwrite
from pydicom.uid import CTImageStorage, ExplicitVRLittleEndian, generate_uid

DEFAULT_SEED = "dicom-send"


def bundled(name: str) -> Path:
    """A test file that ships inside pydicom (no download)."""
    path = get_testdata_file(name, download=False)
    if path is None:
        raise FileNotFoundError(f"pydicom does not ship {name}")
    return Path(str(path))


def copy_as_new(source: Path, target: Path, seed: str = DEFAULT_SEED) -> Path:
    """Copy a DICOM file under a new SOP Instance UID derived from the seed.

    The dataset is rewritten in its own transfer syntax; compressed pixel data is
    copied as it is, not decoded.
    """
    ds = dcmread(source)
    uid = generate_uid(entropy_srcs=[seed, "copy", target.name])
    ds.SOPInstanceUID = uid
    ds.file_meta.MediaStorageSOPInstanceUID = uid
    target.parent.mkdir(parents=True, exist_ok=True)
    dcmwrite(target, ds, enforce_file_format=True)
    return target


@cache
def _pattern(length: int) -> array:  # type: ignore[type-arg]
    return array("H", ((i * 7 + (i >> 9) * 13) % 4096 for i in range(length)))


def make_ct(
    index: int,
    seed: str = DEFAULT_SEED,
    rows: int = 64,
    columns: int = 64,
) -> Dataset:
    """A synthetic 16-bit CT image, instance ``index`` of the seed's series."""
    pixels = rows * columns
    pattern = _pattern(pixels + 4096)
    start = (index * 31) % 4096
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.file_meta.MediaStorageSOPClassUID = CTImageStorage
    sop_instance = generate_uid(entropy_srcs=[seed, "instance", str(index)])
    ds.file_meta.MediaStorageSOPInstanceUID = sop_instance
    ds.SpecificCharacterSet = "ISO_IR 100"
    ds.ImageType = ["ORIGINAL", "PRIMARY", "AXIAL"]
    ds.SOPClassUID = CTImageStorage
    ds.SOPInstanceUID = sop_instance
    ds.StudyDate = "20260101"
    ds.Modality = "CT"
    ds.PatientName = "Sample^Synthetic"
    ds.PatientID = f"SYN-{seed}"
    ds.StudyInstanceUID = generate_uid(entropy_srcs=[seed, "study"])
    ds.SeriesInstanceUID = generate_uid(entropy_srcs=[seed, "series"])
    ds.FrameOfReferenceUID = generate_uid(entropy_srcs=[seed, "frame"])
    ds.StudyID = "1"
    ds.SeriesNumber = 1
    ds.InstanceNumber = index + 1
    ds.ImagePositionPatient = [0.0, 0.0, float(index)]
    ds.ImageOrientationPatient = [1.0, 0.0, 0.0, 0.0, 1.0, 0.0]
    ds.SliceThickness = 1.0
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.Rows = rows
    ds.Columns = columns
    ds.PixelSpacing = [0.5, 0.5]
    ds.BitsAllocated = 16
    ds.BitsStored = 12
    ds.HighBit = 11
    ds.PixelRepresentation = 0
    ds.RescaleIntercept = -1024
    ds.RescaleSlope = 1
    ds.PixelData = pattern[start : start + pixels].tobytes()
    return ds


def write_series(
    folder: Path,
    count: int,
    seed: str = DEFAULT_SEED,
    rows: int = 64,
    columns: int = 64,
) -> list[Path]:
    """Write ``count`` synthetic CT files into ``folder``; return their paths."""
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for index in range(count):
        path = folder / f"ct-{index:05d}.dcm"
        dcmwrite(path, make_ct(index, seed, rows, columns), enforce_file_format=True)
        paths.append(path)
    return paths


def zip_files(archive: Path, files: dict[str, Path]) -> Path:
    """Write a zip holding ``files`` (name in archive -> file)."""
    with zipfile.ZipFile(archive, "w", zipfile.ZIP_DEFLATED) as z:
        for name, path in files.items():
            z.write(path, name)
    return archive


def write_demo_inputs(folder: Path) -> Iterator[Path]:
    """Write the demo's inputs: a zipped CT series, bundled files, a text file."""
    folder.mkdir(parents=True, exist_ok=True)
    series = write_series(folder / "series", 20, rows=256, columns=256)
    archive = zip_files(folder / "ct-series.zip", {f"CT/{p.name}": p for p in series})
    shutil.rmtree(folder / "series")
    yield archive
    for name in ("MR_small.dcm", "MR_small_RLE.dcm", "CT_small.dcm"):
        yield copy_as_new(bundled(name), folder / name)
    notes = folder / "README.txt"
    notes.write_text("Not DICOM: the report lists this file as skipped.\n")
    yield notes
