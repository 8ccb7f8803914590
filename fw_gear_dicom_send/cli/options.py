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
from ..sending.request import CommitSettings
from ..settings import (
    ACSE_TIMEOUT,
    AUTO_ASSOCIATIONS,
    COMMIT_LISTEN_PORT,
    COMMIT_TIMEOUT,
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
PATHS_HELP = (
    "DICOM files, folders (searched recursively) and zip/tar archives, "
    "also inside folders and archives"
)
"""The help of ``send``'s ``PATH...``."""

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


class _Noted(argparse.Action):
    """Stores the value, and notes in ``given_options`` that the option was given."""

    def __call__(
        self,
        parser: argparse.ArgumentParser,
        namespace: argparse.Namespace,
        values: object,
        option_string: str | None = None,
    ) -> None:
        setattr(namespace, self.dest, values)
        given: frozenset[str] = getattr(namespace, "given_options", frozenset())
        namespace.given_options = given | {self.option_strings[0]}


def given(args: argparse.Namespace, option: str) -> bool:
    """Whether a whole-number option (:func:`add_count`) was given, not defaulted."""
    return option in getattr(args, "given_options", frozenset())


def add_count(
    group: argparse._ActionsContainer, flag: str, default: int, metavar: str, help: str
) -> None:
    """Add a whole-number option with a default (its range is checked later)."""
    group.add_argument(
        flag,
        type=integer,
        default=default,
        metavar=metavar,
        help=help,
        action=_Noted,
    )


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


def add_peer_options(
    parser: argparse.ArgumentParser,
    *,
    required: bool = True,
    awaits: str = "each C-STORE response",
) -> None:
    """The receiver, how we associate with it, and TLS.

    Args:
        parser: The command's parser.
        required: ``--host`` and ``--called-ae`` must be given.
        awaits: What ``--dimse-timeout`` waits for in this command
            (``the C-ECHO response``).
    """
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
        ("--dimse-timeout", DIMSE_TIMEOUT, f"for {awaits}"),
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


STOW_ONLY = ("--batch",)
"""Options of a STOW-RS send, refused with a DIMSE association."""


def association(args: argparse.Namespace) -> AssociationSettings:
    """``--calling-ae``, the timeouts and TLS.

    Raises:
        UsageError: A STOW-RS option given (``--batch`` without ``--stow``), or a
            bad value.
    """
    for option in STOW_ONLY:
        if given(args, option):
            raise UsageError(
                f"{option} needs --stow (instances per STOW-RS request); "
                "C-STORE sends each instance in a request of its own"
            )
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
        help=f"PS3.15 Annex B profile ({DEFAULT_PROFILE.value}): {names}",
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


# -- Storage Commitment


def add_commit_options(parser: argparse.ArgumentParser, *, flag: bool) -> None:
    """``--commit-port`` and ``--commit-timeout``, and ``--commit`` if ``flag``."""
    group = parser.add_argument_group("Storage Commitment")
    if flag:
        group.add_argument(
            "--commit",
            action="store_true",
            help="afterwards, ask the receiver to commit to every instance stored "
            "(Storage Commitment, N-ACTION); fail if one is not committed",
        )
    group.add_argument(
        "--commit-port",
        type=integer,
        default=COMMIT_LISTEN_PORT,
        metavar="PORT",
        help="listen here for the receiver's event reports: the port it knows our "
        f"AE title by ({COMMIT_LISTEN_PORT}; 0: only on our own association)",
    )
    group.add_argument(
        "--commit-timeout",
        type=decimal,
        default=COMMIT_TIMEOUT,
        metavar="S",
        help=f"seconds to wait for the event reports ({COMMIT_TIMEOUT:g})",
    )


def commit(args: argparse.Namespace) -> CommitSettings:
    """``--commit-port`` and ``--commit-timeout``."""
    return CommitSettings.parse(
        args.commit_port,
        args.commit_timeout,
        {"port": "--commit-port", "timeout": "--commit-timeout"},
    )
