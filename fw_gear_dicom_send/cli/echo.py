"""``dicom-send echo``: C-ECHO the receiver."""

import argparse
import logging

from ..dicom.status_codes import Service, describe
from ..errors import AssociationError
from ..status import ExitStatus
from ..transport.association import Client
from ..transport.tls import risks
from . import options

log = logging.getLogger(__name__)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The options of ``echo``: the receiver's."""
    parser.description = "C-ECHO the receiver: is it there, and does it accept us?"
    options.add_peer_options(parser, awaits="the C-ECHO response")


def run(args: argparse.Namespace) -> ExitStatus:
    """C-ECHO; print the answer."""
    peer, settings = options.peer(args), options.association(args)
    for risk in risks(settings.tls) if settings.tls is not None else ():
        log.warning("%s", risk)
    try:
        status = Client(peer, settings).echo()
    except AssociationError as exc:
        log.error("%s", exc)
        return ExitStatus.NOTHING_SENT
    print(f"C-ECHO {peer}: {describe(status, Service.ECHO)}")
    return ExitStatus.SUCCESS if status == 0 else ExitStatus.NOTHING_SENT
