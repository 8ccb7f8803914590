"""How busy this machine's CPUs are, as ``--associations auto`` reads it."""

import os
import re
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import ExternalPeer, run_storescp

from fw_gear_dicom_send import SendRequest, send
from fw_gear_dicom_send.dicom.samples import write_series
from fw_gear_dicom_send.status import ExitStatus, InstanceStatus
from fw_gear_dicom_send.transport import cpu
from fw_gear_dicom_send.transport.peer import Peer

STAT = """\
cpu  300 0 200 1000 50 0 10 5 0 0
cpu0 100 0 100 500 20 0 5 5 0 0
cpu1 200 0 100 500 30 0 5 0 0 0
intr 12345 0 0
ctxt 6789
"""


def test_busy_counts_all_but_idle_and_io_wait_on_the_cpus_given(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    stat = tmp_path / "stat"
    stat.write_text(STAT)
    monkeypatch.setattr(cpu, "_STAT", stat)
    tick = os.sysconf("SC_CLK_TCK")
    # user, system, softirq and steal count; idle and I/O wait do not
    assert cpu.busy_seconds(frozenset({0})) == pytest.approx(210 / tick)
    assert cpu.busy_seconds(frozenset({1})) == pytest.approx(305 / tick)
    assert cpu.busy_seconds(frozenset({0, 1})) == pytest.approx(515 / tick)
    assert cpu.busy_seconds(frozenset({7})) == 0.0


def test_unreadable_is_unknown(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(cpu, "_STAT", tmp_path / "missing")
    assert cpu.busy_seconds(cpu.usable()) is None


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="/proc/stat: Linux")
def test_busy_rises_as_this_process_works() -> None:
    cpus = cpu.usable()
    assert os.getpid() and cpus
    before, spent = cpu.busy_seconds(cpus), time.process_time()
    while time.process_time() - spent < 0.3:
        sum(range(1000))
    after = cpu.busy_seconds(cpus)
    assert before is not None and after is not None
    assert after - before >= 0.25  # this process's 0.3 s at least, less a tick


@pytest.fixture
def forking(tmp_path: Path) -> Iterator[ExternalPeer]:
    """DCMTK storescp, a process for each association."""
    yield from run_storescp(tmp_path, "--fork")


def test_auto_does_not_grow_on_cpus_it_shares_with_the_receiver(
    tmp_path: Path, forking: ExternalPeer
) -> None:
    """On loopback, 4 associations and storescp keep this machine's CPUs busy."""
    folder = tmp_path / "series"
    write_series(folder, 400, rows=512, columns=512)  # 200 MB
    result = send(
        SendRequest(
            (folder,),
            Peer("127.0.0.1", forking.port, forking.ae_title),
            associations="auto",
        )
    )
    assert result.exit_status is ExitStatus.SUCCESS
    assert {row.status for row in result.rows} == {InstanceStatus.SENT}
    assert re.fullmatch(
        r"4 associations \(this machine's CPUs were busy \(\d+%\)\)",
        result.associations,
    ), result.associations
