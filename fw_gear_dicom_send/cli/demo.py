"""``dicom-send demo``: send sample data to an embedded receiver, show the report."""

import argparse
import logging
import shutil
from pathlib import Path

from ..dicom.samples import write_demo_inputs
from ..pacs.receiver import StorageReceiver
from ..sending.engine import send
from ..sending.request import SendRequest
from ..status import ExitStatus
from ..transport.peer import AssociationSettings, Peer
from . import options
from .progress import ProgressPrinter
from .report import finish

log = logging.getLogger(__name__)

DEMO_AE = "DEMO-SCP"
"""The embedded receiver's AE title."""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The options of ``demo``: where its files go."""
    parser.description = (
        "Start a Storage SCP on 127.0.0.1, send sample data to it and show the report."
    )
    parser.add_argument(
        "--out",
        type=options.path,
        default=Path("dicom-send-demo"),
        help="folder for inputs, received files and report (./dicom-send-demo)",
    )


def run(args: argparse.Namespace) -> ExitStatus:
    """Write the sample data, send it to a receiver of ours, print the report."""
    out: Path = args.out
    for owned in ("input", "received"):
        shutil.rmtree(out / owned, ignore_errors=True)
    inputs = list(write_demo_inputs(out / "input"))
    log.info("sample data: %s", ", ".join(p.name for p in inputs))
    with StorageReceiver(out / "received", ae_title=DEMO_AE) as receiver:
        request = SendRequest(
            paths=(out / "input",),
            peer=Peer("127.0.0.1", receiver.port, DEMO_AE),
            association=AssociationSettings(),
        )
        result = send(request, ProgressPrinter())
    status = finish(result, out / "report.csv")
    print(f"received: {len(receiver.received)} files in {out / 'received'}")
    return status
