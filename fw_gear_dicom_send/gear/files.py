"""Flywheel containers and files as the gear names them (no SDK needed here).

The values the gear and its report use for the files it sends; :mod:`.flywheel` makes
them from what the Flywheel API returns. Kept apart from it so that a job with no
``api-key`` input, which never talks to Flywheel, never imports the SDK.
"""

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from ..errors import DicomSendError


class FlywheelError(DicomSendError):
    """A Flywheel API call failed; the message says which and why, in one line."""


@dataclass(frozen=True, slots=True)
class Session:
    """A session, as the report names it."""

    id: str
    label: str
    path: str
    """``group/project/subject/session``, with labels (the group's id)."""


@dataclass(frozen=True, slots=True)
class FlywheelFile:
    """A DICOM file (single instance or archive) of an acquisition."""

    session: Session | None
    acquisition_id: str
    acquisition_label: str
    name: str
    version: int | None = None
    size: int = 0
    """Bytes, as Flywheel says (0 if it does not)."""

    @property
    def fw_path(self) -> str:
        """``group/project/subject/session/acquisition/files/name``."""
        if self.session is None:
            return self.name
        return f"{self.session.path}/{self.acquisition_label}/files/{self.name}"


@dataclass(frozen=True, slots=True)
class ContainerRef:
    """A Flywheel container named by type and id."""

    type: str
    id: str

    @classmethod
    def of(cls, value: Mapping[str, Any]) -> "ContainerRef | None":
        """The container a config.json object names (``type`` and ``id``), if any."""
        kind, ident = value.get("type"), value.get("id")
        if isinstance(kind, str) and isinstance(ident, str) and kind and ident:
            return cls(kind, ident)
        return None
