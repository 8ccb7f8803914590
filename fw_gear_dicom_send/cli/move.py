"""``dicom-send move``: C-MOVE a patient, study or series to another AE."""

import argparse
import logging

from ..errors import AssociationError
from ..pacs.query import QueryError
from ..pacs.retrieve import RetrieveError, move
from ..status import ExitStatus
from ..transport.association import Client
from . import options, targets
from .progress import RetrieveProgress
from .retrieve import outcome, target, time_window

log = logging.getLogger(__name__)

HELP = "C-MOVE a patient, study or series to another AE"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The options of ``move``: the receiver's, what, and where it goes."""
    parser.description = HELP
    options.add_peer_options(parser, awaits="each C-MOVE response")
    what = targets.add_target_options(parser)
    what.add_argument("--dest-ae", required=True, help="the AE title the PACS sends to")


def run(args: argparse.Namespace) -> ExitStatus:
    """C-MOVE to ``--dest-ae``; print the counts."""
    peer, settings = options.peer(args), options.association(args)
    what, window = target(args), time_window(args)
    client = Client(peer, settings)
    if window is not None:
        window.wait_until_open()
    progress = RetrieveProgress()
    try:
        result = move(client, what, args.dest_ae, progress, verb="move")
    except (AssociationError, RetrieveError, QueryError) as exc:
        progress.close()
        log.error("%s", exc)
        return ExitStatus.NOTHING_SENT
    progress.finish(result.counts)
    return outcome(result, "move")
