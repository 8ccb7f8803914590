"""The report's rows, CSV and exit status."""

import csv
from pathlib import Path

import pytest

from fw_gear_dicom_send.sending.report import COLUMNS, Row, summarize, write_csv
from fw_gear_dicom_send.status import ExitStatus, InstanceStatus

S = InstanceStatus


@pytest.mark.parametrize(
    ("statuses", "expected"),
    [
        ([S.SENT, S.WARNING, S.SKIPPED], ExitStatus.SUCCESS),
        ([S.SENT, S.FAILED], ExitStatus.INCOMPLETE),
        ([S.FAILED, S.FAILED], ExitStatus.NOTHING_SENT),
        ([S.SKIPPED], ExitStatus.NOTHING_SENT),
        ([], ExitStatus.NOTHING_SENT),
    ],
)
def test_exit_status(statuses: list[InstanceStatus], expected: ExitStatus) -> None:
    rows = [Row(f"f{i}", status) for i, status in enumerate(statuses)]
    assert summarize(rows, 1.0).exit_status is expected


def test_csv(tmp_path: Path) -> None:
    rows = [
        Row("a.zip!x.dcm", S.FAILED, "refused: 0xA700 (Refused: Out of Resources)",
            "1.2", "1.2.840.10008.5.1.4.1.1.2", "1.2.840.10008.1.2.1", 0xA700, 10),
        Row("notes, \"quoted\".txt", S.SKIPPED, "not DICOM"),
    ]  # fmt: skip
    path = tmp_path / "out" / "report.csv"
    write_csv(rows, path)
    with open(path, newline="") as f:
        read = list(csv.DictReader(f))
    assert tuple(read[0]) == COLUMNS
    assert read[0]["dimse_status"] == "0xA700"
    assert read[1]["file"] == 'notes, "quoted".txt'
    assert read[1]["dimse_status"] == ""
    assert not list(path.parent.glob("*.partial"))


def test_summary_lines() -> None:
    rows = [Row("a", S.SENT, bytes=2_000_000), Row("b", S.FAILED, bytes=5)]
    lines = summarize(rows, 2.0).lines()
    assert lines[0] == "2 files: 1 sent, 0 warning, 1 failed, 0 skipped"
    assert lines[1].startswith(
        "1 of 2 instances stored, 2.0 MB in 2.00 s (0.5 images/s"
    )
