"""What to send: every input listed and probed, a row for each, an item to send.

A file that is not DICOM is skipped, one that cannot be read or tagged fails, a
second file with a SOP Instance UID seen before is skipped as a duplicate (or fails,
if its data set differs), and an instance an earlier run stored is reported, not
sent again. Each remaining instance becomes a send item
(:class:`~fw_gear_dicom_send.transport.outcome.SendItem`), whose row the engine
completes once the send has ended.
"""

import contextlib
import logging
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING

from .. import stopping
from ..dicom.probe import DicomInfo, NotSendable, dataset_digest, probe
from ..dicom.provenance import TaggingError, splice
from ..errors import AssociationError, MalformedDicomError
from ..status import InstanceStatus
from ..transport.outcome import Outcome, SendItem
from .inputs import InputFile, InputProblem, collect
from .report import ON_RECEIVER, RESUMED, Row
from .request import SendRequest

if TYPE_CHECKING:
    from ..transport.association import Client

log = logging.getLogger(__name__)

__all__ = ["prepare", "skip_existing"]


def prepare(
    paths: list[Path],
    work: Path,
    request: SendRequest,
    rows: list[Row] | None = None,
    items: list[SendItem] | None = None,
) -> tuple[list[Row], list[SendItem]]:
    """List and probe every input: a row for each, a send item for each instance.

    The row of an instance to send is completed once the send has ended (its
    status and reason then). A stop asked for ends the listing: the rows are
    those of the files listed (appended to ``rows`` and ``items`` as they come,
    if given).
    """
    rows = [] if rows is None else rows
    items = [] if items is None else items
    planner = Planner(request)
    for entry in collect(paths, work, request.limits, request.labels):
        if stopping.requested():
            break
        item = planner.add(entry, rows)
        if item is not None:
            items.append(item)
    return rows, items


class Planner:
    """Probes listed files one by one: a row for each, an item for each to send.

    It remembers the SOP Instance UIDs seen, to tell duplicates.
    """

    def __init__(self, request: SendRequest) -> None:
        self._request = request
        self._seen: dict[str, _First] = {}
        self._by_path: dict[str, _First] = {}

    def add(self, entry: InputFile | InputProblem, rows: list[Row]) -> SendItem | None:
        """Append the entry's row to ``rows``; the item to send, if there is one."""
        if isinstance(entry, InputProblem):
            rows.append(_problem(entry, entry.status, entry.reason))
            return None
        request = self._request
        try:
            info = probe(entry.path, request.tag.group)
        except NotSendable as exc:
            rows.append(_problem(entry, InstanceStatus.SKIPPED, exc.reason))
            return None
        except MalformedDicomError as exc:
            rows.append(_problem(entry, InstanceStatus.FAILED, str(exc)))
            return None
        except OSError as exc:
            rows.append(_problem(entry, InstanceStatus.FAILED, f"cannot read: {exc}"))
            return None
        row = Row(
            entry.name,
            InstanceStatus.FAILED,
            "",
            sop_instance_uid=info.sop_instance_uid,
            sop_class_uid=info.sop_class_uid,
            transfer_syntax=info.transfer_syntax,
            bytes=info.size,
            source=entry.source,
            study_instance_uid=info.study_instance_uid,
            series_instance_uid=info.series_instance_uid,
        )
        first = self._seen.get(info.sop_instance_uid)
        if first is not None:
            rows.append(_duplicate(row, first, str(entry.path), info))
            return None
        first = _First(entry.name, str(entry.path), info)
        self._seen[info.sop_instance_uid] = first
        self._by_path[first.path] = first
        if info.sop_instance_uid in request.already_stored:
            rows.append(
                replace(
                    row,
                    status=InstanceStatus.SENT,
                    reason=RESUMED,
                )
            )
            return None
        try:
            inserts = splice(info, request.tag) if info.streamable else None
        except TaggingError as exc:
            rows.append(replace(row, reason=str(exc)))
            return None
        item = SendItem(len(rows), str(entry.path), info, inserts)
        rows.append(row)
        return item

    def forget(self, path: Path) -> None:
        """Before ``path`` is deleted: keep what telling a duplicate of it needs.

        The digest of its data set is made now if it was the first of its SOP
        Instance UID (a later duplicate is compared with it).
        """
        first = self._by_path.pop(str(path), None)
        if first is not None:
            with contextlib.suppress(OSError):
                first.digest()


class _First:
    """The first file seen with a SOP Instance UID; its digest made when needed."""

    __slots__ = ("_digest", "info", "name", "path")

    def __init__(self, name: str, path: str, info: DicomInfo) -> None:
        self.name = name
        self.path = path
        self.info = info
        self._digest: bytes | None = None

    def digest(self) -> bytes:
        """The digest of its data set (OSError: it cannot be read)."""
        if self._digest is None:
            self._digest = dataset_digest(self.path, self.info)
        return self._digest


def _duplicate(row: Row, first: _First, path: str, info: DicomInfo) -> Row:
    """The row of a file whose SOP Instance UID an earlier file has.

    The same data set is skipped; another data set under the same UID fails, as
    the receiver would keep only one of the two.
    """
    try:
        same = info.dataset_length == first.info.dataset_length and (
            dataset_digest(path, info) == first.digest()
        )
    except OSError as exc:
        return replace(row, reason=f"cannot read: {exc}")
    if same:
        return replace(
            row,
            status=InstanceStatus.SKIPPED,
            reason=f"duplicate SOP Instance UID of {first.name}",
        )
    conflict = replace(
        row,
        reason=f"duplicate SOP Instance UID of {first.name} with a different data "
        "set: not sent (the receiver would keep only one of them)",
    )
    log.warning("%s: %s", conflict.file, conflict.reason)
    return conflict


def skip_existing(
    client: "Client", rows: list[Row], items: list[SendItem]
) -> dict[int, Outcome]:
    """Ask the receiver which items it holds already: their outcomes, by index.

    If the receiver cannot be asked, none (everything is sent, and the log says
    why).
    """
    from ..pacs.query import QueryError  # noqa: PLC0415 - pynetdicom, when asked
    from .verify import present  # noqa: PLC0415 - pynetdicom, for skip-existing only

    try:
        held = present(client, (rows[item.index] for item in items))
    except (AssociationError, QueryError) as exc:
        log.warning("cannot ask the receiver what it holds (%s): sending all", exc)
        return {}
    log.info("%d of %d instances are already on the receiver", len(held), len(items))
    there = Outcome(
        InstanceStatus.SENT,
        reason=ON_RECEIVER,
    )
    return {item.index: there for item in items if item.info.sop_instance_uid in held}


def _problem(
    entry: InputFile | InputProblem, status: InstanceStatus, reason: str
) -> Row:
    size = entry.size if isinstance(entry, InputProblem) else 0
    if isinstance(entry, InputFile):  # the report's bytes: the file's size
        with contextlib.suppress(OSError):
            size = entry.path.stat().st_size
    return Row(entry.name, status, reason, bytes=size, source=entry.source)
