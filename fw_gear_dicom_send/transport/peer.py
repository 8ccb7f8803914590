"""The receiver and how we reach it: a DICOM node by association, or STOW-RS.

Values only: the main process of a send holds these without importing pynetdicom
or the HTTP client.
"""

import base64
import re
import unicodedata
import urllib.parse
from dataclasses import dataclass, field

from ..errors import UsageError
from ..settings import BOUNDS, seconds
from .tls import TlsSettings

_AE_MAX = 16
_TOKEN = re.compile(r"[\x21-\x7e]+")
# Whitespace and controls (and any non-ASCII): http.client refuses them, and its
# message repeats the URL.
_UNSAFE = re.compile(r"[\x00-\x20\x7f-\x9f\s]")


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
        port = BOUNDS["port"]
        if not (isinstance(self.port, int) and port.holds(self.port)):
            raise UsageError(
                f"port must be {port.low:g} to {port.high:g}, got {self.port}"
            )
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
            name = f"{kind}_timeout"
            seconds(name, getattr(self, name), f"the {kind} timeout")


@dataclass(frozen=True, slots=True)
class StowAuth:
    """An Authorization header value; never shown."""

    header: str = field(repr=False)


def parse_auth(text: str) -> StowAuth:
    """``bearer:TOKEN`` or ``basic:USER:PASSWORD``, as a header-safe value.

    One line: no control character (a line break would end the header and start
    another). A token is visible ASCII, as RFC 6750 has it; a user and password
    may be any text (they are sent base64-encoded).

    Raises:
        UsageError: Neither form, or a character that cannot be sent (the
            message never repeats the secret).
    """
    credential = text.strip()
    if any(unicodedata.category(c) == "Cc" for c in credential):
        raise UsageError(
            "the STOW-RS credential must be one line, without control characters"
        )
    kind, _, rest = credential.partition(":")
    kind = kind.lower()
    if kind == "bearer" and rest:
        if not _TOKEN.fullmatch(rest):
            raise UsageError(
                "the STOW-RS bearer token must be visible ASCII characters only"
            )
        return StowAuth(f"Bearer {rest}")
    if kind == "basic" and ":" in rest:
        try:
            token = base64.b64encode(rest.encode("utf-8")).decode("ascii")
        except UnicodeEncodeError:
            raise UsageError("the STOW-RS credential is not UTF-8 text") from None
        return StowAuth(f"Basic {token}")
    raise UsageError(
        "the STOW-RS credential must be bearer:TOKEN or basic:USER:PASSWORD"
    )


def public_url(url: str) -> str:
    """``url`` as it may be printed: without user, password, ;params, query or fragment.

    Control characters and spaces are escaped (a URL holding them is refused, and
    its refusal names it with this).
    """
    try:
        parts = urllib.parse.urlsplit(url)
    except ValueError:  # e.g. an unclosed [IPv6 address
        return "(a URL that cannot be parsed)"
    host = parts.netloc.rpartition("@")[2]
    path = "/".join(segment.partition(";")[0] for segment in parts.path.split("/"))
    shown = urllib.parse.urlunsplit((parts.scheme, host, path, "", ""))
    return _UNSAFE.sub(lambda m: f"%{ord(m.group()):02X}", shown)


@dataclass(frozen=True, slots=True)
class StowSettings:
    """Where and how to STOW.

    Raises:
        UsageError: The URL is not http(s) with a host, or a number is out of range.
    """

    url: str
    """The DICOMweb service root, e.g. ``https://pacs/dicom-web`` (``/studies`` is
    added unless the URL ends with it)."""
    auth: StowAuth | None = None
    batch: int = 20
    """Instances per request (also capped at 256 MB per request)."""
    parallel: int = 4
    """Requests at once."""
    timeout: float = 120.0
    """Seconds of silence on a connection before it counts as broken."""
    tls: TlsSettings | None = None
    """For https: CA and client certificate options; verified by default."""

    def __post_init__(self) -> None:
        if not self.url.isascii() or _UNSAFE.search(self.url):
            raise UsageError(
                "the STOW-RS URL must be ASCII without spaces or control characters "
                f"(percent-encode them), got {public_url(self.url)!r}"
            )
        try:
            parts = urllib.parse.urlsplit(self.url)
            parts.port  # noqa: B018 - raises for a port that is not a number
        except ValueError:
            parts = urllib.parse.urlsplit("")
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise UsageError(
                "the STOW-RS URL must be http(s)://host/..., "
                f"got {public_url(self.url)!r}"
            )
        if "@" in parts.netloc:
            raise UsageError(
                "the STOW-RS URL may not hold a user or password "
                f"({parts.scheme}://USER:PASSWORD@...): give the credential "
                "by --auth or DICOM_SEND_STOW_AUTH (the gear: stow_credential)"
            )
        batch, parallel = BOUNDS["batch"], BOUNDS["associations"]
        if not batch.holds(self.batch):
            raise UsageError(
                f"the STOW-RS batch must be {batch.low:g} to {batch.high:g} instances"
            )
        if not parallel.holds(self.parallel):
            raise UsageError(
                f"STOW-RS requests at once must be {parallel.low:g} to "
                f"{parallel.high:g}"
            )
        seconds("dimse_timeout", self.timeout, "the STOW-RS timeout")

    @property
    def endpoint(self) -> urllib.parse.SplitResult:
        """The URL of the Store Instances resource."""
        parts = urllib.parse.urlsplit(self.url)
        path = parts.path.rstrip("/")
        if not path.endswith("/studies"):
            path += "/studies"
        return parts._replace(path=path)

    def __str__(self) -> str:
        return public_url(urllib.parse.urlunsplit(self.endpoint))
