"""The receivers that limit associations at once, and ``auto`` into them.

pynetdicom's ``AE.maximum_associations`` and the tests' :class:`LimitingProxy`
both refuse one association too many as rejected-transient, local limit
exceeded; a send with ``--associations auto`` into such a receiver stores
everything.
"""

import contextlib
import logging
import os
import re
import socket
import struct
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from faults import TRANSIENT_REJECT
from limited import PERMANENT_REJECT, LimitingProxy

from fw_gear_dicom_send import SendRequest, send
from fw_gear_dicom_send.dicom.samples import write_series
from fw_gear_dicom_send.dicom.uids import VERIFICATION
from fw_gear_dicom_send.errors import AssociationError
from fw_gear_dicom_send.pacs.receiver import StorageReceiver
from fw_gear_dicom_send.status import ExitStatus, InstanceStatus
from fw_gear_dicom_send.transport.association import Client, release
from fw_gear_dicom_send.transport.contexts import FALLBACK_SYNTAXES, Proposal
from fw_gear_dicom_send.transport.peer import AssociationSettings, Peer
from fw_gear_dicom_send.transport.retry import RetryPolicy

AE = "STORE-SCP"


def _refusal_of_a_fourth(port: int) -> str:
    """Hold three associations, ask for a fourth: why it was refused."""
    client = Client(Peer("127.0.0.1", port, AE), AssociationSettings())
    held = [client.associate([Proposal(VERIFICATION, FALLBACK_SYNTAXES)])]
    try:
        for _ in range(2):
            held.append(client.associate([Proposal(VERIFICATION, FALLBACK_SYNTAXES)]))
        with pytest.raises(AssociationError) as refused:
            client.associate([Proposal(VERIFICATION, FALLBACK_SYNTAXES)])
        assert refused.value.transient
        return str(refused.value).replace(str(port), "PORT")
    finally:
        for assoc in held:
            release(assoc)


@pytest.fixture
def unlimited(tmp_path: Path) -> Iterator[StorageReceiver]:
    with StorageReceiver(tmp_path / "in", ae_title=AE) as scp:
        yield scp


def test_pynetdicom_refuses_a_fourth_as_transient_local_limit(tmp_path: Path) -> None:
    with StorageReceiver(tmp_path / "in", ae_title=AE, max_associations=3) as scp:
        reason = _refusal_of_a_fourth(scp.port)
    assert reason == (
        f"association rejected by {AE}@127.0.0.1:PORT (Rejected Transient, "
        "Service Provider (Presentation): Local limit exceeded)"
    )


def test_the_proxy_refuses_a_fourth_as_pynetdicom_does(
    tmp_path: Path, unlimited: StorageReceiver
) -> None:
    with StorageReceiver(tmp_path / "in3", ae_title=AE, max_associations=3) as scp:
        pynetdicom = _refusal_of_a_fourth(scp.port)
    with LimitingProxy(unlimited.port, limit=3) as proxy:
        assert _refusal_of_a_fourth(proxy.port) == pynetdicom
        assert (proxy.rejected, proxy.most) == (1, 3)


class _RejectAndClose:
    """Answers every association request with A-ASSOCIATE-RJ (local limit
    exceeded) and closes the connection at once, as a full PACS may."""

    def __init__(self) -> None:
        self._server = socket.create_server(("127.0.0.1", 0))
        self.port = int(self._server.getsockname()[1])
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while True:
            try:
                client, _ = self._server.accept()
            except OSError:
                return
            with client, contextlib.suppress(OSError):
                client.settimeout(2)
                header = client.recv(6, socket.MSG_WAITALL)
                client.recv(struct.unpack(">I", header[2:6])[0], socket.MSG_WAITALL)
                client.sendall(TRANSIENT_REJECT)
                client.shutdown(socket.SHUT_WR)

    def close(self) -> None:
        self._server.close()


def test_a_rejection_followed_at_once_by_the_close_is_read_as_the_rejection() -> None:
    """pynetdicom may see the connection close before it hands the rejection on;
    it is still a transient refusal, said at once (no probing for TLS)."""
    rejecting = _RejectAndClose()
    client = Client(Peer("127.0.0.1", rejecting.port, AE), AssociationSettings())
    burners = [  # a busy machine makes the race likely
        subprocess.Popen([sys.executable, "-c", "while True: pass"])
        for _ in range(2 * (os.cpu_count() or 1))
    ]
    try:
        for _ in range(20):
            started = time.monotonic()
            with pytest.raises(AssociationError) as refused:
                client.associate([Proposal(VERIFICATION, FALLBACK_SYNTAXES)])
            assert refused.value.transient
            assert "Local limit exceeded" in str(refused.value)
            assert time.monotonic() - started < 2
    finally:
        for burner in burners:
            burner.kill()
            burner.wait()
        rejecting.close()


def test_the_proxy_holds_the_answers(unlimited: StorageReceiver) -> None:
    with LimitingProxy(unlimited.port, delay=0.2) as proxy:
        client = Client(Peer("127.0.0.1", proxy.port, AE), AssociationSettings())
        started = time.monotonic()
        assert client.echo() == 0
    # association accepted, C-ECHO answered, release answered: each 0.2 s late
    assert time.monotonic() - started >= 0.6


def test_an_answer_written_in_two_pieces_is_held_once() -> None:
    """DCMTK writes a PDU's header and its data apart: a far network delays
    them both by its delay, not the second by twice it."""
    server = socket.create_server(("127.0.0.1", 0))

    def answer() -> None:
        peer, _ = server.accept()
        with peer:
            peer.sendall(b"head")
            time.sleep(0.01)
            peer.sendall(b"data")
            peer.recv(1)  # until the client closes

    threading.Thread(target=answer, daemon=True).start()
    with (
        server,
        LimitingProxy(server.getsockname()[1], delay=0.3) as proxy,
        socket.create_connection(("127.0.0.1", proxy.port)) as client,
    ):
        started, got = time.monotonic(), b""
        while len(got) < 8:
            got += client.recv(8)
        elapsed = time.monotonic() - started
    assert got == b"headdata"
    assert 0.3 <= elapsed < 0.5  # 0.31 s: each piece 0.3 s late; twice: >= 0.6 s


@pytest.fixture(scope="module")
def many(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Four series of 60 small instances."""
    folder = tmp_path_factory.mktemp("many")
    for seed in "abcd":
        write_series(folder / seed, 60, seed=f"limited-{seed}", rows=16, columns=16)
    return folder


def test_auto_into_a_receiver_of_three_stores_everything(
    tmp_path: Path, many: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="fw_gear_dicom_send.transport.adaptive")
    with StorageReceiver(tmp_path / "in", ae_title=AE, max_associations=3) as scp:
        result = send(
            SendRequest(
                (many,),
                Peer("127.0.0.1", scp.port, AE),
                associations="auto",
                retry=RetryPolicy(budget=20, first_wait=0.1, max_wait=0.5),
            )
        )
        received = {r.sop_instance_uid for r in scp.received}
    assert result.exit_status is ExitStatus.SUCCESS
    assert {row.status for row in result.rows} == {InstanceStatus.SENT}
    assert len(received) == len(result.rows) == 240
    # The receiver counts an association until its thread has ended: one just
    # released may still count, and then it refuses a 3rd rather than a 4th.
    assert re.search(
        r"the receiver rejected a (3rd|4th): Local limit exceeded", caplog.text
    )


def test_auto_into_a_receiver_refusing_a_4th_for_good_keeps_3(
    tmp_path: Path, unlimited: StorageReceiver, many: Path
) -> None:
    with LimitingProxy(unlimited.port, limit=3, rejection=PERMANENT_REJECT) as proxy:
        result = send(
            SendRequest((many,), Peer("127.0.0.1", proxy.port, AE), associations="auto")
        )
    assert result.exit_status is ExitStatus.SUCCESS
    assert {row.status for row in result.rows} == {InstanceStatus.SENT}
    assert len({r.sop_instance_uid for r in unlimited.received}) == 240
    assert proxy.most == 3
    assert result.associations.startswith(
        "up to 3 associations (the receiver rejected a 4th: "
    )


def test_the_summary_says_how_many_associations_and_why_no_more(
    unlimited: StorageReceiver, many: Path
) -> None:
    # The proxy counts a connection until it has closed; pynetdicom's receiver
    # counts each association's thread until it has ended, later on a busy machine.
    with LimitingProxy(unlimited.port, limit=3) as proxy:
        args = [
            "send", str(many), "--host", "127.0.0.1", "--port", str(proxy.port),
            "--called-ae", AE, "--associations", "auto", "--retry-time", "20",
        ]  # fmt: skip
        done = subprocess.run(
            [sys.executable, "-m", "fw_gear_dicom_send", *args],
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
    assert done.returncode == 0, done.stderr
    stored = [line for line in done.stdout.splitlines() if " stored" in line]
    assert stored[0].startswith("240 of 240 instances stored, ")
    most = re.search(
        r"; over up to (\d) associations \(the receiver rejected a (\d)(rd|th): "
        r"Local limit exceeded\)$",
        stored[0],
    )
    assert most, stored[0]
    assert int(most[1]) in (2, 3)  # a 3rd refused if one closing still counted
    assert int(most[2]) == int(most[1]) + 1
    assert proxy.most <= 3
    assert len({r.sop_instance_uid for r in unlimited.received}) == 240
