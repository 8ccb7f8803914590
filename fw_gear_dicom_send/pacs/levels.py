"""Query/Retrieve levels and information models (PS3.4 C.3, C.6).

Values only, apart from :mod:`~fw_gear_dicom_send.pacs.query` so that the command line
can offer them without importing pynetdicom.
"""

import enum


class Level(enum.StrEnum):
    """A Query/Retrieve level (QueryRetrieveLevel)."""

    PATIENT = "PATIENT"
    """Patients."""
    STUDY = "STUDY"
    """Studies."""
    SERIES = "SERIES"
    """Series."""
    IMAGE = "IMAGE"
    """Instances (composite object instances)."""


class Model(enum.StrEnum):
    """The Query/Retrieve information model (PS3.4 C.6)."""

    PATIENT_ROOT = "patient"
    """Patient Root: patients, then their studies, series and instances."""
    STUDY_ROOT = "study"
    """Study Root: studies (with patient attributes), series and instances."""

    def _uid(self, service: int) -> str:
        root = "1" if self is Model.PATIENT_ROOT else "2"
        return f"1.2.840.10008.5.1.4.1.2.{root}.{service}"

    def find_uid(self) -> str:
        """The model's C-FIND SOP Class UID (PS3.4 C.6.1.3, C.6.2.3)."""
        return self._uid(1)

    def move_uid(self) -> str:
        """The model's C-MOVE SOP Class UID."""
        return self._uid(2)

    def get_uid(self) -> str:
        """The model's C-GET SOP Class UID."""
        return self._uid(3)
