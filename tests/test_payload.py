"""The spliced byte stream a data set is sent from."""

import io

import pytest

from fw_gear_dicom_send.transport.wire import Payload

DATA = bytes(range(256)) * 4


def read(payload: Payload, n: int) -> bytes:
    """Up to ``n`` bytes, through ``readinto`` as the senders read."""
    buffer = bytearray(n)
    return bytes(buffer[: payload.readinto(memoryview(buffer))])


@pytest.mark.parametrize("chunk", [1, 3, 7, 64, 1000, 5000])
@pytest.mark.parametrize(
    "inserts",
    [(), ((10, b"AB"),), ((10, b"AB"), (10, b"CD"), (500, b"EFG")), ((1024, b"END"),)],
)
def test_reads_give_the_file_with_the_inserts(
    chunk: int, inserts: tuple[tuple[int, bytes], ...]
) -> None:
    start, end = 4, len(DATA)
    expected = bytearray()
    position = start
    for offset, data in inserts:
        expected += DATA[position:offset] + data
        position = offset
    expected += DATA[position:end]

    payload = Payload(io.BytesIO(DATA), start, end, inserts)
    parts = list(iter(lambda: read(payload, chunk), b""))
    assert b"".join(parts) == bytes(expected)
    assert all(len(part) == chunk for part in parts[:-1])  # short only at the end


def test_a_file_shorter_than_probed_is_an_error() -> None:
    payload = Payload(io.BytesIO(DATA[:100]), 0, 200, ())
    assert read(payload, 100) == DATA[:100]
    with pytest.raises(OSError, match="shorter than probed"):
        read(payload, 100)
