"""The command line a PACS admin expects (issue 22, points 1-4), run as a process.

Refusals say what the peer did and the likely cause, once; every failed file is
named in the log; ``-v``/``-q`` go before or after the verb; the summary's
numbers are this run's, in words that agree with them.
"""

import csv
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import ExternalPeer, free_port, run_orthanc
from faults import QueryableReceiver

from fw_gear_dicom_send.dicom.samples import bundled, write_series
from fw_gear_dicom_send.pacs.receiver import StorageReceiver
from fw_gear_dicom_send.status import ExitStatus

UNKNOWN = (
    "our calling AE title {ae} is likely unknown to that PACS or not allowed to "
    "{asked} (add it to the PACS's known modalities, e.g. Orthanc's DicomModalities)"
)
MIXED = (
    "CT_small.dcm",
    "MR_small.dcm",
    "MR_small_RLE.dcm",  # MR_small's UID, another data set: fails
    "MR_truncated.dcm",
    "rtplan_truncated.dcm",
    "README.txt",
    "no_meta.dcm",
    "SC_rgb_jpeg.dcm",  # read by pydicom, which warns about its VR
)
"""pydicom's test files: sent, failed (a duplicate UID, two truncated), skipped."""
CT_SMALL_STUDY = "1.3.6.1.4.1.5962.1.2.1.20040119072730.12322"
VR_WARNING = (
    "Expected explicit VR, but found implicit VR - using implicit VR for reading"
)


def run(*args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "fw_gear_dicom_send", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
        env={k: v for k, v in os.environ.items() if k != "PYTHONWARNINGS"},
    )


def peer_args(port: int, called_ae: str, *extra: str) -> list[str]:
    return ["--host=127.0.0.1", f"--port={port}", f"--called-ae={called_ae}", *extra]


def rows_of(report: Path) -> dict[str, dict[str, str]]:
    with open(report, newline="", encoding="utf-8") as f:
        return {Path(row["file"]).name: row for row in csv.DictReader(f)}


@pytest.fixture
def mixed(tmp_path: Path) -> Path:
    folder = tmp_path / "mixed"
    folder.mkdir()
    for name in MIXED:
        shutil.copy(bundled(name), folder / name)
    return folder


@pytest.fixture(scope="module")
def orthanc_knowing_us(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[ExternalPeer]:
    """Orthanc that knows DICOM-SEND (our default AE title) and no other, and
    holds CT_small."""
    folder = tmp_path_factory.mktemp("orthanc")
    modalities = {"us": ["DICOM-SEND", "127.0.0.1", free_port()]}
    for peer in run_orthanc(folder, DicomModalities=modalities):
        sent = run(
            "send", str(bundled("CT_small.dcm")), *peer_args(peer.port, "ORTHANC")
        )
        assert sent.returncode == ExitStatus.SUCCESS, sent.stderr
        yield peer


# 1. Refusals with a hint, once


def test_find_from_an_unknown_ae_says_the_pacs_aborted_and_why(
    orthanc_knowing_us: ExternalPeer,
) -> None:
    """Orthanc accepts the association of an AE title not in its DicomModalities
    and aborts it at the C-FIND: one line says so, no table header before it."""
    port = orthanc_knowing_us.port
    result = run(
        "find",
        *peer_args(port, "ORTHANC", "--calling-ae=STRANGER"),
        "--level=study",
    )
    assert result.returncode == ExitStatus.NOTHING_SENT
    assert result.stdout == ""
    assert result.stderr.splitlines() == [
        f"dicom-send: ORTHANC@127.0.0.1:{port} aborted the association (A-ABORT) "
        "when asked to C-FIND: " + UNKNOWN.format(ae="STRANGER", asked="C-FIND")
    ]


def test_retrieve_from_an_unknown_ae_says_the_pacs_aborted_and_why(
    orthanc_knowing_us: ExternalPeer, tmp_path: Path
) -> None:
    port = orthanc_knowing_us.port
    result = run(
        "retrieve",
        *peer_args(port, "ORTHANC", "--calling-ae=FOO"),
        "--level=study",
        f"--uid={CT_SMALL_STUDY}",
        f"--out={tmp_path / 'out'}",
        f"--listen-port={free_port()}",
    )
    assert result.returncode == ExitStatus.NOTHING_SENT
    refusals = [line for line in result.stderr.splitlines() if "ORTHANC@" in line]
    assert refusals == [
        f"dicom-send: ORTHANC@127.0.0.1:{port} aborted the association (A-ABORT) "
        "when asked to C-MOVE: " + UNKNOWN.format(ae="FOO", asked="C-MOVE")
    ]


def test_verify_against_a_receiver_without_c_find_says_so_once(
    storescp: ExternalPeer, mixed: Path, tmp_path: Path
) -> None:
    """DCMTK storescp refuses the Query/Retrieve context: one line for the run,
    not one per instance."""
    report = tmp_path / "report.csv"
    result = run(
        "send",
        str(mixed),
        *peer_args(storescp.port, "STORESCP", "--verify", f"--report={report}"),
    )
    assert result.returncode == ExitStatus.INCOMPLETE
    said = [line for line in result.stderr.splitlines() if "cannot verify" in line]
    assert said == [
        f"dicom-send: cannot verify: STORESCP@127.0.0.1:{storescp.port} accepts no "
        "presentation context for Study Root Query/Retrieve Information Model - "
        "FIND (abstract syntax not supported): it refused the Query/Retrieve "
        "context, it offers no C-FIND service"
    ]
    assert rows_of(report)["CT_small.dcm"]["verified"] == "no"


def test_skip_existing_and_verify_from_an_unknown_ae_say_the_cause_once(
    orthanc_knowing_us: ExternalPeer, tmp_path: Path
) -> None:
    """Orthanc stores from anyone but answers C-FIND only to the AE titles it
    knows: asked before and after the send, the cause is said once."""
    port = orthanc_knowing_us.port
    series = tmp_path / "series"
    write_series(series, 2, seed="stranger")
    result = run(
        "send",
        str(series),
        *peer_args(port, "ORTHANC", "--calling-ae=STRANGER"),
        "--skip-existing",
        "--verify",
    )
    assert result.returncode == ExitStatus.INCOMPLETE, result.stderr
    cause = (
        f"ORTHANC@127.0.0.1:{port} aborted the association (A-ABORT) when asked to "
        "C-FIND: " + UNKNOWN.format(ae="STRANGER", asked="C-FIND")
    )
    lines = result.stderr.splitlines()
    assert [line for line in lines if cause in line] == [
        f"dicom-send: cannot ask the receiver what it holds ({cause}): sending all"
    ]
    assert "dicom-send: cannot verify: the receiver cannot be asked, as said above" in (
        lines
    )
    assert "2 files: 2 sent, 0 warning, 0 failed, 0 skipped" in result.stdout


# 2. Every failed file named in the log


def test_every_failed_file_is_named_with_its_reason(
    receiver: StorageReceiver, mixed: Path
) -> None:
    """Once each: as it happens (the duplicate UID), or at the end (the truncated
    files, which the log did not name before)."""
    result = run("send", str(mixed), *peer_args(receiver.port, "STORE-SCP"))
    assert result.returncode == ExitStatus.INCOMPLETE
    assert "8 files: 3 sent, 0 warning, 3 failed, 2 skipped" in result.stdout
    lines = result.stderr.splitlines()
    truncated = "truncated: an element runs past the end of the file"
    duplicate = (
        f"duplicate SOP Instance UID of {mixed / 'MR_small.dcm'} with a different "
        "data set: not sent (the receiver would keep only one of them)"
    )
    for name, reason in [
        ("MR_small_RLE.dcm", duplicate),
        ("MR_truncated.dcm", truncated),
        ("rtplan_truncated.dcm", truncated),
    ]:
        naming = [line for line in lines if str(mixed / name) in line]
        assert len(naming) == 1, (name, lines)
        assert naming[0].endswith(f"{mixed / name}: {reason}")
    assert f"dicom-send: failed: {mixed / 'MR_truncated.dcm'}: {truncated}" in lines


def test_a_pydicom_warning_names_the_file(
    receiver: StorageReceiver, mixed: Path
) -> None:
    result = run("send", str(mixed), *peer_args(receiver.port, "STORE-SCP"))
    warned = [line for line in result.stderr.splitlines() if VR_WARNING in line]
    assert warned == [f"dicom-send: {mixed / 'SC_rgb_jpeg.dcm'}: {VR_WARNING}"]


def test_the_first_20_failures_then_a_count(
    receiver: StorageReceiver, tmp_path: Path
) -> None:
    folder = tmp_path / "broken"
    folder.mkdir()
    whole = bundled("CT_small.dcm").read_bytes()
    for i in range(25):
        (folder / f"cut-{i:02d}.dcm").write_bytes(whole[: len(whole) - 100])
    result = run("send", str(folder), *peer_args(receiver.port, "STORE-SCP"))
    assert result.returncode == ExitStatus.NOTHING_SENT
    lines = result.stderr.splitlines()
    failed = [line for line in lines if line.startswith("dicom-send: failed: ")]
    assert failed == [
        f"dicom-send: failed: {folder / f'cut-{i:02d}.dcm'}: truncated: an element "
        "runs past the end of the file"
        for i in range(20)
    ]
    assert (
        lines[-1] == "dicom-send: … and 5 more failed (--report FILE names every file)"
    )


# 3. -v / -q


@pytest.mark.parametrize("where", ["before", "after"])
def test_verbose_before_or_after_the_verb(
    receiver: StorageReceiver, mixed: Path, where: str
) -> None:
    """``-v`` shows each file's decision and the association's events."""
    args = ["send", str(mixed), *peer_args(receiver.port, "STORE-SCP")]
    result = run(*(["-v", *args] if where == "before" else [*args, "-v"]))
    assert result.returncode == ExitStatus.INCOMPLETE, result.stderr
    lines = result.stderr.splitlines()
    peer = f"STORE-SCP@127.0.0.1:{receiver.port}"
    assert any(
        re.fullmatch(
            rf"dicom-send: association with {peer} opened: (\d+) of \1 presentation "
            "contexts accepted",
            line,
        )
        for line in lines
    ), lines
    assert f"dicom-send: association with {peer} released" in lines
    assert f"dicom-send: {mixed / 'CT_small.dcm'}: sent" in lines
    assert f"dicom-send: {mixed / 'README.txt'}: skipped: not DICOM" in lines


def test_a_garbled_transfer_syntax_at_verbose_is_no_traceback(
    storescp: ExternalPeer, tmp_path: Path
) -> None:
    """A file whose meta names no transfer syntax pydicom knows (a trailing dot)
    is decoded for a syntax the receiver accepts: sent, with pydicom's notes on
    it named after the file, and no traceback (the fixture checks) nor Python
    warning with its line of code."""
    data = bundled("MR_small_implicit.dcm").read_bytes()
    garbled = tmp_path / "garbled.dcm"
    garbled.write_bytes(data.replace(b"1.2.840.10008.1.2\0", b"1.2.840.10008.1.2.", 1))
    result = run("-v", "send", str(garbled), *peer_args(storescp.port, "STORESCP"))
    assert result.returncode == ExitStatus.SUCCESS, result.stderr
    lines = result.stderr.splitlines()
    assert f"dicom-send: {garbled}: {VR_WARNING}" in lines
    assert f"dicom-send: {garbled}: sent" in lines
    assert not [line for line in lines if "Warning:" in line or "warn" in line]


def test_quiet_after_the_verb_and_on_every_verb(
    receiver: StorageReceiver, mixed: Path
) -> None:
    send = run("send", str(mixed), *peer_args(receiver.port, "STORE-SCP"), "-q")
    assert send.returncode == ExitStatus.INCOMPLETE
    assert send.stderr == ""
    echo = run("echo", *peer_args(receiver.port, "STORE-SCP"), "-vv")
    assert echo.returncode == ExitStatus.SUCCESS, echo.stderr
    assert "DEBUG pynetdicom" in echo.stderr


def test_debug_is_ours_and_pynetdicom_not_plugin_chatter(
    storescp: ExternalPeer, mixed: Path
) -> None:
    result = run("-vv", "send", str(mixed), *peer_args(storescp.port, "STORESCP"))
    assert result.returncode == ExitStatus.INCOMPLETE
    loggers = {
        line.split()[1].rstrip(":")
        for line in result.stderr.splitlines()
        if line.startswith("DEBUG ")
    }
    assert "pynetdicom._handlers" in loggers
    assert any(name.startswith("fw_gear_dicom_send") for name in loggers)
    assert {name.split(".")[0] for name in loggers} == {
        "pynetdicom",
        "fw_gear_dicom_send",
    }


# 4. Numbers that add up


def test_bytes_is_the_size_of_every_file(
    receiver: StorageReceiver, mixed: Path, tmp_path: Path
) -> None:
    report = tmp_path / "report.csv"
    run(
        "send", str(mixed), *peer_args(receiver.port, "STORE-SCP"), f"--report={report}"
    )
    rows = rows_of(report)
    assert {name: int(row["bytes"]) for name, row in rows.items()} == {
        name: (mixed / name).stat().st_size for name in MIXED
    }


def test_resume_counts_this_runs_transfers_and_the_rest_apart(
    receiver: StorageReceiver, tmp_path: Path
) -> None:
    first, later = tmp_path / "a", tmp_path / "b"
    write_series(first, 6, seed="resume", rows=256, columns=256)
    paths = write_series(later, 4, seed="resume-b", rows=256, columns=256)
    earlier = tmp_path / "earlier.csv"
    port = receiver.port
    run("send", str(first), *peer_args(port, "STORE-SCP"), f"--report={earlier}")
    result = run(
        "send", str(first), str(later), *peer_args(port, "STORE-SCP"),
        f"--resume={earlier}",
    )  # fmt: skip
    assert result.returncode == ExitStatus.SUCCESS, result.stderr
    megabytes = sum(p.stat().st_size for p in paths) / 1e6
    summary = result.stdout.splitlines()
    assert summary[0] == "10 files: 10 sent, 0 warning, 0 failed, 0 skipped"
    assert re.fullmatch(
        rf"4 instances stored, {megabytes:.1f} MB in (\d+\.\d\d) s "
        r"\((\d+\.\d) images/s, \d+\.\d MB/s\); 6 already stored",
        summary[1],
    ), summary
    seconds, rate = re.findall(r"[\d.]+", summary[1].split("MB in ")[1])[:2]
    assert float(rate) == pytest.approx(4 / float(seconds), rel=0.05, abs=0.1)


def test_skip_existing_with_nothing_new_gives_no_rate(tmp_path: Path) -> None:
    series = tmp_path / "series"
    write_series(series, 3, seed="skip")
    with QueryableReceiver(tmp_path / "scp") as scp:
        args = ["send", str(series), *peer_args(scp.port, "STORE-SCP")]
        assert run(*args).returncode == ExitStatus.SUCCESS
        result = run(*args, "--skip-existing")
    assert result.returncode == ExitStatus.SUCCESS, result.stderr
    assert re.fullmatch(
        r"0 instances stored in \d+\.\d\d s; 3 already stored",
        result.stdout.splitlines()[1],
    ), result.stdout


def test_one_is_singular(
    receiver: StorageReceiver, orthanc_knowing_us: ExternalPeer
) -> None:
    ct = str(bundled("CT_small.dcm"))
    result = run("send", ct, *peer_args(receiver.port, "STORE-SCP"))
    files, stored = result.stdout.splitlines()[:2]
    assert files == "1 file: 1 sent, 0 warning, 0 failed, 0 skipped"
    assert stored.startswith("1 of 1 instance stored, ")
    assert "dicom-send: sending 1 instance (0.0 MB) to " in result.stderr
    found = run(
        "find",
        *peer_args(orthanc_knowing_us.port, "ORTHANC"),
        "--level=study",
        f"-kStudyInstanceUID={CT_SMALL_STUDY}",  # others may have stored more
        "--format=json",
    )
    assert found.returncode == ExitStatus.SUCCESS, found.stderr
    assert found.stderr.splitlines() == ["dicom-send: 1 match"]
