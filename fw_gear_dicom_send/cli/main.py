"""The ``dicom-send`` command line: send, echo, find, move, retrieve, listen, demo.

Exit codes are those of :class:`~fw_gear_dicom_send.status.ExitStatus`.
"""

import argparse
import contextlib
import dataclasses
import datetime
import logging
import math
import os
import re
import shutil
import signal
import ssl
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, NoReturn, TextIO

import fw_gear_dicom_send

from .. import (
    blas,  # noqa: F401 - first: before numpy is imported
    stopping,
)
from ..dicom.provenance import (
    DEFAULT_CREATOR,
    DEFAULT_VALUE,
    ProvenanceTag,
    parse_group,
)
from ..dicom.statuses import Service, describe
from ..errors import AssociationError, UsageError
from ..logs import configure_logging
from ..pacs.filing import Layout
from ..pacs.levels import Level, Model
from ..pacs.results import Format, RowWriter, SqliteWriter, open_writer, sqlite_path
from ..sanitize import printable
from ..send.engine import DEFAULT_ASSOCIATIONS, Progress, RunResult, SendRequest, send
from ..send.report import (
    ReportError,
    check_replaceable,
    is_report,
    read_stored,
    write_csv,
)
from ..settings import seconds, whole
from ..status import ExitStatus
from ..transport.peer import (
    AssociationSettings,
    Peer,
    StowSettings,
    check_ae_title,
    parse_auth,
)
from ..transport.retry import RetryPolicy
from ..transport.tls import (
    DEFAULT_PROFILE,
    Profile,
    TlsSettings,
    check_password,
    parse_profile,
    risks,
    server_context,
)

if TYPE_CHECKING:
    from ..pacs.receiver import StorageReceiver
    from ..pacs.retrieve import RetrieveResult, SubOperations, Target
    from ..pacs.window import TimeWindow

log = logging.getLogger(__name__)

PROG = "dicom-send"
DEMO_AE = "DEMO-SCP"
ALL_INTERFACES = "0.0.0.0"  # noqa: S104 - a listener a PACS must reach
_PASSWORD_VARIABLE = "DICOM_SEND_TLS_KEY_PASSWORD"  # noqa: S105 - its name


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        self.exit(
            ExitStatus.USAGE,
            f"{self.prog}: error: {printable(message)} (see {self.prog} -h)\n",
        )


def _path(text: str) -> Path:
    """A path argument: any text but the empty one (``Path("")`` is the folder here)."""
    if not text.strip():
        raise argparse.ArgumentTypeError("an empty path names no file")
    return Path(text)


def _integer(text: str) -> int:
    """A whole number in ASCII digits (``int()`` takes any script's digits, ``2_3``)."""
    if not re.fullmatch(r"[+-]?[0-9]{1,12}", text.strip()):
        raise argparse.ArgumentTypeError(f"not a whole number: {text!r}")
    return int(text)


def _decimal(text: str) -> float:
    """A number argument in ASCII (``float()`` takes any script's digits, ``1_0``).

    ``nan`` and ``inf`` pass: the range check names them.
    """
    try:
        if text.isascii() and "_" not in text:
            return float(text)
    except ValueError:
        pass
    raise argparse.ArgumentTypeError(f"not a number: {text!r}")


class _Version(argparse.Action):
    """``--version``: the installed version, looked up only when asked for."""

    def __call__(self, parser: argparse.ArgumentParser, *_: object) -> None:
        parser.exit(message=f"{fw_gear_dicom_send.__version__}\n")


def _add_peer_options(
    parser: argparse.ArgumentParser, *, required: bool = True
) -> None:
    peer = parser.add_argument_group("receiver and association")
    peer.add_argument("--host", required=required, help="receiver host name or address")
    peer.add_argument("--port", type=_integer, default=104, help="receiver port (104)")
    peer.add_argument("--called-ae", required=required, help="receiver's AE title")
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
        type=_path,
        metavar="PEM",
        help="CA certificates trusted besides the system's",
    )
    group.add_argument(
        "--tls-cert", type=_path, metavar="PEM", help="our certificate (mutual TLS)"
    )
    group.add_argument("--tls-key", type=_path, metavar="PEM", help="its private key")
    group.add_argument(
        "--tls-key-password-file",
        type=_path,
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
    given = [name for name in _TLS_OPTIONS if getattr(args, name, None)]
    if not args.tls:
        if given:
            option = "--" + given[0].replace("_", "-")
            raise UsageError(f"{option} needs --tls")
        return None
    password = os.environ.get(_PASSWORD_VARIABLE)
    if password is not None:
        check_password(password, _PASSWORD_VARIABLE)
    if args.tls_key_password_file is not None:
        password = _read_password(args.tls_key_password_file)
    return TlsSettings(
        profile=parse_profile(args.tls_profile)
        if args.tls_profile
        else DEFAULT_PROFILE,
        verify_peer=not getattr(args, "tls_no_verify", False),
        check_hostname=not getattr(args, "tls_no_hostname_check", False),
        ca_file=args.tls_ca,
        cert=args.tls_cert,
        key=args.tls_key,
        key_password=password,
    )


def _read_password(path: Path) -> str:
    """The key password in a file, without its line end.

    Raises:
        UsageError: The file cannot be read, or is not UTF-8 text.
    """
    try:
        text = path.read_bytes().decode("utf-8")
    except OSError as exc:
        raise UsageError(
            f"cannot read the key password file {path}: {exc.strerror}"
        ) from None
    except UnicodeDecodeError:
        raise UsageError(f"the key password file {path} is not UTF-8 text") from None
    password = text.rstrip("\r\n")
    if not password:
        raise UsageError(f"the key password file {path} is empty")
    return password


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
            type=_decimal,
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
    parser.add_argument("--version", action=_Version, nargs=0, help="show the version")
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
        "element; write a row per file to --report. What arrives is the original: "
        "the file's data set with the element inserted; for a receiver that refuses "
        "its transfer syntax, the same elements re-encoded, or decompressed (same "
        "pixels), always under the file's SOP Instance UID; a lossy source stays "
        "marked lossy. Decoders: python-gdcm (JPEG, JPEG Lossless, 12-bit JPEG, "
        "JPEG-LS, JPEG 2000), Pillow, pyjpegls, pylibjpeg-openjpeg (JPEG 2000, "
        "HTJ2K), pydicom and pylibjpeg-rle (RLE).",
    )
    send_parser.add_argument("paths", nargs="+", type=_path, metavar="PATH")
    _add_peer_options(send_parser, required=False)
    stow = send_parser.add_argument_group(
        "DICOMweb STOW-RS (instead of --host and --called-ae)"
    )
    stow.add_argument(
        "--stow",
        metavar="URL",
        help="send by STOW-RS to this DICOMweb root (…/dicom-web); https verifies "
        "the server with the --tls-ca/--tls-cert/--tls-key/--tls-no-verify options",
    )
    stow.add_argument(
        "--auth",
        metavar="bearer:TOKEN|basic:USER:PASSWORD",
        help="the credential (better: set DICOM_SEND_STOW_AUTH)",
    )
    stow.add_argument(
        "--batch",
        type=_integer,
        default=20,
        metavar="N",
        help="instances per request (20); --associations requests at once",
    )
    send_parser.add_argument("--report", type=_path, help="write the CSV report here")
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
        "--work-dir", type=_path, help="where archives are extracted (system temp)"
    )
    send_parser.add_argument(
        "--retry-time",
        type=_decimal,
        default=RetryPolicy().budget,
        metavar="S",
        help="retry transient failures until nothing has been stored for S seconds "
        f"({RetryPolicy().budget:g}; 0: no retries)",
    )
    send_parser.add_argument(
        "--associations",
        type=_integer,
        default=DEFAULT_ASSOCIATIONS,
        metavar="N",
        help=f"associations at once, each in its own process ({DEFAULT_ASSOCIATIONS};"
        " fewer for small sends)",
    )
    send_parser.add_argument(
        "--resume",
        type=_path,
        metavar="REPORT",
        help="skip instances that an earlier run's report says were stored",
    )
    send_parser.add_argument(
        "--skip-existing",
        action="store_true",
        help="ask the receiver first (C-FIND) and send only what it lacks",
    )
    send_parser.add_argument(
        "--verify",
        action="store_true",
        help="afterwards, ask the receiver (C-FIND) for every instance stored; "
        "fail if one is missing",
    )

    echo_parser = commands.add_parser("echo", help="C-ECHO the receiver")
    _add_peer_options(echo_parser)
    _add_find_parser(commands)
    _add_retrieve_parsers(commands)
    _add_listen_parser(commands)

    demo_parser = commands.add_parser(
        "demo",
        help="send sample data to an embedded receiver",
        description="Start a Storage SCP on 127.0.0.1, send sample data to it and "
        "show the report.",
    )
    demo_parser.add_argument(
        "--out",
        type=_path,
        default=Path("dicom-send-demo"),
        help="folder for inputs, received files and report (./dicom-send-demo)",
    )
    return parser


def _add_find_parser(commands: "argparse._SubParsersAction[_Parser]") -> None:
    parser = commands.add_parser(
        "find",
        help="C-FIND: what the PACS holds",
        description="Query the PACS; matches are written as they arrive.",
    )
    _add_peer_options(parser)
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
    query.add_argument("--date-from", type=_date, metavar="YYYY-MM-DD")
    query.add_argument("--date-to", type=_date, metavar="YYYY-MM-DD")
    query.add_argument(
        "--window-days",
        type=_integer,
        default=15,
        metavar="N",
        help="ask a date range in windows of N days (15)",
    )
    query.add_argument("--modality", help="e.g. CT, MR")
    out = parser.add_argument_group("output")
    out.add_argument(
        "--format",
        choices=[f.value for f in Format],
        help="table (default), json or csv",
    )
    out.add_argument("--out", type=_path, metavar="FILE", help="write here, not stdout")
    out.add_argument(
        "--db",
        metavar="sqlite:///FILE",
        help="also insert the matches into a table of this SQLite database",
    )


def _add_retrieve_parsers(commands: "argparse._SubParsersAction[_Parser]") -> None:
    for name, help_text in (
        ("move", "C-MOVE a patient, study or series to another AE"),
        ("retrieve", "fetch a patient, study or series into a folder"),
    ):
        parser = commands.add_parser(name, help=help_text, description=help_text)
        _add_peer_options(parser)
        what = parser.add_argument_group("what")
        what.add_argument(
            "--level",
            required=True,
            type=str.upper,
            choices=[Level.PATIENT.value, Level.STUDY.value, Level.SERIES.value],
        )
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
        if name == "move":
            what.add_argument(
                "--dest-ae", required=True, help="the AE title the PACS sends to"
            )
            continue
        how = parser.add_argument_group("where")
        _add_filing_options(how)
        how.add_argument(
            "--method",
            choices=["move", "get"],
            default="move",
            help="move: C-MOVE to a listener of ours on --listen-port, which the "
            "PACS must know as --calling-ae (default); get: C-GET",
        )
        how.add_argument(
            "--listen-port",
            type=_integer,
            default=11113,
            metavar="P",
            help="our listener's port for --method move (11113)",
        )
        how.add_argument(
            "--bind",
            default=ALL_INTERFACES,
            help="its address (0.0.0.0: all)",
        )


def _add_filing_options(group: argparse._ActionsContainer) -> None:
    """``--out`` and ``--layout``: where received instances are filed."""
    group.add_argument("--out", type=_path, required=True, help="folder to file into")
    group.add_argument(
        "--layout",
        choices=[lay.value for lay in Layout],
        default=Layout.PATIENT.value,
        help="patient: PatientID/Study/Series/SOP.dcm (default); study; flat",
    )


def _add_listen_parser(commands: "argparse._SubParsersAction[_Parser]") -> None:
    parser = commands.add_parser(
        "listen",
        help="a Storage SCP filing what it receives",
        description="Receive instances and file them under --out until stopped "
        "(Ctrl-C or SIGTERM).",
    )
    parser.add_argument(
        "--port", type=_integer, required=True, help="port to listen on"
    )
    parser.add_argument("--ae-title", default="DICOM-SEND", help="our AE title")
    parser.add_argument(
        "--bind",
        default=ALL_INTERFACES,
        help="address to listen on (0.0.0.0: all)",
    )
    _add_filing_options(parser)
    tls = parser.add_argument_group("TLS")
    tls.add_argument("--tls", action="store_true", help="speak only DICOM TLS")
    tls.add_argument("--tls-profile", metavar="NAME", help="PS3.15 Annex B profile")
    tls.add_argument("--tls-cert", type=_path, metavar="PEM", help="our certificate")
    tls.add_argument("--tls-key", type=_path, metavar="PEM", help="its private key")
    tls.add_argument(
        "--tls-ca",
        type=_path,
        metavar="PEM",
        help="require client certificates issued by these CAs (mutual TLS)",
    )
    tls.add_argument(
        "--tls-key-password-file",
        type=_path,
        metavar="FILE",
        help="the key's password, in a file (or set DICOM_SEND_TLS_KEY_PASSWORD)",
    )


def _date(text: str) -> datetime.date:
    for pattern in ("%Y-%m-%d", "%Y%m%d"):
        try:
            return datetime.datetime.strptime(text, pattern).date()
        except ValueError:
            continue
    raise argparse.ArgumentTypeError(f"not a date (YYYY-MM-DD): {text!r}")


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
            connect_timeout=_timeout(args, "connect"),
            acse_timeout=_timeout(args, "acse"),
            dimse_timeout=_timeout(args, "dimse"),
            network_timeout=_timeout(args, "network"),
            tls=_tls_settings(args),
        ),
    )


def _timeout(args: argparse.Namespace, kind: str) -> float:
    """``--KIND-timeout``, in its range."""
    name = f"{kind}_timeout"
    return seconds(name, getattr(args, name), f"--{kind}-timeout")


def _associations(value: int) -> int:
    return whole("associations", value, "--associations")


def _work_dir(path: Path | None) -> Path | None:
    """``--work-dir``: a folder, made if missing.

    Raises:
        UsageError: It is a file, or cannot be made.
    """
    if path is None:
        return None
    try:
        path.mkdir(parents=True, exist_ok=True)
    except FileExistsError:
        raise UsageError(f"--work-dir {path} is not a folder") from None
    except OSError as exc:
        raise UsageError(f"cannot make the --work-dir {path}: {exc.strerror}") from None
    return path


def _check_writable(
    report: Path | None, inputs: Sequence[Path] = (), *, replaced: bool = False
) -> None:
    """Fail before sending if the report cannot be written or would replace an input.

    Args:
        report: The path given, if any.
        inputs: The inputs it may not replace.
        replaced: The report is written beside and moved over the path: the path
            must be a regular file or not exist (a device or FIFO would be
            replaced by a file).
    """
    if report is None:
        return
    if replaced:
        check_replaceable(report)
    _check_not_an_input(report, inputs)
    try:
        report.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise UsageError(f"cannot write the report {report}: {exc.strerror}") from None
    if report.is_dir() or not os.access(report.parent, os.W_OK):
        raise UsageError(f"cannot write the report {report}")


def _check_not_an_input(report: Path, inputs: Sequence[Path]) -> None:
    """Refuse a report path that would replace an input file.

    The report and its ``.partial`` may not be an input, nor an existing file in
    an input folder other than an earlier report; links count as the file they
    name.

    Raises:
        UsageError: It is.
    """
    for target in (report, report.with_name(report.name + ".partial")):
        if not target.is_file() or is_report(target):
            continue
        where = target.resolve()
        for given in inputs:
            if given.exists() and (
                os.path.samefile(given, target)
                or (given.is_dir() and where.is_relative_to(given.resolve()))
            ):
                raise UsageError(
                    f"--report {report} would overwrite the input {target}"
                )


def _finish(result: RunResult, report: Path | None) -> ExitStatus:
    written = None
    if report is not None:
        try:
            write_csv(result.rows, report)
            written = report
        except ReportError as exc:
            log.error("%s", exc)
    for line in result.summary.lines():
        print(line)
    if written is not None:
        print(f"report: {written}")
    if result.interrupted:
        by = f" by {stopping.name()}" if stopping.name() else ""
        print(f"{PROG}: interrupted{by}", file=sys.stderr)
        return result.exit_status
    return ExitStatus.REPORT_FAILED if report != written else result.exit_status


def _stow_settings(args: argparse.Namespace) -> StowSettings:
    """STOW-RS settings from ``--stow``; TLS options apply to an https URL."""
    if args.host or args.called_ae:
        raise UsageError("--stow sends by DICOMweb: leave out --host and --called-ae")
    if args.tls:
        raise UsageError("--stow takes no --tls: an https URL is TLS")
    secure = args.stow.lower().startswith("https:")
    given = [n for n in _TLS_OPTIONS if n != "tls_profile" and getattr(args, n)]
    if given and not secure:
        raise UsageError(f"--{given[0].replace('_', '-')} needs an https URL")
    tls = _tls_settings(argparse.Namespace(**{**vars(args), "tls": True}))
    credential = args.auth or os.environ.get("DICOM_SEND_STOW_AUTH")
    return StowSettings(
        args.stow,
        auth=parse_auth(credential) if credential else None,
        batch=args.batch,
        parallel=_associations(args.associations),
        timeout=_timeout(args, "dimse"),
        tls=tls if secure else None,
    )


def _run_send(args: argparse.Namespace) -> ExitStatus:
    stow = None
    if args.stow:
        stow = _stow_settings(args)
        peer, settings = None, AssociationSettings(calling_ae=args.calling_ae)
    elif not (args.host and args.called_ae):
        raise UsageError("send needs --host and --called-ae, or --stow URL")
    else:
        peer, settings = _settings(args)
    request = SendRequest(
        paths=tuple(args.paths),
        peer=peer,
        stow=stow,
        association=settings,
        tag=ProvenanceTag(parse_group(args.group), args.creator, args.value),
        work_dir=_work_dir(args.work_dir),
        retry=RetryPolicy(
            budget=seconds("retry_time", args.retry_time, "--retry-time")
        ),
        already_stored=read_stored(args.resume) if args.resume else frozenset(),
        associations=_associations(args.associations),
        skip_existing=args.skip_existing,
        verify=args.verify,
    )
    _check_writable(args.report, request.paths, replaced=True)
    with stopping.handling():
        result = send(request, ProgressPrinter())
        return _finish(result, args.report)


def _run_echo(args: argparse.Namespace) -> ExitStatus:
    from ..transport.association import Client  # noqa: PLC0415 - see _COMMANDS

    peer, settings = _settings(args)
    for risk in risks(settings.tls) if settings.tls is not None else ():
        log.warning("%s", risk)
    try:
        status = Client(peer, settings).echo()
    except AssociationError as exc:
        log.error("%s", exc)
        return ExitStatus.NOTHING_SENT
    print(f"C-ECHO {peer}: {describe(status, Service.ECHO)}")
    return ExitStatus.SUCCESS if status == 0 else ExitStatus.NOTHING_SENT


def _run_demo(args: argparse.Namespace) -> ExitStatus:
    from ..dicom.samples import write_demo_inputs  # noqa: PLC0415 - see _COMMANDS
    from ..pacs.receiver import StorageReceiver  # noqa: PLC0415 - see _COMMANDS

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


def _run_find(args: argparse.Namespace) -> ExitStatus:
    from ..pacs.query import Query, QueryError, find, parse_keys  # noqa: PLC0415 - see _COMMANDS
    from ..transport.association import Client  # noqa: PLC0415 - see _COMMANDS

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
    peer, settings = _settings(args)
    client = Client(peer, settings)
    columns = query.return_keys
    print_rows = args.db is None or args.format is not None or args.out is not None
    fmt = Format(args.format or Format.TABLE)
    with contextlib.ExitStack() as stack:
        writers: list[RowWriter] = []
        if print_rows:
            out = sys.stdout
            if args.out is not None:
                _check_writable(args.out)
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
    log.info("%d matches", count)
    if db is not None:
        print(f"{count} matches into {db} (table {_TABLES[level]})", file=sys.stderr)
    return ExitStatus.SUCCESS


_TABLES = {
    Level.PATIENT: "patients",
    Level.STUDY: "studies",
    Level.SERIES: "series",
    Level.IMAGE: "images",
}


class _RetrieveProgress:
    """Shows a retrieve's sub-operation counts: the first, then every second."""

    def __init__(self, interval: float = 1.0) -> None:
        self._interval = interval
        self._last = -math.inf

    def __call__(self, counts: "SubOperations") -> None:
        now = time.monotonic()
        if now - self._last >= self._interval:
            self._last = now
            print(f"progress: {counts}", file=sys.stderr, flush=True)


def _target(args: argparse.Namespace) -> "Target":
    from ..pacs.retrieve import Target  # noqa: PLC0415 - see _COMMANDS

    return Target(Level(args.level), args.uid, args.study_uid)


def _window(args: argparse.Namespace) -> "TimeWindow | None":
    """``--window``, parsed before anything else happens."""
    from ..pacs.window import TimeWindow  # noqa: PLC0415 - see _COMMANDS

    return TimeWindow.parse(args.window) if args.window else None


def _start_listener(
    stack: contextlib.ExitStack,
    args: argparse.Namespace,
    port: int,
    *,
    ae_title: str,
    tls: ssl.SSLContext | None = None,
) -> "StorageReceiver":
    """Start a listener of ours for ``--out``, ``--layout`` and ``--bind``.

    Raises:
        UsageError: The folder cannot be made, or the port cannot be listened on.
    """
    from ..pacs.receiver import StorageReceiver  # noqa: PLC0415 - see _COMMANDS

    try:
        args.out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise UsageError(
            f"cannot create the folder {args.out}: {exc.strerror}"
        ) from None
    receiver = StorageReceiver(
        args.out,
        ae_title=ae_title,
        layout=Layout(args.layout),
        tls=tls,
        host=args.bind,
        port=port,
    )
    try:
        return stack.enter_context(receiver)
    except OSError as exc:
        raise UsageError(
            f"cannot listen on {args.bind}:{port}: {exc.strerror}"
        ) from None


def _retrieved(result: "RetrieveResult", what: str) -> ExitStatus:

    print(
        f"{what}: {result.counts}"
        + (f"; {result.received} files written" if what == "retrieve" else "")
    )
    if result.complete:
        return ExitStatus.SUCCESS
    if result.status not in (0x0000, 0xB000):
        log.error(
            "%s incomplete: %s after %s",
            what,
            describe(result.status, Service.RETRIEVE),
            result.counts,
        )
    done = result.counts.completed or result.counts.warning
    return ExitStatus.INCOMPLETE if done else ExitStatus.NOTHING_SENT


def _run_move(args: argparse.Namespace) -> ExitStatus:
    from ..pacs.query import QueryError  # noqa: PLC0415 - see _COMMANDS
    from ..pacs.retrieve import RetrieveError, move  # noqa: PLC0415 - see _COMMANDS
    from ..transport.association import Client  # noqa: PLC0415 - see _COMMANDS

    peer, settings = _settings(args)
    target = _target(args)
    window = _window(args)
    client = Client(peer, settings)
    if window is not None:
        window.wait_until_open()
    try:
        result = move(client, target, args.dest_ae, _RetrieveProgress(), verb="move")
    except (AssociationError, RetrieveError, QueryError) as exc:
        log.error("%s", exc)
        return ExitStatus.NOTHING_SENT
    return _retrieved(result, "move")


def _run_retrieve(args: argparse.Namespace) -> ExitStatus:
    from ..pacs.query import QueryError  # noqa: PLC0415 - see _COMMANDS
    from ..pacs.retrieve import RetrieveError, get, move  # noqa: PLC0415 - see _COMMANDS
    from ..transport.association import Client  # noqa: PLC0415 - see _COMMANDS

    peer, settings = _settings(args)
    target = _target(args)
    window = _window(args)
    port = _port(args.listen_port, "--listen-port")
    client = Client(peer, settings)
    if window is not None:
        window.wait_until_open()
    with contextlib.ExitStack() as stack:
        listener = None
        if args.method == "move":
            listener = _start_listener(stack, args, port, ae_title=settings.calling_ae)
        try:
            if listener is None:
                layout = Layout(args.layout)
                result = get(client, target, args.out, layout, _RetrieveProgress())
            else:
                result = move(
                    client,
                    target,
                    settings.calling_ae,
                    _RetrieveProgress(),
                    verb="retrieve",
                )
                result = dataclasses.replace(result, received=len(listener.received))
        except (AssociationError, RetrieveError, QueryError) as exc:
            log.error("%s", exc)
            return ExitStatus.NOTHING_SENT
    return _retrieved(result, "retrieve")


def _port(value: int, option: str) -> int:
    return whole("port", value, option)


def _run_listen(args: argparse.Namespace) -> ExitStatus:
    settings = _tls_settings(args)
    tls = server_context(settings) if settings is not None else None
    title = check_ae_title(args.ae_title, "--ae-title")
    port = _port(args.port, "--port")
    signal.signal(signal.SIGTERM, _interrupt)
    with contextlib.ExitStack() as stack:
        listener = _start_listener(stack, args, port, ae_title=title, tls=tls)
        log.info(
            "filing into %s (%s layout); Ctrl-C or SIGTERM stops",
            args.out,
            args.layout,
        )
        try:
            while True:
                time.sleep(3600)
        except KeyboardInterrupt:
            received = len(listener.received)
            print(f"stopped: {received} instances received", file=sys.stderr)
            return ExitStatus.SUCCESS


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


# Each command imports what only it needs: ``send`` never imports pynetdicom or
# pydicom in this process (its sender process does), so it starts in some 0.1 s.
_COMMANDS = {
    "send": _run_send,
    "echo": _run_echo,
    "find": _run_find,
    "move": _run_move,
    "retrieve": _run_retrieve,
    "listen": _run_listen,
    "demo": _run_demo,
}


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``dicom-send``; return the exit status."""
    args = build_parser().parse_args(argv)
    configure_logging(args.verbose, args.quiet, prefix=PROG)
    try:
        return int(stopping.exit_status(_COMMANDS[args.command](args)))
    except UsageError as exc:
        print(f"{PROG}: error: {exc}", file=sys.stderr)
        return ExitStatus.USAGE
    except KeyboardInterrupt:
        print(f"{PROG}: interrupted", file=sys.stderr)
        return stopping.exit_status(ExitStatus.INTERRUPTED)
