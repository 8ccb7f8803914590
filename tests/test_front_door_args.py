"""Hostile input at the front door, second round: names that are not UTF-8, STOW
URLs with a query or controls, report and resume paths that are not regular files,
empty path arguments, numbers the CLI and gear must read alike. Real processes."""

import csv
import io
import os
import tarfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from gearjob import Gear, Site, old_gear_config, series_zip
from pki import Pki
from pydicom.filewriter import dcmwrite
from stowserver import StowServer
from test_cli import run, send_args

from fw_gear_dicom_send.dicom.samples import make_ct
from fw_gear_dicom_send.errors import UsageError
from fw_gear_dicom_send.gear.config import parse_config
from fw_gear_dicom_send.pacs.receiver import StorageReceiver
from fw_gear_dicom_send.status import ExitStatus
from fw_gear_dicom_send.transport.peer import StowSettings, public_url


@pytest.fixture
def ct_file(tmp_path: Path) -> Path:
    path = tmp_path / "ct.dcm"
    dcmwrite(path, make_ct(0), enforce_file_format=True)
    return path


def _one_error(result: Any) -> str:
    assert result.returncode == ExitStatus.USAGE, result.stderr
    (line,) = result.stderr.strip().splitlines()
    assert line.startswith("dicom-send: error: "), line
    return str(line)


# 1. Names that are not UTF-8: escaped as \xNN in the report and the log.


def test_names_that_are_not_utf8_reach_the_report_and_log_escaped(
    make_receiver: Callable[..., StorageReceiver], tmp_path: Path
) -> None:
    """A refusing receiver: every file has a report row and a log line."""
    scp = make_receiver(status=0xA900)
    folder = tmp_path / "in"
    folder.mkdir()
    data = io.BytesIO()
    dcmwrite(data, make_ct(1), enforce_file_format=True)
    with open(os.fsencode(folder) + b"/bad\xff\xfename.dcm", "wb") as f:
        f.write(data.getvalue())
    archive = folder / "latin.tar"
    with tarfile.open(
        archive, "w", format=tarfile.GNU_FORMAT, encoding="latin-1"
    ) as tar:
        member = io.BytesIO()
        dcmwrite(member, make_ct(2), enforce_file_format=True)
        info = tarfile.TarInfo("café.dcm")
        info.size = len(member.getvalue())
        tar.addfile(info, io.BytesIO(member.getvalue()))
    report = tmp_path / "report.csv"
    result = run(
        *send_args(folder, scp.port, "STORE-SCP", f"--report={report}"),
        "--retry-time=0",
    )
    assert result.returncode == ExitStatus.NOTHING_SENT, result.stderr
    assert not report.with_name("report.csv.partial").exists()
    with open(report, newline="", encoding="utf-8") as f:
        files = sorted(row["file"] for row in csv.DictReader(f))
    assert files == [f"{folder}/bad\\xff\\xfename.dcm", f"{archive}!caf\\xe9.dcm"]
    assert "bad\\xff\\xfename.dcm: refused" in result.stderr
    assert "caf\\xe9.dcm: refused" in result.stderr


# 2. A STOW URL with a query and a space: refused, the query never shown.

_SECRET = "SEKRIT-0b7e"


@pytest.mark.parametrize(
    "tail",
    [
        f"/dw?access_token={_SECRET}&x=a b",
        f"/dw?access_token={_SECRET}\r\nX: y",
        f"/dw\u00e9?access_token={_SECRET}",
    ],
)
def test_a_stow_url_with_spaces_or_controls_is_refused_without_its_query(
    ct_file: Path, tmp_path: Path, tail: str
) -> None:
    report = tmp_path / "r.csv"
    with StowServer() as server:
        result = run(
            "send", str(ct_file), "--stow", server.url + tail, f"--report={report}"
        )
    line = _one_error(result)
    assert "the STOW-RS URL must be ASCII without spaces or control" in line
    assert _SECRET not in result.stdout + result.stderr
    assert server.requests == []
    assert not report.exists()


def test_public_url_drops_params() -> None:
    assert public_url(f"https://h:1/dw;token={_SECRET}/x;y=z?q=1") == "https://h:1/dw/x"
    settings = StowSettings(f"https://h/dicom-web;jsessionid={_SECRET}")
    assert _SECRET not in str(settings)


# 3. The report path: a regular file or nothing.


def test_a_report_path_that_is_a_device_or_fifo_is_refused(
    ct_file: Path, receiver: StorageReceiver, tmp_path: Path
) -> None:
    fifo = tmp_path / "fifo.csv"
    os.mkfifo(fifo)
    device = tmp_path / "device.csv"
    device.symlink_to("/dev/full")  # the link, not the device, would be replaced
    for path in (fifo, device):
        result = run(
            *send_args(ct_file, receiver.port, "STORE-SCP", f"--report={path}")
        )
        assert "is not a regular file" in _one_error(result)
    assert fifo.is_fifo()
    assert device.is_symlink()
    assert receiver.associations == 0


# 4. The resume report: a regular file, at most 1 GiB.


def test_a_resume_report_that_is_not_a_regular_file_is_refused(
    ct_file: Path, receiver: StorageReceiver, tmp_path: Path
) -> None:
    fifo = tmp_path / "fifo.csv"
    os.mkfifo(fifo)
    for path in ("/dev/zero", str(fifo)):
        result = run(
            *send_args(ct_file, receiver.port, "STORE-SCP", f"--resume={path}"),
            timeout=30,
        )
        assert _one_error(result) == (
            f"dicom-send: error: --resume {path} is not a regular file"
        )
    big = tmp_path / "big.csv"
    with open(big, "wb") as f:
        f.truncate((1 << 30) + 1)  # sparse
    result = run(*send_args(ct_file, receiver.port, "STORE-SCP", f"--resume={big}"))
    assert "is larger than 1 GiB" in _one_error(result)
    assert receiver.associations == 0


# 5. Empty path arguments.


@pytest.mark.parametrize(
    "args",
    [
        ["send", ""],
        ["send", "{ct}", "--report="],
        ["send", "{ct}", "--work-dir="],
        ["send", "{ct}", "--resume="],
        ["send", "{ct}", "--tls", "--tls-ca="],
        ["send", "{ct}", "--tls", "--tls-key-password-file="],
        ["find", "--level=STUDY", "--out="],
    ],
)
def test_an_empty_path_argument_is_a_usage_error(
    ct_file: Path, receiver: StorageReceiver, tmp_path: Path, args: list[str]
) -> None:
    peer = ["--host=127.0.0.1", f"--port={receiver.port}", "--called-ae=STORE-SCP"]
    given = [arg.format(ct=ct_file) for arg in args]
    result = run(*given, *peer, cwd=tmp_path)
    assert result.returncode == ExitStatus.USAGE, result.stderr
    (line,) = [x for x in result.stderr.splitlines() if "error" in x]
    assert "an empty path names no file" in line
    assert receiver.associations == 0
    assert not (tmp_path / ".partial").exists()


# 6. Numbers: sane timeouts, ASCII digits, the same rules on CLI and gear.


@pytest.mark.parametrize(
    ("option", "message"),
    [
        (
            "--dimse-timeout=1e-320",
            "--dimse-timeout must be a number of seconds from 0.1",
        ),
        (
            "--connect-timeout=0.01",
            "--connect-timeout must be a number of seconds from 0.1",
        ),
        (
            "--port=\uff12\uff13\uff11\uff10\uff14",
            "argument --port: not a whole number",
        ),
        ("--port=23_104", "argument --port: not a whole number: '23_104'"),
        ("--associations=\uff13", "argument --associations: not a whole number"),
        ("--retry-time=\u0661", "argument --retry-time: not a number"),
    ],
)
def test_cli_numbers_and_titles(
    option: str, message: str, ct_file: Path, receiver: StorageReceiver
) -> None:
    result = run(*send_args(ct_file, receiver.port, "STORE-SCP", option), timeout=30)
    assert result.returncode == ExitStatus.USAGE, result.stderr
    (line,) = result.stderr.strip().splitlines()
    assert message in line
    assert receiver.associations == 0


def test_the_shortest_timeout_is_accepted(
    ct_file: Path, receiver: StorageReceiver
) -> None:
    """pynetdicom takes 0.1 s: a fast local receiver answers within it."""
    option = "--dimse-timeout=0.1"
    result = run(*send_args(ct_file, receiver.port, "STORE-SCP", option), timeout=30)
    assert result.returncode == ExitStatus.SUCCESS, result.stderr
    assert len(receiver.received) == 1


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (
            {"dimse_timeout": 1e-300},
            "config dimse_timeout must be a number of seconds from 0.1",
        ),
        ({"calling_ae": ""}, "config calling_ae must be 1 to 16 characters"),
        ({"group": 33}, 'for group 33 (decimal) write "0x0021"'),
    ],
)
def test_gear_numbers_and_titles(
    gear: Gear,
    site: Site,
    receiver: StorageReceiver,
    tmp_path: Path,
    change: dict[str, Any],
    message: str,
) -> None:
    acquisition = site.standin.acquisition(site.session, "CT")
    gear.add_file_input("file", series_zip(tmp_path, 1, "ct"), acquisition)
    gear.config = old_gear_config(receiver.port) | change
    gear.destination = {"type": "acquisition", "id": acquisition}
    result = gear.run()
    assert result.returncode == ExitStatus.USAGE, result.stdout
    errors = [line for line in result.stdout.splitlines() if " error: " in line]
    assert len(errors) == 1, result.stdout
    assert message in errors[0]
    assert receiver.associations == 0


def test_gear_stow_url_with_a_space_is_refused(tmp_path: Path) -> None:
    config = {"transport": "stow-rs", "stow_url": f"http://h/dw?t={_SECRET}&x=a b"}
    with pytest.raises(UsageError) as caught:
        parse_config(config, {}, {}, output_dir=tmp_path, work_dir=tmp_path)
    assert "without spaces or control characters" in str(caught.value)
    assert _SECRET not in str(caught.value)


# 7. An empty key password file.


def test_an_empty_key_password_file_is_named(
    ct_file: Path, receiver: StorageReceiver, tmp_path: Path, pki: Pki
) -> None:
    secret = tmp_path / "password"
    secret.write_bytes(b"\n")
    tls = ["--tls", f"--tls-cert={pki.client.cert}", f"--tls-key={pki.client.key}"]
    result = run(
        *send_args(ct_file, receiver.port, "STORE-SCP", *tls),
        f"--tls-key-password-file={secret}",
    )
    assert _one_error(result) == (
        f"dicom-send: error: the key password file {secret} is empty"
    )
    assert receiver.associations == 0


def test_the_gear_reports_a_member_name_that_is_not_utf8(
    gear: Gear, site: Site, receiver: StorageReceiver, tmp_path: Path
) -> None:
    acquisition = site.standin.acquisition(site.session, "CT")
    archive = tmp_path / "latin.tar"
    member = io.BytesIO()
    dcmwrite(member, make_ct(3), enforce_file_format=True)
    with tarfile.open(
        archive, "w", format=tarfile.GNU_FORMAT, encoding="latin-1"
    ) as tar:
        info = tarfile.TarInfo("café.dcm")
        info.size = len(member.getvalue())
        tar.addfile(info, io.BytesIO(member.getvalue()))
    gear.add_file_input("file", archive, acquisition)
    gear.config = old_gear_config(receiver.port)
    gear.destination = {"type": "acquisition", "id": acquisition}
    result = gear.run()
    assert result.returncode == ExitStatus.SUCCESS, result.stdout
    assert len(receiver.received) == 1
    assert len(gear.reports()) == 1
    (row,) = gear.instance_rows()
    assert row["file"].endswith("caf\\xe9.dcm"), row
