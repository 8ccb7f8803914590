"""The gear's config.json -> settings: old spellings accepted, bad values named."""

import json
import logging
import re
from pathlib import Path
from typing import Any

import pytest

from fw_gear_dicom_send.errors import UsageError
from fw_gear_dicom_send.gear.config import (
    GearSettings,
    parse_config,
    read_config,
)
from fw_gear_dicom_send.gear.files import ContainerRef
from fw_gear_dicom_send.transport.tls import DEFAULT_PROFILE, Profile

BASE = {"destination": "pacs.example.org", "called_ae": "PACS"}


def parse(
    tmp_path: Path,
    inputs: dict[str, Any] | None = None,
    ref: dict[str, Any] | None = None,
    /,
    **options: Any,
) -> GearSettings:
    return parse_config(
        BASE | options,
        inputs or {},
        ref or {},
        output_dir=tmp_path / "output",
        work_dir=tmp_path / "work",
    )


@pytest.mark.parametrize(
    ("value", "enabled"),
    [
        (True, True),
        (False, False),
        ("enabled", True),
        ("disabled", False),
        ("anonymous", True),
        ("Enabled", True),
        ("true", True),
        ("false", False),
    ],
)
def test_tls_enabled_old_and_new(tmp_path: Path, value: Any, enabled: bool) -> None:
    tls = parse(tmp_path, tls_enabled=value).association.tls
    assert (tls is not None) is enabled


@pytest.mark.parametrize("value", ["0x0021", "0021", "21", "0X21", " 0x0021 "])
def test_group_spellings(tmp_path: Path, value: str) -> None:
    assert parse(tmp_path, group=value).tag.group == 0x0021


@pytest.mark.parametrize("value", [104, "104", 104.0, " 104 "])
def test_port_as_number_or_text(tmp_path: Path, value: Any) -> None:
    peer = parse(tmp_path, port=value).peer
    assert peer is not None
    assert peer.port == 104


def test_blank_options_take_their_defaults(tmp_path: Path) -> None:
    settings = parse(tmp_path, calling_ae=None, port=None, group="", report=None)
    assert settings.association.calling_ae == "flywheel"
    assert settings.peer is not None
    assert settings.peer.port == 104
    assert settings.tag.group == 0x0021
    assert settings.report is True


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"destination": None}, "config destination is required"),
        ({"called_ae": ""}, "config called_ae is required"),
        ({"called_ae": "PACS\\1"}, "config called_ae must be ASCII without backslash"),
        ({"calling_ae": "x" * 17}, "config calling_ae must be 1 to 16 characters"),
        ({"port": 0}, "config port must be a whole number from 1 to 65535, got 0"),
        ({"port": True}, "config port must be a whole number"),
        ({"port": 10.5}, "config port must be a whole number"),
        ({"group": "0x0008"}, "config: group 0x0008 is not a private group"),
        ({"group": "zz"}, "config: "),
        ({"group": 21}, 'config group must be text such as "0x0021" (hexadecimal)'),
        (
            {"group": 33},
            'config group must be text such as "0x0021" (hexadecimal), got the '
            'number 33; for group 33 (decimal) write "0x0021"',
        ),
        ({"calling_ae": ""}, "config calling_ae must be 1 to 16 characters"),
        ({"identifier": "x" * 65}, "config: "),
        ({"report": "sometimes"}, "config report must be true or false, got"),
        ({"tls_enabled": 2}, "config tls_enabled must be true or false, 'enabled'"),
        ({"file_download_retry_time": -1}, "config file_download_retry_time must"),
        ({"dimse_timeout": 0}, "config dimse_timeout must be a number of seconds"),
        ({"dimse_timeout": "soon"}, "config dimse_timeout must be a number"),
    ],
)
def test_bad_values_are_named(
    tmp_path: Path, options: dict[str, Any], message: str
) -> None:
    with pytest.raises(UsageError) as caught:
        parse(tmp_path, **options)
    assert str(caught.value).startswith(message)
    assert "\n" not in str(caught.value)


def test_unknown_keys_are_logged_not_fatal(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING):
        parse(tmp_path, tls_cipher="X")
    assert "config key 'tls_cipher' is not one of this gear's" in caplog.text


def test_file_inputs(tmp_path: Path) -> None:
    series = tmp_path / "series.zip"
    series.write_bytes(b"PK\x05\x06" + bytes(18))
    inputs = {
        "file": {
            "base": "file",
            "hierarchy": {"type": "acquisition", "id": "a1"},
            "location": {"name": "series.zip", "path": str(series)},
        },
        "key": {"base": "file", "location": {"path": str(tmp_path / "gone.pem")}},
    }
    with pytest.raises(UsageError, match=r"^input key not found at .*gone\.pem$"):
        parse(tmp_path, inputs, None, tls_enabled=True)
    parse(tmp_path, inputs)  # without TLS, the key input is not read
    del inputs["key"]
    settings = parse(tmp_path, inputs, {"type": "acquisition", "id": "a1"})
    assert settings.file is not None
    assert settings.file.path == series
    assert settings.file.parent == ContainerRef("acquisition", "a1")
    assert settings.destination == ContainerRef("acquisition", "a1")
    assert settings.association.tls is None


@pytest.mark.parametrize(
    ("written", "profile"),
    [
        ("BCP 195", Profile.BCP195),
        ("BCP195", Profile.BCP195),
        ("bcp195-nd", Profile.BCP195_ND),
        ("Non-downgrading BCP 195", Profile.BCP195_ND),
        ("BCP 195 Extended", Profile.BCP195_EXTENDED),
        ("bcp195-ex", Profile.BCP195_EXTENDED),
        ("BCP 195 RFC 8996", Profile.BCP195_RFC8996),
        ("Modified BCP 195 RFC 8996", Profile.BCP195_RFC8996_MODIFIED),
        ("B.12", Profile.BCP195_RFC8996),
    ],
)
def test_tls_profiles_as_users_write_them(
    tmp_path: Path, written: str, profile: Profile
) -> None:
    tls = parse(
        tmp_path, tls_enabled=True, tls_security_profile=written
    ).association.tls
    assert tls is not None
    assert tls.profile is profile


def test_tls_settings_from_config_and_inputs(tmp_path: Path) -> None:
    files = {}
    for name in ("key", "cert", "add_cert_file"):
        path = tmp_path / f"{name}.pem"
        path.write_text("-----BEGIN-----\n")
        files[name] = {
            "base": "file",
            "location": {"name": path.name, "path": str(path)},
        }
    tls = parse(
        tmp_path,
        files,
        None,
        tls_enabled="enabled",
        tls_require_peer_cert=False,
        tls_check_hostname="false",
        tls_key_password="s3cret",
    ).association.tls
    assert tls is not None
    assert tls.profile is DEFAULT_PROFILE
    assert (tls.verify_peer, tls.check_hostname) == (False, False)
    assert (tls.key, tls.cert, tls.ca_file) == (
        tmp_path / "key.pem",
        tmp_path / "cert.pem",
        tmp_path / "add_cert_file.pem",
    )
    assert tls.key_password == "s3cret"
    assert "s3cret" not in repr(tls)


def test_an_unknown_tls_profile_is_named(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match=r"^config tls_security_profile: unknown TLS"):
        parse(tmp_path, tls_enabled=True, tls_security_profile="TLS 1.0")


def test_stow_rs_transport(tmp_path: Path) -> None:
    credential = tmp_path / "credential.txt"
    credential.write_text("bearer:from-the-input\n")
    inputs = {
        "stow_credential": {
            "base": "file",
            "location": {"name": credential.name, "path": str(credential)},
        }
    }
    settings = parse_config(
        {"transport": "stow-rs", "stow_url": "https://cloud/dicom-web", "port": 1},
        inputs,
        {},
        output_dir=tmp_path / "o",
        work_dir=tmp_path / "w",
    )
    assert settings.peer is None
    assert settings.stow is not None
    assert str(settings.stow) == "https://cloud/dicom-web/studies"
    assert settings.stow.auth is not None
    assert settings.stow.auth.header == "Bearer from-the-input"
    assert settings.stow.tls is not None  # https: verified by default
    assert settings.stow.tls.verify_peer


@pytest.mark.parametrize(
    ("config", "message"),
    [
        ({"transport": "stow"}, "config transport must be dimse or stow-rs"),
        ({"transport": "stow-rs"}, "stow_url"),
        (
            {"transport": "stow-rs", "stow_url": "pacs:104"},
            "config: the STOW-RS URL must be http(s)://host/",
        ),
        (
            {"transport": "stow-rs", "stow_url": "http://x", "stow_auth": "x"},
            "bearer:TOKEN or basic:USER:PASSWORD",
        ),
    ],
)
def test_bad_stow_config(tmp_path: Path, config: dict[str, Any], message: str) -> None:
    with pytest.raises(UsageError, match=re.escape(message)):
        parse_config(config, {}, {}, output_dir=tmp_path, work_dir=tmp_path)


def test_read_config_as_flywheel_writes_it(tmp_path: Path) -> None:
    """Its three objects; an api-key input (old name or new) means a client; the
    secrets are kept out of the repr, which a debug log could show."""
    path = tmp_path / "config.json"
    key = "flywheel.example.org:s3cr3t-key"
    options = BASE | {"tls_key_password": "k3y-pa55word"}
    for name in ("api-key", "api_key"):
        inputs = {name: {"base": "api-key", "key": key}}
        document = {"config": options, "inputs": inputs, "destination": {}, "job": {}}
        path.write_text(json.dumps(document))

        config = read_config(path)

        assert (config.options, config.inputs, config.destination) == (
            options,
            inputs,
            {},
        )
        assert config.has_api_key
        assert key not in repr(config)
        assert "k3y-pa55word" not in repr(config)
    path.write_text(json.dumps({"inputs": {"api-key": {"base": "api-key"}}}))
    assert not read_config(path).has_api_key
    path.write_text("{}")
    assert read_config(path).options == {}


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (None, "cannot read"),
        ("{not json", "as JSON"),
        ("[1, 2]", "holds no JSON object"),
        ('{"config": [1]}', "config is not a JSON object"),
        ('{"inputs": "x"}', "inputs is not a JSON object"),
    ],
)
def test_a_config_json_that_cannot_be_read(
    tmp_path: Path, text: str | None, message: str
) -> None:
    path = tmp_path / "config.json"
    if text is not None:
        path.write_text(text)

    with pytest.raises(UsageError, match=message) as caught:
        read_config(path)

    assert "\n" not in str(caught.value)
