"""Exceptions raised by the engine; entry points turn them into exit statuses."""


class DicomSendError(Exception):
    """Base class of the errors this package raises on purpose."""


class UsageError(DicomSendError):
    """Bad input or configuration, found before anything is sent."""


class ArchiveError(DicomSendError):
    """An archive could not be read, or exceeds the extraction limits."""


class MalformedDicomError(DicomSendError):
    """A DICOM file whose structure cannot be walked (e.g. truncated)."""


class AssociationError(DicomSendError):
    """No association could be established with the receiver."""

    def __init__(
        self, message: str, *, transient: bool = False, unreachable: bool = False
    ) -> None:
        """Say why, and what kind of failure it is.

        Args:
            message: Why, in one line.
            transient: Trying again later may work.
            unreachable: No connection could be made (refused, reset, no answer).
        """
        super().__init__(message)
        self.transient = transient
        self.unreachable = unreachable
