"""Where received instances are filed, and how they are written (atomically).

Path components come from the data set (PatientID, Study/Series/SOP Instance UIDs),
so each is reduced to safe characters: nothing a peer sends can name a file
outside the output folder. The mapping is injective: two different values never
share a name (a value that had to be changed carries a hash of itself).
"""

import enum
import hashlib
import os
import re
import tempfile
from pathlib import Path

__all__ = ["Layout", "relative_path", "safe_component", "write_atomically"]

_UNSAFE = re.compile(r"[^A-Za-z0-9._-]")
_SAFE = re.compile(r"[A-Za-z0-9_-][A-Za-z0-9._-]{0,63}")
_MAX_COMPONENT = 64
_HASH = 16


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

    Text of up to 64 such characters, not starting with ``.``, is kept as it is;
    empty text gives ``fallback``. Any other text (``.``, ``..``, other characters,
    longer, or ``fallback`` itself) becomes its safe characters, cut short, then
    ``~`` and a hash of the whole text: different texts never give one name.
    """
    if not text:
        return fallback
    if _SAFE.fullmatch(text) and text != fallback:
        return text
    digest = hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()
    kept = _UNSAFE.sub("_", text).lstrip(".")[: _MAX_COMPONENT - _HASH - 1]
    return f"{kept}~{digest[:_HASH]}"


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
