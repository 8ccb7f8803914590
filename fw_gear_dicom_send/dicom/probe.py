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

The walk over the elements is :mod:`.elements`; a deflated data set is walked as it
is inflated (:mod:`.inflated`).
"""

import contextlib
import hashlib
import logging
import os
import struct
import sys
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from ..errors import MalformedDicomError
from .elements import (
    EXPLICIT_BE,
    EXPLICIT_LE,
    IMPLICIT_LE,
    Encoding,
    Truncated,
    element_end,
    is_vr,
    iter_top_level,
    read_header,
)
from .inflated import Inflated, inflate
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
SOP_CLASS_UID = 0x00080016
SOP_INSTANCE_UID = 0x00080018
STUDY_INSTANCE_UID = 0x0020000D
SERIES_INSTANCE_UID = 0x0020000E
_UID_TAGS = frozenset(
    {SOP_CLASS_UID, SOP_INSTANCE_UID, STUDY_INSTANCE_UID, SERIES_INSTANCE_UID}
)
_HEAD_SIZE = 1 << 16
_MAX_KEPT_VALUE = 256
MAX_INFLATED_BYTES = 32 << 20
"""Largest data set a Deflated Explicit VR file may inflate to: such a file is
decoded in memory to be sent, which takes several times its inflated size
(inflated bytes, decoded elements, the encoding sent): the cap bounds the memory
of a run that sends it."""
_DIGEST_CHUNK = 1 << 20


@dataclass(frozen=True, slots=True)
class GroupElement:
    """A top-level element of the provenance group, as found in the file."""

    tag: int
    offset: int
    """Where its header starts in the file."""
    value: bytes | None
    """Its value with trailing padding removed; None when too long to matter."""


class NotSendable(Exception):
    """The file is not a DICOM instance to send; ``reason`` says why (skipped)."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


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


class _Source:
    """Random-access reads of a file: the head is cached, the rest is seeked."""

    def __init__(self, f: BinaryIO, size: int) -> None:
        self._f = f
        self.size = size
        self._head = f.read(min(size, _HEAD_SIZE))

    def read(self, offset: int, n: int) -> bytes:
        end = offset + n
        if end > self.size:
            raise Truncated
        if end <= len(self._head):
            return self._head[offset:end]
        self._f.seek(offset)
        data = self._f.read(n)
        if len(data) != n:
            raise Truncated
        return data


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
        header = read_header(src, offset, EXPLICIT_LE)
        end = element_end(src, header, EXPLICIT_LE, 0)
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
        return EXPLICIT_LE if is_vr(head[4:6]) else IMPLICIT_LE
    if 0x0002 <= group_be <= 0x0008 and is_vr(head[4:6]):
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
        except Truncated:
            raise MalformedDicomError(
                "truncated: an element runs past the end of the file"
            ) from None


@contextlib.contextmanager
def warnings_of(path: Path | str) -> Iterator[None]:
    """Log the warnings raised while a file is read, each once, with its path.

    pydicom warns about what it finds in a file (``Expected explicit VR, but
    found implicit VR``) without naming the file; inside this block its warnings
    are caught and logged as ``path: message`` when the block ends.
    """
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            yield
        finally:
            for message in dict.fromkeys(str(w.message) for w in caught):
                log.warning("%s: %s", path, message)


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
    if src.size >= 8 and src.read(0, 2) == b"\x02\x00" and is_vr(src.read(4, 2)):
        return True, _read_meta(src, 0)  # file meta without a preamble
    return False, _Meta(0, None, None)


def _dataset_encoding(src: _Source, meta: _Meta, part10: bool) -> tuple[Encoding, str]:
    """How the dataset is really encoded, and the transfer syntax to propose."""
    if part10:
        # Trust the declared byte order; tell implicit from explicit VR by the bytes.
        declared = _encoding_of(meta.transfer_syntax or EXPLICIT_VR_LITTLE_ENDIAN)
        explicit = is_vr(src.read(meta.dataset_offset + 4, 2))
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
        for header, start, _end in iter_top_level(src, meta.dataset_offset, guessed):
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
    except (MalformedDicomError, Truncated) as exc:
        if not part10 and len(uids) < 2:  # a bare "dataset" that never was one
            raise NotSendable("not DICOM") from None
        if isinstance(exc, Truncated):
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


def _probe_deflated(src: _Source, meta: _Meta, limit: int) -> DicomInfo:
    """Probe a Deflated Explicit VR dataset without holding it inflated.

    It is inflated as a stream twice: once to measure it within ``limit``, once to
    walk it.
    """
    size = sum(len(piece) for piece in inflate(src, meta.dataset_offset, limit))
    inner = Inflated(inflate(src, meta.dataset_offset, limit), size)
    uids: dict[int, str] = {}
    try:
        for header, _start, _end in iter_top_level(inner, 0, EXPLICIT_LE):
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
