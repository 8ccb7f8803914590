"""Sparse tar members: their holes are written as zeros though the archive holds
none of them, so the extraction budget counts the bytes written, not only the bytes
read out of the archive."""

import logging
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from fw_gear_dicom_send.sending.budget import Limits
from fw_gear_dicom_send.sending.inputs import InputProblem, collect
from fw_gear_dicom_send.status import InstanceStatus

_HOLE = 64 << 20  # four times the 16 MiB any input may extract


def _sparse_tar(folder: Path, tar_format: str, gzip: bool) -> Path:
    """A tar made by GNU tar --sparse of one file that is a 64 MiB hole."""
    tar = shutil.which("tar")
    assert tar is not None, "GNU tar is needed to make sparse archives"
    hole = folder / "hole.dcm"
    with open(hole, "wb") as f:
        f.truncate(_HOLE)
    archive = folder / f"sparse-{tar_format}.tar{'.gz' if gzip else ''}"
    args = ["--sparse", f"--format={tar_format}", "-c", *(["-z"] if gzip else [])]
    args += ["-f", str(archive), "-C", str(folder), hole.name]
    subprocess.run([tar, *args], check=True)
    hole.unlink()
    return archive


@pytest.mark.parametrize(
    ("tar_format", "gzip"),
    [("gnu", False), ("pax", False), ("gnu", True), ("pax", True)],
    ids=["gnu", "pax", "gnu-gzip", "pax-gzip"],
)
def test_a_sparse_member_stops_at_the_budget(
    tar_format: str, gzip: bool, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A few KB that expand to 64 MiB of zeros: the input stops at its 16 MiB with
    one failed row and one line, and leaves nothing in the work folder."""
    archive = _sparse_tar(tmp_path, tar_format, gzip)
    assert archive.stat().st_size < 64 << 10
    work = tmp_path / "work"
    work.mkdir()
    with caplog.at_level(logging.WARNING):
        items = list(collect([archive], work, Limits()))
    (problem,) = items
    assert isinstance(problem, InputProblem)
    assert (problem.name, problem.status) == (str(archive), InstanceStatus.FAILED)
    assert problem.reason.startswith("archive expands to more than 16.0 MiB")
    assert problem.reason.endswith("(a decompression bomb?)")
    assert os.listdir(work) == []
    warned = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert warned == [f"{archive}: {problem.reason}"]
