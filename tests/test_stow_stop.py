"""A stop during a STOW-RS server's Retry-After: the wait ends, nothing is sent
again, and the instances that were waiting are reported not sent."""

import contextlib
import os
import signal
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from stowserver import StowServer
from test_signals import MAYBE, TERMINATED, launch, processes_of, read_rows, wait_until

from fw_gear_dicom_send.dicom.samples import write_series
from fw_gear_dicom_send.stopping import INTERRUPTED


@pytest.fixture
def mark() -> Iterator[str]:
    """The run's mark (see test_signals); whatever of the run is left is killed."""
    value = uuid.uuid4().hex
    yield value
    for pid in processes_of(value):
        with contextlib.suppress(OSError):
            os.kill(pid, signal.SIGKILL)


def test_sigterm_during_a_retry_after_ends_the_wait(tmp_path: Path, mark: str) -> None:
    """The server answers 503 with Retry-After: 300; SIGTERM then ends the send at
    once (not after the grace), and its instances were not sent, not "may have
    been stored"."""
    write_series(tmp_path / "in", 4, seed="stow-stop", rows=16, columns=16)
    report = tmp_path / "report.csv"
    with StowServer(errors=[(503, 300.0)]) as server:
        proc = launch(
            [
                sys.executable, "-m", "fw_gear_dicom_send", "send",
                str(tmp_path / "in"), f"--stow={server.url}", f"--report={report}",
                "--retry-time=600",
            ],
            mark,
        )  # fmt: skip
        wait_until(lambda: len(server.requests) >= 1)
        time.sleep(0.5)  # the answer came: the send waits its 300 s
        started = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        try:
            _, err = proc.communicate(timeout=30)
        finally:
            proc.kill()
        took = time.monotonic() - started
        assert processes_of(mark) == []
    assert proc.returncode == TERMINATED, err
    assert took < 2  # before the grace (3 s) runs out
    assert "Traceback" not in err
    assert [r.status for r in server.requests] == [503]  # nothing sent again
    assert server.stored == {}
    rows = read_rows(report)
    assert len(rows) == 4
    for row in rows:
        assert row["status"] == "failed"
        assert row["reason"] == INTERRUPTED
        assert not row["reason"].endswith(MAYBE)
