"""Files replaced whole: new content is written beside the file, then renamed over it.

A reader of the file sees the old content or the new, never part of it, and a
write that fails or is interrupted leaves no partial file behind.
"""

import contextlib
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path

__all__ = ["PARTIAL_SUFFIX", "partial_of", "replacing"]

PARTIAL_SUFFIX = ".partial"


def partial_of(path: Path) -> Path:
    """``path.partial``: where :func:`replacing` writes ``path`` by default."""
    return path.with_name(path.name + PARTIAL_SUFFIX)


@contextlib.contextmanager
def replacing(path: Path, *, unique: bool = False) -> Iterator[Path]:
    """A path to write ``path``'s new content to, renamed over ``path`` at the end.

    Args:
        path: The file to write (its folder must exist).
        unique: Write under a fresh hidden name (``.XXXXXXXX.partial``), so that
            concurrent writers of one path do not mix their bytes; otherwise
            under :func:`partial_of` ``path``.

    Yields:
        The temporary path; when the block ends without an error it replaces
        ``path``, and when the block raises it is removed.

    Raises:
        OSError: The temporary file cannot be made, or renamed into place.
    """
    if unique:
        fd, name = tempfile.mkstemp(dir=path.parent, prefix=".", suffix=PARTIAL_SUFFIX)
        os.close(fd)
        partial = Path(name)
    else:
        partial = partial_of(path)
    try:
        yield partial
        partial.replace(path)
    except BaseException:
        with contextlib.suppress(OSError):
            partial.unlink(missing_ok=True)
        raise
