"""``--associations auto`` against fixed counts and DCMTK storescu, side by side.

One run, the senders alternated (A B C C B A ...), medians of ``--runs``, the
same 1000 CT images of 525 KB into four receivers:

- ``storescp --fork`` behind a proxy that holds its answers 20 ms (a far PACS):
  storescu, ``auto``, ``--associations 4`` and 16 (the ceiling of ``auto``);
  ``auto`` should be at least 8x storescu.
- ``storescp --fork`` behind a proxy that takes at most 3 associations at once and
  rejects more as transient (local limit exceeded): ``auto``, 3 and 4; ``auto``
  should store everything, in at most 1.2x the time of 3.
- ``storescp --fork`` on loopback: ``auto`` and 4; ``auto`` no slower.
- Orthanc: ``auto`` and 4; ``auto`` no slower, nothing failed.

Every run must store all images (dicom-send exits 0, and the receiver holds them
all). The proxies are ``tests/limited.py``'s (splice forwarding, a thread per
direction). Then one more ``auto`` run per receiver with ``-v``: how many
associations it settled on, and why.

    .venv/bin/python bench/adaptive.py --runs 3
    .venv/bin/python bench/run.py --associations-line   # the same, from run.py
"""

import argparse
import json
import os
import statistics
import subprocess
import tempfile
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import run as bench  # puts tests/ on the path (limited.py)

DELAY = 0.020
LIMIT = 3


def _dicom_send(folder: Path, port: int, ae: str, *extra: str) -> list[str]:
    return [
        str(bench.VENV_BIN / "dicom-send"), "-q", "send", str(folder),
        "--host=127.0.0.1", f"--port={port}", f"--called-ae={ae}", *extra,
    ]  # fmt: skip


def _senders(folder: Path, port: int, ae: str, fixed: list[int], storescu: bool):
    commands = {}
    if storescu:
        commands["DCMTK storescu"] = [
            "storescu", "+sd", "-aec", ae, "127.0.0.1", str(port), str(folder),
        ]  # fmt: skip
    commands["auto"] = _dicom_send(folder, port, ae, "--associations=auto")
    for n in fixed:
        commands[f"--associations {n}"] = _dicom_send(
            folder, port, ae, f"--associations={n}"
        )
    return commands


def _stored_files(receiver: bench.Receiver) -> int:
    return sum(1 for p in receiver.out.rglob("*") if p.is_file())


def _stored_orthanc(receiver: bench.Receiver) -> int:
    url = f"http://127.0.0.1:{receiver.http}/statistics"  # type: ignore[attr-defined]
    with urllib.request.urlopen(url, timeout=60) as answer:
        return int(json.load(answer)["CountInstances"])


@contextmanager
def _receivers(work: Path, wanted: set[str]) -> Iterator[list[tuple]]:
    """(name, receiver, port, proxy, senders' fixed counts, storescu?) each."""
    from limited import LimitingProxy  # noqa: PLC0415 - tests/, on the path now

    started: list[bench.Receiver] = []
    proxies: list[LimitingProxy] = []
    found = []
    try:
        if "delayed" in wanted:
            inner = bench.storescp(work, name="storescp-delayed")
            started.append(inner)
            proxy = LimitingProxy(inner.port, delay=DELAY).__enter__()
            proxies.append(proxy)
            found.append(
                ("storescp --fork, 20 ms", inner, proxy.port, proxy, [4, 16], True)
            )
        if "limited" in wanted:
            inner = bench.storescp(work, name="storescp-limited")
            started.append(inner)
            proxy = LimitingProxy(inner.port, limit=LIMIT).__enter__()
            proxies.append(proxy)
            name = f"storescp --fork, {LIMIT} associations at most"
            found.append((name, inner, proxy.port, proxy, [LIMIT, 4], False))
        if "loopback" in wanted:
            inner = bench.storescp(work, name="storescp-loopback")
            started.append(inner)
            found.append(("storescp --fork", inner, inner.port, None, [4], False))
        if "orthanc" in wanted:
            orthanc = bench.orthanc(work)
            started.append(orthanc)
            found.append(("Orthanc", orthanc, orthanc.port, None, [4], False))
        yield found
    finally:
        for proxy in proxies:
            proxy.__exit__(None, None, None)
        for receiver in started:
            receiver.stop()


def race(folder: Path, work: Path, runs: int, wanted: set[str]) -> dict:
    """Every receiver, every sender, ``runs`` times alternated; the medians."""
    images = len(list(folder.iterdir()))
    env = {**os.environ, "TCP_NODELAY": "1"}
    results: dict[str, dict] = {}
    with _receivers(work, wanted) as receivers:
        for name, receiver, port, proxy, fixed, storescu in receivers:
            print(name, flush=True)
            count: Callable[[bench.Receiver], int] = (
                _stored_orthanc if name == "Orthanc" else _stored_files
            )
            commands = _senders(folder, port, receiver.ae, fixed, storescu)
            seconds: dict[str, list[float]] = {s: [] for s in commands}
            most: dict[str, int] = {}
            for number in range(runs):
                order = list(commands.items())
                if number % 2:  # A B C, then C B A: no sender always goes first
                    order.reverse()
                for sender, args in order:
                    receiver.reset()
                    if proxy is not None:
                        proxy.most = proxy.rejected = 0
                    wall, _, _ = bench.timed(args, env)
                    stored = count(receiver)
                    if stored != images:
                        raise RuntimeError(f"{sender} into {name}: {stored} stored")
                    seconds[sender].append(wall)
                    if proxy is not None:
                        most[sender] = max(most.get(sender, 0), proxy.most)
                    seen = ""
                    if proxy is not None:
                        seen = f", {proxy.most} associations at once"
                        seen += f", {proxy.rejected} rejected" if proxy.limit else ""
                    print(
                        f"  run {number + 1}: {sender:22s} {images / wall:7.1f} "
                        f"images/s ({wall:.2f} s, all {stored} stored{seen})",
                        flush=True,
                    )
            receiver.reset()
            why = _why(folder, port, receiver.ae)
            print(f"  auto: {why}", flush=True)
            results[name] = {
                "seconds": {s: statistics.median(v) for s, v in seconds.items()},
                "runs": seconds,
                "most_at_once": most,
                "auto": why,
            }
    return results


def _why(folder: Path, port: int, ae: str) -> str:
    """One more ``auto`` run with ``-v``: its lines about associations."""
    args = _dicom_send(folder, port, ae, "--associations=auto")
    args[1] = "-v"
    done = subprocess.run(args, capture_output=True, text=True, check=False)
    lines = [
        line.split("associations: ", 1)[-1]
        for line in done.stderr.splitlines()
        if "associations: " in line
    ]
    return "; ".join(lines[-3:]) or f"(no pacing log; exit {done.returncode})"


def verdicts(results: dict, images: int) -> list[str]:
    """The acceptance lines, each with its numbers."""
    lines = []

    def t(receiver: str, sender: str) -> float:
        return float(results[receiver]["seconds"][sender])

    for name, entry in results.items():
        times = entry["seconds"]
        row = ", ".join(f"{s} {images / v:.0f}/s ({v:.2f} s)" for s, v in times.items())
        lines.append(f"{name}: {row}")
        if "DCMTK storescu" in times:
            for sender in ("auto", "--associations 16"):
                ratio = t(name, "DCMTK storescu") / t(name, sender)
                target = " (target >= 8x)" if sender == "auto" else ""
                lines.append(f"  {sender} is {ratio:.1f}x storescu{target}")
        for n in (LIMIT, 4):
            key = f"--associations {n}"
            if key in times:
                ratio = t(name, "auto") / t(name, key)
                lines.append(f"  auto takes {ratio:.2f}x the time of {key}")
        lines.append(f"  auto: {entry['auto']}")
    return lines


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=1000)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--data", type=Path, default=bench.ROOT / "bench" / "data")
    parser.add_argument("--out", type=Path, default=bench.ROOT / "bench" / "results")
    parser.add_argument(
        "--receivers",
        default="delayed,limited,loopback,orthanc",
        help="which receivers (comma-separated; default all)",
    )
    args = parser.parse_args(argv)
    args.data.mkdir(parents=True, exist_ok=True)
    folder = bench.dataset(args.data, args.images)
    bench.as_installed()
    with tempfile.TemporaryDirectory(dir=bench.TMPFS, prefix="adaptive-") as tmp:
        results = race(folder, Path(tmp), args.runs, set(args.receivers.split(",")))
    lines = verdicts(results, args.images)
    print("\n".join(lines))
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "adaptive.json").write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
