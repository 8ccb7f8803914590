"""The lean C-STORE framing: the same bytes as pynetdicom's own encoding."""

import io
import socket
import struct
import threading

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st
from pynetdicom.dimse_messages import C_ECHO_RSP, C_STORE_RQ, C_STORE_RSP
from pynetdicom.dimse_primitives import C_ECHO, C_STORE
from pynetdicom.pdu import A_ABORT_RQ, P_DATA_TF
from pynetdicom.pdu_primitives import P_DATA

from fw_gear_dicom_send.transport.wire import (
    Framer,
    Payload,
    PeerEnded,
    StoreResponse,
    command_pdus,
    read_store_response,
    store_command,
)

UIDS = st.from_regex(
    r"(0|[1-9][0-9]{0,8})(\.(0|[1-9][0-9]{0,8})){0,12}", fullmatch=True
).filter(lambda uid: len(uid) <= 64)
# 0 is "unlimited"; DCMTK's minimum is 4096; tiny ones cut the command itself.
MAX_PDUS = st.one_of(st.just(0), st.integers(min_value=20, max_value=1 << 17))


def pynetdicom_command(
    message_id: int, sop_class: str, sop_instance: str, context_id: int, max_pdu: int
) -> bytes:
    """How pynetdicom frames a C-STORE-RQ's command set."""
    request = C_STORE()
    request.MessageID = message_id
    request.AffectedSOPClassUID = sop_class
    request.AffectedSOPInstanceUID = sop_instance
    request.Priority = 0x0002
    message = C_STORE_RQ()
    message.primitive_to_message(request)
    message.command_set.CommandDataSetType = 0x0001
    pdus = []
    for pdata in message.encode_msg(context_id, max_pdu):
        pdu = P_DATA_TF()
        pdu.from_primitive(pdata)
        pdus.append(pdu.encode())
    return b"".join(pdus)


@settings(max_examples=300, deadline=None)
@given(
    message_id=st.integers(min_value=1, max_value=0xFFFF),
    sop_class=UIDS,
    sop_instance=UIDS,
    context_id=st.integers(min_value=1, max_value=255).filter(lambda n: n % 2),
    max_pdu=MAX_PDUS,
)
def test_the_command_is_pynetdicoms(
    message_id: int, sop_class: str, sop_instance: str, context_id: int, max_pdu: int
) -> None:
    ours = command_pdus(
        store_command(message_id, sop_class, sop_instance), context_id, max_pdu
    )
    assert ours == pynetdicom_command(
        message_id, sop_class, sop_instance, context_id, max_pdu
    )


def parse_pdus(stream: bytes) -> list[tuple[int, int, bytes]]:
    """P-DATA-TF PDUs of one PDV each, as (context ID, control header, data)."""
    pdus = []
    offset = 0
    while offset < len(stream):
        assert stream[offset] == 0x04
        length = int.from_bytes(stream[offset + 2 : offset + 6], "big")
        pdv_length = int.from_bytes(stream[offset + 6 : offset + 10], "big")
        assert pdv_length == length - 4  # one PDV per PDU
        context, control = stream[offset + 10], stream[offset + 11]
        pdus.append((context, control, stream[offset + 12 : offset + 6 + length]))
        offset += 6 + length
    return pdus


@settings(max_examples=60, deadline=None)
@given(
    size=st.integers(min_value=1, max_value=3 << 20),
    max_pdu=st.sampled_from([0, 4096, 16384, 131072, 1 << 21]),
    inserts=st.lists(st.binary(min_size=1, max_size=40), max_size=3),
)
@example(size=3 * (16384 - 6), max_pdu=16384, inserts=[])  # whole fragments only
@example(size=2 << 20, max_pdu=0, inserts=[])  # whole writes only
@example(size=1, max_pdu=4096, inserts=[])
def test_the_data_set_goes_out_whole_in_fragments_that_fit(
    size: int, max_pdu: int, inserts: list[bytes]
) -> None:
    data = bytes(i % 251 for i in range(size))
    offsets = sorted(
        {size * (i + 1) // (len(inserts) + 1) for i in range(len(inserts))}
    )
    placed = tuple(zip(offsets, inserts, strict=False))
    expected = bytearray()
    position = 0
    for offset, extra in placed:
        expected += data[position:offset] + extra
        position = offset
    expected += data[position:]
    command = store_command(7, "1.2.3", "1.2.3.4")

    left, right = socket.socketpair()
    received = bytearray()

    def drain() -> None:
        while chunk := right.recv(1 << 20):
            received.extend(chunk)

    reader = threading.Thread(target=drain)
    reader.start()
    with left:
        payload = Payload(io.BytesIO(data), 0, size, placed)
        assert Framer().write(left, lambda: True, (command, 3, max_pdu), payload)
    reader.join()
    right.close()

    pdus = parse_pdus(bytes(received))
    commands = [p for p in pdus if p[1] & 0x01]
    fragments = [p for p in pdus if not p[1] & 0x01]
    assert b"".join(p[2] for p in commands) == command
    assert b"".join(p[2] for p in fragments) == bytes(expected)
    assert {p[0] for p in pdus} == {3}
    assert [p[1] for p in fragments] == [0x00] * (len(fragments) - 1) + [0x02]
    if max_pdu:
        assert all(len(p[2]) + 6 <= max_pdu for p in pdus)


def test_a_peer_gone_stops_the_write() -> None:
    left, right = socket.socketpair()
    with left:
        payload = Payload(io.BytesIO(b"x" * 100_000), 0, 100_000, ())
        command = store_command(1, "1.2", "1.2.3")
        assert not Framer().write(left, lambda: False, (command, 1, 16384), payload)
    right.close()


def test_a_file_shorter_than_probed_is_an_error() -> None:
    left, right = socket.socketpair()
    with left, right:
        payload = Payload(io.BytesIO(b"x" * 100), 0, 5000, ())
        command = store_command(1, "1.2", "1.2.3")
        with pytest.raises(OSError, match="shorter than probed"):
            Framer().write(left, lambda: True, (command, 1, 16384), payload)


def pynetdicom_response(
    message_id: int, status: int, comment: str, context_id: int, max_pdu: int
) -> bytes:
    """How pynetdicom (as a Storage SCP) frames a C-STORE-RSP."""
    response = C_STORE()
    response.MessageIDBeingRespondedTo = message_id
    response.AffectedSOPClassUID = "1.2.840.10008.5.1.4.1.1.2"
    response.AffectedSOPInstanceUID = "1.2.3.4.5"
    response.Status = status
    if comment:
        response.ErrorComment = comment  # type: ignore[assignment]
    message = C_STORE_RSP()
    message.primitive_to_message(response)
    return b"".join(
        _pdu_bytes(pdata) for pdata in message.encode_msg(context_id, max_pdu)
    )


def _pdu_bytes(pdata: P_DATA) -> bytes:
    pdu = P_DATA_TF()
    pdu.from_primitive(pdata)
    return bytes(pdu.encode())


def read_from(stream: bytes, timeout: float = 5.0) -> StoreResponse:
    """What read_store_response makes of bytes a peer wrote (then hung up)."""
    left, right = socket.socketpair()
    with left, right:
        left.settimeout(timeout)
        right.sendall(stream)
        right.shutdown(socket.SHUT_WR)
        return read_store_response(left)


@settings(max_examples=200, deadline=None)
@given(
    message_id=st.integers(min_value=1, max_value=0xFFFF),
    status=st.integers(min_value=0, max_value=0xFFFF),
    comment=st.from_regex(r"[A-Za-z0-9 .:-]{0,64}", fullmatch=True).map(str.strip),
    context_id=st.integers(min_value=1, max_value=255).filter(lambda n: n % 2),
    max_pdu=MAX_PDUS,
)
def test_the_response_reads_as_pynetdicom_wrote_it(
    message_id: int, status: int, comment: str, context_id: int, max_pdu: int
) -> None:
    stream = pynetdicom_response(message_id, status, comment, context_id, max_pdu)
    assert read_from(stream) == StoreResponse(message_id, status, comment)


def test_several_responses_one_after_the_other() -> None:
    left, right = socket.socketpair()
    with left, right:
        right.sendall(
            pynetdicom_response(1, 0x0000, "", 1, 0)
            + pynetdicom_response(2, 0xA700, "disk full", 1, 20)
        )
        assert read_store_response(left) == StoreResponse(1, 0x0000)
        assert read_store_response(left) == StoreResponse(2, 0xA700, "disk full")


def test_an_abort_instead_of_the_response() -> None:
    abort = A_ABORT_RQ()
    abort.source = 0x02
    abort.reason_diagnostic = 0x06
    with pytest.raises(PeerEnded, match=r"^A-ABORT, source 2, reason 6$"):
        read_from(abort.encode())


def test_a_release_request_instead_of_the_response() -> None:
    with pytest.raises(PeerEnded, match="asked to release"):
        read_from(bytes([0x05, 0, 0, 0, 0, 4, 0, 0, 0, 0]))


def test_the_connection_closed_instead_of_the_response() -> None:
    half = pynetdicom_response(1, 0, "", 1, 0)[:20]
    for stream in (b"", half):
        with pytest.raises(PeerEnded, match="the connection closed"):
            read_from(stream)


def test_another_message_instead_of_the_response() -> None:
    echo = C_ECHO()
    echo.MessageIDBeingRespondedTo = 1
    echo.Status = 0
    message = C_ECHO_RSP()
    message.primitive_to_message(echo)
    stream = b"".join(_pdu_bytes(p) for p in message.encode_msg(1, 0))
    with pytest.raises(PeerEnded, match=r"not a valid C-STORE-RSP.*0x8030"):
        read_from(stream)


def test_a_data_set_instead_of_the_response() -> None:
    data = bytes([0x04, 0, 0, 0, 0, 8, 0, 0, 0, 4, 1, 0x02, 0xAB, 0xCD])
    with pytest.raises(PeerEnded, match="data set came"):
        read_from(data)


def test_a_malformed_pdu_instead_of_the_response() -> None:
    # a command fragment, not the last, then 3 bytes that are no PDV item
    pdu = bytes([0x04, 0, 0, 0, 0, 11, 0, 0, 0, 4, 1, 0x01, 0, 0, 0xAB, 0xCD, 0xEF])
    with pytest.raises(PeerEnded, match="malformed P-DATA-TF"):
        read_from(pdu)


def test_silence_is_a_timeout() -> None:
    left, right = socket.socketpair()
    with left, right:
        left.settimeout(0.2)
        with pytest.raises(TimeoutError):
            read_store_response(left)


@pytest.mark.parametrize("max_pdu", [200, 16384])
def test_writes_the_socket_takes_in_parts_still_carry_every_byte_in_order(
    max_pdu: int,
) -> None:
    """A socket with a timeout and small buffers takes each write in parts; a
    small maximum PDU length makes more pieces than one ``sendmsg`` takes."""
    payload = bytes(range(256)) * 1024  # 256 KiB: 1352 PDUs of at most 200 bytes
    command = store_command(7, "1.2.840.10008.5.1.4.1.1.2", "1.2.3.4")
    with socket.create_server(("127.0.0.1", 0)) as server:
        ours = socket.create_connection(server.getsockname())
        theirs, _ = server.accept()
    ours.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 1 << 15)
    ours.settimeout(10)
    got = bytearray()

    def drain() -> None:
        while chunk := theirs.recv(1 << 16):
            got.extend(chunk)

    reader = threading.Thread(target=drain)
    reader.start()
    with ours:
        wrote = Framer().write(
            ours,
            lambda: True,
            (command, 1, max_pdu),
            Payload(io.BytesIO(payload), 0, len(payload), ()),
        )
        ours.shutdown(socket.SHUT_WR)
    reader.join()
    theirs.close()
    assert wrote
    fragment = max_pdu - 6
    data = b"".join(
        _pdv(
            0x02 if start + fragment >= len(payload) else 0x00,
            payload[start : start + fragment],
        )
        for start in range(0, len(payload), fragment)
    )
    assert bytes(got) == command_pdus(command, 1, max_pdu) + data


def _pdv(control: int, data: bytes) -> bytes:
    """One P-DATA-TF PDU of one PDV item, presentation context 1."""
    return struct.pack(">BBIIBB", 4, 0, len(data) + 6, len(data) + 2, 1, control) + data
