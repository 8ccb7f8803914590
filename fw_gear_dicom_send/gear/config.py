"""The gear's config.json -> one frozen, validated :class:`GearSettings`.

Written for configurations made for the existing ``fw-gear-dicom-send`` 4.x gear:
its keys and value types are read as they are, and the spellings older versions
used are accepted too (``tls_enabled`` as ``"enabled"``/``"disabled"``, ``group`` as
``0x0021``, ``0021`` or ``21``, numbers written as text, the input ``api_key``).
Every value is checked, here or by the settings type it goes into (``Peer``,
``AssociationSettings``, ``StowSettings``, ``TlsSettings``), so a bad one stops the
job with a one-line :class:`~fw_gear_dicom_send.errors.UsageError` naming its key
before anything is sent.
"""

import json
import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..dicom.provenance import (
    DEFAULT_CREATOR,
    DEFAULT_GROUP,
    DEFAULT_VALUE,
    ProvenanceTag,
    parse_group,
)
from ..errors import UsageError
from ..sending.request import CommitSettings
from ..settings import (
    COMMIT_LISTEN_PORT,
    COMMIT_TIMEOUT,
    DEFAULT_ASSOCIATIONS,
    DOWNLOAD_RETRY_SECONDS,
    GEAR_CALLING_AE,
    MAX_ASSOCIATIONS,
    PORT,
    RETRY_BUDGET,
    Associations,
    association_count,
)
from ..transport.peer import AssociationSettings, Peer, StowSettings, parse_auth
from ..transport.retry import RetryPolicy
from ..transport.tls import DEFAULT_PROFILE, TlsSettings
from .files import ContainerRef
from .options import Options

DOWNLOAD_CONCURRENCY = 4
"""The gear's ``download_concurrency``: files downloaded at once."""

log = logging.getLogger(__name__)

# Every key the gear reads, so that a key nobody reads is logged as ignored.
KNOWN_KEYS = frozenset(
    {
        "destination",
        "called_ae",
        "calling_ae",
        "port",
        "file_download_retry_time",
        "download_concurrency",
        "group",
        "identifier",
        "tag_value",
        "report",
        "verify",
        "storage_commitment",
        "commit_port",
        "commit_timeout",
        "skip_existing",
        "tls_enabled",
        "tls_security_profile",
        "tls_require_peer_cert",
        "tls_check_hostname",
        "tls_key_password",
        "retry_time",
        "associations",
        "max_associations",
        "connect_timeout",
        "acse_timeout",
        "dimse_timeout",
        "debug",
        "transport",
        "stow_url",
        "stow_auth",
    }
)
_TRANSPORTS = ("dimse", "stow-rs")
# tls_enabled as gear 3.x wrote it; "anonymous" meant TLS without a client
# certificate, which is what TLS without the key and cert inputs is.
_TLS_WORDS = {"enabled": True, "anonymous": True, "disabled": False}
_TIMEOUTS = ("connect_timeout", "acse_timeout", "dimse_timeout")
"""The association timeouts the config sets (by their field names)."""
_LABELS = {
    **{key: f"config {key}" for key in ("port", "called_ae", "calling_ae", *_TIMEOUTS)},
    "profile": "config tls_security_profile",
    "key_password": "config tls_key_password",
}
"""How the settings types name their fields in messages: by config key."""


@dataclass(frozen=True, slots=True)
class FileInput:
    """The ``file`` input: where it lies and where it comes from in Flywheel."""

    path: Path
    name: str
    parent: ContainerRef | None
    """The container holding the file (normally its acquisition)."""


@dataclass(frozen=True, slots=True)
class GearSettings:
    """Everything a gear run needs, validated."""

    peer: Peer | None
    """The DIMSE receiver; None when sending by STOW-RS."""
    association: AssociationSettings
    tag: ProvenanceTag
    report: bool
    download_retry_seconds: float
    destination: ContainerRef | None
    file: FileInput | None
    output_dir: Path
    work_dir: Path
    retry: RetryPolicy = field(default_factory=RetryPolicy)
    associations: Associations = DEFAULT_ASSOCIATIONS
    max_associations: int = MAX_ASSOCIATIONS
    verify: bool = False
    """Ask the receiver afterwards (C-FIND) for every instance stored."""
    commit: CommitSettings | None = None
    """Ask the receiver afterwards for Storage Commitment (``storage_commitment``)."""
    skip_existing: bool = False
    """Ask the receiver first, and send only what it lacks."""
    stow: StowSettings | None = None
    """Send by DICOMweb STOW-RS (config ``transport: stow-rs``) instead."""
    debug: bool = False
    download_concurrency: int = DOWNLOAD_CONCURRENCY
    """Files downloaded at once."""


@dataclass(frozen=True, slots=True)
class GearConfig:
    """A job's ``config.json``: its three objects, as Flywheel wrote them."""

    options: Mapping[str, Any] = field(repr=False)
    """The ``config`` object (``tls_key_password`` is a secret: not in the repr)."""
    inputs: Mapping[str, Any] = field(repr=False)
    """The ``inputs`` object (an api-key input is a secret: not in the repr)."""
    destination: Mapping[str, Any]

    @property
    def has_api_key(self) -> bool:
        """Whether an input gives an API key: then GearContext makes a client."""
        return any(
            isinstance(entry, Mapping)
            and entry.get("base") == "api-key"
            and bool(entry.get("key"))
            for entry in self.inputs.values()
        )


def read_config(path: Path) -> GearConfig:
    """Read a job's ``config.json``, as fw-gear's GearContext does.

    Raises:
        UsageError: It cannot be read, is not JSON, or holds no JSON object.
    """
    try:
        document = json.loads(path.read_bytes())
    except OSError as exc:
        raise UsageError(f"cannot read {path}: {exc.strerror}") from None
    except ValueError as exc:
        raise UsageError(f"cannot parse {path} as JSON: {exc}") from None
    if not isinstance(document, dict):
        raise UsageError(f"{path} holds no JSON object")
    parts = {
        key: document.get(key) or {} for key in ("config", "inputs", "destination")
    }
    for key, part in parts.items():
        if not isinstance(part, dict):
            raise UsageError(f"{path}: {key} is not a JSON object")
    return GearConfig(*parts.values())


def parse_config(
    config: Mapping[str, Any],
    inputs: Mapping[str, Any],
    destination: Mapping[str, Any],
    *,
    output_dir: Path,
    work_dir: Path,
) -> GearSettings:
    """Validate the gear's configuration.

    Args:
        config: The ``config`` object of config.json (the options).
        inputs: Its ``inputs`` object.
        destination: Its ``destination`` object (``type`` and ``id``).
        output_dir: The gear's output folder.
        work_dir: The gear's work folder.

    Returns:
        The settings.

    Raises:
        UsageError: A value is missing or invalid; the message names the key.
    """
    for key in sorted(set(config) - KNOWN_KEYS):
        log.warning("config key %r is not one of this gear's and is ignored", key)
    options = Options(config)
    transport = options.text("transport", "dimse").lower()
    if transport not in _TRANSPORTS:
        raise UsageError(
            f"config transport must be dimse or stow-rs, got {transport!r}"
        )
    peer = None
    if transport == "dimse":
        peer = Peer.parse(
            options.text("destination"),
            options.value("port", PORT),
            options.text("called_ae"),
            labels=_LABELS,
        )
    association = AssociationSettings.parse(
        options.text("calling_ae", GEAR_CALLING_AE, blank_is_default=False),
        options.given(_TIMEOUTS),
        tls=_tls(options, inputs) if transport == "dimse" else None,
        labels=_LABELS,
    )
    group = options.group("group", f"0x{DEFAULT_GROUP:04X}")
    creator = options.text("identifier", DEFAULT_CREATOR)
    value = options.text("tag_value", DEFAULT_VALUE)
    try:
        tag = ProvenanceTag(parse_group(group), creator, value)
    except UsageError as exc:
        raise UsageError(f"config: {exc}") from None
    associations = association_count(
        options.value("associations", DEFAULT_ASSOCIATIONS), "config associations"
    )
    parallel = associations if isinstance(associations, int) else DEFAULT_ASSOCIATIONS
    return GearSettings(
        peer=peer,
        association=association,
        tag=tag,
        report=options.boolean("report", default=True),
        download_retry_seconds=options.integer(
            "file_download_retry_time", DOWNLOAD_RETRY_SECONDS
        ),
        download_concurrency=options.integer(
            "download_concurrency", DOWNLOAD_CONCURRENCY
        ),
        destination=ContainerRef.of(destination),
        file=_the_file_input(inputs),
        output_dir=output_dir,
        work_dir=work_dir,
        retry=RetryPolicy(budget=options.seconds("retry_time", RETRY_BUDGET)),
        associations=associations,
        max_associations=options.integer("max_associations", MAX_ASSOCIATIONS),
        verify=options.boolean("verify", default=False),
        commit=CommitSettings.parse(
            options.value("commit_port", COMMIT_LISTEN_PORT),
            options.value("commit_timeout", COMMIT_TIMEOUT),
            {"port": "config commit_port", "timeout": "config commit_timeout"},
        )
        if options.boolean("storage_commitment", default=False)
        else None,
        skip_existing=options.boolean("skip_existing", default=False),
        stow=_stow(options, inputs, parallel, association.dimse_timeout)
        if transport == "stow-rs"
        else None,
        debug=options.boolean("debug", default=False),
    )


def _stow(
    options: Options, inputs: Mapping[str, Any], parallel: int, timeout: float
) -> StowSettings:
    """STOW-RS settings.

    From stow_url, the credential (the stow_credential input, or config
    stow_auth) and, for an https URL, the tls_* options and certificate inputs.
    """
    url = options.text("stow_url")
    credential_file = _file_input(inputs, "stow_credential")
    credential = options.optional_text("stow_auth")
    if credential_file is not None:
        try:
            credential = credential_file.read_text().strip()
        except (OSError, UnicodeDecodeError) as exc:
            raise UsageError(f"cannot read the stow_credential input: {exc}") from None
    try:
        return StowSettings(
            url,
            auth=parse_auth(credential) if credential else None,
            parallel=parallel,
            timeout=timeout,
            tls=_tls(options, inputs, always=True)
            if url.lower().startswith("https:")
            else None,
        )
    except UsageError as exc:
        raise UsageError(f"config: {exc}") from None


def _tls(
    options: Options, inputs: Mapping[str, Any], *, always: bool = False
) -> TlsSettings | None:
    """TLS from the tls_* options and the key, cert and add_cert_file inputs.

    Args:
        options: The config.
        inputs: The inputs.
        always: TLS whatever tls_enabled says (an https STOW-RS URL).

    Returns:
        The settings; None if TLS is off.
    """
    enabled = options.boolean("tls_enabled", default=False, words=_TLS_WORDS)
    if not (enabled or always):
        return None
    return TlsSettings.parse(
        options.text("tls_security_profile", DEFAULT_PROFILE.value),
        verify_peer=options.boolean("tls_require_peer_cert", default=True),
        check_hostname=options.boolean("tls_check_hostname", default=True),
        ca_file=_file_input(inputs, "add_cert_file"),
        cert=_file_input(inputs, "cert"),
        key=_file_input(inputs, "key"),
        key_password=options.optional_text("tls_key_password"),
        labels=_LABELS,
    )


def _file_input(inputs: Mapping[str, Any], name: str) -> Path | None:
    entry = inputs.get(name)
    if entry is None:
        return None
    if not isinstance(entry, Mapping):
        raise UsageError(f"input {name} is not a JSON object in config.json")
    path = _location(entry, name).get("path")
    if not isinstance(path, str) or not path:
        raise UsageError(f"input {name} has no location.path in config.json")
    if not Path(path).is_file():
        raise UsageError(f"input {name} not found at {path}")
    return Path(path)


def _location(entry: Mapping[str, Any], name: str) -> Mapping[str, Any]:
    """An input's ``location`` object (missing: empty).

    Raises:
        UsageError: It is not a JSON object.
    """
    location = entry.get("location", {})
    if not isinstance(location, Mapping):
        raise UsageError(f"input {name}: location is not a JSON object in config.json")
    return location


def _the_file_input(inputs: Mapping[str, Any]) -> FileInput | None:
    path = _file_input(inputs, "file")
    if path is None:
        return None
    entry = inputs["file"]
    name = _location(entry, "file").get("name") or path.name
    hierarchy = entry.get("hierarchy")
    parent = ContainerRef.of(hierarchy) if isinstance(hierarchy, Mapping) else None
    return FileInput(path=path, name=str(name), parent=parent)
