"""C-STORE on the wire: the request's command, data set and framing; the response.

The lean data path of :mod:`.fastpath`. A C-STORE-RQ's
command set has a fixed layout (PS3.7 9.3.1.1): it is encoded here with ``struct``
instead of through pydicom, which would cost as much as the rest of sending a
typical instance. ``tests/test_wire.py`` checks that the bytes are those
pynetdicom's own ``C_STORE_RQ.encode_msg`` produces, for any UIDs, message IDs and
PDU sizes. The data set is read from its file about a megabyte at a time into one
reused buffer, and its P-DATA-TF PDUs go out as a scatter list of headers and
views of that buffer: one ``readinto`` and one ``sendmsg`` per megabyte, no copy
in Python. The C-STORE-RSP is read back by :func:`read_store_response`, in the same
thread: pynetdicom's DUL thread would take it off the socket, decode it into a
pydicom Dataset and hand it over through two queues, with thread wake-ups on
every message.
"""

import io
import socket
import ssl
import struct
from collections.abc import Callable
from dataclasses import dataclass
from typing import BinaryIO

__all__ = [
    "Framer",
    "Payload",
    "PeerEnded",
    "StoreResponse",
    "command_pdus",
    "read_store_response",
    "store_command",
]

# P-DATA-TF: type, reserved, PDU length; PDV item: length, context ID, control header.
_PDATA_HEADER = struct.Struct(">BBIIBB")
_PDU_HEADER = struct.Struct(">BxI")
_PDV_HEADER = struct.Struct(">IBB")
_P_DATA_TF = 0x04
_A_RELEASE_RQ = 0x05
_A_ABORT = 0x07
_MAX_RESPONSE_PDU = 1 << 20
_ELEMENT = struct.Struct("<HHI")
_US = struct.Struct("<HHIH")
_COMMAND_LAST = 0x03
_COMMAND_MORE = 0x01
_DATA_LAST = 0x02
_DATA_MORE = 0x00
_C_STORE_RQ = 0x0001
_C_STORE_RSP = 0x8001
_NO_DATA_SET = 0x0101
_DATA_SET_PRESENT = 0x0001
PRIORITY_LOW = 0x0002
"""The priority DCMTK's storescu sends, and ours."""
_WRITE_SIZE = 1 << 20
_IOV_MAX = 1024
"""Buffers one ``sendmsg`` takes at most (Linux's ``IOV_MAX``): a small maximum
PDU length makes more per megabyte."""
_UNLIMITED_FRAGMENT = 1 << 20


class Payload:
    """A file's dataset bytes with insertions spliced in, read sequentially.

    Args:
        f: The file (or any seekable binary stream).
        start: Offset of the first byte to send.
        end: Offset after the last byte to send.
        inserts: ``(offset, bytes)`` to insert before the byte at each offset, in
            order of offset.
    """

    def __init__(
        self, f: BinaryIO, start: int, end: int, inserts: tuple[tuple[int, bytes], ...]
    ) -> None:
        self._f = f
        self._pieces: list[tuple[int, int] | bytes] = []
        position = start
        for offset, data in inserts:
            self._pieces.append((position, offset))
            self._pieces.append(data)
            position = offset
        self._pieces.append((position, end))
        self._pieces.reverse()
        self.length = end - start + sum(len(data) for _, data in inserts)
        """Bytes in all."""

    @classmethod
    def from_bytes(cls, data: bytes) -> "Payload":
        """A payload of bytes already encoded."""
        return cls(io.BytesIO(data), 0, len(data), ())

    def readinto(self, buffer: memoryview) -> int:
        """Fill ``buffer``; the number of bytes put in, fewer only at the end.

        Raises:
            OSError: The file is shorter than it was when probed, or unreadable.
        """
        filled = 0
        wanted = len(buffer)
        while filled < wanted and self._pieces:
            piece = self._pieces.pop()
            space = buffer[filled:]
            if isinstance(piece, bytes):
                n = min(len(piece), len(space))
                space[:n] = piece[:n]
                rest: tuple[int, int] | bytes = piece[n:]
                left = bool(rest)
            else:
                start, end = piece
                self._f.seek(start)
                n = self._f.readinto(space[: end - start]) or 0  # type: ignore[attr-defined]
                if not n and start < end:
                    raise OSError("file changed while being sent (shorter than probed)")
                rest = (start + n, end)
                left = start + n < end
            if left:
                self._pieces.append(rest)
            filled += n
        return filled


def _uid_element(element: int, uid: str) -> bytes:
    value = uid.encode("ascii")
    if len(value) % 2:
        value += b"\x00"
    return _ELEMENT.pack(0x0000, element, len(value)) + value


def store_command(message_id: int, sop_class_uid: str, sop_instance_uid: str) -> bytes:
    """The command set of a C-STORE-RQ with a data set, Implicit VR Little Endian.

    Elements in tag order (PS3.7 9.3.1.1): group length, Affected SOP Class UID,
    Command Field, Message ID, Priority, Command Data Set Type, Affected SOP
    Instance UID.
    """
    body = b"".join(
        (
            _uid_element(0x0002, sop_class_uid),
            _US.pack(0x0000, 0x0100, 2, _C_STORE_RQ),
            _US.pack(0x0000, 0x0110, 2, message_id),
            _US.pack(0x0000, 0x0700, 2, PRIORITY_LOW),
            _US.pack(0x0000, 0x0800, 2, _DATA_SET_PRESENT),
            _uid_element(0x1000, sop_instance_uid),
        )
    )
    return _ELEMENT.pack(0x0000, 0x0000, 4) + struct.pack("<I", len(body)) + body


def _header(context_id: int, control: int, length: int) -> bytes:
    """The 12 bytes before a fragment: P-DATA-TF PDU header and PDV item header."""
    return _PDATA_HEADER.pack(0x04, 0x00, length + 6, length + 2, context_id, control)


def _fragment_size(max_pdu: int) -> int:
    """The largest fragment a PDU of at most ``max_pdu`` bytes carries (0: any)."""
    return max_pdu - 6 if max_pdu else _UNLIMITED_FRAGMENT


def command_fragments(command: bytes, max_pdu: int) -> list[tuple[int, bytes]]:
    """A command set cut into PDV fragments as pynetdicom cuts it.

    Returns:
        Each fragment with its control header (command; last or not).
    """
    size = len(command) if not max_pdu else _fragment_size(max_pdu)
    starts = range(0, len(command), size)
    return [
        (_COMMAND_LAST if i == starts[-1] else _COMMAND_MORE, command[i : i + size])
        for i in starts
    ]


def command_pdus(command: bytes, context_id: int, max_pdu: int) -> bytes:
    """The P-DATA-TF PDUs carrying a command set, one fragment each."""
    return b"".join(
        _header(context_id, control, len(piece)) + piece
        for control, piece in command_fragments(command, max_pdu)
    )


def _send_all(sock: socket.socket, buffers: list[bytes | memoryview]) -> None:
    """``sendmsg`` until every buffer has gone, at most :data:`_IOV_MAX` at a time.

    A socket with a timeout may send part of them at a time. A TLS socket has no
    ``sendmsg``: it gets the buffers joined (encrypting copies them anyway).
    """
    if isinstance(sock, ssl.SSLSocket):
        sock.sendall(b"".join(buffers))
        return
    for start in range(0, len(buffers), _IOV_MAX):
        _send_batch(sock, buffers[start : start + _IOV_MAX])


def _send_batch(sock: socket.socket, batch: list[bytes | memoryview]) -> None:
    """``sendmsg`` until every buffer of the batch has gone."""
    sent = sock.sendmsg(batch)
    if sent == sum(map(len, batch)):
        return  # most often: all of it at once
    views = [memoryview(b) for b in batch]
    first = 0
    while True:
        while sent >= len(views[first]):  # gone whole
            sent -= len(views[first])
            first += 1
            if first == len(views):
                return
        views[first] = views[first][sent:]
        sent = sock.sendmsg(views[first:])


class Framer:
    """Frames C-STORE requests and writes them; it owns the reused read buffer."""

    def __init__(self) -> None:
        self._buffer = memoryview(bytearray(_WRITE_SIZE))

    def write(
        self,
        sock: socket.socket,
        alive: Callable[[], bool],
        request: tuple[bytes, int, int],
        payload: Payload,
    ) -> bool:
        """Write the command's PDUs, then the data set's, in writes of about 1 MB.

        Args:
            sock: The association's connected socket.
            alive: Whether the association can still carry data; asked before
                each write, so that a peer's abort stops the writing.
            request: The command set, the presentation context ID, and the
                receiver's maximum PDU length (0: unlimited).
            payload: The data set.

        Returns:
            False if the association died or the connection broke before
            everything went out.

        Raises:
            TimeoutError: The peer took in nothing for the socket's timeout.
            OSError: The file could not be read (the peer then has part of it).
        """
        command, context_id, max_pdu = request
        fragment = _fragment_size(max_pdu)
        # Whole fragments per write, at least one (the buffer grows for a huge PDU).
        per_write = max(1, _WRITE_SIZE // fragment) * fragment
        if len(self._buffer) < per_write:
            self._buffer = memoryview(bytearray(per_write))
        buffers: list[bytes | memoryview] = [command_pdus(command, context_id, max_pdu)]
        whole = _header(context_id, _DATA_MORE, fragment)  # all but a write's last
        view = self._buffer
        remaining = payload.length
        while True:
            filled = payload.readinto(view[: min(per_write, remaining)])
            if filled < min(per_write, remaining):
                raise OSError("file changed while being sent (shorter than probed)")
            remaining -= filled
            if filled:
                last = (filled - 1) // fragment * fragment
                for start in range(0, last, fragment):
                    buffers += (whole, view[start : start + fragment])
                control = _DATA_MORE if remaining else _DATA_LAST
                tail = view[last:filled]
                buffers += (_header(context_id, control, len(tail)), tail)
            if not alive():
                return False
            try:
                _send_all(sock, buffers)
            except TimeoutError:
                raise
            except OSError:
                return False
            buffers = []
            if remaining == 0:
                return True


class PeerEnded(Exception):
    """The peer ended the association, or broke the protocol, instead of answering."""


@dataclass(frozen=True, slots=True)
class StoreResponse:
    """The parts of a C-STORE-RSP that tell what became of the instance."""

    message_id: int
    """Message ID Being Responded To (0000,0120)."""
    status: int
    """Status (0000,0900)."""
    error_comment: str = ""
    """Error Comment (0000,0902), if the peer gave one."""


def _receive(sock: socket.socket, view: memoryview) -> None:
    """Fill ``view`` from the socket.

    Raises:
        PeerEnded: The connection closed first.
        TimeoutError: The socket's timeout passed.
    """
    got = 0
    while got < len(view):
        n = sock.recv_into(view[got:])
        if not n:
            raise PeerEnded("the connection closed")
        got += n


def _read_pdu(sock: socket.socket) -> tuple[int, bytearray]:
    """One PDU: its type and its body."""
    header = bytearray(_PDU_HEADER.size)
    _receive(sock, memoryview(header))
    kind, length = _PDU_HEADER.unpack(header)
    if length > _MAX_RESPONSE_PDU:
        raise PeerEnded(f"a PDU of {length} bytes (type 0x{kind:02X}) came instead")
    body = bytearray(length)
    _receive(sock, memoryview(body))
    return kind, body


def _command_set(sock: socket.socket) -> bytes:
    """Read P-DATA-TF PDUs until a whole command set has come; return it."""
    fragments: list[bytes] = []
    while True:
        kind, body = _read_pdu(sock)
        if kind == _A_ABORT:
            source, reason = (body[2], body[3]) if len(body) >= 4 else (0, 0)
            raise PeerEnded(f"A-ABORT, source {source}, reason {reason}")
        if kind == _A_RELEASE_RQ:
            raise PeerEnded("the peer asked to release the association mid-way")
        if kind != _P_DATA_TF:
            raise PeerEnded(f"an unexpected PDU of type 0x{kind:02X} came")
        offset = 0
        while offset + _PDV_HEADER.size <= len(body):
            length, _, control = _PDV_HEADER.unpack_from(body, offset)
            if length < 2 or offset + 4 + length > len(body):
                raise PeerEnded("a malformed P-DATA-TF PDU came")
            if not control & 0x01:
                raise PeerEnded("a data set came where a C-STORE-RSP was due")
            fragments.append(bytes(body[offset + 6 : offset + 4 + length]))
            offset += 4 + length
            if control & 0x02:
                if offset != len(body):
                    raise PeerEnded("more came after the C-STORE-RSP")
                return b"".join(fragments)
        if offset != len(body):
            raise PeerEnded("a malformed P-DATA-TF PDU came")


def _elements(command: bytes) -> dict[int, bytes]:
    """The elements of an Implicit VR Little Endian command set, by element number."""
    elements: dict[int, bytes] = {}
    offset = 0
    while offset + _ELEMENT.size <= len(command):
        group, element, length = _ELEMENT.unpack_from(command, offset)
        offset += _ELEMENT.size
        if group != 0x0000 or offset + length > len(command):
            raise PeerEnded("a malformed command set came")
        elements[element] = command[offset : offset + length]
        offset += length
    if offset != len(command):
        raise PeerEnded("a malformed command set came")
    return elements


def _us(elements: dict[int, bytes], element: int) -> int | None:
    value = elements.get(element)
    return int.from_bytes(value, "little") if value and len(value) == 2 else None


def read_store_response(sock: socket.socket) -> StoreResponse:
    """Read the C-STORE-RSP that answers a request just written to ``sock``.

    Nothing else is due from the peer then; anything else ends the association.

    Raises:
        PeerEnded: The connection closed, the peer aborted or asked to release, or
            what came is not a C-STORE-RSP (the message says which).
        TimeoutError: Nothing came within the socket's timeout.
    """
    elements = _elements(_command_set(sock))
    field = _us(elements, 0x0100)
    message_id = _us(elements, 0x0120)
    status = _us(elements, 0x0900)
    if field != _C_STORE_RSP or message_id is None or status is None:
        raise PeerEnded(
            "a message that is not a valid C-STORE-RSP came "
            f"(command field {field if field is None else hex(field)})"
        )
    if _us(elements, 0x0800) != _NO_DATA_SET:
        raise PeerEnded("a C-STORE-RSP announcing a data set came")
    comment = elements.get(0x0902, b"").decode("ascii", "replace").strip(" \x00")
    return StoreResponse(message_id, status, comment)
