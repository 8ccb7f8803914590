"""A gear job for tests: a gear folder, its config.json, and ``python run.py``."""

import csv
import json
import os
import shutil
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from standin import StandIn

from fw_gear_dicom_send.dicom.samples import write_series, zip_files
from fw_gear_dicom_send.gear.completion import COLUMNS

REPO = Path(__file__).resolve().parent.parent
# Runs the script named by argv[1] as __main__; prints its peak RSS (KiB) and the
# modules it imported, as JSON, at exit. VmHWM, not ru_maxrss: Linux carries
# ru_maxrss across execve, so the gear would report the test process's own peak
# (see tests/test_stow.py).
_MEASURED = """
import json, runpy, sys
script = sys.argv.pop(1)
sys.path.insert(0, script.rsplit("/", 1)[0])
try:
    runpy.run_path(script, run_name="__main__")
finally:
    with open("/proc/self/status") as f:
        peak = int(f.read().split("VmHWM:")[1].split()[0])
    taken = {"peak": peak * 1024, "modules": sorted(sys.modules)}
    print(json.dumps(taken), file=sys.stderr)
"""


def old_gear_config(port: int | str, **changes: Any) -> dict[str, Any]:
    """Options exactly as a rule for fw-gear-dicom-send 4.x has them."""
    return {
        "destination": "127.0.0.1",
        "called_ae": "STORE-SCP",
        "calling_ae": "flywheel",
        "port": port,
        "file_download_retry_time": 10,
        "group": "0x0021",
        "identifier": "Flywheel",
        "tag_value": "DICOM Send",
        "report": True,
        "tls_enabled": False,
        "tls_security_profile": "BCP 195",
        "tls_require_peer_cert": True,
        **changes,
    }


@dataclass(frozen=True)
class Measured:
    """What a gear process took."""

    peak: int
    """Peak resident memory, bytes."""
    modules: frozenset[str]
    """The modules it imported."""


@dataclass
class Gear:
    """A gear folder ($FLYWHEEL) and a way to run the gear in it."""

    folder: Path
    standin: StandIn
    config: dict[str, Any] = field(default_factory=dict)
    inputs: dict[str, Any] = field(default_factory=dict)
    destination: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.inputs["api-key"] = {"base": "api-key", "key": self.standin.api_key}

    def add_file_input(self, name: str, source: Path, parent: str) -> Path:
        """Put ``source`` in input/<name>/ as the platform does."""
        path = self.folder / "input" / name / source.name
        path.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(source, path)
        self.inputs[name] = {
            "base": "file",
            "hierarchy": {"type": "acquisition", "id": parent},
            "location": {"name": source.name, "path": str(path)},
            "object": {"type": "dicom", "size": path.stat().st_size, "info": {}},
        }
        return path

    def run(
        self,
        python: str = sys.executable,
        entry: Path = REPO / "run.py",
        config_text: str | None = None,
        wrapper: tuple[str, ...] = (),
    ) -> subprocess.CompletedProcess[str]:
        """Write config.json (or ``config_text`` as it) and run the gear."""
        config = {
            "config": self.config,
            "inputs": self.inputs,
            "destination": self.destination,
            "job": {"id": "job-1"},
        }
        (self.folder / "config.json").write_text(
            json.dumps(config, indent=2) if config_text is None else config_text
        )
        result = subprocess.run(
            [python, *wrapper, str(entry)],
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
            env={
                **os.environ,
                "FLYWHEEL": str(self.folder),
                "FLYWHEEL_SDK_TOTAL_RETRIES": "0",
                "PYTHONWARNINGS": "ignore",
            },
        )
        assert "Traceback" not in result.stdout + result.stderr, result.stdout
        return result

    def run_measured(self) -> tuple[subprocess.CompletedProcess[str], Measured]:
        """Run the gear; also say what its process took."""
        result = self.run(wrapper=("-c", _MEASURED))
        measured = json.loads(result.stderr.splitlines()[-1])
        return result, Measured(measured["peak"], frozenset(measured["modules"]))

    def reports(self) -> list[Path]:
        return sorted((self.folder / "output").glob("dicom-send_report-*.csv"))

    def report_rows(self) -> list[dict[str, str]]:
        rows = []
        for path in self.reports():
            with open(path, newline="") as f:
                reader = csv.DictReader(f)
                assert tuple(reader.fieldnames or ()) == COLUMNS
                rows += list(reader)
        return rows

    def instance_rows(self) -> list[dict[str, str]]:
        (path,) = (self.folder / "output").glob("dicom-send_instances_*.csv")
        with open(path, newline="") as f:
            return list(csv.DictReader(f))


@dataclass
class Site:
    """A hierarchy in the stand-in: one session, acquisitions with DICOM files."""

    standin: StandIn
    group: str
    project: str
    subject: str
    session: str
    acquisitions: dict[str, str] = field(default_factory=dict)


def series_zip(folder: Path, count: int, seed: str) -> Path:
    files = write_series(folder / seed, count, seed=seed)
    return zip_files(folder / f"{seed}.zip", {f"{seed}/{p.name}": p for p in files})
