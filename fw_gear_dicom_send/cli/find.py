"""``dicom-send find``: C-FIND, the matches written as they arrive."""

import argparse
import contextlib
import logging
import sys

from ..errors import AssociationError
from ..pacs.levels import Level, Model
from ..pacs.query import Query, QueryError, find, parse_keys
from ..settings import FIND_WINDOW_DAYS, whole
from ..status import ExitStatus
from ..transport.association import Client
from ..words import count as counted
from . import options
from .report import check_writable
from .results import Format, RowWriter, SqliteWriter, open_writer, sqlite_path

log = logging.getLogger(__name__)

_TABLES = {
    Level.PATIENT: "patients",
    Level.STUDY: "studies",
    Level.SERIES: "series",
    Level.IMAGE: "images",
}
"""The ``--db`` table of each level's matches."""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The options of ``find``: the receiver's, the query and the output."""
    parser.description = "Query the PACS; matches are written as they arrive."
    options.add_peer_options(parser)
    query = parser.add_argument_group("query")
    query.add_argument(
        "--level", required=True, type=str.upper, choices=[lv.value for lv in Level]
    )
    query.add_argument(
        "--model",
        choices=[m.value for m in Model],
        help="information model (patient root for --level patient, else study root)",
    )
    query.add_argument(
        "-k",
        "--key",
        action="append",
        default=[],
        metavar="KEYWORD[=VALUE]",
        help="a matching key (with a value: wildcards * ?, ranges A-B) or a return "
        "key (without); repeatable",
    )
    query.add_argument("--date-from", type=options.date, metavar="YYYY-MM-DD")
    query.add_argument("--date-to", type=options.date, metavar="YYYY-MM-DD")
    options.add_count(
        query,
        "--window-days",
        FIND_WINDOW_DAYS,
        "N",
        f"ask a date range in windows of N days ({FIND_WINDOW_DAYS})",
    )
    query.add_argument("--modality", help="e.g. CT, MR")
    out = parser.add_argument_group("output")
    out.add_argument(
        "--format",
        choices=[f.value for f in Format],
        help="table (default), json or csv",
    )
    out.add_argument(
        "--out", type=options.path, metavar="FILE", help="write here, not stdout"
    )
    out.add_argument(
        "--db",
        metavar="sqlite:///FILE",
        help="also insert the matches into a table of this SQLite database",
    )


def run(args: argparse.Namespace) -> ExitStatus:
    """Query; write each match to stdout, ``--out`` and ``--db`` as it arrives."""
    level = Level(args.level)
    model = Model(args.model) if args.model else None
    query = Query(
        level,
        keys=parse_keys(args.key),
        model=model
        or (Model.PATIENT_ROOT if level is Level.PATIENT else Model.STUDY_ROOT),
        date_from=args.date_from,
        date_to=args.date_to,
        modality=args.modality,
        window_days=whole("window_days", args.window_days, "--window-days"),
    )
    db = sqlite_path(args.db) if args.db else None
    client = Client(options.peer(args), options.association(args))
    columns = query.return_keys
    print_rows = args.db is None or args.format is not None or args.out is not None
    fmt = Format(args.format or Format.TABLE)
    with contextlib.ExitStack() as stack:
        writers: list[RowWriter] = []
        if print_rows:
            out = sys.stdout
            if args.out is not None:
                check_writable(args.out)
                out = stack.enter_context(
                    open(args.out, "w", newline="", encoding="utf-8")
                )
            writers.append(open_writer(fmt, out, columns))
        if db is not None:
            writers.append(SqliteWriter(db, _TABLES[level], columns))
        count = 0
        try:
            for match in find(client, query):
                for writer in writers:
                    writer.write(match)
                count += 1
        except (AssociationError, QueryError) as exc:
            log.error("%s", exc)
            return ExitStatus.NOTHING_SENT
        finally:
            for writer in writers:
                writer.close()
    log.info("%s", counted(count, "match"))
    if db is not None:
        print(
            f"{counted(count, 'match')} into {db} (table {_TABLES[level]})",
            file=sys.stderr,
        )
    return ExitStatus.SUCCESS
