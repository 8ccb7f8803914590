"""The extraction budget of one input: its limits, and what it has spent.

An input (a file named, or found in a folder named) has one budget across every
archive nested in it: members, bytes, the ratio of bytes to the input's own size,
and the work folder's free space, all checked as the bytes stream. The bytes read
out of an archive and the bytes written to the work folder (a sparse tar member
writes more than it reads) are each held to the budget.
"""

import errno
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from ..errors import ArchiveError
from .room import Lot

COPY_CHUNK = 1 << 20
"""Bytes read and written at once."""
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


class Exhausted(ArchiveError):
    """An input has used up its extraction budget: the whole input stops."""


def _size(n: float) -> str:
    for unit in ("bytes", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "bytes" else f"{n:.1f} {unit}"
        n /= 1024
    raise AssertionError  # pragma: no cover - the loop returns


class Budget:
    """What one input may extract, across every archive nested in it."""

    def __init__(
        self,
        limits: Limits,
        input_size: int,
        work_dir: Path,
        lot: Lot | None = None,
    ) -> None:
        self._limits = limits
        self._input_size = input_size
        self._allowed = min(
            limits.max_total_bytes,
            max(limits.ratio_floor, int(limits.max_ratio * input_size)),
        )
        self._work_dir = work_dir
        self._lot = lot
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
            raise Exhausted(
                f"archive holds {self._members} members, more than the limit of "
                f"{self._limits.max_members} for one input"
            )

    def _check_bytes(self, total: int) -> None:
        if total <= self._allowed:
            return
        if self._allowed == self._limits.max_total_bytes:
            raise Exhausted(
                f"archive expands to more than {_size(self._allowed)}, the limit "
                "for one input"
            )
        raise Exhausted(
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
            raise Exhausted(
                f"the work folder {self._work_dir} has {_size(free)} free: "
                f"extracting more would leave less than {_size(reserve)}"
            )

    def copy(self, src: "Readable", target: Path) -> None:
        """Copy a member to ``target``, stopping as soon as a limit is passed.

        Every byte written is charged to the budget before it is written, and
        taken from the work folder's room (the input's lot, if it has one). The
        member is not kept if it is not copied whole.

        Raises:
            Shut: The room was shut while the member waited for room.
        """
        try:
            dst = open(target, "xb", buffering=0)  # noqa: SIM115 - closed below
        except OSError as exc:
            raise _no_room(target, exc) from None
        taken = 0
        try:
            with dst:
                while chunk := src.read(COPY_CHUNK):
                    self._charge_written(len(chunk))
                    self._check_room(len(chunk))
                    if self._lot is not None:
                        self._lot.take(len(chunk))
                        taken += len(chunk)
                    try:
                        dst.write(chunk)
                    except OSError as exc:  # no space left, file too large, ...
                        raise _no_room(target, exc) from None
        except BaseException:
            target.unlink(missing_ok=True)
            if self._lot is not None:
                self._lot.give(taken)
            raise


class Readable(Protocol):
    """A binary stream read forward."""

    def read(self, size: int = -1, /) -> bytes:
        """Up to ``size`` bytes; none only at the end."""
        ...


class Charged:
    """A binary stream whose every byte read is charged to a budget."""

    def __init__(self, raw: Readable, budget: Budget) -> None:
        # read1: one read of the stream beneath, not many of its small buffer's.
        self._read = getattr(raw, "read1", raw.read)
        self._budget = budget

    def read(self, size: int = -1, /) -> bytes:
        """Read, and charge what was read.

        Returns:
            Perhaps fewer bytes than asked for; none only at the end.
        """
        data: bytes = self._read(size if size > 0 else COPY_CHUNK)
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
