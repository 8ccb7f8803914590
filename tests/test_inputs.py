"""Collecting inputs: folders, archives, safe and bounded extraction."""

import io
import os
import tarfile
import zipfile
from pathlib import Path

import pytest
from conftest import sha256

from fw_gear_dicom_send.sending.budget import Limits
from fw_gear_dicom_send.sending.inputs import InputFile, InputProblem, Item, collect
from fw_gear_dicom_send.status import InstanceStatus


def listing(items: list[Item]) -> dict[str, str]:
    return {
        item.name.split("!", 1)[-1] if "!" in item.name else Path(item.name).name: (
            "file"
            if isinstance(item, InputFile)
            else f"{item.status.value}: {item.reason}"
        )
        for item in items
    }


def run_collect(
    paths: list[Path], work: Path, limits: Limits | None = None
) -> list[Item]:
    work.mkdir(exist_ok=True)
    return list(collect(paths, work, limits or Limits()))


@pytest.mark.parametrize("mode", ["w:gz", "w:bz2", "w:xz", "w"])
def test_tar_flavours(mode: str, tmp_path: Path) -> None:
    archive = tmp_path / "a.tar"
    with tarfile.open(archive, mode) as tar:  # type: ignore[call-overload]
        for name in ("x/1.dcm", "x/2.dcm"):
            data = name.encode() * 10
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    items = run_collect([archive], tmp_path / "work")
    assert [i.name for i in items] == [f"{archive}!x/1.dcm", f"{archive}!x/2.dcm"]
    assert all(isinstance(i, InputFile) for i in items)
    assert (items[0].path.read_bytes()) == b"x/1.dcm" * 10  # type: ignore[union-attr]


def test_nested_archives_and_depth_limit(tmp_path: Path) -> None:
    inner = tmp_path / "inner.zip"
    with zipfile.ZipFile(inner, "w") as z:
        z.writestr("deep.dcm", b"data")
    current = inner
    for level in range(3):
        outer = tmp_path / f"outer{level}.zip"
        with zipfile.ZipFile(outer, "w") as z:
            z.write(current, current.name)
        current = outer
    items = run_collect([current], tmp_path / "w1")
    assert [i.name for i in items] == [
        f"{current}!outer1.zip!outer0.zip!inner.zip!deep.dcm"
    ]
    items = run_collect([current], tmp_path / "w2", Limits(max_depth=2))
    (problem,) = items
    assert isinstance(problem, InputProblem)
    assert problem.status is InstanceStatus.FAILED
    assert "nested deeper than 2" in problem.reason


def test_zip_slip_absolute_and_links_never_leave_the_work_folder(
    tmp_path: Path,
) -> None:
    archive = tmp_path / "evil.zip"
    with zipfile.ZipFile(archive, "w") as z:
        z.writestr("../../escaped.dcm", b"x")
        z.writestr("/etc/absolute.dcm", b"x")
        z.writestr("C:/windows.dcm", b"x")
        link = zipfile.ZipInfo("link.dcm")
        link.external_attr = 0o120777 << 16
        z.writestr(link, "/etc/passwd")
        z.writestr("fine/ok.dcm", b"x")
    work = tmp_path / "deep" / "work"
    work.parent.mkdir()
    before = sha256(archive)
    items = run_collect([archive], work)
    assert listing(items) == {
        "../../escaped.dcm": "skipped: unsafe member path, not extracted",
        "/etc/absolute.dcm": "skipped: unsafe member path, not extracted",
        "C:/windows.dcm": "skipped: unsafe member path, not extracted",
        "link.dcm": "skipped: symbolic link in archive, not extracted",
        "fine/ok.dcm": "file",
    }
    written = {p.relative_to(tmp_path) for p in tmp_path.rglob("*")}
    assert written == {
        Path("evil.zip"),
        Path("deep"),
        Path("deep/work"),
        Path("deep/work/member-00000001"),
    }
    assert sha256(archive) == before


def test_tar_links_and_devices_are_not_extracted(tmp_path: Path) -> None:
    archive = tmp_path / "links.tar"
    with tarfile.open(archive, "w") as tar:
        data = b"real"
        info = tarfile.TarInfo("real.dcm")
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))
        for name, kind in (("sym.dcm", tarfile.SYMTYPE), ("hard.dcm", tarfile.LNKTYPE)):
            link = tarfile.TarInfo(name)
            link.type = kind
            link.linkname = "../../../etc/passwd"
            tar.addfile(link)
        fifo = tarfile.TarInfo("fifo")
        fifo.type = tarfile.FIFOTYPE
        tar.addfile(fifo)
        dotdot = tarfile.TarInfo("../up.dcm")
        dotdot.size = 1
        tar.addfile(dotdot, io.BytesIO(b"x"))
    items = run_collect([archive], tmp_path / "work")
    assert listing(items) == {
        "real.dcm": "file",
        "sym.dcm": "skipped: link in archive, not extracted",
        "hard.dcm": "skipped: link in archive, not extracted",
        "fifo": "skipped: not a regular file, not extracted",
        "../up.dcm": "skipped: unsafe member path, not extracted",
    }
    assert os.listdir(tmp_path / "work") == ["member-00000001"]


def test_a_zip_bomb_is_refused(tmp_path: Path) -> None:
    archive = tmp_path / "bomb.zip"
    with zipfile.ZipFile(archive, "w", zipfile.ZIP_DEFLATED) as z:
        z.writestr("zeros.dcm", b"\0" * (8 * 1024 * 1024))
    limits = Limits(max_ratio=100, ratio_floor=1024 * 1024)
    (problem,) = run_collect([archive], tmp_path / "work", limits)
    assert isinstance(problem, InputProblem)
    assert problem.status is InstanceStatus.FAILED
    assert "decompression bomb" in problem.reason


def test_a_streamed_tar_bomb_stops_mid_member(tmp_path: Path) -> None:
    archive = tmp_path / "bomb.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        info = tarfile.TarInfo("zeros.dcm")
        info.size = 16 * 1024 * 1024
        tar.addfile(info, io.BytesIO(b"\0" * info.size))
    limits = Limits(max_total_bytes=4 * 1024 * 1024)
    (problem,) = run_collect([archive], tmp_path / "work", limits)
    assert isinstance(problem, InputProblem)
    assert "expands to more than" in problem.reason
    assert (
        sum(p.stat().st_size for p in (tmp_path / "work").iterdir()) <= 5 * 1024 * 1024
    )


def test_member_count_limit(tmp_path: Path) -> None:
    archive = tmp_path / "many.zip"
    with zipfile.ZipFile(archive, "w") as z:
        for i in range(11):
            z.writestr(f"{i}.dcm", b"x")
    (problem,) = run_collect([archive], tmp_path / "work", Limits(max_members=10))
    assert isinstance(problem, InputProblem)
    assert "11 members, more than the limit of 10" in problem.reason


@pytest.mark.parametrize(
    ("content", "reason"),
    [
        (b"PK\x03\x04" + b"garbage" * 20, "corrupt or unreadable zip archive"),
        (b"\x1f\x8b\x08\x00" + b"garbage" * 20, "tar archive"),
        (b"PK\x05\x06" + b"\0" * 18, "empty archive"),
    ],
)
def test_corrupt_or_empty_archives_get_a_row(
    content: bytes, reason: str, tmp_path: Path
) -> None:
    archive = tmp_path / "bad.zip"
    archive.write_bytes(content)
    (problem,) = run_collect([archive], tmp_path / "work")
    assert isinstance(problem, InputProblem)
    expected = (
        InstanceStatus.SKIPPED if reason == "empty archive" else InstanceStatus.FAILED
    )
    assert problem.status is expected
    assert reason in problem.reason


def test_folders_are_walked_in_order(tmp_path: Path) -> None:
    for name in ("b/2.dcm", "a/1.dcm", "a/c/3.dcm", "0.dcm"):
        (tmp_path / "in" / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / "in" / name).write_bytes(b"x")
    items = run_collect([tmp_path / "in"], tmp_path / "work")
    assert [Path(i.name).relative_to(tmp_path / "in").as_posix() for i in items] == [
        "0.dcm",
        "a/1.dcm",
        "a/c/3.dcm",
        "b/2.dcm",
    ]
