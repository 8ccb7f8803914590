"""The receiver and how we reach it: a DICOM node by association, or STOW-RS.

Values only: the main process of a send holds these without importing pynetdicom
or the HTTP client. Each type checks its values when made, against the ranges of
:mod:`~fw_gear_dicom_send.settings`; its ``parse`` constructor takes values as a
front door read them (numbers as text) and names a bad one as that front door
does (``--dimse-timeout``, ``config dimse_timeout``).
"""

import base64
import re
import unicodedata
import urllib.parse
from collections.abc import Mapping
from dataclasses import dataclass, field

from ..errors import UsageError
from ..settings import (
    ACSE_TIMEOUT,
    AE_TITLE_MAX,
    BOUNDS,
    CONNECT_TIMEOUT,
    DEFAULT_ASSOCIATIONS,
    DIMSE_TIMEOUT,
    LIBRARY_CALLING_AE,
    NETWORK_TIMEOUT,
    STOW_BATCH,
    STOW_TIMEOUT,
    Labels,
    seconds,
    whole,
)
from .tls import TlsSettings

_NO_LABELS: Labels = {}
_TIMEOUTS = {
    "connect_timeout": CONNECT_TIMEOUT,
    "acse_timeout": ACSE_TIMEOUT,
    "dimse_timeout": DIMSE_TIMEOUT,
    "network_timeout": NETWORK_TIMEOUT,
}
"""The association timeouts and their defaults, by field (as ``BOUNDS`` names them)."""
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
    if not title or len(title) > AE_TITLE_MAX:
        raise UsageError(
            f"{what} must be 1 to {AE_TITLE_MAX} characters, got {value!r}"
        )
    if "\\" in title or not title.isascii() or any(ord(c) < 32 for c in title):
        raise UsageError(
            f"{what} must be ASCII without backslash or control characters, "
            f"got {value!r}"
        )
    return title


@dataclass(frozen=True, slots=True)
class Peer:
    """The receiving DICOM node.

    Raises:
        UsageError: No host, a port out of range, or a bad AE title.
    """

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

    @classmethod
    def parse(
        cls, host: str, port: object, called_ae: str, *, labels: Labels = _NO_LABELS
    ) -> "Peer":
        """The peer from values as given (the port as text or a number), checked.

        Args:
            host: The host name or address.
            port: The port: an int, or ASCII digits.
            called_ae: The receiver's AE title.
            labels: How messages name ``port`` and ``called_ae``.

        Raises:
            UsageError: A value is invalid; the message names it by ``labels``.
        """
        return cls(
            host,
            whole("port", port, labels.get("port", "port")),
            check_ae_title(called_ae, labels.get("called_ae", "called AE title")),
        )

    def __str__(self) -> str:
        return f"{self.called_ae}@{self.host}:{self.port}"


@dataclass(frozen=True, slots=True)
class AssociationSettings:
    """How we associate: our AE title and the timeouts, in seconds.

    Raises:
        UsageError: A bad AE title, or a timeout out of its range.
    """

    calling_ae: str = LIBRARY_CALLING_AE
    connect_timeout: float = CONNECT_TIMEOUT
    """To open the TCP connection."""
    acse_timeout: float = ACSE_TIMEOUT
    """For the answer to an association request or release."""
    dimse_timeout: float = DIMSE_TIMEOUT
    """For the answer to one C-STORE (a large instance takes its time)."""
    network_timeout: float = NETWORK_TIMEOUT
    """Of silence on an open connection."""
    tls: TlsSettings | None = None
    """TLS for every association (None: plain TCP)."""

    def __post_init__(self) -> None:
        check_ae_title(self.calling_ae, "calling AE title")
        given = (
            self.connect_timeout,
            self.acse_timeout,
            self.dimse_timeout,
            self.network_timeout,
        )
        for name, value in zip(_TIMEOUTS, given, strict=True):
            seconds(name, value, _own_label(name))

    @classmethod
    def parse(
        cls,
        calling_ae: str = LIBRARY_CALLING_AE,
        timeouts: Mapping[str, object] | None = None,
        *,
        tls: TlsSettings | None = None,
        labels: Labels = _NO_LABELS,
    ) -> "AssociationSettings":
        """The settings from values as given (seconds as text or numbers), checked.

        Args:
            calling_ae: Our AE title.
            timeouts: Seconds by field name (``dimse_timeout``); a field left out
                keeps its default.
            tls: TLS for every association, or None.
            labels: How messages name ``calling_ae`` and each timeout.

        Raises:
            UsageError: A value is invalid; the message names it by ``labels``.
        """
        values = timeouts or {}
        given = {
            name: seconds(
                name, values.get(name, default), labels.get(name, _own_label(name))
            )
            for name, default in _TIMEOUTS.items()
        }
        title = check_ae_title(calling_ae, labels.get("calling_ae", "calling AE title"))
        return cls(
            calling_ae=title,
            connect_timeout=given["connect_timeout"],
            acse_timeout=given["acse_timeout"],
            dimse_timeout=given["dimse_timeout"],
            network_timeout=given["network_timeout"],
            tls=tls,
        )


def _own_label(timeout: str) -> str:
    """How AssociationSettings names a timeout field (``the dimse timeout``)."""
    return f"the {timeout.removesuffix('_timeout')} timeout"


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
    batch: int = STOW_BATCH
    """Instances per request (also capped at 256 MB per request)."""
    parallel: int = DEFAULT_ASSOCIATIONS
    """Requests at once."""
    timeout: float = STOW_TIMEOUT
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

    @classmethod
    def parse(
        cls,
        url: str,
        *,
        auth: StowAuth | None = None,
        batch: int = STOW_BATCH,
        parallel: object = DEFAULT_ASSOCIATIONS,
        timeout: object = STOW_TIMEOUT,
        tls: TlsSettings | None = None,
        labels: Labels = _NO_LABELS,
    ) -> "StowSettings":
        """The settings from values as given (numbers as text or numbers), checked.

        ``parallel`` and ``timeout`` are held to the ranges of ``associations``
        and ``dimse_timeout``, named by ``labels``; then the URL and the batch.

        Raises:
            UsageError: A value is invalid.
        """
        return cls(
            url,
            auth=auth,
            batch=batch,
            parallel=whole(
                "associations",
                parallel,
                labels.get("parallel", "STOW-RS requests at once"),
            ),
            timeout=seconds(
                "dimse_timeout", timeout, labels.get("timeout", "the STOW-RS timeout")
            ),
            tls=tls,
        )

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
