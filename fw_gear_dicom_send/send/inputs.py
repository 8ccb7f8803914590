"""Turn what the user names (files, folders, zip and tar archives) into files to probe.

Archives are recognised by their content, not their name, and extracted member by
member into a work folder under names we make up (a counter): a member's own name is
only a label in the report, so no name (``..``, absolute, a link) can ever make us
write outside the work folder. Each input (a file named, or found in a folder named)
has one extraction budget across every archive nested in it: members, bytes, the
ratio of bytes to the input's own size, and the work folder's free space, all
checked as the bytes stream: the bytes read out of an archive and the bytes written
to the work folder (a sparse tar member writes more than it reads) are each held
to the budget. Only regular files are read: a named pipe, socket or
device is reported, never opened for reading. A truncated or corrupt archive is
reported as failed after the members read before the damage. The inputs themselves
are only read, never changed or moved.
"""

import bz2
import errno
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
from typing import BinaryIO, Protocol

from ..dicom.probe import MAGIC, PREAMBLE_LENGTH
from ..errors import ArchiveError, UsageError
from ..status import InstanceStatus

log = logging.getLogger(__name__)

ARCHIVE_SEPARATOR = "!"
_TAR_MAGIC_AT = 257
# What reading a corrupt zip, tar, gzip, bzip2 or xz stream raises (zipfile: a
# version, method or feature it does not know is NotImplementedError) ...
_ARCHIVE_ERRORS = (
    OSError,
    EOFError,
    ValueError,
    NotImplementedError,
    zipfile.BadZipFile,
    tarfile.TarError,
    zlib.error,
    lzma.LZMAError,
)
# ... and reading one zip member (a password wanted).
_MEMBER_ERRORS = (*_ARCHIVE_ERRORS, RuntimeError)
_COPY_CHUNK = 1 << 20
_STREAM_CHUNK = 1 << 18  # what tarfile reads from the stream at once
_GZIP_WBITS = 16 + zlib.MAX_WBITS  # a gzip header and trailer around the data
_ZIP_METHODS = frozenset(
    {zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED, zipfile.ZIP_BZIP2, zipfile.ZIP_LZMA}
)
_ZIP_METHOD_NAMES = {
    1: "Shrink",
    6: "Implode",
    9: "Deflate64",
    93: "Zstandard",
    95: "XZ",
    98: "PPMd",
}
_ZIP_ENCRYPTED = 0x1
# What tarfile raises at the all-zero block that ends an archive, and where the
# data stops before a header (typeshed does not name these classes).
_TAR_END_BLOCK: type[tarfile.HeaderError] = vars(tarfile)["EOFHeaderError"]
_TAR_CUT: tuple[type[tarfile.HeaderError], ...] = (
    vars(tarfile)["EmptyHeaderError"],
    vars(tarfile)["TruncatedHeaderError"],
)
_TAR_HEADER_ERROR = tarfile.HeaderError
_GIB = 1024**3
_MIB = 1024**2


@dataclass(frozen=True, slots=True)
class Limits:
    """Bounds on what archive extraction may produce, per input.

    An input is a file named, or found in a folder named; its budget covers every
    archive nested in it.
    """

    max_members: int = 200_000
    """Archive members per input, nested archives' members included."""
    max_total_bytes: int = 256 * _GIB
    """Bytes extracted from one input, at every nesting level together."""
    max_ratio: float = 1000.0
    """Bytes extracted per byte of the input ..."""
    ratio_floor: int = 16 * _MIB
    """... though any input may extract this many."""
    max_depth: int = 10
    """Archives nested inside archives."""
    min_free_bytes: int = _GIB
    """Free space the work folder's file system keeps ..."""
    min_free_fraction: float = 0.05
    """... or this fraction of its size, whichever is less."""


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
        the index of the path it came from as ``source``. A failure is also logged,
        one line each.
    """
    extractor = _Extractor(work_dir, limits)
    for source, path in enumerate(paths):
        label = labels[source] if source < len(labels) else str(path)
        found = _walk(path) if path.is_dir() else iter([(path, None)])
        for file, problem in found:
            name = label
            if file != path:
                name = str(PurePosixPath(label, file.relative_to(path).as_posix()))
            if problem is None:
                items = extractor.expand_input(name, file)
            else:
                items = iter([InputProblem(name, *problem)])
            for item in items:
                if (
                    isinstance(item, InputProblem)
                    and item.status is InstanceStatus.FAILED
                ):
                    log.warning("%s: %s", item.name, item.reason)
                yield replace(item, source=source)


def _walk(folder: Path) -> Iterator[tuple[Path, tuple[InstanceStatus, str] | None]]:
    """The files under ``folder``, in order, each with a problem if not to be read.

    A linked folder is not followed (it may lead anywhere, or back here), and a
    folder that cannot be listed is not walked; each has a row. A linked file is
    read like any other.
    """
    errors: list[OSError] = []

    def unlisted() -> Iterator[tuple[Path, tuple[InstanceStatus, str] | None]]:
        for error in errors:
            reason = f"cannot read the folder: {error.strerror or error}"
            yield Path(str(error.filename)), (InstanceStatus.FAILED, reason)
        errors.clear()

    for root, dirs, files in os.walk(folder, onerror=errors.append):
        yield from unlisted()
        linked = {name for name in dirs if os.path.islink(os.path.join(root, name))}
        dirs[:] = sorted(set(dirs) - linked)
        for name in sorted([*files, *linked]):
            problem = None
            if name in linked:
                problem = (InstanceStatus.SKIPPED, "link to a folder, not followed")
            yield Path(root, name), problem
    yield from unlisted()


class _NotRegular(Exception):
    """Not a regular file: a named pipe, socket, device or folder."""


def _file_kind(mode: int) -> str:
    if stat.S_ISFIFO(mode):
        return "a named pipe"
    if stat.S_ISSOCK(mode):
        return "a socket"
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return "a device"
    if stat.S_ISDIR(mode):
        return "a folder"
    return "not a regular file"


def _not_regular_reason(mode: int) -> str:
    return f"{_file_kind(mode)}, not a regular file: not read"


def _archive_kind(path: Path) -> str | None:
    """'zip', 'tar', or None, from the first bytes of the file.

    Raises:
        _NotRegular: The file is not a regular file (opened without blocking, so
            that a named pipe put in its place cannot stall the run).
        OSError: The file cannot be read.
    """
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
    with open(fd, "rb") as f:
        mode = os.fstat(fd).st_mode
        if not stat.S_ISREG(mode):
            raise _NotRegular(_not_regular_reason(mode))
        head = f.read(_TAR_MAGIC_AT + 5)
    if head[PREAMBLE_LENGTH : PREAMBLE_LENGTH + 4] == MAGIC:
        return None  # a DICOM file, whatever its preamble holds
    if head[:4] in (b"PK\x03\x04", b"PK\x05\x06"):
        return "zip"
    if _compression(head) is not None:
        return "tar"  # compressed: a tar inside, or not (checked when opened)
    if head[_TAR_MAGIC_AT:] == b"ustar":
        return "tar"
    return None


def _compression(head: bytes) -> str | None:
    if head[:2] == b"\x1f\x8b":
        return "gzip"
    if head[:3] == b"BZh":
        return "bzip2"
    if head[:6] == b"\xfd7zXZ\x00":
        return "xz"
    return None


def _decompressed(f: BinaryIO) -> "_Readable":
    """The open file ``f``, decompressed as read if it is compressed.

    Every decompressor checks its stream's integrity (gzip's CRC-32 and length,
    bzip2's and xz's checks and end of stream) as the stream is read to its end,
    which tarfile's own stream reader does not.
    """
    compression = _compression(f.read(6))
    f.seek(0)
    if compression == "gzip":
        return _Gunzip(f)
    if compression == "bzip2":
        return bz2.BZ2File(f)
    if compression == "xz":
        return lzma.LZMAFile(f)
    return f


class _Gunzip:
    """A gzip file, decompressed as read.

    Member after member, zero padding after a member allowed (as gzip allows it);
    zlib checks each member's trailer. A stream that ends inside a member is an
    error.
    """

    def __init__(self, f: BinaryIO) -> None:
        self._f = f
        self._inflater = zlib.decompressobj(_GZIP_WBITS)
        self._pending = b""

    def read(self, size: int = -1, /) -> bytes:
        """Up to ``size`` decompressed bytes; none only at the end.

        Raises:
            EOFError: The file ends inside a gzip member.
            zlib.error: The data is corrupt, or a trailer does not match it.
        """
        while True:
            data = self._pending or self._f.read(_COPY_CHUNK)
            if not data:
                if not self._inflater.eof:
                    raise EOFError(
                        "the gzip stream ends before its end-of-stream marker"
                    )
                return b""
            if self._inflater.eof:  # another member, or padding
                data = data.lstrip(b"\0")
                self._pending = data
                if not data:
                    continue
                self._inflater = zlib.decompressobj(_GZIP_WBITS)
            out = self._inflater.decompress(data, size if size > 0 else _COPY_CHUNK)
            self._pending = (
                self._inflater.unused_data
                if self._inflater.eof
                else self._inflater.unconsumed_tail
            )
            if out:
                return out


def _is_safe_name(name: str) -> bool:
    parts = PurePosixPath(name.replace("\\", "/")).parts
    return bool(parts) and not (
        name.startswith(("/", "\\")) or ":" in parts[0] or ".." in parts
    )


@dataclass(frozen=True, slots=True)
class _Member:
    """A member read from an archive: extracted to ``path``, or a problem."""

    name: str
    path: Path | None = None
    status: InstanceStatus = InstanceStatus.SKIPPED
    reason: str = ""


class _Exhausted(ArchiveError):
    """An input has used up its extraction budget: the whole input stops."""


class _Extractor:
    """Extracts archives member by member, each input within its budget."""

    def __init__(self, work_dir: Path, limits: Limits) -> None:
        self._work_dir = work_dir
        self._limits = limits
        self._counter = 0

    def expand_input(self, name: str, path: Path) -> Iterator[Item]:
        """Yield the input ``path`` itself, or every member of the archive it is."""
        try:
            status = os.stat(path)
        except OSError as exc:
            yield InputProblem(name, InstanceStatus.FAILED, f"cannot read: {exc}")
            return
        if not stat.S_ISREG(status.st_mode):  # never opened: a pipe would block
            reason = _not_regular_reason(status.st_mode)
            yield InputProblem(name, InstanceStatus.SKIPPED, reason)
            return
        budget = _Budget(self._limits, status.st_size, self._work_dir)
        try:
            yield from self._expand(name, path, 0, budget)
        except _Exhausted as exc:
            yield InputProblem(name, InstanceStatus.FAILED, str(exc))

    def _expand(
        self, name: str, path: Path, depth: int, budget: "_Budget"
    ) -> Iterator[Item]:
        """Yield ``path`` itself, or the members of the archive it is."""
        try:
            kind = _archive_kind(path)
        except _NotRegular as exc:
            yield InputProblem(name, InstanceStatus.SKIPPED, str(exc))
            return
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
        try:
            members = (
                self._zip(path, budget) if kind == "zip" else self._tar(path, budget)
            )
            empty = True
            for member in members:
                empty = False
                label = f"{name}{ARCHIVE_SEPARATOR}{member.name}"
                if member.path is None:
                    yield InputProblem(label, member.status, member.reason)
                else:
                    yield from self._expand(label, member.path, depth + 1, budget)
            if empty:
                yield InputProblem(name, InstanceStatus.SKIPPED, "empty archive")
        except _Exhausted:
            raise  # the input's budget is spent: it stops as a whole
        except ArchiveError as exc:
            yield InputProblem(name, InstanceStatus.FAILED, str(exc))
        except _ARCHIVE_ERRORS as exc:
            yield InputProblem(name, InstanceStatus.FAILED, _archive_reason(kind, exc))

    def _target(self) -> Path:
        self._counter += 1
        return self._work_dir / f"member-{self._counter:08d}"

    def _zip(self, path: Path, budget: "_Budget") -> Iterator[_Member]:
        with zipfile.ZipFile(path) as archive:
            entries = archive.infolist()
            # Not ZipInfo.is_dir(): it fails on an empty name.
            infos = [i for i in entries if not i.filename.endswith("/")]
            budget.declare(len(entries), sum(i.file_size for i in infos))
            for info in infos:
                problem = _zip_member_problem(info)
                if problem is not None:
                    yield problem
                    continue
                target = self._target()
                try:
                    with archive.open(info) as src:
                        budget.copy(_Charged(src, budget), target)
                except ArchiveError:
                    raise  # the budget, or no room in the work folder
                except _MEMBER_ERRORS as exc:
                    target.unlink(missing_ok=True)
                    reason = f"cannot be extracted: {exc or type(exc).__name__}"
                    yield _Member(info.filename, None, InstanceStatus.FAILED, reason)
                    continue
                yield _Member(info.filename, target)

    def _tar(self, path: Path, budget: "_Budget") -> Iterator[_Member]:
        # Stream mode: members are read in order, never seeked, so memory stays
        # flat whatever the member count. Every byte read out of the (decompressed)
        # stream counts against the budget, as does every byte written (a sparse
        # member's holes are written, never read), and the stream is read to its
        # end, so that a cut or corrupt compressed stream is noticed.
        with open(path, "rb") as f:
            stream = _Charged(_decompressed(f), budget)
            with tarfile.open(
                fileobj=stream, mode="r|", tarinfo=_TarInfo, bufsize=_STREAM_CHUNK
            ) as archive:
                for member in archive:
                    budget.count_member()
                    if member.isdir():
                        continue
                    if member.issym() or member.islnk():
                        yield _Member(
                            member.name, reason="link in archive, not extracted"
                        )
                        continue
                    if not member.isfile():
                        yield _Member(
                            member.name, reason="not a regular file, not extracted"
                        )
                        continue
                    if not _is_safe_name(member.name):
                        yield _Member(
                            member.name, reason="unsafe member path, not extracted"
                        )
                        continue
                    src = archive.extractfile(member)
                    if src is None:  # pragma: no cover - isfile() members have data
                        continue
                    target = self._target()
                    with src:
                        budget.copy(src, target)
                    yield _Member(member.name, target)
            while stream.read(_COPY_CHUNK):
                pass  # the padding after the end: gzip checks its trailer at the end


def _zip_member_problem(info: zipfile.ZipInfo) -> _Member | None:
    """Why a zip member is not extracted, if it is not."""
    mode = info.external_attr >> 16
    if stat.S_ISLNK(mode):
        return _Member(info.filename, reason="symbolic link in archive, not extracted")
    if not _is_safe_name(info.filename):
        return _Member(info.filename, reason="unsafe member path, not extracted")
    if info.flag_bits & _ZIP_ENCRYPTED or info.compress_type == 99:
        return _Member(
            info.filename,
            status=InstanceStatus.FAILED,
            reason="encrypted member: cannot be extracted without its password",
        )
    if info.compress_type not in _ZIP_METHODS:
        method = _ZIP_METHOD_NAMES.get(info.compress_type, "an unknown method")
        return _Member(
            info.filename,
            status=InstanceStatus.FAILED,
            reason=f"compressed with {method} (zip method {info.compress_type}), "
            "which cannot be extracted",
        )
    return None


class _TarInfo(tarfile.TarInfo):
    """Tells the end of a tar archive from its being cut or corrupt.

    tarfile ends the member list without a word at a missing or broken header
    after the first one; only the all-zero end block is a proper end.
    """

    @classmethod
    def fromtarfile(cls, tarfile: tarfile.TarFile) -> "_TarInfo":
        """Read the next header; a header missing or broken mid-archive is an error.

        Raises:
            ArchiveError: The archive ends, or is broken, where a header should be.
        """
        archive = tarfile
        try:
            return super().fromtarfile(archive)
        except _TAR_END_BLOCK:
            raise
        except _TAR_CUT:
            if not archive.offset:
                raise  # nothing at all: not a tar
            raise ArchiveError(
                f"truncated tar archive: it ends at byte {archive.offset} "
                "without its end-of-archive blocks"
            ) from None
        except _TAR_HEADER_ERROR as exc:
            if not archive.offset:
                raise  # the very first header: not a tar at all
            raise ArchiveError(
                f"corrupt tar archive: {exc} at byte {archive.offset}"
            ) from None


def _archive_reason(kind: str, exc: BaseException) -> str:
    text = str(exc) or type(exc).__name__
    if isinstance(exc, EOFError) or text == "unexpected end of data":
        return f"truncated {kind} archive: {text}"
    if isinstance(exc, tarfile.ReadError) and kind == "tar":
        return f"not a readable tar archive: {text}"
    return f"corrupt or unreadable {kind} archive: {text}"


def _size(n: float) -> str:
    for unit in ("bytes", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "bytes" else f"{n:.1f} {unit}"
        n /= 1024
    raise AssertionError  # pragma: no cover - the loop returns


class _Budget:
    """What one input may extract, across every archive nested in it."""

    def __init__(self, limits: Limits, input_size: int, work_dir: Path) -> None:
        self._limits = limits
        self._input_size = input_size
        self._allowed = min(
            limits.max_total_bytes,
            max(limits.ratio_floor, int(limits.max_ratio * input_size)),
        )
        self._work_dir = work_dir
        self._members = 0
        self._read = 0
        self._written = 0

    def declare(self, members: int, total: int) -> None:
        """Count an archive's members and the bytes its directory declares.

        Refuses the archive if they already exceed what is left of the budget.
        """
        self._members += members
        self._check_members()
        self._check_bytes(max(self._read, self._written) + total)

    def count_member(self) -> None:
        """Count one member, as it is read."""
        self._members += 1
        self._check_members()

    def charge(self, n: int) -> None:
        """Count ``n`` bytes read out of an archive's (decompressed) stream."""
        self._read += n
        self._check_bytes(self._read)

    def _charge_written(self, n: int) -> None:
        """Count ``n`` bytes about to be written to the work folder.

        A member may write more than its archive's stream holds (a sparse tar
        member's holes are read as zeros, never from the stream): the budget is
        spent by whichever count is larger.
        """
        self._written += n
        self._check_bytes(self._written)

    def _check_members(self) -> None:
        if self._members > self._limits.max_members:
            raise _Exhausted(
                f"archive holds {self._members} members, more than the limit of "
                f"{self._limits.max_members} for one input"
            )

    def _check_bytes(self, total: int) -> None:
        if total <= self._allowed:
            return
        if self._allowed == self._limits.max_total_bytes:
            raise _Exhausted(
                f"archive expands to more than {_size(self._allowed)}, the limit "
                "for one input"
            )
        raise _Exhausted(
            f"archive expands to more than {_size(self._allowed)}: more than "
            f"{self._limits.max_ratio:.0f} times its {_size(self._input_size)} "
            "(a decompression bomb?)"
        )

    def _check_room(self, n: int) -> None:
        """Refuse to write ``n`` bytes that would leave too little free space.

        The work folder's file system keeps its reserve (see :class:`Limits`).
        """
        fs = os.statvfs(self._work_dir)
        free = fs.f_bavail * fs.f_frsize
        reserve = min(
            self._limits.min_free_bytes,
            int(self._limits.min_free_fraction * fs.f_blocks * fs.f_frsize),
        )
        if free - n < reserve:
            raise _Exhausted(
                f"the work folder {self._work_dir} has {_size(free)} free: "
                f"extracting more would leave less than {_size(reserve)}"
            )

    def copy(self, src: "_Readable", target: Path) -> None:
        """Copy a member to ``target``, stopping as soon as a limit is passed.

        Every byte written is charged to the budget before it is written. The
        member is not kept if it is not copied whole.
        """
        try:
            dst = open(target, "xb", buffering=0)  # noqa: SIM115 - closed below
        except OSError as exc:
            raise _no_room(target, exc) from None
        try:
            with dst:
                while chunk := src.read(_COPY_CHUNK):
                    self._charge_written(len(chunk))
                    self._check_room(len(chunk))
                    try:
                        dst.write(chunk)
                    except OSError as exc:  # no space left, file too large, ...
                        raise _no_room(target, exc) from None
        except BaseException:
            target.unlink(missing_ok=True)
            raise


class _Readable(Protocol):
    def read(self, size: int = -1, /) -> bytes: ...


class _Charged:
    """A binary stream whose every byte read is charged to a budget."""

    def __init__(self, raw: _Readable, budget: _Budget) -> None:
        # read1: one read of the stream beneath, not many of its small buffer's.
        self._read = getattr(raw, "read1", raw.read)
        self._budget = budget

    def read(self, size: int = -1, /) -> bytes:
        """Read, and charge what was read.

        Returns:
            Perhaps fewer bytes than asked for; none only at the end.
        """
        data: bytes = self._read(size if size > 0 else _COPY_CHUNK)
        self._budget.charge(len(data))
        return data

    def tell(self) -> int:
        """Not seekable: tarfile's stream mode only asks."""
        raise OSError(errno.ESPIPE, "not seekable")

    def seek(self, pos: int, /) -> int:
        """Not seekable."""
        raise OSError(errno.ESPIPE, "not seekable")

    def write(self, b: bytes, /) -> int:
        """Read only."""
        raise OSError(errno.EBADF, "read only")

    def close(self) -> None:
        """The caller closes the stream beneath."""


def _no_room(target: Path, exc: OSError) -> ArchiveError:
    return ArchiveError(
        f"cannot extract to the work folder {target.parent}: {exc.strerror or exc}"
    )
