"""manifest.json: valid for the platform, and the interface of the 4.x gear kept."""

import json
from pathlib import Path
from typing import Any

import pytest
from fw_gear.manifest import Manifest, ManifestValidationError

from fw_gear_dicom_send import __version__
from fw_gear_dicom_send.gear.config import KNOWN_KEYS, parse_config

MANIFEST = Path(__file__).resolve().parent.parent / "manifest.json"

# The 4.x gear's options: type and default (None: no default, the user sets it).
OLD_CONFIG: dict[str, tuple[str, Any]] = {
    "destination": ("string", None),
    "called_ae": ("string", None),
    "calling_ae": ("string", "flywheel"),
    "port": ("integer", 104),
    "file_download_retry_time": ("integer", 60),
    "group": ("string", "0x0021"),
    "identifier": ("string", "Flywheel"),
    "tag_value": ("string", "DICOM Send"),
    "report": ("boolean", True),
    "tls_enabled": ("boolean", False),
    # 4.x's default, "BCP 195", was never read; the default is now the strictest
    # profile DCMTK 3.6.7 and Orthanc 1.10 accept (rules that say "BCP 195" get it).
    "tls_security_profile": ("string", "BCP 195 RFC 8996"),
    "tls_require_peer_cert": ("boolean", True),
}


@pytest.fixture
def manifest() -> dict[str, Any]:
    data: dict[str, Any] = json.loads(MANIFEST.read_text())
    return data


def test_the_platform_schema_accepts_it() -> None:
    Manifest(str(MANIFEST)).validate(validate_classification=True)


def test_the_schema_check_would_catch_a_broken_manifest(
    manifest: dict[str, Any],
) -> None:
    del manifest["version"]
    manifest["config"]["port"]["default"] = "104"
    with pytest.raises(ManifestValidationError):
        Manifest(manifest).validate()


def test_identity_and_capabilities(manifest: dict[str, Any]) -> None:
    for key in ("name", "label", "version", "license", "source", "description"):
        assert manifest[key]
    assert manifest["author"]
    assert manifest["version"] == __version__
    image = manifest["custom"]["gear-builder"]["image"]
    assert image.endswith(f":{__version__}")
    assert manifest["capabilities"] == ["networking"]
    assert manifest["environment"]["FLYWHEEL"] == "/flywheel/v0"


def test_inputs_of_the_old_gear(manifest: dict[str, Any]) -> None:
    inputs = manifest["inputs"]
    for name in ("file", "key", "cert", "add_cert_file"):
        assert inputs[name]["base"] == "file"
        assert inputs[name]["optional"] is True
    assert inputs["api-key"] == {"base": "api-key", "read-only": True}


def test_every_old_option_with_its_type_and_default(manifest: dict[str, Any]) -> None:
    config = manifest["config"]
    for key, (kind, default) in OLD_CONFIG.items():
        assert config[key]["type"] == kind, key
        assert config[key].get("default") == default, key
    new = set(config) - set(OLD_CONFIG)
    assert all("default" in config[key] for key in new), "new options need defaults"


def test_the_manifest_lists_exactly_what_the_gear_reads(
    manifest: dict[str, Any],
) -> None:
    assert set(manifest["config"]) == KNOWN_KEYS


def test_the_defaults_make_valid_settings(
    manifest: dict[str, Any], tmp_path: Path
) -> None:
    options = {
        key: spec["default"]
        for key, spec in manifest["config"].items()
        if "default" in spec
    }
    options |= {"destination": "pacs.example.org", "called_ae": "PACS"}
    settings = parse_config(
        options, {}, {}, output_dir=tmp_path / "o", work_dir=tmp_path / "w"
    )
    assert settings.peer is not None
    assert settings.peer.port == 104
    assert settings.association.calling_ae == "flywheel"
    assert settings.tag.group == 0x0021
    assert (settings.tag.creator, settings.tag.value) == ("Flywheel", "DICOM Send")
    assert settings.report is True
    assert settings.download_retry_seconds == 60
    assert settings.association.tls is None
