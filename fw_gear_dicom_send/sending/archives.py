"""Zip and tar archives (gzip, bzip2 or xz compressed), read member by member.

Archives are recognised by their content, not their name, and each member is
extracted into the work folder under a name we make up (a counter): a member's own
name is only a label in the report, so no name (``..``, absolute, a link) can ever
make us write outside the work folder. Every byte is charged to the input's
:class:`~fw_gear_dicom_send.sending.budget.Budget` as it streams. Only regular files
are read: a named pipe, socket or device is reported, never opened for reading.
"""

import bz2
import lzma
import os
import stat
import tarfile
import zipfile
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import BinaryIO

from ..dicom.probe import MAGIC, PREAMBLE_LENGTH
from ..errors import ArchiveError
from ..status import InstanceStatus
from .budget import COPY_CHUNK, Budget, Charged, Readable

_TAR_MAGIC_AT = 257
# What reading a corrupt zip, tar, gzip, bzip2 or xz stream raises (zipfile: a
# version, method or feature it does not know is NotImplementedError) ...
ARCHIVE_ERRORS = (
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
_MEMBER_ERRORS = (*ARCHIVE_ERRORS, RuntimeError)
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


class NotRegular(Exception):
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


def not_regular_reason(mode: int) -> str:
    """Why a file of this mode (from ``stat``) is not read."""
    return f"{_file_kind(mode)}, not a regular file: not read"


def archive_kind(path: Path) -> str | None:
    """'zip', 'tar', or None, from the first bytes of the file.

    Raises:
        NotRegular: The file is not a regular file (opened without blocking, so
            that a named pipe put in its place cannot stall the run).
        OSError: The file cannot be read.
    """
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
    with open(fd, "rb") as f:
        mode = os.fstat(fd).st_mode
        if not stat.S_ISREG(mode):
            raise NotRegular(not_regular_reason(mode))
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


def _decompressed(f: BinaryIO) -> Readable:
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
            data = self._pending or self._f.read(COPY_CHUNK)
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
            out = self._inflater.decompress(data, size if size > 0 else COPY_CHUNK)
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
class Member:
    """A member read from an archive: extracted to ``path``, or a problem."""

    name: str
    path: Path | None = None
    status: InstanceStatus = InstanceStatus.SKIPPED
    reason: str = ""


class Unpacker:
    """Extracts archives' members into ``work_dir``, under names it makes up."""

    def __init__(self, work_dir: Path) -> None:
        self._work_dir = work_dir
        self._counter = 0

    def members(self, path: Path, kind: str, budget: Budget) -> Iterator[Member]:
        """Extract the members of the ``kind`` archive ``path``, each as it is read.

        Raises:
            Exhausted: The input's budget is spent.
            ArchiveError: The archive is cut or corrupt, or the work folder full.
            OSError, EOFError, ValueError, ...: See :data:`ARCHIVE_ERRORS`.
        """
        return self._zip(path, budget) if kind == "zip" else self._tar(path, budget)

    def _target(self) -> Path:
        self._counter += 1
        return self._work_dir / f"member-{self._counter:08d}"

    def _zip(self, path: Path, budget: Budget) -> Iterator[Member]:
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
                        budget.copy(Charged(src, budget), target)
                except ArchiveError:
                    raise  # the budget, or no room in the work folder
                except _MEMBER_ERRORS as exc:
                    target.unlink(missing_ok=True)
                    reason = f"cannot be extracted: {exc or type(exc).__name__}"
                    yield Member(info.filename, None, InstanceStatus.FAILED, reason)
                    continue
                yield Member(info.filename, target)

    def _tar(self, path: Path, budget: Budget) -> Iterator[Member]:
        # Stream mode: members are read in order, never seeked, so memory stays
        # flat whatever the member count. Every byte read out of the (decompressed)
        # stream counts against the budget, as does every byte written (a sparse
        # member's holes are written, never read), and the stream is read to its
        # end, so that a cut or corrupt compressed stream is noticed.
        with open(path, "rb") as f:
            stream = Charged(_decompressed(f), budget)
            with tarfile.open(
                fileobj=stream, mode="r|", tarinfo=_TarInfo, bufsize=_STREAM_CHUNK
            ) as archive:
                for member in archive:
                    budget.count_member()
                    if member.isdir():
                        continue
                    if member.issym() or member.islnk():
                        yield Member(
                            member.name, reason="link in archive, not extracted"
                        )
                        continue
                    if not member.isfile():
                        yield Member(
                            member.name, reason="not a regular file, not extracted"
                        )
                        continue
                    if not _is_safe_name(member.name):
                        yield Member(
                            member.name, reason="unsafe member path, not extracted"
                        )
                        continue
                    src = archive.extractfile(member)
                    if src is None:  # pragma: no cover - isfile() members have data
                        continue
                    target = self._target()
                    with src:
                        budget.copy(src, target)
                    yield Member(member.name, target)
            while stream.read(COPY_CHUNK):
                pass  # the padding after the end: gzip checks its trailer at the end


def _zip_member_problem(info: zipfile.ZipInfo) -> Member | None:
    """Why a zip member is not extracted, if it is not."""
    mode = info.external_attr >> 16
    if stat.S_ISLNK(mode):
        return Member(info.filename, reason="symbolic link in archive, not extracted")
    if not _is_safe_name(info.filename):
        return Member(info.filename, reason="unsafe member path, not extracted")
    if info.flag_bits & _ZIP_ENCRYPTED or info.compress_type == 99:
        return Member(
            info.filename,
            status=InstanceStatus.FAILED,
            reason="encrypted member: cannot be extracted without its password",
        )
    if info.compress_type not in _ZIP_METHODS:
        method = _ZIP_METHOD_NAMES.get(info.compress_type, "an unknown method")
        return Member(
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


def archive_reason(kind: str, exc: BaseException) -> str:
    """Why a ``kind`` archive could not be read, from what reading it raised."""
    text = str(exc) or type(exc).__name__
    if isinstance(exc, EOFError) or text == "unexpected end of data":
        return f"truncated {kind} archive: {text}"
    if isinstance(exc, tarfile.ReadError) and kind == "tar":
        return f"not a readable tar archive: {text}"
    return f"corrupt or unreadable {kind} archive: {text}"
