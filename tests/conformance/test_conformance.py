"""Conformance on real-world files: what arrives is the original.

Every file of pydicom's test data and of pydicom-data goes through ``send``, one
file per send (many share UIDs), into a receiver that accepts every transfer syntax
and into one that accepts only uncompressed syntaxes; a subset goes by STOW-RS. The
receivers keep the exact bytes they got. For every file: one report row, a status
and a one-line reason. For every instance reported sent: it arrived once, under the
UID in its file and in the report; decoded, it equals the original element by
element plus exactly the provenance element; sent in its own syntax and not
decoded, its bytes are the original data set's with the element's bytes inserted
and nothing else; decompressed, its pixels equal the original's decoded pixels.
A file not listed below that does not arrive intact fails the suite.
"""

import logging
from collections.abc import Iterator
from pathlib import Path

import pytest
from fidelity import (
    DECOMPRESSION_CHANGES,
    EVERY_SYNTAX,
    UNCOMPRESSED,
    RawReceiver,
    corpus,
    decode,
    differences,
    element_bytes,
    pixels_equal,
    provenance_tags,
    read_whole,
    sop_classes,
    split_part10,
    text,
    without_inserts,
)
from pydicom.dataset import Dataset
from pydicom.uid import (
    UID,
    JPEGBaseline8Bit,
    JPEGExtended12Bit,
    JPEGLSNearLossless,
)
from stowserver import StowServer

from fw_gear_dicom_send import SendRequest, send
from fw_gear_dicom_send.dicom.provenance import ProvenanceTag
from fw_gear_dicom_send.sending.report import Row
from fw_gear_dicom_send.status import InstanceStatus
from fw_gear_dicom_send.transport.peer import Peer, StowSettings
from fw_gear_dicom_send.transport.retry import RetryPolicy

LOSSY_SYNTAXES = frozenset({JPEGBaseline8Bit, JPEGExtended12Bit, JPEGLSNearLossless})
"""Syntaxes whose pixel data is always lossy: decompressed, they say so."""
SENT = InstanceStatus.SENT
FAILED = InstanceStatus.FAILED
SKIPPED = InstanceStatus.SKIPPED
TAG = ProvenanceTag()
NO_RETRY = RetryPolicy(budget=0)

FILES = dict(corpus())

# The corpus has values pydicom warns about (UIDs of 64 hex digits, IS "1A"); the
# receivers' threads read them too.
pytestmark = [
    pytest.mark.filterwarnings("ignore:Invalid value for VR:UserWarning"),
    pytest.mark.filterwarnings("ignore:The value length:UserWarning"),
]

_NOT_DICOM = (SKIPPED, "not DICOM")
_DICOMDIR = (SKIPPED, "DICOMDIR (a media directory, not an instance)")
_NO_CLASS = (SKIPPED, "no SOP Class UID (0008,0016)")
_TRUNCATED = (FAILED, "truncated: an element runs past the end of the file")
_RETIRED_US = (
    FAILED,
    "receiver does not support Ultrasound Image Storage (abstract syntax not "
    "supported)",
)

NOT_SENT: dict[str, tuple[InstanceStatus, str]] = {
    # Not instances: text, JSON, an ICC profile, dumps; media directories.
    "pydicom/README.txt": _NOT_DICOM,
    "pydicom/crayons.icc": _NOT_DICOM,
    "pydicom/rtplan.dump": _NOT_DICOM,
    "pydicom/rtstruct.dump": _NOT_DICOM,
    "pydicom/test1.json": _NOT_DICOM,
    "pydicom/test_PN.json": _NOT_DICOM,
    "pydicom/dicomdirtests/README.txt": _NOT_DICOM,
    "pydicom/dicomdirtests/TINY_ALPHA/README": _NOT_DICOM,
    "pydicom/dicomdirtests/DICOMDIR": _DICOMDIR,
    "pydicom/dicomdirtests/DICOMDIR-bigEnd": _DICOMDIR,
    "pydicom/dicomdirtests/DICOMDIR-empty.dcm": _DICOMDIR,
    "pydicom/dicomdirtests/DICOMDIR-implicit": _DICOMDIR,
    "pydicom/dicomdirtests/DICOMDIR-nooffset": _DICOMDIR,
    "pydicom/dicomdirtests/DICOMDIR-nopatient": _DICOMDIR,
    "pydicom/dicomdirtests/DICOMDIR-reordered": _DICOMDIR,
    "pydicom/dicomdirtests/TINY_ALPHA/DICOMDIR": _DICOMDIR,
    # Data sets without a SOP Class: nothing to send them as.
    "pydicom/UN_sequence.dcm": _NO_CLASS,
    "pydicom/empty_charset_LEI.dcm": _NO_CLASS,
    "pydicom/meta_missing_tsyntax.dcm": _NO_CLASS,
    "pydicom/nested_priv_SQ.dcm": _NO_CLASS,
    "pydicom/no_meta_group_length.dcm": _NO_CLASS,
    "pydicom/priv_SQ.dcm": _NO_CLASS,
    # A bare data set (no meta) that pydicom reads only with force; its first
    # element is not one the probe takes for the start of a data set.
    "pydicom/no_meta.dcm": _NOT_DICOM,
    # Cut short: pydicom reads them without complaint, a PACS must never get them.
    "pydicom/MR_truncated.dcm": _TRUNCATED,
    "pydicom/rtplan_truncated.dcm": _TRUNCATED,
    "pydicom-data/emri_small_jpeg_2k_lossless_too_short.dcm": _TRUNCATED,
    # One gzip-compressed file, not a tar archive: the archive reader takes
    # .gz for .tar.gz.
    "pydicom/zipMR.gz": (FAILED, "not a readable tar archive: invalid header"),
    # Ultrasound Image Storage (Retired), which the receiver (pynetdicom's
    # storage SOP classes) does not know: refused, by name, not retried.
    "pydicom-data/color-pl.dcm": _RETIRED_US,
    "pydicom-data/color-px.dcm": _RETIRED_US,
}
"""Files that arrive in neither receiver: the status and reason each gets."""

NOT_SENT_UNCOMPRESSED: dict[str, tuple[InstanceStatus, str]] = {
    # Its Pixel Data holds a sequence delimiter inside a fragment: no decoder
    # finds a whole JPEG 2000 codestream in it.
    "pydicom/JPEG2000-embedded-sequence-delimiter.dcm": (
        FAILED,
        "cannot decompress JPEG 2000 Image Compression: gdcm: 'NoneType' object "
        "has no attribute 'encode'; pylibjpeg: Error decoding the J2K data: failed "
        "to read the header; pillow: Image size (3811783737344 pixels) exceeds "
        "limit of 178956970 pixels, could be decompression bomb DOS attack.",
    ),
}
"""Files that arrive compressed but not in a receiver of uncompressed syntaxes."""

DECODED: dict[str, str] = {
    "pydicom/image_dfl.dcm": "deflated: inflated, tagged and deflated again",
    "pydicom/SC_rgb_jpeg.dcm": (
        "an implicit VR data set under JPEG Baseline (explicit VR): encoded in the "
        "syntax it names"
    ),
}
"""Files sent in their own syntax, but decoded and encoded again: why."""


@pytest.fixture(scope="module")
def classes() -> set[str]:
    return sop_classes(list(FILES.items()))


@pytest.fixture(scope="module")
def every_syntax(classes: set[str]) -> Iterator[RawReceiver]:
    with RawReceiver(EVERY_SYNTAX, classes) as scp:
        yield scp


@pytest.fixture(scope="module")
def uncompressed(classes: set[str]) -> Iterator[RawReceiver]:
    with RawReceiver(UNCOMPRESSED, classes) as scp:
        yield scp


@pytest.fixture(autouse=True)
def _quiet() -> Iterator[None]:
    """pynetdicom and the engine log every refusal: keep the output short."""
    levels = {}
    for name in ("pynetdicom", "fw_gear_dicom_send"):
        logger = logging.getLogger(name)
        levels[name] = logger.level
        logger.setLevel(logging.CRITICAL)
    yield
    for name, level in levels.items():
        logging.getLogger(name).setLevel(level)


def _send_one(name: str, scp: RawReceiver) -> Row:
    result = send(
        SendRequest(
            (FILES[name],), Peer("127.0.0.1", scp.port, "STORE-SCP"), retry=NO_RETRY
        )
    )
    assert len(result.rows) == 1, "one report row per file"
    row = result.rows[0]
    assert isinstance(row.status, InstanceStatus)
    assert "\n" not in row.reason and "\r" not in row.reason, row.reason
    if row.status is not SENT:
        assert row.reason, "a file not sent says why"
    return row


def _check_not_sent(row: Row, expected: tuple[InstanceStatus, str]) -> None:
    status, reason = expected
    assert (row.status, row.reason) == (status, reason)


def _file_uid(source: Dataset) -> str:
    if "SOPInstanceUID" in source:
        return str(source.SOPInstanceUID)
    return str(source.file_meta.MediaStorageSOPInstanceUID)


def _check_arrived(
    name: str,
    row: Row,
    content: bytes,
    syntax: str,
    *,
    decoded_here: bool,
) -> tuple[bool, bool]:
    """Check one arrival against its file; whether decompressed, bytes unchanged."""
    path_bytes = FILES[name].read_bytes()
    source = read_whole(path_bytes)
    original = split_part10(path_bytes)
    received = decode(content, syntax)

    if UID(syntax).is_deflated:
        assert len(content) % 2 == 0, "a deflated data set is padded to even length"
    uid = _file_uid(source)
    assert row.sop_instance_uid == uid, "the report names the file's UID"
    assert str(received.SOPInstanceUID) == uid, "the data set keeps its UID"

    added = provenance_tags(received, source)
    assert added, "the provenance element is there"
    values = [text(received, t) for t in added]
    assert added[-1] & 0xFF00 and values[-1] == TAG.value, values
    if len(added) == 2:  # a new private block: its creator, then the value
        assert values[0] == TAG.creator and added[0] & 0xFF00 == 0
        assert added[1] >> 8 & 0xFF == added[0] & 0xFF, "the value is in the block"
    assert len(added) <= 2

    decompressed = UID(str(original.syntax)).is_compressed and syntax != str(
        original.syntax
    )
    ignore = frozenset(added) | (DECOMPRESSION_CHANGES if decompressed else set())
    assert differences(source, received, frozenset(ignore)) == []

    if decompressed:
        assert row.reason.startswith(f"decompressed from {original.syntax.name} to ")
        assert not UID(syntax).is_compressed
        assert pixels_equal(source, received), "the pixels are the original's"
        if original.syntax in LOSSY_SYNTAXES:
            assert received.LossyImageCompression == "01", "lossy stays lossy"
        return True, False

    unchanged = syntax == str(original.syntax) and name not in DECODED
    if unchanged and not decoded_here:
        inserts = [element_bytes(received, t, syntax) for t in added]
        assert without_inserts(content, original.data, inserts) == original.data, (
            "the bytes are the original's with the element inserted, nothing else"
        )
    return False, unchanged


def _check_cstore(name: str, scp: RawReceiver, mode: str) -> None:
    row = _send_one(name, scp)
    arrivals = scp.take()
    expected = NOT_SENT.get(name) or (
        NOT_SENT_UNCOMPRESSED.get(name) if mode == "uncompressed" else None
    )
    if expected is not None:
        _check_not_sent(row, expected)
        assert arrivals == []
        return
    assert row.status is SENT, row.reason
    assert [a.sop_instance_uid for a in arrivals] == [row.sop_instance_uid], (
        "it arrived once, under the UID of the report"
    )
    arrival = arrivals[0]
    assert row.transfer_syntax == arrival.transfer_syntax
    _check_arrived(name, row, arrival.data, arrival.transfer_syntax, decoded_here=False)


@pytest.mark.parametrize("name", sorted(FILES))
def test_into_a_receiver_of_every_syntax(name: str, every_syntax: RawReceiver) -> None:
    _check_cstore(name, every_syntax, "every")


@pytest.mark.parametrize("name", sorted(FILES))
def test_into_a_receiver_of_uncompressed_syntaxes(
    name: str, uncompressed: RawReceiver
) -> None:
    _check_cstore(name, uncompressed, "uncompressed")


STOW_SUBSET = (
    "pydicom/CT_small.dcm",  # explicit VR little endian
    "pydicom/MR_small_implicit.dcm",  # implicit VR
    "pydicom/MR_small_bigendian.dcm",  # explicit VR big endian
    "pydicom/image_dfl.dcm",  # deflated: decoded
    "pydicom/SC_rgb_jpeg.dcm",  # implicit VR data set under an explicit syntax
    "pydicom/JPEG2000.dcm",
    "pydicom/MR_small_RLE.dcm",
    "pydicom/SC_rgb_jpeg_dcmtk.dcm",
    "pydicom/JPGExtended.dcm",
    "pydicom-data/emri_small_jpeg_ls_lossless.dcm",
    "pydicom/rtplan.dcm",  # sequences
    "pydicom/nested_priv_SQ.dcm",  # no SOP class: skipped
    "pydicom/MR_truncated.dcm",  # truncated: not sent
    "pydicom/ExplVR_BigEndNoMeta.dcm",  # no file meta
    "pydicom-data/OBXXXX1A.dcm",
    "pydicom-data/JPEG-LL.dcm",  # JPEG Lossless (Process 14)
    "pydicom-data/MR-SIEMENS-DICOM-WithOverlays.dcm",  # private elements
    "pydicom-data/OBXXXX1A_rle_2frame.dcm",
    "pydicom-data/US1_J2KI.dcm",
)


def test_stow_rs_delivers_the_original(tmp_path: Path) -> None:
    """STOW-RS: each part is the file's data set with the element inserted (or,
    decoded, the same elements), under the UID in the file and the report."""
    with StowServer(keep=True) as server:
        for name in STOW_SUBSET:
            result = send(
                SendRequest(
                    (FILES[name],),
                    stow=StowSettings(server.url, parallel=1),
                    retry=NO_RETRY,
                )
            )
            assert len(result.rows) == 1
            row = result.rows[0]
            assert "\n" not in row.reason
            parts, server.parts[:] = list(server.parts), []
            expected = NOT_SENT.get(name)
            if expected is not None:
                _check_not_sent(row, expected)
                assert parts == []
                continue
            assert row.status is SENT, (name, row.reason)
            assert len(parts) == 1, name
            part = split_part10(parts[0])
            decoded = row.reason == "decoded"
            _check_arrived(name, row, part.data, str(part.syntax), decoded_here=decoded)
            assert str(part.syntax) == row.transfer_syntax
