"""Where received instances are filed, and how they are written (atomically).

Path components come from the data set (PatientID, Study/Series/SOP Instance UIDs),
so each is reduced to safe characters: nothing a peer sends can name a file
outside the output folder.
"""

import enum
import os
import re
import tempfile
from pathlib import Path

__all__ = ["Layout", "relative_path", "safe_component", "write_atomically"]

_UNSAFE = re.compile(r"[^A-Za-z0-9._-]")
_MAX_COMPONENT = 64


class Layout(enum.StrEnum):
    """How a Storage SCP of ours files what it receives."""

    PATIENT = "patient"
    """``PatientID/StudyInstanceUID/SeriesInstanceUID/SOPInstanceUID.dcm``."""
    STUDY = "study"
    """``StudyInstanceUID/SeriesInstanceUID/SOPInstanceUID.dcm``."""
    FLAT = "flat"
    """``SOPInstanceUID.dcm``."""


def safe_component(text: str, fallback: str) -> str:
    """``text`` as one safe path component: letters, digits, ``.``, ``_``, ``-``.

    Empty, ``.`` or ``..`` give ``fallback``; longer than 64 characters is cut.
    """
    cleaned = _UNSAFE.sub("_", text.strip())[:_MAX_COMPONENT]
    return fallback if cleaned in ("", ".", "..") else cleaned


def relative_path(
    layout: Layout, patient_id: str, study_uid: str, series_uid: str, sop_uid: str
) -> Path:
    """Where an instance goes, relative to the output folder."""
    name = safe_component(sop_uid, "unknown-instance") + ".dcm"
    if layout is Layout.FLAT:
        return Path(name)
    parts = [
        safe_component(study_uid, "unknown-study"),
        safe_component(series_uid, "unknown-series"),
    ]
    if layout is Layout.PATIENT:
        parts.insert(0, safe_component(patient_id, "unknown-patient"))
    return Path(*parts, name)


def write_atomically(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` under a temporary name, then rename it into place.

    A reader never sees a partial file; concurrent writers of the same path do
    not mix their bytes.

    Raises:
        OSError: The folder cannot be made, or the disk is full.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, partial = tempfile.mkstemp(dir=path.parent, prefix=".", suffix=".partial")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.replace(partial, path)
    except BaseException:
        Path(partial).unlink(missing_ok=True)
        raise
