"""The provenance element: group parsing and where the element goes."""

import pytest
from pydicom.dataset import Dataset

from fw_gear_dicom_send.dicom.provenance import (
    Placement,
    ProvenanceTag,
    TaggingError,
    parse_group,
    place,
    tag_dataset,
)
from fw_gear_dicom_send.errors import UsageError

TAG = ProvenanceTag()


@pytest.mark.parametrize("text", ["0x0021", "0021", "21", "0X21", " 0x0021 ", 33])
def test_group_spellings(text: str | int) -> None:
    assert parse_group(text) == 0x0021


@pytest.mark.parametrize("text", ["0x0020", "0x0001", "0x0007", "0xFFFF", "", "g21", 8])
def test_bad_groups(text: str | int) -> None:
    with pytest.raises(UsageError):
        parse_group(text)


def test_a_new_block_takes_the_first_slot() -> None:
    assert place(TAG, {}) == Placement(0x00210010, 0x00211000)


def test_a_taken_slot_moves_the_block_as_the_reference_gear_does() -> None:
    existing = {0x00210010: b"SIEMENS", 0x00211000: b"x"}
    assert place(TAG, existing) == Placement(0x00210011, 0x00211100)


def test_our_block_gets_the_first_free_offset() -> None:
    existing = {0x00210010: b"Flywheel", 0x00211000: b"Other value", 0x00211001: b"y"}
    assert place(TAG, existing) == Placement(None, 0x00211002)


def test_the_same_value_is_not_added_twice() -> None:
    existing = {0x00210012: b"Flywheel", 0x00211203: b"DICOM Send"}
    assert place(TAG, existing) == Placement(None, None)


def test_an_orphan_element_keeps_its_block() -> None:
    """(0021,1000) without the creator (0021,0010): block 10 is not free."""
    assert place(TAG, {0x00211000: b"ORPHANDATA"}) == Placement(0x00210011, 0x00211100)
    ds = Dataset()
    ds.add_new(0x00211000, "LO", "ORPHANDATA")
    tag_dataset(ds, TAG)
    assert ds[0x00211000].value == "ORPHANDATA"
    assert ds[0x00211100].value == "DICOM Send"


def test_all_slots_taken() -> None:
    existing: dict[int, bytes | None] = {
        0x00210000 | s: b"X" for s in range(0x10, 0x100)
    }
    with pytest.raises(TaggingError, match="all private creator slots"):
        place(TAG, existing)


def test_a_full_block() -> None:
    existing: dict[int, bytes | None] = {0x00210010: b"Flywheel"}
    existing.update({0x00211000 + i: b"v" for i in range(0x100)})
    with pytest.raises(TaggingError, match="full"):
        place(TAG, existing)


def test_tag_dataset_uses_the_same_rule() -> None:
    ds = Dataset()
    ds.add_new(0x00210010, "LO", "SIEMENS")
    tag_dataset(ds, TAG)
    assert ds[0x00210011].value == "Flywheel"
    assert ds[0x00211100].value == "DICOM Send"
    tag_dataset(ds, TAG)  # idempotent
    assert len(ds.group_dataset(0x0021)) == 3


@pytest.mark.parametrize(
    "kwargs",
    [
        {"creator": ""},
        {"creator": "x" * 65},
        {"value": "a\\b"},
        {"value": "é"},
        {"group": 0x20},
    ],
)
def test_bad_tags(kwargs: dict[str, object]) -> None:
    with pytest.raises(UsageError):
        ProvenanceTag(**kwargs)  # type: ignore[arg-type]
