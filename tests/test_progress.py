"""Progress: a bar on a terminal, periodic log lines otherwise."""

import io
import logging
import re

import pytest

from fw_gear_dicom_send import Progress
from fw_gear_dicom_send.cli.progress import ProgressPrinter


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_a_bar_on_a_terminal() -> None:
    stream = Terminal()
    show = ProgressPrinter(stream)
    show(Progress(1, 4, 1_000_000, 4_000_000, 0.5))
    show(Progress(4, 4, 4_000_000, 4_000_000, 1.0))
    drawn = re.split(
        r"[\r\n]+", re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", stream.getvalue())
    )
    last = [line for line in drawn if "instances" in line][-1]
    assert last.endswith(" 4/4 instances, 4.0/4.0 MB, 4 images/s, 0:00:00 left")
    assert last.startswith("━")


@pytest.mark.parametrize(("interval", "lines"), [(3600, 0), (0, 9)])
def test_log_lines_otherwise(
    interval: float, lines: int, caplog: pytest.LogCaptureFixture
) -> None:
    stream = io.StringIO()
    show = ProgressPrinter(stream, interval=interval)
    with caplog.at_level(logging.INFO, logger="fw_gear_dicom_send.cli.progress"):
        for done in range(1, 11):
            show(Progress(done, 10, done, 10, 1.0))
    assert stream.getvalue() == ""
    messages = [r.getMessage() for r in caplog.records]
    assert len(messages) == lines  # the final count is left to the summary
    if lines:
        assert messages[0] == "progress: 1/10 instances, 0.0/0.0 MB, 1 images/s"
