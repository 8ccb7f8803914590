"""C-MOVE and C-GET: have a PACS send a patient, study or series somewhere.

:func:`move` asks the PACS to send to a destination AE it knows (a third party, or
our own listener); :func:`get` has it send back over the same association (C-GET),
for PACS that support it, so nothing has to be configured on the PACS for us. Both
report progress from the pending responses: remaining, completed, failed and
warning sub-operations (what pfdcm calls the retrieve status), and end with the
final counts.
"""

import logging
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from pydicom.dataset import Dataset
from pydicom.uid import (
    JPEG2000,
    JPEG2000Lossless,
    JPEGBaseline8Bit,
    JPEGExtended12Bit,
    JPEGLossless,
    JPEGLosslessSV1,
    JPEGLSLossless,
    JPEGLSNearLossless,
    RLELossless,
)
from pynetdicom import StoragePresentationContexts, evt

from ..dicom.status_codes import Service, describe
from ..errors import AssociationError, DicomSendError, UsageError
from ..transport.association import Client, discard, release
from ..transport.contexts import FALLBACK_SYNTAXES, MAX_CONTEXTS, Proposal
from ..transport.fastpath import park_reactor
from ..transport.peer import check_ae_title
from .filing import Layout
from .query import Level, Model, Query, QueryError, find
from .receiver import InstanceFiler

log = logging.getLogger(__name__)

__all__ = [
    "RetrieveError",
    "RetrieveResult",
    "SubOperations",
    "Target",
    "get",
    "move",
]

_PENDING = frozenset({0xFF00, 0xFF01})
_WARNING = 0xB000
"""Presentation contexts an association may propose."""
COMPRESSED_SYNTAXES = (
    JPEG2000Lossless,
    JPEG2000,
    JPEGLSLossless,
    JPEGLSNearLossless,
    JPEGLosslessSV1,
    JPEGLossless,
    JPEGBaseline8Bit,
    JPEGExtended12Bit,
    RLELossless,
)
"""What a C-GET takes besides the uncompressed syntaxes: what a PACS holds."""


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
    ended: Callable[[], str],
) -> tuple[int, SubOperations]:
    """Read a retrieve's responses to the end; its final status and counts.

    Args:
        responses: The retrieve's responses.
        on_progress: Called with the counts of each pending response.
        ended: What the peer did, if the association ends before the last
            response (:meth:`.Client.ended`).
    """
    last = SubOperations(None, 0, 0, 0)
    for status, _ in responses:
        if "Status" not in status:
            raise RetrieveError(ended())
        code = int(status.Status)
        counts = _sub_operations(status)
        if code in _PENDING:
            last = counts
            if on_progress is not None:
                on_progress(counts)
            continue
        return code, _final_counts(code, counts, last)
    raise RetrieveError("the PACS sent no final response")


def _final_counts(
    code: int, final: SubOperations, last: SubOperations
) -> SubOperations:
    """The counts of a retrieve that ended.

    The final response's, or the last pending response's if the final one says
    less (a PACS that stops at a failed sub-operation may answer zeros); then
    the sub-operations still remaining when it stopped count as failed.
    """
    done = final.completed + final.failed + final.warning
    if (
        code in (0x0000, _WARNING)
        or done >= last.completed + last.failed + last.warning
    ):
        return final
    return SubOperations(
        None, last.completed, last.failed + (last.remaining or 0), last.warning
    )


def _finish(
    code: int, counts: SubOperations, received: int, verb: str
) -> RetrieveResult:
    """The result; a failure that retrieved nothing is an error.

    A failure after some sub-operations completed is a result (partial): its
    status says how it ended.
    """
    if code not in (0x0000, _WARNING) and not (counts.completed or counts.warning):
        raise RetrieveError(f"{verb} refused: {describe(code, Service.RETRIEVE)}")
    return RetrieveResult(code, counts, received)


def move(
    client: Client,
    target: Target,
    destination_ae: str,
    on_progress: ProgressCallback | None = None,
    *,
    verb: str = "move",
) -> RetrieveResult:
    """C-MOVE the target to ``destination_ae`` (an AE title the PACS knows).

    Args:
        client: Who asks.
        target: What to move.
        destination_ae: Where to.
        on_progress: Called with the counts of each pending response.
        verb: What errors call it (the command that asked: ``move``,
            ``retrieve``).

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
        park_reactor(assoc, client.settings.acse_timeout)
        responses = assoc.send_c_move(target.identifier(), destination_ae, model)
        code, counts = _follow(
            responses, on_progress, lambda: client.ended(assoc, "C-MOVE")
        )
        finished = True
    finally:
        release(assoc) if finished else discard(assoc)
    return _finish(code, counts, 0, verb)


def get(
    client: Client,
    target: Target,
    out_dir: Path,
    layout: Layout = Layout.PATIENT,
    on_progress: ProgressCallback | None = None,
    *,
    verb: str = "retrieve",
) -> RetrieveResult:
    """C-GET the target into ``out_dir``, filed by ``layout``.

    Proposes the C-GET model and storage classes with our SCP role, in the
    compressed syntaxes as well as the uncompressed ones, so that the PACS can
    send each instance as it holds it (see :func:`storage_proposals`).

    Raises:
        AssociationError: No association.
        RetrieveError: The PACS refused, failed, or stopped answering.
    """
    target = resolve(client, target)
    model = target.model.get_uid()
    storage = storage_proposals(sop_classes(client, target))
    filer = InstanceFiler(out_dir, layout)
    assoc = client.associate(
        [Proposal(model, FALLBACK_SYNTAXES), *storage],
        roles=list(dict.fromkeys(p.abstract_syntax for p in storage)),
        handlers=[(evt.EVT_C_STORE, filer)],
    )
    finished = False
    try:
        park_reactor(assoc, client.settings.acse_timeout)
        responses = assoc.send_c_get(target.identifier(), model)
        code, counts = _follow(
            responses, on_progress, lambda: client.ended(assoc, "C-GET")
        )
        finished = True
    finally:
        release(assoc) if finished else discard(assoc)
    return _finish(code, counts, len(filer.received), verb)


def sop_classes(client: Client, target: Target) -> list[str]:
    """The SOP classes of the target's instances (a C-FIND at image level).

    Returns:
        Them, in order of first match; none if the PACS does not say.
    """
    keys = [("SOPClassUID", "")]
    if target.level is Level.PATIENT:
        keys.append(("PatientID", target.uid))
    else:
        keys.append(("StudyInstanceUID", target.identifier().StudyInstanceUID))
    if target.level is Level.SERIES:
        keys.append(("SeriesInstanceUID", target.uid))
    query = Query(Level.IMAGE, keys=tuple(keys), model=target.model)
    try:
        found = [match.get("SOPClassUID", "") for match in find(client, query)]
    except (AssociationError, QueryError) as exc:
        log.debug("cannot ask for the SOP classes (%s)", exc)
        return []
    return [uid for uid in dict.fromkeys(found) if uid]


def storage_proposals(classes: list[str]) -> list[Proposal]:
    """The storage contexts of a C-GET: for each class, every syntax a PACS holds.

    With the target's SOP classes known and few enough, each class gets a
    context of the uncompressed syntaxes and one of each compressed syntax, so
    the PACS finds one for each instance as it is stored. Otherwise every
    storage class of pynetdicom (120) gets one context of all of them, within
    the 128 an association may propose, and the PACS picks one per class.
    """
    per_class = 1 + len(COMPRESSED_SYNTAXES)
    if classes and len(classes) * per_class < MAX_CONTEXTS:
        return [
            proposal
            for uid in classes
            for proposal in (
                Proposal(uid, FALLBACK_SYNTAXES),
                *(Proposal(uid, (str(syntax),)) for syntax in COMPRESSED_SYNTAXES),
            )
        ]
    return [
        Proposal(
            str(c.abstract_syntax),
            (*(str(t) for t in c.transfer_syntax), *map(str, COMPRESSED_SYNTAXES)),
        )
        for c in StoragePresentationContexts
    ]
