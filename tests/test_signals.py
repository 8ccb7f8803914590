"""Stopped, cancelled or cut off: SIGTERM, SIGINT and SIGKILL to a running send.

The CLI and the gear run as subprocesses, marked by an environment variable that
every process they start inherits: a scan of ``/proc/*/environ`` finds any process
of the run that is left, whoever its parent is now.
"""

import contextlib
import csv
import json
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from conftest import free_port, need, start, wait_for_port
from gearjob import REPO, Gear, Site, old_gear_config, series_zip
from pydicom import dcmread
from stowserver import StowServer
from test_cli import send_args

from fw_gear_dicom_send.dicom.samples import write_series, zip_files
from fw_gear_dicom_send.pacs.receiver import StorageReceiver
from fw_gear_dicom_send.status import ExitStatus

MARK = "DICOM_SEND_TEST_RUN"
MAYBE = "the receiver may have stored it (not counted as stored)"
"""How the reason of a row whose answer never came ends."""
TERMINATED = 143
"""Exit status after SIGTERM (ExitStatus.TERMINATED)."""


class SlowReceiver(StorageReceiver):
    """A Storage SCP that takes ``delay`` seconds over each C-STORE."""

    def __init__(self, out_dir: Path, delay: float, **kwargs: Any) -> None:
        super().__init__(out_dir, **kwargs)
        self.delay = delay

    def _on_store(self, event: Any) -> Any:
        time.sleep(self.delay)
        return super()._on_store(event)

    def stored(self) -> set[str]:
        return {received.sop_instance_uid for received in self.received}


def processes_of(mark: str) -> list[int]:
    """Live processes whose environment carries the run's mark."""
    wanted = f"{MARK}={mark}".encode()
    found = []
    for environ in Path("/proc").glob("[0-9]*/environ"):
        try:
            data = environ.read_bytes()
        except OSError:
            continue  # gone meanwhile, or not ours
        if wanted in data.split(b"\0"):
            found.append(int(environ.parent.name))
    return found


@pytest.fixture
def mark() -> Iterator[str]:
    """The run's mark; whatever of the run is left at the end is killed."""
    value = uuid.uuid4().hex
    yield value
    for pid in processes_of(value):
        with contextlib.suppress(OSError):
            os.kill(pid, signal.SIGKILL)


def launch(args: list[str], mark: str, **kwargs: Any) -> subprocess.Popen[str]:
    return subprocess.Popen(
        args,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, MARK: mark, "PYTHONWARNINGS": "ignore", **kwargs},
        start_new_session=True,  # the test signals its main process, or its group
    )


def wait_until(condition: Any, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.01)


def read_rows(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


@pytest.fixture(scope="module")
def study_zip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("signals")
    files = write_series(folder / "study", 160, seed="signals")
    return zip_files(folder / "study.zip", {f"s/{p.name}": p for p in files})


def check_stopped_run(
    rows: list[dict[str, str]], receiver: SlowReceiver, total: int
) -> list[dict[str, str]]:
    """Every input has its row; the receiver holds what the report says it does.

    Returns:
        The rows whose data went out and whose answer never came.
    """
    assert len(rows) == total
    stored = {r["sop_instance_uid"] for r in rows if r["status"] in ("sent", "warning")}
    maybe = [r for r in rows if r["status"] == "failed" and r["reason"].endswith(MAYBE)]
    others = [r for r in rows if r["status"] == "failed" and r not in maybe]
    assert {r["status"] for r in rows} <= {"sent", "warning", "failed"}
    assert stored and others  # stopped mid-send
    assert {r["reason"] for r in others} == {"interrupted before it was sent"}
    assert all(
        r["reason"].startswith("interrupted after its data went out") for r in maybe
    )
    held = receiver.stored()
    assert stored <= held
    assert held - stored <= {r["sop_instance_uid"] for r in maybe}
    return maybe


@pytest.mark.parametrize(
    ("signum", "group", "status"),
    [
        (signal.SIGTERM, False, TERMINATED),
        (signal.SIGINT, False, ExitStatus.INTERRUPTED),
        (signal.SIGINT, True, ExitStatus.INTERRUPTED),  # Ctrl-C on a terminal
        (signal.SIGTERM, True, TERMINATED),  # systemd, a container
    ],
    ids=["SIGTERM", "SIGINT", "SIGINT-group", "SIGTERM-group"],
)
def test_a_signal_mid_send_answers_what_is_on_the_wire_and_reports(
    tmp_path: Path,
    study_zip: Path,
    mark: str,
    signum: signal.Signals,
    group: bool,
    status: ExitStatus,
) -> None:
    report = tmp_path / "report.csv"
    work = tmp_path / "work"
    work.mkdir()
    with SlowReceiver(tmp_path / "in", 0.05, ae_title="STORE-SCP") as scp:
        proc = launch(
            [
                sys.executable, "-m", "fw_gear_dicom_send",
                *send_args(study_zip, scp.port, "STORE-SCP"),
                f"--report={report}", f"--work-dir={work}",
            ],
            mark,
        )  # fmt: skip
        wait_until(lambda: len(scp.received) >= 20)
        assert list(work.iterdir())  # the zip is extracted there
        started = time.monotonic()
        if group:
            os.killpg(proc.pid, signum)
        else:
            proc.send_signal(signum)
        out, err = proc.communicate(timeout=30)
        took = time.monotonic() - started
        assert processes_of(mark) == []
        held = len(scp.received)
        time.sleep(0.5)
        assert len(scp.received) == held  # nothing goes on sending
    assert "Traceback" not in err
    maybe = check_stopped_run(read_rows(report), scp, 160)
    assert maybe == []  # each answer came within the grace
    assert list(work.iterdir()) == []
    assert proc.returncode == status, err
    assert took < 5
    assert f"dicom-send: interrupted by {signum.name}" in err
    assert "160 files: " in out  # the summary


def test_a_second_signal_stops_at_once(
    tmp_path: Path, study_zip: Path, mark: str
) -> None:
    """The receiver takes 2 s over each instance: the first SIGTERM waits for the
    answers, the second stops at once; the instances on the wire are failed, and
    said to be maybe stored (the receiver does store them)."""
    report = tmp_path / "report.csv"
    work = tmp_path / "work"
    work.mkdir()
    with SlowReceiver(tmp_path / "in", 2.0, ae_title="STORE-SCP") as scp:
        proc = launch(
            [
                sys.executable, "-m", "fw_gear_dicom_send",
                *send_args(study_zip, scp.port, "STORE-SCP"),
                f"--report={report}", f"--work-dir={work}", "--associations=2",
            ],
            mark,
        )  # fmt: skip
        wait_until(lambda: len(scp.received) >= 2)
        time.sleep(0.5)  # the next two are on the wire
        proc.send_signal(signal.SIGTERM)
        time.sleep(0.5)
        started = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=30)
        took = time.monotonic() - started
        assert processes_of(mark) == []
        time.sleep(2.5)  # what the receiver had, it has stored now
    assert proc.returncode == TERMINATED, err
    assert took < 2
    assert "Traceback" not in err
    assert list(work.iterdir()) == []
    rows = read_rows(report)
    maybe = check_stopped_run(rows, scp, 160)
    assert len(maybe) == 2  # one on each association
    assert {r["sop_instance_uid"] for r in maybe} <= scp.stored()

    # They count as not stored: --resume sends them again, and says so.
    second = tmp_path / "second.csv"
    with StorageReceiver(tmp_path / "again", ae_title="STORE-SCP") as again:
        resumed = subprocess.run(
            [
                sys.executable, "-m", "fw_gear_dicom_send",
                *send_args(study_zip, again.port, "STORE-SCP"),
                f"--report={second}", f"--resume={report}",
            ],
            capture_output=True, text=True, timeout=60, check=False,
        )  # fmt: skip
    assert resumed.returncode == ExitStatus.SUCCESS, resumed.stderr
    resent = {r["sop_instance_uid"]: r for r in read_rows(second)}
    for row in maybe:
        assert row["sop_instance_uid"] in {r.sop_instance_uid for r in again.received}
        assert resent[row["sop_instance_uid"]]["status"] == "sent"
        assert "earlier run" not in resent[row["sop_instance_uid"]]["reason"]


def test_answers_that_do_not_come_are_waited_for_a_few_seconds_only(
    tmp_path: Path, study_zip: Path, mark: str
) -> None:
    """The receiver takes 4 s over each instance: one SIGTERM waits a few seconds
    for the answers, then stops; the instances on the wire may have been stored."""
    report = tmp_path / "report.csv"
    with SlowReceiver(tmp_path / "in", 4.0, ae_title="STORE-SCP") as scp:
        proc = launch(
            [
                sys.executable, "-m", "fw_gear_dicom_send",
                *send_args(study_zip, scp.port, "STORE-SCP"),
                f"--report={report}", "--associations=2",
            ],
            mark,
        )  # fmt: skip
        wait_until(lambda: len(scp.received) >= 2)
        time.sleep(0.5)  # the next two are on the wire
        started = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=30)
        took = time.monotonic() - started
        assert processes_of(mark) == []
        maybe = check_stopped_run(read_rows(report), scp, 160)
    assert proc.returncode == TERMINATED, err
    assert 1.5 < took < 5
    assert len(maybe) == 2


def test_sigkill_to_the_main_process_leaves_nothing_sending(
    tmp_path: Path, study_zip: Path, mark: str
) -> None:
    with SlowReceiver(tmp_path / "in", 0.05, ae_title="STORE-SCP") as scp:
        proc = launch(
            [
                sys.executable, "-m", "fw_gear_dicom_send",
                *send_args(study_zip, scp.port, "STORE-SCP"),
            ],
            mark,
        )  # fmt: skip
        wait_until(lambda: len(scp.received) >= 20)
        assert len(processes_of(mark)) >= 3  # main, sender, workers
        proc.send_signal(signal.SIGKILL)
        proc.communicate(timeout=30)
        killed = time.monotonic()
        wait_until(lambda: processes_of(mark) == [], timeout=3)
        assert time.monotonic() - killed < 3
        time.sleep(0.2)  # a C-STORE being handled ends
        held = len(scp.received)
        time.sleep(1.0)
        assert len(scp.received) == held
    assert held < 160


def write_config(gear: Gear) -> None:
    config = {
        "config": gear.config,
        "inputs": gear.inputs,
        "destination": gear.destination,
        "job": {"id": "job-1"},
    }
    (gear.folder / "config.json").write_text(json.dumps(config))


def test_the_gear_under_sigterm_reports_and_empties_work(
    gear: Gear, site: Site, tmp_path: Path, mark: str
) -> None:
    """A subject's session of two zips, downloaded to work/ and extracted there;
    the completion report is attached to the session."""
    for seed in ("first", "second"):
        acquisition = site.standin.acquisition(site.session, seed)
        site.standin.add_file(acquisition, series_zip(tmp_path, 60, seed))
    with SlowReceiver(tmp_path / "in", 0.05, ae_title="STORE-SCP") as scp:
        gear.config = old_gear_config(scp.port)
        gear.destination = {"type": "subject", "id": site.subject}
        write_config(gear)
        proc = launch(
            [sys.executable, str(REPO / "run.py")],
            mark,
            FLYWHEEL=str(gear.folder),
            FLYWHEEL_SDK_TOTAL_RETRIES="0",
        )
        wait_until(lambda: len(scp.received) >= 20)
        started = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=30)
        took = time.monotonic() - started
        assert processes_of(mark) == []
    assert proc.returncode == TERMINATED, out
    assert took < 5
    assert "Traceback" not in out + err
    assert "interrupted" in out
    assert list((gear.folder / "work").iterdir()) == []
    (report,) = gear.reports()
    (upload,) = site.standin.uploads
    assert (upload.container_id, upload.name) == (site.session, report.name)
    assert upload.content == report.read_bytes()
    rows = gear.report_rows()
    assert [r["Images in Series"] for r in rows] == ["60", "60"]
    sent = sum(int(r["Images Sent"]) for r in rows)
    assert 0 < sent < 120
    instances = gear.instance_rows()
    assert len(instances) == 120
    stored = [r for r in instances if r["status"] == "sent"]
    assert len(stored) == sent
    assert {r["sop_instance_uid"] for r in stored} <= scp.stored()


def test_a_receiver_restarted_within_the_retry_time_gets_everything(
    tmp_path: Path, mark: str
) -> None:
    """storescp killed after 30 instances, started again 3 s later on its port.

    Before it first runs, a send to its port is refused at once: a receiver that
    was never reached is a configuration error, not retried.
    """
    binary = need("storescp", "dcmtk")
    paths = write_series(tmp_path / "study", 200, seed="restarted")
    out = tmp_path / "received"
    out.mkdir()
    port = free_port()
    command = [binary, "+xa", "-aet", "STORESCP", "-od", str(out), str(port)]

    started = time.monotonic()
    refused = subprocess.run(
        [
            sys.executable, "-m", "fw_gear_dicom_send",
            *send_args(tmp_path / "study", port, "STORESCP"), "--retry-time=30",
        ],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert time.monotonic() - started < 10
    assert refused.returncode == ExitStatus.NOTHING_SENT
    assert f"127.0.0.1:{port} (Connection refused)" in refused.stderr
    assert "trying again" not in refused.stderr

    def storescp(log: str) -> subprocess.Popen[bytes]:
        peer = start(command, tmp_path / log)
        wait_for_port(port, peer)
        return peer

    first = storescp("first.log")
    report = tmp_path / "report.csv"
    proc = launch(
        [
            sys.executable, "-m", "fw_gear_dicom_send",
            *send_args(tmp_path / "study", port, "STORESCP"),
            f"--report={report}", "--retry-time=30",
        ],
        mark,
    )  # fmt: skip
    second = None
    try:
        wait_until(lambda: sum(1 for _ in out.iterdir()) >= 30)
        first.kill()
        first.wait()
        time.sleep(3)
        second = storescp("second.log")
        _, err = proc.communicate(timeout=90)
    finally:
        proc.kill()
        for peer in (first, second):
            if peer is not None:
                peer.terminate()
                peer.wait()
    assert proc.returncode == ExitStatus.SUCCESS, err
    rows = read_rows(report)
    assert len(rows) == 200
    assert {r["status"] for r in rows} == {"sent"}
    received = {str(dcmread(p).SOPInstanceUID) for p in out.iterdir()}
    assert received == {str(dcmread(p).SOPInstanceUID) for p in paths}
    assert "trying again" in err


class SlowStow(StowServer):
    """A STOW-RS server that takes a while over each request."""

    def _post(self, handler: Any) -> None:
        time.sleep(0.3)
        super()._post(handler)


def test_sigterm_mid_stow(tmp_path: Path, study_zip: Path, mark: str) -> None:
    report = tmp_path / "report.csv"
    with SlowStow() as server:
        proc = launch(
            [
                sys.executable, "-m", "fw_gear_dicom_send", "send", str(study_zip),
                f"--stow={server.url}", "--batch=5", "--associations=2",
                f"--report={report}",
            ],
            mark,
        )  # fmt: skip
        wait_until(lambda: len(server.stored) >= 20)
        started = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=30)
        took = time.monotonic() - started
        assert processes_of(mark) == []
        held = set(server.stored)
    assert "Traceback" not in err
    rows = read_rows(report)
    assert len(rows) == 160
    sent = {r["sop_instance_uid"] for r in rows if r["status"] == "sent"}
    maybe = {r["sop_instance_uid"] for r in rows if r["reason"].endswith(MAYBE)}
    assert sent and sent <= held and held - sent <= maybe
    assert len(sent) < 160
    assert proc.returncode == TERMINATED, err
    assert took < 5
