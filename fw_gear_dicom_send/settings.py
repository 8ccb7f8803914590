"""The one table of sane ranges for every number a user gives, and its checks.

The command line and the gear's config both check their numbers here, so a port,
a timeout or a count is held to the same range whichever way it comes in. The
highest values keep every timer within what the threads and sockets under it
take (a timeout of 1e12 s overflows them); nothing useful is lost at a day. A
timeout is at least a tenth of a second: below it, no answer can arrive and
every attempt fails at once.
"""

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType

from .errors import UsageError

__all__ = ["BOUNDS", "Bounds", "seconds", "whole"]

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
        "batch": Bounds(1, 1000, integer=True),
        "window_days": Bounds(1, 36600, integer=True),
        "file_download_retry_time": Bounds(0, _DAY, integer=True),
        "retry_time": Bounds(0, _DAY),
        "connect_timeout": Bounds(_SHORTEST_TIMEOUT, _HOUR),
        "acse_timeout": Bounds(_SHORTEST_TIMEOUT, _HOUR),
        "dimse_timeout": Bounds(_SHORTEST_TIMEOUT, _DAY),
        "network_timeout": Bounds(_SHORTEST_TIMEOUT, _DAY),
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
