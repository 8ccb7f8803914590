"""Turn what the user names (files, folders, zip and tar archives) into files to probe.

Archives are recognised by their content, not their name, and extracted member by
member into a work folder under names we make up (a counter): a member's own name is
only a label in the report, so no name (``..``, absolute, a link) can ever make us
write outside the work folder. Extraction is bounded by member count, total size and
compression ratio. The inputs themselves are only read, never changed or moved.
"""

import logging
import lzma
import os
import stat
import tarfile
import zipfile
import zlib
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, replace
from pathlib import Path, PurePosixPath
from typing import IO

from .dicomfile import MAGIC, PREAMBLE_LENGTH
from .errors import ArchiveError, UsageError
from .status import InstanceStatus

log = logging.getLogger(__name__)

ARCHIVE_SEPARATOR = "!"
_TAR_MAGIC_AT = 257
# What reading a corrupt zip, tar, gzip, bzip2 or xz stream raises.
_ARCHIVE_ERRORS = (
    OSError,
    EOFError,
    ValueError,
    zipfile.BadZipFile,
    tarfile.TarError,
    zlib.error,
    lzma.LZMAError,
)
_COPY_CHUNK = 1 << 20


@dataclass(frozen=True, slots=True)
class Limits:
    """Bounds on what archive extraction may produce."""

    max_members: int = 200_000
    """Members per archive, nested archives' members included."""
    max_total_bytes: int = 256 * 1024**3
    """Bytes extracted from one archive."""
    max_ratio: float = 1000.0
    """Extracted bytes per archive byte (checked once past ``ratio_floor``)."""
    ratio_floor: int = 64 * 1024**2
    max_depth: int = 10
    """Archives nested inside archives."""


@dataclass(frozen=True, slots=True)
class InputFile:
    """A file to probe: ``name`` is how the report calls it, ``path`` where it lies."""

    name: str
    path: Path
    source: int = 0
    """Index of the named input it came from."""


@dataclass(frozen=True, slots=True)
class InputProblem:
    """An input that yields no file to send, with the status and reason to report."""

    name: str
    status: InstanceStatus
    reason: str
    source: int = 0
    """Index of the named input it came from."""


Item = InputFile | InputProblem


def check_paths(paths: Iterable[Path]) -> list[Path]:
    """Check that every named input exists, before anything is sent.

    Raises:
        UsageError: A path does not exist, or no path was given.
    """
    checked = list(paths)
    if not checked:
        raise UsageError("no input given")
    for path in checked:
        if not path.exists():
            raise UsageError(f"input not found: {path}")
    return checked


def collect(
    paths: Sequence[Path],
    work_dir: Path,
    limits: Limits,
    labels: Sequence[str] = (),
) -> Iterator[Item]:
    """Yield every file under ``paths``, archives extracted into ``work_dir``.

    Args:
        paths: Files, folders and archives, in the order to report them.
        work_dir: An empty folder for extracted members.
        limits: Extraction bounds.
        labels: How the report names each path (default: the path itself); a
            folder's files are named below it.

    Yields:
        A file to probe, or a problem to report, for every file found, each with
        the index of the path it came from as ``source``.
    """
    extractor = _Extractor(work_dir, limits)
    for source, path in enumerate(paths):
        label = labels[source] if source < len(labels) else str(path)
        if path.is_dir():
            for file in _walk(path):
                name = str(PurePosixPath(label, file.relative_to(path).as_posix()))
                for item in extractor.expand(name, file, depth=0):
                    yield replace(item, source=source)
        else:
            for item in extractor.expand(label, path, depth=0):
                yield replace(item, source=source)


def _walk(folder: Path) -> Iterator[Path]:
    for root, dirs, files in os.walk(folder):
        dirs.sort()
        for name in sorted(files):
            yield Path(root, name)


def _archive_kind(path: Path) -> str | None:
    """'zip', 'tar', or None, from the first bytes of the file."""
    with open(path, "rb") as f:
        head = f.read(_TAR_MAGIC_AT + 5)
    if head[PREAMBLE_LENGTH : PREAMBLE_LENGTH + 4] == MAGIC:
        return None  # a DICOM file, whatever its preamble holds
    if head[:4] in (b"PK\x03\x04", b"PK\x05\x06"):
        return "zip"
    if head[:2] == b"\x1f\x8b" or head[:3] == b"BZh" or head[:6] == b"\xfd7zXZ\x00":
        return "tar"  # compressed: a tar inside, or not (checked when opened)
    if head[_TAR_MAGIC_AT:] == b"ustar":
        return "tar"
    return None


def _is_safe_name(name: str) -> bool:
    parts = PurePosixPath(name.replace("\\", "/")).parts
    return bool(parts) and not (
        name.startswith(("/", "\\")) or ":" in parts[0] or ".." in parts
    )


class _Extractor:
    """Extracts archives member by member, counting against the limits."""

    def __init__(self, work_dir: Path, limits: Limits) -> None:
        self._work_dir = work_dir
        self._limits = limits
        self._counter = 0

    def expand(self, name: str, path: Path, depth: int) -> Iterator[Item]:
        """Yield ``path`` itself, or the members of the archive it is."""
        try:
            kind = _archive_kind(path)
        except OSError as exc:
            yield InputProblem(name, InstanceStatus.FAILED, f"cannot read: {exc}")
            return
        if kind is None:
            yield InputFile(name, path)
            return
        if depth >= self._limits.max_depth:
            yield InputProblem(
                name,
                InstanceStatus.FAILED,
                f"archive nested deeper than {self._limits.max_depth} levels",
            )
            return
        budget = _Budget(self._limits, path.stat().st_size)
        try:
            members = (
                self._zip(path, budget) if kind == "zip" else self._tar(path, budget)
            )
            empty = True
            for member_name, member_path, problem in members:
                empty = False
                label = f"{name}{ARCHIVE_SEPARATOR}{member_name}"
                if problem is not None:
                    yield InputProblem(label, InstanceStatus.SKIPPED, problem)
                elif member_path is not None:
                    yield from self.expand(label, member_path, depth + 1)
            if empty:
                yield InputProblem(name, InstanceStatus.SKIPPED, "empty archive")
        except ArchiveError as exc:
            yield InputProblem(name, InstanceStatus.FAILED, str(exc))
        except _ARCHIVE_ERRORS as exc:
            yield InputProblem(name, InstanceStatus.FAILED, _archive_reason(kind, exc))

    def _target(self) -> Path:
        self._counter += 1
        return self._work_dir / f"member-{self._counter:08d}"

    def _zip(
        self, path: Path, budget: "_Budget"
    ) -> Iterator[tuple[str, Path | None, str | None]]:
        with zipfile.ZipFile(path) as archive:
            infos = [i for i in archive.infolist() if not i.is_dir()]
            budget.declare(len(infos), sum(i.file_size for i in infos))
            for info in infos:
                mode = info.external_attr >> 16
                if stat.S_ISLNK(mode):
                    yield info.filename, None, "symbolic link in archive, not extracted"
                    continue
                if not _is_safe_name(info.filename):
                    yield info.filename, None, "unsafe member path, not extracted"
                    continue
                target = self._target()
                with archive.open(info) as src:
                    budget.copy(src, target)
                yield info.filename, target, None

    def _tar(
        self, path: Path, budget: "_Budget"
    ) -> Iterator[tuple[str, Path | None, str | None]]:
        # Stream mode: members are read in order, never seeked, so any compression
        # works and memory stays flat whatever the member count.
        with tarfile.open(path, mode="r|*") as archive:
            for member in archive:
                if member.isdir():
                    continue
                budget.count_member()
                if member.issym() or member.islnk():
                    yield member.name, None, "link in archive, not extracted"
                    continue
                if not member.isfile():
                    yield member.name, None, "not a regular file, not extracted"
                    continue
                if not _is_safe_name(member.name):
                    yield member.name, None, "unsafe member path, not extracted"
                    continue
                src = archive.extractfile(member)
                if src is None:  # pragma: no cover - isfile() members always have data
                    continue
                target = self._target()
                with src:
                    budget.copy(src, target)
                yield member.name, target, None


def _archive_reason(kind: str, exc: BaseException) -> str:
    text = str(exc) or type(exc).__name__
    if isinstance(exc, tarfile.ReadError) and kind == "tar":
        return f"not a readable tar archive: {text}"
    return f"corrupt or unreadable {kind} archive: {text}"


class _Budget:
    """Counts members and bytes extracted from one archive against the limits."""

    def __init__(self, limits: Limits, archive_size: int) -> None:
        self._limits = limits
        self._archive_size = max(archive_size, 1)
        self._members = 0
        self._bytes = 0

    def declare(self, members: int, total: int) -> None:
        """Refuse an archive whose own directory already exceeds the limits."""
        if members > self._limits.max_members:
            raise ArchiveError(
                f"archive holds {members} members, more than the limit of "
                f"{self._limits.max_members}"
            )
        self._check_total(total)

    def count_member(self) -> None:
        self._members += 1
        if self._members > self._limits.max_members:
            raise ArchiveError(
                f"archive holds more than {self._limits.max_members} members"
            )

    def _check_total(self, total: int) -> None:
        if total > self._limits.max_total_bytes:
            raise ArchiveError(
                f"archive expands to more than {self._limits.max_total_bytes} bytes"
            )
        ratio = total / self._archive_size
        if total > self._limits.ratio_floor and ratio > self._limits.max_ratio:
            raise ArchiveError(
                f"archive expands {ratio:.0f} times its size, more than the limit "
                f"of {self._limits.max_ratio:.0f} (a decompression bomb?)"
            )

    def copy(self, src: IO[bytes], target: Path) -> None:
        """Copy a member to ``target``, stopping as soon as a limit is passed."""
        try:
            dst = open(target, "xb", buffering=0)  # noqa: SIM115 - closed below
        except OSError as exc:
            raise _no_room(target, exc) from None
        with dst:
            while chunk := src.read(_COPY_CHUNK):
                self._bytes += len(chunk)
                self._check_total(self._bytes)
                try:
                    dst.write(chunk)
                except OSError as exc:  # no space left, file too large, ...
                    dst.close()
                    target.unlink(missing_ok=True)
                    raise _no_room(target, exc) from None


def _no_room(target: Path, exc: OSError) -> ArchiveError:
    return ArchiveError(
        f"cannot extract to the work folder {target.parent}: {exc.strerror or exc}"
    )
