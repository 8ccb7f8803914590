"""The receiving DICOM node, and how we associate with it."""

from dataclasses import dataclass

from .errors import UsageError
from .tls import TlsSettings

_AE_MAX = 16


def check_ae_title(value: str, what: str) -> str:
    """Validate an AE title: 1-16 characters, no backslash or control characters.

    Raises:
        UsageError: The title is empty, too long, or has a forbidden character.
    """
    title = value.strip()
    if not title or len(title) > _AE_MAX:
        raise UsageError(f"{what} must be 1 to {_AE_MAX} characters, got {value!r}")
    if "\\" in title or not title.isascii() or any(ord(c) < 32 for c in title):
        raise UsageError(
            f"{what} must be ASCII without backslash or control characters, "
            f"got {value!r}"
        )
    return title


@dataclass(frozen=True, slots=True)
class Peer:
    """The receiving DICOM node."""

    host: str
    port: int
    called_ae: str

    def __post_init__(self) -> None:
        if not self.host:
            raise UsageError("the receiver's host is empty")
        if not 1 <= self.port <= 65535:
            raise UsageError(f"port must be 1 to 65535, got {self.port}")
        check_ae_title(self.called_ae, "called AE title")

    def __str__(self) -> str:
        return f"{self.called_ae}@{self.host}:{self.port}"


@dataclass(frozen=True, slots=True)
class AssociationSettings:
    """How we associate: our AE title and the timeouts, in seconds."""

    calling_ae: str = "flywheel"
    connect_timeout: float = 15.0
    """To open the TCP connection."""
    acse_timeout: float = 30.0
    """For the answer to an association request or release."""
    dimse_timeout: float = 120.0
    """For the answer to one C-STORE (a large instance takes its time)."""
    network_timeout: float = 120.0
    """Of silence on an open connection."""
    tls: TlsSettings | None = None
    """TLS for every association (None: plain TCP)."""

    def __post_init__(self) -> None:
        check_ae_title(self.calling_ae, "calling AE title")
        for kind in ("connect", "acse", "dimse", "network"):
            if getattr(self, f"{kind}_timeout") <= 0:
                raise UsageError(f"{kind} timeout must be positive")
