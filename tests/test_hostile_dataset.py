"""Hostile data sets: orphan private elements, conflicting duplicates, a deflate
bomb, sequences nested ten thousand deep. Each arrives intact or is a row with a
reason; nothing is doubled, overwritten, or sent to crash the receiver."""

import copy
import os
import struct
import subprocess
import sys
import zlib
from collections.abc import Callable
from pathlib import Path

import pytest
from checks import provenance
from conftest import ExternalPeer
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydicom import dcmread
from pydicom.dataset import Dataset
from pydicom.filebase import DicomBytesIO
from pydicom.filewriter import dcmwrite, write_file_meta_info
from pydicom.uid import (
    DeflatedExplicitVRLittleEndian,
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
)
from test_cli import send_args
from test_properties import private_blocks
from test_send import peer_of, read_report

from fw_gear_dicom_send import SendRequest, send
from fw_gear_dicom_send.dicom.probe import MAX_INFLATED_BYTES, probe
from fw_gear_dicom_send.dicom.provenance import (
    ProvenanceTag,
    TaggingError,
    splice,
    tag_dataset,
)
from fw_gear_dicom_send.dicom.samples import make_ct
from fw_gear_dicom_send.errors import MalformedDicomError
from fw_gear_dicom_send.pacs.receiver import StorageReceiver
from fw_gear_dicom_send.status import ExitStatus, InstanceStatus
from fw_gear_dicom_send.transport.peer import Peer
from fw_gear_dicom_send.transport.wire import Payload

ORPHAN = 0x00211000


@pytest.mark.parametrize(
    ("accepted", "path"),
    [(ExplicitVRLittleEndian, "stream"), (ImplicitVRLittleEndian, "decode")],
)
def test_an_orphan_private_element_arrives_untouched(
    accepted: str,
    path: str,
    make_receiver: Callable[..., StorageReceiver],
    tmp_path: Path,
) -> None:
    """(0021,1000) without its creator (0021,0010) owns block 10 all the same: the
    provenance block goes to the next free one, by the splice as by the decoder."""
    ds = make_ct(1)
    ds.add_new(ORPHAN, "LO", "ORPHANDATA")
    source = tmp_path / "orphan.dcm"
    dcmwrite(source, ds, enforce_file_format=True)  # Explicit VR Little Endian
    receiver = make_receiver(transfer_syntaxes=[accepted])
    (row,) = send(SendRequest((source,), peer_of(receiver))).rows
    assert row.status is InstanceStatus.SENT, row.reason
    assert row.transfer_syntax == accepted  # streamed as it is, or re-encoded
    (got,) = receiver.received
    # Read back from the bytes as received: a doubled or out-of-order element is
    # malformed to the probe; pydicom would silently keep one of two.
    elements = probe(got.path, 0x0021).group_elements
    assert [(e.tag, e.value) for e in elements] == [
        (0x00210011, b"Flywheel"),
        (ORPHAN, b"ORPHANDATA"),
        (0x00211100, b"DICOM Send"),
    ], path
    received = dcmread(got.path)
    assert provenance(received) == [b"DICOM Send"]
    assert received.PixelData == ds.PixelData


def _patient(index: int, name: str, uid_of: int) -> Dataset:
    ds = make_ct(index)
    ds.PatientName = name
    uid = make_ct(uid_of).SOPInstanceUID
    ds.SOPInstanceUID = uid
    ds.file_meta.MediaStorageSOPInstanceUID = uid
    return ds


@pytest.mark.parametrize("other", ["BOB", "CAROL"])  # another size, the same size
def test_a_conflicting_duplicate_fails(
    other: str,
    receiver: StorageReceiver,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """The same SOP Instance UID with another data set is a failure the user sees;
    an identical copy is skipped."""
    alice, copy, conflict = (tmp_path / n for n in ("alice.dcm", "copy.dcm", "x.dcm"))
    dcmwrite(alice, _patient(1, "ALICE", 1), enforce_file_format=True)
    copy.write_bytes(alice.read_bytes())
    dcmwrite(conflict, _patient(1, other, 1), enforce_file_format=True)
    assert (alice.stat().st_size == conflict.stat().st_size) is (other == "CAROL")
    result = send(SendRequest((alice, conflict, copy), peer_of(receiver)))
    first, second, third = result.rows
    assert first.status is InstanceStatus.SENT
    assert second.status is InstanceStatus.FAILED
    assert second.reason.startswith(
        f"duplicate SOP Instance UID of {alice} with a different data set"
    )
    assert third.status is InstanceStatus.SKIPPED
    assert third.reason == f"duplicate SOP Instance UID of {alice}"
    assert result.exit_status is ExitStatus.INCOMPLETE
    (got,) = receiver.received
    assert dcmread(got.path).PatientName == "ALICE"
    warned = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert warned == [f"{conflict}: {second.reason}"]


def _deflate(data: bytes) -> bytes:
    """Raw deflate blocks of ``data``, not final: such pieces can be concatenated."""
    deflater = zlib.compressobj(6, zlib.DEFLATED, -zlib.MAX_WBITS)
    return deflater.compress(data) + deflater.flush(zlib.Z_SYNC_FLUSH)


def _deflated(path: Path, tail: bytes = b"", zeros: int = 0, index: int = 2) -> Path:
    """A Deflated Explicit VR CT file without Pixel Data, ``tail`` (elements)
    appended to its data set, then ``zeros`` bytes of zeros (which deflate a
    thousandfold)."""
    ds = make_ct(index)
    del ds.PixelData
    plain = path.with_suffix(".plain")
    dcmwrite(plain, ds, enforce_file_format=True)  # Explicit VR Little Endian
    dataset = plain.read_bytes()[probe(plain, 0x0021).dataset_offset :]
    plain.unlink()
    meta = copy.deepcopy(ds.file_meta)
    meta.TransferSyntaxUID = DeflatedExplicitVRLittleEndian
    buffer = DicomBytesIO()
    write_file_meta_info(buffer, meta)
    block = _deflate(bytes(16 << 20))
    with open(path, "wb") as out:
        out.write(bytes(128) + b"DICM" + buffer.getvalue())
        out.write(_deflate(dataset + tail))
        for _ in range(zeros // (16 << 20)):
            out.write(block)
        if zeros % (16 << 20):
            out.write(_deflate(bytes(zeros % (16 << 20))))
        out.write(b"\x03\x00")  # an empty final block
    return path


def _deflated_bomb(path: Path, inflated: int, index: int = 2) -> None:
    """Pixel Data of ``inflated`` bytes of zeros: a thousandth of that on disk."""
    pixels = struct.pack("<HH2sHI", 0x7FE0, 0x0010, b"OW", 0, inflated)
    _deflated(path, pixels, inflated, index)


# Runs a command and prints its peak RSS (kB) and exit code. Linux carries
# ru_maxrss across execve: a process started by the test process starts from the
# test process's own peak, so the CLI is started by this small process instead.
_MEASURE = """
import os, subprocess, sys
proc = subprocess.Popen(sys.argv[1:], stdout=subprocess.DEVNULL)
_, status, usage = os.wait4(proc.pid, 0)
print(usage.ru_maxrss, os.waitstatus_to_exitcode(status))
"""


def _run_measured(args: list[str]) -> tuple[int, str, int]:
    """Run the CLI; its exit code, stderr, and peak RSS in bytes (its workers'
    included: wait4 reports the largest of the process and its waited children)."""
    result = subprocess.run(
        [
            sys.executable,
            "-c",
            _MEASURE,
            sys.executable,
            "-m",
            "fw_gear_dicom_send",
            *args,
        ],
        capture_output=True,
        text=True,
        errors="replace",
        env={**os.environ, "PYTHONWARNINGS": "ignore"},
        timeout=120,
        check=True,
    )
    peak, code = result.stdout.split()
    return int(code), result.stderr, int(peak) * 1024


def test_a_deflate_bomb_is_refused_in_bounded_memory(
    receiver: StorageReceiver, tmp_path: Path
) -> None:
    """1 MB on disk, 1 GiB inflated: a failed row with the reason, and the run
    stays under 300 MB of memory; the files beside it are sent, a deflated one
    (16 MiB inflated) too."""
    folder = tmp_path / "in"
    folder.mkdir()
    bomb = folder / "bomb.dcm"
    _deflated_bomb(bomb, 1 << 30)
    assert bomb.stat().st_size < 2 << 20
    dcmwrite(folder / "good.dcm", make_ct(3), enforce_file_format=True)
    _deflated_bomb(folder / "deflated.dcm", 16 << 20, 4)  # streamed through, sent
    report = tmp_path / "report.csv"
    code, stderr, peak = _run_measured(
        [*send_args(folder, receiver.port, receiver.ae_title), f"--report={report}"]
    )
    assert "Traceback" not in stderr, stderr
    assert code == ExitStatus.INCOMPLETE, stderr
    assert peak < 300e6, f"peak RSS {peak / 1e6:.0f} MB"
    rows = {Path(row["file"]).name: row for row in read_report(report)}
    assert rows["bomb.dcm"]["status"] == "failed"
    assert "deflated dataset inflates to more than 32 MiB" in rows["bomb.dcm"]["reason"]
    assert rows["good.dcm"]["status"] == "sent"
    assert rows["deflated.dcm"]["status"] == "sent", rows["deflated.dcm"]["reason"]
    assert len(receiver.received) == 2
    pixels = [len(dcmread(got.path).get("PixelData", b"")) for got in receiver.received]
    assert sorted(pixels) == [len(make_ct(3).PixelData), 16 << 20]


def test_a_deflated_data_set_just_under_the_cap_is_sent_in_bounded_memory(
    receiver: StorageReceiver, tmp_path: Path
) -> None:
    """A deflated data set is decoded in memory to be sent: one just under the cap
    is sent and the run stays under 300 MB; one of 250 MiB fails with a reason
    naming the cap."""
    folder = tmp_path / "in"
    folder.mkdir()
    _deflated_bomb(folder / "large.dcm", 250 << 20)
    near = MAX_INFLATED_BYTES - (64 << 10)
    _deflated_bomb(folder / "near.dcm", near, 4)
    report = tmp_path / "report.csv"
    code, stderr, peak = _run_measured(
        [*send_args(folder, receiver.port, receiver.ae_title), f"--report={report}"]
    )
    assert "Traceback" not in stderr, stderr
    assert peak < 300e6, f"peak RSS {peak / 1e6:.0f} MB"
    assert code == ExitStatus.INCOMPLETE, stderr
    rows = {Path(row["file"]).name: row for row in read_report(report)}
    assert rows["large.dcm"]["status"] == "failed"
    assert rows["large.dcm"]["reason"].startswith(
        f"deflated dataset inflates to more than {MAX_INFLATED_BYTES >> 20} MiB"
    )
    assert rows["near.dcm"]["status"] == "sent", rows["near.dcm"]["reason"]
    (got,) = receiver.received
    assert len(dcmread(got.path).PixelData) == near


def _nested(levels: int, implicit: bool) -> bytes:
    """Content Sequence (0040,A730) holding one item holding the sequence again,
    ``levels`` deep, every length defined."""
    value = b""
    for _ in range(levels):
        item = struct.pack("<HHI", 0xFFFE, 0xE000, len(value)) + value
        if implicit:
            value = struct.pack("<HHI", 0x0040, 0xA730, len(item)) + item
        else:
            value = struct.pack("<HH2sHI", 0x0040, 0xA730, b"SQ", 0, len(item)) + item
    return value


def _with_tail(path: Path, tail: bytes, implicit: bool, index: int = 6) -> Path:
    """A CT file without Pixel Data, ``tail`` (elements) appended to its data set."""
    ds = make_ct(index)
    del ds.PixelData  # the tail goes last, after group 0028
    if implicit:
        ds.file_meta.TransferSyntaxUID = ImplicitVRLittleEndian
    dcmwrite(path, ds, enforce_file_format=True)
    with open(path, "ab") as f:
        f.write(tail)
    return path


def _with_nested(path: Path, index: int, levels: int, implicit: bool) -> Path:
    return _with_tail(path, _nested(levels, implicit), implicit, index)


@pytest.mark.parametrize("implicit", [False, True], ids=["explicit", "implicit"])
def test_sequences_nested_ten_thousand_deep_are_not_sent(
    implicit: bool, storescp: ExternalPeer, tmp_path: Path
) -> None:
    """Defined-length nesting is bounded as undefined-length nesting is (64); DCMTK
    storescp is never handed the 10,000 levels that crash it, and takes the rest."""
    bomb = _with_nested(tmp_path / "deep.dcm", 4, 10_000, implicit)
    assert bomb.stat().st_size > 150_000
    fine = _with_nested(tmp_path / "fine.dcm", 5, 30, implicit)
    peer = Peer("127.0.0.1", storescp.port, storescp.ae_title)
    deep_row, fine_row = send(SendRequest((bomb, fine), peer)).rows
    assert deep_row.status is InstanceStatus.FAILED
    assert deep_row.reason == "malformed: sequences nested deeper than 64"
    assert fine_row.status is InstanceStatus.SENT, fine_row.reason
    assert storescp.proc.poll() is None  # still running
    (got,) = storescp.out_dir.iterdir()
    assert dcmread(got).SOPInstanceUID == make_ct(5).SOPInstanceUID


_OPAQUE = b"\xfe\xff\x00\xe0" * 300  # starts like a sequence, and is not one


def _explicit(tag: int, vr: bytes, value: bytes, length: int | None = None) -> bytes:
    header = struct.pack("<HH2sHI", tag >> 16, tag & 0xFFFF, vr, 0, len(value))
    if length is not None:
        header = header[:8] + struct.pack("<I", length)
    return header + value


def _shaped(shape: str, path: Path, levels: int) -> Path:
    """A file holding ``levels`` of nesting in the given shape, then an opaque
    value that looks like a sequence and is not one."""
    implicit = _nested(levels, implicit=True)
    explicit = _nested(levels, implicit=False)
    opaque = 0x00411000  # after (0040,A730)
    if shape == "implicit":
        return _with_tail(
            path, implicit + struct.pack("<HHI", 0x41, 0x1000, 1200) + _OPAQUE, True
        )
    if shape == "deflated":
        return _deflated(path, explicit + _explicit(opaque, b"UN", _OPAQUE))
    if shape == "explicit":
        tail = explicit
    elif shape == "un":  # its value is Implicit VR (PS3.5 6.2.2)
        tail = _explicit(0x0040A730, b"UN", implicit[8:])
    else:  # an undefined-length sequence of defined-length items
        delimiter = struct.pack("<HHI", 0xFFFE, 0xE0DD, 0)
        tail = _explicit(0x0040A730, b"SQ", explicit[12:] + delimiter, 0xFFFFFFFF)
    return _with_tail(path, tail + _explicit(opaque, b"UN", _OPAQUE), False)


@pytest.mark.parametrize(
    "shape", ["explicit", "implicit", "un", "undefined-sequence", "deflated"]
)
def test_deep_nesting_is_malformed_whatever_its_encoding(
    shape: str, tmp_path: Path
) -> None:
    """Every way of nesting is bounded alike; a value that only starts like a
    sequence is an opaque value, as before."""
    with pytest.raises(MalformedDicomError, match="nested deeper than 64"):
        probe(_shaped(shape, tmp_path / "deep.dcm", 66), 0x0021)
    fine = probe(_shaped(shape, tmp_path / "fine.dcm", 64), 0x0021)
    assert fine.sop_class_uid == make_ct(0).SOPClassUID


@settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(
    blocks=private_blocks(),
    orphans=st.dictionaries(st.integers(0x1000, 0xFFFF), st.just("ORPHAN"), max_size=6),
)
def test_the_element_never_replaces_or_doubles_one(
    blocks: list[tuple[int, str, dict[int, str]]],
    orphans: dict[int, str],
    tmp_path: Path,
) -> None:
    """Private blocks and orphans (elements whose block has no creator): spliced
    into the bytes or added to the decoded data set, the provenance element is added
    once, next to everything that was there, which keeps its value."""
    ds = make_ct(0)
    for slot, creator, elements in blocks:
        ds.add_new((0x0021, slot), "LO", creator)
        for offset, value in elements.items():
            ds.add_new((0x0021, slot << 8 | offset), "LO", value)
    owned = {slot for slot, _, _ in blocks}
    for element, value in orphans.items():
        if element >> 8 not in owned:
            ds.add_new((0x0021, element), "LO", value)
    before = {int(e.tag): str(e.value).rstrip() for e in ds.group_dataset(0x0021)}
    path = tmp_path / "x.dcm"
    dcmwrite(path, ds, enforce_file_format=True)
    info = probe(path, 0x0021)
    tag = ProvenanceTag()
    try:
        inserts = splice(info, tag)
    except TaggingError:
        return
    with open(path, "rb") as f:
        head = f.read(info.dataset_offset)
        payload = Payload(f, info.dataset_offset, info.size, inserts)
        body = bytearray(payload.length)
        assert payload.readinto(memoryview(body)) == payload.length
    spliced = tmp_path / "spliced.dcm"
    spliced.write_bytes(head + body)
    decoded = dcmread(path)
    tag_dataset(decoded, tag)
    for got in (dcmread(spliced), decoded):
        after = {int(e.tag): str(e.value).rstrip() for e in got.group_dataset(0x0021)}
        assert {t: after[t] for t in before} == before
        added = sorted(set(after) - set(before))
        if not added:  # the value was there already
            assert "DICOM Send" in before.values()
            continue
        *new_creator, data = added
        ours = 0x00210000 | (data & 0xFFFF) >> 8
        assert after[data] == "DICOM Send"
        assert after[ours] == "Flywheel"
        assert new_creator == ([] if ours in before else [ours])
    # A doubled or out-of-order element would make the spliced bytes malformed.
    assert probe(spliced, 0x0021).group_elements
