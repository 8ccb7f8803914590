"""Counts and ordinals in words, as every message says them."""

import pytest

from fw_gear_dicom_send.words import an_ordinal, count


@pytest.mark.parametrize(
    ("n", "said"),
    [
        (1, "a 1st"),
        (2, "a 2nd"),
        (3, "a 3rd"),
        (4, "a 4th"),
        (8, "an 8th"),
        (11, "an 11th"),
        (12, "a 12th"),
        (13, "a 13th"),
        (18, "an 18th"),
        (21, "a 21st"),
        (80, "an 80th"),
        (111, "a 111th"),
    ],
)
def test_an_ordinal(n: int, said: str) -> None:
    assert an_ordinal(n) == said


def test_count() -> None:
    assert count(1, "file") == "1 file"
    assert count(0, "file") == "0 files"
    assert count(3, "match") == "3 matches"
    assert count(2, "series") == "2 series"
    assert count(2, "child", "children") == "2 children"
