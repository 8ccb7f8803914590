"""The settings types check themselves; the command line imports one command.

Defaults come from ``settings.py``; a ``parse`` constructor names a bad value as
the front door that read it does.
"""

import subprocess
import sys

import pytest

from fw_gear_dicom_send.cli.main import COMMANDS, load
from fw_gear_dicom_send.errors import UsageError
from fw_gear_dicom_send.settings import GEAR_CALLING_AE, LIBRARY_CALLING_AE
from fw_gear_dicom_send.transport.peer import AssociationSettings, Peer, StowSettings
from fw_gear_dicom_send.transport.tls import Profile, TlsSettings


def test_the_library_calls_as_the_command_line_does() -> None:
    assert AssociationSettings().calling_ae == LIBRARY_CALLING_AE == "DICOM-SEND"
    assert GEAR_CALLING_AE == "flywheel"


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (
            lambda: AssociationSettings.parse(
                "ME", {"dimse_timeout": "0"}, labels={"dimse_timeout": "X"}
            ),
            "X must be a number of seconds from 0.1 to 86400, got '0'",
        ),
        (
            lambda: AssociationSettings.parse("ME", {"acse_timeout": 1e9}),
            "the acse timeout must be a number of seconds from 0.1 to 3600",
        ),
        (
            lambda: AssociationSettings.parse("", labels={"calling_ae": "AE"}),
            "AE must be 1 to 16 characters, got ''",
        ),
        (
            lambda: Peer.parse("pacs", "70000", "PACS", labels={"port": "P"}),
            "P must be a whole number from 1 to 65535, got '70000'",
        ),
        (
            lambda: Peer.parse("pacs", True, "PACS"),
            "port must be a whole number from 1 to 65535, got True",
        ),
        (
            lambda: StowSettings.parse(
                "http://x/dicom-web", parallel="33", labels={"parallel": "N"}
            ),
            "N must be a whole number from 1 to 32, got '33'",
        ),
        (
            lambda: TlsSettings.parse("B.99", labels={"profile": "config profile"}),
            "config profile: unknown TLS security profile 'B.99'",
        ),
        (
            lambda: TlsSettings(key_password="caf\udce9"),
            "the TLS key password is not UTF-8 text",
        ),
    ],
)
def test_a_bad_value_is_named_as_its_front_door_names_it(
    make: object, message: str
) -> None:
    with pytest.raises(UsageError) as raised:
        make()  # type: ignore[operator]
    assert str(raised.value).startswith(message)


def test_parse_takes_numbers_as_text() -> None:
    settings = AssociationSettings.parse("ME", {"dimse_timeout": "2.5"})
    assert settings.dimse_timeout == 2.5
    assert settings.connect_timeout == AssociationSettings().connect_timeout
    assert Peer.parse("pacs", "11112", "PACS").port == 11112
    assert TlsSettings.parse("bcp195-nd").profile is Profile.BCP195_ND


def test_every_command_module_adds_its_options_and_runs() -> None:
    for name in COMMANDS:
        module = load(name)
        assert callable(module.add_arguments), name
        assert callable(module.run), name


def test_a_command_imports_only_its_own_module() -> None:
    check = (
        "import sys; from fw_gear_dicom_send.cli.main import build_parser; "
        "build_parser('send'); "
        "print(sorted(m.rpartition('.')[2] for m in sys.modules "
        "if m.startswith('fw_gear_dicom_send.cli.')), "
        "sorted({'pydicom', 'pynetdicom'} & set(sys.modules)))"
    )
    done = subprocess.run(
        [sys.executable, "-c", check], capture_output=True, text=True, check=True
    )
    assert done.stdout.strip() == ("['main', 'options', 'send'] []")
