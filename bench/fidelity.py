"""What arrives, counted: dicom-send and DCMTK's dcmsend on the conformance corpus.

Every file of pydicom's test data and of pydicom-data is sent, one per run, into
receivers that keep the exact bytes they get (tests/conformance/fidelity.py):

- dicom-send into a receiver of every transfer syntax and into one of uncompressed
  syntaxes only: instances delivered, byte for byte with the provenance element
  inserted, decompressed, and arriving under another UID than the file's;
- dcmsend into the receiver of every syntax: instances delivered, delivered with
  the file's data set bytes, and with its elements (decoded, element by element).

    .venv/bin/python bench/fidelity.py        # about a minute; needs DCMTK's dcmsend
"""

import logging
import shutil
import subprocess
import sys
import time
import warnings
from collections import Counter
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path[:0] = [str(HERE.parent), str(HERE.parent / "tests" / "conformance")]

from fidelity import (  # noqa: E402
    EVERY_SYNTAX,
    UNCOMPRESSED,
    RawReceiver,
    corpus,
    decode,
    differences,
    element_bytes,
    provenance_tags,
    read_whole,
    sop_classes,
    split_part10,
    without_inserts,
)

from fw_gear_dicom_send.sending.engine import SendRequest, send  # noqa: E402
from fw_gear_dicom_send.status import InstanceStatus  # noqa: E402
from fw_gear_dicom_send.transport.peer import Peer  # noqa: E402
from fw_gear_dicom_send.transport.retry import RetryPolicy  # noqa: E402


def _uid_of(content: bytes) -> str:
    ds = read_whole(content)
    if "SOPInstanceUID" in ds:
        return str(ds.SOPInstanceUID)
    return str(ds.file_meta.get("MediaStorageSOPInstanceUID", ""))


def dicom_send(files: list[tuple[str, Path]], scp: RawReceiver) -> Counter[str]:
    counts: Counter[str] = Counter()
    for _, path in files:
        result = send(
            SendRequest(
                (path,),
                Peer("127.0.0.1", scp.port, "STORE-SCP"),
                retry=RetryPolicy(budget=0),
            )
        )
        arrivals = scp.take()
        row = result.rows[0]
        if row.status is not InstanceStatus.SENT or not arrivals:
            continue
        counts["delivered"] += 1
        content = path.read_bytes()
        original = split_part10(content)
        arrival = arrivals[0]
        received = decode(arrival.data, arrival.transfer_syntax)
        if str(received.SOPInstanceUID) != _uid_of(content):
            counts["under another UID"] += 1
        if row.reason.startswith("decompressed"):
            counts["decompressed"] += 1
        elif arrival.transfer_syntax == original.syntax:
            added = provenance_tags(received, read_whole(content))
            syntax = arrival.transfer_syntax
            inserts = [element_bytes(received, t, syntax) for t in added]
            if without_inserts(arrival.data, original.data, inserts) == original.data:
                counts["bytes kept, element inserted"] += 1
    return counts


def dcmsend(files: list[tuple[str, Path]], scp: RawReceiver) -> Counter[str]:
    binary = shutil.which("dcmsend")
    if binary is None:
        sys.exit("dcmsend not installed (apt-get install dcmtk)")
    counts: Counter[str] = Counter()
    for _, path in files:
        subprocess.run(
            [binary, "-aec", "STORE-SCP", "127.0.0.1", str(scp.port), str(path)],
            capture_output=True,
            check=False,
        )
        arrivals = scp.take()
        if not arrivals:
            continue
        counts["delivered"] += 1
        content = path.read_bytes()
        original = split_part10(content)
        if arrivals[0].data == original.data:
            counts["bytes unchanged"] += 1
        received = decode(arrivals[0].data, arrivals[0].transfer_syntax)
        try:
            same = differences(read_whole(content), received) == []
        except Exception:  # an element pydicom cannot write: not the same
            same = False
        if same:
            counts["elements unchanged"] += 1
    return counts


def main() -> None:
    logging.basicConfig(level=logging.CRITICAL)
    warnings.simplefilter("ignore")
    files = corpus()
    classes = sop_classes(files)
    print(f"{len(files)} files")
    modes = (("every syntax", EVERY_SYNTAX), ("uncompressed", UNCOMPRESSED))
    for label, syntaxes in modes:
        with RawReceiver(syntaxes, classes) as scp:
            started = time.monotonic()
            counts = dicom_send(files, scp)
            seconds = time.monotonic() - started
        print(f"dicom-send, receiver of {label}: {dict(counts)} ({seconds:.0f} s)")
    with RawReceiver(EVERY_SYNTAX, classes) as scp:
        started = time.monotonic()
        counts = dcmsend(files, scp)
        seconds = time.monotonic() - started
    print(f"dcmsend, receiver of every syntax: {dict(counts)} ({seconds:.0f} s)")


if __name__ == "__main__":
    main()
