"""Logging for the entry points: one line per event, never a traceback.

Levels: errors only (``-q``); ours at INFO (default); ``-v`` adds our VERBOSE
records (each file's decision, each association opened, released or aborted) and
pynetdicom's warnings; ``-vv`` is ours and pynetdicom's DEBUG. Other libraries
(pydicom, pylibjpeg and its plugins, ...) say only warnings and errors at every
level, their debug chatter never shown; the gear's Flywheel SDK and HTTP client
are at DEBUG too with ``-vv`` (its ``debug`` option).
"""

import logging
import sys
from typing import TextIO

from .sanitize import printable

_PACKAGE = "fw_gear_dicom_send"
_TRACEBACK = "Traceback (most recent call last)"

VERBOSE = 15
"""Between DEBUG and INFO: what ``-v`` adds (per-file decisions, association
events)."""
logging.addLevelName(VERBOSE, "VERBOSE")

_FLYWHEEL_LIBRARIES = ("flywheel", "fw_gear", "httpx2", "httpcore2")
"""The Flywheel SDK and its HTTP client: at DEBUG too in the gear's debug log."""
_FLOORS = {"pydicom": logging.ERROR, "py": logging.ERROR}
"""The least level shown of these loggers' records, below ``-vv``. pydicom's
warnings are also Python warnings, which the code reading a file catches and
logs once with the file's name; its own records would repeat them without it
(pydicom sets its logger's level when imported: the floor is the handler's).
Python warnings raised elsewhere (``py.warnings``) are libraries' notes, with
the line of code that raised them: shown with ``-vv`` only."""


class OneLine(logging.Filter):
    """One line per record, printable.

    Keep tracebacks out of the log: an exception becomes its one-line reason, and
    a traceback written into a message is cut to its last line. Control
    characters in the message (from file names, a peer's AE title, a PACS's
    answers) are escaped; only other libraries' records keep their line breaks
    (pynetdicom's debug dumps).
    """

    def filter(self, record: logging.LogRecord) -> bool:
        """Fold the exception, if any, into the message; keep every record."""
        message = record.getMessage()
        if record.exc_info:
            exc = record.exc_info[1]
            message = f"{message} ({type(exc).__name__}: {exc})"
            record.exc_info = None
            record.exc_text = None
        if _TRACEBACK in message:
            head, _, trace = message.partition(_TRACEBACK)
            last = [line for line in trace.splitlines() if line.strip()][-1:]
            message = " ".join(part.strip() for part in (head, *last) if part.strip())
        ours = record.name.split(".")[0] == _PACKAGE
        record.msg = printable(message, keep="" if ours else "\n")
        record.args = None
        record.stack_info = None
        return True


_said: set[str] = set()
"""The messages of our warnings and errors logged so far (see :func:`said`)."""


def said(message: str) -> bool:
    """Whether a warning or error of ours with this message was logged already.

    So that a summary at the end names what the log has not named yet (a failed
    file), once.
    """
    return message in _said


def mentioned(text: str) -> bool:
    """Whether a warning or error of ours logged already contains ``text``.

    So that the same cause is explained once per run.
    """
    return any(text in message for message in _said)


class _Said(logging.Filter):
    """Keep the messages of our warnings and errors, for :func:`said`."""

    def filter(self, record: logging.LogRecord) -> bool:
        """Note the record's message if it is a warning or error of ours."""
        if record.levelno >= logging.WARNING and record.name.startswith(_PACKAGE):
            _said.add(record.getMessage())
        return True


class _AtItsLevel(logging.Filter):
    """Drop a record below its logger's level here, or below its library's floor.

    A worker process's records arrive already made and are handled without the
    check of their logger's level (:meth:`logging.Logger.handle`): this applies
    the levels of this process to them too.

    Args:
        floors: The least level shown, by the first part of a logger's name.
    """

    def __init__(self, floors: dict[str, int]) -> None:
        super().__init__()
        self._floors = floors

    def filter(self, record: logging.LogRecord) -> bool:
        """Whether the record's logger, here, would have made it."""
        if record.levelno < self._floors.get(record.name.split(".")[0], 0):
            return False
        return logging.getLogger(record.name).isEnabledFor(record.levelno)


def configure_logging(
    verbose: int,
    quiet: bool,
    *,
    prefix: str,
    timestamps: bool = False,
    stream: TextIO | None = None,
) -> None:
    """Log to ``stream``: ours at INFO (quiet: ERROR), pynetdicom's only if verbose.

    Args:
        verbose: 0; 1 (our VERBOSE records, pynetdicom warnings); 2 or more (ours
            and pynetdicom's DEBUG).
        quiet: Only errors of ours.
        prefix: What each line starts with (the program's name).
        timestamps: Start each line with the time (the gear's job log).
        stream: Where the log goes (``sys.stderr`` as it is at the call).
    """
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.addFilter(_AtItsLevel(_FLOORS if verbose < 2 else {}))
    handler.addFilter(_Said())
    handler.addFilter(OneLine())
    when = "%(asctime)s " if timestamps else ""
    handler.setFormatter(
        logging.Formatter(
            f"{when}%(levelname)s %(name)s: %(message)s"
            if verbose > 1
            else f"{when}{prefix}: %(message)s"
        )
    )
    _said.clear()
    logging.captureWarnings(True)  # as log records (py.warnings), one a line
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(logging.WARNING)  # other libraries: warnings and errors only
    ours = logging.DEBUG if verbose > 1 else VERBOSE if verbose else logging.INFO
    logging.getLogger(_PACKAGE).setLevel(logging.ERROR if quiet else ours)
    for flywheel in _FLYWHEEL_LIBRARIES:  # the gear's debug log has them too
        logging.getLogger(flywheel).setLevel(
            logging.DEBUG if verbose > 1 else logging.WARNING
        )
    logging.getLogger("pynetdicom").setLevel(
        logging.DEBUG
        if verbose > 1
        else logging.WARNING
        if verbose
        else logging.CRITICAL
    )
