"""Properties: no byte sequence crashes the probe; every file gets exactly one row."""

import io
import tempfile
import zipfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydicom import dcmread
from pydicom.filewriter import dcmwrite

from fw_gear_dicom_send.dicom.probe import DicomInfo, NotSendable, probe
from fw_gear_dicom_send.dicom.provenance import (
    ProvenanceTag,
    TaggingError,
    splice,
    tag_dataset,
)
from fw_gear_dicom_send.dicom.samples import bundled, make_ct
from fw_gear_dicom_send.errors import MalformedDicomError
from fw_gear_dicom_send.sending.plan import prepare as _prepare
from fw_gear_dicom_send.transport.wire import Payload

SEEDS = [
    bundled(name).read_bytes()
    for name in ("CT_small.dcm", "MR_small_implicit.dcm", "MR_small_RLE.dcm",
                 "ExplVR_BigEndNoMeta.dcm", "rtstruct.dcm")
]  # fmt: skip
FAST = settings(
    max_examples=300,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)


@st.composite
def damaged(draw: st.DrawFn) -> bytes:
    """A real file, cut and with some bytes overwritten."""
    data = bytearray(draw(st.sampled_from(SEEDS)))
    cut = draw(st.integers(0, len(data)))
    data = data[:cut]
    for _ in range(draw(st.integers(0, 8))):
        if data:
            data[draw(st.integers(0, len(data) - 1))] = draw(st.integers(0, 255))
    return bytes(data)


def check(path: Path) -> None:
    try:
        info = probe(path, 0x0021)
    except (NotSendable, MalformedDicomError):
        return
    assert isinstance(info, DicomInfo)
    assert info.sop_instance_uid and info.sop_class_uid
    assert info.dataset_offset <= info.size


@FAST
@given(data=damaged())
def test_damaged_files_are_classified_never_crash(data: bytes, tmp_path: Path) -> None:
    path = tmp_path / "x.dcm"
    path.write_bytes(data)
    check(path)


@FAST
@given(data=st.binary(max_size=2048))
def test_arbitrary_bytes_are_classified(data: bytes, tmp_path: Path) -> None:
    path = tmp_path / "x.dcm"
    path.write_bytes(data)
    check(path)


@settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(members=st.lists(damaged(), min_size=0, max_size=6), with_ct=st.booleans())
def test_every_member_gets_exactly_one_row(
    members: list[bytes], with_ct: bool, tmp_path: Path
) -> None:
    from fw_gear_dicom_send import SendRequest
    from fw_gear_dicom_send.transport.peer import Peer

    archive = tmp_path / "in.zip"
    archive.unlink(missing_ok=True)
    names = [f"m{i}.dcm" for i in range(len(members))]
    with zipfile.ZipFile(archive, "w") as z:
        for name, data in zip(names, members, strict=True):
            z.writestr(name, data)
        if with_ct:
            ct = tmp_path / "ct.dcm"
            dcmwrite(ct, make_ct(0), enforce_file_format=True)
            z.write(ct, "ct.dcm")
            names.append("ct.dcm")
    work = Path(tempfile.mkdtemp(dir=tmp_path))  # fresh, as every run's is
    request = SendRequest((archive,), Peer("127.0.0.1", 104, "X"))
    rows, items = _prepare([archive], work, request)
    if not names:
        assert [row.reason for row in rows] == ["empty archive"]
        return
    assert [row.file for row in rows] == [f"{archive}!{name}" for name in names]
    assert all(rows[item.index].sop_instance_uid for item in items)


@st.composite
def private_blocks(draw: st.DrawFn) -> list[tuple[int, str, dict[int, str]]]:
    """Private blocks already in group 0x0021: slot, creator, {offset: value}."""
    slots = draw(st.lists(st.integers(0x10, 0xFF), unique=True, max_size=6))
    creators = st.sampled_from(["Flywheel", "OTHER", "SIEMENS", "Flywheel "])
    values = st.sampled_from(["DICOM Send", "x", "DICOM send", "y z"])
    return [
        (
            slot,
            draw(creators),
            draw(st.dictionaries(st.integers(0x00, 0xFF), values, max_size=4)),
        )
        for slot in slots
    ]


@FAST
@given(blocks=private_blocks())
def test_the_splice_and_pydicom_tagging_agree(
    blocks: list[tuple[int, str, dict[int, str]]],
) -> None:
    """Whatever private blocks a file already has, inserting the element into its
    bytes gives the same data set as tagging it decoded with pydicom (the same
    placement rule), or both refuse."""
    ds = make_ct(0)
    for slot, creator, elements in blocks:
        ds.add_new((0x0021, slot), "LO", creator)
        for offset, value in elements.items():
            ds.add_new((0x0021, slot << 8 | offset), "LO", value)
    tag = ProvenanceTag()
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "x.dcm"
        dcmwrite(path, ds, enforce_file_format=True)
        info = probe(path, 0x0021)
        expected = dcmread(path)
        try:
            inserts = splice(info, tag)
        except TaggingError:
            with pytest.raises(TaggingError):
                tag_dataset(expected, tag)
            return
        tag_dataset(expected, tag)
        with open(path, "rb") as f:
            head = f.read(info.dataset_offset)
            payload = Payload(f, info.dataset_offset, info.size, inserts)
            body = bytearray(payload.length)
            assert payload.readinto(memoryview(body)) == payload.length
    got = dcmread(io.BytesIO(head + body))
    assert [(e.tag, e.value) for e in got.group_dataset(0x0021)] == [
        (e.tag, e.value) for e in expected.group_dataset(0x0021)
    ]
    assert got.PixelData == ds.PixelData
