"""Typed reads of the gear's config options, each failure naming its key.

Values are read as configurations for the 4.x gear hold them: numbers may be
written as text, booleans as words (``"yes"``, ``"off"``).
"""

from collections.abc import Iterable, Mapping
from typing import Any

from ..errors import UsageError
from ..settings import seconds, whole

_TRUE = frozenset({"true", "yes", "on", "1"})
_FALSE = frozenset({"false", "no", "off", "0"})


class Options:
    """Typed reads of config options, each failure naming its key."""

    def __init__(self, config: Mapping[str, Any]) -> None:
        self._config = config

    def value(self, key: str, default: Any) -> Any:
        """The value as config.json holds it; missing or empty: ``default``.

        Raises:
            UsageError: It is missing and has no default (None).
        """
        if self._is_set(key):
            return self._config[key]
        if default is None:
            raise UsageError(f"config {key} is required")
        return default

    def given(self, keys: Iterable[str]) -> dict[str, Any]:
        """The values of those of ``keys`` that are set (not missing or empty)."""
        return {key: self._config[key] for key in keys if self._is_set(key)}

    def _is_set(self, key: str) -> bool:
        value = self._config.get(key)
        return not (value is None or value == "")

    def text(
        self, key: str, default: str | None = None, *, blank_is_default: bool = True
    ) -> str:
        """Text; empty text means the default unless ``blank_is_default`` is false."""
        if not blank_is_default and isinstance(self._config.get(key), str):
            return str(self._config[key]).strip()
        value = self.value(key, default)
        if not isinstance(value, str):
            raise UsageError(f"config {key} must be text, got {value!r}")
        return value.strip()

    def group(self, key: str, default: str) -> str:
        """A group number as hexadecimal text; a JSON number is refused.

        The text ``"21"`` is 0x0021 while the number 21 would be 0x0015: rather
        than guess which a number means, the message says what to write.
        """
        value = self._config.get(key)
        if isinstance(value, int | float) and not isinstance(value, bool):
            hint = (
                f'; for group {value} (decimal) write "0x{value:04X}"'
                if isinstance(value, int) and 0 <= value <= 0xFFFF
                else ""
            )
            raise UsageError(
                f'config {key} must be text such as "0x0021" (hexadecimal), '
                f"got the number {value!r}{hint}"
            )
        return self.text(key, default)

    def optional_text(self, key: str) -> str | None:
        """Text, or None if missing or empty."""
        value = self._config.get(key)
        if value is None or value == "":
            return None
        if not isinstance(value, str):
            raise UsageError(f"config {key} must be text")
        return value

    def integer(self, key: str, default: int) -> int:
        """A whole number, in the range ``settings.BOUNDS`` gives ``key``."""
        return whole(key, self.value(key, default), f"config {key}")

    def seconds(self, key: str, default: float) -> float:
        """Seconds, in the range ``settings.BOUNDS`` gives ``key``."""
        return seconds(key, self.value(key, default), f"config {key}")

    def boolean(
        self, key: str, *, default: bool, words: Mapping[str, bool] | None = None
    ) -> bool:
        """A boolean: JSON true or false, or a word for one (and ``words``)."""
        value = self.value(key, default)
        if isinstance(value, bool):
            return value
        if isinstance(value, str):
            word = value.strip().lower()
            if words and word in words:
                return words[word]
            if word in _TRUE:
                return True
            if word in _FALSE:
                return False
        allowed = "true or false" + (
            "".join(f", {w!r}" for w in words) if words else ""
        )
        raise UsageError(f"config {key} must be {allowed}, got {value!r}")
