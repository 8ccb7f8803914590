"""``dicom-send commit``: ask the receiver again to commit to what a report stored.

Archives often commit minutes after they store. This reads a report of ``send``,
asks for Storage Commitment of every instance it lists as stored, and writes the
answers into the report's ``committed`` column (in place, or to ``--out``).
"""

import argparse
import logging

from .. import stopping
from ..errors import UsageError
from ..pacs.commit_results import Committed, Reference
from ..sending.report import (
    COLUMNS,
    ReportError,
    check_replaceable,
    commitment_lines,
    reading,
    write_table,
)
from ..status import ExitStatus, InstanceStatus
from . import options

log = logging.getLogger(__name__)

_STORED = (InstanceStatus.SENT.value, InstanceStatus.WARNING.value)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The options of ``commit``: the receiver, the report, the listener."""
    parser.description = (
        "Ask the receiver (Storage Commitment, N-ACTION) to commit to every "
        "instance --report lists as stored; write its answers into the report's "
        "committed column. Exit 0 only if it committed to every one."
    )
    options.add_peer_options(parser, awaits="each N-ACTION response")
    parser.add_argument(
        "--report",
        type=options.path,
        required=True,
        metavar="REPORT",
        help="the report of a send",
    )
    parser.add_argument(
        "--out",
        type=options.path,
        metavar="REPORT",
        help="write the updated report here (default: --report itself)",
    )
    options.add_commit_options(parser, flag=False)


def run(args: argparse.Namespace) -> ExitStatus:
    """Ask; write the report; print how many were committed."""
    from ..pacs.commitment import check_supported  # noqa: PLC0415 - pynetdicom
    from ..sending.commit import commit_stored  # noqa: PLC0415 - pynetdicom
    from ..transport.association import Client  # noqa: PLC0415 - pynetdicom

    peer, association = options.peer(args), options.association(args)
    settings = options.commit(args)
    out = args.out or args.report
    check_replaceable(out, "--out" if args.out else "--report")
    with reading(args.report, "--report") as reader:
        rows = [{column: row.get(column) or "" for column in COLUMNS} for row in reader]
    references = list(
        dict.fromkeys(
            Reference(row["sop_class_uid"], row["sop_instance_uid"])
            for row in rows
            if row["status"] in _STORED and row["sop_instance_uid"]
        )
    )
    if not references:
        raise UsageError(f"--report {args.report} lists no stored instance")
    client = Client(peer, association)
    check_supported(client)
    with stopping.handling():
        verdicts = commit_stored(client, references, settings)
    for row in rows:
        verdict = verdicts.get(row["sop_instance_uid"])
        if verdict is not None and row["status"] in _STORED:
            row["committed"] = verdict.text
    committed = sum(1 for v in verdicts.values() if v.state is Committed.YES)
    for line in commitment_lines(committed, len(verdicts) - committed):
        print(line)
    try:
        write_table(out, COLUMNS, rows)
    except ReportError as exc:
        log.error("%s", exc)
        return ExitStatus.REPORT_FAILED
    print(f"report: {out}")
    return ExitStatus.SUCCESS if committed == len(verdicts) else ExitStatus.INCOMPLETE
