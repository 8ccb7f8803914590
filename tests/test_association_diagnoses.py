"""Two association failures named for what they are, at once, and not retried: a
receiver that accepts none of the proposed presentation contexts, and a port where
something other than a DICOM peer answers (an HTTP server)."""

import logging
import socket
import socketserver
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from pydicom.data import get_testdata_file
from pydicom.uid import CTImageStorage, ExplicitVRLittleEndian, ImplicitVRLittleEndian
from pynetdicom import AE, evt

from fw_gear_dicom_send import SendRequest, send
from fw_gear_dicom_send.dicom.samples import copy_as_new
from fw_gear_dicom_send.dicom.uids import VERIFICATION
from fw_gear_dicom_send.errors import AssociationError
from fw_gear_dicom_send.status import InstanceStatus
from fw_gear_dicom_send.transport.association import Client
from fw_gear_dicom_send.transport.contexts import Proposal
from fw_gear_dicom_send.transport.hints import ended_line
from fw_gear_dicom_send.transport.peer import AssociationSettings, Peer
from fw_gear_dicom_send.transport.retry import RetryPolicy

RETRY = RetryPolicy(budget=20, first_wait=0.5, max_wait=1)


class _Http(socketserver.BaseRequestHandler):
    """Answers whatever comes as a web server does with bytes it cannot parse."""

    def handle(self) -> None:
        sock: socket.socket = self.request
        sock.settimeout(5)
        try:
            sock.recv(65536)
            sock.sendall(
                b"HTTP/1.1 400 Bad Request\r\nContent-Type: text/html\r\n"
                b"Content-Length: 22\r\nConnection: close\r\n\r\n"
                b"<h1>Bad Request</h1>\r\n"
            )
        except OSError:
            pass


class _HttpServer(socketserver.ThreadingTCPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _Http)
        self.connections = 0

    def process_request(self, request: object, client_address: object) -> None:
        self.connections += 1
        super().process_request(request, client_address)  # type: ignore[arg-type]


@pytest.fixture
def http_server() -> Iterator[_HttpServer]:
    server = _HttpServer()
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()


class _CtOnly:
    """A pynetdicom SCP that knows CT Image Storage and Verification only."""

    def __init__(self) -> None:
        self.requests = 0
        ae = AE(ae_title="STORE-SCP")
        ae.add_supported_context(
            CTImageStorage, [ExplicitVRLittleEndian, ImplicitVRLittleEndian]
        )
        ae.add_supported_context(VERIFICATION)
        server = ae.start_server(
            ("127.0.0.1", 0),
            block=False,
            evt_handlers=[(evt.EVT_CONN_OPEN, self._on_open)],
        )
        assert server is not None
        self._server = server
        self.port = int(self._server.server_address[1])

    def _on_open(self, event: evt.Event) -> None:
        self.requests += 1

    def stop(self) -> None:
        self._server.shutdown()


@pytest.fixture
def ct_only() -> Iterator[_CtOnly]:
    scp = _CtOnly()
    try:
        yield scp
    finally:
        scp.stop()


def _files(folder: Path, *names: str) -> Path:
    for name in names:
        source = get_testdata_file(name)
        assert source is not None
        copy_as_new(Path(source), folder / name, seed=name)
    return folder


def test_a_receiver_that_accepts_no_context_is_named_and_not_retried(
    ct_only: _CtOnly, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    folder = _files(tmp_path / "in", "MR_small.dcm", "MR_small_RLE.dcm")
    started = time.monotonic()
    with caplog.at_level(logging.WARNING, logger="fw_gear_dicom_send"):
        result = send(
            SendRequest(
                (folder,), Peer("127.0.0.1", ct_only.port, "STORE-SCP"), retry=RETRY
            )
        )
    elapsed = time.monotonic() - started
    assert ct_only.requests == 1, "tried again"
    assert elapsed < 5
    for row in result.rows:
        assert row.status is InstanceStatus.FAILED
        assert row.reason.startswith("receiver does not support MR Image Storage"), (
            row.reason
        )
    assert "trying again" not in caplog.text
    lines = [r.getMessage() for r in caplog.records if "accepts no" in r.getMessage()]
    assert lines == [
        f"STORE-SCP@127.0.0.1:{ct_only.port} accepts no presentation context for "
        "MR Image Storage (abstract syntax not supported)"
    ]


def test_no_context_for_a_syntax_is_named_with_the_syntax(ct_only: _CtOnly) -> None:
    client = Client(Peer("127.0.0.1", ct_only.port, "STORE-SCP"), AssociationSettings())
    with pytest.raises(AssociationError) as raised:
        client.associate([Proposal(CTImageStorage, ("1.2.840.10008.1.2.4.70",))])
    assert not raised.value.transient
    assert str(raised.value) == (
        f"STORE-SCP@127.0.0.1:{ct_only.port} accepts no presentation context for "
        "CT Image Storage in JPEG Lossless, Non-Hierarchical, First-Order "
        "Prediction (Process 14 [Selection Value 1])"
    )
    assert ct_only.requests == 1


def test_an_http_server_is_not_a_dicom_peer_and_is_not_retried(
    http_server: _HttpServer, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    folder = _files(tmp_path / "in", "CT_small.dcm")
    port = int(http_server.server_address[1])
    started = time.monotonic()
    with caplog.at_level(logging.WARNING, logger="fw_gear_dicom_send"):
        result = send(
            SendRequest((folder,), Peer("127.0.0.1", port, "STORE-SCP"), retry=RETRY)
        )
    elapsed = time.monotonic() - started
    assert elapsed < 5
    assert "trying again" not in caplog.text
    why = (
        f"the peer at 127.0.0.1:{port} did not answer as a DICOM Upper Layer "
        "(what came back is not a DICOM PDU): is that the receiver's DICOM port?"
    )
    assert result.error == why
    assert [row.reason for row in result.rows] == [why]
    assert result.rows[0].status is InstanceStatus.FAILED


def test_echo_to_an_http_server_says_so_at_once(http_server: _HttpServer) -> None:
    port = int(http_server.server_address[1])
    client = Client(Peer("127.0.0.1", port, "ANY"), AssociationSettings())
    with pytest.raises(AssociationError) as raised:
        client.echo()
    assert not raised.value.transient
    assert "did not answer as a DICOM Upper Layer" in str(raised.value)


def test_an_abort_after_answers_blames_no_ae_title() -> None:
    """A peer that answered on the association knows our AE title: an abort then
    is said as such, without the unknown-AE hint that fits an abort at the first
    request."""
    peer = Peer("127.0.0.1", 4242, "ORTHANC")
    first = ended_line(peer, "US", "aborted", "C-FIND", aborted=True, dimse_timeout=1)
    later = ended_line(
        peer,
        "US",
        "aborted",
        "C-FIND",
        aborted=True,
        dimse_timeout=1,
        answered_before=True,
    )
    assert "likely unknown to that PACS" in first
    assert later == (
        "ORTHANC@127.0.0.1:4242 aborted the association (A-ABORT) during a C-FIND, "
        "after it had answered on that association"
    )
