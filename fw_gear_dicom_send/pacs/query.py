"""C-FIND: ask a PACS what it holds, at any level, results streamed as they arrive.

A :class:`Query` names the level, the information model, matching keys and return
keys. A date range is split into windows of ``window_days`` (15 by default, as
pacsanini does), one C-FIND each over the same association, so that a PACS that
caps the number of matches per query still answers for a long range. Matches are
yielded one by one as the PACS sends them, never collected first.
"""

import datetime
import logging
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

from pydicom.datadict import dictionary_VR, tag_for_keyword
from pydicom.dataset import Dataset
from pydicom.multival import MultiValue
from pynetdicom.association import Association

from ..dicom.status_codes import Service, describe
from ..errors import DicomSendError, UsageError
from ..settings import FIND_WINDOW_DAYS, whole
from ..transport.association import Client, discard, release
from ..transport.contexts import FALLBACK_SYNTAXES, Proposal
from ..transport.fastpath import park_reactor
from .levels import Level, Model

log = logging.getLogger(__name__)

__all__ = [
    "DEFAULT_KEYS",
    "Finder",
    "Level",
    "Model",
    "Query",
    "QueryError",
    "date_windows",
    "find",
    "parse_keys",
]


DEFAULT_KEYS: dict[Level, tuple[str, ...]] = {
    Level.PATIENT: (
        "PatientID",
        "PatientName",
        "PatientBirthDate",
        "PatientSex",
        "NumberOfPatientRelatedStudies",
    ),
    Level.STUDY: (
        "PatientID",
        "PatientName",
        "StudyInstanceUID",
        "StudyDate",
        "AccessionNumber",
        "StudyDescription",
        "ModalitiesInStudy",
        "NumberOfStudyRelatedSeries",
        "NumberOfStudyRelatedInstances",
    ),
    Level.SERIES: (
        "StudyInstanceUID",
        "SeriesInstanceUID",
        "Modality",
        "SeriesNumber",
        "SeriesDescription",
        "NumberOfSeriesRelatedInstances",
    ),
    Level.IMAGE: (
        "StudyInstanceUID",
        "SeriesInstanceUID",
        "SOPInstanceUID",
        "SOPClassUID",
        "InstanceNumber",
    ),
}
"""The return keys asked for at each level when no others are named."""

_DATE_KEY = "StudyDate"
_PENDING = frozenset({0xFF00, 0xFF01})


class QueryError(DicomSendError):
    """The PACS refused or failed a query."""

    def __init__(self, message: str, *, answered: bool) -> None:
        """Say why, and whether the PACS ended the query with a final status.

        After a final status the association can carry another query.
        """
        super().__init__(message)
        self.answered = answered


@dataclass(frozen=True, slots=True)
class Query:
    """What to ask for.

    Raises:
        UsageError: A key is not a DICOM keyword, a date range runs backwards, the
            level does not fit the model, or ``window_days`` is not positive.
    """

    level: Level
    keys: tuple[tuple[str, str], ...] = ()
    """Matching keys (keyword, value) and return keys (keyword, "")."""
    model: Model = Model.STUDY_ROOT
    date_from: datetime.date | None = None
    """First study date to match (StudyDate), inclusive."""
    date_to: datetime.date | None = None
    """Last study date to match, inclusive."""
    modality: str | None = None
    """Matches ModalitiesInStudy at study level, Modality below."""
    window_days: int = FIND_WINDOW_DAYS
    """A date range is asked in windows of this many days."""

    def __post_init__(self) -> None:
        for keyword, _ in self.keys:
            if tag_for_keyword(keyword) is None:
                raise UsageError(f"{keyword!r} is not a DICOM keyword")
        if self.model is Model.STUDY_ROOT and self.level is Level.PATIENT:
            raise UsageError("the study root model has no patient level")
        if self.date_from and self.date_to and self.date_from > self.date_to:
            raise UsageError("--date-from is after --date-to")
        whole("window_days", self.window_days, "the date window (days)")
        if self.level is Level.PATIENT and (self.date_from or self.date_to):
            raise UsageError("a date range needs a study, series or image level")

    @property
    def return_keys(self) -> tuple[str, ...]:
        """Every keyword a match is asked to carry, in order, without duplicates."""
        named = [keyword for keyword, _ in self.keys]
        extra = [self._modality_key] if self.modality else []
        dated = [_DATE_KEY] if self.date_from or self.date_to else []
        return tuple(dict.fromkeys([*DEFAULT_KEYS[self.level], *named, *extra, *dated]))

    @property
    def _modality_key(self) -> str:
        return "ModalitiesInStudy" if self.level is Level.STUDY else "Modality"

    def identifiers(self) -> Iterator[Dataset]:
        """The C-FIND identifiers to send: one per date window (one if no range)."""
        for dates in date_windows(self.date_from, self.date_to, self.window_days):
            ds = Dataset()
            ds.QueryRetrieveLevel = self.level.value
            for keyword in self.return_keys:
                setattr(ds, keyword, _empty(keyword))
            for keyword, value in self.keys:
                if value:
                    setattr(ds, keyword, value)
            if self.modality:
                setattr(ds, self._modality_key, self.modality)
            if dates:
                ds.StudyDate = dates
            yield ds


def _empty(keyword: str) -> object:
    """The empty value of a return key (an empty sequence for SQ)."""
    return [] if dictionary_VR(keyword) == "SQ" else ""


def date_windows(
    first: datetime.date | None, last: datetime.date | None, days: int
) -> Iterator[str]:
    """DICOM date ranges covering ``first``..``last`` in windows of ``days``.

    An open end gives one open range (``20240101-``); no dates gives ``""``.
    """
    if first is None or last is None:
        if first is None and last is None:
            yield ""
        else:
            yield f"{_dicom_date(first)}-{_dicom_date(last)}"
        return
    start = first
    while start <= last:
        end = min(start + datetime.timedelta(days=days - 1), last)
        yield f"{_dicom_date(start)}-{_dicom_date(end)}"
        start = end + datetime.timedelta(days=1)


def _dicom_date(day: datetime.date | None) -> str:
    return "" if day is None else day.strftime("%Y%m%d")


def parse_keys(texts: Sequence[str]) -> tuple[tuple[str, str], ...]:
    """``Keyword=value`` (matching key) or ``Keyword`` (return key) options.

    Raises:
        UsageError: Not of that form, or not a DICOM keyword.
    """
    keys = []
    for text in texts:
        keyword, _, value = text.partition("=")
        keyword = keyword.strip()
        if not keyword:
            raise UsageError(f"-k takes Keyword=value or Keyword, got {text!r}")
        if tag_for_keyword(keyword) is None:
            raise UsageError(f"{keyword!r} is not a DICOM keyword")
        keys.append((keyword, value))
    return tuple(keys)


def text_of(value: object) -> str:
    """An element value as text: multiple values joined by a backslash."""
    if value is None:
        return ""
    if isinstance(value, MultiValue | list | tuple):
        return "\\".join(text_of(v) for v in value)
    if isinstance(value, bytes):
        return value.decode("ascii", "replace")
    return str(value)


class Finder:
    """One association for any number of queries of one information model.

    Use in a ``with`` block; the association is released at the end, or aborted
    if a query was left half-answered.

    Raises:
        AssociationError: On entering: no association.
    """

    def __init__(self, client: Client, model: Model = Model.STUDY_ROOT) -> None:
        self._client = client
        self._model = model.find_uid()
        self._assoc: Association | None = None
        self._clean = True
        self._answered = False
        """Whether a C-FIND was answered on the association (the PACS knows us)."""

    def __enter__(self) -> "Finder":
        self._assoc = self._client.associate([Proposal(self._model, FALLBACK_SYNTAXES)])
        return self

    def __exit__(self, *exc: object) -> None:
        if self._assoc is not None:
            # A release would wait behind the responses still pending.
            release(self._assoc) if self._clean else discard(self._assoc)
            self._assoc = None

    def ask(self, query: Query) -> Iterator[dict[str, str]]:
        """Yield each match of the query as keyword -> text, as it arrives.

        A PACS that ends the association at the start of a later C-FIND (after
        answering earlier ones on it: it knows us) is asked that C-FIND once more,
        on a new association; a C-FIND it ended after a match is not asked again
        (its matches would come twice).

        Raises:
            QueryError: The PACS answered a failure status or stopped answering.
        """
        if self._assoc is None:
            raise RuntimeError("Finder.ask outside its with block")
        for identifier in query.identifiers():
            yield from self._ask(identifier, query.return_keys)

    def _ask(
        self, identifier: Dataset, keys: Sequence[str]
    ) -> Iterator[dict[str, str]]:
        """One C-FIND's matches, asked again once as :meth:`ask` says."""
        for again in (False, True):
            assert self._assoc is not None
            self._clean, matched = False, False
            try:
                for match in _matches(
                    self._client, self._assoc, identifier, self._model, keys
                ):
                    matched = True
                    yield match
            except QueryError as exc:
                self._clean = exc.answered
                if again or matched or exc.answered or not self._answered:
                    raise
                log.warning("%s; asking again on a new association", exc)
                discard(self._assoc)
                self._assoc = None
                self._assoc = self._client.associate(
                    [Proposal(self._model, FALLBACK_SYNTAXES)]
                )
                self._answered = False
                continue
            self._clean = self._answered = True
            return


def find(client: Client, query: Query) -> Iterator[dict[str, str]]:
    """Send the query over an association of its own; yield each match.

    Raises:
        AssociationError: No association.
        QueryError: The PACS answered a failure status or stopped answering.
    """
    with Finder(client, query.model) as finder:
        yield from finder.ask(query)


def _matches(
    client: Client,
    assoc: Association,
    identifier: Dataset,
    model: str,
    keys: Sequence[str],
) -> Iterator[dict[str, str]]:
    """One C-FIND's matches.

    Raises:
        QueryError: A failure status, or the association ended first (saying
            what the peer did: :meth:`.Client.ended`).
    """
    park_reactor(assoc, client.settings.acse_timeout)
    responses = assoc.send_c_find(identifier, model)
    for status, match in responses:
        code = int(status.Status) if "Status" in status else None
        if code is None:
            raise QueryError(client.ended(assoc, "C-FIND"), answered=False)
        if code in _PENDING:
            if match is not None:
                yield {k: text_of(match.get(k, "")) for k in keys}
            continue
        if code != 0x0000:
            raise QueryError(
                f"query refused: {describe(code, Service.FIND)}", answered=True
            )
