"""Where query results go: a table, JSON or CSV, row by row.

The CSV quotes cells a spreadsheet would take for a formula. Every writer takes
rows as they come (``write``) and finishes on ``close``; JSON and CSV keep no
row, so a query of any size runs in constant memory (the aligned table, in
:mod:`.find_output`, keeps its rows to align them). The SQLite table is in
:mod:`.find_output` too.
"""

import enum
import json
from collections.abc import Sequence
from typing import Protocol, TextIO

from ..sanitize import CsvWriter

__all__ = ["Format", "RowWriter", "open_writer"]


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
    """A writer of rows with these columns in this format to ``out``.

    The table (:class:`.find_output.AlignedTable`) keeps its rows to align them;
    JSON and CSV are written as the rows come.
    """
    if fmt is Format.JSON:
        return _Json(out)
    if fmt is Format.CSV:
        return _Csv(out, columns)
    from .find_output import AlignedTable  # noqa: PLC0415 - sqlite3, for find only

    return AlignedTable(out, columns)
