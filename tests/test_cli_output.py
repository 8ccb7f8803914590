"""What the command line leaves: find's table, file and database; the progress bar.

Each test runs ``python -m fw_gear_dicom_send`` against a real peer (Orthanc, or
the in-process Storage SCP) and checks the exact line or number. The bar is
checked under a pseudo-terminal, the plain log lines without one.
"""

import csv
import fcntl
import json
import os
import pty
import re
import sqlite3
import struct
import subprocess
import sys
import termios
import time
from pathlib import Path
from typing import Any

import pytest
import test_pacs
from gearjob import Gear, old_gear_config, series_zip
from test_pacs import Pacs

from fw_gear_dicom_send.dicom.samples import write_series
from fw_gear_dicom_send.pacs.receiver import StorageReceiver
from fw_gear_dicom_send.status import ExitStatus

pytestmark = pytest.mark.peer

pacs = test_pacs.pacs
"""Orthanc holding two patients' studies (the fixture of test_pacs)."""


def cli(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "fw_gear_dicom_send", *args],
        capture_output=True,
        text=True,
        timeout=90,
        check=False,
        cwd=cwd,
    )


def on_terminal(*args: str, columns: int = 120) -> tuple[int, str]:
    """Run the command line with stderr on a pseudo-terminal; exit status, stderr."""
    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 40, columns, 0, 0))
    process = subprocess.Popen(
        [sys.executable, "-m", "fw_gear_dicom_send", *args],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=slave,
    )
    os.close(slave)
    chunks = []
    while True:
        try:
            chunk = os.read(master, 65536)
        except OSError:  # EIO: the terminal's last writer closed it
            break
        if not chunk:
            break
        chunks.append(chunk)
    os.close(master)
    return process.wait(timeout=90), b"".join(chunks).decode("utf-8", "replace")


def final_bar(terminal: str) -> str:
    """The bar as it was last drawn, without its colours and cursor moves."""
    plain = re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", terminal)
    drawn = [part for part in re.split(r"[\r\n]+", plain) if "━" in part]
    assert drawn, terminal
    return drawn[-1].strip()


# -- find


def table_cells(table: str) -> list[list[str]]:
    """The cells of an aligned table, cut where its rule line's dashes are."""
    lines = table.splitlines()
    spans = [m.span() for m in re.finditer(r"-+", lines[1])]
    return [[line[a:b].strip() for a, b in spans] for line in [lines[0], *lines[2:]]]


def test_find_table_columns_stay_aligned_whatever_the_value_lengths(
    pacs: Pacs,
) -> None:
    args = ["find", *pacs.peer_args()]
    found = cli(*args, "--level", "image", "--format", "json")
    assert found.returncode == 0, found.stderr
    matches = json.loads(found.stdout)
    table = cli(*args, "--level", "IMAGE")  # either case
    assert table.returncode == 0, table.stderr
    header, *rows = table_cells(table.stdout)
    assert len(rows) == len(matches) == 8
    # A UID is longer than its header: each cell is still under its header.
    assert max(len(m["SOPInstanceUID"]) for m in matches) > len("SOPInstanceUID")
    assert sorted(rows) == sorted([m.get(key, "") for key in header] for m in matches)


@pytest.mark.parametrize(("fmt", "existing"), [("csv", "old\n"), ("table", None)])
def test_find_out_is_not_written_when_the_query_fails(
    pacs: Pacs, tmp_path: Path, fmt: str, existing: str | None
) -> None:
    out = tmp_path / "found.txt"
    if existing is not None:
        out.write_text(existing)
    result = cli(
        "find", *pacs.peer_args(), "--calling-ae", "STRANGER", "--level", "study",
        "--format", fmt, "--out", str(out),
    )  # fmt: skip
    assert result.returncode == ExitStatus.NOTHING_SENT, result.stderr
    assert (out.read_text() if out.exists() else None) == existing
    assert [p.name for p in tmp_path.iterdir()] == ([out.name] if existing else [])


def test_find_out_is_written_once_answered(pacs: Pacs, tmp_path: Path) -> None:
    out = tmp_path / "found.csv"
    out.write_text("old\n")
    result = cli(
        "find", *pacs.peer_args(), "--level", "study", "--format", "csv",
        "--out", str(out),
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    with open(out, newline="") as f:
        studies = {row["StudyInstanceUID"] for row in csv.DictReader(f)}
    assert studies == {pacs.study_a, pacs.study_b}


def studies_in(db: Path) -> list[str]:
    with sqlite3.connect(db) as con:
        rows = con.execute('SELECT "StudyInstanceUID" FROM "studies"').fetchall()
    return sorted(row[0] for row in rows)


def test_find_db_takes_three_slashes_for_an_absolute_path_or_a_plain_path(
    pacs: Pacs, tmp_path: Path
) -> None:
    here = tmp_path / "here"
    here.mkdir()
    find = ["find", *pacs.peer_args(), "--level", "study"]
    absolute = tmp_path / "abs.db"
    as_url = "sqlite:///" + str(absolute).lstrip("/")
    result = cli(*find, "--db", as_url, cwd=here)
    assert result.returncode == 0, result.stderr
    assert (
        result.stderr.splitlines()[-1] == f"2 matches into {absolute} (table studies)"
    )
    assert studies_in(absolute) == sorted([pacs.study_a, pacs.study_b])

    result = cli(*find, "--db", "plain.db", cwd=here)
    assert result.returncode == 0, result.stderr
    assert studies_in(here / "plain.db") == sorted([pacs.study_a, pacs.study_b])

    missing = tmp_path / "no-such-folder" / "x.db"
    result = cli(*find, "--db", str(missing), cwd=here)
    assert result.returncode == ExitStatus.USAGE
    assert result.stderr == (
        f"dicom-send: error: cannot use the database {missing}: "
        "unable to open database file\n"
    )


def test_find_db_twice_keeps_one_row_per_key(pacs: Pacs, tmp_path: Path) -> None:
    db = tmp_path / "found.db"
    for _ in range(2):
        result = cli(
            "find", *pacs.peer_args(), "--level", "study", "--db", f"sqlite:///{db}"
        )
        assert result.returncode == 0, result.stderr
    assert studies_in(db) == sorted([pacs.study_a, pacs.study_b])
    for _ in range(2):
        result = cli("find", *pacs.peer_args(), "--level", "image", "--db", str(db))
        assert result.returncode == 0, result.stderr
    with sqlite3.connect(db) as con:
        (count,) = con.execute('SELECT COUNT(*) FROM "images"').fetchone()
    assert count == len(pacs.files) == 8


def test_find_db_keeps_one_row_per_key_of_a_table_written_with_repeats(
    pacs: Pacs, tmp_path: Path
) -> None:
    db = tmp_path / "old.db"
    with sqlite3.connect(db) as con:  # as an earlier dicom-send left it
        con.execute('CREATE TABLE "studies" (_id INTEGER, "StudyInstanceUID" TEXT)')
        con.executemany(
            'INSERT INTO "studies" ("StudyInstanceUID") VALUES (?)',
            [(pacs.study_a,), (pacs.study_a,), ("1.2.3",), ("1.2.3",)],
        )
    result = cli("find", *pacs.peer_args(), "--level", "study", "--db", str(db))
    assert result.returncode == 0, result.stderr
    assert studies_in(db) == sorted([pacs.study_a, pacs.study_b, "1.2.3"])


# -- the progress bar


def test_send_shows_one_bar_on_a_terminal(
    receiver: StorageReceiver, tmp_path: Path
) -> None:
    files = write_series(tmp_path / "in", 12)
    megabytes = sum(p.stat().st_size for p in files) / 1e6
    status, terminal = on_terminal(
        "send", str(tmp_path / "in"), "--host", "127.0.0.1",
        f"--port={receiver.port}", "--called-ae", "STORE-SCP",
    )  # fmt: skip
    assert status == 0, terminal
    assert len(receiver.received) == 12
    bar = final_bar(terminal)
    assert re.fullmatch(
        rf"━+ 12/12 instances, {megabytes:.1f}/{megabytes:.1f} MB, "
        r"\d+ images/s, 0:00:00 left",
        bar,
    ), bar
    # One bar, drawn over itself from its first state to its last.
    drawing = terminal[terminal.index("━") : terminal.rindex("12/12 instances")]
    assert "\n" not in drawing


def test_retrieve_shows_one_bar_on_a_terminal(pacs: Pacs, tmp_path: Path) -> None:
    out = tmp_path / "got"
    status, terminal = on_terminal(
        "retrieve", *pacs.peer_args(), "--level", "series", "--uid", pacs.series_b,
        "--out", str(out), "--method", "get", "--layout", "flat",
    )  # fmt: skip
    assert status == 0, terminal
    filed = sorted(out.glob("*.dcm"))
    assert len(filed) == 3
    megabytes = sum(p.stat().st_size for p in filed) / 1e6
    bar = final_bar(terminal)
    assert re.fullmatch(
        rf"━+ 3/3 instances, {megabytes:.1f} MB, \d+ images/s, 0:00:00 left", bar
    ), bar
    assert "progress: " not in terminal


class SlowReceiver(StorageReceiver):
    """Takes a while over each C-STORE, so that a send lasts some seconds."""

    def _on_store(self, event: Any) -> Any:
        time.sleep(0.7)
        return super()._on_store(event)


def test_without_a_terminal_progress_is_a_log_line_every_few_seconds(
    tmp_path: Path,
) -> None:
    write_series(tmp_path / "in", 9)
    with SlowReceiver(tmp_path / "received", ae_title="SLOW") as scp:
        result = subprocess.run(
            [
                sys.executable, "-X", "importtime", "-m", "fw_gear_dicom_send",
                "send", str(tmp_path / "in"), "--host", "127.0.0.1",
                f"--port={scp.port}", "--called-ae", "SLOW", "--associations", "1",
            ],
            capture_output=True, text=True, timeout=90, check=False,
        )  # fmt: skip
    assert result.returncode == 0, result.stderr
    lines = [line for line in result.stderr.splitlines() if "import time:" not in line]
    progress = [line for line in lines if "progress" in line]
    assert progress, lines
    for line in progress:
        assert re.fullmatch(
            r"dicom-send: progress: [1-8]/9 instances, \d+\.\d/\d+\.\d MB, "
            r"\d+ images/s",
            line,
        ), line
    assert "\r" not in result.stderr
    assert " rich" not in result.stderr  # no bar, so its library is not imported


# -- the gear run locally


def test_a_local_gear_run_names_its_report_after_the_file_and_says_why_no_acquisition(
    gear: Gear, receiver: StorageReceiver, tmp_path: Path
) -> None:
    series = series_zip(tmp_path, 2, "ct")
    gear.add_file_input("file", series, "0" * 24)
    del gear.inputs["api-key"]
    del gear.inputs["file"]["hierarchy"]  # as the README's local run has it
    gear.config = old_gear_config(receiver.port)
    gear.destination = {"type": "acquisition", "id": "local"}

    result = gear.run()

    assert result.returncode == ExitStatus.SUCCESS, result.stdout
    (report,) = gear.reports()
    assert re.fullmatch(
        r"dicom-send_report-ct\.zip_\d{4}-\d\d-\d\d_\d\d-\d\d-\d\d\.csv", report.name
    )
    (row,) = gear.report_rows()
    assert (row["Acquisition ID"], row["Filename"], row["Status"]) == (
        "",
        "ct.zip",
        "Complete",
    )
    assert (
        f"{report.name}: Acquisition ID left empty for 1 file: the file input names "
        "no Flywheel acquisition (no api-key input, or no hierarchy on the file "
        "input in config.json)"
    ) in result.stdout + result.stderr
