"""The package's public API: every name it exports, from where it is defined."""

import subprocess
import sys

import pytest

import fw_gear_dicom_send


def test_all_lists_every_name_the_package_resolves() -> None:
    assert fw_gear_dicom_send.__all__ == sorted(fw_gear_dicom_send._WHERE)


@pytest.mark.parametrize("name", fw_gear_dicom_send.__all__)
def test_every_exported_name_resolves(name: str) -> None:
    value = getattr(fw_gear_dicom_send, name)
    assert getattr(value, "__name__", name) == name


def test_send_is_the_function_not_the_subpackage() -> None:
    import fw_gear_dicom_send.sending.engine  # noqa: F401 - sets the attribute
    from fw_gear_dicom_send import send

    assert callable(send)
    assert send.__module__ == "fw_gear_dicom_send.sending.engine"


def test_importing_the_package_imports_neither_pydicom_nor_pynetdicom() -> None:
    code = (
        "import sys, fw_gear_dicom_send as m; m.SendRequest; "
        "print(sorted(n for n in ('pydicom', 'pynetdicom') if n in sys.modules))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    )
    assert out.stdout.strip() == "[]"


def test_an_unknown_name_is_an_attribute_error() -> None:
    with pytest.raises(AttributeError, match="no attribute 'sendd'"):
        _ = fw_gear_dicom_send.sendd
