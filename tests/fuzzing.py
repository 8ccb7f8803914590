"""A fuzzer over what reads untrusted bytes: the archive walk, the probe, the splice.

Each input is a file as a user might name it. It goes through the archive walk
(``sending.inputs.collect``); every file that yields goes through the probe
(``dicom.probe.probe``) and the provenance element is added, spliced into the
bytes (``dicom.provenance.splice``) or into the decoded data set
(``dicom.provenance.tag_dataset``), as the senders do. :func:`check` asserts that
every input either yields a row with a reason, or a well-formed data set: one the
probe reads again, that pydicom reads back as the original plus exactly the
provenance element. Anything else (an
exception, a failed assertion, a hang, a memory blow-up) is a bug.

Run by hand (the default is 600 seconds)::

    ./dev fuzz [SECONDS]

``tests/test_fuzz.py`` runs it for a short while in the test suite, and replays
every input it ever failed on: libFuzzer writes each to ``tests/fuzz/regressions/``
(``crash-*``, ``timeout-*``, ``oom-*``), to be committed with the fix.
"""

import io
import os
import shutil
import struct
import sys
import tarfile
import tempfile
import warnings
import zipfile
from collections.abc import Iterator
from pathlib import Path

import pydicom.data
from pydicom.dataelem import DataElement, RawDataElement
from pydicom.dataset import Dataset

from fw_gear_dicom_send.dicom.elements import Encoding
from fw_gear_dicom_send.dicom.probe import DicomInfo, NotSendable, probe
from fw_gear_dicom_send.dicom.provenance import (
    ProvenanceTag,
    TaggingError,
    new_elements,
    place,
    splice,
    tag_dataset,
)
from fw_gear_dicom_send.errors import MalformedDicomError
from fw_gear_dicom_send.sending.budget import Limits
from fw_gear_dicom_send.sending.inputs import InputProblem, collect
from fw_gear_dicom_send.status import InstanceStatus
from fw_gear_dicom_send.transport.wire import Payload

HERE = Path(__file__).resolve().parent
REGRESSIONS = HERE / "fuzz" / "regressions"
TAG = ProvenanceTag()
# Small budgets keep each input fast; the rules are the same.
LIMITS = Limits(
    max_members=64,
    max_total_bytes=4 << 20,
    max_ratio=100,
    ratio_floor=1 << 20,
    max_depth=3,
    min_free_bytes=0,
    min_free_fraction=0.0,
)
MAX_LEN = 1 << 16
_SYNTAX = {
    (True, True): b"1.2.840.10008.1.2",
    (False, True): b"1.2.840.10008.1.2.1",
    (False, False): b"1.2.840.10008.1.2.2",
}


def check(data: bytes, folder: Path) -> None:
    """Put ``data`` through the walk, the probe and the splice; assert each holds.

    Args:
        data: The input file's bytes.
        folder: An empty folder to work in.
    """
    source = folder / "input"
    source.write_bytes(data)
    work = folder / "work"
    work.mkdir()
    for item in collect([source], work, LIMITS):
        if isinstance(item, InputProblem):
            assert item.reason, item
            assert item.status in (InstanceStatus.FAILED, InstanceStatus.SKIPPED)
            continue
        assert item.path == source or item.path.parent == work, item
        check_file(item.path, folder / "spliced")
    assert sorted(p.name for p in folder.iterdir()) == sorted(
        ["input", "work"] + (["spliced"] if (folder / "spliced").exists() else [])
    )
    extracted = sum(p.stat().st_size for p in work.iterdir())
    assert extracted <= max(LIMITS.ratio_floor, LIMITS.max_ratio * len(data))


def check_file(path: Path, spliced: Path) -> None:
    """Probe a file; tag what is an instance, as the senders would; check it."""
    try:
        info = probe(path, TAG.group)
    except NotSendable as exc:
        assert exc.reason
        return
    except MalformedDicomError as exc:
        assert str(exc)
        return
    assert info.sop_class_uid
    assert info.sop_instance_uid
    if info.encoding is None:
        _check_decoded(path)
        return
    try:
        inserts = splice(info, TAG)
    except TaggingError as exc:
        assert str(exc)
        return
    with open(path, "rb") as f:
        body = _read_all(Payload(f, info.dataset_offset, info.size, inserts))
        f.seek(info.dataset_offset)
        original = f.read()
    # A well-formed data set: the probe reads it again, and finds the element.
    # (Not when the data set starts with file meta elements: behind a file meta
    # of its own, they read as that meta's.)
    if _first_group(body, info.encoding) != 0x0002:
        spliced.write_bytes(_part10(info, info.encoding) + body)
        again = probe(spliced, TAG.group)
        assert (again.sop_class_uid, again.sop_instance_uid) == (
            info.sop_class_uid,
            info.sop_instance_uid,
        )
        assert again.encoding == info.encoding
        existing = {e.tag: e.value for e in again.group_elements}
        assert new_elements(place(TAG, existing), TAG) == [], "the element is missing"
    # pydicom reads it as the original plus the new elements, nothing else changed.
    before = _dataset(original, info.encoding)
    if before is None:
        return  # pydicom cannot read the original either
    after = _dataset(body, info.encoding)
    assert after is not None, "pydicom reads the original, not the spliced data set"
    existing = {e.tag: e.value for e in info.group_elements}
    added = {t for t, _ in new_elements(place(TAG, existing), TAG)}
    assert set(after.keys()) == set(before.keys()) | added
    for tag in sorted(before.keys()):
        assert _raw_item(after, tag) == _raw_item(before, tag), f"{tag} changed"
    assert _provenance_count(after) == max(1, _provenance_count(before))


def _check_decoded(path: Path) -> None:
    """The decoding path: read by pydicom, tagged, as the senders do."""
    from pydicom import dcmread

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            ds = dcmread(path, force=True)
            before = _provenance_count(ds)
    except Exception:  # the sender fails it, with the reason
        return
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            tag_dataset(ds, TAG)
    except TaggingError:
        return
    assert _provenance_count(ds) == max(1, before)


def _first_group(data: bytes, encoding: Encoding) -> int:
    (group,) = struct.unpack("<H" if encoding.little_endian else ">H", data[:2])
    return int(group)


def _read_all(payload: Payload) -> bytes:
    out = bytearray()
    buffer = bytearray(1 << 16)
    while filled := payload.readinto(memoryview(buffer)):
        out += buffer[:filled]
    assert len(out) == payload.length
    return bytes(out)


def _element(tag: int, vr: bytes, value: bytes) -> bytes:
    if len(value) % 2:
        value += b"\0"
    if vr == b"OB":
        return struct.pack("<HH2s2xI", tag >> 16, tag & 0xFFFF, vr, len(value)) + value
    return struct.pack("<HH2sH", tag >> 16, tag & 0xFFFF, vr, len(value)) + value


def _part10(info: DicomInfo, encoding: Encoding) -> bytes:
    """A preamble and file meta declaring the plain syntax of ``encoding``."""
    meta = b"".join(
        [
            _element(0x00020001, b"OB", b"\0\1"),
            _element(0x00020002, b"UI", info.sop_class_uid.encode("ascii", "replace")),
            _element(
                0x00020003, b"UI", info.sop_instance_uid.encode("ascii", "replace")
            ),
            _element(
                0x00020010, b"UI", _SYNTAX[encoding.implicit_vr, encoding.little_endian]
            ),
        ]
    )
    length = struct.pack("<HH2sHI", 0x0002, 0x0000, b"UL", 4, len(meta))
    return bytes(128) + b"DICM" + length + meta


def _dataset(data: bytes, encoding: Encoding) -> Dataset | None:
    """The data set as pydicom reads it, or None if it cannot."""
    from pydicom.filereader import read_dataset

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            ds = read_dataset(
                io.BytesIO(data), encoding.implicit_vr, encoding.little_endian
            )
            _provenance_count(ds)
            return ds
    except Exception:  # anything pydicom may raise
        return None


def _raw_item(ds: Dataset, tag: int) -> object:
    """An element as read, not converted (a conversion may fail: not our bug)."""
    return _comparable(ds.get_item(tag, keep_deferred=True))


def _comparable(elem: DataElement | RawDataElement) -> object:
    """An element's content, without where it lies in the file."""
    if isinstance(elem, RawDataElement):
        return (elem.tag, elem.VR, elem.value)
    if elem.VR == "SQ":
        return tuple(
            tuple((t, _raw_item(item, t)) for t in sorted(item.keys()))
            for item in elem.value
        )
    return (elem.tag, elem.VR, elem.value)


def _provenance_count(ds: Dataset) -> int:
    """How many elements of the (first) block of our creator hold our value."""
    creator = TAG.creator.encode()
    value = TAG.value.encode()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        elements = list(ds.group_dataset(TAG.group))
    for elem in elements:
        if 0x10 <= elem.tag.element <= 0xFF and _raw(elem.value) == creator:
            block = elem.tag.element << 8
            return sum(
                1
                for e in elements
                if block <= e.tag.element < block + 0x100 and _raw(e.value) == value
            )
    return 0


def _raw(value: object) -> bytes:
    if isinstance(value, bytes):
        return value.rstrip(b"\0 ")
    return str(value).encode("utf-8", "replace").rstrip(b"\0 ")


def seeds() -> Iterator[tuple[str, bytes]]:
    """Inputs to start from: pydicom's small test files, and archives of them."""
    files = Path(pydicom.data.__file__).parent / "test_files"
    dicom = {
        path.name: path.read_bytes()
        for path in sorted(files.glob("*.dcm"))
        if path.stat().st_size <= MAX_LEN // 4
    }
    yield from dicom.items()
    small = dicom["MR_small.dcm"]
    tagged = _with_group_elements(dicom["rtplan.dcm"])
    yield "tagged.dcm", tagged
    yield "tagged-explicit.dcm", _with_group_elements(small)
    yield (
        "tagged-big-endian.dcm",
        _with_group_elements(dicom["MR_small_bigendian.dcm"], "1.2.840.10008.1.2.2"),
    )
    zipped = _zip({"a/mr.dcm": small, "b/tagged.dcm": tagged})
    yield "mr.zip", zipped
    plain = _tar({"mr.dcm": small, "sub/tagged.dcm": tagged})
    yield "mr.tar", plain
    for mode in ("gz", "bz2", "xz"):
        yield f"mr.tar.{mode}", _tar({"mr.dcm": small}, mode)
    yield "nested.tar.gz", _tar({"inner.zip": zipped, "mr.dcm": small}, "gz")
    yield "cut.tar", plain[:1024]
    yield "links.tar", _tar_with_links()


def _with_group_elements(data: bytes, syntax: str = "") -> bytes:
    """A file with our block and another creator's in the provenance group."""
    from pydicom import dcmread
    from pydicom.filewriter import dcmwrite
    from pydicom.uid import UID

    ds = dcmread(io.BytesIO(data))
    if syntax:
        ds.file_meta.TransferSyntaxUID = UID(syntax)
    ds.add_new(0x00210010, "LO", "Other")
    ds.add_new(0x00210011, "LO", TAG.creator)
    ds.add_new(0x00211000, "LO", "their value")
    ds.add_new(0x00211100, "LO", "earlier")
    out = io.BytesIO()
    dcmwrite(out, ds, enforce_file_format=True)
    return out.getvalue()


def _zip(members: dict[str, bytes]) -> bytes:
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as z:
        for name, data in members.items():
            z.writestr(name, data)
    return out.getvalue()


def _tar(members: dict[str, bytes], compression: str = "") -> bytes:
    out = io.BytesIO()
    mode = f"w:{compression}" if compression else "w"
    with tarfile.open(fileobj=out, mode=mode) as tar:  # type: ignore[call-overload]
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return bytes(out.getvalue())


def _tar_with_links() -> bytes:
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w") as tar:
        link = tarfile.TarInfo("link.dcm")
        link.type = tarfile.SYMTYPE
        link.linkname = "../../etc/passwd"
        tar.addfile(link)
        info = tarfile.TarInfo("../up.dcm")
        info.size = 4
        tar.addfile(info, io.BytesIO(b"DICM"))
    return out.getvalue()


def one_input(data: bytes) -> None:
    """libFuzzer's entry: one input, in a fresh folder."""
    folder = Path(tempfile.mkdtemp(prefix="fuzz-"))
    try:
        check(data, folder)
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def main() -> None:
    """Fuzz (from tests/fuzz/main.py, which instruments the code first)."""
    import atheris

    corpus = Path(tempfile.mkdtemp(prefix="fuzz-corpus-"))
    start = Path(tempfile.mkdtemp(prefix="fuzz-seeds-"))
    for name, data in seeds():
        (start / name).write_bytes(data)
    REGRESSIONS.mkdir(parents=True, exist_ok=True)
    args = [
        sys.argv[0],
        *sys.argv[1:],
        f"-artifact_prefix={REGRESSIONS}{os.sep}",
        f"-max_len={MAX_LEN}",
        "-timeout=30",
        "-rss_limit_mb=2048",
        str(corpus),
        str(start),
        str(REGRESSIONS),
    ]
    atheris.Setup(args, one_input)
    atheris.Fuzz()
