"""Options of what a PACS command asks for, and of where it files what comes.

``--level`` (shown in lower case, taken in either case), ``--uid``,
``--study-uid``, ``--window``; ``--out`` and ``--layout``.
"""

import argparse

from ..pacs.filing import Layout
from ..pacs.levels import Level
from .options import path


def add_target_options(parser: argparse.ArgumentParser) -> argparse._ArgumentGroup:
    """``--level``, ``--uid``, ``--study-uid`` and ``--window`` of move and retrieve.

    Returns:
        The group, for a command's own options of what to retrieve.
    """
    what = parser.add_argument_group("what")
    add_level(what, [Level.PATIENT, Level.STUDY, Level.SERIES])
    what.add_argument(
        "--uid",
        required=True,
        help="PatientID, StudyInstanceUID or SeriesInstanceUID",
    )
    what.add_argument(
        "--study-uid", default="", help="a series' study (else looked up)"
    )
    what.add_argument(
        "--window",
        metavar="HH:MM-HH:MM",
        help="start only inside this daily window of local time",
    )
    return what


def add_level(group: argparse._ActionsContainer, levels: list[Level]) -> None:
    """``--level``: one of ``levels``, shown in lower case, taken in either case."""
    group.add_argument(
        "--level",
        required=True,
        type=str.lower,
        choices=[level.value.lower() for level in levels],
        help="what to " + ("query" if Level.IMAGE in levels else "retrieve"),
    )


def level(args: argparse.Namespace) -> Level:
    """``--level``."""
    return Level(args.level.upper())


def add_filing_options(group: argparse._ActionsContainer) -> None:
    """``--out`` and ``--layout``: where received instances are filed."""
    group.add_argument("--out", type=path, required=True, help="folder to file into")
    group.add_argument(
        "--layout",
        choices=[lay.value for lay in Layout],
        default=Layout.PATIENT.value,
        help="patient: PatientID/Study/Series/SOP.dcm (default); study; flat",
    )
