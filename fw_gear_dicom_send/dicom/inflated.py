"""A deflated data set (Deflated Explicit VR Little Endian), inflated as a stream.

Never held whole: :func:`inflate` yields it in pieces within a limit, and
:class:`Inflated` reads it forward by offset, a window of it kept, for
:func:`~fw_gear_dicom_send.dicom.elements.iter_top_level` to walk.
"""

import zlib
from collections.abc import Iterator

from ..errors import MalformedDicomError
from .elements import Reader, Truncated

_INFLATE_IN = 1 << 16
_INFLATE_OUT = 1 << 20
_INFLATED_WINDOW = 1 << 16


def inflate(src: Reader, offset: int, limit: int) -> Iterator[bytes]:
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


class Inflated:
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
            raise Truncated
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
                raise Truncated
            self._buffer += piece
        return bytes(self._buffer[offset - self._base : end - self._base])
