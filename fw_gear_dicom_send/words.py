"""Counts in words: ``1 instance``, ``2 instances``, ``a 4th``; for every message."""

__all__ = ["an_ordinal", "count"]

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


def an_ordinal(n: int) -> str:
    """``n`` as an ordinal, with its article: ``a 4th``, ``an 8th``, ``an 11th``."""
    ends = {1: "st", 2: "nd", 3: "rd"}
    end = "th" if 10 <= n % 100 <= 20 else ends.get(n % 10, "th")
    article = "an" if str(n).startswith("8") or n in (11, 18) else "a"
    return f"{article} {n}{end}"
