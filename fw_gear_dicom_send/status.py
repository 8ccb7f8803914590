"""Result and exit status enums."""

import enum


class InstanceStatus(enum.StrEnum):
    """What happened to one input file; the ``status`` column of the report."""

    SENT = "sent"
    """Stored by the receiver (DIMSE status 0x0000)."""

    WARNING = "warning"
    """Stored with a warning status (0xB000, 0xB006, 0xB007): coercion or elements
    discarded by the receiver."""

    FAILED = "failed"
    """A DICOM instance that was not stored: a failure status, a lost connection, a
    rejected presentation context, or a broken (e.g. truncated) file."""

    SKIPPED = "skipped"
    """Not sent on purpose: not DICOM, a DICOMDIR, no SOP UIDs, a duplicate."""

    @property
    def stored(self) -> bool:
        """Whether the receiver stored the instance."""
        return self in (InstanceStatus.SENT, InstanceStatus.WARNING)


class ExitStatus(enum.IntEnum):
    """Exit codes of the ``dicom-send`` command and the gear."""

    SUCCESS = 0
    """Every DICOM instance found was stored, and there was at least one."""

    INCOMPLETE = 1
    """Some instances were stored, others failed."""

    USAGE = 2
    """Bad usage or configuration: nothing was sent."""

    NOTHING_SENT = 3
    """No instance was stored: the receiver could not be reached, refused every
    instance, or the input held no DICOM instance."""

    REPORT_FAILED = 4
    """The run ended (its summary says how), but its report could not be
    written."""

    INTERRUPTED = 130
    """Stopped by SIGINT (Ctrl-C): what was on the wire was answered, the report
    written."""

    TERMINATED = 143
    """Stopped by SIGTERM (``timeout``, ``docker stop``, a cancelled job), as for
    SIGINT."""
