"""The gear's end-of-job summary names why each file that is not complete is not:
``python run.py`` against the stand-in Flywheel API and a real Storage SCP."""

import re
from pathlib import Path

from gearjob import Gear, Site, old_gear_config
from pydicom.filewriter import dcmwrite

from fw_gear_dicom_send.dicom.samples import make_ct
from fw_gear_dicom_send.pacs.receiver import StorageReceiver
from fw_gear_dicom_send.status import ExitStatus

_FAILED = re.compile(r"summary: Failed (?P<path>.+?), 0 of 1 images sent(?P<why>.*)$")


def _truncated(folder: Path, name: str, seed: int) -> Path:
    path = folder / name
    dcmwrite(path, make_ct(seed), enforce_file_format=True)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    return path


def _failed_lines(stdout: str) -> list[re.Match[str]]:
    return [m for line in stdout.splitlines() if (m := _FAILED.search(line))]


def test_gear_summary_gives_the_reason_of_a_truncated_file(
    gear: Gear, site: Site, receiver: StorageReceiver, tmp_path: Path
) -> None:
    acquisition = site.standin.acquisition(site.session, "CT")
    gear.add_file_input("file", _truncated(tmp_path, "a.dcm", 1), acquisition)
    gear.config = old_gear_config(receiver.port)
    gear.destination = {"type": "acquisition", "id": acquisition}

    result = gear.run()

    assert result.returncode == ExitStatus.NOTHING_SENT, result.stdout
    lines = _failed_lines(result.stdout)
    assert len(lines) == 1, result.stdout
    (line,) = lines
    assert line["path"].endswith("/a.dcm")
    assert line["why"].startswith(": truncated"), line.group()


def test_gear_summary_lists_twenty_failed_files_with_reasons_then_a_count(
    gear: Gear, site: Site, receiver: StorageReceiver, tmp_path: Path
) -> None:
    acquisition = site.standin.acquisition(site.session, "Truncated")
    for seed in range(23):
        site.standin.add_file(
            acquisition, _truncated(tmp_path, f"t{seed:02}.dcm", seed)
        )
    gear.config = old_gear_config(receiver.port)
    gear.destination = {"type": "session", "id": site.session}

    result = gear.run()

    assert result.returncode == ExitStatus.NOTHING_SENT, result.stdout
    lines = _failed_lines(result.stdout)
    assert len(lines) == 20, result.stdout
    for line in lines:
        assert line["why"].startswith(": truncated"), line.group()
    assert "summary: and 3 more files not complete" in result.stdout
    assert receiver.received == []
