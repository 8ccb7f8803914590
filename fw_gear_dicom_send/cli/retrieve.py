"""``dicom-send retrieve``: fetch a patient, study or series into a folder.

By C-MOVE to a listener of ours (``--method move``) or by C-GET. The target, the
time window and the outcome are shared with ``move``.
"""

import argparse
import contextlib
import dataclasses
import logging

from ..dicom.status_codes import Service, describe
from ..errors import AssociationError
from ..pacs.filing import Layout, bytes_filed
from ..pacs.query import QueryError
from ..pacs.retrieve import (
    RetrieveError,
    RetrieveResult,
    Target,
    get,
    move,
)
from ..pacs.window import TimeWindow
from ..settings import RETRIEVE_LISTEN_PORT, whole
from ..status import ExitStatus
from ..transport.association import Client
from ..words import count
from . import options, targets
from .listen import start_listener
from .progress import RetrieveProgress

log = logging.getLogger(__name__)

HELP = "fetch a patient, study or series into a folder"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The options of ``retrieve``: the receiver's, what, and where to file it."""
    parser.description = HELP
    options.add_peer_options(parser, awaits="each C-MOVE or C-GET response")
    targets.add_target_options(parser)
    where = parser.add_argument_group("where")
    targets.add_filing_options(where)
    where.add_argument(
        "--method",
        choices=["move", "get"],
        default="move",
        help="move: C-MOVE to a listener of ours on --listen-port, which the "
        "PACS must know as --calling-ae (default); get: C-GET",
    )
    options.add_count(
        where,
        "--listen-port",
        RETRIEVE_LISTEN_PORT,
        "P",
        f"our listener's port for --method move ({RETRIEVE_LISTEN_PORT})",
    )
    where.add_argument(
        "--bind",
        default=options.ALL_INTERFACES,
        help="its address (0.0.0.0: all)",
    )


def run(args: argparse.Namespace) -> ExitStatus:
    """Retrieve into ``--out``; print the counts."""
    peer, settings = options.peer(args), options.association(args)
    what, window = target(args), time_window(args)
    port = whole("port", args.listen_port, "--listen-port")
    calling_ae, layout = settings.calling_ae, Layout(args.layout)
    client = Client(peer, settings)
    if window is not None:
        window.wait_until_open()
    with contextlib.ExitStack() as stack:
        listener = None
        if args.method == "move":
            listener = start_listener(
                stack, args.out, layout, args.bind, port, ae_title=calling_ae
            )
        progress = RetrieveProgress(bytes_filed)
        try:
            if listener is None:
                result = get(client, what, args.out, layout, progress)
            else:
                result = move(client, what, calling_ae, progress, verb="retrieve")
                result = dataclasses.replace(result, received=len(listener.received))
        except (AssociationError, RetrieveError, QueryError) as exc:
            progress.close()
            log.error("%s", exc)
            return ExitStatus.NOTHING_SENT
        progress.finish(result.counts)
    return outcome(result, "retrieve")


def target(args: argparse.Namespace) -> Target:
    """``--level``, ``--uid`` and ``--study-uid``."""
    return Target(targets.level(args), args.uid, args.study_uid)


def time_window(args: argparse.Namespace) -> TimeWindow | None:
    """``--window``, parsed before anything else happens."""
    return TimeWindow.parse(args.window) if args.window else None


def outcome(result: RetrieveResult, verb: str) -> ExitStatus:
    """Print the counts of a move or retrieve; its exit status."""
    print(
        f"{verb}: {result.counts}"
        + (f"; {count(result.received, 'file')} written" if verb == "retrieve" else "")
    )
    if result.complete:
        return ExitStatus.SUCCESS
    if result.status not in (0x0000, 0xB000):
        log.error(
            "%s incomplete: %s after %s",
            verb,
            describe(result.status, Service.RETRIEVE),
            result.counts,
        )
    done = result.counts.completed or result.counts.warning
    return ExitStatus.INCOMPLETE if done else ExitStatus.NOTHING_SENT
