"""The ``dicom-send`` command line: the parser of its commands, and dispatch.

Each command is a module of this package with ``add_arguments(parser)`` and
``run(args) -> ExitStatus``. Only the module of the command given is imported:
the commands that talk to a PACS import pynetdicom and pydicom, which ``send`` (its
sender processes import them) and ``--help`` do without. Exit codes are those of
:class:`~fw_gear_dicom_send.status.ExitStatus`; this is the only module that
turns failures into them.
"""

import argparse
import importlib
import sys
from collections.abc import Sequence
from typing import NoReturn, Protocol, cast

import fw_gear_dicom_send

from .. import (
    blas,  # noqa: F401 - first: before numpy is imported
    collector,
    stopping,
)
from ..errors import UsageError
from ..logs import configure_logging
from ..sanitize import printable
from ..status import ExitStatus
from ..transport.processes import Sender
from . import PROG

COMMANDS = {
    "send": "C-STORE files, folders and archives",
    "echo": "C-ECHO the receiver",
    "find": "C-FIND: what the PACS holds",
    "move": "C-MOVE a patient, study or series to another AE",
    "retrieve": "fetch a patient, study or series into a folder",
    "listen": "a Storage SCP filing what it receives",
    "commit": "ask the receiver to commit to what a report stored",
    "demo": "send sample data to an embedded receiver",
}
"""Each command, in the order of ``dicom-send -h``, with its line there; its
module in this package has the command's name."""


class Command(Protocol):
    """A command's module."""

    def add_arguments(self, parser: argparse.ArgumentParser) -> None:
        """Add the command's options (and its description) to its parser."""

    def run(self, args: argparse.Namespace) -> ExitStatus:
        """Run the command; raise UsageError for bad input."""


class _Parser(argparse.ArgumentParser):
    help_of: str | None = None
    """The command whose help an error points to (the parser's own if None)."""

    def error(self, message: str) -> NoReturn:
        self.exit(
            ExitStatus.USAGE,
            f"{self.prog}: error: {printable(message)} "
            f"(see {self.help_of or self.prog} -h)\n",
        )


class _Version(argparse.Action):
    """``--version``: the installed version, looked up only when asked for."""

    def __call__(self, parser: argparse.ArgumentParser, *_: object) -> None:
        parser.exit(message=f"{fw_gear_dicom_send.__version__}\n")


def command_of(argv: Sequence[str]) -> str | None:
    """The command ``argv`` names: its first word that is not an option.

    The options before a command take no value, so that word is the command.
    """
    for word in argv:
        if not word.startswith("-"):
            return word if word in COMMANDS else None
    return None


def load(name: str) -> Command:
    """The module of command ``name`` (imported now, the collector off meanwhile)."""
    with collector.importing():
        return cast(Command, importlib.import_module(f"{__package__}.{name}"))


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    """The argument parser of ``dicom-send``, with the options of ``command``.

    The other commands are listed (``-h``) without their options: their modules
    are not imported.
    """
    parser = _Parser(
        prog=PROG,
        description="Send DICOM files, folders and zip/tar archives to a PACS.",
    )
    parser.add_argument("--version", action=_Version, nargs=0, help="show the version")
    add_log_options(parser)
    subparsers = parser.add_subparsers(
        dest="command", required=True, parser_class=_Parser
    )
    for name, line in COMMANDS.items():
        subparser = subparsers.add_parser(name, help=line)
        add_log_options(subparser, after_command=True)
        if name == command:
            module = load(name)
            module.add_arguments(subparser)
            subparser.set_defaults(run=module.run)
            parser.help_of = subparser.prog
    return parser


def add_log_options(
    parser: argparse.ArgumentParser, *, after_command: bool = False
) -> None:
    """``-v``/``-vv`` and ``-q``, before the command or after it.

    Given after the command they count apart (``verbose_after``, ``quiet_after``):
    a command's parser would otherwise overwrite what was given before it.
    """
    suffix = "_after" if after_command else ""
    parser.add_argument(
        "-v",
        "--verbose",
        dest=f"verbose{suffix}",
        action="count",
        default=0,
        help="more log: each file's decision, association events (-vv: debug)",
    )
    parser.add_argument(
        "-q", "--quiet", dest=f"quiet{suffix}", action="store_true", help="errors only"
    )


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``dicom-send``; return the exit status.

    For ``send``, the sender process of a parallel send
    (:class:`~fw_gear_dicom_send.transport.processes.Sender`) is started first,
    before the command's modules are imported: it imports pynetdicom and pydicom,
    which takes longer than anything before the send, on another core
    meanwhile. The send keeps it (``args.ahead``) if it goes over several
    associations; it is closed on leaving in any case.
    """
    words = sys.argv[1:] if argv is None else list(argv)
    command = command_of(words)
    ahead = Sender() if command == "send" else None
    try:
        args = build_parser(command).parse_args(words)
        args.ahead = ahead
        configure_logging(
            args.verbose + args.verbose_after,
            args.quiet or args.quiet_after,
            prefix=PROG,
        )
        return _run(args)
    finally:
        if ahead is not None:
            ahead.close()


def _run(args: argparse.Namespace) -> int:
    """Run the command parsed; its exit status."""
    try:
        return int(stopping.exit_status(args.run(args)))
    except UsageError as exc:
        print(f"{PROG}: error: {exc}", file=sys.stderr)
        return ExitStatus.USAGE
    except KeyboardInterrupt:
        print(f"{PROG}: interrupted", file=sys.stderr)
        return stopping.exit_status(ExitStatus.INTERRUPTED)
