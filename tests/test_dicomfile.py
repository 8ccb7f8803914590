"""Probing files: DICOM or not, UIDs, syntax, truncation."""

import random
from pathlib import Path

import pytest
from pydicom import dcmread
from pydicom.filewriter import dcmwrite
from pydicom.uid import (
    DeflatedExplicitVRLittleEndian,
    ExplicitVRBigEndian,
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
    RLELossless,
)

from fw_gear_dicom_send.dicom.probe import NotSendable, probe
from fw_gear_dicom_send.dicom.samples import bundled, make_ct
from fw_gear_dicom_send.errors import MalformedDicomError


@pytest.mark.parametrize(
    ("name", "syntax", "streamable"),
    [
        ("CT_small.dcm", ExplicitVRLittleEndian, True),
        ("MR_small_implicit.dcm", ImplicitVRLittleEndian, True),
        ("MR_small_bigendian.dcm", ExplicitVRBigEndian, True),
        ("MR_small_RLE.dcm", RLELossless, True),
        ("image_dfl.dcm", DeflatedExplicitVRLittleEndian, False),
        ("ExplVR_LitEndNoMeta.dcm", ExplicitVRLittleEndian, True),
        ("ExplVR_BigEndNoMeta.dcm", ExplicitVRBigEndian, True),
        ("JPEG2000.dcm", "1.2.840.10008.1.2.4.91", True),
        ("UN_sequence.dcm", None, None),
    ],
)
def test_probe_agrees_with_pydicom(
    name: str, syntax: str | None, streamable: bool | None
) -> None:
    path = bundled(name)
    ds = dcmread(path, force=True)
    if syntax is None:  # no SOP Class UID in this one
        with pytest.raises(NotSendable, match="no SOP Class UID"):
            probe(path, 0x0021)
        return
    info = probe(path, 0x0021)
    assert info.sop_class_uid == ds.SOPClassUID
    assert info.sop_instance_uid == ds.SOPInstanceUID
    assert info.transfer_syntax == syntax
    assert info.streamable is streamable


@pytest.mark.parametrize(
    ("content", "reason"),
    [
        (b"", "empty file"),
        (b"hello, this is a text file\n" * 20, "not DICOM"),
        (random.Random(1).randbytes(5000), "not DICOM"),
        (b"\0" * 128 + b"DICM", "file meta only, no dataset"),
    ],
)
def test_not_dicom_is_skipped(content: bytes, reason: str, tmp_path: Path) -> None:
    path = tmp_path / "x.dcm"
    path.write_bytes(content)
    with pytest.raises(NotSendable) as caught:
        probe(path, 0x0021)
    assert caught.value.reason == reason


def test_random_bytes_never_pass_for_dicom(tmp_path: Path) -> None:
    rng = random.Random(3)
    path = tmp_path / "r.dcm"
    for _ in range(300):
        path.write_bytes(rng.randbytes(rng.randrange(1, 3000)))
        with pytest.raises((NotSendable, MalformedDicomError)):
            probe(path, 0x0021)


def test_dicomdir_is_skipped() -> None:
    with pytest.raises(NotSendable, match="DICOMDIR"):
        probe(bundled("dicomdirtests/DICOMDIR"), 0x0021)


def test_missing_sop_instance_uid_is_skipped(tmp_path: Path) -> None:
    ds = make_ct(0)
    del ds.SOPInstanceUID
    dcmwrite(tmp_path / "x.dcm", ds, enforce_file_format=True)
    with pytest.raises(NotSendable, match="no SOP Instance UID"):
        probe(tmp_path / "x.dcm", 0x0021)


@pytest.mark.parametrize("cut", [1, 2, 100, 5000, 8000])
def test_a_truncated_file_is_malformed(cut: int, tmp_path: Path) -> None:
    whole = tmp_path / "whole.dcm"
    dcmwrite(whole, make_ct(0), enforce_file_format=True)
    data = whole.read_bytes()
    cut_file = tmp_path / "cut.dcm"
    cut_file.write_bytes(data[: len(data) - cut])
    dcmread(cut_file)  # pydicom reads it without complaint...
    with pytest.raises(MalformedDicomError, match="truncated"):  # ...we do not
        probe(cut_file, 0x0021)


def test_bundled_truncated_files_are_malformed() -> None:
    for name in ("MR_truncated.dcm", "rtplan_truncated.dcm"):
        with pytest.raises(MalformedDicomError, match="truncated"):
            probe(bundled(name), 0x0021)


def test_group_elements_and_group_end_are_recorded(tmp_path: Path) -> None:
    ds = make_ct(0)
    ds.add_new(0x00210010, "LO", "SIEMENS")
    ds.add_new(0x00211005, "LO", "x")
    dcmwrite(tmp_path / "x.dcm", ds, enforce_file_format=True)
    info = probe(tmp_path / "x.dcm", 0x0021)
    assert [e.tag for e in info.group_elements] == [0x00210010, 0x00211005]
    assert info.group_elements[0].value == b"SIEMENS"
    data = (tmp_path / "x.dcm").read_bytes()
    assert (
        data[info.group_end : info.group_end + 4] == b"\x28\x00\x02\x00"
    )  # (0028,0002)


@pytest.mark.parametrize("length", range(1, 9))
def test_a_tiny_file_is_not_dicom(length: int, tmp_path: Path) -> None:
    """Fewer bytes than an element header: not DICOM (skipped), not truncated."""
    path = tmp_path / "tiny.txt"
    path.write_bytes(b"\x08\x00note 0\n"[:length])
    with pytest.raises(NotSendable):
        probe(path, 0x0021)


def test_our_uids_are_pydicoms() -> None:
    from pydicom import uid
    from pynetdicom.sop_class import Verification  # type: ignore[attr-defined]

    from fw_gear_dicom_send.dicom import uids

    assert uid.ImplicitVRLittleEndian == uids.IMPLICIT_VR_LITTLE_ENDIAN
    assert uid.ExplicitVRLittleEndian == uids.EXPLICIT_VR_LITTLE_ENDIAN
    assert uid.DeflatedExplicitVRLittleEndian == uids.DEFLATED_EXPLICIT_VR_LITTLE_ENDIAN
    assert uid.ExplicitVRBigEndian == uids.EXPLICIT_VR_BIG_ENDIAN
    assert uid.MediaStorageDirectoryStorage == uids.MEDIA_STORAGE_DIRECTORY
    assert Verification == uids.VERIFICATION
