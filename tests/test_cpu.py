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
cpu0 100 50 100 500 20 0 5 5 0 0
cpu1 200 40 100 500 30 0 5 0 0 0
intr 12345 0 0
ctxt 6789
"""


@pytest.fixture
def tick(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> float:
    """:data:`STAT` read in place of ``/proc/stat``; seconds per clock tick."""
    stat = tmp_path / "stat"
    stat.write_text(STAT)
    monkeypatch.setattr(cpu, "_STAT", stat)
    return 1 / os.sysconf("SC_CLK_TCK")


def test_busy_counts_all_but_nice_idle_and_io_wait_on_the_cpus_given(
    tick: float,
) -> None:
    # user, system, softirq and steal count; nice (it gives way), idle and I/O
    # wait do not
    assert cpu.busy_seconds(frozenset({0})) == pytest.approx((210 * tick, 1))
    assert cpu.busy_seconds(frozenset({1})) == pytest.approx((305 * tick, 1))
    assert cpu.busy_seconds(frozenset({0, 1})) == pytest.approx((515 * tick, 2))
    # a CPU the file does not list (offline; a container's view) is not counted
    assert cpu.busy_seconds(frozenset({1, 7})) == pytest.approx((305 * tick, 1))
    assert cpu.busy_seconds(frozenset({7})) is None


@pytest.mark.parametrize(
    "text",
    [
        "cpu0 100 0 100\n",  # too few fields
        "cpu0 100 0 100 x 20 0 5 5 0 0\n",  # not a number
        "",
    ],
)
def test_a_format_not_understood_is_unknown(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, text: str
) -> None:
    stat = tmp_path / "stat"
    stat.write_text(STAT.replace("cpu0 100 50 100 500 20 0 5 5 0 0\n", text))
    monkeypatch.setattr(cpu, "_STAT", stat)
    assert cpu.busy_seconds(frozenset({0})) is None


def test_niced_work_is_busy_when_ours_is_niced_too(
    tick: float, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(os, "nice", lambda increment: 10)
    assert cpu.busy_seconds(frozenset({0, 1})) == pytest.approx((605 * tick, 2))


def test_unreadable_is_unknown(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(cpu, "_STAT", tmp_path / "missing")
    assert cpu.busy_seconds(cpu.usable()) is None


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="/proc/stat: Linux")
def test_busy_rises_as_this_process_works() -> None:
    cpus = cpu.usable()
    before, spent = cpu.busy_seconds(cpus), time.process_time()
    while time.process_time() - spent < 0.3:
        sum(range(1000))
    after = cpu.busy_seconds(cpus)
    assert before is not None and after is not None
    assert after[1] == before[1] == len(cpus)
    assert after[0] - before[0] >= 0.25  # this process's 0.3 s at least, less a tick


@pytest.fixture
def two_cpus() -> Iterator[None]:
    """This process, and what it starts, on two CPUs at most (as CI's machine)."""
    if not hasattr(os, "sched_setaffinity"):
        pytest.skip("no CPU affinity here")
    was = os.sched_getaffinity(0)
    os.sched_setaffinity(0, sorted(was)[:2])
    try:
        yield
    finally:
        os.sched_setaffinity(0, was)


@pytest.fixture
def forking(tmp_path: Path, two_cpus: None) -> Iterator[ExternalPeer]:
    """DCMTK storescp, a process for each association, on the same CPUs."""
    yield from run_storescp(tmp_path, "--fork")


def test_auto_does_not_grow_on_cpus_it_shares_with_the_receiver(
    tmp_path: Path, forking: ExternalPeer
) -> None:
    """On loopback, 4 associations and storescp keep two CPUs busy."""
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
