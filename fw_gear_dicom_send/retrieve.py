"""C-MOVE and C-GET: have a PACS send a patient, study or series somewhere.

:func:`move` asks the PACS to send to a destination AE it knows (a third party, or
our own listener); :func:`get` has it send back over the same association (C-GET),
for PACS that support it, so nothing has to be configured on the PACS for us. Both
report progress from the pending responses: remaining, completed, failed and
warning sub-operations (what pfdcm calls the retrieve status), and end with the
final counts. A daily :class:`TimeWindow` keeps moves out of working hours, as
pacsanini does.
"""

import datetime
import logging
import re
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from pydicom.dataset import Dataset
from pynetdicom import StoragePresentationContexts, evt
from pynetdicom.status import QR_GET_SERVICE_CLASS_STATUS, QR_MOVE_SERVICE_CLASS_STATUS

from .contexts import FALLBACK_SYNTAXES, Proposal
from .errors import DicomSendError, UsageError
from .peer import check_ae_title
from .query import Level, Model, Query, find
from .receiver import InstanceFiler
from .scu import Client, discard, release
from .storage import Layout

log = logging.getLogger(__name__)

__all__ = [
    "RetrieveError",
    "RetrieveResult",
    "SubOperations",
    "Target",
    "TimeWindow",
    "get",
    "move",
]

_PENDING = frozenset({0xFF00, 0xFF01})
_WARNING = 0xB000
_WINDOW = re.compile(r"^(\d{1,2}):(\d{2})-(\d{1,2}):(\d{2})$")
_DAY = 24 * 3600


class RetrieveError(DicomSendError):
    """The PACS refused the retrieve, or the association ended during it."""


@dataclass(frozen=True, slots=True)
class Target:
    """What to retrieve: a patient, a study or a series, by its ID or UID.

    Raises:
        UsageError: An image level, or an empty ID.
    """

    level: Level
    uid: str
    """PatientID, StudyInstanceUID or SeriesInstanceUID."""
    study_uid: str = ""
    """For a series: its study (looked up with a C-FIND when not given)."""

    def __post_init__(self) -> None:
        if self.level is Level.IMAGE:
            raise UsageError("retrieve a patient, a study or a series")
        if not self.uid.strip():
            raise UsageError("the ID or UID to retrieve is empty")

    @property
    def model(self) -> Model:
        """Patient root for a patient, study root otherwise."""
        return Model.PATIENT_ROOT if self.level is Level.PATIENT else Model.STUDY_ROOT

    def identifier(self) -> Dataset:
        """The C-MOVE / C-GET identifier."""
        ds = Dataset()
        ds.QueryRetrieveLevel = self.level.value
        if self.level is Level.PATIENT:
            ds.PatientID = self.uid
        elif self.level is Level.STUDY:
            ds.StudyInstanceUID = self.uid
        else:
            ds.StudyInstanceUID = self.study_uid
            ds.SeriesInstanceUID = self.uid
        return ds


@dataclass(frozen=True, slots=True)
class SubOperations:
    """Counts of a retrieve's sub-operations (C-STOREs from the PACS)."""

    remaining: int | None
    """None when the PACS does not say (it need not in the final response)."""
    completed: int
    failed: int
    warning: int

    def __str__(self) -> str:
        left = "" if self.remaining is None else f", {self.remaining} remaining"
        return (
            f"{self.completed} completed, {self.failed} failed, "
            f"{self.warning} warning{left}"
        )


@dataclass(frozen=True, slots=True)
class RetrieveResult:
    """How a retrieve ended."""

    status: int
    """The final DIMSE status."""
    counts: SubOperations
    received: int = 0
    """Instances our own listener or C-GET stored (0 for a move elsewhere)."""

    @property
    def complete(self) -> bool:
        """Success, and no sub-operation failed."""
        return self.status == 0x0000 and self.counts.failed == 0


ProgressCallback = Callable[[SubOperations], None]


def _count(status: Dataset, keyword: str) -> int | None:
    value = status.get(keyword)
    return None if value in (None, "") else int(value)


def _sub_operations(status: Dataset) -> SubOperations:
    return SubOperations(
        remaining=_count(status, "NumberOfRemainingSuboperations"),
        completed=_count(status, "NumberOfCompletedSuboperations") or 0,
        failed=_count(status, "NumberOfFailedSuboperations") or 0,
        warning=_count(status, "NumberOfWarningSuboperations") or 0,
    )


def describe_retrieve_status(code: int) -> str:
    """A C-MOVE / C-GET status as ``0xA801 (Refused: Move Destination unknown)``."""
    meaning = (
        QR_MOVE_SERVICE_CLASS_STATUS.get(code)
        or QR_GET_SERVICE_CLASS_STATUS.get(code)
        or ("", "unknown status")
    )[1]
    return f"0x{code:04X} ({meaning})"


def resolve(client: Client, target: Target) -> Target:
    """The target with its study UID, for a series given without one (C-FIND)."""
    if target.level is not Level.SERIES or target.study_uid:
        return target
    query = Query(Level.SERIES, keys=(("SeriesInstanceUID", target.uid),))
    for match in find(client, query):
        if match.get("StudyInstanceUID"):
            return Target(target.level, target.uid, match["StudyInstanceUID"])
    raise RetrieveError(f"the PACS has no series {target.uid}")


def _follow(
    responses: Iterator[tuple[Dataset, Dataset | None]],
    on_progress: ProgressCallback | None,
) -> tuple[int, SubOperations]:
    """Read a retrieve's responses to the end; its final status and counts."""
    counts = SubOperations(None, 0, 0, 0)
    for status, _ in responses:
        if "Status" not in status:
            raise RetrieveError("the association ended before the retrieve did")
        code = int(status.Status)
        counts = _sub_operations(status)
        if code in _PENDING:
            if on_progress is not None:
                on_progress(counts)
            continue
        return code, counts
    raise RetrieveError("the PACS sent no final response")


def _finish(code: int, counts: SubOperations, received: int = 0) -> RetrieveResult:
    if code not in (0x0000, _WARNING):
        raise RetrieveError(f"retrieve refused: {describe_retrieve_status(code)}")
    return RetrieveResult(code, counts, received)


def move(
    client: Client,
    target: Target,
    destination_ae: str,
    on_progress: ProgressCallback | None = None,
) -> RetrieveResult:
    """C-MOVE the target to ``destination_ae`` (an AE title the PACS knows).

    Raises:
        AssociationError: No association.
        RetrieveError: The PACS refused, failed, or stopped answering.
    """
    check_ae_title(destination_ae, "move destination AE title")
    target = resolve(client, target)
    model = target.model.move_uid()
    assoc = client.associate([Proposal(model, FALLBACK_SYNTAXES)])
    finished = False
    try:
        responses = assoc.send_c_move(target.identifier(), destination_ae, model)
        code, counts = _follow(responses, on_progress)
        finished = True
    finally:
        release(assoc) if finished else discard(assoc)
    return _finish(code, counts)


def get(
    client: Client,
    target: Target,
    out_dir: Path,
    layout: Layout = Layout.PATIENT,
    on_progress: ProgressCallback | None = None,
) -> RetrieveResult:
    """C-GET the target into ``out_dir``, filed by ``layout``.

    Proposes the C-GET model and pynetdicom's storage classes with our SCP role
    (120 of them, within the 128 contexts an association may have).

    Raises:
        AssociationError: No association.
        RetrieveError: The PACS refused, failed, or stopped answering.
    """
    target = resolve(client, target)
    model = target.model.get_uid()
    storage = [
        Proposal(str(c.abstract_syntax), tuple(str(t) for t in c.transfer_syntax))
        for c in StoragePresentationContexts
    ]
    filer = InstanceFiler(out_dir, layout)
    assoc = client.associate(
        [Proposal(model, FALLBACK_SYNTAXES), *storage],
        roles=[p.abstract_syntax for p in storage],
        handlers=[(evt.EVT_C_STORE, filer)],
    )
    finished = False
    try:
        responses = assoc.send_c_get(target.identifier(), model)
        code, counts = _follow(responses, on_progress)
        finished = True
    finally:
        release(assoc) if finished else discard(assoc)
    return _finish(code, counts, len(filer.received))


@dataclass(frozen=True, slots=True)
class TimeWindow:
    """A daily window of local time, e.g. 20:00-06:00 (it may span midnight)."""

    start: datetime.time
    end: datetime.time

    @classmethod
    def parse(cls, text: str) -> "TimeWindow":
        """``HH:MM-HH:MM``.

        Raises:
            UsageError: Not of that form, or not a time of day.
        """
        match = _WINDOW.match(text.strip())
        try:
            if match is None:
                raise ValueError(text)
            h1, m1, h2, m2 = (int(g) for g in match.groups())
            window = cls(datetime.time(h1, m1), datetime.time(h2, m2))
        except ValueError:
            raise UsageError(f"--window takes HH:MM-HH:MM, got {text!r}") from None
        if window.start == window.end:
            raise UsageError("--window must not start and end at the same time")
        return window

    def wait(self, now: datetime.datetime) -> float:
        """Seconds from ``now`` until the window is open (0 inside it)."""
        seconds = now.hour * 3600 + now.minute * 60 + now.second
        start = self.start.hour * 3600 + self.start.minute * 60
        end = self.end.hour * 3600 + self.end.minute * 60
        inside = (
            start <= seconds < end if start < end else seconds >= start or seconds < end
        )
        return 0.0 if inside else float((start - seconds) % _DAY)

    def wait_until_open(self, sleep: Callable[[float], None] = time.sleep) -> None:
        """Block until the window is open."""
        wait = self.wait(datetime.datetime.now())
        if wait > 0:
            opens = datetime.datetime.now() + datetime.timedelta(seconds=wait)
            log.info(
                "outside the window %s-%s: waiting until %s",
                self.start.strftime("%H:%M"),
                self.end.strftime("%H:%M"),
                opens.strftime("%Y-%m-%d %H:%M"),
            )
            sleep(wait)
