"""The data elements of an encoded data set, walked without decoding them.

:func:`iter_top_level` yields the header and extent of each top-level element,
walking into sequences (defined or undefined length, to a bounded depth) only to
find where they end, and skipping other values unread: a file of any size is
walked in a few reads. An element that runs past the end raises
:class:`Truncated`; a structure that cannot be walked raises
:class:`~fw_gear_dicom_send.errors.MalformedDicomError`.
"""

import struct
from collections.abc import Iterator
from dataclasses import dataclass
from typing import NamedTuple, Protocol

from ..errors import MalformedDicomError

UNDEFINED_LENGTH = 0xFFFFFFFF
ITEM = 0xFFFEE000
ITEM_DELIMITER = 0xFFFEE00D
SEQUENCE_DELIMITER = 0xFFFEE0DD
PIXEL_DATA = 0x7FE00010
_MAX_NESTING = 64
_LEVEL_BYTES = 16
"""The fewest bytes a level of nesting takes: an item header and a sequence
element header, 8 bytes each (Implicit VR)."""
_SCAN_LIMIT = 1 << 20
"""Sequence values up to this size have their item tags counted before a walk."""
# VRs whose explicit encoding has 2 reserved bytes and a 4-byte length (PS3.5 7.1.2).
_LONG_VRS = frozenset(
    {b"OB", b"OD", b"OF", b"OL", b"OV", b"OW", b"SQ", b"SV", b"UC", b"UN", b"UR"}
    | {b"UT", b"UV"}
)


@dataclass(frozen=True, slots=True)
class Encoding:
    """How a dataset is encoded."""

    implicit_vr: bool
    little_endian: bool


IMPLICIT_LE = Encoding(implicit_vr=True, little_endian=True)
EXPLICIT_LE = Encoding(implicit_vr=False, little_endian=True)
EXPLICIT_BE = Encoding(implicit_vr=False, little_endian=False)


class Truncated(Exception):
    """An element runs past the end of the file."""


class _TooDeep(MalformedDicomError):
    """Sequences nested deeper than :data:`_MAX_NESTING`."""

    def __init__(self) -> None:
        super().__init__(f"sequences nested deeper than {_MAX_NESTING}")


class Reader(Protocol):
    """Reads of a data set's bytes by offset: a file, or a data set being inflated."""

    @property
    def size(self) -> int:
        """Bytes in all."""

    def read(self, offset: int, n: int) -> bytes:
        """``n`` bytes from ``offset``; :class:`Truncated` past the end."""


class Header(NamedTuple):
    """An element's header: its tag, value length, where its value starts, its VR.

    The VR is empty in Implicit VR, and for items and delimiters.
    """

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
    """``(GGGG,EEEE)``."""
    return f"({tag >> 16:04X},{tag & 0xFFFF:04X})"


def is_vr(two: bytes) -> bool:
    """Whether two bytes may be a VR (two upper-case letters)."""
    return len(two) == 2 and 65 <= two[0] <= 90 and 65 <= two[1] <= 90


def read_header(src: Reader, offset: int, enc: Encoding) -> Header:
    """The header of the element at ``offset``.

    Raises:
        Truncated: It runs past the end.
        MalformedDicomError: Its VR is not one (Explicit VR).
    """
    head = src.read(offset, 8)
    little = enc.little_endian
    group, elem, vr, short_length = _EXPLICIT[little].unpack(head)
    tag = (group << 16) | elem
    if enc.implicit_vr or group == 0xFFFE:  # items and delimiters carry no VR
        return Header(tag, _IMPLICIT[little].unpack(head)[2], offset + 8)
    if not is_vr(vr):
        raise MalformedDicomError(
            f"invalid VR {vr!r} for element {_tag_str(tag)} at byte {offset}"
        )
    if vr in _LONG_VRS:
        (length,) = _LONG_LENGTH[little].unpack(src.read(offset + 8, 4))
        return Header(tag, length, offset + 12, vr)
    return Header(tag, short_length, offset + 8, vr)


def _skip_undefined(
    src: Reader, offset: int, enc: Encoding, depth: int, *, fragments: bool
) -> int:
    """Walk the items of an undefined-length value; return the offset after it.

    The items of a sequence are data sets, walked; those of encapsulated pixel data
    (``fragments``) are bytes, skipped.
    """
    if depth > _MAX_NESTING:
        raise _TooDeep
    while True:
        item = read_header(src, offset, enc)
        if item.tag == SEQUENCE_DELIMITER:
            return item.value_offset
        if fragments and item.tag == ITEM and item.length != UNDEFINED_LENGTH:
            offset = item.value_offset + item.length
            continue
        offset = _item_end(src, item, offset, enc, depth)


def _skip_defined(
    src: Reader, offset: int, end: int, enc: Encoding, depth: int
) -> None:
    """Walk the items of a defined-length sequence value from ``offset`` to ``end``."""
    if depth > _MAX_NESTING:
        raise _TooDeep
    while offset < end:
        item = read_header(src, offset, enc)
        offset = _item_end(src, item, offset, enc, depth)
    if offset != end:
        raise MalformedDicomError(f"an item runs past the end of its sequence at {end}")


def _item_end(src: Reader, item: Header, offset: int, enc: Encoding, depth: int) -> int:
    """Walk the elements of one item (its data set); return the offset after it."""
    if item.tag != ITEM:
        raise MalformedDicomError(
            f"expected an item, found {_tag_str(item.tag)} at byte {offset}"
        )
    offset = item.value_offset
    if item.length == UNDEFINED_LENGTH:  # a data set ending with an item delimiter
        while True:
            header = read_header(src, offset, enc)
            if header.tag == ITEM_DELIMITER:
                return header.value_offset
            offset = element_end(src, header, enc, depth + 1)
    end = item.value_offset + item.length
    if end > src.size:
        raise Truncated
    while offset < end:
        offset = element_end(src, read_header(src, offset, enc), enc, depth + 1)
    if offset != end:
        raise MalformedDicomError(f"an element runs past the end of its item at {end}")
    return end


def element_end(src: Reader, header: Header, enc: Encoding, depth: int) -> int:
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
        raise Truncated
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
            except (MalformedDicomError, Truncated):
                pass
    return end


def _may_nest_too_deep(src: Reader, header: Header, depth: int) -> bool:
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


def iter_top_level(
    src: Reader, offset: int, enc: Encoding
) -> Iterator[tuple[Header, int, int]]:
    """Yield (header, start, end) of each top-level element from ``offset`` on."""
    previous = -1
    while offset < src.size:
        header = read_header(src, offset, enc)
        if header.tag <= previous:
            raise MalformedDicomError(
                f"element {_tag_str(header.tag)} at byte {offset} is out of order"
            )
        previous = header.tag
        end = element_end(src, header, enc, 0)
        yield header, offset, end
        offset = end
