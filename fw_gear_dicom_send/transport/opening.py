"""Opening an association for a send, tried again while the refusal may pass."""

import logging
from collections.abc import Callable, Iterator

from pynetdicom.association import Association

from ..errors import AssociationError
from .association import Client
from .attempts import pause
from .contexts import Proposal
from .retry import Retrier

log = logging.getLogger(__name__)


def open_retrying(
    client: Client,
    proposals: list[Proposal],
    retrier: Retrier,
    stop: Callable[[], bool],
    refused: Callable[[AssociationError], None] | None = None,
) -> Association | None:
    """Open an association; wait and try again while it is refused as transient.

    A transient refusal is e.g. the receiver's association limit being reached.
    A receiver that cannot be reached (connection refused or reset, no answer)
    after this run stored something there is restarting: that is transient too.
    Before anything was stored, it is a configuration error, and fails at once.

    Args:
        client: Who sends.
        proposals: The contexts to propose.
        retrier: The run's retry budget.
        stop: Whether to stop.
        refused: Told of a transient refusal, before the wait.

    Returns:
        The association; None if ``stop()`` turned true meanwhile.
    """
    waits: Iterator[float] | None = None
    while not stop():
        try:
            return client.associate(proposals)
        except AssociationError as exc:
            if not (exc.transient or (exc.unreachable and retrier.has_stored)):
                raise
            if exc.transient and refused is not None:
                refused(exc)
            waits = waits or retrier.waits()
            wait = next(waits, None)
            if wait is None:
                raise
            log.warning("%s; trying again in %.1f s", exc, wait)
            pause(wait, stop)
    return None
