"""``dicom-send listen``: a Storage SCP filing what it receives until stopped."""

import argparse
import contextlib
import logging
import signal
import ssl
import sys
import time
from pathlib import Path

from ..errors import UsageError
from ..pacs.filing import Layout
from ..pacs.receiver import StorageReceiver
from ..settings import LISTEN_AE_TITLE, whole
from ..status import ExitStatus
from ..transport.peer import check_ae_title
from ..transport.tls_context import server_context
from ..words import count
from . import options, targets

log = logging.getLogger(__name__)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The options of ``listen``: where to listen, where to file, TLS."""
    parser.description = (
        "Receive instances and file them under --out until stopped (Ctrl-C or SIGTERM)."
    )
    parser.add_argument(
        "--port", type=options.integer, required=True, help="port to listen on"
    )
    parser.add_argument(
        "--ae-title", default=LISTEN_AE_TITLE, help=f"our AE title ({LISTEN_AE_TITLE})"
    )
    parser.add_argument(
        "--bind",
        default=options.ALL_INTERFACES,
        help="address to listen on (0.0.0.0: all)",
    )
    targets.add_filing_options(parser)
    options.add_tls_options(parser, listener=True)


def run(args: argparse.Namespace) -> ExitStatus:
    """Listen until Ctrl-C or SIGTERM; print how many instances came."""
    settings = options.tls(args)
    tls = server_context(settings) if settings is not None else None
    title = check_ae_title(args.ae_title, "--ae-title")
    port = whole("port", args.port, "--port")
    signal.signal(signal.SIGTERM, _interrupt)
    with contextlib.ExitStack() as stack:
        listener = start_listener(
            stack,
            args.out,
            Layout(args.layout),
            args.bind,
            port,
            ae_title=title,
            tls=tls,
        )
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
            print(f"stopped: {count(received, 'instance')} received", file=sys.stderr)
            return ExitStatus.SUCCESS


def start_listener(
    stack: contextlib.ExitStack,
    out: Path,
    layout: Layout,
    bind: str,
    port: int,
    *,
    ae_title: str,
    tls: ssl.SSLContext | None = None,
) -> StorageReceiver:
    """Start a listener of ours filing into ``out``, stopped when ``stack`` closes.

    Raises:
        UsageError: The folder cannot be made, or the port cannot be listened on.
    """
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise UsageError(f"cannot create the folder {out}: {exc.strerror}") from None
    receiver = StorageReceiver(
        out, ae_title=ae_title, layout=layout, tls=tls, host=bind, port=port
    )
    try:
        return stack.enter_context(receiver)
    except OSError as exc:
        raise UsageError(f"cannot listen on {bind}:{port}: {exc.strerror}") from None


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt
