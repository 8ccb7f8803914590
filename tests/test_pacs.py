"""The PACS client verbs against Orthanc: echo, find, listen + move, retrieve, verify,
skip-existing; and their Python API."""

import csv
import io
import json
import os
import re
import resource
import signal
import socket
import sqlite3
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from conftest import ExternalPeer, free_port, run_orthanc
from faults import QueryableReceiver
from pki import Pki
from pydicom import dcmread
from pydicom.filewriter import dcmwrite
from test_send import read_report

from fw_gear_dicom_send import SendRequest, send
from fw_gear_dicom_send.cli.main import main
from fw_gear_dicom_send.dicom.samples import write_series
from fw_gear_dicom_send.pacs.query import Level, Query, find
from fw_gear_dicom_send.pacs.retrieve import SubOperations, Target, get
from fw_gear_dicom_send.sending.report import read_stored
from fw_gear_dicom_send.status import ExitStatus, InstanceStatus
from fw_gear_dicom_send.transport.association import Client
from fw_gear_dicom_send.transport.peer import AssociationSettings, Peer
from fw_gear_dicom_send.transport.retry import RetryPolicy

pytestmark = pytest.mark.peer

ME = "DICOM-SEND"
LISTENER = "LISTENER"


@dataclass
class Pacs:
    """Orthanc holding two patients' studies, and what was sent to it."""

    orthanc: ExternalPeer
    listen_port: int
    """Orthanc knows LISTENER at this port."""
    me_port: int
    """Orthanc knows DICOM-SEND (us) at this port."""
    files: dict[str, Path]
    """The sent files by SOP Instance UID."""
    folder_a: Path
    """Patient A's five files."""
    study_a: str
    study_b: str
    series_b: str

    def peer_args(self) -> list[str]:
        return [
            "--host=127.0.0.1",
            f"--port={self.orthanc.port}",
            "--called-ae=ORTHANC",
            f"--calling-ae={ME}",
        ]

    def client(self) -> Client:
        return Client(
            Peer("127.0.0.1", self.orthanc.port, "ORTHANC"),
            AssociationSettings(calling_ae=ME),
        )

    def holds(self, resource: str, key: str) -> set[str]:
        found = self.orthanc.rest_json(f"/{resource}?expand")
        assert isinstance(found, list)
        return {r["MainDicomTags"][key] for r in found}


def two_studies(folder: Path) -> dict[str, Path]:
    """Patient A: 5 images, study date 2026-01-01; patient B: 3, 2025-06-15."""
    files = [*write_series(folder / "a", 5, seed="pacs-a", rows=16, columns=16)]
    for path in write_series(folder / "b", 3, seed="pacs-b", rows=16, columns=16):
        ds = dcmread(path)
        ds.StudyDate = "20250615"
        dcmwrite(path, ds, enforce_file_format=True)
        files.append(path)
    return {str(dcmread(p, stop_before_pixels=True).SOPInstanceUID): p for p in files}


@pytest.fixture(scope="module")
def pacs(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Pacs]:
    tmp = tmp_path_factory.mktemp("pacs")
    listen_port, me_port = free_port(), free_port()
    modalities = {
        "listener": [LISTENER, "127.0.0.1", listen_port],
        "me": [ME, "127.0.0.1", me_port],
    }
    for orthanc in run_orthanc(tmp, DicomModalities=modalities):
        files = two_studies(tmp / "data")
        loaded = send(
            SendRequest(
                paths=(tmp / "data",),
                peer=Peer("127.0.0.1", orthanc.port, "ORTHANC"),
                association=AssociationSettings(calling_ae=ME),
            )
        )
        assert loaded.exit_status is ExitStatus.SUCCESS
        a = dcmread(next(iter((tmp / "data" / "a").iterdir())))
        b = dcmread(next(iter((tmp / "data" / "b").iterdir())))
        yield Pacs(
            orthanc,
            listen_port,
            me_port,
            files,
            tmp / "data" / "a",
            str(a.StudyInstanceUID),
            str(b.StudyInstanceUID),
            str(b.SeriesInstanceUID),
        )


def test_echo(pacs: Pacs, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["echo", *pacs.peer_args()]) == 0
    assert "0x0000 (Success)" in capsys.readouterr().out


LEVELS = [
    ("patient", "patients", "PatientID"),
    ("study", "studies", "StudyInstanceUID"),
    ("series", "series", "SeriesInstanceUID"),
    ("image", "instances", "SOPInstanceUID"),
]


@pytest.mark.parametrize(("level", "resource", "key"), LEVELS)
def test_find_at_each_level_returns_what_orthanc_holds(
    pacs: Pacs,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    level: str,
    resource: str,
    key: str,
) -> None:
    expected = pacs.holds(resource, key)
    assert len(expected) >= 2
    find_args = ["find", *pacs.peer_args(), "--level", level]

    assert main(["-q", *find_args, "--format", "json"]) == 0
    matches = json.loads(capsys.readouterr().out)
    assert {m[key] for m in matches} == expected

    out = tmp_path / "found.csv"
    assert main(["-q", *find_args, "--format", "csv", "--out", str(out)]) == 0
    with open(out, newline="") as f:
        assert {row[key] for row in csv.DictReader(f)} == expected

    assert main(["-q", *find_args]) == 0  # table
    table = capsys.readouterr().out.splitlines()
    assert table[0].split()[: len(table[0].split())].count(key) == 1
    assert len(table) == 2 + len(expected)
    assert all(any(uid in line for line in table) for uid in expected)

    db = tmp_path / "found.db"
    assert main(["-q", *find_args, "--db", f"sqlite:///{db}"]) == 0
    table_name = {"patient": "patients", "study": "studies"}.get(level, level)
    table_name = "images" if level == "image" else table_name
    with sqlite3.connect(db) as con:
        rows = con.execute(f'SELECT "{key}" FROM "{table_name}"').fetchall()
    assert {r[0] for r in rows} == expected


def test_find_matching_keys_wildcards_dates_and_modality(
    pacs: Pacs, capsys: pytest.CaptureFixture[str]
) -> None:
    def found(*extra: str) -> list[dict[str, str]]:
        args = ["-q", "find", *pacs.peer_args(), "--format", "json", *extra]
        assert main(args) == 0
        result = json.loads(capsys.readouterr().out)
        assert isinstance(result, list)
        return result

    only_a = found("--level", "study", "-k", "PatientID=SYN-pacs-a")
    assert [m["StudyInstanceUID"] for m in only_a] == [pacs.study_a]
    wildcard = found("--level", "study", "-k", "PatientID=SYN-pacs-*")
    assert {m["StudyInstanceUID"] for m in wildcard} == {pacs.study_a, pacs.study_b}
    # Two years in windows of 30 days: 25 C-FINDs, and each study found once.
    dated = found(
        "--level", "study", "--date-from", "2025-01-01", "--date-to", "2026-12-31",
        "--window-days", "30",
    )  # fmt: skip
    assert sorted(m["StudyInstanceUID"] for m in dated) == sorted(
        [pacs.study_a, pacs.study_b]
    )
    june = found(
        "--level", "study", "--date-from", "2025-06-01", "--date-to", "20250630"
    )
    assert [m["StudyInstanceUID"] for m in june] == [pacs.study_b]
    assert june[0]["StudyDate"] == "20250615"
    series = found("--level", "series", "--modality", "CT", "-k", "SeriesDescription")
    assert len(series) == 2
    assert all("SeriesDescription" in m for m in series)
    assert found("--level", "series", "--modality", "MR") == []


def test_find_api_streams_matches(pacs: Pacs) -> None:
    matches = find(
        pacs.client(), Query(Level.IMAGE, keys=(("PatientID", "SYN-pacs-b"),))
    )
    first = next(matches)  # a generator: the first match before the rest
    rest = list(matches)
    assert {first["SOPInstanceUID"], *(m["SOPInstanceUID"] for m in rest)} == {
        uid for uid, path in pacs.files.items() if path.parent.name == "b"
    }


def test_find_bad_usage_is_one_line(
    pacs: Pacs, capsys: pytest.CaptureFixture[str]
) -> None:
    for extra, message in (
        (["--level", "study", "-k", "NoSuchKeyword=1"], "is not a DICOM keyword"),
        (["--level", "study", "--db", "postgres://x"], "--db takes sqlite:///FILE"),
        (
            [
                "--level",
                "study",
                "--date-from",
                "2026-02-01",
                "--date-to",
                "2026-01-01",
            ],
            "--date-from is after --date-to",
        ),
        (["--level", "patient", "--model", "study"], "study root model has no patient"),
    ):
        assert main(["find", *pacs.peer_args(), *extra]) == ExitStatus.USAGE
        err = capsys.readouterr().err
        assert message in err
        assert err.count("\n") == 1


def start_listener(out: Path, port: int, *extra: str) -> subprocess.Popen[str]:
    proc = subprocess.Popen(
        [
            sys.executable, "-m", "fw_gear_dicom_send", "listen",
            "--port", str(port), "--ae-title", LISTENER, "--bind", "127.0.0.1",
            "--out", str(out), *extra,
        ],
        stderr=subprocess.PIPE,
        text=True,
    )  # fmt: skip
    assert proc.stderr is not None
    line = proc.stderr.readline()  # "listening ..." once the port is open
    assert "receiver LISTENER listening on" in line, line
    return proc


def stop_listener(proc: subprocess.Popen[str]) -> str:
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=20)
    assert proc.returncode == 0, err
    return err


def test_listen_and_move_file_a_study_by_patient_study_series(
    pacs: Pacs, tmp_path: Path
) -> None:
    out = tmp_path / "moved"
    listener = start_listener(out, pacs.listen_port)
    try:
        args = ["move", *pacs.peer_args(), "--level", "study", "--uid", pacs.study_a]
        assert main([*args, "--dest-ae", LISTENER]) == 0
    finally:
        err = stop_listener(listener)
    received = sorted(out.rglob("*.dcm"))
    assert len(received) == 5
    for path in received:
        ds = dcmread(path)
        relative = path.relative_to(out).parts
        assert relative == (
            "SYN-pacs-a",
            ds.StudyInstanceUID,
            ds.SeriesInstanceUID,
            f"{ds.SOPInstanceUID}.dcm",
        )
        original = dcmread(pacs.files[str(ds.SOPInstanceUID)])
        assert ds.PixelData == original.PixelData
    assert not list(out.rglob("*.partial"))
    assert "association from ORTHANC@127.0.0.1" in err
    assert "released: 5 stored, 0 failed" in err


def test_move_to_an_unknown_destination_fails_with_the_status(
    pacs: Pacs, capsys: pytest.CaptureFixture[str]
) -> None:
    args = ["move", *pacs.peer_args(), "--level", "study", "--uid", pacs.study_a]
    assert main([*args, "--dest-ae", "NOBODY"]) == ExitStatus.NOTHING_SENT
    err = capsys.readouterr().err
    # Orthanc answers 0xC000 (Unable to Process) where the standard has 0xA801.
    assert re.fullmatch(r"dicom-send: move refused: 0x[AC][0-9A-F]{3} \(.+\)\n", err)


@pytest.mark.parametrize("method", ["move", "get"])
def test_retrieve_shows_progress_and_ends_with_orthancs_counts(
    pacs: Pacs, tmp_path: Path, capsys: pytest.CaptureFixture[str], method: str
) -> None:
    out = tmp_path / method
    args = [
        "retrieve", *pacs.peer_args(), "--level", "series", "--uid", pacs.series_b,
        "--out", str(out), "--method", method, "--layout", "flat",
        "--listen-port", str(pacs.me_port), "--bind", "127.0.0.1",
    ]  # fmt: skip
    assert main(args) == 0
    captured = capsys.readouterr()
    series = pacs.orthanc.rest_json("/series?expand")
    assert isinstance(series, list)
    (ours,) = [
        s for s in series if s["MainDicomTags"]["SeriesInstanceUID"] == pacs.series_b
    ]
    count = len(ours["Instances"])
    assert count == 3
    assert "progress: " in captured.err
    assert "remaining" in captured.err
    assert f"retrieve: {count} completed, 0 failed, 0 warning" in captured.out
    assert f"{count} files written" in captured.out
    assert len(list(out.glob("*.dcm"))) == count


def test_get_api(pacs: Pacs, tmp_path: Path) -> None:
    seen: list[SubOperations] = []
    target = Target(Level.STUDY, pacs.study_b)
    result = get(pacs.client(), target, tmp_path, on_progress=seen.append)
    assert result.complete
    assert result.received == result.counts.completed == 3
    assert seen
    assert seen[0].remaining is not None


def test_send_verify_on_orthanc(pacs: Pacs, tmp_path: Path) -> None:
    report = tmp_path / "report.csv"
    args = ["-q", "send", str(pacs.folder_a), *pacs.peer_args(), "--verify"]
    assert main([*args, "--report", str(report)]) == 0
    rows = read_report(report)
    assert len(rows) == 5
    assert {row["verified"] for row in rows} == {"yes"}


def test_verify_finds_the_instance_a_receiver_answered_for_but_did_not_keep(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    files = list(write_series(tmp_path / "in", 6, seed="forgot", rows=16, columns=16))
    lost = str(dcmread(files[2], stop_before_pixels=True).SOPInstanceUID)
    report = tmp_path / "report.csv"
    with QueryableReceiver(tmp_path / "scp", forget=[lost]) as scp:
        args = [
            "send", str(tmp_path / "in"), "--host=127.0.0.1", f"--port={scp.port}",
            "--called-ae=STORE-SCP", "--verify", "--report", str(report),
        ]  # fmt: skip
        assert main(args) == ExitStatus.INCOMPLETE
    rows = {row["sop_instance_uid"]: row for row in read_report(report)}
    assert rows[lost]["status"] == "sent"  # the receiver said so
    assert rows[lost]["verified"] == "no"
    assert "not found on the receiver" in rows[lost]["reason"]
    assert [r["verified"] for u, r in rows.items() if u != lost] == ["yes"] * 5
    assert "5 verified on the receiver, 1 not verified" in capsys.readouterr().out


def test_verify_by_series_count_where_image_level_is_refused(tmp_path: Path) -> None:
    write_series(tmp_path / "in", 4, seed="count", rows=16, columns=16)
    with QueryableReceiver(tmp_path / "scp", image_level=False) as scp:
        result = send(
            SendRequest(
                paths=(tmp_path / "in",),
                peer=Peer("127.0.0.1", scp.port, "STORE-SCP"),
                verify=True,
            )
        )
    assert result.exit_status is ExitStatus.SUCCESS
    assert all(row.verified for row in result.rows)
    assert all("verified by series count" in row.reason for row in result.rows)


def test_skip_existing_after_an_interrupted_run_sends_only_the_rest(
    tmp_path: Path,
) -> None:
    files = list(write_series(tmp_path / "in", 10, seed="resume", rows=16, columns=16))
    first_half = tmp_path / "half"
    first_half.mkdir()
    for path in files[:4]:
        os.link(path, first_half / path.name)
    with QueryableReceiver(tmp_path / "scp") as scp:
        peer = Peer("127.0.0.1", scp.port, "STORE-SCP")
        assert send(SendRequest(paths=(first_half,), peer=peer)).exit_status == 0
        assert scp.stores == 4
        result = send(
            SendRequest(paths=(tmp_path / "in",), peer=peer, skip_existing=True)
        )
        assert scp.stores == 10  # only the 6 it lacked
        assert len(scp.kept) == 10
    assert result.exit_status is ExitStatus.SUCCESS
    skipped = [r for r in result.rows if "already on the receiver" in r.reason]
    assert len(skipped) == 4
    assert all(r.status is InstanceStatus.SENT for r in result.rows)


def test_skip_existing_on_orthanc(pacs: Pacs, tmp_path: Path) -> None:
    report = tmp_path / "report.csv"
    args = ["-q", "send", str(pacs.folder_a), *pacs.peer_args(), "--skip-existing"]
    assert main([*args, "--report", str(report)]) == 0
    rows = read_report(report)
    assert len(rows) == 5
    assert all("already on the receiver" in row["reason"] for row in rows)
    assert len(read_stored(report)) == 5


def test_listen_answers_out_of_resources_when_it_cannot_write(tmp_path: Path) -> None:
    """A 4 KB file-size limit stands in for a full disk."""
    port = free_port()
    out = tmp_path / "full"

    def limit() -> None:
        resource.setrlimit(resource.RLIMIT_FSIZE, (4096, 4096))
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)

    proc = subprocess.Popen(
        [
            sys.executable, "-m", "fw_gear_dicom_send", "listen", "--port", str(port),
            "--bind", "127.0.0.1", "--out", str(out), "--layout", "flat",
        ],
        stderr=subprocess.PIPE,
        text=True,
        preexec_fn=limit,  # noqa: PLW1509 - only sets a limit
    )  # fmt: skip
    assert proc.stderr is not None
    assert "listening on" in proc.stderr.readline()
    files = list(write_series(tmp_path / "in", 2, seed="full", rows=64, columns=64))
    try:
        result = send(
            SendRequest(
                paths=(tmp_path / "in",),
                peer=Peer("127.0.0.1", port, "DICOM-SEND"),
                retry=RetryPolicy(budget=0),
            )
        )
    finally:
        err = stop_listener(proc)
    assert [r.dimse_status for r in result.rows] == [0xA700, 0xA700]
    assert all(r.status is InstanceStatus.FAILED for r in result.rows)
    assert "cannot store" in err
    assert "File too large" in err
    assert list(out.rglob("*")) == []  # nothing partial left
    assert len(files) == 2


def test_listen_over_tls(tmp_path: Path, pki: Pki) -> None:
    port = free_port()
    out = tmp_path / "tls"
    listener = start_listener(
        out, port, "--tls", "--tls-cert", str(pki.server.cert),
        "--tls-key", str(pki.server.key), "--tls-ca", str(pki.ca),
    )  # fmt: skip
    write_series(tmp_path / "in", 3, seed="tls-listen", rows=16, columns=16)
    try:
        args = [
            "-q", "send", str(tmp_path / "in"), "--host=127.0.0.1", f"--port={port}",
            f"--called-ae={LISTENER}", "--tls", "--tls-ca", str(pki.ca),
            "--tls-cert", str(pki.client.cert), "--tls-key", str(pki.client.key),
        ]  # fmt: skip
        assert main(args) == 0
        plain = ["-q", "send", str(tmp_path / "in"), "--host=127.0.0.1"]
        assert main([*plain, f"--port={port}", f"--called-ae={LISTENER}"]) != 0
    finally:
        stop_listener(listener)
    assert len(list(out.rglob("*.dcm"))) == 3


def test_a_json_result_with_no_match_is_an_empty_array(
    pacs: Pacs, capsys: pytest.CaptureFixture[str]
) -> None:
    args = ["-q", "find", *pacs.peer_args(), "--level", "study", "--format", "json"]
    assert main([*args, "-k", "PatientID=NOBODY"]) == 0
    assert json.load(io.StringIO(capsys.readouterr().out)) == []


def test_listener_errors_are_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    with socket.create_server(("127.0.0.1", 0)) as taken:
        port = taken.getsockname()[1]
        for args, message in (
            (["--port", str(port), "--out", str(tmp_path / "x")], "cannot listen on"),
            (
                ["--port", str(free_port()), "--out", str(blocker / "x")],
                "cannot create",
            ),
        ):
            assert main(["listen", "--bind", "127.0.0.1", *args]) == ExitStatus.USAGE
            err = capsys.readouterr().err
            assert message in err, err
            assert err.count("\n") == 1
