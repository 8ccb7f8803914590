"""Hostile and odd input, end to end: every file gets exactly one row with a reason,
nothing is written outside the work folder, the run never crashes."""

import copy
import os
import resource
import signal
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
from checks import provenance
from pydicom import dcmread
from pydicom.filebase import DicomBytesIO
from pydicom.filewriter import dcmwrite, write_file_meta_info
from pydicom.uid import ImplicitVRLittleEndian
from test_cli import run, send_args
from test_send import peer_of

from fw_gear_dicom_send import SendRequest, send
from fw_gear_dicom_send.dicom.probe import probe
from fw_gear_dicom_send.dicom.samples import make_ct, write_series
from fw_gear_dicom_send.pacs.receiver import StorageReceiver
from fw_gear_dicom_send.status import ExitStatus, InstanceStatus


def test_every_private_creator_slot_taken(
    receiver: StorageReceiver, tmp_path: Path
) -> None:
    full = make_ct(1)
    for slot in range(0x10, 0x100):
        full.add_new((0x0021, slot), "LO", f"Other {slot}")
    dcmwrite(tmp_path / "full.dcm", full, enforce_file_format=True)
    dcmwrite(tmp_path / "fine.dcm", make_ct(2), enforce_file_format=True)
    result = send(
        SendRequest((tmp_path / "full.dcm", tmp_path / "fine.dcm"), peer_of(receiver))
    )
    full_row, fine_row = result.rows
    assert full_row.status is InstanceStatus.FAILED
    assert "all private creator slots" in full_row.reason
    assert fine_row.status is InstanceStatus.SENT
    assert len(receiver.received) == 1


def test_non_ascii_and_very_long_names(
    receiver: StorageReceiver, tmp_path: Path
) -> None:
    folder = tmp_path / "in"
    folder.mkdir()
    umlaut = folder / "Schädel-頭部-😀.dcm"
    dcmwrite(umlaut, make_ct(3), enforce_file_format=True)
    long_name = "x" * 200 + ".dcm"
    dcmwrite(tmp_path / "long.dcm", make_ct(4), enforce_file_format=True)
    with zipfile.ZipFile(folder / "names.zip", "w") as z:
        z.write(tmp_path / "long.dcm", f"{'d' * 120}/{'e' * 120}/{long_name}")
        z.write(umlaut, "ordner/größe-サイズ.dcm")
    result = send(SendRequest((folder,), peer_of(receiver)))
    names = sorted(row.file.removeprefix(str(folder) + "/") for row in result.rows)
    assert names == sorted(
        [
            umlaut.name,
            f"names.zip!{'d' * 120}/{'e' * 120}/{long_name}",
            "names.zip!ordner/größe-サイズ.dcm",
        ]
    )
    statuses = [row.status for row in result.rows]
    # The umlaut file is in the zip too: the second copy is a duplicate.
    assert sorted(statuses) == sorted(
        [InstanceStatus.SENT, InstanceStatus.SENT, InstanceStatus.SKIPPED]
    )


def test_an_unreadable_file_fails_alone(
    receiver: StorageReceiver, tmp_path: Path
) -> None:
    """A link to /proc/self/mem: it exists, it is a file, and reading it fails
    (EIO), whoever runs the test (root reads a chmod 000 file)."""
    folder = tmp_path / "in"
    folder.mkdir()
    dcmwrite(folder / "a.dcm", make_ct(5), enforce_file_format=True)
    (folder / "b.dcm").symlink_to("/proc/self/mem")
    result = send(SendRequest((folder,), peer_of(receiver)))
    rows = {Path(row.file).name: row for row in result.rows}
    assert rows["a.dcm"].status is InstanceStatus.SENT
    assert rows["b.dcm"].status is InstanceStatus.FAILED
    assert rows["b.dcm"].reason.startswith("cannot read:")
    assert result.exit_status is ExitStatus.INCOMPLETE


def test_ten_thousand_tiny_files_in_one_zip(
    receiver: StorageReceiver, tmp_path: Path
) -> None:
    archive = tmp_path / "tiny.zip"
    with zipfile.ZipFile(archive, "w") as z:
        for index in range(10_000):
            z.writestr(f"notes/{index:05d}.txt", f"note {index}\n")
    result = send(SendRequest((archive,), peer_of(receiver)))
    assert len(result.rows) == 10_000
    assert {row.status for row in result.rows} == {InstanceStatus.SKIPPED}
    assert result.exit_status is ExitStatus.NOTHING_SENT
    assert receiver.associations == 0


def test_file_meta_that_contradicts_the_dataset(
    receiver: StorageReceiver, tmp_path: Path
) -> None:
    """The meta says Explicit VR, the data set is Implicit VR: the file is decoded
    as what it is, not as what it claims, and arrives intact."""
    ds = make_ct(6)
    honest = tmp_path / "honest.dcm"
    dcmwrite(honest, ds, enforce_file_format=True)  # Explicit VR
    meta = copy.deepcopy(ds.file_meta)
    meta.TransferSyntaxUID = ImplicitVRLittleEndian
    buffer = DicomBytesIO()
    write_file_meta_info(buffer, meta)
    dataset = honest.read_bytes()[probe(honest, 0x0021).dataset_offset :]
    path = tmp_path / "liar.dcm"
    path.write_bytes(bytes(128) + b"DICM" + buffer.getvalue() + dataset)
    with pytest.warns(UserWarning, match="Expected implicit VR, but found explicit"):
        assert dcmread(path).file_meta.TransferSyntaxUID == ImplicitVRLittleEndian
    result = send(SendRequest((path,), peer_of(receiver)))
    (row,) = result.rows
    assert row.status is InstanceStatus.SENT, row.reason
    (got,) = receiver.received
    received = dcmread(got.path)
    assert received.PixelData == ds.PixelData
    assert received.PatientID == ds.PatientID
    assert provenance(received) == [b"DICOM Send"]


def test_no_space_left_in_the_work_folder(
    receiver: StorageReceiver, tmp_path: Path
) -> None:
    """Writes are capped at 1 MB (RLIMIT_FSIZE, as a full disk would stop them):
    the member that does not fit fails with the reason, the others go."""
    series = write_series(tmp_path / "series", 3, seed="space")
    big = tmp_path / "big.dcm"
    dcmwrite(big, make_ct(9, rows=1024, columns=1024), enforce_file_format=True)
    archive = tmp_path / "study.zip"
    with zipfile.ZipFile(archive, "w") as z:
        for path in [*series, big]:
            z.write(path, path.name)
    report = tmp_path / "report.csv"

    def cap_writes() -> None:
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (1 << 20, 1 << 20))

    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "fw_gear_dicom_send",
            *send_args(archive, receiver.port, "STORE-SCP"),
            f"--report={report}",
            f"--work-dir={tmp_path}",
        ],
        capture_output=True,
        text=True,
        timeout=60,
        preexec_fn=cap_writes,
        env={**os.environ, "PYTHONWARNINGS": "ignore"},
        check=False,
    )
    assert "Traceback" not in result.stderr
    assert result.returncode == ExitStatus.INCOMPLETE, result.stderr
    text = report.read_text()
    assert text.count(",sent,") == 3
    assert "cannot extract to the work folder" in text
    assert "File too large" in text
    assert len(receiver.received) == 3


@pytest.mark.parametrize(
    ("option", "message"),
    [
        ("--port=abc", "argument --port: not a whole number: 'abc'"),
        ("--port=0", "port must be 1 to 65535"),
        ("--retry-time=-1", "--retry-time must be a number of seconds"),
        ("--called-ae=SEVENTEEN-CHARS-XY", "called AE title must be 1 to 16"),
        ("--group=0x0022", "group 0x0022 is not a private group"),
        ("--group=0xFFFF", "group 0xFFFF is not a private group"),
    ],
)
def test_bad_options_are_one_line(
    option: str, message: str, receiver: StorageReceiver, tmp_path: Path
) -> None:
    path = tmp_path / "ct.dcm"
    dcmwrite(path, make_ct(7), enforce_file_format=True)
    result = run(*send_args(path, receiver.port, "STORE-SCP"), option)
    assert result.returncode == ExitStatus.USAGE
    (line,) = result.stderr.strip().splitlines()
    assert message in line
    assert "Traceback" not in result.stderr
    assert receiver.associations == 0


def test_an_unreadable_certificate_is_one_line(
    receiver: StorageReceiver, tmp_path: Path
) -> None:
    path = tmp_path / "ct.dcm"
    dcmwrite(path, make_ct(8), enforce_file_format=True)
    result = run(
        *send_args(path, receiver.port, "STORE-SCP"),
        "--tls",
        f"--tls-cert={tmp_path}",
        f"--tls-key={tmp_path}",
    )
    assert result.returncode == ExitStatus.USAGE
    (line,) = result.stderr.strip().splitlines()
    assert line == (
        f"dicom-send: error: cannot read the client certificate {tmp_path}: "
        "Is a directory"
    )
