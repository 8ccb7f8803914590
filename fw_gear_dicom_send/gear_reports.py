"""The names and header of the gear's two reports, and how one leads to the other.

The gear writes, per run, a completion report (one row per Flywheel file,
``dicom-send_report-…_<time>.csv``) and the per-instance report
(``dicom-send_instances_<time>.csv``, the command line's report) with the same
time. The gear writes them; the command line, given the completion report to
resume from, points to the instance report beside it.
"""

import re
from pathlib import Path

__all__ = [
    "COMPLETION_COLUMNS",
    "COMPLETION_PREFIX",
    "INSTANCE_REPORT_PREFIX",
    "TIME_FORMAT",
    "instance_report_of",
    "is_completion_report",
]

COMPLETION_COLUMNS = (
    "Acquisition ID",
    "FW Path",
    "Filename",
    "Images in Series",
    "Images Sent",
    "Status",
)
"""The completion report's columns, as the gear has always documented them."""
COMPLETION_PREFIX = "dicom-send_report-"
INSTANCE_REPORT_PREFIX = "dicom-send_instances_"
TIME_FORMAT = "%Y-%m-%d_%H-%M-%S"
"""The run's start time at the end of both reports' names."""
_TIME = re.compile(r"_(\d{4}-\d\d-\d\d_\d\d-\d\d-\d\d)\.csv$")
_HEADER_BYTES = 200


def is_completion_report(path: Path) -> bool:
    """Whether ``path`` is a regular file starting with the completion report's header.

    A FIFO or device is not opened (opening a FIFO to read waits for a writer).
    """
    header = ",".join(COMPLETION_COLUMNS)
    try:
        if not path.is_file():
            return False
        with open(path, "rb") as f:
            first = f.read(_HEADER_BYTES).split(b"\n", 1)[0].rstrip(b"\r")
    except OSError:
        return False
    return first.decode("utf-8", "replace").lstrip("\ufeff") == header


def instance_report_of(completion: Path) -> Path:
    """The per-instance report written with a completion report, by its time.

    The name it has; the file need not exist. Without a time in the name, the
    pattern ``dicom-send_instances_<time>.csv`` beside it.
    """
    found = _TIME.search(completion.name)
    when = found.group(1) if found else "<time>"
    return completion.with_name(f"{INSTANCE_REPORT_PREFIX}{when}.csv")
