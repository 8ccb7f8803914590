"""Read the structure of a DICOM file without decoding it.

:func:`probe` walks the top-level data elements of a file (seeking over large values
such as Pixel Data), which tells in one cheap pass:

* whether the file is DICOM at all (Part 10 with preamble and ``DICM``, file meta
  without a preamble, or a bare dataset);
* the SOP Class / SOP Instance UIDs and the transfer syntax to propose;
* whether every element fits in the file: an element that runs past the end means
  a truncated file, which must never reach a PACS (pydicom itself reads such a file
  without an error);
* where the elements of the provenance group sit, so that the private element can be
  spliced into the byte stream instead of decoding and re-encoding the dataset.
"""

import hashlib
import logging
import os
import struct
import sys
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, NamedTuple, Protocol

from ..errors import MalformedDicomError
from .uids import (
    DEFLATED_EXPLICIT_VR_LITTLE_ENDIAN,
    EXPLICIT_VR_BIG_ENDIAN,
    EXPLICIT_VR_LITTLE_ENDIAN,
    IMPLICIT_VR_LITTLE_ENDIAN,
    MEDIA_STORAGE_DIRECTORY,
)

log = logging.getLogger(__name__)

PREAMBLE_LENGTH = 128
MAGIC = b"DICM"
UNDEFINED_LENGTH = 0xFFFFFFFF
ITEM = 0xFFFEE000
ITEM_DELIMITER = 0xFFFEE00D
SEQUENCE_DELIMITER = 0xFFFEE0DD
SOP_CLASS_UID = 0x00080016
SOP_INSTANCE_UID = 0x00080018
STUDY_INSTANCE_UID = 0x0020000D
SERIES_INSTANCE_UID = 0x0020000E
PIXEL_DATA = 0x7FE00010
_UID_TAGS = frozenset(
    {SOP_CLASS_UID, SOP_INSTANCE_UID, STUDY_INSTANCE_UID, SERIES_INSTANCE_UID}
)
_HEAD_SIZE = 1 << 16
_MAX_KEPT_VALUE = 256
_MAX_NESTING = 64
_LEVEL_BYTES = 16
"""The fewest bytes a level of nesting takes: an item header and a sequence
element header, 8 bytes each (Implicit VR)."""
_SCAN_LIMIT = 1 << 20
"""Sequence values up to this size have their item tags counted before a walk."""
MAX_INFLATED_BYTES = 32 << 20
"""Largest data set a Deflated Explicit VR file may inflate to: such a file is
decoded in memory to be sent, which takes several times its inflated size
(inflated bytes, decoded elements, the encoding sent): the cap keeps a run that
sends it under 300 MB."""
_INFLATE_IN = 1 << 16
_INFLATE_OUT = 1 << 20
_INFLATED_WINDOW = 1 << 16
_DIGEST_CHUNK = 1 << 20
# VRs whose explicit encoding has 2 reserved bytes and a 4-byte length (PS3.5 7.1.2).
_LONG_VRS = frozenset(
    {b"OB", b"OD", b"OF", b"OL", b"OV", b"OW", b"SQ", b"SV", b"UC", b"UN", b"UR"}
    | {b"UT", b"UV"}
)


class NotSendable(Exception):
    """The file is not a DICOM instance to send; ``reason`` says why (skipped)."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass(frozen=True, slots=True)
class Encoding:
    """How a dataset is encoded."""

    implicit_vr: bool
    little_endian: bool


IMPLICIT_LE = Encoding(implicit_vr=True, little_endian=True)
EXPLICIT_LE = Encoding(implicit_vr=False, little_endian=True)
EXPLICIT_BE = Encoding(implicit_vr=False, little_endian=False)


@dataclass(frozen=True, slots=True)
class GroupElement:
    """A top-level element of the provenance group, as found in the file."""

    tag: int
    offset: int
    """Where its header starts in the file."""
    value: bytes | None
    """Its value with trailing padding removed; None when too long to matter."""


@dataclass(frozen=True, slots=True)
class DicomInfo:
    """What :func:`probe` learned about a DICOM instance."""

    sop_class_uid: str
    sop_instance_uid: str
    transfer_syntax: str
    dataset_offset: int
    """Where the dataset (after the file meta) starts in the file."""
    size: int
    encoding: Encoding | None
    """How the dataset bytes are encoded; None when they cannot be streamed as they
    lie (deflated, or contradicting the declared transfer syntax)."""
    group_elements: tuple[GroupElement, ...]
    """Top-level elements of the provenance group, in file order."""
    group_end: int
    """Offset of the first top-level element after the provenance group."""
    series_instance_uid: str = ""
    """Series Instance UID (0020,000E), if the file has one (to keep a series on
    one association)."""
    study_instance_uid: str = ""
    """Study Instance UID (0020,000D), if the file has one (to verify)."""

    @property
    def streamable(self) -> bool:
        """Whether the dataset can be sent as it lies, the element spliced in."""
        return self.encoding is not None

    @property
    def dataset_length(self) -> int:
        """Number of bytes of the encoded dataset."""
        return self.size - self.dataset_offset


class _Truncated(Exception):
    """An element runs past the end of the file."""


class _TooDeep(MalformedDicomError):
    """Sequences nested deeper than :data:`_MAX_NESTING`."""

    def __init__(self) -> None:
        super().__init__(f"sequences nested deeper than {_MAX_NESTING}")


class _Reader(Protocol):
    """Reads of a data set's bytes by offset: a file, or a data set being inflated."""

    @property
    def size(self) -> int:
        """Bytes in all."""

    def read(self, offset: int, n: int) -> bytes:
        """``n`` bytes from ``offset``; :class:`_Truncated` past the end."""


class _Source:
    """Random-access reads of a file: the head is cached, the rest is seeked."""

    def __init__(self, f: BinaryIO, size: int) -> None:
        self._f = f
        self.size = size
        self._head = f.read(min(size, _HEAD_SIZE))

    def read(self, offset: int, n: int) -> bytes:
        end = offset + n
        if end > self.size:
            raise _Truncated
        if end <= len(self._head):
            return self._head[offset:end]
        self._f.seek(offset)
        data = self._f.read(n)
        if len(data) != n:
            raise _Truncated
        return data


class _Header(NamedTuple):
    tag: int
    length: int
    value_offset: int
    vr: bytes = b""


# Element headers (PS3.5 7.1), by byte order: tag and 4-byte length (implicit VR,
# items and delimiters); tag, VR and 2-byte length (explicit VR); a 4-byte length.
_IMPLICIT = {True: struct.Struct("<HHI"), False: struct.Struct(">HHI")}
_EXPLICIT = {True: struct.Struct("<HH2sH"), False: struct.Struct(">HH2sH")}
_LONG_LENGTH = {True: struct.Struct("<I"), False: struct.Struct(">I")}
_ITEM_BYTES = {True: b"\xfe\xff\x00\xe0", False: b"\xff\xfe\xe0\x00"}


def _tag_str(tag: int) -> str:
    return f"({tag >> 16:04X},{tag & 0xFFFF:04X})"


def _is_vr(two: bytes) -> bool:
    return len(two) == 2 and 65 <= two[0] <= 90 and 65 <= two[1] <= 90


def _read_header(src: _Reader, offset: int, enc: Encoding) -> _Header:
    head = src.read(offset, 8)
    little = enc.little_endian
    group, elem, vr, short_length = _EXPLICIT[little].unpack(head)
    tag = (group << 16) | elem
    if enc.implicit_vr or group == 0xFFFE:  # items and delimiters carry no VR
        return _Header(tag, _IMPLICIT[little].unpack(head)[2], offset + 8)
    if not _is_vr(vr):
        raise MalformedDicomError(
            f"invalid VR {vr!r} for element {_tag_str(tag)} at byte {offset}"
        )
    if vr in _LONG_VRS:
        (length,) = _LONG_LENGTH[little].unpack(src.read(offset + 8, 4))
        return _Header(tag, length, offset + 12, vr)
    return _Header(tag, short_length, offset + 8, vr)


def _skip_undefined(
    src: _Reader, offset: int, enc: Encoding, depth: int, *, fragments: bool
) -> int:
    """Walk the items of an undefined-length value; return the offset after it.

    The items of a sequence are data sets, walked; those of encapsulated pixel data
    (``fragments``) are bytes, skipped.
    """
    if depth > _MAX_NESTING:
        raise _TooDeep
    while True:
        item = _read_header(src, offset, enc)
        if item.tag == SEQUENCE_DELIMITER:
            return item.value_offset
        if fragments and item.tag == ITEM and item.length != UNDEFINED_LENGTH:
            offset = item.value_offset + item.length
            continue
        offset = _item_end(src, item, offset, enc, depth)


def _skip_defined(
    src: _Reader, offset: int, end: int, enc: Encoding, depth: int
) -> None:
    """Walk the items of a defined-length sequence value from ``offset`` to ``end``."""
    if depth > _MAX_NESTING:
        raise _TooDeep
    while offset < end:
        item = _read_header(src, offset, enc)
        offset = _item_end(src, item, offset, enc, depth)
    if offset != end:
        raise MalformedDicomError(f"an item runs past the end of its sequence at {end}")


def _item_end(
    src: _Reader, item: _Header, offset: int, enc: Encoding, depth: int
) -> int:
    """Walk the elements of one item (its data set); return the offset after it."""
    if item.tag != ITEM:
        raise MalformedDicomError(
            f"expected an item, found {_tag_str(item.tag)} at byte {offset}"
        )
    offset = item.value_offset
    if item.length == UNDEFINED_LENGTH:  # a data set ending with an item delimiter
        while True:
            header = _read_header(src, offset, enc)
            if header.tag == ITEM_DELIMITER:
                return header.value_offset
            offset = _element_end(src, header, enc, depth + 1)
    end = item.value_offset + item.length
    if end > src.size:
        raise _Truncated
    while offset < end:
        offset = _element_end(src, _read_header(src, offset, enc), enc, depth + 1)
    if offset != end:
        raise MalformedDicomError(f"an element runs past the end of its item at {end}")
    return end


def _element_end(src: _Reader, header: _Header, enc: Encoding, depth: int) -> int:
    """The offset after an element; sequences are walked, nesting bounded."""
    if header.length == UNDEFINED_LENGTH:
        if header.vr == b"UN":  # its items are Implicit VR Little Endian (PS3.5 6.2.2)
            enc = IMPLICIT_LE
        fragments = header.vr in (b"OB", b"OW") or header.tag == PIXEL_DATA
        return _skip_undefined(
            src, header.value_offset, enc, depth, fragments=fragments
        )
    end = header.value_offset + header.length
    if end > src.size:
        raise _Truncated
    if depth + header.length // _LEVEL_BYTES <= _MAX_NESTING:
        return end  # too short to nest too deep: skipped unread
    if header.vr == b"SQ":
        if _may_nest_too_deep(src, header, depth):
            _skip_defined(src, header.value_offset, end, enc, depth)
    elif header.vr in (b"", b"UN") and header.tag != PIXEL_DATA:
        # No VR (Implicit VR) or UN: a value that starts with an item may be a
        # sequence. Walk it to bound its nesting; if it is not one after all, it is
        # an opaque value.
        inner = IMPLICIT_LE if header.vr == b"UN" else enc
        item = _ITEM_BYTES[inner.little_endian]
        if src.read(header.value_offset, 4) == item and _may_nest_too_deep(
            src, header, depth
        ):
            try:
                _skip_defined(src, header.value_offset, end, inner, depth)
            except _TooDeep:
                raise
            except (MalformedDicomError, _Truncated):
                pass
    return end


def _may_nest_too_deep(src: _Reader, header: _Header, depth: int) -> bool:
    """Whether a defined-length sequence value may hold sequences nested too deep.

    Each level of nesting has an item header, so a value with fewer item tags (in
    either byte order) than the levels left cannot; counting them is much cheaper
    than walking the value.
    """
    if header.length > _SCAN_LIMIT:
        return True
    value = src.read(header.value_offset, header.length)
    items = value.count(_ITEM_BYTES[True]) + value.count(_ITEM_BYTES[False])
    return depth + items > _MAX_NESTING


def _iter_top_level(
    src: _Reader, offset: int, enc: Encoding
) -> Iterator[tuple[_Header, int, int]]:
    """Yield (header, start, end) of each top-level element from ``offset`` on."""
    previous = -1
    while offset < src.size:
        header = _read_header(src, offset, enc)
        if header.tag <= previous:
            raise MalformedDicomError(
                f"element {_tag_str(header.tag)} at byte {offset} is out of order"
            )
        previous = header.tag
        end = _element_end(src, header, enc, 0)
        yield header, offset, end
        offset = end


def _text(raw: bytes) -> str:
    # Interned: the SOP Class, Series and transfer syntax UIDs of a large send are
    # the same few strings, held once instead of once per file.
    return sys.intern(raw.decode("ascii", "replace").rstrip("\0 "))


@dataclass(frozen=True, slots=True)
class _Meta:
    dataset_offset: int
    transfer_syntax: str | None
    media_sop_class: str | None


def _read_meta(src: _Source, offset: int) -> _Meta:
    """Read the group 0002 file meta (always Explicit VR Little Endian)."""
    values: dict[int, str] = {}
    while offset + 8 <= src.size and src.read(offset, 2) == b"\x02\x00":
        header = _read_header(src, offset, EXPLICIT_LE)
        end = _element_end(src, header, EXPLICIT_LE, 0)
        if header.tag in (0x00020002, 0x00020010) and header.length <= 64:
            values[header.tag] = _text(src.read(header.value_offset, header.length))
        offset = end
    return _Meta(offset, values.get(0x00020010), values.get(0x00020002))


def _guess_encoding(src: _Source, offset: int) -> Encoding | None:
    """Guess how a bare dataset is encoded from its first element, as pydicom does."""
    if src.size - offset < 8:  # not even one element header
        return None
    head = src.read(offset, 8)
    group_le = struct.unpack("<H", head[:2])[0]
    group_be = struct.unpack(">H", head[:2])[0]
    if 0x0002 <= group_le <= 0x0008:
        return EXPLICIT_LE if _is_vr(head[4:6]) else IMPLICIT_LE
    if 0x0002 <= group_be <= 0x0008 and _is_vr(head[4:6]):
        return EXPLICIT_BE
    return None


def _encoding_of(transfer_syntax: str) -> Encoding:
    if transfer_syntax == IMPLICIT_VR_LITTLE_ENDIAN:
        return IMPLICIT_LE
    if transfer_syntax == EXPLICIT_VR_BIG_ENDIAN:
        return EXPLICIT_BE
    return EXPLICIT_LE  # every other syntax, compressed ones included (PS3.5 A.4)


def probe(
    path: Path | str, group: int, max_inflated: int = MAX_INFLATED_BYTES
) -> DicomInfo:
    """Learn what is needed to send a file, without decoding it.

    Args:
        path: The file.
        group: The provenance group whose elements to record.
        max_inflated: Most bytes a deflated data set may inflate to (it is
            inflated as a stream, never held whole).

    Returns:
        The instance's UIDs, transfer syntax and layout.

    Raises:
        NotSendable: Not DICOM, a DICOMDIR, or no SOP Class / Instance UID (skip it).
        MalformedDicomError: DICOM, but truncated or broken (fail it, never send it).
        OSError: The file cannot be read.
    """
    with open(path, "rb") as f:
        size = os.fstat(f.fileno()).st_size
        if size == 0:
            raise NotSendable("empty file")
        src = _Source(f, size)
        try:
            return _probe(src, group, max_inflated)
        except _Truncated:
            raise MalformedDicomError(
                "truncated: an element runs past the end of the file"
            ) from None


def dataset_digest(path: Path | str, info: DicomInfo) -> bytes:
    """A SHA-256 digest of the file's data set bytes (the file meta left out).

    Raises:
        OSError: The file cannot be read.
    """
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        f.seek(info.dataset_offset)
        while chunk := f.read(_DIGEST_CHUNK):
            digest.update(chunk)
    return digest.digest()


def _find_meta(src: _Source) -> tuple[bool, _Meta]:
    """Whether the file is Part 10 (has file meta), and its meta."""
    if src.size >= PREAMBLE_LENGTH + 4 and src.read(PREAMBLE_LENGTH, 4) == MAGIC:
        return True, _read_meta(src, PREAMBLE_LENGTH + 4)
    if src.size >= 4 and src.read(0, 4) == MAGIC:
        return True, _read_meta(src, 4)
    if src.size >= 8 and src.read(0, 2) == b"\x02\x00" and _is_vr(src.read(4, 2)):
        return True, _read_meta(src, 0)  # file meta without a preamble
    return False, _Meta(0, None, None)


def _dataset_encoding(src: _Source, meta: _Meta, part10: bool) -> tuple[Encoding, str]:
    """How the dataset is really encoded, and the transfer syntax to propose."""
    if part10:
        # Trust the declared byte order; tell implicit from explicit VR by the bytes.
        declared = _encoding_of(meta.transfer_syntax or EXPLICIT_VR_LITTLE_ENDIAN)
        explicit = _is_vr(src.read(meta.dataset_offset + 4, 2))
        actual = Encoding(not explicit, declared.little_endian)
    else:
        guessed = _guess_encoding(src, meta.dataset_offset)
        if guessed is None:
            raise NotSendable("not DICOM")
        actual = guessed
    if meta.transfer_syntax:
        return actual, meta.transfer_syntax
    # No transfer syntax given: the dataset's own encoding names it.
    if actual.implicit_vr:
        return actual, IMPLICIT_VR_LITTLE_ENDIAN
    return (
        actual,
        EXPLICIT_VR_LITTLE_ENDIAN if actual.little_endian else EXPLICIT_VR_BIG_ENDIAN,
    )


def _probe(src: _Source, group: int, max_inflated: int) -> DicomInfo:
    part10, meta = _find_meta(src)
    if meta.media_sop_class == MEDIA_STORAGE_DIRECTORY:
        raise NotSendable("DICOMDIR (a media directory, not an instance)")
    if meta.dataset_offset >= src.size:
        raise NotSendable("file meta only, no dataset")
    if meta.transfer_syntax == DEFLATED_EXPLICIT_VR_LITTLE_ENDIAN:
        return _probe_deflated(src, meta, max_inflated)
    guessed, transfer_syntax = _dataset_encoding(src, meta, part10)
    declared = _encoding_of(transfer_syntax)
    if guessed != declared:
        log.debug(
            "dataset encoding contradicts %s: it will be decoded", transfer_syntax
        )

    uids: dict[int, str] = {}
    group_elements: list[GroupElement] = []
    group_end: int | None = None
    try:
        for header, start, _end in _iter_top_level(src, meta.dataset_offset, guessed):
            tag_group = header.tag >> 16
            if header.tag in _UID_TAGS and header.length <= 64:
                uids[header.tag] = _text(src.read(header.value_offset, header.length))
            elif tag_group == group:
                value = None
                if header.length <= _MAX_KEPT_VALUE:
                    value = src.read(header.value_offset, header.length).rstrip(b"\0 ")
                group_elements.append(GroupElement(header.tag, start, value))
            elif tag_group > group and group_end is None:
                group_end = start
    except (MalformedDicomError, _Truncated) as exc:
        if not part10 and len(uids) < 2:  # a bare "dataset" that never was one
            raise NotSendable("not DICOM") from None
        if isinstance(exc, _Truncated):
            raise
        raise MalformedDicomError(f"malformed: {exc}") from None
    sop_class, sop_instance = uids.get(SOP_CLASS_UID), uids.get(SOP_INSTANCE_UID)
    if not part10 and not (sop_class or sop_instance):
        raise NotSendable("not DICOM")
    if not sop_class:
        raise NotSendable("no SOP Class UID (0008,0016)")
    if not sop_instance:
        raise NotSendable("no SOP Instance UID (0008,0018)")
    if sop_class == MEDIA_STORAGE_DIRECTORY:
        raise NotSendable("DICOMDIR (a media directory, not an instance)")
    return DicomInfo(
        sop_class_uid=sop_class,
        sop_instance_uid=sop_instance,
        transfer_syntax=transfer_syntax,
        dataset_offset=meta.dataset_offset,
        size=src.size,
        encoding=guessed if guessed == declared else None,
        group_elements=tuple(group_elements),
        group_end=src.size if group_end is None else group_end,
        series_instance_uid=uids.get(SERIES_INSTANCE_UID, ""),
        study_instance_uid=uids.get(STUDY_INSTANCE_UID, ""),
    )


def _inflate(src: _Source, offset: int, limit: int) -> Iterator[bytes]:
    """Inflate the deflated data set from ``offset``, in pieces of at most 1 MiB.

    Raises:
        MalformedDicomError: It cannot be inflated, ends early, or inflates to more
            than ``limit`` bytes.
    """
    inflater = zlib.decompressobj(-zlib.MAX_WBITS)
    deflated = src.size - offset
    data = b""
    total = 0
    while not inflater.eof:
        if not data and offset < src.size:
            n = min(_INFLATE_IN, src.size - offset)
            data = src.read(offset, n)
            offset += n
        try:
            out = inflater.decompress(data, _INFLATE_OUT)
        except zlib.error as exc:
            raise MalformedDicomError(
                f"deflated dataset cannot be inflated: {exc}"
            ) from None
        data = inflater.unconsumed_tail
        if not out and not data and offset >= src.size:
            break  # no more input, no more output
        total += len(out)
        if total > limit:
            raise MalformedDicomError(
                f"deflated dataset inflates to more than {limit >> 20} MiB (from "
                f"{deflated} bytes): too large to decode, not sent"
            )
        yield out
    if not inflater.eof:
        raise MalformedDicomError("truncated: the deflated dataset ends early")


class _Inflated:
    """A deflated data set read forward as it is inflated, a window of it kept."""

    def __init__(self, pieces: Iterator[bytes], size: int) -> None:
        self._pieces = pieces
        self._size = size
        self._buffer = bytearray()
        self._base = 0
        """Offset of the buffer's first byte in the inflated data set."""

    @property
    def size(self) -> int:
        """Bytes of the inflated data set."""
        return self._size

    def read(self, offset: int, n: int) -> bytes:
        """``n`` bytes from ``offset``, which may lie at most a window back."""
        end = offset + n
        if end > self._size:
            raise _Truncated
        if offset < self._base:
            raise MalformedDicomError(f"deflated dataset read back to byte {offset}")
        while self._base + len(self._buffer) < end:
            keep_from = min(
                len(self._buffer), max(0, offset - _INFLATED_WINDOW - self._base)
            )
            if keep_from:
                del self._buffer[:keep_from]
                self._base += keep_from
            piece = next(self._pieces, None)
            if piece is None:
                raise _Truncated
            self._buffer += piece
        return bytes(self._buffer[offset - self._base : end - self._base])


def _probe_deflated(src: _Source, meta: _Meta, limit: int) -> DicomInfo:
    """Probe a Deflated Explicit VR dataset without holding it inflated.

    It is inflated as a stream twice: once to measure it within ``limit``, once to
    walk it.
    """
    size = sum(len(piece) for piece in _inflate(src, meta.dataset_offset, limit))
    inner = _Inflated(_inflate(src, meta.dataset_offset, limit), size)
    uids: dict[int, str] = {}
    try:
        for header, _start, _end in _iter_top_level(inner, 0, EXPLICIT_LE):
            if header.tag in _UID_TAGS and header.length <= 64:
                uids[header.tag] = _text(inner.read(header.value_offset, header.length))
    except MalformedDicomError as exc:
        raise MalformedDicomError(f"malformed: {exc}") from None
    if SOP_CLASS_UID not in uids:
        raise NotSendable("no SOP Class UID (0008,0016)")
    if SOP_INSTANCE_UID not in uids:
        raise NotSendable("no SOP Instance UID (0008,0018)")
    return DicomInfo(
        sop_class_uid=uids[SOP_CLASS_UID],
        sop_instance_uid=uids[SOP_INSTANCE_UID],
        transfer_syntax=DEFLATED_EXPLICIT_VR_LITTLE_ENDIAN,
        dataset_offset=meta.dataset_offset,
        size=src.size,
        encoding=None,
        group_elements=(),
        group_end=src.size,
        series_instance_uid=uids.get(SERIES_INSTANCE_UID, ""),
        study_instance_uid=uids.get(STUDY_INSTANCE_UID, ""),
    )
