"""What a STOW-RS response says of each instance (PS3.18 10.5.3).

The body (``application/dicom+json``) lists the stored instances in
ReferencedSOPSequence (with WarningReason: a warning) and the refused ones in
FailedSOPSequence, with FailureReason. HTTP 200 means all were stored; 202 some;
409 none.
"""

import json
import time
from collections.abc import Sequence
from email.utils import parsedate_to_datetime

from ..dicom.status_codes import Service, describe
from ..status import InstanceStatus
from .outcome import Outcome, outcome_of_status
from .retry import Retry

ALL_STORED = 200
SOME_STORED = 202
NONE_STORED = 409
_REFERENCED_SOP_SEQUENCE = "00081199"
_FAILED_SOP_SEQUENCE = "00081198"
_REFERENCED_SOP_INSTANCE_UID = "00081155"
_FAILURE_REASON = "00081197"
_WARNING_REASON = "00081196"
_MAX_RETRY_AFTER = 300.0
_TRANSIENT_REASONS = frozenset({0x0110})


def _sequence(body: dict[str, object], tag: str) -> list[dict[str, object]]:
    element = body.get(tag)
    if not isinstance(element, dict):
        return []
    value = element.get("Value")
    return (
        [item for item in value if isinstance(item, dict)]
        if isinstance(value, list)
        else []
    )


def _first(item: dict[str, object], tag: str) -> object:
    element = item.get(tag)
    if isinstance(element, dict) and isinstance(element.get("Value"), list):
        values = element["Value"]
        return values[0] if values else None
    return None


def parse_response(status: int, body: bytes, uids: Sequence[str]) -> dict[str, Outcome]:
    """The outcome of each instance of a batch from a STOW-RS response.

    Args:
        status: The HTTP status (200, 202 or 409).
        body: The response body (``application/dicom+json``).
        uids: The SOP Instance UIDs of the batch.
    """
    try:
        parsed = json.loads(body) if body.strip() else {}
    except ValueError:
        parsed = {}
    if isinstance(parsed, list):  # some servers wrap the data set in an array
        parsed = parsed[0] if parsed and isinstance(parsed[0], dict) else {}
    if not isinstance(parsed, dict):
        parsed = {}
    outcomes: dict[str, Outcome] = {}
    for item in _sequence(parsed, _REFERENCED_SOP_SEQUENCE):
        uid = _first(item, _REFERENCED_SOP_INSTANCE_UID)
        warning = _first(item, _WARNING_REASON)
        if isinstance(warning, int) and warning:
            outcomes[str(uid)] = Outcome(
                InstanceStatus.WARNING,
                warning,
                f"warning {describe(warning, Service.STOW)}",
            )
        else:
            outcomes[str(uid)] = Outcome(InstanceStatus.SENT, 0x0000)
    for item in _sequence(parsed, _FAILED_SOP_SEQUENCE):
        uid = _first(item, _REFERENCED_SOP_INSTANCE_UID)
        reason = _first(item, _FAILURE_REASON)
        code = reason if isinstance(reason, int) else None
        if code is None:
            outcomes[str(uid)] = Outcome(
                InstanceStatus.FAILED, None, "refused (no FailureReason given)"
            )
        else:
            dimse = outcome_of_status(code)
            retry = Retry.TRANSIENT if code in _TRANSIENT_REASONS else dimse.retry
            outcomes[str(uid)] = Outcome(
                InstanceStatus.FAILED,
                code,
                f"refused: {describe(code, Service.STOW)}",
                retry=retry,
            )
    result = {}
    for uid in uids:
        if uid in outcomes:
            result[uid] = outcomes[uid]
        elif status == ALL_STORED:  # 200: every instance was stored
            result[uid] = Outcome(InstanceStatus.SENT, 0x0000)
        else:
            result[uid] = Outcome(
                InstanceStatus.FAILED,
                None,
                f"not in the STOW-RS response (HTTP {status})",
            )
    return result


def retry_after(headers: dict[str, str]) -> float | None:
    """The seconds a Retry-After header asks to wait (at most 300), if it does."""
    value = headers.get("retry-after")
    if not value:
        return None
    try:
        seconds = float(value)
    except ValueError:
        try:
            seconds = parsedate_to_datetime(value).timestamp() - time.time()
        except (TypeError, ValueError):
            return None
    return min(max(seconds, 0.0), _MAX_RETRY_AFTER)
