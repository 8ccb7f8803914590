"""Filing received instances: nothing a peer sends names a file outside the folder."""

from pathlib import Path

from hypothesis import given
from hypothesis import strategies as st

from fw_gear_dicom_send.pacs.filing import Layout, relative_path, write_atomically
from fw_gear_dicom_send.sanitize import safe_component


def test_layouts() -> None:
    assert relative_path(Layout.PATIENT, "P1", "1.2", "1.2.3", "1.2.3.4") == Path(
        "P1/1.2/1.2.3/1.2.3.4.dcm"
    )
    assert relative_path(Layout.STUDY, "P1", "1.2", "1.2.3", "1.2.3.4") == Path(
        "1.2/1.2.3/1.2.3.4.dcm"
    )
    assert relative_path(Layout.FLAT, "P1", "1.2", "1.2.3", "1.2.3.4") == Path(
        "1.2.3.4.dcm"
    )
    assert relative_path(Layout.PATIENT, "", "", "", "9") == Path(
        "unknown-patient/unknown-study/unknown-series/9.dcm"
    )


@given(st.text(max_size=200))
def test_any_patient_id_stays_one_component_inside(text: str) -> None:
    component = safe_component(text, "fallback")
    assert component not in ("", ".", "..")
    assert "/" not in component and "\\" not in component and "\0" not in component
    assert len(component) <= 64
    path = relative_path(Layout.PATIENT, text, text, text, text)
    assert len(path.parts) == 4
    assert not path.is_absolute()
    assert ".." not in path.parts


def test_write_atomically_leaves_no_partial_file(tmp_path: Path) -> None:
    target = tmp_path / "a" / "b" / "x.dcm"
    write_atomically(target, b"data")
    write_atomically(target, b"newer")
    assert target.read_bytes() == b"newer"
    assert [p.name for p in target.parent.iterdir()] == ["x.dcm"]
