"""Broken and hostile archives and folders: nothing lost without a row, no input
that blocks the run, one extraction budget per input across every nesting level."""

import contextlib
import csv
import gzip
import io
import lzma
import os
import random
import socket
import subprocess
import sys
import tarfile
import threading
import time
import zipfile
from pathlib import Path

import pytest
from gearjob import Gear, Site, old_gear_config
from pydicom.filewriter import dcmwrite
from test_send import peer_of

from fw_gear_dicom_send import SendRequest, send
from fw_gear_dicom_send.dicom.samples import make_ct
from fw_gear_dicom_send.pacs.receiver import StorageReceiver
from fw_gear_dicom_send.sending.budget import Limits
from fw_gear_dicom_send.sending.inputs import InputFile, InputProblem, Item, collect
from fw_gear_dicom_send.status import ExitStatus, InstanceStatus


def ct_bytes(number: int) -> bytes:
    out = io.BytesIO()
    dcmwrite(out, make_ct(number, rows=32, columns=32), enforce_file_format=True)
    return out.getvalue()


def tar_of(members: dict[str, bytes]) -> bytes:
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w") as tar:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return out.getvalue()


def member_end(tar: bytes, count: int) -> int:
    """Offset just after the data of the first ``count`` members."""
    with tarfile.open(fileobj=io.BytesIO(tar)) as archive:
        member = archive.getmembers()[count - 1]
    return member.offset_data + -(-member.size // 512) * 512


def send_cli(
    receiver: StorageReceiver, tmp_path: Path, *paths: Path, timeout: float = 60
) -> tuple[subprocess.CompletedProcess[str], list[dict[str, str]]]:
    """``dicom-send send`` as a user runs it; its report's rows."""
    report = tmp_path / "report.csv"
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "fw_gear_dicom_send",
            "send",
            *map(str, paths),
            "--host=127.0.0.1",
            f"--port={receiver.port}",
            "--called-ae=STORE-SCP",
            f"--report={report}",
            f"--work-dir={tmp_path}",
        ],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
        env={**os.environ, "PYTHONWARNINGS": "ignore"},
    )
    assert "Traceback" not in result.stdout + result.stderr, result.stderr
    with open(report, newline="") as f:
        return result, list(csv.DictReader(f))


def statuses(rows: list[dict[str, str]], folder: Path) -> dict[str, str]:
    return {
        row["file"].removeprefix(f"{folder}/"): f"{row['status']}: {row['reason']}"
        for row in rows
    }


# No member lost without a word.


@pytest.mark.parametrize("damage", ["cut at a member boundary", "no gzip trailer"])
def test_a_cut_tar_sends_what_it_holds_and_fails(
    damage: str, receiver: StorageReceiver, tmp_path: Path
) -> None:
    """The members before the cut go, and the archive itself fails: exit 1."""
    members = {f"ct/{n}.dcm": ct_bytes(n) for n in range(3)}
    whole = tar_of(members)
    if damage == "cut at a member boundary":
        archive = tmp_path / "study.tar"
        archive.write_bytes(whole[: member_end(whole, 2)])
        sent = 2
    else:
        archive = tmp_path / "study.tar.gz"
        archive.write_bytes(gzip.compress(whole)[:-8])
        sent = 3
    result, rows = send_cli(receiver, tmp_path, archive)
    assert result.returncode == ExitStatus.INCOMPLETE, result.stderr
    assert len(receiver.received) == sent
    (failed,) = [row for row in rows if row["status"] == "failed"]
    assert failed["file"] == str(archive)
    assert failed["reason"].startswith("truncated tar archive: ")
    assert [row["status"] for row in rows].count("sent") == sent
    (line,) = [line for line in result.stderr.splitlines() if "truncated" in line]
    assert str(archive) in line


def test_a_tar_broken_mid_way_fails_after_its_first_members(tmp_path: Path) -> None:
    whole = bytearray(tar_of({f"{n}.dcm": b"x" * 600 for n in range(3)}))
    header = member_end(bytes(whole), 1)
    whole[header : header + 100] = b"\xff" * 100  # the second header's name, broken
    archive = tmp_path / "broken.tar"
    archive.write_bytes(bytes(whole))
    items = run_collect([archive], tmp_path / "work")
    assert [i.name.rsplit("!", 1)[-1] for i in items] == ["0.dcm", str(archive)]
    assert isinstance(items[1], InputProblem)
    assert items[1].status is InstanceStatus.FAILED
    assert items[1].reason == f"corrupt tar archive: bad checksum at byte {header}"


def test_a_linked_subfolder_has_a_row(tmp_path: Path) -> None:
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (elsewhere / "hidden.dcm").write_bytes(b"x")
    folder = tmp_path / "in"
    (folder / "b").mkdir(parents=True)
    (folder / "a.dcm").write_bytes(b"x")
    (folder / "b" / "c.dcm").write_bytes(b"x")
    (folder / "linked").symlink_to(elsewhere)
    (folder / "loop").symlink_to(folder)
    items = run_collect([folder], tmp_path / "work")
    assert listing(items, folder) == {
        "a.dcm": "file",
        "b/c.dcm": "file",
        "linked": "skipped: link to a folder, not followed",
        "loop": "skipped: link to a folder, not followed",
    }


# Nothing blocks on a named pipe.


def test_named_pipes_never_block(receiver: StorageReceiver, tmp_path: Path) -> None:
    folder = tmp_path / "in"
    folder.mkdir()
    (folder / "ct.dcm").write_bytes(ct_bytes(1))
    os.mkfifo(folder / "pipe.dcm")
    named = tmp_path / "named-pipe"
    os.mkfifo(named)
    with socket.socket(socket.AF_UNIX) as sock:
        sock.bind(str(folder / "socket.dcm"))
        result, rows = send_cli(receiver, tmp_path, folder, named, timeout=30)
    assert result.returncode == ExitStatus.SUCCESS, result.stderr
    assert statuses(rows, tmp_path) == {
        "in/ct.dcm": "sent: ",
        "in/pipe.dcm": "skipped: a named pipe, not a regular file: not read",
        "in/socket.dcm": "skipped: a socket, not a regular file: not read",
        "named-pipe": "skipped: a named pipe, not a regular file: not read",
    }
    assert len(receiver.received) == 1


def test_a_device_named_directly_is_not_read(tmp_path: Path) -> None:
    items = run_collect([Path("/dev/zero")], tmp_path / "work")
    assert listing(items, Path("/dev")) == {
        "zero": "skipped: a device, not a regular file: not read"
    }


# A member that cannot be read fails alone.


def zip_with_bad_members(path: Path) -> Path:
    """Two CT images, one encrypted member and one compressed with Deflate64."""
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as z:
        z.writestr("a.dcm", ct_bytes(11))
        z.writestr("secret.dcm", ct_bytes(12))
        z.writestr("deflate64.dcm", ct_bytes(13))
        z.writestr("b.dcm", ct_bytes(14))
    data = bytearray(path.read_bytes())
    for name, patch in (("secret.dcm", "encrypt"), ("deflate64.dcm", "deflate64")):
        with zipfile.ZipFile(io.BytesIO(bytes(data))) as z:
            info = z.getinfo(name)
        local = info.header_offset
        central = _central_entry(data, name)
        if patch == "encrypt":
            data[local + 6] |= 1
            data[central + 8] |= 1
        else:
            data[local + 8 : local + 10] = (9).to_bytes(2, "little")
            data[central + 10 : central + 12] = (9).to_bytes(2, "little")
    path.write_bytes(bytes(data))
    return path


def _central_entry(data: bytearray, name: str) -> int:
    """Offset of the central directory entry of ``name``."""
    at = 0
    while (at := data.index(b"PK\x01\x02", at + 1)) >= 0:
        length = int.from_bytes(data[at + 28 : at + 30], "little")
        if data[at + 46 : at + 46 + length] == name.encode():
            return at
    raise AssertionError(name)  # pragma: no cover


def test_encrypted_and_deflate64_members_fail_alone(
    receiver: StorageReceiver, tmp_path: Path
) -> None:
    archive = zip_with_bad_members(tmp_path / "study.zip")
    result = send(SendRequest((archive,), peer_of(receiver)))
    rows = {row.file.rsplit("!", 1)[-1]: row for row in result.rows}
    assert {name: row.status for name, row in rows.items()} == {
        "a.dcm": InstanceStatus.SENT,
        "secret.dcm": InstanceStatus.FAILED,
        "deflate64.dcm": InstanceStatus.FAILED,
        "b.dcm": InstanceStatus.SENT,
    }
    assert rows["secret.dcm"].reason == (
        "encrypted member: cannot be extracted without its password"
    )
    assert rows["deflate64.dcm"].reason == (
        "compressed with Deflate64 (zip method 9), which cannot be extracted"
    )
    assert result.exit_status is ExitStatus.INCOMPLETE
    assert len(receiver.received) == 2


def test_the_gear_goes_on_past_unreadable_members(
    gear: Gear, site: Site, receiver: StorageReceiver, tmp_path: Path
) -> None:
    acquisition = site.standin.acquisition(site.session, "Locked")
    archive = zip_with_bad_members(tmp_path / "locked.zip")
    gear.add_file_input("file", archive, acquisition)
    gear.config = old_gear_config(receiver.port)
    gear.destination = {"type": "acquisition", "id": acquisition}

    result = gear.run()

    assert result.returncode == ExitStatus.INCOMPLETE, result.stdout
    assert len(receiver.received) == 2
    instances = {
        r["file"].rsplit("!", 1)[-1]: r["status"] for r in gear.instance_rows()
    }
    assert instances == {
        "a.dcm": "sent",
        "secret.dcm": "failed",
        "deflate64.dcm": "failed",
        "b.dcm": "sent",
    }
    (row,) = gear.report_rows()
    assert (row["Images Sent"], row["Status"]) == ("2", "Incomplete")


# One budget per input, across every nesting level.


@pytest.fixture(scope="module")
def nested_bomb(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Some 13 KB of tar.xz: 1000 copies of a 61 KB zip of 60 MiB of zeros."""
    inner = io.BytesIO()
    with zipfile.ZipFile(inner, "w", zipfile.ZIP_DEFLATED, compresslevel=9) as z:
        z.writestr("zeros.dcm", bytes(60 << 20))
    copies = tar_of({f"copy{n:04d}.zip": inner.getvalue() for n in range(1000)})
    path = tmp_path_factory.mktemp("bomb") / "bomb.tar.xz"
    path.write_bytes(lzma.compress(copies))
    assert path.stat().st_size < 16 << 10
    return path


class FolderWatch:
    """The most a folder's files held at once, while a process runs."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.peak = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._watch, daemon=True)

    def _watch(self) -> None:
        while not self._stop.wait(0.02):
            total = 0
            for root, _dirs, files in os.walk(self.folder):
                for name in files:
                    with contextlib.suppress(OSError):  # removed meanwhile
                        total += os.stat(os.path.join(root, name)).st_size
            self.peak = max(self.peak, total)

    def __enter__(self) -> "FolderWatch":
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


def test_a_nested_bomb_stops_within_the_budget(
    nested_bomb: Path, receiver: StorageReceiver, tmp_path: Path
) -> None:
    """Each copy is small, and so is each one's expansion (60 MiB): together they
    are 60 GiB. The input may extract 16 MiB (at least, and 1000 times its size
    past that): it stops there, with one line and one failed row."""
    work = tmp_path / "work"
    work.mkdir()
    started = time.monotonic()
    with FolderWatch(work) as watch:
        process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "fw_gear_dicom_send",
                "send",
                str(nested_bomb),
                "--host=127.0.0.1",
                f"--port={receiver.port}",
                "--called-ae=STORE-SCP",
                f"--report={tmp_path / 'report.csv'}",
                f"--work-dir={work}",
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env={**os.environ, "PYTHONWARNINGS": "ignore"},
        )
        while process.poll() is None and watch.peak <= 32 << 20:
            assert time.monotonic() - started < 60
            time.sleep(0.02)
        process.kill()  # no-op if done; else it is past the budget
        stdout, stderr = process.communicate()
    assert watch.peak <= 16 << 20, f"{watch.peak} bytes extracted"
    assert "Traceback" not in stdout + stderr
    assert process.returncode == ExitStatus.NOTHING_SENT, stderr
    with open(tmp_path / "report.csv", newline="") as f:
        (row,) = list(csv.DictReader(f))
    assert (row["file"], row["status"]) == (str(nested_bomb), "failed")
    assert row["reason"].startswith("archive expands to more than 16.0 MiB")
    assert row["reason"].endswith("(a decompression bomb?)")
    (line,) = [line for line in stderr.splitlines() if str(nested_bomb) in line]
    assert row["reason"] in line


def gzipped_tar_of_zeros(megabytes: int) -> bytes:
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w:gz") as tar:
        info = tarfile.TarInfo("zeros.dcm")
        info.size = megabytes << 20
        tar.addfile(info, io.BytesIO(bytes(info.size)))
    return out.getvalue()


def test_the_budget_spans_nesting_levels_as_the_bytes_stream(tmp_path: Path) -> None:
    """Ten tar.gz in a tar, each well within a budget of its own (2 MiB of 2 KB),
    20 MiB in all: the input stops past its 8 MiB, mid-stream, with one row. The
    next inputs have budgets of their own."""
    outer = tmp_path / "outer.tar"
    outer.write_bytes(
        tar_of({f"{n}.tar.gz": gzipped_tar_of_zeros(2) for n in range(10)})
    )
    assert outer.stat().st_size < 100 << 10
    others = [tmp_path / "a.tar.gz", tmp_path / "b.tar.gz"]
    for path in others:
        path.write_bytes(gzipped_tar_of_zeros(6))
    work = tmp_path / "work"
    limits = Limits(ratio_floor=8 << 20, max_ratio=50)
    items = run_collect([outer, *others], work, limits)
    *extracted, stopped, a, b = items
    assert len(extracted) <= 4
    assert isinstance(stopped, InputProblem)
    assert (stopped.name, stopped.status) == (str(outer), InstanceStatus.FAILED)
    assert stopped.reason.startswith("archive expands to more than 8.0 MiB")
    assert [a.name, b.name] == [f"{path}!zeros.dcm" for path in others]
    assert isinstance(a, InputFile)
    assert isinstance(b, InputFile)
    assert sum(p.stat().st_size for p in work.iterdir()) <= (8 << 20) + (12 << 20)


def test_the_work_folder_keeps_its_reserve_of_free_space(tmp_path: Path) -> None:
    archive = tmp_path / "a.zip"
    with zipfile.ZipFile(archive, "w") as z:
        z.writestr("a.dcm", b"x" * 1000)
    work = tmp_path / "work"
    limits = Limits(min_free_bytes=1 << 62, min_free_fraction=1.0)
    (problem,) = run_collect([archive], work, limits)
    assert isinstance(problem, InputProblem)
    assert problem.status is InstanceStatus.FAILED
    assert problem.reason.startswith(f"the work folder {work} has ")
    assert "free: extracting more would leave less than" in problem.reason
    assert list(work.iterdir()) == []


def run_collect(
    paths: list[Path], work: Path, limits: Limits | None = None
) -> list[Item]:
    work.mkdir(exist_ok=True)
    return list(collect(paths, work, limits or Limits()))


def listing(items: list[Item], folder: Path) -> dict[str, str]:
    return {
        item.name.removeprefix(f"{folder}/"): "file"
        if isinstance(item, InputFile)
        else f"{item.status.value}: {item.reason}"
        for item in items
    }


@pytest.mark.parametrize("damage", ["bad CRC", "two members and padding"])
def test_gzip_streams_are_checked_to_their_end(damage: str, tmp_path: Path) -> None:
    """A wrong CRC fails the archive, after the members read before the end; a
    gzip file of two members, zero-padded, is read whole, as gzip reads it."""
    noise = random.Random(damage).randbytes
    whole = tar_of({f"{n}.dcm": noise(700_000) for n in range(3)})
    if damage == "bad CRC":
        data = bytearray(gzip.compress(whole))
        data[-8] ^= 0xFF
    else:
        half = member_end(whole, 1)
        data = bytearray(gzip.compress(whole[:half]) + gzip.compress(whole[half:]))
        data += bytes(512)
    archive = tmp_path / "a.tar.gz"
    archive.write_bytes(bytes(data))
    items = run_collect([archive], tmp_path / "work")
    if damage == "bad CRC":
        *members, problem = items
        assert members
        assert all(isinstance(member, InputFile) for member in members)
        assert isinstance(problem, InputProblem)
        assert (problem.name, problem.status) == (str(archive), InstanceStatus.FAILED)
        assert problem.reason.endswith("incorrect data check")
    else:
        assert listing(items, archive.parent) == {
            f"a.tar.gz!{n}.dcm": "file" for n in range(3)
        }
