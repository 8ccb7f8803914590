"""Where query results go: a table, JSON, CSV or an SQLite table, row by row.

The table escapes control characters a PACS may send (a terminal would act on
them); the CSV quotes cells a spreadsheet would take for a formula. Every writer
takes rows as they come (``write``) and finishes on ``close``; none
keeps the rows, so a query of any size runs in constant memory.
"""

import enum
import json
import sqlite3
from collections.abc import Sequence
from pathlib import Path
from typing import Protocol, TextIO

from ..errors import UsageError
from ..sanitize import CsvWriter, printable

__all__ = ["Format", "RowWriter", "SqliteWriter", "open_writer", "sqlite_path"]

_SQLITE_PREFIX = "sqlite:///"
_COMMIT_EVERY = 500
_MIN_WIDTH = 10
_MAX_WIDTH = 64


class Format(enum.StrEnum):
    """An output format of ``dicom-send find``."""

    TABLE = "table"
    """Aligned columns for a terminal."""
    JSON = "json"
    """A JSON array of objects, keyword -> value."""
    CSV = "csv"
    """CSV with a header row of keywords."""


class RowWriter(Protocol):
    """Takes rows one at a time."""

    def write(self, row: dict[str, str]) -> None:
        """Write one row."""
        ...

    def close(self) -> None:
        """Finish (a closing bracket, a commit); the stream stays open."""
        ...


class _Table:
    """Aligned columns, the header with the first row.

    No row, no header: a query that fails leaves no lone header before its error.
    """

    def __init__(self, out: TextIO, columns: Sequence[str]) -> None:
        self._out = out
        self._columns = list(columns)
        self._widths = [min(max(len(c), _MIN_WIDTH), _MAX_WIDTH) for c in columns]
        self._headed = False

    def _line(self, values: list[str]) -> None:
        cells = [
            printable(v).ljust(w) for v, w in zip(values, self._widths, strict=True)
        ]
        self._out.write("  ".join(cells).rstrip() + "\n")

    def write(self, row: dict[str, str]) -> None:
        if not self._headed:
            self._line(self._columns)
            self._line(["-" * w for w in self._widths])
            self._headed = True
        self._line(list(row.values()))

    def close(self) -> None:
        self._out.flush()


class _Json:
    def __init__(self, out: TextIO) -> None:
        self._out = out
        self._count = 0
        out.write("[")

    def write(self, row: dict[str, str]) -> None:
        self._out.write(",\n " if self._count else "\n ")
        self._out.write(json.dumps(row, ensure_ascii=False))
        self._count += 1

    def close(self) -> None:
        self._out.write("\n]\n" if self._count else "]\n")
        self._out.flush()


class _Csv:
    def __init__(self, out: TextIO, columns: Sequence[str]) -> None:
        self._out = out
        self._writer = CsvWriter(out, columns)
        self._writer.writeheader()

    def write(self, row: dict[str, str]) -> None:
        self._writer.writerow(row)

    def close(self) -> None:
        self._out.flush()


def open_writer(fmt: Format, out: TextIO, columns: Sequence[str]) -> RowWriter:
    """A writer of rows with these columns in this format to ``out``."""
    if fmt is Format.JSON:
        return _Json(out)
    if fmt is Format.CSV:
        return _Csv(out, columns)
    return _Table(out, columns)


def sqlite_path(url: str) -> Path:
    """The file of an ``sqlite:///FILE`` URL.

    Raises:
        UsageError: Not such a URL.
    """
    if not url.startswith(_SQLITE_PREFIX) or len(url) == len(_SQLITE_PREFIX):
        raise UsageError(f"--db takes sqlite:///FILE, got {url!r}")
    return Path(url[len(_SQLITE_PREFIX) :])


class SqliteWriter:
    """Rows into a table of an SQLite database, one TEXT column per keyword.

    The table is created if missing; columns it lacks are added. Rows are
    committed every few hundred and on ``close``.

    Raises:
        UsageError: The database cannot be opened or written.
    """

    def __init__(self, path: Path, table: str, columns: Sequence[str]) -> None:
        self._columns = list(columns)
        try:
            self._db = sqlite3.connect(path)
            self._db.execute(f'CREATE TABLE IF NOT EXISTS "{table}" (_id INTEGER)')
            have = {r[1] for r in self._db.execute(f'PRAGMA table_info("{table}")')}
            for column in self._columns:
                if column not in have:
                    self._db.execute(
                        f'ALTER TABLE "{table}" ADD COLUMN "{column}" TEXT'
                    )
        except sqlite3.Error as exc:
            raise UsageError(f"cannot use the database {path}: {exc}") from None
        names = ", ".join(f'"{c}"' for c in self._columns)
        marks = ", ".join("?" for _ in self._columns)
        self._insert = f'INSERT INTO "{table}" ({names}) VALUES ({marks})'  # noqa: S608
        self._pending = 0

    def write(self, row: dict[str, str]) -> None:
        """Insert one row."""
        self._db.execute(self._insert, [row.get(c, "") for c in self._columns])
        self._pending += 1
        if self._pending >= _COMMIT_EVERY:
            self._db.commit()
            self._pending = 0

    def close(self) -> None:
        """Commit and close the database."""
        self._db.commit()
        self._db.close()
