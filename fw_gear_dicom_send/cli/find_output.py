"""Where ``find`` puts its matches: an aligned table, and an SQLite table kept unique.

The table is written once the query has answered, each column as wide as its
widest value, so the columns stay aligned whatever a PACS returns. The SQLite
table has one row per patient, study, series or instance: a match whose key
(PatientID, Study, Series or SOP Instance UID) is there already replaces that row,
so the same query run twice leaves the same rows.
"""

import sqlite3
from collections.abc import Sequence
from pathlib import Path
from typing import TextIO

from ..errors import UsageError
from ..pacs.levels import Level
from ..sanitize import printable

__all__ = ["TABLES", "UNIQUE_KEYS", "AlignedTable", "SqliteTable", "database_path"]

TABLES = {
    Level.PATIENT: "patients",
    Level.STUDY: "studies",
    Level.SERIES: "series",
    Level.IMAGE: "images",
}
"""The ``--db`` table of each level's matches."""
UNIQUE_KEYS = {
    Level.PATIENT: "PatientID",
    Level.STUDY: "StudyInstanceUID",
    Level.SERIES: "SeriesInstanceUID",
    Level.IMAGE: "SOPInstanceUID",
}
"""The keyword that names one row of each level's table."""
_SQLITE_PREFIX = "sqlite:///"
_COMMIT_EVERY = 500
_GAP = "  "


class AlignedTable:
    """Rows as aligned columns, written on ``close`` (control characters escaped)."""

    def __init__(self, out: TextIO, columns: Sequence[str]) -> None:
        self._out = out
        self._columns = list(columns)
        self._rows: list[list[str]] = []

    def write(self, row: dict[str, str]) -> None:
        """Keep a row (the widths are known once every row has come)."""
        self._rows.append([printable(row.get(c, "")) for c in self._columns])

    def close(self) -> None:
        """Write the header, a rule and the rows, each column as wide as its widest."""
        lines = [self._columns, *self._rows]
        columns = zip(*lines, strict=True)
        widths = [max(len(cell) for cell in column) for column in columns]
        rule = ["-" * width for width in widths]
        for line in [self._columns, rule, *self._rows]:
            cells = [cell.ljust(w) for cell, w in zip(line, widths, strict=True)]
            self._out.write(_GAP.join(cells).rstrip() + "\n")
        self._out.flush()


def database_path(text: str) -> Path:
    """The file ``--db`` names: ``sqlite:///FILE`` or a plain path.

    After ``sqlite:///`` a relative path is taken from the current folder and
    ``sqlite:////abs/file`` is absolute, as SQLAlchemy reads them; a relative
    path whose folder does not exist here but does from the root
    (``sqlite:///tmp/x.db``) is taken as that absolute path.

    Raises:
        UsageError: Another URL scheme, or no file named.
    """
    if text.startswith(_SQLITE_PREFIX):
        rest = text[len(_SQLITE_PREFIX) :]
        if not rest.strip():
            raise UsageError(f"--db takes sqlite:///FILE or a file, got {text!r}")
        path = Path(rest)
        if not path.is_absolute() and not path.parent.is_dir():
            rooted = Path("/", rest)
            if rooted.parent.is_dir():
                return rooted
        return path
    if "://" in text or not text.strip():
        raise UsageError(f"--db takes sqlite:///FILE or a file, got {text!r}")
    return Path(text)


class SqliteTable:
    """Matches into a table of an SQLite database, one row per key.

    One TEXT column per keyword; the table is created if missing, and columns it
    lacks are added. A row whose key is there already replaces it (a table
    written before, with repeated keys, keeps the last of each). Rows are
    committed every few hundred and on ``close``.

    Raises:
        UsageError: The database cannot be opened or written (naming its file).
    """

    def __init__(self, path: Path, level: Level, columns: Sequence[str]) -> None:
        self._path = path
        self._columns = list(columns)
        table, key = TABLES[level], UNIQUE_KEYS[level]
        if key not in self._columns:
            self._columns.insert(0, key)
        self._key = key
        try:
            self._db = sqlite3.connect(path)
            self._prepare(table, key)
        except sqlite3.Error as exc:
            raise self._error(exc) from None
        names = ", ".join(f'"{c}"' for c in self._columns)
        marks = ", ".join("?" for _ in self._columns)
        update = ", ".join(f'"{c}" = excluded."{c}"' for c in self._columns)
        self._upsert = (
            f'INSERT INTO "{table}" ({names}) VALUES ({marks}) '  # noqa: S608
            f'ON CONFLICT("{key}") DO UPDATE SET {update}'
        )
        self._pending = 0

    def _prepare(self, table: str, key: str) -> None:
        """Create or widen the table; make its key unique."""
        db = self._db
        db.execute(f'CREATE TABLE IF NOT EXISTS "{table}" (_id INTEGER)')
        have = {r[1] for r in db.execute(f'PRAGMA table_info("{table}")')}
        for column in self._columns:
            if column not in have:
                db.execute(f'ALTER TABLE "{table}" ADD COLUMN "{column}" TEXT')
        db.execute(
            f'DELETE FROM "{table}" WHERE "{key}" IS NOT NULL AND rowid NOT IN '  # noqa: S608
            f'(SELECT MAX(rowid) FROM "{table}" GROUP BY "{key}")'
        )
        db.execute(
            f'CREATE UNIQUE INDEX IF NOT EXISTS "{table}_{key}" ON "{table}" ("{key}")'
        )
        db.commit()

    def _error(self, exc: sqlite3.Error) -> UsageError:
        return UsageError(f"cannot use the database {self._path.absolute()}: {exc}")

    def write(self, row: dict[str, str]) -> None:
        """Insert one row, or replace the row of its key."""
        values: list[str | None] = [row.get(c, "") for c in self._columns]
        if not row.get(self._key):
            values[self._columns.index(self._key)] = None  # no key: never replaces
        try:
            self._db.execute(self._upsert, values)
            self._pending += 1
            if self._pending >= _COMMIT_EVERY:
                self._db.commit()
                self._pending = 0
        except sqlite3.Error as exc:
            raise self._error(exc) from None

    def close(self) -> None:
        """Commit and close the database."""
        try:
            self._db.commit()
        except sqlite3.Error as exc:
            raise self._error(exc) from None
        finally:
            self._db.close()
