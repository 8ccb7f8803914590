"""The command line as a user runs it: a separate process, its output and exit code."""

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import free_port
from pydicom.filewriter import dcmwrite

from fw_gear_dicom_send.dicom.samples import make_ct
from fw_gear_dicom_send.pacs.receiver import StorageReceiver
from fw_gear_dicom_send.status import ExitStatus


def run(
    *args: str,
    cwd: Path | None = None,
    timeout: float = 90,
    env: dict[str, str] | None = None,
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "fw_gear_dicom_send", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=cwd,
        check=False,
        env={**os.environ, "PYTHONWARNINGS": "ignore", **(env or {})},
    )


def send_args(path: Path, port: int, called_ae: str, *extra: str) -> list[str]:
    """``send PATH`` to 127.0.0.1:port, with more options."""
    args = ["send", str(path), "--host=127.0.0.1", f"--port={port}"]
    return [*args, f"--called-ae={called_ae}", *extra]


@pytest.fixture
def ct_file(tmp_path: Path) -> Path:
    path = tmp_path / "ct.dcm"
    dcmwrite(path, make_ct(0), enforce_file_format=True)
    return path


def error_lines(result: subprocess.CompletedProcess[str]) -> list[str]:
    assert "Traceback" not in result.stderr, result.stderr
    return [line for line in result.stderr.splitlines() if "progress" not in line]


def test_nothing_listening(ct_file: Path, tmp_path: Path) -> None:
    port = free_port()
    report = tmp_path / "r.csv"
    result = run(*send_args(ct_file, port, "PACS", f"--report={report}"))
    assert result.returncode == ExitStatus.NOTHING_SENT
    errors = [line for line in error_lines(result) if "cannot connect" in line]
    assert errors == [
        f"dicom-send: cannot connect to 127.0.0.1:{port} (Connection refused)"
    ]
    assert "cannot connect" in report.read_text()  # the row says why, too


def test_wrong_called_ae_is_rejected(ct_file: Path, receiver: StorageReceiver) -> None:
    result = run(*send_args(ct_file, receiver.port, "NOT-THE-SCP"))
    assert result.returncode == ExitStatus.NOTHING_SENT
    (line,) = [line for line in error_lines(result) if "rejected" in line]
    assert f"NOT-THE-SCP@127.0.0.1:{receiver.port}" in line
    assert "Called AE title not recognised" in line
    assert receiver.received == []


@pytest.fixture
def silent_server() -> Iterator[socket.socket]:
    """Takes TCP connections and never says a word: a host that hangs."""
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen(8)
        yield server


@pytest.fixture
def silent_peer(silent_server: socket.socket) -> int:
    return int(silent_server.getsockname()[1])


def test_a_peer_that_never_answers(ct_file: Path, silent_peer: int) -> None:
    """A busy receiver may answer later: tried again until the retry time is up."""
    result = run(
        *send_args(ct_file, silent_peer, "PACS", "--acse-timeout=1", "--retry-time=2")
    )
    assert result.returncode == ExitStatus.NOTHING_SENT
    message = (
        "dicom-send: no answer to the association request from "
        f"PACS@127.0.0.1:{silent_peer} within 1 s"
    )
    *retries, last = [line for line in error_lines(result) if "no answer" in line]
    assert last == message
    assert retries
    assert all(line.startswith(f"{message}; trying again in ") for line in retries)


@pytest.fixture
def unreachable_port() -> Iterator[int]:
    """A port whose SYNs go unanswered: a listener with a full accept backlog."""
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen(0)
        port = int(server.getsockname()[1])
        fillers = []
        for _ in range(4):
            filler = socket.socket()
            filler.setblocking(False)
            filler.connect_ex(("127.0.0.1", port))
            fillers.append(filler)
        yield port
        for filler in fillers:
            filler.close()


def test_a_host_that_does_not_answer_the_connection(
    ct_file: Path, unreachable_port: int
) -> None:
    result = run(*send_args(ct_file, unreachable_port, "PACS", "--connect-timeout=1"))
    assert result.returncode == ExitStatus.NOTHING_SENT
    (line,) = [line for line in error_lines(result) if "cannot connect" in line]
    assert line == (
        f"dicom-send: cannot connect to 127.0.0.1:{unreachable_port} "
        "(no answer within 1 s)"
    )


@pytest.mark.parametrize(
    ("option", "message"),
    [
        ("--group=0x0020", "group 0x0020 is not a private group"),
        ("--group=0x0005", "group 0x0005 is not a private group"),
        ("--group=zz", "group must be a hexadecimal group number"),
        ("--called-ae=A\\B", "called AE title must be ASCII without backslash"),
        ("--calling-ae=SEVENTEEN-CHARS-X", "calling AE title must be 1 to 16"),
        ("--port=70000", "port must be 1 to 65535"),
        ("--identifier=", "private creator (identifier) must be 1 to 64"),
    ],
)
def test_bad_configuration_is_one_line_and_nothing_is_sent(
    option: str, message: str, ct_file: Path, receiver: StorageReceiver
) -> None:
    result = run(*send_args(ct_file, receiver.port, "STORE-SCP", option))
    assert result.returncode == ExitStatus.USAGE
    (line,) = result.stderr.strip().splitlines()
    assert line.startswith(f"dicom-send: error: {message}")
    assert receiver.associations == 0


def test_a_missing_input_is_a_usage_error(
    receiver: StorageReceiver, tmp_path: Path
) -> None:
    result = run(
        "send", str(tmp_path / "nope.zip"), "--host=127.0.0.1",
        f"--port={receiver.port}", "--called-ae=STORE-SCP",
    )  # fmt: skip
    assert result.returncode == ExitStatus.USAGE
    assert (
        result.stderr.strip()
        == f"dicom-send: error: input not found: {tmp_path / 'nope.zip'}"
    )
    assert receiver.associations == 0


def test_echo(receiver: StorageReceiver) -> None:
    result = run(
        "echo", "--host=127.0.0.1", f"--port={receiver.port}", "--called-ae=STORE-SCP"
    )
    assert result.returncode == ExitStatus.SUCCESS, result.stderr
    assert "0x0000 (Success)" in result.stdout


def test_echo_with_nothing_listening() -> None:
    port = free_port()
    result = run("echo", "--host=127.0.0.1", f"--port={port}", "--called-ae=PACS")
    assert result.returncode == ExitStatus.NOTHING_SENT
    assert error_lines(result) == [
        f"dicom-send: cannot connect to 127.0.0.1:{port} (Connection refused)"
    ]


def test_demo(tmp_path: Path) -> None:
    result = run("demo", "--out", "demo", cwd=tmp_path)
    assert result.returncode == ExitStatus.SUCCESS, result.stderr
    assert "23 of 23 instances stored" in result.stdout
    report = (tmp_path / "demo" / "report.csv").read_text().splitlines()
    assert len(report) == 1 + 24  # header, 20 CT in a zip, 3 bundled files, a text
    assert len(list((tmp_path / "demo" / "received").glob("*.dcm"))) == 23


def test_an_unwritable_report_is_a_usage_error(
    ct_file: Path, receiver: StorageReceiver, tmp_path: Path
) -> None:
    result = run(
        *send_args(ct_file, receiver.port, "STORE-SCP", f"--report={tmp_path}")
    )
    assert result.returncode == ExitStatus.USAGE
    assert (
        result.stderr.strip()
        == f"dicom-send: error: cannot write the report {tmp_path}"
    )
    assert receiver.associations == 0


def test_ctrl_c_writes_the_report_and_exits_130(
    ct_file: Path, silent_server: socket.socket, tmp_path: Path
) -> None:
    report = tmp_path / "report.csv"
    port = silent_server.getsockname()[1]
    proc = subprocess.Popen(
        [sys.executable, "-m", "fw_gear_dicom_send",
         *send_args(ct_file, port, "PACS", f"--report={report}")],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    silent_server.settimeout(60)
    connection, _ = silent_server.accept()  # it is waiting for an answer now
    started = time.monotonic()
    proc.send_signal(signal.SIGINT)
    try:
        _, err = proc.communicate(timeout=30)
    finally:
        proc.kill()  # a no-op unless it hung
        proc.communicate()
        connection.close()
    assert time.monotonic() - started < 10  # not held up by the ACSE timeout (30 s)
    assert proc.returncode == ExitStatus.INTERRUPTED
    assert "Traceback" not in err
    assert "interrupted before it was sent" in report.read_text()


def test_no_patient_name_in_the_most_verbose_log(
    ct_file: Path, receiver: StorageReceiver
) -> None:
    result = run("-vv", *send_args(ct_file, receiver.port, "STORE-SCP"))
    assert result.returncode == ExitStatus.SUCCESS
    assert "DEBUG pynetdicom" in result.stderr  # the log really is verbose
    assert "Sample^Synthetic" not in result.stderr + result.stdout
    assert "Synthetic" not in result.stderr + result.stdout


def test_the_sending_process_starts_without_pydicom_or_pynetdicom() -> None:
    """``send`` lists and probes while its sender process imports them: the
    command line, the engine and the gear's settings must not import them."""
    check = (
        "import sys, fw_gear_dicom_send.cli.main, fw_gear_dicom_send.gear.config; "
        "print(sorted({'pydicom', 'pynetdicom', 'numpy'} & set(sys.modules)))"
    )
    done = subprocess.run(
        [sys.executable, "-c", check], capture_output=True, text=True, check=True
    )
    assert done.stdout.strip() == "[]"
