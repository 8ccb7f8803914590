"""The ``dicom-send`` command line: send, echo, demo.

Exit codes are those of :class:`~fw_gear_dicom_send.status.ExitStatus`.
"""

import argparse
import logging
import math
import os
import shutil
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import NoReturn, TextIO

from . import __version__
from .engine import DEFAULT_ASSOCIATIONS, Progress, RunResult, SendRequest, send
from .errors import AssociationError, UsageError
from .logs import configure_logging
from .receiver import StorageReceiver
from .report import read_stored, write_csv
from .retry import RetryPolicy
from .samples import write_demo_inputs
from .scu import AssociationSettings, Client, Peer, describe_status
from .status import ExitStatus
from .tagging import DEFAULT_CREATOR, DEFAULT_VALUE, ProvenanceTag, parse_group
from .tls import DEFAULT_PROFILE, Profile, TlsSettings, parse_profile, risks

log = logging.getLogger(__name__)

PROG = "dicom-send"
_MAX_ASSOCIATIONS = 32
DEMO_AE = "DEMO-SCP"


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        self.exit(
            ExitStatus.USAGE, f"{self.prog}: error: {message} (see {self.prog} -h)\n"
        )


def _add_peer_options(parser: argparse.ArgumentParser) -> None:
    peer = parser.add_argument_group("receiver and association")
    peer.add_argument("--host", required=True, help="receiver host name or address")
    peer.add_argument("--port", type=int, default=104, help="receiver port (104)")
    peer.add_argument("--called-ae", required=True, help="receiver's AE title")
    _add_association_options(peer)
    _add_tls_options(parser.add_argument_group("TLS"))


_TLS_OPTIONS = (
    "tls_profile",
    "tls_ca",
    "tls_cert",
    "tls_key",
    "tls_key_password_file",
    "tls_no_verify",
    "tls_no_hostname_check",
)


def _add_tls_options(group: argparse._ArgumentGroup) -> None:
    group.add_argument("--tls", action="store_true", help="use DICOM TLS")
    group.add_argument(
        "--tls-profile",
        metavar="NAME",
        help=f"PS3.15 Annex B profile ({DEFAULT_PROFILE.value}): "
        + ", ".join(p.value for p in Profile),
    )
    group.add_argument(
        "--tls-ca",
        type=Path,
        metavar="PEM",
        help="CA certificates trusted besides the system's",
    )
    group.add_argument(
        "--tls-cert", type=Path, metavar="PEM", help="our certificate (mutual TLS)"
    )
    group.add_argument("--tls-key", type=Path, metavar="PEM", help="its private key")
    group.add_argument(
        "--tls-key-password-file",
        type=Path,
        metavar="FILE",
        help="the key's password, in a file (or set DICOM_SEND_TLS_KEY_PASSWORD)",
    )
    group.add_argument(
        "--tls-no-verify",
        action="store_true",
        help="do not verify the receiver's certificate (insecure)",
    )
    group.add_argument(
        "--tls-no-hostname-check",
        action="store_true",
        help="verify the certificate but not that it names --host",
    )


def _tls_settings(args: argparse.Namespace) -> TlsSettings | None:
    given = [name for name in _TLS_OPTIONS if getattr(args, name)]
    if not args.tls:
        if given:
            option = "--" + given[0].replace("_", "-")
            raise UsageError(f"{option} needs --tls")
        return None
    password = os.environ.get("DICOM_SEND_TLS_KEY_PASSWORD")
    if args.tls_key_password_file is not None:
        try:
            password = args.tls_key_password_file.read_text().rstrip("\r\n")
        except OSError as exc:
            raise UsageError(
                f"cannot read the key password file {args.tls_key_password_file}: "
                f"{exc.strerror}"
            ) from None
    return TlsSettings(
        profile=parse_profile(args.tls_profile)
        if args.tls_profile
        else DEFAULT_PROFILE,
        verify_peer=not args.tls_no_verify,
        check_hostname=not args.tls_no_hostname_check,
        ca_file=args.tls_ca,
        cert=args.tls_cert,
        key=args.tls_key,
        key_password=password,
    )


def _add_association_options(group: argparse._ArgumentGroup) -> None:
    group.add_argument(
        "--calling-ae", default="DICOM-SEND", help="our AE title (DICOM-SEND)"
    )
    defaults = AssociationSettings()
    for name, what in (
        ("connect", "to open the TCP connection"),
        ("acse", "for association answers"),
        ("dimse", "for each C-STORE response"),
        ("network", "of silence on a connection"),
    ):
        default = getattr(defaults, f"{name}_timeout")
        group.add_argument(
            f"--{name}-timeout",
            type=float,
            default=default,
            metavar="S",
            help=f"seconds {what} ({default:g})",
        )


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of ``dicom-send``."""
    parser = _Parser(
        prog=PROG,
        description="Send DICOM files, folders and zip/tar archives to a PACS.",
    )
    parser.add_argument("--version", action="version", version=__version__)
    parser.add_argument(
        "-v", "--verbose", action="count", default=0, help="more log (-vv: debug)"
    )
    parser.add_argument("-q", "--quiet", action="store_true", help="errors only")
    commands = parser.add_subparsers(
        dest="command", required=True, parser_class=_Parser
    )

    send_parser = commands.add_parser(
        "send",
        help="C-STORE files, folders and archives",
        description="Send every DICOM instance under PATH... with the provenance "
        "element; write a row per file to --report.",
    )
    send_parser.add_argument("paths", nargs="+", type=Path, metavar="PATH")
    _add_peer_options(send_parser)
    send_parser.add_argument("--report", type=Path, help="write the CSV report here")
    tag = send_parser.add_argument_group("provenance element")
    tag.add_argument("--group", default="0x0021", help="private group (0x0021)")
    tag.add_argument(
        "--creator",
        "--identifier",
        default=DEFAULT_CREATOR,
        help=f"private creator ({DEFAULT_CREATOR})",
    )
    tag.add_argument(
        "--value", "--tag-value", default=DEFAULT_VALUE, help=f"({DEFAULT_VALUE})"
    )
    send_parser.add_argument(
        "--work-dir", type=Path, help="where archives are extracted (system temp)"
    )
    send_parser.add_argument(
        "--retry-time",
        type=float,
        default=RetryPolicy().budget,
        metavar="S",
        help="retry transient failures until nothing has been stored for S seconds "
        f"({RetryPolicy().budget:g}; 0: no retries)",
    )
    send_parser.add_argument(
        "--associations",
        type=int,
        default=DEFAULT_ASSOCIATIONS,
        metavar="N",
        help=f"associations at once, each in its own process ({DEFAULT_ASSOCIATIONS};"
        " fewer for small sends)",
    )
    send_parser.add_argument(
        "--resume",
        type=Path,
        metavar="REPORT",
        help="skip instances that an earlier run's report says were stored",
    )

    echo_parser = commands.add_parser("echo", help="C-ECHO the receiver")
    _add_peer_options(echo_parser)

    demo_parser = commands.add_parser(
        "demo",
        help="send sample data to an embedded receiver",
        description="Start a Storage SCP on 127.0.0.1, send sample data to it and "
        "show the report.",
    )
    demo_parser.add_argument(
        "--out",
        type=Path,
        default=Path("dicom-send-demo"),
        help="folder for inputs, received files and report (./dicom-send-demo)",
    )
    return parser


class ProgressPrinter:
    """A progress line on a terminal; a log line every few seconds otherwise."""

    def __init__(self, stream: TextIO = sys.stderr, interval: float = 5.0) -> None:
        self._stream = stream
        self._tty = stream.isatty()
        self._interval = 0.1 if self._tty else interval
        # A terminal shows the first instance at once; a log waits one interval.
        self._last = -math.inf if self._tty else time.monotonic()
        self._shown = False

    def __call__(self, progress: Progress) -> None:
        """Show progress, at most every interval (always the final count)."""
        now = time.monotonic()
        final = progress.done == progress.total
        if not final and now - self._last < self._interval:
            return
        self._last = now
        rate = progress.done / progress.seconds if progress.seconds > 0 else 0.0
        text = (
            f"{progress.done}/{progress.total} instances, "
            f"{progress.bytes_done / 1e6:.1f}/{progress.bytes_total / 1e6:.1f} MB, "
            f"{rate:.0f} images/s"
        )
        if self._tty:
            width = 24
            filled = width * progress.done // max(progress.total, 1)
            bar = "#" * filled + "." * (width - filled)
            self._stream.write(f"\r[{bar}] {text}")
            if final:
                self._stream.write("\n")
            self._stream.flush()
        elif not final:
            log.info("progress: %s", text)


def _settings(args: argparse.Namespace) -> tuple[Peer, AssociationSettings]:
    return (
        Peer(args.host, args.port, args.called_ae),
        AssociationSettings(
            calling_ae=args.calling_ae,
            connect_timeout=args.connect_timeout,
            acse_timeout=args.acse_timeout,
            dimse_timeout=args.dimse_timeout,
            network_timeout=args.network_timeout,
            tls=_tls_settings(args),
        ),
    )


def _associations(value: int) -> int:
    if not 1 <= value <= _MAX_ASSOCIATIONS:
        raise UsageError(f"--associations must be 1 to {_MAX_ASSOCIATIONS}")
    return value


def _non_negative(value: float, option: str) -> float:
    if not math.isfinite(value) or value < 0:
        raise UsageError(f"{option} must be a number of seconds, 0 or more")
    return value


def _check_writable(report: Path | None) -> None:
    """Fail before sending if the report could not be written afterwards."""
    if report is None:
        return
    try:
        report.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise UsageError(f"cannot write the report {report}: {exc.strerror}") from None
    if report.is_dir() or not os.access(report.parent, os.W_OK):
        raise UsageError(f"cannot write the report {report}")


def _finish(result: RunResult, report: Path | None) -> ExitStatus:
    if report is not None:
        write_csv(result.rows, report)
    for line in result.summary.lines():
        print(line)
    if report is not None:
        print(f"report: {report}")
    if result.interrupted:
        print(f"{PROG}: interrupted", file=sys.stderr)
    return result.exit_status


def _run_send(args: argparse.Namespace) -> ExitStatus:
    peer, settings = _settings(args)
    request = SendRequest(
        paths=tuple(args.paths),
        peer=peer,
        association=settings,
        tag=ProvenanceTag(parse_group(args.group), args.creator, args.value),
        work_dir=args.work_dir,
        retry=RetryPolicy(budget=_non_negative(args.retry_time, "--retry-time")),
        already_stored=read_stored(args.resume) if args.resume else frozenset(),
        associations=_associations(args.associations),
    )
    _check_writable(args.report)
    result = send(request, ProgressPrinter())
    return _finish(result, args.report)


def _run_echo(args: argparse.Namespace) -> ExitStatus:
    peer, settings = _settings(args)
    for risk in risks(settings.tls) if settings.tls is not None else ():
        log.warning("%s", risk)
    try:
        status = Client(peer, settings).echo()
    except AssociationError as exc:
        log.error("%s", exc)
        return ExitStatus.NOTHING_SENT
    print(f"C-ECHO {peer}: {describe_status(status)}")
    return ExitStatus.SUCCESS if status == 0 else ExitStatus.NOTHING_SENT


def _run_demo(args: argparse.Namespace) -> ExitStatus:
    out: Path = args.out
    for owned in ("input", "received"):
        shutil.rmtree(out / owned, ignore_errors=True)
    inputs = list(write_demo_inputs(out / "input"))
    log.info("sample data: %s", ", ".join(p.name for p in inputs))
    with StorageReceiver(out / "received", ae_title=DEMO_AE) as receiver:
        request = SendRequest(
            paths=(out / "input",),
            peer=Peer("127.0.0.1", receiver.port, DEMO_AE),
            association=AssociationSettings(calling_ae="DICOM-SEND"),
        )
        result = send(request, ProgressPrinter())
    status = _finish(result, out / "report.csv")
    print(f"received: {len(receiver.received)} files in {out / 'received'}")
    return status


_COMMANDS = {"send": _run_send, "echo": _run_echo, "demo": _run_demo}


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``dicom-send``; return the exit status."""
    args = build_parser().parse_args(argv)
    configure_logging(args.verbose, args.quiet, prefix=PROG)
    try:
        return int(_COMMANDS[args.command](args))
    except UsageError as exc:
        print(f"{PROG}: error: {exc}", file=sys.stderr)
        return ExitStatus.USAGE
    except KeyboardInterrupt:
        print(f"{PROG}: interrupted", file=sys.stderr)
        return ExitStatus.INTERRUPTED
