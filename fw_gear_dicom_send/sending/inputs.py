"""Turn what the user names (files, folders, zip and tar archives) into files to probe.

Folders are walked in order (links to folders not followed); archives, nested ones
too, are extracted member by member into a work folder (:mod:`.archives`), each
input within one extraction budget across every archive nested in it
(:mod:`.budget`). A truncated or corrupt archive is reported as failed after the
members read before the damage. The inputs themselves are only read, never changed
or moved.
"""

import contextlib
import logging
import os
import stat
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, replace
from pathlib import Path, PurePosixPath

from ..errors import ArchiveError, UsageError
from ..status import InstanceStatus
from .archives import (
    ARCHIVE_ERRORS,
    NotRegular,
    Unpacker,
    archive_kind,
    archive_reason,
    not_regular_reason,
)
from .budget import Budget, Exhausted, Limits
from .room import Lot

log = logging.getLogger(__name__)

ARCHIVE_SEPARATOR = "!"


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
    size: int = 0
    """The file's size, when the problem is a file's (an archive's), else 0."""


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
    lister = Lister(work_dir, limits)
    for source, path in enumerate(paths):
        label = labels[source] if source < len(labels) else str(path)
        yield from lister.expand(source, label, path)


class Lister:
    """Lists inputs one by one, archives extracted into ``work_dir``."""

    def __init__(self, work_dir: Path, limits: Limits) -> None:
        self._extractor = _Extractor(work_dir, limits)

    def expand(
        self, source: int, label: str, path: Path, lot: Lot | None = None
    ) -> Iterator[Item]:
        """Yield every file under the input ``path`` (see :func:`collect`).

        Args:
            source: The index of the input.
            label: How the report names it.
            path: The file, folder or archive.
            lot: What its extracted members take from the work folder's room
                (:mod:`.room`), each member's bytes before they are written.

        Raises:
            Shut: The room was shut while a member waited for room.
        """
        found = _walk(path) if path.is_dir() else iter([(path, None)])
        for file, problem in found:
            name = label
            if file != path:
                name = str(PurePosixPath(label, file.relative_to(path).as_posix()))
            if problem is None:
                items = self._extractor.expand_input(name, file, lot)
            else:
                items = iter([InputProblem(name, *problem)])
            for item in items:
                if (
                    isinstance(item, InputProblem)
                    and item.status is InstanceStatus.FAILED
                ):
                    log.warning("%s: %s", item.name, item.reason)
                if isinstance(item, InputProblem) and item.name == name:
                    item = replace(item, size=_size(file))  # noqa: PLW2901
                yield replace(item, source=source)


def _size(file: Path) -> int:
    """The report's bytes of a file with a problem (0 if it cannot be read)."""
    with contextlib.suppress(OSError):
        return file.stat().st_size
    return 0


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


class _Extractor:
    """Extracts archives member by member, each input within its budget."""

    def __init__(self, work_dir: Path, limits: Limits) -> None:
        self._work_dir = work_dir
        self._limits = limits
        self._unpacker = Unpacker(work_dir)

    def expand_input(
        self, name: str, path: Path, lot: Lot | None = None
    ) -> Iterator[Item]:
        """Yield the input ``path`` itself, or every member of the archive it is."""
        try:
            status = os.stat(path)
        except OSError as exc:
            yield InputProblem(name, InstanceStatus.FAILED, f"cannot read: {exc}")
            return
        if not stat.S_ISREG(status.st_mode):  # never opened: a pipe would block
            reason = not_regular_reason(status.st_mode)
            yield InputProblem(name, InstanceStatus.SKIPPED, reason)
            return
        budget = Budget(self._limits, status.st_size, self._work_dir, lot)
        try:
            yield from self._expand(name, path, 0, budget)
        except Exhausted as exc:
            yield InputProblem(name, InstanceStatus.FAILED, str(exc))

    def _expand(
        self, name: str, path: Path, depth: int, budget: Budget
    ) -> Iterator[Item]:
        """Yield ``path`` itself, or the members of the archive it is."""
        try:
            kind = archive_kind(path)
        except NotRegular as exc:
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
            empty = True
            for member in self._unpacker.members(path, kind, budget):
                empty = False
                label = f"{name}{ARCHIVE_SEPARATOR}{member.name}"
                if member.path is None:
                    yield InputProblem(label, member.status, member.reason)
                else:
                    yield from self._expand(label, member.path, depth + 1, budget)
            if empty:
                yield InputProblem(name, InstanceStatus.SKIPPED, "empty archive")
        except Exhausted:
            raise  # the input's budget is spent: it stops as a whole
        except ArchiveError as exc:
            yield InputProblem(name, InstanceStatus.FAILED, str(exc))
        except ARCHIVE_ERRORS as exc:
            yield InputProblem(name, InstanceStatus.FAILED, archive_reason(kind, exc))
