"""The session line: a Flywheel session exported by the gear, beside its stages.

The tests' stand-in of the Flywheel API serves a session of nine acquisitions of
one 100-image zip each and one acquisition of 100 loose files (the bench's 1000
CT images of 525 KB) at ``bandwidth`` bytes per second per download stream, with
``latency`` seconds before every answer. The gear (``run.py``, a platform job
whose destination is the session) sends it into DCMTK storescp behind the proxy
that answers 20 ms late. In the same run, each stage alone: downloading every
file at 4 streams (the gear's own download call, in 4 threads), and the CLI
sending the same files from the local disk into the same receiver. Reported: the
job's seconds, the stages', the ratio job / the slower stage, and the work
folder's peak size (polled every 10 ms) as a share of the session's bytes.
Optionally the same job by another tree's ``run.py`` (``--compare``: the code
before, say).
"""

import json
import os
import statistics
import subprocess
import sys
import threading
import time
import zipfile
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))
from standin import StandIn  # noqa: E402 - the tests' stand-in of the Flywheel API

ZIPS = 9
PER_ZIP = 100
STREAMS = 4


@dataclass(frozen=True)
class Case:
    """How the stand-in serves the session."""

    name: str
    bandwidth: float
    latency: float


SLOW = Case("25 MB/s per stream, 30 ms per answer", 25e6, 0.030)
LOCAL = Case("local: 1 GB/s, no latency", 1e9, 0.0)


def session_files(images: Path, folder: Path) -> list[tuple[str, list[Path]]]:
    """The session's acquisitions: (label, files), nine zips then the loose files.

    The zips are stored (not compressed), as DICOM zips mostly are; made once.
    """
    files = sorted(images.iterdir())
    assert len(files) >= ZIPS * PER_ZIP + PER_ZIP, "needs 1000 images"
    folder.mkdir(parents=True, exist_ok=True)
    acquisitions = []
    for number in range(ZIPS):
        archive = folder / f"series-{number}.zip"
        members = files[number * PER_ZIP : (number + 1) * PER_ZIP]
        if not archive.exists():
            partial = archive.with_suffix(".partial")
            with zipfile.ZipFile(partial, "w", zipfile.ZIP_STORED) as z:
                for path in members:
                    z.write(path, path.name)
            partial.replace(archive)
        acquisitions.append((f"series {number}", [archive]))
    loose = files[ZIPS * PER_ZIP : ZIPS * PER_ZIP + PER_ZIP]
    acquisitions.append(("loose", loose))
    return acquisitions


class FolderPeak:
    """The most bytes a folder held, polled in a thread."""

    def __init__(self, folder: Path, every: float = 0.010) -> None:
        self.folder, self.every, self.peak = folder, every, 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._poll, daemon=True)

    def _size(self) -> int:
        total = 0
        for root, _, names in os.walk(self.folder):
            for name in names:
                try:
                    total += os.stat(os.path.join(root, name)).st_size
                except OSError:
                    continue
        return total

    def _poll(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, self._size())
            time.sleep(self.every)

    def __enter__(self) -> "FolderPeak":
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


def _gear_folder(gear: Path, api_key: str, session: str, port: int, ae: str) -> Path:
    subprocess.run(["rm", "-rf", str(gear)], check=True)
    (gear / "work").mkdir(parents=True)
    config = {
        "config": {"destination": "127.0.0.1", "port": port, "called_ae": ae},
        "inputs": {"api-key": {"base": "api-key", "key": api_key}},
        "destination": {"type": "session", "id": session},
        "job": {"id": "bench"},
    }
    (gear / "config.json").write_text(json.dumps(config))
    return gear


def _job(tree: Path, gear: Path) -> tuple[float, int]:
    """Run ``tree``'s run.py in the gear folder: seconds, peak work-folder bytes."""
    env = {
        **os.environ,
        "FLYWHEEL": str(gear),
        "PYTHONPATH": str(tree),
        "PYTHONWARNINGS": "ignore",
    }
    with FolderPeak(gear / "work") as peak:
        started = time.perf_counter()
        done = subprocess.run(
            [sys.executable, str(tree / "run.py")],
            env=env,
            capture_output=True,
            text=True,
            check=False,
        )
        seconds = time.perf_counter() - started
    if done.returncode != 0:
        raise RuntimeError(f"the gear exited {done.returncode}: {done.stdout[-800:]}")
    return seconds, peak.peak


def _download_all(standin: StandIn, target: Path) -> float:
    """Seconds to download every file of the session at STREAMS streams."""
    import flywheel  # noqa: PLC0415 - the SDK, for this stage only

    from fw_gear_dicom_send.gear.files import ContainerRef  # noqa: PLC0415
    from fw_gear_dicom_send.gear.flywheel import Hierarchy  # noqa: PLC0415

    session = next(
        ident
        for ident, doc in standin.containers.items()
        if doc["container_type"] == "session"
    )
    subprocess.run(["rm", "-rf", str(target)], check=True)
    target.mkdir(parents=True)
    started = time.perf_counter()
    hierarchy = Hierarchy(flywheel.Client(standin.api_key))
    files = hierarchy.dicom_files(ContainerRef("session", session))
    with ThreadPoolExecutor(STREAMS) as pool:
        list(
            pool.map(
                lambda pair: hierarchy.download(
                    pair[1], target / f"{pair[0]:05d}-{pair[1].name}", 60
                ),
                enumerate(files),
            )
        )
    seconds = time.perf_counter() - started
    subprocess.run(["rm", "-rf", str(target)], check=True)
    return seconds


def _cli(local: Path, port: int, ae: str, work: Path) -> float:
    """Seconds of the CLI sending the session's files from the local disk."""
    started = time.perf_counter()
    subprocess.run(
        [
            str(Path(sys.executable).parent / "dicom-send"), "-q", "send", str(local),
            "--host=127.0.0.1", f"--port={port}", f"--called-ae={ae}",
            f"--work-dir={work}",
        ],
        check=True,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )  # fmt: skip
    return time.perf_counter() - started


def session_line(
    images: Path,
    data: Path,
    work: Path,
    receiver: Callable[[Path], Any],
    runs: int,
    *,
    compare: Path | None = None,
) -> list[str]:
    """Run the session line; its report, as markdown lines (also printed).

    Args:
        images: 1000 CT images.
        data: Where the session's files are made (once).
        work: A scratch folder (tmpfs).
        receiver: Makes the delayed receiver in a folder (``port``, ``ae``,
            ``reset()``, ``stop()``).
        runs: Runs of each measure (medians).
        compare: Another tree whose run.py runs the same jobs too.
    """
    acquisitions = session_files(images, data / "session")
    local = data / "session-local"
    local.mkdir(exist_ok=True)
    for _, files in acquisitions:
        for path in files:
            link = local / path.name
            if not link.exists():
                link.symlink_to(path)
    total = sum(p.stat().st_size for _, files in acquisitions for p in files)
    lines = [
        "",
        f"### Session line: {ZIPS} zips of {PER_ZIP} images + {PER_ZIP} loose files "
        f"({total / 1e6:.0f} MB), into storescp 20 ms late, medians of {runs}",
        "",
        "| stand-in | job s | download alone s | CLI send alone s | job / max | "
        "peak work folder |",
        "|---|---|---|---|---|---|",
    ]
    peer = receiver(work)
    try:
        for case in (SLOW, LOCAL):
            lines += _case(
                case,
                acquisitions,
                local,
                peer,
                work=work,
                runs=runs,
                total=total,
                compare=compare,
            )
    finally:
        peer.stop()
    for line in lines:
        print(line, flush=True)
    return lines


def _case(
    case: Case,
    acquisitions: list[tuple[str, list[Path]]],
    local: Path,
    peer: Any,
    *,
    work: Path,
    runs: int,
    total: int,
    compare: Path | None,
) -> list[str]:
    jobs: dict[str, list[tuple[float, int]]] = {"this": []}
    if compare is not None:
        jobs[str(compare)] = []
    downloads: list[float] = []
    clis: list[float] = []
    with StandIn(latency=case.latency, bandwidth=case.bandwidth) as standin:
        project = standin.project(standin.group("radiology"), "Bench")
        session = standin.session(standin.subject(project, "P-001"), "Baseline")
        for label, files in acquisitions:
            acquisition = standin.acquisition(session, label)
            for path in files:
                standin.add_file(acquisition, path)
        for _ in range(runs):
            for tree_name, samples in jobs.items():
                tree = ROOT if tree_name == "this" else Path(tree_name)
                peer.reset()
                gear = _gear_folder(
                    work / "gear", standin.api_key, session, peer.port, peer.ae
                )
                samples.append(_job(tree, gear))
            downloads.append(_download_all(standin, work / "downloaded"))
            peer.reset()
            clis.append(_cli(local, peer.port, peer.ae, work))
    download, cli = statistics.median(downloads), statistics.median(clis)
    lines = []
    for tree_name, samples in jobs.items():
        seconds = statistics.median(s for s, _ in samples)
        peak = max(p for _, p in samples)
        who = "" if tree_name == "this" else f" ({tree_name})"
        lines.append(
            f"| {case.name}{who} | {seconds:.2f} | {download:.2f} | {cli:.2f} | "
            f"{seconds / max(download, cli):.2f} | {peak / 1e6:.0f} MB, "
            f"{100 * peak / total:.0f}% |"
        )
    return lines
