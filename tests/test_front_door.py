"""Hostile input at the front door: the listener, the options, the credentials, the
reports and what reaches a terminal. Real processes where a process is involved."""

import csv
import io
import json
import socket
import subprocess
import sys
import time
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from conftest import free_port
from faults import STUDY_ROOT_FIND
from gearjob import Gear, Site, old_gear_config, series_zip
from pki import Pki
from pydicom import dcmread
from pydicom.dataset import Dataset
from pydicom.filewriter import dcmwrite
from pydicom.multival import MultiValue
from pydicom.uid import UID, CTImageStorage, ExplicitVRLittleEndian
from pynetdicom import AE, evt
from stowserver import StowServer
from test_cli import run, send_args
from test_pacs import LISTENER, start_listener, stop_listener

from fw_gear_dicom_send import SendRequest, send
from fw_gear_dicom_send.dicom.samples import make_ct, zip_files
from fw_gear_dicom_send.pacs.receiver import StorageReceiver
from fw_gear_dicom_send.status import ExitStatus, InstanceStatus
from fw_gear_dicom_send.transport.peer import Peer, StowSettings
from fw_gear_dicom_send.transport.retry import RetryPolicy


@pytest.fixture
def ct_file(tmp_path: Path) -> Path:
    path = tmp_path / "ct.dcm"
    dcmwrite(path, make_ct(0), enforce_file_format=True)
    return path


def test_a_traceback_from_a_process_fails_the_test() -> None:
    """The suite-wide check (conftest): any Python process run through
    ``subprocess`` that prints a traceback fails the test that ran it."""
    with pytest.raises(pytest.fail.Exception, match="a traceback from"):
        subprocess.run(
            [sys.executable, "-c", "1 / 0"], capture_output=True, check=False
        )


# Finding 3: the listener's file names are injective.

_UIDS = ["1.2.3.77", "1.2.3.77\\9", ".", "..", "1.2.3.77.", "1.2.3.77.9"]


def test_listen_files_different_uids_under_different_names(tmp_path: Path) -> None:
    folder = tmp_path / "in"
    folder.mkdir()
    for index, uid in enumerate(_UIDS):
        ds = make_ct(index)
        with warnings.catch_warnings(action="ignore"):  # not a valid UI value
            ds.SOPInstanceUID = UID(uid)
            ds.file_meta.MediaStorageSOPInstanceUID = UID(uid)
            dcmwrite(folder / f"{index}.dcm", ds)
    port = free_port()
    out = tmp_path / "out"
    listener = start_listener(out, port, "--layout", "flat")
    try:
        with warnings.catch_warnings(action="ignore"):
            result = send(SendRequest((folder,), Peer("127.0.0.1", port, LISTENER)))
    finally:
        stop_listener(listener)
    assert [row.status for row in result.rows] == [InstanceStatus.SENT] * len(_UIDS)
    files = sorted(out.rglob("*.dcm"))
    assert len(files) == len(_UIDS)
    with warnings.catch_warnings(action="ignore"):
        got = [dcmread(path)["SOPInstanceUID"].value for path in files]
    assert sorted(
        "\\".join(v) if isinstance(v, MultiValue) else str(v) for v in got
    ) == (sorted(_UIDS))


def _joined(value: object) -> str:
    """A value as it was written: several values joined by backslashes."""
    if isinstance(value, MultiValue):
        return "\\".join(str(v) for v in value)
    return str(value)


_PATIENTS = ["P/1", "P_1", "P\\1", "", "unknown-patient", ".", "..", " P_1"]


def test_listen_files_different_patients_under_different_folders(
    tmp_path: Path,
) -> None:
    """One instance UID, patient IDs that the old mapping made alike."""
    port = free_port()
    out = tmp_path / "out"
    listener = start_listener(out, port, "--layout", "patient")
    ae = AE(ae_title="SENDER")
    ae.add_requested_context(CTImageStorage, ExplicitVRLittleEndian)
    try:
        assoc = ae.associate("127.0.0.1", port, ae_title=LISTENER)
        assert assoc.is_established
        try:
            for patient in _PATIENTS:
                ds = make_ct(1)
                ds.PatientID = patient
                assert assoc.send_c_store(ds).Status == 0
        finally:
            assoc.release()
    finally:
        stop_listener(listener)
    files = sorted(out.rglob("*.dcm"))
    assert len(files) == len(_PATIENTS)
    for path in files:
        assert path.resolve().is_relative_to(out.resolve())
    got = [dcmread(path)["PatientID"].value for path in files]
    assert sorted(
        "\\".join(v) if isinstance(v, MultiValue) else str(v) for v in got
    ) == (sorted(_PATIENTS))


# Finding 9: idle connections do not lock senders out of the listener.


def test_twenty_idle_connections_do_not_lock_out_a_sender(tmp_path: Path) -> None:
    port = free_port()
    listener = start_listener(tmp_path / "out", port, "--layout", "flat")
    path = tmp_path / "ct.dcm"
    dcmwrite(path, make_ct(1), enforce_file_format=True)
    idle = [socket.create_connection(("127.0.0.1", port)) for _ in range(20)]
    try:
        time.sleep(0.5)  # the listener has taken them all
        started = time.monotonic()
        result = run(*send_args(path, port, LISTENER, "--retry-time=0"))
        took = time.monotonic() - started
    finally:
        for sock in idle:
            sock.close()
        stop_listener(listener)
    assert result.returncode == ExitStatus.SUCCESS, result.stderr
    assert "local limit exceeded" not in result.stderr
    assert took < 10
    assert len(list((tmp_path / "out").glob("*.dcm"))) == 1


def test_a_silent_connection_does_not_stop_a_tls_listener(
    ct_file: Path, tmp_path: Path, pki: Pki
) -> None:
    """A TCP connection that never starts its TLS handshake: the next sender is
    served at once."""
    port = free_port()
    listener = start_listener(
        tmp_path / "out", port, "--layout", "flat", "--tls",
        "--tls-cert", str(pki.server.cert), "--tls-key", str(pki.server.key),
        "--tls-ca", str(pki.ca),
    )  # fmt: skip
    tls = ["--tls", f"--tls-ca={pki.ca}", f"--tls-cert={pki.client.cert}"]
    tls.append(f"--tls-key={pki.client.key}")
    try:
        with socket.create_connection(("127.0.0.1", port)):
            time.sleep(0.5)  # accepted, and silent
            started = time.monotonic()
            result = run(
                *send_args(ct_file, port, LISTENER, *tls, "--retry-time=0"),
                timeout=30,
            )
            took = time.monotonic() - started
    finally:
        stop_listener(listener)
    assert result.returncode == ExitStatus.SUCCESS, result.stderr
    assert took < 8
    assert len(list((tmp_path / "out").glob("*.dcm"))) == 1


def test_a_connection_that_never_asks_is_closed(tmp_path: Path) -> None:
    with StorageReceiver(tmp_path / "out", request_timeout=1) as scp:
        with socket.create_connection(("127.0.0.1", scp.port)) as idle:
            idle.settimeout(10)
            started = time.monotonic()
            assert idle.recv(1) == b""  # the listener hung up
            assert time.monotonic() - started < 3
        # A sender is still welcome.
        path = tmp_path / "ct.dcm"
        dcmwrite(path, make_ct(2), enforce_file_format=True)
        result = send(
            SendRequest(
                (path,),
                Peer("127.0.0.1", scp.port, scp.ae_title),
                retry=RetryPolicy(budget=0),
            )
        )
    assert result.exit_status is ExitStatus.SUCCESS


# Finding 14: every number in its range, every bad value one line (exit 2).


@pytest.mark.parametrize(
    ("option", "message"),
    [
        (
            "--dimse-timeout=1e12",
            "--dimse-timeout must be a number of seconds from 0.1",
        ),
        ("--acse-timeout=1e10", "--acse-timeout must be a number of seconds from 0.1"),
        ("--connect-timeout=1e308", "--connect-timeout must be a number of seconds"),
        ("--network-timeout=nan", "--network-timeout must be a number of seconds"),
        ("--retry-time=1e300", "--retry-time must be a number of seconds from 0"),
        ("--associations=100", "--associations must be a whole number from 1 to 32"),
    ],
)
def test_numbers_out_of_range_are_one_line(
    option: str, message: str, ct_file: Path, receiver: StorageReceiver
) -> None:
    result = run(*send_args(ct_file, receiver.port, "STORE-SCP", option), timeout=30)
    assert result.returncode == ExitStatus.USAGE, result.stderr
    (line,) = result.stderr.strip().splitlines()
    assert line.startswith(f"dicom-send: error: {message}")
    assert receiver.associations == 0


def test_a_work_dir_that_is_a_file_is_one_line(
    ct_file: Path, receiver: StorageReceiver, tmp_path: Path
) -> None:
    result = run(
        *send_args(ct_file, receiver.port, "STORE-SCP", f"--work-dir={ct_file}")
    )
    assert result.returncode == ExitStatus.USAGE, result.stderr
    assert (
        result.stderr.strip()
        == f"dicom-send: error: --work-dir {ct_file} is not a folder"
    )
    assert receiver.associations == 0


def test_a_missing_work_dir_is_made(
    ct_file: Path, receiver: StorageReceiver, tmp_path: Path
) -> None:
    archive = zip_files(tmp_path / "one.zip", {"ct.dcm": ct_file})
    work = tmp_path / "not" / "yet"
    result = run(*send_args(archive, receiver.port, "STORE-SCP", f"--work-dir={work}"))
    assert result.returncode == ExitStatus.SUCCESS, result.stderr
    assert work.is_dir()
    assert len(receiver.received) == 1


def test_a_key_password_that_is_not_utf8_is_one_line(
    ct_file: Path, receiver: StorageReceiver, tmp_path: Path, pki: Pki
) -> None:
    secret = tmp_path / "password"
    secret.write_bytes(b"caf\xe9\n")
    tls = ["--tls", f"--tls-cert={pki.client.cert}", f"--tls-key={pki.client.key}"]
    args = send_args(ct_file, receiver.port, "STORE-SCP", *tls)
    by_file = run(*args, f"--tls-key-password-file={secret}")
    assert by_file.returncode == ExitStatus.USAGE, by_file.stderr
    assert by_file.stderr.strip() == (
        f"dicom-send: error: the key password file {secret} is not UTF-8 text"
    )
    by_variable = run(*args, env={"DICOM_SEND_TLS_KEY_PASSWORD": "caf\udce9"})
    assert by_variable.returncode == ExitStatus.USAGE, by_variable.stderr
    assert by_variable.stderr.strip() == (
        "dicom-send: error: DICOM_SEND_TLS_KEY_PASSWORD is not UTF-8 text"
    )
    assert receiver.associations == 0


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"port": "²"}, "config port must be a whole number from 1 to 65535, got '²'"),
        ({"port": "١٢"}, "config port must be a whole number from 1 to 65535"),
        ({"dimse_timeout": 1e12}, "config dimse_timeout must be a number of seconds"),
        ({"tls_key_password": "caf\udce9"}, "config tls_key_password is not UTF-8"),
        ({"location": "x.dcm"}, "input file: location is not a JSON object"),
        ({"input": "x.dcm"}, "input file is not a JSON object"),
    ],
)
def test_bad_gear_values_are_one_line(
    gear: Gear,
    site: Site,
    receiver: StorageReceiver,
    tmp_path: Path,
    change: dict[str, Any],
    message: str,
) -> None:
    acquisition = site.standin.acquisition(site.session, "CT")
    gear.add_file_input("file", series_zip(tmp_path, 1, "ct"), acquisition)
    if "location" in change:
        gear.inputs["file"]["location"] = change.pop("location")
    if "input" in change:
        gear.inputs["file"] = change.pop("input")
    if "tls_key_password" in change:
        change["tls_enabled"] = True
    gear.config = old_gear_config(receiver.port) | change
    gear.destination = {"type": "acquisition", "id": acquisition}

    result = gear.run()

    assert result.returncode == ExitStatus.USAGE, result.stdout
    errors = [line for line in result.stdout.splitlines() if " error: " in line]
    assert len(errors) == 1, result.stdout
    assert message in errors[0]
    assert receiver.associations == 0


# Finding 5: the report never replaces an input.


def test_a_report_that_would_replace_an_input_is_refused(
    receiver: StorageReceiver, tmp_path: Path
) -> None:
    folder = tmp_path / "in"
    folder.mkdir()
    first, second = folder / "a.dcm", folder / "b.dcm"
    dcmwrite(first, make_ct(1), enforce_file_format=True)
    dcmwrite(second, make_ct(2), enforce_file_format=True)
    (tmp_path / "link.csv").symlink_to(first)
    (folder / "c.csv.partial").write_bytes(second.read_bytes())
    before = {path: path.read_bytes() for path in folder.iterdir()}
    cases = [
        (folder, folder / "a.dcm", folder / "a.dcm"),  # a file in an input folder
        (first, first, first),  # the input itself
        (first, tmp_path / "link.csv", tmp_path / "link.csv"),  # a link to it
        (folder, folder / "c.csv", folder / "c.csv.partial"),  # its .partial
    ]
    for given, report, target in cases:
        result = run(
            *send_args(given, receiver.port, "STORE-SCP", f"--report={report}")
        )
        assert result.returncode == ExitStatus.USAGE, result.stderr
        assert result.stderr.strip() == (
            f"dicom-send: error: --report {report} would overwrite the input {target}"
        )
    assert {path: path.read_bytes() for path in folder.iterdir()} == before
    assert receiver.associations == 0
    # A new report in an input folder, and then replacing it, are fine.
    (folder / "c.csv.partial").unlink()
    for _ in range(2):
        result = run(
            *send_args(folder, receiver.port, "STORE-SCP", f"--report={folder}/r.csv")
        )
        assert result.returncode == ExitStatus.SUCCESS, result.stderr


# Finding 13: a report that cannot be written (disk full) after a good send.

_FULL_DISK = """
mount -t tmpfs -o size=64k tmpfs "$0" || exit 99
head -c 1000000 /dev/zero > "$0/fill" 2>/dev/null
"$@"
status=$?
echo "left: $(ls -A "$0" | tr '\\n' ' ')"
exit $status
"""


def test_a_full_disk_for_the_report(
    ct_file: Path, receiver: StorageReceiver, tmp_path: Path
) -> None:
    """The report goes to a full tmpfs (mounted in a user and mount namespace of
    its own): the summary is printed, one line says why, nothing partial is
    left, and the exit status says the report is missing."""
    disk = tmp_path / "disk"
    disk.mkdir()
    report = disk / "report.csv"
    command = [sys.executable, "-m", "fw_gear_dicom_send"]
    command += send_args(ct_file, receiver.port, "STORE-SCP", f"--report={report}")
    namespace = ["unshare", "--user", "--map-root-user", "--mount"]
    result = subprocess.run(
        [*namespace, "sh", "-c", _FULL_DISK, str(disk), *command],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == ExitStatus.REPORT_FAILED, result.stderr
    assert len(receiver.received) == 1
    errors = [line for line in result.stderr.splitlines() if "report" in line]
    assert errors == [
        f"dicom-send: cannot write the report {report}: No space left on device"
    ]
    assert "1 of 1 instance stored" in result.stdout
    assert result.stdout.splitlines()[-1].strip() == "left: fill"


def test_a_full_disk_for_the_gear_reports(
    gear: Gear, site: Site, receiver: StorageReceiver, tmp_path: Path
) -> None:
    """The gear's output folder is a full tmpfs: the summary is logged, one line
    says why, nothing partial is left, exit 4."""
    acquisition = site.standin.acquisition(site.session, "CT")
    gear.add_file_input("file", series_zip(tmp_path, 2, "ct"), acquisition)
    gear.config = old_gear_config(receiver.port)
    gear.destination = {"type": "acquisition", "id": acquisition}
    output = gear.folder / "output"
    output.mkdir()
    namespace = ("--user", "--map-root-user", "--mount", "sh", "-c", _FULL_DISK)
    result = gear.run(
        python="unshare", wrapper=(*namespace, str(output), sys.executable)
    )
    assert result.returncode == ExitStatus.REPORT_FAILED, result.stdout
    assert len(receiver.received) == 2
    errors = [line for line in result.stdout.splitlines() if " error: " in line]
    assert len(errors) == 1, result.stdout
    assert errors[0].endswith(": No space left on device")
    assert "cannot write the report" in errors[0]
    assert "summary: 1 file: 1 Complete" in result.stdout
    assert result.stdout.splitlines()[-1].strip() == "left: fill"


# Finding 11: credentials are header-safe, and never printed from a URL.

_TOKEN = "SECRET-TOKEN-7f3a"


@pytest.mark.parametrize(
    "credential",
    [f"bearer:{_TOKEN}\r\nX: y", f"bearer:{_TOKEN}\nbearer:other", f"bearer:{_TOKEN}é"],
)
def test_a_credential_that_is_not_one_header_line_is_one_line(
    ct_file: Path, credential: str
) -> None:
    with StowServer() as server:
        result = run(
            "send", str(ct_file), "--stow", server.url,
            env={"DICOM_SEND_STOW_AUTH": credential},
        )  # fmt: skip
    assert result.returncode == ExitStatus.USAGE, result.stderr
    (line,) = result.stderr.strip().splitlines()
    assert line.startswith("dicom-send: error: the STOW-RS ")
    assert _TOKEN not in result.stdout + result.stderr
    assert server.requests == []


def test_a_two_line_stow_credential_input_is_one_line(
    gear: Gear, site: Site, tmp_path: Path
) -> None:
    acquisition = site.standin.acquisition(site.session, "CT")
    gear.add_file_input("file", series_zip(tmp_path, 1, "ct"), acquisition)
    credential = tmp_path / "credential.txt"
    credential.write_text(f"bearer:{_TOKEN}\nX-Other: y\n")
    gear.add_file_input("stow_credential", credential, acquisition)
    with StowServer() as server:
        gear.config = old_gear_config(
            "", destination="", called_ae="", transport="stow-rs", stow_url=server.url
        )
        gear.destination = {"type": "acquisition", "id": acquisition}
        result = gear.run()
    assert result.returncode == ExitStatus.USAGE, result.stdout
    errors = [line for line in result.stdout.splitlines() if " error: " in line]
    assert len(errors) == 1, result.stdout
    assert "the STOW-RS credential must be one line" in errors[0]
    assert _TOKEN not in result.stdout + result.stderr
    assert server.requests == []


@pytest.mark.parametrize(
    "template",
    [
        "http://alice:{token}@{host}",
        "ftp://alice:{token}@{host}",
        "http://alice:{token}@[::1",
    ],
)
def test_a_password_in_the_stow_url_is_refused_and_never_shown(
    ct_file: Path, template: str
) -> None:
    with StowServer() as server:
        host = server.url.removeprefix("http://")
        url = template.format(token=_TOKEN, host=host)
        result = run("send", str(ct_file), "--stow", url)
    assert result.returncode == ExitStatus.USAGE, result.stderr
    (line,) = result.stderr.strip().splitlines()
    assert line.startswith("dicom-send: error: the STOW-RS URL ")
    assert _TOKEN not in result.stdout + result.stderr
    assert "alice" not in result.stdout + result.stderr
    assert server.requests == []


def test_printed_stow_urls_carry_no_credential() -> None:
    from fw_gear_dicom_send.transport.peer import public_url

    settings = StowSettings("https://pacs.example.org:8443/dicom-web?key=SECRET#x")
    assert str(settings) == "https://pacs.example.org:8443/dicom-web/studies"
    assert public_url("https://alice:pw@host:1/dicom-web?token=t") == (
        "https://host:1/dicom-web"
    )


# Finding 15: no formula in a CSV cell, no control character on a terminal or log.

_HOSTILE_NAMES = ["=cmd|' -C calc'!A0.dcm", "+1.dcm", "-2.dcm", "@SUM(1).dcm"]
_ESCAPE_NAME = "\x1b]0;owned\x07\x1b[2J\rok.dcm"


def test_the_report_neutralises_formulas_and_the_log_escapes_controls(
    make_receiver: Callable[..., StorageReceiver], tmp_path: Path
) -> None:
    """A receiver refusing everything: each file's name is in a report row and
    in a log line."""
    scp = make_receiver(status=0xA900)
    folder = tmp_path / "in"
    folder.mkdir()
    names = [*_HOSTILE_NAMES, _ESCAPE_NAME]
    for index, name in enumerate(names):
        dcmwrite(folder / name, make_ct(index), enforce_file_format=True)
    relative = [f"./{name}" for name in names]  # as typed, in the input folder
    result = run(
        "send",
        *relative,
        "--host=127.0.0.1",
        f"--port={scp.port}",
        "--called-ae=STORE-SCP",
        "--report=report.csv",
        "--retry-time=0",
        cwd=folder,
    )
    assert result.returncode == ExitStatus.NOTHING_SENT, result.stderr
    with open(folder / "report.csv", newline="") as f:
        cells = [row["file"] for row in csv.DictReader(f)]
    assert sorted(cells) == sorted(
        "'" + name if name[0] in "=+-@" else name for name in names
    )
    assert "\x1b" not in result.stderr and "\x07" not in result.stderr
    assert "\r" not in result.stderr
    assert "\\x1b]0;owned\\x07\\x1b[2J\\rok.dcm: refused" in result.stderr


def test_the_gear_report_neutralises_formulas(
    gear: Gear, site: Site, receiver: StorageReceiver, tmp_path: Path
) -> None:
    acquisition = site.standin.acquisition(site.session, "CT")
    hostile = tmp_path / "=HYPERLINK(1).zip"
    series_zip(tmp_path, 1, "ct").rename(hostile)
    gear.add_file_input("file", hostile, acquisition)
    gear.config = old_gear_config(receiver.port)
    gear.destination = {"type": "acquisition", "id": acquisition}
    result = gear.run()
    assert result.returncode == ExitStatus.SUCCESS, result.stdout
    (row,) = gear.report_rows()
    assert row["Filename"] == "'=HYPERLINK(1).zip"
    (path,) = gear.reports()
    assert ",=" not in path.read_text()


_PACS_NAME = "=1+2"
_PACS_ID = "\x1b[31mRED\rHIDDEN"


class HostilePacs:
    """A Study Root C-FIND SCP whose one match holds a formula and escapes."""

    def __init__(self) -> None:
        self.ae = AE(ae_title="PACS")
        self.ae.add_supported_context(STUDY_ROOT_FIND)
        handlers: list[evt.EventHandlerType] = [(evt.EVT_C_FIND, self._on_find)]
        server = self.ae.start_server(
            ("127.0.0.1", 0), block=False, evt_handlers=handlers
        )
        assert server is not None
        self.server = server
        self.port = int(server.server_address[1])

    def _on_find(self, event: evt.Event) -> Iterator[tuple[int, Dataset | None]]:
        match = Dataset()
        for element in event.identifier:
            match.add_new(element.tag, element.VR, element.value)
        match.PatientName = _PACS_NAME
        match.PatientID = _PACS_ID
        match.StudyInstanceUID = "1.2.3"
        yield 0xFF00, match

    def close(self) -> None:
        self.server.shutdown()


@pytest.fixture
def hostile_pacs() -> Iterator[HostilePacs]:
    pacs = HostilePacs()
    yield pacs
    pacs.close()


def test_find_neutralises_formulas_and_escapes_controls(
    hostile_pacs: HostilePacs, tmp_path: Path
) -> None:
    peer = ["--host=127.0.0.1", f"--port={hostile_pacs.port}", "--called-ae=PACS"]
    as_csv = run("find", *peer, "--level=study", "--format=csv")
    assert as_csv.returncode == ExitStatus.SUCCESS, as_csv.stderr
    (row,) = list(csv.DictReader(io.StringIO(as_csv.stdout)))
    assert row["PatientName"] == "'" + _PACS_NAME
    as_table = run("find", *peer, "--level=study")
    assert as_table.returncode == ExitStatus.SUCCESS, as_table.stderr
    assert "\x1b" not in as_table.stdout and "\r" not in as_table.stdout
    assert "\\x1b[31mRED\\rHIDDEN" in as_table.stdout


def test_the_manifest_states_the_same_ranges() -> None:
    """The platform's form holds numbers to the ranges the gear checks them to."""
    from fw_gear_dicom_send.settings import BOUNDS

    manifest = json.loads((Path(__file__).parent.parent / "manifest.json").read_text())
    numbers = {
        key: option
        for key, option in manifest["config"].items()
        if option["type"] in ("integer", "number")
    }
    assert numbers
    for key, option in numbers.items():
        bounds = BOUNDS[key]
        assert option["maximum"] == bounds.high, key
        assert option["minimum"] >= bounds.low, key
        assert bounds.holds(option["default"]), key
