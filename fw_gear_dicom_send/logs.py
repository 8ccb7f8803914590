"""Logging for the entry points: one line per event, never a traceback."""

import logging
import sys
from typing import TextIO

from .sanitize import printable

_PACKAGE = "fw_gear_dicom_send"


class OneLine(logging.Filter):
    """One line per record, printable.

    Keep tracebacks out of the log: an exception becomes its one-line reason.
    Control characters in the message (from file names, a peer's AE title, a
    PACS's answers) are escaped; only other libraries' records keep their line
    breaks (pynetdicom's debug dumps).
    """

    def filter(self, record: logging.LogRecord) -> bool:
        """Fold the exception, if any, into the message; keep every record."""
        message = record.getMessage()
        if record.exc_info:
            exc = record.exc_info[1]
            message = f"{message} ({type(exc).__name__}: {exc})"
            record.exc_info = None
            record.exc_text = None
        ours = record.name.split(".")[0] == _PACKAGE
        record.msg = printable(message, keep="" if ours else "\n")
        record.args = None
        record.stack_info = None
        return True


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
        verbose: 0, 1 (pynetdicom warnings), 2 or more (everything, at DEBUG).
        quiet: Only errors of ours.
        prefix: What each line starts with (the program's name).
        timestamps: Start each line with the time (the gear's job log).
        stream: Where the log goes (``sys.stderr`` as it is at the call).
    """
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.addFilter(OneLine())
    when = "%(asctime)s " if timestamps else ""
    handler.setFormatter(
        logging.Formatter(
            f"{when}%(levelname)s %(name)s: %(message)s"
            if verbose > 1
            else f"{when}{prefix}: %(message)s"
        )
    )
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(logging.DEBUG if verbose > 1 else logging.INFO)
    logging.getLogger("fw_gear_dicom_send").setLevel(
        logging.ERROR if quiet else logging.DEBUG if verbose > 1 else logging.INFO
    )
    quiet_below = logging.DEBUG if verbose > 1 else logging.WARNING
    for noisy in ("flywheel", "fw_gear", "httpx2", "httpcore2"):
        logging.getLogger(noisy).setLevel(quiet_below)
    logging.getLogger("pynetdicom").setLevel(
        logging.DEBUG
        if verbose > 1
        else logging.WARNING
        if verbose
        else logging.CRITICAL
    )
