"""A PACS that aborts an association at the start of a later C-FIND: asked again.

An in-process pynetdicom Query/Retrieve SCP answers one match per C-FIND and
aborts every association at its second C-FIND request, as some PACS end an
association that has carried a few queries. A windowed find asks that window
again on a new association once; a PACS that aborts at the first request (our
AE title unknown to it) is not asked again.
"""

import datetime
import threading
from collections.abc import Iterator

import pytest
from pydicom.dataset import Dataset
from pynetdicom import AE, evt

from fw_gear_dicom_send.pacs.levels import Model
from fw_gear_dicom_send.pacs.query import Level, Query, QueryError, find
from fw_gear_dicom_send.transport.association import Client
from fw_gear_dicom_send.transport.peer import AssociationSettings, Peer

AE_TITLE = "QR-SCP"


class AbortingFinder:
    """Answers each C-FIND with one match; aborts at the n-th of an association."""

    def __init__(self, abort_at: int) -> None:
        self.abort_at = abort_at
        self.asked: list[str] = []
        self.associations = 0
        self._counts: dict[int, int] = {}
        self._lock = threading.Lock()
        ae = AE(ae_title=AE_TITLE)
        ae.add_supported_context(Model.STUDY_ROOT.find_uid())
        server = ae.start_server(
            ("127.0.0.1", 0),
            block=False,
            evt_handlers=[
                (evt.EVT_C_FIND, self._find),
                (evt.EVT_ACCEPTED, self._accepted),
            ],
        )
        assert server is not None and server.socket is not None
        self._server = server
        self.port = int(server.socket.getsockname()[1])

    def _accepted(self, event: evt.Event) -> None:
        with self._lock:
            self.associations += 1

    def _find(self, event: evt.Event) -> Iterator[tuple[int, Dataset | None]]:
        key = id(event.assoc)
        with self._lock:
            self._counts[key] = self._counts.get(key, 0) + 1
            count = self._counts[key]
        if count == self.abort_at:
            event.assoc.abort()
            return
        date = str(event.identifier.StudyDate).split("-")[0]
        with self._lock:
            self.asked.append(date)
        match = Dataset()
        match.QueryRetrieveLevel = "STUDY"
        match.StudyInstanceUID = f"1.2.3.{date}"
        match.StudyDate = date
        yield 0xFF00, match

    def close(self) -> None:
        self._server.shutdown()


def _query() -> Query:
    return Query(
        Level.STUDY,
        date_from=datetime.date(2026, 1, 1),
        date_to=datetime.date(2026, 1, 3),
        window_days=1,
    )


def test_a_later_cfind_aborted_is_asked_again_on_a_new_association() -> None:
    pacs = AbortingFinder(abort_at=2)
    try:
        client = Client(Peer("127.0.0.1", pacs.port, AE_TITLE), AssociationSettings())
        matches = list(find(client, _query()))
    finally:
        pacs.close()
    assert [m["StudyDate"] for m in matches] == ["20260101", "20260102", "20260103"]
    assert pacs.associations == 3  # each aborted at its second C-FIND


def test_an_abort_at_the_first_cfind_is_not_asked_again() -> None:
    pacs = AbortingFinder(abort_at=1)
    try:
        client = Client(Peer("127.0.0.1", pacs.port, AE_TITLE), AssociationSettings())
        with pytest.raises(QueryError, match="likely unknown to that PACS"):
            list(find(client, _query()))
    finally:
        pacs.close()
    assert pacs.associations == 1
