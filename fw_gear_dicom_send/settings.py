"""Every default and limit, once, and the checks of the numbers a user gives.

The settings types (``Peer``, ``AssociationSettings``, ``StowSettings``,
``TlsSettings``) check their values against these ranges, and the command line
and the gear's config build those types, so a port, a timeout or a count is held
to the same range whichever way it comes in. The highest values keep every timer
within what the threads and sockets under it take (a timeout of 1e12 s overflows
them); nothing useful is lost at a day. A timeout is at least a tenth of a second:
below it, no answer can arrive and every attempt fails at once.
"""

import contextlib
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Literal

from .errors import UsageError

__all__ = [
    "ACSE_TIMEOUT",
    "AE_TITLE_MAX",
    "AUTO_ASSOCIATIONS",
    "BOUNDS",
    "COMMIT_BATCH",
    "COMMIT_LISTEN_PORT",
    "COMMIT_TIMEOUT",
    "CONNECT_TIMEOUT",
    "DEFAULT_ASSOCIATIONS",
    "DIMSE_TIMEOUT",
    "DOWNLOAD_RETRY_SECONDS",
    "FIND_WINDOW_DAYS",
    "GEAR_CALLING_AE",
    "LIBRARY_CALLING_AE",
    "LISTEN_AE_TITLE",
    "LISTEN_IDLE_TIMEOUT",
    "LISTEN_REQUEST_TIMEOUT",
    "MAX_ASSOCIATIONS",
    "NETWORK_TIMEOUT",
    "PORT",
    "RECEIVER_AE_TITLE",
    "RECEIVER_ASSOCIATIONS",
    "RETRIEVE_LISTEN_PORT",
    "RETRY_BUDGET",
    "STOW_BATCH",
    "STOW_TIMEOUT",
    "Associations",
    "Bounds",
    "Labels",
    "association_count",
    "seconds",
    "whole",
]

LIBRARY_CALLING_AE = "DICOM-SEND"
"""Our AE title for the Python API and the command line (``--calling-ae``)."""
GEAR_CALLING_AE = "flywheel"
"""Our AE title for the gear (config ``calling_ae``, as its manifest says)."""
AE_TITLE_MAX = 16
"""Characters of an AE title, at most."""
PORT = 104
"""The receiver's port (``--port``, config ``port``)."""
DEFAULT_ASSOCIATIONS = 4
"""Associations (worker processes), or STOW-RS requests, at once."""
AUTO_ASSOCIATIONS: Literal["auto"] = "auto"
"""``--associations auto``: as many as the receiver rewards, up to
``--max-associations`` (STOW-RS: ``DEFAULT_ASSOCIATIONS`` requests at once)."""
MAX_ASSOCIATIONS = 16
"""The most associations ``auto`` opens (``--max-associations``)."""
CONNECT_TIMEOUT = 15.0
"""Seconds to open the TCP connection."""
ACSE_TIMEOUT = 30.0
"""Seconds for the answer to an association request or release."""
DIMSE_TIMEOUT = 120.0
"""Seconds for the answer to one C-STORE (a large instance takes its time)."""
NETWORK_TIMEOUT = 120.0
"""Seconds of silence on an open connection."""
STOW_BATCH = 20
"""Instances per STOW-RS request."""
STOW_TIMEOUT = DIMSE_TIMEOUT
"""Seconds of silence on a STOW-RS connection before it counts as broken."""
LISTEN_AE_TITLE = LIBRARY_CALLING_AE
"""The AE title of ``dicom-send listen``: the one we call with."""
LISTEN_REQUEST_TIMEOUT = 10.0
"""Seconds a new connection to a listener of ours has to send its request."""
LISTEN_IDLE_TIMEOUT = 60.0
"""Seconds an association with a listener of ours may stay silent."""
RECEIVER_AE_TITLE = "STORE-SCP"
"""The AE title of an embedded receiver of the Python API (the demo's, the tests')."""
RECEIVER_ASSOCIATIONS = 16
"""Associations an embedded receiver or listener takes at once."""
RETRIEVE_LISTEN_PORT = 11113
"""The port of the listener ``retrieve --method move`` starts."""
COMMIT_LISTEN_PORT = 11114
"""The port on which ``--commit`` listens for a receiver's Storage Commitment
reports (``--commit-port``)."""
COMMIT_TIMEOUT = 600.0
"""Seconds ``--commit`` waits for the Storage Commitment reports."""
COMMIT_BATCH = 500
"""Instances per Storage Commitment request (N-ACTION)."""
FIND_WINDOW_DAYS = 15
"""Days per C-FIND of a date range."""
DOWNLOAD_RETRY_SECONDS = 60
"""The gear's ``file_download_retry_time``."""
RETRY_BUDGET = 60.0
"""Seconds without a stored instance after which a send retries nothing more
(``--retry-time``, config ``retry_time``)."""

Associations = int | Literal["auto"]
"""How many associations at once: a number, or ``auto``."""

Labels = Mapping[str, str]
"""How a front door names a settings type's fields in its messages, by field
(``{"dimse_timeout": "--dimse-timeout"}``); a field left out keeps the type's
own wording."""

_DAY = 24 * 3600
_HOUR = 3600
_SHORTEST_TIMEOUT = 0.1
# ASCII only: float() and int() also take other scripts' digits ("١٢"), and
# unicodedata digits such as "²" pass str.isdigit() yet fail int().
_WHOLE = re.compile(r"[0-9]{1,12}")
_DECIMAL = re.compile(r"[0-9]{1,12}(\.[0-9]*)?([eE][+-]?[0-9]{1,3})?|\.[0-9]+")


@dataclass(frozen=True, slots=True)
class Bounds:
    """A range of sane values.

    Attributes:
        low: The lowest value.
        high: The highest value.
        integer: Whole numbers only (else seconds, fractions allowed).
        above_low: ``low`` itself is not allowed (a timeout of 0).
    """

    low: float
    high: float
    integer: bool = False
    above_low: bool = False

    def describe(self) -> str:
        """What a value must be, in words."""
        if self.integer:
            return f"a whole number from {self.low:g} to {self.high:g}"
        if self.above_low:
            return f"a number of seconds above {self.low:g} and at most {self.high:g}"
        return f"a number of seconds from {self.low:g} to {self.high:g}"

    def holds(self, number: float) -> bool:
        """Whether ``number`` is in range."""
        if not math.isfinite(number) or number > self.high:
            return False
        return number > self.low if self.above_low else number >= self.low


BOUNDS: Mapping[str, Bounds] = MappingProxyType(
    {
        "port": Bounds(1, 65535, integer=True),
        "associations": Bounds(1, 32, integer=True),
        "max_associations": Bounds(1, 32, integer=True),
        "batch": Bounds(1, 1000, integer=True),
        "window_days": Bounds(1, 36600, integer=True),
        "file_download_retry_time": Bounds(0, _DAY, integer=True),
        "download_concurrency": Bounds(1, 32, integer=True),
        "retry_time": Bounds(0, _DAY),
        "connect_timeout": Bounds(_SHORTEST_TIMEOUT, _HOUR),
        "acse_timeout": Bounds(_SHORTEST_TIMEOUT, _HOUR),
        "dimse_timeout": Bounds(_SHORTEST_TIMEOUT, _DAY),
        "network_timeout": Bounds(_SHORTEST_TIMEOUT, _DAY),
        "commit_port": Bounds(0, 65535, integer=True),
        "commit_timeout": Bounds(_SHORTEST_TIMEOUT, _DAY),
    }
)
"""Each number's range, by its name (the gear's config key)."""


def _number(value: object, pattern: re.Pattern[str]) -> float | None:
    """``value`` as a number: an int or float (not a bool), or ASCII text of one."""
    if isinstance(value, bool):
        return None
    try:
        if isinstance(value, int | float):
            return float(value)
        if isinstance(value, str) and pattern.fullmatch(value.strip()):
            return float(value.strip())
    except OverflowError:  # an int of 400 digits
        return None
    return None


def whole(name: str, value: object, label: str) -> int:
    """A whole number in the range ``BOUNDS[name]``.

    Args:
        name: The number's entry in :data:`BOUNDS`.
        value: What was given: a number, or text as config.json may hold it.
        label: How the message names it (``--port``, ``config port``).

    Raises:
        UsageError: Not a whole number, or out of range.
    """
    bounds = BOUNDS[name]
    number = _number(value, _WHOLE)
    if number is None or not number.is_integer() or not bounds.holds(number):
        raise UsageError(f"{label} must be {bounds.describe()}, got {value!r}")
    return int(number)


def seconds(name: str, value: object, label: str) -> float:
    """A number of seconds in the range ``BOUNDS[name]``.

    Args:
        name: The number's entry in :data:`BOUNDS`.
        value: What was given: a number, or text as config.json may hold it.
        label: How the message names it (``--dimse-timeout``, ``config ...``).

    Raises:
        UsageError: Not a number, or out of range.
    """
    bounds = BOUNDS[name]
    number = _number(value, _DECIMAL)
    if number is None or not bounds.holds(number):
        raise UsageError(f"{label} must be {bounds.describe()}, got {value!r}")
    return number


def association_count(
    value: object, label: str, *, typed: bool = False
) -> Associations:
    """``auto`` (any case, spaces around), or a whole number of associations.

    Args:
        value: What was given: ``auto``, a number, or text of one.
        label: How the message names it (``--associations``, ``config ...``).
        typed: Only an ``int`` or ``"auto"`` itself (a settings type's field).

    Raises:
        UsageError: Neither ``auto`` nor a number in the range of ``associations``.
    """
    text = value.strip().lower() if isinstance(value, str) and not typed else value
    if text == AUTO_ASSOCIATIONS:
        return AUTO_ASSOCIATIONS
    if not typed or (isinstance(value, int) and not isinstance(value, bool)):
        with contextlib.suppress(UsageError):
            return whole("associations", value, label)
    bounds = BOUNDS["associations"].describe()
    raise UsageError(f"{label} must be {bounds} or auto, got {value!r}")
