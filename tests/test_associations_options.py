"""``--associations auto|N`` and ``--max-associations``; the gear's ``associations``
and ``max_associations``: read alike, held to the one table, and the manifest
takes them as the platform validates a job's config."""

import json
from pathlib import Path
from typing import Any

import jsonschema  # type: ignore[import-untyped]
import pytest
from fw_gear.invocation_schema import validate_invocation
from pydicom.filewriter import dcmwrite
from test_cli import run, send_args

from fw_gear_dicom_send import Peer, SendRequest, UsageError
from fw_gear_dicom_send.dicom.samples import make_ct
from fw_gear_dicom_send.gear.config import parse_config
from fw_gear_dicom_send.pacs.receiver import StorageReceiver
from fw_gear_dicom_send.settings import DEFAULT_ASSOCIATIONS, MAX_ASSOCIATIONS
from fw_gear_dicom_send.status import ExitStatus
from fw_gear_dicom_send.transport.peer import StowSettings

MANIFEST = Path(__file__).resolve().parent.parent / "manifest.json"
PEER = Peer("127.0.0.1", 104, "PACS")


def _gear(tmp_path: Path, **config: Any) -> Any:
    options = {"destination": "pacs.example.org", "called_ae": "PACS", **config}
    return parse_config(
        options, {}, {}, output_dir=tmp_path / "o", work_dir=tmp_path / "w"
    )


@pytest.mark.parametrize(
    ("value", "read"), [("auto", "auto"), (" AUTO ", "auto"), (8, 8), ("8", 8)]
)
def test_the_gear_reads_auto_and_numbers(tmp_path: Path, value: Any, read: Any) -> None:
    settings = _gear(tmp_path, associations=value, max_associations=5)
    assert settings.associations == read
    assert settings.max_associations == 5


def test_the_gear_defaults(tmp_path: Path) -> None:
    settings = _gear(tmp_path)
    assert settings.associations == DEFAULT_ASSOCIATIONS
    assert settings.max_associations == MAX_ASSOCIATIONS == 16


@pytest.mark.parametrize(
    ("config", "message"),
    [
        (
            {"associations": "fast"},
            "config associations must be a whole number from 1 to 32 or auto, "
            "got 'fast'",
        ),
        ({"associations": 33}, "config associations must be a whole number from 1"),
        ({"associations": True}, "config associations must be a whole number from 1"),
        (
            {"max_associations": 0},
            "config max_associations must be a whole number from 1 to 32, got 0",
        ),
    ],
)
def test_the_gear_refuses_bad_counts_in_one_line(
    tmp_path: Path, config: dict[str, Any], message: str
) -> None:
    with pytest.raises(UsageError) as refused:
        _gear(tmp_path, **config)
    assert str(refused.value) == message or str(refused.value).startswith(message)


def test_stow_with_auto_sends_the_default_requests_at_once(tmp_path: Path) -> None:
    settings = _gear(
        tmp_path,
        transport="stow-rs",
        stow_url="http://127.0.0.1:8042/dicom-web",
        associations="auto",
    )
    assert isinstance(settings.stow, StowSettings)
    assert settings.stow.parallel == DEFAULT_ASSOCIATIONS


def test_the_manifest_takes_auto_a_number_as_text_and_its_defaults() -> None:
    manifest = json.loads(MANIFEST.read_text())
    spec = manifest["config"]
    assert spec["associations"]["type"] == "string"
    assert spec["max_associations"] == {
        **spec["max_associations"],
        "type": "integer",
        "default": 16,
        "minimum": 1,
        "maximum": 32,
    }
    required = {"destination": "pacs", "called_ae": "PACS"}
    defaults = {k: v["default"] for k, v in spec.items() if "default" in v}
    inputs = {"api-key": {"base": "api-key", "key": "key"}}
    for associations in ("auto", "8", spec["associations"]["default"]):
        config = {**defaults, **required, "associations": associations}
        validate_invocation(manifest, {"config": config, "inputs": inputs})
    config = {**defaults, **required, "max_associations": 33}
    with pytest.raises(jsonschema.ValidationError, match="33 is greater than"):
        validate_invocation(manifest, {"config": config, "inputs": inputs})


def test_the_manifest_default_makes_the_documented_default(tmp_path: Path) -> None:
    spec = json.loads(MANIFEST.read_text())["config"]
    settings = _gear(
        tmp_path,
        associations=spec["associations"]["default"],
        max_associations=spec["max_associations"]["default"],
    )
    assert settings.associations == DEFAULT_ASSOCIATIONS
    assert settings.max_associations == MAX_ASSOCIATIONS


def test_a_send_request_takes_auto_and_its_ceiling() -> None:
    request = SendRequest((), peer=PEER, associations="auto", max_associations=6)
    assert request.most_associations == 6
    assert SendRequest((), peer=PEER, associations=3).most_associations == 3


_RANGE = "must be a whole number from 1 to 32"


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"associations": "AUTO"}, f"associations {_RANGE} or auto, got 'AUTO'"),
        ({"associations": "4"}, f"associations {_RANGE} or auto, got '4'"),
        ({"associations": 0}, f"associations {_RANGE} or auto, got 0"),
        ({"max_associations": 33}, f"max_associations {_RANGE}, got 33"),
    ],
)
def test_a_send_request_holds_its_counts_to_the_table(
    fields: dict[str, Any], message: str
) -> None:
    with pytest.raises(UsageError) as refused:
        SendRequest((), peer=PEER, **fields)
    assert str(refused.value) == message


@pytest.mark.parametrize(
    ("option", "message"),
    [
        ("--associations=fast", "argument --associations: not a whole number or auto"),
        ("--associations=0", f"--associations {_RANGE} or auto"),
        ("--max-associations=33", f"--max-associations {_RANGE}"),
        ("--max-associations=auto", "argument --max-associations: not a whole number"),
    ],
)
def test_the_command_line_refuses_bad_counts_in_one_line(
    option: str, message: str, tmp_path: Path, receiver: StorageReceiver
) -> None:
    result = run(*send_args(tmp_path, receiver.port, "STORE-SCP", option), timeout=30)
    assert result.returncode == ExitStatus.USAGE, result.stderr
    (line,) = result.stderr.strip().splitlines()
    assert line.startswith("dicom-send"), line
    assert f" error: {message}" in line
    assert receiver.associations == 0


@pytest.mark.parametrize("associations", ["2", None])
def test_a_ceiling_without_auto_is_said_to_be_ignored(
    associations: str | None, tmp_path: Path, receiver: StorageReceiver
) -> None:
    extra = ("--associations", associations) if associations else ()
    result = run(
        *send_args(_one_ct(tmp_path), receiver.port, "STORE-SCP"),
        "--max-associations",
        "8",
        *extra,
        timeout=60,
    )
    assert result.returncode == ExitStatus.SUCCESS, result.stderr
    ignored = "--max-associations applies to --associations auto only: ignored"
    assert result.stderr.count(ignored) == 1


def test_a_ceiling_with_auto_is_not_said_to_be_ignored(
    tmp_path: Path, receiver: StorageReceiver
) -> None:
    result = run(
        *send_args(_one_ct(tmp_path), receiver.port, "STORE-SCP"),
        "--max-associations",
        "8",
        "--associations",
        "auto",
        timeout=60,
    )
    assert result.returncode == ExitStatus.SUCCESS, result.stderr
    assert "ignored" not in result.stderr


def _one_ct(tmp_path: Path) -> Path:
    path = tmp_path / "ct.dcm"
    dcmwrite(path, make_ct(0), enforce_file_format=True)
    return path
