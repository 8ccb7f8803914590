"""Where received instances are filed, and how they are written (atomically).

Path components come from the data set (PatientID, Study/Series/SOP Instance UIDs),
so each is reduced to safe characters: nothing a peer sends can name a file
outside the output folder. The mapping is injective: two different values never
share a name (a value that had to be changed carries a hash of itself). Each
instance filed is accounted for as :class:`Received`.
"""

import enum
import threading
from dataclasses import dataclass
from pathlib import Path

from ..atomic import replacing
from ..sanitize import safe_component

__all__ = [
    "Layout",
    "Received",
    "bytes_filed",
    "relative_path",
    "write_atomically",
]

_filed = [0]
_filed_lock = threading.Lock()


class Layout(enum.StrEnum):
    """How a Storage SCP of ours files what it receives."""

    PATIENT = "patient"
    """``PatientID/StudyInstanceUID/SeriesInstanceUID/SOPInstanceUID.dcm``."""
    STUDY = "study"
    """``StudyInstanceUID/SeriesInstanceUID/SOPInstanceUID.dcm``."""
    FLAT = "flat"
    """``SOPInstanceUID.dcm``."""


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
    with replacing(path, unique=True) as partial:
        partial.write_bytes(data)
    with _filed_lock:
        _filed[0] += len(data)


def bytes_filed() -> int:
    """The bytes :func:`write_atomically` has written in this process so far.

    A retrieve's progress counts its MB as the difference of two readings.
    """
    with _filed_lock:
        return _filed[0]


@dataclass(frozen=True, slots=True)
class Received:
    """One instance the receiver stored."""

    path: Path
    """Where it was written."""
    sop_instance_uid: str
    transfer_syntax: str
    """The transfer syntax it came in, and is written in."""
    calling_ae: str
    """The AE title of the peer that sent it."""
