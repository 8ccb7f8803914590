"""Counts in words: ``1 instance``, ``2 instances``; one helper for every message."""

__all__ = ["count"]

_IRREGULAR = {"match": "matches", "series": "series", "study": "studies"}


def count(n: int, noun: str, plural: str | None = None) -> str:
    """``n`` and the noun, singular for exactly one.

    Args:
        n: How many.
        noun: The singular (``instance``, ``file``, ``match``).
        plural: The plural, when not the noun with ``s`` (or a known irregular
            one).

    Returns:
        E.g. ``1 file``, ``0 files``, ``3 matches``.
    """
    if n == 1:
        return f"{n} {noun}"
    return f"{n} {plural or _IRREGULAR.get(noun, noun + 's')}"
