"""Read a file and encode it again: the decoding paths of C-STORE and STOW-RS.

Both transports make what they send here: :func:`decoded_payload` (the file
decoded, tagged with the provenance element and encoded again) and
:func:`part10_header` (the preamble and file meta group that make a data set a
Part 10 file: the fallback's copies, STOW-RS's parts).

pydicom reads a data set whose VR encoding contradicts its transfer syntax (implicit
VR under an explicit syntax, say) in the encoding it finds, but then records the
declared one as the data set's own: its elements, which carry no VR, would then be
written with none. Here the data set keeps the encoding it was read in, so each
element gets its VR from the dictionary when it is written again. pydicom also
leaves out Group Lengths when it writes; :func:`encode` puts them back.
"""

import itertools
import logging
import zlib
from collections.abc import Iterator, Mapping

from pydicom import dcmread
from pydicom.charset import default_encoding
from pydicom.dataelem import DataElement, RawDataElement
from pydicom.dataset import Dataset, FileDataset, FileMetaDataset
from pydicom.filebase import DicomBytesIO
from pydicom.filewriter import (
    correct_ambiguous_vr,
    write_data_element,
    write_file_meta_info,
)
from pydicom.tag import Tag
from pydicom.uid import PYDICOM_IMPLEMENTATION_UID, UID

from .pixels import decompress
from .probe import warnings_of
from .provenance import ProvenanceTag, tag_dataset

log = logging.getLogger(__name__)

_META_GROUP = 6
"""pydicom writes the Group Length of no group above this one."""
_PREAMBLE = bytes(128) + b"DICM"
_MEDIA_STORAGE_SOP_CLASS_UID = 0x00020002
_MEDIA_STORAGE_SOP_INSTANCE_UID = 0x00020003


def part10_header(
    sop_class: str, sop_instance: str, syntax: str, *, whole_uids: bool = False
) -> bytes:
    """The preamble, ``DICM`` and a file meta group naming an instance and its syntax.

    What precedes a data set to make it a Part 10 file (pydicom's Implementation
    Class UID and Version Name).

    Args:
        sop_class: Media Storage SOP Class UID.
        sop_instance: Media Storage SOP Instance UID.
        syntax: Transfer Syntax UID, the data set's.
        whole_uids: Write a SOP Class or Instance UID that has a backslash as UT,
            not UI: pydicom reads such a UI value back as several values, a UT
            value as one string (for pynetdicom, which takes the C-STORE's UIDs
            from the file it sends). Without, every UID is UI.
    """
    meta = FileMetaDataset()
    for tag, uid in (
        (_MEDIA_STORAGE_SOP_CLASS_UID, sop_class),
        (_MEDIA_STORAGE_SOP_INSTANCE_UID, sop_instance),
    ):
        meta.add_new(tag, "UT" if whole_uids and "\\" in uid else "UI", uid)
    meta.TransferSyntaxUID = UID(syntax)
    meta.ImplementationClassUID = PYDICOM_IMPLEMENTATION_UID
    out = _buffer(False, True)  # file meta: explicit VR little endian
    out.write(_PREAMBLE)
    write_file_meta_info(out, meta, enforce_standard=True)
    return out.getvalue()


def decoded_payload(
    path: str, source: str, target: str, tag: ProvenanceTag
) -> tuple[bytes, str]:
    """The file decoded, tagged with the provenance element, encoded in ``target``.

    A compressed file sent in another syntax is decompressed first.

    Args:
        path: The file.
        source: The file's transfer syntax.
        target: The syntax to encode the data set in.
        tag: The provenance element.

    Returns:
        The data set's bytes (no file meta), and a note for the report if the file
        was decompressed ("" if not).

    Raises:
        ValueError: It cannot be decompressed or encoded.
        Exception: pydicom cannot read it (:func:`read_dataset`), or the element
            has no place (:func:`.provenance.tag_dataset`).
    """
    ds = read_dataset(path)
    offsets = group_length_offsets(ds)
    was, wanted = UID(source), UID(target)
    note = ""
    if is_compressed(was) and wanted != was:
        decompress(ds)  # ValueError: cannot
        note = (
            f"decompressed from {was.name} to {wanted.name}: the receiver "
            f"accepts no {was.name}"
        )
    tag_dataset(ds, tag)
    return encode(ds, wanted, offsets), note  # ValueError


def is_compressed(syntax: str) -> bool:
    """Whether a transfer syntax is a compressed one.

    False for a UID pydicom does not know as a transfer syntax (a private or
    garbled one), where ``UID.is_compressed`` raises.
    """
    uid = UID(syntax)
    return uid.is_transfer_syntax and uid.is_compressed


def read_dataset(path: str) -> FileDataset:
    """The whole file, decoded by pydicom (forced: a bare data set too).

    Raises:
        Exception: pydicom cannot read it (whatever pydicom raises).
    """
    with warnings_of(path):  # e.g. the meta contradicts the data set
        ds = dcmread(path, force=True)
    raw = next(
        (e for e in ds._dict.values() if isinstance(e, RawDataElement)),
        None,
    )
    if raw is not None and ds.original_encoding != (
        raw.is_implicit_VR,
        raw.is_little_endian,
    ):
        ds.set_original_encoding(
            raw.is_implicit_VR, raw.is_little_endian, ds.original_character_set
        )
    return ds


def group_length_offsets(ds: Dataset) -> dict[int, int]:
    """For each group above 6 with a Group Length: its value less the group's length.

    Taken when the file is read, before anything changes: a value that was right
    (offset 0) is right again after :func:`encode`; one that was wrong stays as
    wrong as it was.
    """
    values = {
        tag.group: ds[tag].value
        for tag in ds.keys()  # noqa: SIM118 - iterating a Dataset gives elements
        if tag.element == 0 and tag.group > _META_GROUP
    }
    wanted = {group for group, value in values.items() if isinstance(value, int)}
    if not wanted:
        return {}
    implicit, little = ds.original_encoding
    if implicit is None or little is None:
        return {}
    return {
        group: int(values[group]) - len(data)
        for group, data in _groups(ds, implicit, little, wanted)
    }


def encode(ds: Dataset, syntax: str, offsets: Mapping[int, int] | None = None) -> bytes:
    """The data set encoded in ``syntax`` as pydicom writes it, group lengths kept.

    pydicom leaves out every Group Length (gggg,0000) of a group above 6; a data
    set that had one gets it again here, counted in the new encoding plus its
    offset (see :func:`group_length_offsets`). Elements written in the encoding
    they were read in keep their bytes.

    Raises:
        ValueError: pydicom cannot encode it; the message says why, in one line.
    """
    uid = UID(syntax)
    out = _buffer(uid.is_implicit_VR, uid.is_little_endian)
    try:
        for group, data in _groups(ds, uid.is_implicit_VR, uid.is_little_endian):
            if Tag(group, 0) in ds and group > _META_GROUP:
                value = len(data) + (offsets or {}).get(group, 0)
                write_data_element(out, DataElement(Tag(group, 0), "UL", value))
            out.write(data)
    except Exception as exc:  # pydicom raises what it raises
        first = str(exc).strip().splitlines()
        why = first[-1].strip() if first else type(exc).__name__
        raise ValueError(f"cannot encode the data set as {uid.name}: {why}") from None
    encoded = out.getvalue()
    if uid.is_deflated:
        compressor = zlib.compressobj(
            zlib.Z_DEFAULT_COMPRESSION, zlib.DEFLATED, -zlib.MAX_WBITS
        )
        encoded = compressor.compress(encoded) + compressor.flush()
        if len(encoded) % 2:  # PS3.5 A.5: padded to an even length
            encoded += b"\0"
    return encoded


def _groups(
    ds: Dataset, implicit: bool, little: bool, only: set[int] | None = None
) -> Iterator[tuple[int, bytes]]:
    """Each group's elements encoded as pydicom's ``write_dataset`` would.

    Without their Group Length; only the groups in ``only``, if given.
    """
    convert = ds.original_encoding != (implicit, little) or (
        ds.original_character_set != ds._character_set
    )
    if convert:  # as pydicom's write_dataset does
        ds = correct_ambiguous_vr(ds, little)
    charset = ds.get("SpecificCharacterSet", default_encoding)
    for group, members in itertools.groupby(sorted(ds.keys()), key=lambda t: t.group):
        if only is not None and group not in only:
            continue
        body = _buffer(implicit, little)
        for tag in members:
            if tag.element == 0 and group > _META_GROUP:
                continue
            # Indexing converts each element for the new encoding.
            write_data_element(body, ds[tag] if convert else ds.get_item(tag), charset)
        yield group, body.getvalue()


def _buffer(implicit: bool, little: bool) -> DicomBytesIO:
    buffer = DicomBytesIO()
    buffer.is_implicit_VR = implicit
    buffer.is_little_endian = little
    return buffer
