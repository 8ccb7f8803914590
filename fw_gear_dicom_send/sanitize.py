r"""Outside text made safe where it goes: a CSV cell, a terminal, a log.

Outside text: file and member names, Flywheel names, a PACS's answers.

- :class:`CsvWriter` writes every CSV of the package. A cell starting with ``=``,
  ``+``, ``-``, ``@``, a tab or a carriage return is a formula to a spreadsheet:
  it is written with a single quote in front (OWASP's rule for CSV injection).
- :func:`printable` escapes control characters (an escape sequence recolours or
  rewrites a terminal, a carriage return hides what came before it on the line, a
  line break forges a log line) and the bidirectional overrides that reorder what
  is shown. Both also write a surrogate escape (a byte of a name that is not
  UTF-8, as Python decodes file names) as the byte, ``\xNN``: such text cannot
  be encoded for a file or a terminal.
"""

import csv
import re
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

__all__ = ["CsvWriter", "csv_cell", "encodable", "printable"]

_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")
# C0 and C1 controls, DEL, and the bidirectional embeddings, overrides and isolates.
_UNPRINTABLE = re.compile(
    r"[\x00-\x1f\x7f-\x9f\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069]"
)
_NAMED = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}
# Lone surrogates: U+DC80-U+DCFF are the undecodable bytes of os.fsdecode and the
# "surrogateescape" handler; any other is as unencodable and written as its code.
_SURROGATE = re.compile(r"[\ud800-\udfff]")


def _unsurrogate(match: re.Match[str]) -> str:
    code = ord(match.group())
    return f"\\x{code - 0xDC00:02x}" if 0xDC80 <= code <= 0xDCFF else f"\\u{code:04x}"


def encodable(text: str) -> str:
    r"""``text`` with each lone surrogate escaped (an undecodable byte as ``\xNN``)."""
    return _SURROGATE.sub(_unsurrogate, text)


def csv_cell(value: str) -> str:
    """``value`` as a CSV cell that a spreadsheet shows and never evaluates."""
    value = encodable(value)
    return "'" + value if value.startswith(_FORMULA_START) else value


class CsvWriter:
    """A ``csv.DictWriter`` whose every cell goes through :func:`csv_cell`.

    Args:
        out: The text stream (opened with ``newline=""``).
        columns: The header, in order.
    """

    def __init__(self, out: Any, columns: Sequence[str]) -> None:
        self._writer = csv.DictWriter(out, fieldnames=list(columns))

    def writeheader(self) -> None:
        """Write the header row."""
        self._writer.writeheader()

    def writerow(self, row: Mapping[str, str]) -> None:
        """Write one row."""
        self._writer.writerow({key: csv_cell(value) for key, value in row.items()})

    def writerows(self, rows: Iterable[Mapping[str, str]]) -> None:
        """Write rows."""
        for row in rows:
            self.writerow(row)


def _escape(match: re.Match[str]) -> str:
    char = match.group()
    if char in _NAMED:
        return _NAMED[char]
    code = ord(char)
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def printable(text: str, *, keep: str = "") -> str:
    """``text`` with control characters and bidirectional overrides escaped.

    Args:
        text: Any text.
        keep: Characters to leave as they are (a line break: a multi-line dump).
    """
    text = encodable(text)
    if keep:
        return _UNPRINTABLE.sub(
            lambda m: m.group() if m.group() in keep else _escape(m), text
        )
    return _UNPRINTABLE.sub(_escape, text)
