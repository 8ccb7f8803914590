"""The private provenance element that marks every instance we send.

The element goes into a private block (PS3.5 7.8.1): a creator element
``(gggg,00xx)`` holding the creator name, and a data element ``(gggg,xxyy)`` (VR LO)
holding the value, at the first free ``yy`` of the block. An identical value already
in the block is not added again. A new block takes the first creator slot that is
free and whose element range ``(gggg,xx00-xxFF)`` holds no element, orphans (elements
without their creator) included, so nothing already in the instance is ever replaced
or doubled. One rule, :func:`place`, decides where the element goes; it serves both
the streaming path (:func:`splice`, bytes inserted into the file as it is sent) and
the decoding path (:func:`tag_dataset`).
"""

import struct
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING

from ..errors import DicomSendError, UsageError
from .elements import Encoding
from .probe import DicomInfo

DEFAULT_GROUP = 0x0021
DEFAULT_CREATOR = "Flywheel"
DEFAULT_VALUE = "DICOM Send"
_LO_MAX = 64
_FIRST_CREATOR_SLOT = 0x10
_LAST_CREATOR_SLOT = 0xFF

if TYPE_CHECKING:  # only the decoding path, in a worker, has datasets
    from pydicom.dataset import Dataset


class TaggingError(DicomSendError):
    """The provenance element cannot be placed in this instance."""


def _check_lo(what: str, text: str) -> str:
    if not text or len(text) > _LO_MAX:
        raise UsageError(f"{what} must be 1 to {_LO_MAX} characters, got {text!r}")
    if not text.isascii() or "\\" in text or any(ord(c) < 32 for c in text):
        raise UsageError(
            f"{what} must be printable ASCII without backslash, got {text!r}"
        )
    return text


def parse_group(value: str | int) -> int:
    """Read a private group number written as ``0x0021``, ``0021``, ``21`` or 33.

    Args:
        value: The group as users write it: hexadecimal text, or an int.

    Returns:
        The group number.

    Raises:
        UsageError: Not a number, even (not private) or reserved (0x0001-0x0007,
            0xFFFF).
    """
    if isinstance(value, int):
        group = value
    else:
        text = value.strip().lower().removeprefix("0x")
        try:
            group = int(text, 16)
        except ValueError:
            raise UsageError(
                f"group must be a hexadecimal group number such as 0x0021, "
                f"got {value!r}"
            ) from None
    if not 0x0009 <= group <= 0xFFFD or group % 2 == 0:
        raise UsageError(
            f"group 0x{group:04X} is not a private group: it must be odd, "
            "from 0x0009 to 0xFFFD"
        )
    return group


@dataclass(frozen=True, slots=True)
class ProvenanceTag:
    """Group, private creator and value of the provenance element."""

    group: int = DEFAULT_GROUP
    creator: str = DEFAULT_CREATOR
    value: str = DEFAULT_VALUE

    def __post_init__(self) -> None:
        parse_group(self.group)
        _check_lo("private creator (identifier)", self.creator)
        _check_lo("tag value", self.value)


@dataclass(frozen=True, slots=True)
class Placement:
    """New elements to add; both None when the instance already carries the value."""

    creator_tag: int | None
    data_tag: int | None


def _strip(value: bytes | None) -> bytes | None:
    return None if value is None else value.rstrip(b"\0 ")


def place(tag: ProvenanceTag, existing: Mapping[int, bytes | None]) -> Placement:
    """Decide where the provenance element goes, given the group's current elements.

    Args:
        tag: The provenance element.
        existing: Elements of ``tag.group`` already present: full tag -> value
            (None for values that cannot be text).

    Returns:
        The creator element to add (None if our block exists) and the data element.

    Raises:
        TaggingError: All 240 creator slots are taken by others, or our block is full.
    """
    group = tag.group << 16
    creator = tag.creator.encode("ascii")
    value = tag.value.encode("ascii")
    creators = sorted(
        (tag_ & 0xFFFF, _strip(v))
        for tag_, v in existing.items()
        if _FIRST_CREATOR_SLOT <= tag_ & 0xFFFF <= _LAST_CREATOR_SLOT
    )
    for slot, name in creators:
        if name == creator:
            block = group | (slot << 8)
            offsets = range(block, block + 0x100)
            if any(_strip(existing.get(t)) == value for t in offsets):
                return Placement(None, None)
            free = next((t for t in offsets if t not in existing), None)
            if free is None:
                raise TaggingError(
                    f"private block {tag.creator!r} in group {tag.group:04X} is full"
                )
            return Placement(None, free)
    # A new block needs its creator slot free and its whole element range free:
    # an element without its creator (an orphan) still owns its place.
    taken = {slot for slot, _ in creators}
    taken.update((tag_ & 0xFFFF) >> 8 for tag_ in existing)
    for slot in range(_FIRST_CREATOR_SLOT, _LAST_CREATOR_SLOT + 1):
        if slot not in taken:
            return Placement(group | slot, group | (slot << 8))
    raise TaggingError(
        f"all private creator slots of group {tag.group:04X} are taken (by "
        "creators or by elements of their blocks): no room for the provenance "
        "element"
    )


def _padded(text: str) -> bytes:
    raw = text.encode("ascii")
    return raw + b" " if len(raw) % 2 else raw


def encode_lo(tag: int, text: str, encoding: Encoding) -> bytes:
    """Encode one LO element in the given encoding."""
    value = _padded(text)
    order = "<" if encoding.little_endian else ">"
    if encoding.implicit_vr:
        return struct.pack(order + "HHI", tag >> 16, tag & 0xFFFF, len(value)) + value
    return struct.pack(order + "HH2sH", tag >> 16, tag & 0xFFFF, b"LO", len(value)) + (
        value
    )


def new_elements(placement: Placement, tag: ProvenanceTag) -> list[tuple[int, str]]:
    """The (tag, text) elements a placement adds, in tag order."""
    added = []
    if placement.creator_tag is not None:
        added.append((placement.creator_tag, tag.creator))
    if placement.data_tag is not None:
        added.append((placement.data_tag, tag.value))
    return added


def splice(info: DicomInfo, tag: ProvenanceTag) -> tuple[tuple[int, bytes], ...]:
    """Bytes to insert into a streamable file, as (file offset, bytes), in order.

    Raises:
        TaggingError: See :func:`place`.
        ValueError: The file is not streamable (``info.encoding`` is None).
    """
    if info.encoding is None:
        raise ValueError("splice needs a streamable file")
    existing = {e.tag: e.value for e in info.group_elements}
    inserts: list[tuple[int, bytes]] = []
    for new_tag, text in new_elements(place(tag, existing), tag):
        offset = next(
            (e.offset for e in info.group_elements if e.tag > new_tag), info.group_end
        )
        element = encode_lo(new_tag, text, info.encoding)
        if inserts and inserts[-1][0] == offset:
            inserts[-1] = (offset, inserts[-1][1] + element)
        else:
            inserts.append((offset, element))
    return tuple(inserts)


def _value_bytes(value: object) -> bytes | None:
    if isinstance(value, bytes):
        return value
    if isinstance(value, str):
        return value.encode("ascii", "replace")
    return None


def tag_dataset(ds: "Dataset", tag: ProvenanceTag) -> None:
    """Add the provenance element to a decoded dataset, by the same rule as splice.

    Raises:
        TaggingError: See :func:`place`.
    """
    existing = {
        int(elem.tag): _value_bytes(elem.value) for elem in ds.group_dataset(tag.group)
    }
    for new_tag, text in new_elements(place(tag, existing), tag):
        ds.add_new(new_tag, "LO", text)
