"""What the receiver holds: proof that instances arrived, and what need not be sent.

A receiver may answer 0x0000 and keep nothing; only asking it afterwards gives
certainty. For each series, one C-FIND at IMAGE level lists the SOP Instance UIDs
the receiver holds. A receiver that does not answer image-level queries is asked at
SERIES level instead, and its NumberOfSeriesRelatedInstances is compared with the
count we stored.
"""

import logging
from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace

from ..errors import AssociationError
from ..logs import mentioned
from ..pacs.query import Finder, Level, Query, QueryError
from ..transport.association import Client
from .report import Row

log = logging.getLogger(__name__)

__all__ = ["present", "verify_rows"]


@dataclass(frozen=True, slots=True)
class SeriesKey:
    """A series, with the study it belongs to (a study-root query needs both)."""

    study_uid: str
    """Study Instance UID."""
    series_uid: str
    """Series Instance UID."""


@dataclass(frozen=True, slots=True)
class Holding:
    """What the receiver says it holds of one series."""

    instances: frozenset[str] | None = None
    """SOP Instance UIDs (IMAGE level); None if it would not say."""
    count: int | None = None
    """NumberOfSeriesRelatedInstances (SERIES level), the fallback."""
    problem: str = ""
    """Why neither could be learned."""


def holdings(client: Client, series: Iterable[SeriesKey]) -> dict[SeriesKey, Holding]:
    """Ask the receiver what it holds of each series, over one association.

    Raises:
        AssociationError: No association for the queries.
    """
    found: dict[SeriesKey, Holding] = {}
    with Finder(client) as finder:
        for key in series:
            found[key] = _holding(finder, key)
    return found


def _holding(finder: Finder, key: SeriesKey) -> Holding:
    keys = (("StudyInstanceUID", key.study_uid), ("SeriesInstanceUID", key.series_uid))
    try:
        return Holding(
            instances=frozenset(
                match["SOPInstanceUID"]
                for match in finder.ask(Query(Level.IMAGE, keys=keys))
                if match["SOPInstanceUID"]
            )
        )
    except QueryError as exc:
        if not exc.answered:
            raise
        log.info("image-level query refused (%s): asking for series counts", exc)
    try:
        matches = list(finder.ask(Query(Level.SERIES, keys=keys)))
    except QueryError as exc:
        if not exc.answered:
            raise
        return Holding(problem=f"cannot verify: {exc}")
    counts = [m.get("NumberOfSeriesRelatedInstances", "") for m in matches]
    if not counts:
        return Holding(count=0)
    if not counts[0].isdigit():
        return Holding(problem="cannot verify: the receiver gives no instance count")
    return Holding(count=int(counts[0]))


def series_of(rows: Iterable[Row]) -> list[SeriesKey]:
    """The distinct series of rows that have UIDs, in order."""
    return list(
        dict.fromkeys(
            SeriesKey(row.study_instance_uid, row.series_instance_uid)
            for row in rows
            if row.sop_instance_uid and row.series_instance_uid
        )
    )


def verify_rows(client: Client, rows: Sequence[Row]) -> list[Row]:
    """Rows with ``verified`` set for every stored instance.

    Without a Series Instance UID an instance cannot be looked up: it is
    unverified, and the reason says so. If the receiver cannot be asked at all,
    every stored instance is unverified with that reason.
    """
    stored = [row for row in rows if row.status.stored]
    try:
        held = holdings(client, series_of(stored))
    except (AssociationError, QueryError) as exc:
        if mentioned(str(exc)):  # when asked before sending (skip-existing)
            log.error("cannot verify: the receiver cannot be asked, as said above")
        else:
            log.error("cannot verify: %s", exc)
        return [_mark(row, False, f"cannot verify: {exc}") for row in rows]
    sent_per_series = Counter(
        SeriesKey(r.study_instance_uid, r.series_instance_uid) for r in stored
    )
    result = []
    for row in rows:
        if not row.status.stored:
            result.append(row)
            continue
        key = SeriesKey(row.study_instance_uid, row.series_instance_uid)
        holding = held.get(key)
        if holding is None:
            result.append(_mark(row, False, "cannot verify: no Series Instance UID"))
        elif holding.instances is not None:
            found = row.sop_instance_uid in holding.instances
            why = "" if found else "not found on the receiver (C-FIND at IMAGE level)"
            result.append(_mark(row, found, why))
        elif holding.count is not None:
            enough = holding.count >= sent_per_series[key]
            why = (
                "verified by series count"
                if enough
                else f"the receiver holds {holding.count} of the "
                f"{sent_per_series[key]} instances of its series"
            )
            result.append(_mark(row, enough, why))
        else:
            result.append(_mark(row, False, holding.problem))
    return result


def present(client: Client, rows: Iterable[Row]) -> frozenset[str]:
    """SOP Instance UIDs of these rows that the receiver already holds.

    Only an image-level answer counts: a series count cannot say which ones.

    Raises:
        AssociationError: No association for the queries.
        QueryError: The receiver stopped answering.
    """
    by_series: dict[SeriesKey, set[str]] = defaultdict(set)
    for row in rows:
        if row.series_instance_uid:
            key = SeriesKey(row.study_instance_uid, row.series_instance_uid)
            by_series[key].add(row.sop_instance_uid)
    held = holdings(client, by_series)
    return frozenset(
        uid
        for key, uids in by_series.items()
        for uid in uids & (held[key].instances or frozenset())
    )


def _mark(row: Row, verified: bool, why: str) -> Row:
    if not row.status.stored:
        return row
    reason = "; ".join(part for part in (row.reason, why) if part)
    return replace(row, verified=verified, reason=reason)
