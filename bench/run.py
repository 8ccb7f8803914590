"""Race dicom-send against DCMTK storescu (and pynetdicom's storescu app).

One command, one run, the same receivers, the senders alternated (A B A B ...),
medians of ``--runs``. For each sender and receiver: seconds, images/s, MB/s, CPU
seconds and peak RSS of the sender process (and its worker processes), and the
ratio storescu time / dicom-send time. Writes ``results.md``, ``results.json`` and
``results.png`` into ``--out``.

    .venv/bin/python bench/run.py                 # 1000 CT images of 525 KB, 5 runs
    .venv/bin/python bench/run.py --images 200 --runs 1 --no-memory   # quick look

Receivers: DCMTK ``storescp --fork`` writing to tmpfs with TCP_NODELAY=1; Orthanc
writing to tmpfs, over C-STORE and (with Debian's orthanc-dicomweb) over STOW-RS;
the same storescp behind a proxy that delays its answers by 20 ms (a far or busy
PACS); storescp as Debian ships it, Nagle's algorithm on at both ends (no
``TCP_NODELAY=1``), with 200 small files (each C-STORE of storescu waits for a
delayed ACK). Memory: one 630 MB multi-frame instance,
and 1,000 vs 10,000 small files, through ``dicom-send send``. The gear path: the same
images as a zip input through ``run.py`` against the CLI, as a local run (no
api-key), as a platform job (an api-key for the tests' stand-in Flywheel API), and
locally with the first 200 of them (to tell start-up costs from throughput).
"""

import argparse
import compileall
import functools
import json
import os
import platform
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
import zipfile
from dataclasses import asdict, dataclass
from pathlib import Path

import matplotlib

from fw_gear_dicom_send.dicom.samples import write_series

matplotlib.use("Agg")
import matplotlib.pyplot as plt

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))
from limited import pump  # the tests' proxy's forwarding
from multiframe import write_multiframe  # the tests' large instance
from standin import StandIn  # the tests' stand-in of the Flywheel API

VENV_BIN = Path(sys.executable).parent
SEED = "bench"
GEAR_FEWER = 200
"""Images of the shorter zip in the gear race."""
NAGLE_FILES = 200
"""Small files raced into the receiver with Nagle on (storescu waits for a delayed
ACK at each)."""
DICOMWEB = Path("/usr/share/orthanc/plugins/libOrthancDicomWeb.so")
TMPFS = Path("/dev/shm") if Path("/dev/shm").is_dir() else Path(tempfile.gettempdir())


@dataclass
class Sample:
    """One timed run of one sender into one receiver."""

    sender: str
    receiver: str
    seconds: float
    cpu: float
    peak_rss_mb: float
    images: int
    megabytes: float


def as_installed() -> None:
    """Compile dicom-send's modules, as installing it from a wheel does.

    A source checkout run with ``PYTHONDONTWRITEBYTECODE=1`` (the gear image sets
    it, and so may a shell) would otherwise compile every module it imports again
    at every start of dicom-send, in each of its processes: tenths of a second of
    CPU in all, which would be counted against it.
    """
    compileall.compile_dir(ROOT / "fw_gear_dicom_send", quiet=1)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_for(port: int, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"nothing listening on {port}")


# Runs argv[1:] and prints its wall, CPU seconds and peak RSS (KiB) as JSON. A small
# launcher of its own, because a child's peak RSS counts the memory of the process
# it was forked from, and this benchmark process is large.
_LAUNCHER = """
import json, os, subprocess, sys, time
started = time.perf_counter()
proc = subprocess.Popen(sys.argv[1:], stdout=subprocess.DEVNULL)
_, status, usage = os.wait4(proc.pid, 0)
print(json.dumps([time.perf_counter() - started, usage.ru_utime + usage.ru_stime,
                  usage.ru_maxrss, os.waitstatus_to_exitcode(status)]))
"""


def timed(
    args: list[str], env: dict[str, str] | None = None
) -> tuple[float, float, float]:
    """Run a command; its wall seconds, CPU seconds and peak RSS (MB), worker
    processes included."""
    done = subprocess.run(
        [sys.executable, "-S", "-c", _LAUNCHER, *args],
        capture_output=True,
        text=True,
        env=env,
        check=False,
    )
    seconds, cpu, rss, code = json.loads(done.stdout.strip().splitlines()[-1])
    if code != 0:
        raise RuntimeError(f"{args[0]} exited {code}: {done.stderr[-500:]}")
    return seconds, cpu, rss / 1024


# -- data ----------------------------------------------------------------------------


def dataset(folder: Path, images: int) -> Path:
    """``images`` CT files of 525 KB, made once per count (fixed seed and UIDs)."""
    target = folder / f"ct-{images}"
    if not target.is_dir() or len(list(target.iterdir())) != images:
        shutil.rmtree(target, ignore_errors=True)
        write_series(target, images, seed=SEED, rows=512, columns=512)
    return target


def small_files(folder: Path, count: int) -> Path:
    target = folder / f"small-{count}"
    if not target.is_dir() or len(list(target.iterdir())) != count:
        shutil.rmtree(target, ignore_errors=True)
        write_series(target, count, seed=f"{SEED}-small", rows=16, columns=16)
    return target


def big_instance(folder: Path, megabytes: int = 630) -> Path:
    """One multi-frame instance of about ``megabytes`` MB."""
    path = folder / f"big-{megabytes}.dcm"
    return path if path.exists() else write_multiframe(path, megabytes, seed=SEED)


# -- receivers -----------------------------------------------------------------------


class Receiver:
    """A receiver process on a free port; ``reset()`` empties what it stored."""

    stow_url: str | None = None
    """Its DICOMweb root, if it speaks STOW-RS too."""
    nagle = False
    """Whether it (and the senders raced into it) run as shipped: Nagle on."""

    def __init__(
        self,
        name: str,
        args: list[str],
        port: int,
        ae: str,
        out: Path,
        *,
        nagle: bool = False,
    ):
        self.name, self.port, self.ae, self.out = name, port, ae, out
        self.nagle = nagle
        self.proc = subprocess.Popen(
            args,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            env=environment(nagle),
        )
        wait_for(port)

    def reset(self) -> None:
        for child in self.out.glob("*"):
            if child.is_dir():
                shutil.rmtree(child)
            else:
                child.unlink()

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(timeout=20)


def environment(nagle: bool) -> dict[str, str]:
    """The environment of a DCMTK or Orthanc process: ``TCP_NODELAY=1`` unless
    ``nagle`` (as shipped, Nagle's algorithm on)."""
    env = {k: v for k, v in os.environ.items() if k != "TCP_NODELAY"}
    return env if nagle else {**env, "TCP_NODELAY": "1"}


def storescp(work: Path, name: str = "storescp", nagle: bool = False) -> Receiver:
    out = work / name
    out.mkdir()
    port = free_port()
    args = ["storescp", "--fork", "+xa", "-aet", "STORESCP", "-od", str(out), str(port)]
    label = "storescp --fork (tmpfs)"
    if nagle:
        label = f"storescp --fork, Nagle on (as shipped), {NAGLE_FILES} small files"
    return Receiver(label, args, port, "STORESCP", out, nagle=nagle)


class OrthancReceiver(Receiver):
    """Orthanc, emptied between runs through its REST API (deleting its files
    under it would leave its index believing it still holds them, and it would
    then skip storing instances it was sent again)."""

    http = 0

    def reset(self) -> None:
        base = f"http://127.0.0.1:{self.http}"
        with urllib.request.urlopen(f"{base}/patients", timeout=60) as answer:
            patients = json.load(answer)
        for patient in patients:
            request = urllib.request.Request(
                f"{base}/patients/{patient}", method="DELETE"
            )
            urllib.request.urlopen(request, timeout=300).close()


def orthanc(work: Path) -> Receiver:
    out = work / "orthanc"
    out.mkdir()
    port, http = free_port(), free_port()
    config = work / "orthanc.json"
    config.write_text(
        json.dumps(
            {
                "StorageDirectory": str(out),
                "IndexDirectory": str(out),
                "DicomAet": "ORTHANC",
                "DicomPort": port,
                "HttpPort": http,
                "DicomCheckCalledAet": True,
                "RemoteAccessAllowed": False,
                "AuthenticationEnabled": False,
                "Plugins": [str(DICOMWEB)] if DICOMWEB.exists() else [],
                "DicomWeb": {"Enable": True, "Root": "/dicom-web/"},
                "DicomThreadsCount": 4,
                "HttpThreadsCount": 8,
            }
        )
    )
    receiver = OrthancReceiver(
        "Orthanc (tmpfs)", ["Orthanc", str(config)], port, "ORTHANC", out
    )
    receiver.http = http
    wait_for(http)
    if DICOMWEB.exists():
        receiver.stow_url = f"http://127.0.0.1:{http}/dicom-web"
    return receiver


class DelayedReceiver(Receiver):
    """storescp --fork behind a proxy that holds everything the receiver says for
    20 ms: each C-STORE is answered 20 ms late, as by a far or busy PACS.

    The proxy runs in this (the benchmark's) process, so its CPU is not counted to
    the senders; the receiver behind it is the fast one, so the sender's handling
    of the wait is what the race shows.
    """

    def __init__(self, work: Path, delay: float = 0.020) -> None:
        self.inner = storescp(work, name="storescp-delayed")
        self.name, self.ae, self.out = "20 ms per C-STORE", "STORESCP", self.inner.out
        self.delay = delay
        self._server = socket.create_server(("127.0.0.1", 0))
        self.port = int(self._server.getsockname()[1])
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self._server.accept()
            except OSError:
                return
            upstream = socket.create_connection(("127.0.0.1", self.inner.port))
            for sock in (client, upstream):
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            threading.Thread(
                target=pump, args=(client, upstream, 0.0), daemon=True
            ).start()
            threading.Thread(
                target=pump, args=(upstream, client, self.delay), daemon=True
            ).start()

    def reset(self) -> None:
        self.inner.reset()

    def stop(self) -> None:
        self._server.close()
        self.inner.stop()


# -- senders -------------------------------------------------------------------------


def senders(
    folder: Path, receiver: Receiver, pynetdicom_app: bool
) -> dict[str, list[str]]:
    """Command lines, by sender name, sending ``folder`` to the receiver."""
    port, ae = str(receiver.port), receiver.ae
    result = {
        "DCMTK storescu": [
            "storescu", "+sd", "-aec", ae, "127.0.0.1", port, str(folder),
        ],
        "dicom-send": [
            str(VENV_BIN / "dicom-send"), "-q", "send", str(folder),
            "--host=127.0.0.1", f"--port={port}", f"--called-ae={ae}",
        ],
    }  # fmt: skip
    if receiver.stow_url:
        result["dicom-send (STOW-RS)"] = [
            str(VENV_BIN / "dicom-send"), "-q", "send", str(folder),
            f"--stow={receiver.stow_url}",
        ]  # fmt: skip
    if pynetdicom_app:
        result["pynetdicom storescu"] = [
            sys.executable, "-m", "pynetdicom", "storescu",
            "127.0.0.1", port, str(folder), "-r", "-aec", ae,
        ]  # fmt: skip
    return result


def race(
    folder: Path, receiver: Receiver, runs: int, pynetdicom_app: bool
) -> list[Sample]:
    images = len(list(folder.iterdir()))
    megabytes = sum(p.stat().st_size for p in folder.iterdir()) / 1e6
    commands = senders(folder, receiver, pynetdicom_app)
    samples = []
    env = environment(receiver.nagle)
    for run in range(runs):
        for name, args in commands.items():  # A B A B ...
            receiver.reset()
            seconds, cpu, rss = timed(args, env)
            samples.append(
                Sample(name, receiver.name, seconds, cpu, rss, images, megabytes)
            )
            print(
                f"  run {run + 1}: {name:20s} {images / seconds:7.1f} images/s "
                f"({seconds:.2f} s, CPU {cpu:.2f} s, {rss:.0f} MB)",
                flush=True,
            )
    return samples


@dataclass(frozen=True)
class Platform:
    """A job as the platform runs it: an api-key, the file's acquisition."""

    api_key: str
    acquisition: str


def gear_race(folder: Path, receiver: Receiver, work: Path, runs: int) -> list[Sample]:
    """The same images as a zip: run.py (gear) against the CLI.

    The gear as a local run (no api-key, so no Flywheel API: the path of the
    acceptance criterion, zip input to report), and with the whole images also as
    a platform job: an api-key for the tests' stand-in Flywheel API, which the gear
    asks where the file lies and to which it uploads the report. Also with the first
    GEAR_FEWER images only, locally (enough to go over several associations, as the
    whole does): the difference between the two tells the throughput of each path
    beyond what it costs to start and to end.
    """
    files = sorted(folder.iterdir())
    samples = []
    with StandIn() as standin:
        project = standin.project(standin.group("radiology"), "Bench")
        session = standin.session(standin.subject(project, "P-001"), "Baseline")
        platform = Platform(standin.api_key, standin.acquisition(session, "CT"))
        for members, variants in (
            (files, {"": None, ", Flywheel stand-in": platform}),
            (files[:GEAR_FEWER], {f", {GEAR_FEWER} images": None}),
        ):
            archive = work / f"study-{len(members)}.zip"
            if not archive.exists():
                with zipfile.ZipFile(archive, "w", zipfile.ZIP_STORED) as z:
                    for path in members:
                        z.write(path, path.name)
            samples += _gear_runs(archive, variants, receiver, work, runs)
    return samples


def _gear_runs(
    archive: Path,
    variants: dict[str, Platform | None],
    receiver: Receiver,
    work: Path,
    runs: int,
) -> list[Sample]:
    """The CLI (named for the first variant), then the gear in each variant."""
    with zipfile.ZipFile(archive) as z:
        images = len(z.namelist())
    megabytes = archive.stat().st_size / 1e6
    samples = []
    cli = [
        str(VENV_BIN / "dicom-send"), "-q", "send", str(archive),
        "--host=127.0.0.1", f"--port={receiver.port}", f"--called-ae={receiver.ae}",
        f"--work-dir={work}",
    ]  # fmt: skip
    first = next(iter(variants))
    senders = {f"dicom-send (zip{first})": functools.partial(timed, cli)}
    senders |= {
        f"gear run.py (zip{name})": functools.partial(
            _timed_gear, archive, receiver, work, platform
        )
        for name, platform in variants.items()
    }
    for _ in range(runs):
        for name, run in senders.items():
            receiver.reset()
            seconds, cpu, rss = run()
            samples.append(
                Sample(name, receiver.name, seconds, cpu, rss, images, megabytes)
            )
            print(f"  {name:20s} {images / seconds:7.1f} images/s", flush=True)
    return samples


def _timed_gear(
    archive: Path, receiver: Receiver, work: Path, platform: Platform | None
) -> tuple[float, float, float]:
    gear = _gear_folder(work / "gear", archive, receiver, platform)
    env = {**os.environ, "FLYWHEEL": str(gear)}
    return timed([sys.executable, str(ROOT / "run.py")], env)


def _gear_folder(
    gear: Path, archive: Path, receiver: Receiver, platform: Platform | None
) -> Path:
    """A gear folder whose job sends ``archive``: a local run, or a platform job."""
    shutil.rmtree(gear, ignore_errors=True)
    path = gear / "input" / "file" / archive.name
    path.parent.mkdir(parents=True)
    shutil.copy(archive, path)
    file: dict[str, object] = {
        "base": "file",
        "location": {"name": archive.name, "path": str(path)},
    }
    inputs = {"file": file}
    destination = {"type": "acquisition", "id": "bench"}
    if platform is not None:
        file["hierarchy"] = {"type": "acquisition", "id": platform.acquisition}
        inputs["api-key"] = {"base": "api-key", "key": platform.api_key}
        destination["id"] = platform.acquisition
    config = {
        "config": {
            "destination": "127.0.0.1",
            "port": receiver.port,
            "called_ae": receiver.ae,
        },
        "inputs": inputs,
        "destination": destination,
    }
    (gear / "config.json").write_text(json.dumps(config))
    return gear


def memory(work: Path, receiver: Receiver) -> dict[str, float]:
    """Peak RSS of dicom-send for one 630 MB instance, 1,000 and 10,000 small files."""
    result = {}
    for label, path in (
        ("one 630 MB instance", big_instance(work)),
        ("1,000 small files", small_files(work, 1000)),
        ("10,000 small files", small_files(work, 10_000)),
    ):
        receiver.reset()
        _, _, rss = timed(
            [
                str(VENV_BIN / "dicom-send"),
                "-q",
                "send",
                str(path),
                "--host=127.0.0.1",
                f"--port={receiver.port}",
                f"--called-ae={receiver.ae}",
            ]
        )
        result[label] = rss
        print(f"  {label}: peak RSS {rss:.0f} MB", flush=True)
    return result


# -- report --------------------------------------------------------------------------


def medians(samples: list[Sample]) -> dict[tuple[str, str], Sample]:
    groups: dict[tuple[str, str], list[Sample]] = {}
    for s in samples:
        groups.setdefault((s.receiver, s.sender), []).append(s)
    return {
        key: Sample(
            key[1],
            key[0],
            statistics.median(s.seconds for s in group),
            statistics.median(s.cpu for s in group),
            max(s.peak_rss_mb for s in group),
            group[0].images,
            group[0].megabytes,
        )
        for key, group in groups.items()
    }


def _gear_lines(
    table: dict[tuple[str, str], Sample], starts: dict[tuple[str, str], Sample]
) -> list[str]:
    """The gear path against the CLI: end to end, and beyond the first images."""
    rows = {}
    for (receiver, sender), start in starts.items():  # start: the fewer images
        whole = table.get((receiver, sender.replace(f", {GEAR_FEWER} images", "")))
        if whole is not None and whole.seconds > start.seconds:
            rate = (whole.images - start.images) / (whole.seconds - start.seconds)
            rows[sender.split(" (")[0]] = (whole, start, rate)
    if len(rows) != 2:
        return []
    whole_images, start_images = next((w.images, s.images) for w, s, _ in rows.values())
    lines = [
        "",
        f"| zip input | {whole_images} images s | {start_images} images s "
        f"| images/s of the other {whole_images - start_images} |",
        "|---|---|---|---|",
    ]
    for name, (whole, start, rate) in rows.items():
        lines.append(
            f"| {name} | {whole.seconds:.2f} | {start.seconds:.2f} | {rate:.0f} |"
        )
    (cli, cli_start, cli_rate), (gear, gear_start, gear_rate) = rows.values()
    lines += [
        "",
        "Gear path (run.py, a local run) against the CLI: "
        f"{gear.seconds / cli.seconds:.2f}x the time end to end "
        f"({gear.seconds - cli.seconds:+.2f} s; "
        f"{gear_start.seconds - cli_start.seconds:+.2f} s with {start_images} images); "
        f"{gear_rate / cli_rate:.2f}x the throughput beyond the first {start_images}.",
    ]
    platform = next((v for (_, k), v in table.items() if "stand-in" in k), None)
    if platform is not None:
        lines.append(
            f"As a platform job (api-key, stand-in Flywheel API): "
            f"{platform.seconds / cli.seconds:.2f}x the CLI's time "
            f"({platform.seconds - cli.seconds:+.2f} s), "
            f"{platform.seconds - gear.seconds:+.2f} s for the Flywheel side."
        )
    return lines


def write_report(
    out: Path, samples: list[Sample], mem: dict[str, float], args: argparse.Namespace
) -> None:
    table = medians(samples)
    fewer = f", {GEAR_FEWER} images"
    starts = {key: table.pop(key) for key in list(table) if fewer in key[1]}
    lines = [
        f"Machine: {platform.machine()}, {os.cpu_count()} cores, Python "
        f"{platform.python_version()}; {time.strftime('%Y-%m-%d')}. Loopback; "
        f"{args.images} CT images of 525 KB (the Nagle line: {NAGLE_FILES} small "
        f"files); medians of {args.runs} alternated runs.",
        "",
        "| receiver | sender | s | images/s | MB/s | CPU s | peak RSS MB | "
        "storescu / this (time) |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for (receiver, sender), s in table.items():
        base = table.get((receiver, "DCMTK storescu")) or table.get(
            (receiver, "dicom-send (zip)")
        )
        ratio = base.seconds / s.seconds if base else float("nan")
        lines.append(
            f"| {receiver} | {sender} | {s.seconds:.2f} | {s.images / s.seconds:.0f} | "
            f"{s.megabytes / s.seconds:.0f} | {s.cpu:.2f} | {s.peak_rss_mb:.0f} | "
            f"{ratio:.2f} |"
        )
    lines += _gear_lines(table, starts)
    if mem:
        lines += ["", "| dicom-send send of | peak RSS MB |", "|---|---|"]
        lines += [f"| {label} | {rss:.0f} |" for label, rss in mem.items()]
    (out / "results.md").write_text("\n".join(lines) + "\n")
    (out / "results.json").write_text(
        json.dumps(
            {"samples": [asdict(s) for s in samples], "memory_mb": mem}, indent=1
        )
    )
    print("\n".join(lines))
    receivers = list(dict.fromkeys(r for r, _ in table))
    names = list(dict.fromkeys(s for _, s in table))
    fig, ax = plt.subplots(figsize=(9, 4.5))
    width = 0.8 / len(names)
    for i, name in enumerate(names):
        values = [
            table[(r, name)].images / table[(r, name)].seconds
            if (r, name) in table
            else 0
            for r in receivers
        ]
        ax.bar(
            [x + i * width for x in range(len(receivers))], values, width, label=name
        )
    ax.set_xticks([x + width * (len(names) - 1) / 2 for x in range(len(receivers))])
    ax.set_xticklabels(receivers)
    ax.set_ylabel("images/s (higher is better)")
    ax.set_title(f"{args.images} CT images of 525 KB, loopback, medians of {args.runs}")
    ax.legend()
    fig.tight_layout()
    fig.savefig(out / "results.png", dpi=110)


def arguments() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=1000)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results")
    parser.add_argument("--data", type=Path, default=ROOT / "bench" / "data")
    parser.add_argument("--no-orthanc", action="store_true")
    parser.add_argument("--no-memory", action="store_true")
    parser.add_argument("--no-gear", action="store_true")
    parser.add_argument("--no-pynetdicom", action="store_true")
    parser.add_argument(
        "--associations-line",
        action="store_true",
        help="only the race of --associations auto (bench/adaptive.py)",
    )
    parser.add_argument(
        "--session",
        action="store_true",
        help="only the session line (bench/session.py), into session.md",
    )
    parser.add_argument(
        "--compare", type=Path, help="the session line's job by this tree's run.py too"
    )
    parser.add_argument(
        "--receivers",
        default="storescp,delayed,nagle,orthanc",
        help="which receivers to race into (comma-separated; default all)",
    )
    return parser.parse_args()


def _race_into(receiver: Receiver, folder: Path, runs: int) -> list[Sample]:
    """storescu against dicom-send into ``receiver``, which is then stopped."""
    try:
        print(receiver.name, flush=True)
        return race(folder, receiver, runs, pynetdicom_app=False)
    finally:
        receiver.stop()


def main() -> None:
    args = arguments()
    if args.associations_line:
        import adaptive  # noqa: PLC0415 - bench/adaptive.py, beside this

        adaptive.main(
            [f"--{k}={getattr(args, k)}" for k in ("images", "runs", "data", "out")]
        )
        return
    wanted = set(args.receivers.split(","))
    args.out.mkdir(parents=True, exist_ok=True)
    args.data.mkdir(parents=True, exist_ok=True)
    folder = dataset(args.data, args.images)
    as_installed()
    samples: list[Sample] = []
    mem: dict[str, float] = {}
    if args.session:
        from session import session_line  # noqa: PLC0415 - bench/session.py

        with tempfile.TemporaryDirectory(dir=TMPFS, prefix="dicom-send-bench-") as tmp:
            lines = session_line(
                folder,
                args.data,
                Path(tmp),
                DelayedReceiver,
                args.runs,
                compare=args.compare,
            )
        (args.out / "session.md").write_text("\n".join(lines) + "\n")
        return
    with tempfile.TemporaryDirectory(dir=TMPFS, prefix="dicom-send-bench-") as tmp:
        work = Path(tmp)
        if "storescp" in wanted:
            receiver: Receiver = storescp(work)
            try:
                print(receiver.name, flush=True)
                samples += race(folder, receiver, args.runs, not args.no_pynetdicom)
                if not args.no_gear:
                    samples += gear_race(folder, receiver, work, args.runs)
                if not args.no_memory:
                    mem = memory(args.data, receiver)
            finally:
                receiver.stop()
        if "delayed" in wanted:
            samples += _race_into(DelayedReceiver(work), folder, args.runs)
        if "nagle" in wanted:
            small = small_files(args.data, NAGLE_FILES)
            samples += _race_into(storescp(work, "nagle", nagle=True), small, args.runs)
        orthanc_wanted = "orthanc" in wanted and not args.no_orthanc
        if orthanc_wanted and shutil.which("Orthanc"):
            samples += _race_into(orthanc(work), folder, args.runs)
    write_report(args.out, samples, mem, args)


if __name__ == "__main__":
    main()
