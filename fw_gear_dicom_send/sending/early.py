"""The sender process of a send likely to go over several associations.

A parallel send's sender process
(:class:`~fw_gear_dicom_send.transport.processes.Sender`) imports pynetdicom and
pydicom when it starts, which takes longer than anything the main process does
before it sends. The command line therefore starts one as it starts, before it
imports the command's modules; :func:`started` keeps it for a request that likely
sends in parallel (or starts one then, before the engine is imported) and closes
it otherwise, and the front door hands it to :func:`.engine.send`. This module
imports nothing the engine needs only later.
"""

import contextlib
from collections.abc import Iterator, Sequence
from pathlib import Path

from ..transport.processes import Sender
from ..transport.workers import ITEMS_PER_WORKER
from .request import SendRequest

__all__ = ["likely_parallel", "started"]

_LARGE_INPUT = 32 << 20


def likely_parallel(request: SendRequest, paths: Sequence[Path]) -> bool:
    """Whether the send will likely go over several associations.

    A few small files go over one association; a folder, many files or a large
    file (an archive, probably) likely over several.
    """
    if request.peer is None or request.most_associations < 2:
        return False
    if len(paths) >= 2 * ITEMS_PER_WORKER:
        return True
    return any(
        not path.is_file() or path.stat().st_size >= _LARGE_INPUT for path in paths
    )


@contextlib.contextmanager
def started(
    request: SendRequest, ahead: Sender | None = None
) -> Iterator[Sender | None]:
    """A sender process for the request if it likely sends in parallel, else None.

    Give it to :func:`.engine.send`, which closes it once the send is done; it is
    closed here in any case on leaving (again, harmlessly), so that it never
    outlives the block, whatever ends it.

    Args:
        request: The send.
        ahead: A sender started before the request was known (the command line
            starts one as it starts): the one given, if it sends in parallel;
            else it is closed at once.
    """
    sender = None
    if likely_parallel(request, request.paths):
        sender = ahead or Sender()
    elif ahead is not None:
        ahead.close()
    try:
        yield sender
    finally:
        if sender is not None:
            sender.close()
