"""The session export that streams: parallel downloads, sending while downloading,
the work folder bounded.

The gear runs as a subprocess against the stand-in (the real flywheel-sdk over
HTTP), which serves each download stream at a set bandwidth and answers late; the
work folder's bound is checked in-process, by polling the disk while the engine
sends (the downloads through the same code as the gear's).
"""

import os
import re
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from conftest import ExternalPeer
from gearjob import REPO, Gear, Site, old_gear_config
from standin import StandIn
from test_signals import (
    TERMINATED,
    SlowReceiver,
    launch,
    mark,  # noqa: F401 - the fixture
    processes_of,
    wait_until,
    write_config,
)

from fw_gear_dicom_send.dicom.samples import (
    bundled,
    copy_as_new,
    write_series,
    zip_files,
)
from fw_gear_dicom_send.pacs.receiver import StorageReceiver
from fw_gear_dicom_send.progress import LOG_INTERVAL
from fw_gear_dicom_send.sending.engine import send
from fw_gear_dicom_send.sending.request import SendRequest
from fw_gear_dicom_send.status import InstanceStatus
from fw_gear_dicom_send.transport.peer import Peer

MB = 1_000_000


class DiskPeak:
    """Polls a folder's size (bytes of the files under it) in a thread."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.peak = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._poll, daemon=True)

    def _size(self) -> int:
        total = 0
        for root, _, files in os.walk(self.folder):
            for name in files:
                try:
                    total += os.stat(os.path.join(root, name)).st_size
                except OSError:
                    continue  # deleted meanwhile
        return total

    def _poll(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, self._size())
            time.sleep(0.002)

    def __enter__(self) -> "DiskPeak":
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


class FirstArrival:
    """When the first instance reached a receiver (polled in a thread)."""

    def __init__(self, arrived: Callable[[], bool]) -> None:
        self.at: float | None = None
        self._arrived = arrived
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._poll, daemon=True)

    def _poll(self) -> None:
        while not self._stop.is_set() and self.at is None:
            if self._arrived():
                self.at = time.monotonic()
            time.sleep(0.005)

    def __enter__(self) -> "FirstArrival":
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


def build_session(
    site: Site, folder: Path, zips: int, images: int, loose: int, size: int = 128
) -> dict[str, int]:
    """Zip acquisitions and one of loose files; the instances of each file name."""
    counts: dict[str, int] = {}
    for number in range(zips):
        seed = f"zip{number}"
        acquisition = site.standin.acquisition(site.session, seed)
        paths = write_series(folder / seed, images, seed=seed, rows=size, columns=size)
        archive = zip_files(
            folder / f"{seed}.zip", {f"{seed}/{p.name}": p for p in paths}
        )
        site.standin.add_file(acquisition, archive)
        counts[archive.name] = images
    if loose:
        acquisition = site.standin.acquisition(site.session, "loose")
        for path in write_series(
            folder / "loose", loose, seed="loose", rows=size, columns=size
        ):
            site.standin.add_file(acquisition, path)
            counts[path.name] = 1
    return counts


def last_download(standin: StandIn) -> float:
    return max(
        r.at for r in standin.requests if r.method == "GET" and "/files/" in r.path
    )


def test_downloads_overlap_and_sending_starts_before_the_last_download(
    gear: Gear, site: Site, tmp_path: Path, receiver: StorageReceiver
) -> None:
    """A slow stand-in (0.25 MB/s a stream, 30 ms before each answer): four files
    download at once, and the first instance is stored while files are still
    downloading; one file that fails for good (HTTP 404) is Failed alone."""
    counts = build_session(
        site, tmp_path / "data", zips=4, images=12, loose=16, size=256
    )
    site.standin.fail("zip2.zip", forever=404)
    site.standin.bandwidth = 0.25 * MB
    site.standin.latency = 0.03
    gear.config = old_gear_config(receiver.port)
    gear.destination = {"type": "session", "id": site.session}
    with FirstArrival(lambda: bool(receiver.received)) as first:
        result = gear.run()
    assert result.returncode == 1, result.stdout  # incomplete: one file failed
    assert site.standin.most_active == 4
    assert first.at is not None
    assert first.at < last_download(site.standin), result.stdout
    rows = {r["Filename"]: r for r in gear.report_rows()}
    assert set(rows) == set(counts)
    for name, images in counts.items():
        if name == "zip2.zip":
            assert rows[name]["Status"] == "Failed"
            assert rows[name]["Images Sent"] == "0"
            continue
        assert rows[name]["Status"] == "Complete", rows[name]
        assert rows[name]["Images Sent"] == str(images)
    failed = [r for r in gear.instance_rows() if r["status"] == "failed"]
    assert [(r["file"].rsplit("/", 1)[-1], r["reason"]) for r in failed] == [
        ("zip2.zip", "download failed: HTTP 404 injected failure 404")
    ]
    assert len(receiver.received) == sum(counts.values()) - counts["zip2.zip"]
    assert "download of zip2.zip failed" not in result.stdout  # 404: not retried
    assert list((gear.folder / "work").iterdir()) == []


def test_a_slow_stand_in_with_one_stream(
    gear: Gear, site: Site, tmp_path: Path, receiver: StorageReceiver
) -> None:
    """download_concurrency 1 downloads one file at a time, still sending while
    downloading; every file is complete."""
    counts = build_session(
        site, tmp_path / "data", zips=2, images=10, loose=10, size=256
    )
    site.standin.bandwidth = 0.5 * MB
    site.standin.latency = 0.05
    gear.config = old_gear_config(receiver.port, download_concurrency=1)
    gear.destination = {"type": "session", "id": site.session}
    with FirstArrival(lambda: bool(receiver.received)) as first:
        result = gear.run()
    assert result.returncode == 0, result.stdout
    assert site.standin.most_active == 1
    assert first.at is not None and first.at < last_download(site.standin)
    assert [r["Status"] for r in gear.report_rows()] == ["Complete"] * len(counts)
    assert len(receiver.received) == sum(counts.values())


def test_the_downloads_progress_is_a_log_line_every_few_seconds(
    gear: Gear, site: Site, tmp_path: Path, receiver: StorageReceiver
) -> None:
    """Downloads that take longer than the meter's interval: its log lines count
    files and MB (no bar: the gear's log is no terminal)."""
    counts = build_session(
        site, tmp_path / "data", zips=0, images=0, loose=12, size=256
    )
    size = sum(p.stat().st_size for p in (tmp_path / "data" / "loose").iterdir())
    site.standin.bandwidth = size / (LOG_INTERVAL + 2)  # one stream: ~7 s
    gear.config = old_gear_config(receiver.port, download_concurrency=1)
    gear.destination = {"type": "session", "id": site.session}
    result = gear.run()
    assert result.returncode == 0, result.stdout
    assert len(receiver.received) == sum(counts.values())
    lines = re.findall(
        r"progress: (\d+)/12 files, ([\d.]+)/([\d.]+) MB, \d+ files/s", result.stdout
    )
    assert lines, result.stdout
    done, megabytes, total = lines[0]
    assert 0 < int(done) < 12
    assert float(total) == round(size / 1e6, 1)
    assert 0 < float(megabytes) < float(total)


def test_a_job_cancelled_mid_pipeline(
    gear: Gear,
    site: Site,
    tmp_path: Path,
    mark: str,  # noqa: F811 - the fixture
) -> None:
    """SIGTERM while files are downloading and instances are on the wire: the
    gear stops within the grace, leaves no process, no download streaming and
    nothing in work/, and writes both reports, every file in them."""
    counts = build_session(
        site, tmp_path / "data", zips=3, images=15, loose=20, size=256
    )
    site.standin.bandwidth = 0.25 * MB
    site.standin.latency = 0.02
    with SlowReceiver(tmp_path / "in", 0.02, ae_title="STORE-SCP") as scp:
        gear.config = old_gear_config(scp.port)
        gear.destination = {"type": "session", "id": site.session}
        write_config(gear)
        proc = launch(
            [sys.executable, str(REPO / "run.py")],
            mark,
            FLYWHEEL=str(gear.folder),
            FLYWHEEL_SDK_TOTAL_RETRIES="0",
        )
        # Both at once: instances on the wire, and a download going on (between
        # two downloads, none is, for a moment).
        wait_until(lambda: len(scp.received) >= 3 and site.standin.active > 0)
        started = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=30)
        took = time.monotonic() - started
        assert processes_of(mark) == []
        # No download left streaming: the stand-in sees the client gone at its next
        # write or two (one 64 KB chunk per 0.26 s at this bandwidth).
        wait_until(lambda: site.standin.active == 0, timeout=3)
        stored = len(scp.received)
    assert proc.returncode == TERMINATED, out
    assert took < 5
    assert "Traceback" not in out + err
    assert list((gear.folder / "work").iterdir()) == []
    rows = {r["Filename"]: r for r in gear.report_rows()}
    assert set(rows) == set(counts)
    assert sum(int(r["Images Sent"]) for r in rows.values()) == stored
    assert any(r["Status"] != "Complete" for r in rows.values())
    instances = gear.instance_rows()
    assert sum(r["status"] == "sent" for r in instances) == stored
    assert 0 < stored < sum(counts.values())


@pytest.fixture(params=["in-process", "storescp"])
def any_receiver(
    request: pytest.FixtureRequest, tmp_path: Path
) -> Iterator[tuple[int, str, Callable[[], int]]]:
    if request.param == "storescp":
        peer: ExternalPeer = request.getfixturevalue("storescp")
        yield peer.port, peer.ae_title, lambda: sum(1 for _ in peer.out_dir.iterdir())
        return
    with StorageReceiver(tmp_path / "scp", ae_title="STORE-SCP") as scp:
        yield scp.port, "STORE-SCP", lambda: len(scp.received)


def test_sop_classes_and_syntaxes_first_seen_late(
    gear: Gear,
    site: Site,
    tmp_path: Path,
    any_receiver: tuple[int, str, Callable[[], int]],
) -> None:
    """CT first (explicit little endian), then, downloaded late, MR in explicit
    little endian, RLE and JPEG baseline, a big-endian MR and an RT dose: all
    stored."""
    port, ae_title, stored = any_receiver
    counts = build_session(site, tmp_path / "data", zips=2, images=20, loose=0)
    late = site.standin.acquisition(site.session, "late")
    extra = tmp_path / "late"
    for number, name in enumerate(
        (
            "MR_small.dcm",
            "MR_small_RLE.dcm",
            "SC_rgb_jpeg_gdcm.dcm",
            "MR_small_bigendian.dcm",
            "rtdose.dcm",
            "CT_small.dcm",
        )
    ):
        path = copy_as_new(bundled(name), extra / f"late{number}-{name}", "late")
        site.standin.add_file(late, path)
        counts[path.name] = 1
    site.standin.bandwidth = 2 * MB
    site.standin.latency = 0.02
    gear.config = old_gear_config(port, called_ae=ae_title)
    gear.destination = {"type": "session", "id": site.session}
    result = gear.run()
    assert result.returncode == 0, result.stdout
    rows = {r["Filename"]: r for r in gear.report_rows()}
    assert {name: r["Status"] for name, r in rows.items()} == dict.fromkeys(
        counts, "Complete"
    )
    assert stored() == sum(counts.values())


def test_the_work_folder_stays_within_its_budget(
    site: Site, tmp_path: Path, receiver: StorageReceiver
) -> None:
    """Downloads (through the gear's code) and archive members take their bytes
    from the room: with a 2 MB budget, a session of 23 MB of instances never fills
    the work folder beyond it (polled on disk), and every instance is stored."""
    import flywheel

    from fw_gear_dicom_send.gear.downloads import Downloads, destinations
    from fw_gear_dicom_send.gear.files import ContainerRef
    from fw_gear_dicom_send.gear.flywheel import Hierarchy

    build_session(site, tmp_path / "data", zips=5, images=30, loose=30, size=256)
    site.standin.bandwidth = 20 * MB
    client = flywheel.Client(site.standin.api_key)
    hierarchy = Hierarchy(client)
    files = hierarchy.dicom_files(ContainerRef("session", site.session))
    work = tmp_path / "work"
    paths = destinations(files, work / "downloads")
    budget = 2 * MB
    downloads = Downloads(hierarchy, files, paths, 10, 4)
    request = SendRequest(
        paths=tuple(paths),
        peer=Peer("127.0.0.1", receiver.port, "STORE-SCP"),
        work_dir=work,
        labels=tuple(file.fw_path for file in files),
        work_budget=budget,
    )
    work.mkdir()
    try:
        with DiskPeak(work) as disk:
            result = send(request, fetcher=downloads)
    finally:
        client.api_client.rest_client.client.close()  # its keep-alive sockets
    assert {row.status for row in result.rows} == {InstanceStatus.SENT}
    assert len(result.rows) == 5 * 30 + 30
    assert len(receiver.received) == 180
    assert sum(row.bytes for row in result.rows) > 10 * budget
    assert 0 < disk.peak <= budget + (1 << 20), disk.peak
    assert list((work / "downloads").iterdir()) == []


def test_a_local_archive_is_extracted_within_the_budget(
    tmp_path: Path, receiver: StorageReceiver
) -> None:
    """The command line's engine on local zips: members are extracted as the send
    goes, each deleted once stored, never more than the budget at once."""
    archives = []
    for n in range(3):
        seed = f"local{n}"
        files = write_series(tmp_path / seed, 40, seed=seed, rows=128, columns=128)
        archives.append(zip_files(tmp_path / f"{seed}.zip", {f.name: f for f in files}))
    members = sum(p.stat().st_size for p in tmp_path.rglob("*.dcm"))
    work = tmp_path / "work"
    work.mkdir()
    budget = MB // 2
    assert members > 6 * budget
    with DiskPeak(work) as disk:
        result = send(
            SendRequest(
                paths=tuple(archives),
                peer=Peer("127.0.0.1", receiver.port, "STORE-SCP"),
                work_dir=work,
                work_budget=budget,
            )
        )
    assert {row.status for row in result.rows} == {InstanceStatus.SENT}
    assert len(receiver.received) == 120
    assert 0 < disk.peak <= budget + (1 << 20), disk.peak
