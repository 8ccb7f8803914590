"""The listener under connections that hold on: a request that never completes, an
association that goes quiet. Neither locks a sender out for long; a slow sender is
kept."""

import contextlib
import socket
import ssl
import time
from pathlib import Path

from conftest import free_port
from pki import Pki
from pydicom.filewriter import dcmwrite
from pydicom.uid import CTImageStorage
from pynetdicom import AE
from pynetdicom.association import Association
from test_cli import run, send_args
from test_pacs import LISTENER, start_listener, stop_listener

from fw_gear_dicom_send import SendRequest, send
from fw_gear_dicom_send.dicom.samples import make_ct
from fw_gear_dicom_send.pacs.receiver import StorageReceiver
from fw_gear_dicom_send.status import ExitStatus
from fw_gear_dicom_send.transport.peer import Peer
from fw_gear_dicom_send.transport.retry import RetryPolicy

HALF_A_HEADER = b"\x01\x00\x00\x00"  # A-ASSOCIATE-RQ, and half its length


def _ct(tmp_path: Path, seed: int = 1) -> Path:
    path = tmp_path / f"ct{seed}.dcm"
    dcmwrite(path, make_ct(seed), enforce_file_format=True)
    return path


def _send(path: Path, scp: StorageReceiver) -> ExitStatus:
    request = SendRequest(
        (path,), Peer("127.0.0.1", scp.port, scp.ae_title), retry=RetryPolicy(budget=0)
    )
    return send(request).exit_status


def _half_requests(port: int, count: int) -> list[socket.socket]:
    socks = []
    for _ in range(count):
        sock = socket.create_connection(("127.0.0.1", port))
        sock.sendall(HALF_A_HEADER)
        socks.append(sock)
    return socks


def test_listen_half_sent_requests_do_not_lock_out_a_sender(tmp_path: Path) -> None:
    """More connections than the listener's 16 associations, each of which sent
    part of a PDU header and stopped: the listen command serves the next sender
    at once."""
    port = free_port()
    listener = start_listener(tmp_path / "out", port, "--layout", "flat")
    path = _ct(tmp_path)
    socks = _half_requests(port, 20)
    try:
        time.sleep(0.5)  # the listener has taken them all
        started = time.monotonic()
        result = run(*send_args(path, port, LISTENER, "--retry-time=0"), timeout=30)
        took = time.monotonic() - started
    finally:
        for sock in socks:
            sock.close()
        stop_listener(listener)
    assert result.returncode == ExitStatus.SUCCESS, result.stderr
    assert "local limit exceeded" not in result.stderr.lower()
    assert took < 8
    assert len(list((tmp_path / "out").glob("*.dcm"))) == 1


def test_listen_closes_half_sent_requests_at_the_request_timeout(
    tmp_path: Path,
) -> None:
    with StorageReceiver(
        tmp_path / "out", max_associations=2, request_timeout=1
    ) as scp:
        socks = _half_requests(scp.port, 6)
        try:
            started = time.monotonic()
            assert _send(_ct(tmp_path), scp) is ExitStatus.SUCCESS
            for sock in socks:
                sock.settimeout(10)
                assert sock.recv(1) == b""  # the listener hung up
            assert time.monotonic() - started < 4
        finally:
            for sock in socks:
                sock.close()
    assert scp.associations == 1


def _associate(scp: StorageReceiver) -> Association:
    ae = AE(ae_title="IDLER")
    ae.add_requested_context(CTImageStorage)
    assoc = ae.associate("127.0.0.1", scp.port, ae_title=scp.ae_title)
    assert assoc.is_established
    return assoc


def test_listen_aborts_idle_associations_at_the_idle_timeout(tmp_path: Path) -> None:
    """Associations that hold every slot and stay silent: aborted once the idle
    timeout has passed, and the next sender is served. (The timeout leaves a send
    on a busy machine time to be refused while the slots are still held.)"""
    with StorageReceiver(tmp_path / "out", max_associations=2, idle_timeout=4) as scp:
        idle = [_associate(scp) for _ in range(2)]
        try:
            assert _send(_ct(tmp_path, 1), scp) is not ExitStatus.SUCCESS  # full
            deadline = time.monotonic() + 8
            while any(a.is_established for a in idle) and time.monotonic() < deadline:
                time.sleep(0.1)
            assert not any(a.is_established for a in idle)
            assert all(a.is_aborted for a in idle)
            assert _send(_ct(tmp_path, 2), scp) is ExitStatus.SUCCESS
        finally:
            for assoc in idle:
                assoc.abort()
    assert scp.aborted == 2


def test_listen_aborts_an_association_stalled_within_a_pdu(tmp_path: Path) -> None:
    with StorageReceiver(tmp_path / "out", max_associations=1, idle_timeout=1) as scp:
        stalled = _associate(scp)
        try:
            assert stalled.dul.socket is not None
            raw = stalled.dul.socket.socket
            assert raw is not None
            raw.sendall(b"\x04\x00\x00\x00")  # half a P-DATA-TF header
            deadline = time.monotonic() + 5
            while scp.aborted == 0 and time.monotonic() < deadline:
                time.sleep(0.1)
            assert scp.aborted == 1
            assert _send(_ct(tmp_path), scp) is ExitStatus.SUCCESS
        finally:
            stalled.abort()


def test_listen_keeps_a_slow_sender_that_pauses_less_than_the_idle_timeout(
    tmp_path: Path,
) -> None:
    """Pauses between C-STOREs each shorter than the idle timeout, together
    longer: the association stays up and every instance is stored."""
    with StorageReceiver(tmp_path / "out", idle_timeout=2) as scp:
        assoc = _associate(scp)
        try:
            for seed in range(3):
                if seed:
                    time.sleep(1.3)
                status = assoc.send_c_store(make_ct(seed))
                assert status.Status == 0x0000
            assert assoc.is_established
        finally:
            assoc.release()
    assert len(scp.received) == 3
    assert scp.aborted == 0


def test_listen_closes_a_half_sent_request_over_tls(tmp_path: Path, pki: Pki) -> None:
    """The handshake done, part of a PDU header, then nothing: the TLS listener
    hangs up at the request timeout."""
    client = ssl.create_default_context(cafile=pki.ca)
    client.load_cert_chain(pki.client.cert, pki.client.key)
    client.check_hostname = False
    with StorageReceiver(
        tmp_path / "out", tls=pki.server_context(), request_timeout=1
    ) as scp:
        raw = socket.create_connection(("127.0.0.1", scp.port))
        with client.wrap_socket(raw) as sock:
            sock.sendall(HALF_A_HEADER)
            sock.settimeout(10)
            started = time.monotonic()
            # The listener hung up: an end of stream, or a TLS error (not a timeout).
            with contextlib.suppress(ssl.SSLError):
                assert sock.recv(1) == b""
            assert time.monotonic() - started < 4
    assert scp.associations == 0
