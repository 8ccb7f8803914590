"""The fuzzer (tests/fuzzing.py): every input it ever failed on, replayed; the
seeds it starts from; and a short run of it (``DICOM_SEND_FUZZ_SECONDS``, 15 by
default; ``./dev fuzz`` runs it longer)."""

import os
import subprocess
import sys
from pathlib import Path

import pytest
from fuzzing import REGRESSIONS, check, seeds

HERE = Path(__file__).resolve().parent
FUZZ_SECONDS = int(os.environ.get("DICOM_SEND_FUZZ_SECONDS", "15"))


def regressions() -> list[Path]:
    return sorted(p for p in REGRESSIONS.iterdir() if not p.name.endswith(".md"))


@pytest.mark.parametrize("path", regressions(), ids=lambda p: p.name)
def test_what_the_fuzzer_found_stays_fixed(path: Path, tmp_path: Path) -> None:
    check(path.read_bytes(), tmp_path)


SEEDS = dict(seeds())


@pytest.mark.parametrize("name", sorted(SEEDS))
def test_the_seeds_hold(name: str, tmp_path: Path) -> None:
    check(SEEDS[name], tmp_path)


@pytest.mark.timeout(FUZZ_SECONDS + 90)
def test_a_short_fuzzing_run_finds_nothing() -> None:
    """A failure here is a bug the fuzzer found: the input that shows it is in
    tests/fuzz/regressions/, replayed above from then on."""
    before = set(regressions())
    result = subprocess.run(
        [
            sys.executable,
            str(HERE / "fuzz" / "main.py"),
            f"-max_total_time={FUZZ_SECONDS}",
            "-print_final_stats=1",
        ],
        capture_output=True,
        text=True,
        timeout=FUZZ_SECONDS + 60,
        check=False,
        env={**os.environ, "PYTHONWARNINGS": "ignore"},
    )
    found = sorted(set(regressions()) - before)
    assert result.returncode == 0, f"{found}:\n{result.stderr[-4000:]}"
    assert found == []
    runs = [
        line
        for line in result.stderr.splitlines()
        if "stat::number_of_executed_units" in line
    ]
    assert runs, result.stderr[-2000:]
    assert int(runs[0].split(":")[-1]) > 100
