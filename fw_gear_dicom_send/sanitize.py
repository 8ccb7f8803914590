r"""Outside text made safe where it goes: a CSV cell, a terminal, a log, a file name.

Outside text: file and member names, Flywheel names, a PACS's answers, the values
of a data set received.

- :class:`CsvWriter` writes every CSV of the package. A cell starting with ``=``,
  ``+``, ``-``, ``@``, a tab or a carriage return is a formula to a spreadsheet:
  it is written with a single quote in front (OWASP's rule for CSV injection).
- :func:`printable` escapes control characters (an escape sequence recolours or
  rewrites a terminal, a carriage return hides what came before it on the line, a
  line break forges a log line) and the bidirectional overrides that reorder what
  is shown. Both also write a surrogate escape (a byte of a name that is not
  UTF-8, as Python decodes file names) as the byte, ``\xNN``: such text cannot
  be encoded for a file or a terminal.
- :func:`safe_name` and :func:`safe_component` make a file name of it: safe
  characters only, so that no text can name a file outside the folder it is
  written to; :func:`safe_component` also keeps different texts apart.
"""

import csv
import hashlib
import re
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

__all__ = [
    "CsvWriter",
    "csv_cell",
    "encodable",
    "printable",
    "safe_component",
    "safe_name",
]

_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")
# C0 and C1 controls, DEL, and the bidirectional embeddings, overrides and isolates.
_UNPRINTABLE = re.compile(
    r"[\x00-\x1f\x7f-\x9f\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069]"
)
_NAMED = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}
# Lone surrogates: U+DC80-U+DCFF are the undecodable bytes of os.fsdecode and the
# "surrogateescape" handler; any other is as unencodable and written as its code.
_SURROGATE = re.compile(r"[\ud800-\udfff]")
_NOT_IN_NAME = re.compile(r"[^A-Za-z0-9._+-]+")
_COMPONENT = re.compile(r"[A-Za-z0-9_-][A-Za-z0-9._-]{0,63}")
_MAX_COMPONENT = 64
_HASH = 16


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


def safe_name(text: str, fallback: str = "unnamed") -> str:
    """``text`` as a file name: letters, digits, ``.``, ``_``, ``+`` and ``-``.

    Each run of other characters becomes ``_``; ``.`` and ``_`` are stripped from
    both ends (no hidden file, no ``..``); nothing left gives ``fallback``.
    """
    return _NOT_IN_NAME.sub("_", text).strip("._") or fallback


def safe_component(text: str, fallback: str) -> str:
    """``text`` as one path component, different for different texts.

    Text of up to 64 letters, digits, ``.``, ``_`` and ``-``, not starting with
    ``.``, is kept as it is; empty text gives ``fallback``. Any other text (``.``,
    ``..``, other characters, longer, or ``fallback`` itself) becomes its
    :func:`safe_name`, cut short, then ``~`` and a hash of the whole text: two
    texts never give one name.
    """
    if not text:
        return fallback
    if _COMPONENT.fullmatch(text) and text != fallback:
        return text
    digest = hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()
    kept = safe_name(text, "")[: _MAX_COMPONENT - _HASH - 1]
    return f"{kept}~{digest[:_HASH]}"
