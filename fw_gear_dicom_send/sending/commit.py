"""Storage Commitment of a send's rows: checked before, asked for after.

:func:`check_commitment` runs before anything is sent: the receiver must take the
Storage Commitment SOP class, and the listener's port must be free. After the
send, :func:`commit_rows` asks the receiver (:mod:`~fw_gear_dicom_send.pacs.commitment`)
to commit to every instance stored, and sets each row's ``committed``.
"""

import logging
from collections.abc import Iterable, Sequence
from dataclasses import replace

from ..pacs.commit_results import Reference, Verdict
from ..pacs.commitment import (
    CommitListener,
    Inbox,
    check_supported,
    request_commitment,
)
from ..transport.association import Client
from .report import Row
from .request import CommitSettings, SendRequest

log = logging.getLogger(__name__)

__all__ = ["check_commitment", "commit_rows", "commit_stored"]


def check_commitment(request: SendRequest) -> None:
    """For ``--commit``: stop before sending if commitment cannot be had.

    Raises:
        UsageError: The receiver does not take the Storage Commitment SOP class,
            or the listener's port cannot be listened on.
    """
    if request.commit is None or request.peer is None:
        return
    client = Client(request.peer, request.association)
    if request.commit.port is not None:
        with _listener(Inbox(), client, request.commit):
            pass
    check_supported(client)


def commit_rows(
    client: Client, rows: Sequence[Row], settings: CommitSettings
) -> list[Row]:
    """Rows with ``committed`` set for every stored instance."""
    verdicts = commit_stored(client, _references(rows), settings)
    return [
        replace(row, committed=verdicts[row.sop_instance_uid])
        if row.status.stored and row.sop_instance_uid in verdicts
        else row
        for row in rows
    ]


def commit_stored(
    client: Client, references: Sequence[Reference], settings: CommitSettings
) -> dict[str, Verdict]:
    """Ask for Storage Commitment of these instances, listening for the answers.

    Raises:
        UsageError: The listener's port cannot be listened on.
    """
    inbox = Inbox()
    if settings.port is None:
        return request_commitment(client, references, inbox, timeout=settings.timeout)
    with _listener(inbox, client, settings) as listener:
        log.info(
            "asking %s for Storage Commitment of %d instances; its reports come on "
            "our association or to %s on port %d",
            client.peer,
            len(references),
            client.settings.calling_ae,
            listener.port,
        )
        return request_commitment(client, references, inbox, timeout=settings.timeout)


def _listener(inbox: Inbox, client: Client, settings: CommitSettings) -> CommitListener:
    assert settings.port is not None
    return CommitListener(
        inbox, client.settings.calling_ae, settings.port, settings.host
    )


def _references(rows: Iterable[Row]) -> list[Reference]:
    """The distinct stored instances of the rows, in order."""
    return list(
        dict.fromkeys(
            Reference(row.sop_class_uid, row.sop_instance_uid)
            for row in rows
            if row.status.stored and row.sop_instance_uid
        )
    )
