"""The command line's help, its checks of options, and the README's option lists.

Each test runs ``python -m fw_gear_dicom_send`` as a user would and checks the
exact line.
"""

import csv
import re
import subprocess
import sys
from pathlib import Path

import pytest

from fw_gear_dicom_send.cli.main import COMMANDS
from fw_gear_dicom_send.gear.completion import COLUMNS as COMPLETION_COLUMNS
from fw_gear_dicom_send.status import ExitStatus

README = Path(__file__).resolve().parent.parent / "README.md"


def cli(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "fw_gear_dicom_send", *args],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        cwd=cwd,
    )


def help_of(*command: str) -> str:
    result = cli(*command, "-h")
    assert result.returncode == 0, result.stderr
    return result.stdout


def help_line(text: str, option: str) -> str:
    """The help of one option: its line(s) in ``-h``, joined."""
    lines = text.splitlines()
    for number, line in enumerate(lines):
        if re.match(rf"  {re.escape(option)}\b", line):
            following = []
            for more in lines[number + 1 :]:
                if not more.startswith(" " * 10):
                    break
                following.append(more.strip())
            return " ".join(" ".join([line, *following]).split())
    raise AssertionError(f"{option} not in the help")


# -- the options in --help and in the README


def options_in_help(text: str) -> set[str]:
    """Every option (and positional argument) an ``-h`` lists, but ``-h`` itself."""
    found: set[str] = set()
    section = ""
    for line in text.splitlines():
        if line and not line.startswith(" "):
            section = line
            continue
        if not line.startswith("  ") or line.startswith("   "):
            continue
        invocation = re.split(r"\s{2,}", line.strip())[0]
        if section.startswith("positional") and not invocation.startswith("-"):
            if not invocation.startswith("{"):
                found.add(f"{invocation}...")
            continue
        found |= set(re.findall(r"(?<![\w-])(--?[A-Za-z][\w-]*)", invocation))
    return found - {"-h", "--help"}


def readme_options() -> dict[str, set[str]]:
    """The README's table of the options of each command: command -> options.

    A row's third column names a row whose options it takes too.
    """
    section = README.read_text().split("\n## Command line\n", 1)[1]
    header = "| command | its options | and the group |\n|---|---|---|\n"
    table_text = section.split(header, 1)[1].split("\n\n", 1)[0]
    rows: dict[str, tuple[set[str], str]] = {}
    for line in table_text.splitlines():
        name, listed, group = (cell.strip() for cell in line.strip("|").split("|"))
        options = {o.split()[0] for o in re.findall(r"`([^`]+)`", listed)}
        rows[name.strip("`")] = (options, group)
    table: dict[str, set[str]] = {}
    for name, (own, first) in rows.items():
        options, group = set(own), first
        while group:
            more, group = rows[group]
            options |= more
        table[name] = options
    return table


def test_readme_lists_every_option_of_every_command_and_no_other() -> None:
    table = readme_options()
    assert set(table) == {"(all)", "receiver", "TLS", *COMMANDS}
    everywhere = options_in_help(help_of()) - {"--verbose", "--quiet"}
    assert everywhere == table["(all)"]
    for command in COMMANDS:
        shown = options_in_help(help_of(command))
        # Options of the whole program (the (all) row) may be given after it too.
        shown -= {"-v", "--verbose", "-q", "--quiet"}
        assert shown == table[command], (
            f"{command}: only in --help: {sorted(shown - table[command])}; "
            f"only in the README: {sorted(table[command] - shown)}"
        )


# -- help texts


def test_path_and_value_have_help_texts() -> None:
    text = help_of("send")
    assert help_line(text, "PATH") == (
        "PATH DICOM files, folders (searched recursively) and zip/tar archives, "
        "also inside folders and archives"
    )
    assert help_line(text, "--value") == (
        "--value VALUE, --tag-value VALUE the value written into the element "
        "(DICOM Send)"
    )


@pytest.mark.parametrize(
    ("command", "awaits"),
    [
        ("send", "each C-STORE response"),
        ("echo", "the C-ECHO response"),
        ("find", "each C-FIND response"),
        ("move", "each C-MOVE response"),
        ("retrieve", "each C-MOVE or C-GET response"),
        ("commit", "each N-ACTION response"),
    ],
)
def test_dimse_timeout_says_what_each_command_waits_for(
    command: str, awaits: str
) -> None:
    assert help_line(help_of(command), "--dimse-timeout") == (
        f"--dimse-timeout S seconds for {awaits} (120)"
    )


def test_listen_shows_its_defaults() -> None:
    text = help_of("listen")
    assert (
        help_line(text, "--ae-title") == "--ae-title AE_TITLE our AE title (DICOM-SEND)"
    )
    assert help_line(text, "--tls-profile").startswith(
        "--tls-profile NAME PS3.15 Annex B profile (BCP 195 RFC 8996): BCP 195,"
    )


@pytest.mark.parametrize(
    ("command", "choices"),
    [
        ("find", "{patient,study,series,image}"),
        ("move", "{patient,study,series}"),
        ("retrieve", "{patient,study,series}"),
    ],
)
def test_level_choices_are_lower_case(command: str, choices: str) -> None:
    assert help_line(help_of(command), "--level").startswith(f"--level {choices}")


@pytest.mark.parametrize(
    ("command", "required"),
    [
        ("send", ["in", "--host", "h", "--called-ae", "A"]),
        ("echo", ["--host", "h", "--called-ae", "A"]),
        ("find", ["--host", "h", "--called-ae", "A", "--level", "study"]),
        ("listen", ["--port", "1", "--out", "x"]),
    ],
)
def test_an_unknown_option_points_to_the_commands_help(
    command: str, required: list[str], tmp_path: Path
) -> None:
    result = cli(command, *required, "--bogus", cwd=tmp_path)
    assert result.returncode == ExitStatus.USAGE
    assert result.stderr == (
        "dicom-send: error: unrecognized arguments: --bogus "
        f"(see dicom-send {command} -h)\n"
    )


# -- checks of options


def test_batch_without_stow_is_refused_in_one_line(tmp_path: Path) -> None:
    result = cli(
        "send", str(tmp_path), "--host", "127.0.0.1", "--called-ae", "X",
        "--batch", "5",
    )  # fmt: skip
    assert result.returncode == ExitStatus.USAGE
    assert result.stderr == (
        "dicom-send: error: --batch needs --stow (instances per STOW-RS request); "
        "C-STORE sends each instance in a request of its own\n"
    )


def test_resume_given_the_gears_completion_report_names_the_instance_report(
    tmp_path: Path,
) -> None:
    completion = tmp_path / "dicom-send_report-S1_CT_2026-01-02_03-04-05.csv"
    with open(completion, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(COMPLETION_COLUMNS)
        writer.writerow(
            ["a1", "g/p/s/S1/CT/files/ct.zip", "ct.zip", "2", "2", "Complete"]
        )
    instances = tmp_path / "dicom-send_instances_2026-01-02_03-04-05.csv"
    instances.write_text("file,status,sop_instance_uid\n")
    result = cli(
        "send", str(tmp_path / "in"), "--host", "127.0.0.1", "--called-ae", "X",
        "--resume", str(completion),
    )  # fmt: skip
    assert result.returncode == ExitStatus.USAGE
    assert result.stderr == (
        f"dicom-send: error: --resume {completion} is the gear's completion report "
        "(a row per Flywheel file); give the per-instance report beside it: "
        f"{instances}\n"
    )
