"""The gear image's install steps, run from the Dockerfile itself (no Docker engine
runs here): its COPY and install RUN lines are replayed into a temporary root, and
the gear installed that way runs a job."""

import re
import shutil
import subprocess
import tomllib
from pathlib import Path

from gearjob import REPO, Gear, Site, old_gear_config, series_zip

from fw_gear_dicom_send.pacs.receiver import StorageReceiver
from fw_gear_dicom_send.status import ExitStatus

DOCKERFILE = REPO / "Dockerfile"
LOCK = REPO / "docker" / "requirements.lock"


def instructions() -> list[tuple[str, str]]:
    """The Dockerfile's instructions, continuation lines joined."""
    text = re.sub(r"\\\n\s*", " ", DOCKERFILE.read_text())
    result = []
    for line in text.splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            word, _, rest = line.strip().partition(" ")
            result.append((word.upper(), rest.strip()))
    return result


def replay(root: Path) -> dict[str, str]:
    """Run the Dockerfile's COPY and install steps with ``root`` as /; the ENV."""
    env: dict[str, str] = {}

    def expand(text: str) -> str:
        text = re.sub(r"\$\{?(\w+)\}?", lambda m: env.get(m[1], m[0]), text)
        return re.sub(r"(?<![\w.])/(opt|flywheel|venv)\b", f"{root}/\\1", text)

    for word, rest in instructions():
        if word == "ENV":
            for key, value in re.findall(r"(\w+)=(\S+)", rest):
                env[key] = value
        elif word == "COPY":
            *sources, dest = rest.split()
            target = Path(expand(dest))
            for source in sources:
                src = REPO / source
                if src.is_dir():
                    shutil.copytree(
                        src, target, ignore=shutil.ignore_patterns("__pycache__")
                    )
                else:
                    target.mkdir(parents=True, exist_ok=True)
                    shutil.copy(src, target / src.name)
        elif word == "RUN" and "install.sh" in rest:
            subprocess.run(
                expand(rest),
                shell=True,
                check=True,
                env={"PATH": "/usr/bin:/bin", "VENV": str(root / "venv")},
                capture_output=True,
            )
    return env


def test_the_lock_pins_what_pyproject_pins() -> None:
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    wanted = project["dependencies"] + project["optional-dependencies"]["gear"]
    lock = {
        line.split("==")[0].lower(): line.split("==")[1]
        for line in LOCK.read_text().splitlines()
        if "==" in line
    }
    for requirement in wanted:
        name, version = re.sub(r"\[.*\]", "", requirement).split("==")
        assert lock.get(name.lower()) == version, requirement


def test_the_image_install_steps_give_a_working_gear(
    gear: Gear, site: Site, receiver: StorageReceiver, tmp_path: Path
) -> None:
    root = tmp_path / "image"
    env = replay(root)
    assert env["FLYWHEEL"] == "/flywheel/v0"
    entry = root / "flywheel" / "v0" / "run.py"
    assert (entry.parent / "manifest.json").is_file()
    acquisition = site.standin.acquisition(site.session, "CT")
    gear.add_file_input("file", series_zip(tmp_path, 3, "ct"), acquisition)
    gear.config = old_gear_config(receiver.port)
    gear.destination = {"type": "acquisition", "id": acquisition}

    result = gear.run(python=str(root / "venv" / "bin" / "python"), entry=entry)

    assert result.returncode == ExitStatus.SUCCESS, result.stdout + result.stderr
    assert len(receiver.received) == 3
    assert len(site.standin.uploads) == 1
