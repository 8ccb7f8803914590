"""Assertions shared by the tests."""

from pathlib import Path

from pydicom import dcmread
from pydicom.dataset import Dataset


def _raw(value: object) -> bytes:
    if isinstance(value, bytes):
        return value.rstrip(b"\0 ")
    return str(value).encode().rstrip(b"\0 ")


def provenance(
    ds: Dataset, group: int = 0x0021, creator: bytes = b"Flywheel"
) -> list[bytes]:
    """Values of the provenance block's elements, compared as raw bytes (under
    Implicit VR a receiver keeps private elements as UN bytes)."""
    for elem in ds.group_dataset(group):
        if 0x10 <= elem.tag.element <= 0xFF and _raw(elem.value) == creator:
            block = elem.tag.element << 8
            return [
                _raw(e.value)
                for e in ds.group_dataset(group)
                if block <= e.tag.element < block + 0x100
            ]
    return []


def assert_tagged_copy(
    received: Path, source: Path, value: bytes = b"DICOM Send"
) -> None:
    """``received`` is ``source`` plus the provenance element, and nothing else."""
    got, want = dcmread(received), dcmread(source)
    assert provenance(got) == [value], f"{received.name}: provenance element missing"
    added = {e.tag for e in got.group_dataset(0x0021)} - {
        e.tag for e in want.group_dataset(0x0021)
    }
    assert len(added) == 2  # the creator and the value
    for tag in added:
        del got[tag]
    assert sorted(got.keys()) == sorted(want.keys())
    for elem in want:
        if elem.tag.is_private:
            assert _raw(got[elem.tag].value) == _raw(elem.value)
        else:
            assert got[elem.tag].value == elem.value, f"{elem.tag} differs"
    assert got.PixelData == want.PixelData
