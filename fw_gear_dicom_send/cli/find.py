"""``dicom-send find``: C-FIND; the matches to stdout, a file or an SQLite table."""

import argparse
import contextlib
import logging
import sys
from collections.abc import Iterator

from ..atomic import replacing
from ..errors import AssociationError
from ..pacs.levels import Level, Model
from ..pacs.query import Query, QueryError, find, parse_keys
from ..settings import FIND_WINDOW_DAYS, whole
from ..status import ExitStatus
from ..transport.association import Client
from ..words import count as counted
from . import options, targets
from .find_output import TABLES, AlignedTable, SqliteTable, database_path
from .report import check_writable
from .results import Format, RowWriter, open_writer

log = logging.getLogger(__name__)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The options of ``find``: the receiver's, the query and the output."""
    parser.description = (
        "Query the PACS; JSON and CSV are written as the matches arrive, a table "
        "and --out once the query has answered."
    )
    options.add_peer_options(parser, awaits="each C-FIND response")
    query = parser.add_argument_group("query")
    targets.add_level(query, list(Level))
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
        help="also put the matches into a table of this SQLite database (or a "
        "plain path), one row per key: a match already there is updated",
    )


def run(args: argparse.Namespace) -> ExitStatus:
    """Query; write the matches to stdout or ``--out``, and ``--db``.

    JSON and CSV to stdout are written as the matches arrive, the table once
    the query has answered; ``--out`` is written beside its path and renamed
    into place only once the query has answered, so a failed query leaves it
    as it was.
    """
    level = targets.level(args)
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
    db = database_path(args.db) if args.db else None
    client = Client(options.peer(args), options.association(args))
    columns = query.return_keys
    print_rows = args.db is None or args.format is not None or args.out is not None
    fmt = Format(args.format or Format.TABLE)
    if args.out is not None:
        check_writable(args.out, replaced=True)
    try:
        with contextlib.ExitStack() as stack:
            writers: list[RowWriter] = []
            if print_rows:
                out = sys.stdout
                if args.out is not None:
                    partial = stack.enter_context(replacing(args.out))
                    out = stack.enter_context(
                        open(partial, "w", newline="", encoding="utf-8")
                    )
                writers.append(open_writer(fmt, out, columns))
            if db is not None:
                writers.append(SqliteTable(db, level, columns))
            count = _write(find(client, query), writers)
    except (AssociationError, QueryError) as exc:
        log.error("%s", exc)
        return ExitStatus.NOTHING_SENT
    log.info("%s", counted(count, "match"))
    if db is not None:
        print(
            f"{counted(count, 'match')} into {db} (table {TABLES[level]})",
            file=sys.stderr,
        )
    return ExitStatus.SUCCESS


def _write(matches: Iterator[dict[str, str]], writers: list[RowWriter]) -> int:
    """Give each match to every writer; close them; the number of matches.

    If the query fails, the writers that stream (JSON, CSV, the database) are
    closed with what has come, the table is not written, and the error raised.
    """
    count = 0
    try:
        for match in matches:
            for writer in writers:
                writer.write(match)
            count += 1
    except (AssociationError, QueryError):
        for writer in writers:
            if not isinstance(writer, AlignedTable):
                writer.close()
        raise
    for writer in writers:
        writer.close()
    return count
