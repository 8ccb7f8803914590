"""The option groups commands share, their argument types, and the settings they give.

Each group has one function that adds it and one that turns its parsed options
into the settings type it describes; the settings types check the values.
"""

import argparse
import datetime
import os
import re
from pathlib import Path

from ..errors import UsageError
from ..pacs.filing import Layout
from ..pacs.levels import Level
from ..settings import (
    ACSE_TIMEOUT,
    AUTO_ASSOCIATIONS,
    CONNECT_TIMEOUT,
    DIMSE_TIMEOUT,
    LIBRARY_CALLING_AE,
    NETWORK_TIMEOUT,
    PORT,
)
from ..transport.peer import AssociationSettings, Peer
from ..transport.tls import DEFAULT_PROFILE, Profile, TlsSettings

PASSWORD_VARIABLE = "DICOM_SEND_TLS_KEY_PASSWORD"  # noqa: S105 - its name
ALL_INTERFACES = "0.0.0.0"  # noqa: S104 - a listener a PACS must reach
TIMEOUT_OPTIONS = {
    "connect_timeout": "--connect-timeout",
    "acse_timeout": "--acse-timeout",
    "dimse_timeout": "--dimse-timeout",
    "network_timeout": "--network-timeout",
}
"""How ``AssociationSettings`` timeouts are named on the command line."""

# -- argument types


def path(text: str) -> Path:
    """A path argument: any text but the empty one (``Path("")`` is the folder here)."""
    if not text.strip():
        raise argparse.ArgumentTypeError("an empty path names no file")
    return Path(text)


def integer(text: str) -> int:
    """A whole number in ASCII digits (``int()`` takes any script's digits, ``2_3``)."""
    if not re.fullmatch(r"[+-]?[0-9]{1,12}", text.strip()):
        raise argparse.ArgumentTypeError(f"not a whole number: {text!r}")
    return int(text)


def add_count(
    group: argparse._ActionsContainer, flag: str, default: int, metavar: str, help: str
) -> None:
    """Add a whole-number option with a default (its range is checked later)."""
    group.add_argument(flag, type=integer, default=default, metavar=metavar, help=help)


def associations(text: str) -> int | str:
    """``--associations``: ``auto``, or a whole number (its range is checked later)."""
    if text.strip().lower() == AUTO_ASSOCIATIONS:
        return AUTO_ASSOCIATIONS
    try:
        return integer(text)
    except argparse.ArgumentTypeError:
        raise argparse.ArgumentTypeError(
            f"not a whole number or auto: {text!r}"
        ) from None


def decimal(text: str) -> float:
    """A number argument in ASCII (``float()`` takes any script's digits, ``1_0``).

    ``nan`` and ``inf`` pass: the range check names them.
    """
    try:
        if text.isascii() and "_" not in text:
            return float(text)
    except ValueError:
        pass
    raise argparse.ArgumentTypeError(f"not a number: {text!r}")


def date(text: str) -> datetime.date:
    """A date argument: ``YYYY-MM-DD`` or ``YYYYMMDD``."""
    for pattern in ("%Y-%m-%d", "%Y%m%d"):
        try:
            return datetime.datetime.strptime(text, pattern).date()
        except ValueError:
            continue
    raise argparse.ArgumentTypeError(f"not a date (YYYY-MM-DD): {text!r}")


# -- the receiver and the association


def add_peer_options(parser: argparse.ArgumentParser, *, required: bool = True) -> None:
    """The receiver, how we associate with it, and TLS."""
    peer = parser.add_argument_group("receiver and association")
    peer.add_argument("--host", required=required, help="receiver host name or address")
    peer.add_argument(
        "--port", type=integer, default=PORT, help=f"receiver port ({PORT})"
    )
    peer.add_argument("--called-ae", required=required, help="receiver's AE title")
    peer.add_argument(
        "--calling-ae",
        default=LIBRARY_CALLING_AE,
        help=f"our AE title ({LIBRARY_CALLING_AE})",
    )
    for option, default, what in (
        ("--connect-timeout", CONNECT_TIMEOUT, "to open the TCP connection"),
        ("--acse-timeout", ACSE_TIMEOUT, "for association answers"),
        ("--dimse-timeout", DIMSE_TIMEOUT, "for each C-STORE response"),
        ("--network-timeout", NETWORK_TIMEOUT, "of silence on a connection"),
    ):
        peer.add_argument(
            option,
            type=decimal,
            default=default,
            metavar="S",
            help=f"seconds {what} ({default:g})",
        )
    add_tls_options(parser)


def peer(args: argparse.Namespace) -> Peer:
    """``--host``, ``--port`` and ``--called-ae``."""
    return Peer(args.host, args.port, args.called_ae)


def association(args: argparse.Namespace) -> AssociationSettings:
    """``--calling-ae``, the timeouts and TLS."""
    return AssociationSettings.parse(
        args.calling_ae,
        {
            "connect_timeout": args.connect_timeout,
            "acse_timeout": args.acse_timeout,
            "dimse_timeout": args.dimse_timeout,
            "network_timeout": args.network_timeout,
        },
        tls=tls(args),
        labels=TIMEOUT_OPTIONS,
    )


# -- TLS


def add_tls_options(parser: argparse.ArgumentParser, *, listener: bool = False) -> None:
    """``--tls`` and its options: of a client, or of a listener of ours.

    A listener presents ``--tls-cert`` and, with ``--tls-ca``, requires client
    certificates; it verifies no peer, so it has no ``--tls-no-*`` options.
    """
    group = parser.add_argument_group("TLS")
    group.add_argument(
        "--tls",
        action="store_true",
        help="speak only DICOM TLS" if listener else "use DICOM TLS",
    )
    names = ", ".join(p.value for p in Profile)
    group.add_argument(
        "--tls-profile",
        metavar="NAME",
        help="PS3.15 Annex B profile"
        + ("" if listener else f" ({DEFAULT_PROFILE.value}): {names}"),
    )
    if not listener:
        group.add_argument(
            "--tls-ca",
            type=path,
            metavar="PEM",
            help="CA certificates trusted besides the system's",
        )
    group.add_argument(
        "--tls-cert",
        type=path,
        metavar="PEM",
        help="our certificate" if listener else "our certificate (mutual TLS)",
    )
    group.add_argument("--tls-key", type=path, metavar="PEM", help="its private key")
    if listener:
        group.add_argument(
            "--tls-ca",
            type=path,
            metavar="PEM",
            help="require client certificates issued by these CAs (mutual TLS)",
        )
    group.add_argument(
        "--tls-key-password-file",
        type=path,
        metavar="FILE",
        help=f"the key's password, in a file (or set {PASSWORD_VARIABLE})",
    )
    if listener:
        parser.set_defaults(tls_no_verify=False, tls_no_hostname_check=False)
        return
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


def tls_options_given(args: argparse.Namespace) -> list[str]:
    """The ``--tls-*`` options given, in the order of the help."""
    given = {
        "--tls-profile": args.tls_profile,
        "--tls-ca": args.tls_ca,
        "--tls-cert": args.tls_cert,
        "--tls-key": args.tls_key,
        "--tls-key-password-file": args.tls_key_password_file,
        "--tls-no-verify": args.tls_no_verify,
        "--tls-no-hostname-check": args.tls_no_hostname_check,
    }
    return [option for option, value in given.items() if value]


def tls(args: argparse.Namespace) -> TlsSettings | None:
    """``--tls`` and its options; None without ``--tls``.

    Raises:
        UsageError: A ``--tls-*`` option without ``--tls``, or a bad value.
    """
    if not args.tls:
        given = tls_options_given(args)
        if given:
            raise UsageError(f"{given[0]} needs --tls")
        return None
    return tls_of_options(args)


def tls_of_options(args: argparse.Namespace) -> TlsSettings:
    """The ``--tls-*`` options as TLS settings, whether ``--tls`` is given or not.

    The key's password comes from ``--tls-key-password-file``, else from the
    environment variable ``DICOM_SEND_TLS_KEY_PASSWORD``.
    """
    password = os.environ.get(PASSWORD_VARIABLE)
    where = PASSWORD_VARIABLE
    if args.tls_key_password_file is not None:
        password = read_password(args.tls_key_password_file)
        where = f"the key password file {args.tls_key_password_file}"
    return TlsSettings.parse(
        args.tls_profile,
        verify_peer=not args.tls_no_verify,
        check_hostname=not args.tls_no_hostname_check,
        ca_file=args.tls_ca,
        cert=args.tls_cert,
        key=args.tls_key,
        key_password=password,
        labels={"key_password": where},
    )


def read_password(file: Path) -> str:
    """The key password in a file, without its line end.

    Raises:
        UsageError: The file cannot be read, is not UTF-8 text, or is empty.
    """
    try:
        text = file.read_bytes().decode("utf-8")
    except OSError as exc:
        raise UsageError(
            f"cannot read the key password file {file}: {exc.strerror}"
        ) from None
    except UnicodeDecodeError:
        raise UsageError(f"the key password file {file} is not UTF-8 text") from None
    password = text.rstrip("\r\n")
    if not password:
        raise UsageError(f"the key password file {file} is empty")
    return password


# -- what to retrieve, and where to file it


def add_target_options(parser: argparse.ArgumentParser) -> argparse._ArgumentGroup:
    """``--level``, ``--uid``, ``--study-uid`` and ``--window`` of move and retrieve.

    Returns:
        The group, for a command's own options of what to retrieve.
    """
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
    return what


def add_filing_options(group: argparse._ActionsContainer) -> None:
    """``--out`` and ``--layout``: where received instances are filed."""
    group.add_argument("--out", type=path, required=True, help="folder to file into")
    group.add_argument(
        "--layout",
        choices=[lay.value for lay in Layout],
        default=Layout.PATIENT.value,
        help="patient: PatientID/Study/Series/SOP.dcm (default); study; flat",
    )
