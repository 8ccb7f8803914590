"""The conformance suite's corpus, receivers and comparisons.

The corpus is every file of pydicom's bundled test data and of the ``pydicom-data``
package (its files are in the wheel: nothing is fetched). The receivers keep the
exact bytes of every data set they receive (pynetdicom's raw P-DATA stream, never
a re-encoding); the STOW endpoint keeps each part's bytes the same way.
"""

import io
import struct
import threading
import warnings
import zlib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Self, cast

import data_store  # pydicom-data
import numpy as np
import pydicom
from pydicom import dcmread
from pydicom.dataelem import RawDataElement
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.filebase import DicomBytesIO
from pydicom.filereader import _read_file_meta_info, read_dataset, read_preamble
from pydicom.filewriter import write_data_element
from pydicom.sequence import Sequence as DicomSequence
from pydicom.tag import Tag
from pydicom.uid import (
    UID,
    ExplicitVRBigEndian,
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
)
from pynetdicom import AE, ALL_TRANSFER_SYNTAXES, AllStoragePresentationContexts, evt
from pynetdicom.dimse_primitives import C_STORE

PYDICOM_FILES = Path(pydicom.__file__).parent / "data" / "test_files"
PYDICOM_DATA_FILES = Path(cast(str, data_store.__file__)).parent / "data"
PROVENANCE_GROUP = 0x0021

UNCOMPRESSED = (ExplicitVRLittleEndian, ImplicitVRLittleEndian, ExplicitVRBigEndian)
EVERY_SYNTAX = tuple(dict.fromkeys([*UNCOMPRESSED, *ALL_TRANSFER_SYNTAXES]))

PIXEL_DATA = 0x7FE00010
DECOMPRESSION_CHANGES = frozenset(
    {
        PIXEL_DATA,
        0x7FE00000,  # its Group Length
        0x00280000,  # the Group Length of the image pixel elements
        0x00280004,  # Photometric Interpretation (YCbCr JPEG -> RGB)
        0x00280006,  # Planar Configuration
        0x00280008,  # Number of Frames
        0x00282110,  # Lossy Image Compression ("01" for a lossy source)
    }
)
"""What decompression may change besides the transfer syntax."""


def corpus() -> list[tuple[str, Path]]:
    """Every file of both packages, named ``pydicom/REL`` or ``pydicom-data/REL``."""
    files = []
    roots = (("pydicom", PYDICOM_FILES), ("pydicom-data", PYDICOM_DATA_FILES))
    for prefix, root in roots:
        for path in sorted(root.rglob("*")):
            if path.is_file() and "__pycache__" not in path.parts:
                files.append((f"{prefix}/{path.relative_to(root).as_posix()}", path))
    return files


def sop_classes(files: Sequence[tuple[str, Path]]) -> set[str]:
    """The SOP Class UIDs of the corpus's files that pydicom can read."""
    found = set()
    for _, path in files:
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                ds = dcmread(path, force=True, specific_tags=["SOPClassUID"])
        except Exception:
            continue
        if "SOPClassUID" in ds:
            found.add(str(ds.SOPClassUID))
    return found


@dataclass(frozen=True, slots=True)
class Arrival:
    """One C-STORE as the receiver got it."""

    sop_instance_uid: str
    """The Affected SOP Instance UID of the request."""
    transfer_syntax: str
    data: bytes
    """The data set's bytes exactly as they came."""


class RawReceiver:
    """A pynetdicom Storage SCP that keeps each data set's bytes as received.

    It knows pynetdicom's storage SOP classes (those of ``only`` among them, if
    given: an association then costs less to negotiate), each in the given
    transfer syntaxes.
    """

    def __init__(self, syntaxes: Sequence[str], only: set[str] | None = None) -> None:
        self.arrivals: list[Arrival] = []
        self._lock = threading.Lock()
        ae = AE(ae_title="STORE-SCP")
        ae.require_called_aet = True
        for context in AllStoragePresentationContexts:
            sop = str(context.abstract_syntax)
            if only is None or sop in only:
                ae.add_supported_context(sop, list(syntaxes))
        self._ae = ae
        self.port = 0

    def __enter__(self) -> Self:
        server = self._ae.start_server(
            ("127.0.0.1", 0),
            block=False,
            evt_handlers=[(evt.EVT_C_STORE, self._on_store)],
        )
        assert server is not None
        self._server = server
        self.port = int(self._server.server_address[1])
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._server.shutdown()

    def _on_store(self, event: evt.Event) -> int:
        request = cast(C_STORE, event.request)
        assert request.DataSet is not None
        arrival = Arrival(
            str(request.AffectedSOPInstanceUID),
            str(event.context.transfer_syntax),
            request.DataSet.getvalue(),
        )
        with self._lock:
            self.arrivals.append(arrival)
        return 0x0000

    def take(self) -> list[Arrival]:
        """What arrived since the last call."""
        with self._lock:
            taken, self.arrivals = self.arrivals, []
        return taken


@dataclass(frozen=True, slots=True)
class Encoded:
    """A Part 10 file's transfer syntax and data set bytes."""

    syntax: UID
    data: bytes
    """The data set's bytes (after the file meta), as they lie in the file."""


def split_part10(content: bytes) -> Encoded:
    """The transfer syntax and data set bytes of a file, found by pydicom."""
    f = io.BytesIO(content)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        read_preamble(f, force=True)
        meta = _read_file_meta_info(f)
    data = f.read()
    if "TransferSyntaxUID" in meta:
        return Encoded(UID(str(meta.TransferSyntaxUID)), data)
    # No syntax named: the one the data set is encoded in, as pydicom finds it.
    implicit, little = read_whole(content).original_encoding
    if implicit:
        return Encoded(ImplicitVRLittleEndian, data)
    return Encoded(ExplicitVRLittleEndian if little else ExplicitVRBigEndian, data)


def decode(data: bytes, syntax: str) -> Dataset:
    """A data set's bytes, decoded by pydicom in the syntax they came in."""
    uid = UID(syntax)
    if uid.is_deflated:
        data = zlib.decompress(data, -zlib.MAX_WBITS)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ds = read_dataset(io.BytesIO(data), uid.is_implicit_VR, uid.is_little_endian)
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = uid
    return ds


def read_whole(content: bytes) -> Dataset:
    """A file as pydicom reads it (forced: bare data sets too).

    A data set whose VR encoding contradicts its transfer syntax keeps the
    encoding pydicom found, so that its elements convert.
    """
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ds = dcmread(io.BytesIO(content), force=True)
    raw = next((e for e in ds._dict.values() if isinstance(e, RawDataElement)), None)
    if raw is not None:
        ds.set_original_encoding(
            raw.is_implicit_VR, raw.is_little_endian, ds.original_character_set
        )
    return ds


def provenance_tags(received: Dataset, source: Dataset) -> list[int]:
    """Top-level tags of the provenance group in ``received`` but not ``source``."""
    return sorted(
        int(tag)
        for tag in received.keys()  # noqa: SIM118 - a Dataset iterates elements
        if tag.group == PROVENANCE_GROUP and tag not in source
    )


def _value_bytes(ds: Dataset, tag: int) -> bytes:
    """An element's value, encoded implicit VR little endian (a canonical form)."""
    out = DicomBytesIO()
    out.is_little_endian = True
    out.is_implicit_VR = True
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        write_data_element(out, ds[tag])
    return out.getvalue()[8:]


def text(ds: Dataset, tag: int) -> str:
    """A short text element's value, whatever VR it was read with (UN included)."""
    return _value_bytes(ds, tag).rstrip(b"\0 ").decode("ascii", "replace")


def differences(
    source: Dataset,
    received: Dataset,
    ignore: frozenset[int] = frozenset(),
    path: str = "",
) -> list[str]:
    """Where two data sets differ, element by element, into every sequence item."""
    found = []
    for tag in sorted(set(source.keys()) | set(received.keys())):
        if int(tag) in ignore:
            continue
        where = f"{path}{Tag(tag)}"
        if tag not in received:
            found.append(f"{where} missing")
            continue
        if tag not in source:
            found.append(f"{where} added")
            continue
        a, b = source[tag], received[tag]
        if a.VR == "SQ" or b.VR == "SQ":
            items_a = cast(DicomSequence, a.value) if a.VR == "SQ" else None
            items_b = cast(DicomSequence, b.value) if b.VR == "SQ" else None
            if items_a is None or items_b is None or len(items_a) != len(items_b):
                found.append(f"{where} sequence differs")
                continue
            for n, (x, y) in enumerate(zip(items_a, items_b, strict=True)):
                found.extend(differences(x, y, frozenset(), f"{where}[{n}]."))
            continue
        if _value_bytes(source, tag) != _value_bytes(received, tag):
            found.append(f"{where} value differs")
    return found


def element_bytes(ds: Dataset, tag: int, syntax: str) -> bytes:
    """An element of ``ds`` (short VR, like LO) encoded as it stands in ``syntax``."""
    uid = UID(syntax)
    value = _value_bytes(ds, tag)
    group, element = tag >> 16, tag & 0xFFFF
    endian = "<" if uid.is_little_endian else ">"
    if uid.is_implicit_VR:
        return struct.pack(f"{endian}HHI", group, element, len(value)) + value
    return (
        struct.pack(f"{endian}HH", group, element)
        + str(ds[tag].VR).encode()
        + struct.pack(f"{endian}H", len(value))
        + value
    )


def without_inserts(
    received: bytes, source: bytes, inserts: list[bytes]
) -> bytes | None:
    """``received`` with each of ``inserts`` taken out where it was put in.

    Each insert, in order, is looked for where what is left of ``received``
    first departs from ``source``. None if one is not there.
    """
    rest = received
    for insert in inserts:
        common = _common_prefix(rest, source)
        for start in range(max(0, common - len(insert)), common + 1):
            if rest[start : start + len(insert)] == insert:
                rest = rest[:start] + rest[start + len(insert) :]
                break
        else:
            return None
    return rest


def _common_prefix(a: bytes, b: bytes) -> int:
    lo, hi = 0, min(len(a), len(b))
    while lo < hi:  # the longest equal prefix, by bisection
        mid = (lo + hi + 1) // 2
        if a[:mid] == b[:mid]:
            lo = mid
        else:
            hi = mid - 1
    return lo


def pixels_equal(source: Dataset, received: Dataset) -> bool:
    """Whether both decode to the same pixel array."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return bool(np.array_equal(source.pixel_array, received.pixel_array))
