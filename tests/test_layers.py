"""The package's layers: imports run one way, and no module grows past its size.

Front doors (``cli``, ``gear``) -> ``sending`` -> ``pacs`` -> ``transport`` -> ``dicom``
-> the package's root modules (settings, errors, statuses of the run, text safety,
logging, stopping). A module imports from its own layer or a lower one; the two
front doors do not import each other.
"""

import ast
from pathlib import Path

import pytest

import fw_gear_dicom_send

PACKAGE = Path(fw_gear_dicom_send.__file__).parent
NAME = "fw_gear_dicom_send"
RANKS = {"dicom": 1, "transport": 2, "pacs": 3, "sending": 4, "cli": 5, "gear": 5}
ENTRY_POINTS = {"__init__", "__main__"}
MAX_LINES = 400


def _modules() -> list[Path]:
    return sorted(PACKAGE.rglob("*.py"))


def _dotted(path: Path) -> str:
    parts = path.relative_to(PACKAGE).with_suffix("").parts
    return ".".join(p for p in parts if p != "__init__")


def _layer(dotted: str) -> str:
    """The subpackage a module is in, or "" for the package root."""
    first = dotted.split(".", maxsplit=1)[0]
    return first if first in RANKS else ""


def _imported(path: Path) -> list[tuple[int, str]]:
    """(line, module relative to the package) of every import of the package."""
    here = _dotted(path).split(".")
    package = here if path.name == "__init__.py" else here[:-1]
    found = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = package[: len(package) - (node.level - 1)]
                target = ".".join([*base, *(node.module or "").split(".")]).strip(".")
            elif (node.module or "").startswith(NAME):
                target = node.module.removeprefix(NAME).strip(".")  # type: ignore[union-attr]
            else:
                continue
            names = (
                [target] if node.module else [f"{target}.{a.name}" for a in node.names]
            )
            found += [(node.lineno, n.strip(".")) for n in names]
        elif isinstance(node, ast.Import):
            found += [
                (node.lineno, a.name.removeprefix(NAME).strip("."))
                for a in node.names
                if a.name.startswith(NAME)
            ]
    return found


def _violations() -> list[str]:
    wrong = []
    for path in _modules():
        me = _dotted(path)
        if me in ENTRY_POINTS or me == "":
            continue
        mine = _layer(me)
        for line, target in _imported(path):
            theirs = _layer(target)
            if not target or theirs == mine:
                continue
            if RANKS.get(theirs, 0) >= RANKS.get(mine, 0):
                wrong.append(f"{me}:{line} imports {target}")
    return wrong


def test_imports_run_from_front_doors_down_to_dicom() -> None:
    assert _violations() == []


def test_the_check_sees_an_upward_import(tmp_path: Path) -> None:
    source = "from ..sending.engine import send\nfrom .. import stopping\n"
    module = PACKAGE / "transport" / "_probe_layers.py"
    module.write_text(source)
    try:
        assert _violations() == [
            "transport._probe_layers:1 imports sending.engine",
        ]
    finally:
        module.unlink()


@pytest.mark.parametrize("path", _modules(), ids=lambda p: _dotted(p) or "__init__")
def test_no_module_is_over_the_size_limit(path: Path) -> None:
    lines = len(path.read_text().splitlines())
    assert lines <= MAX_LINES, f"{_dotted(path)} has {lines} lines"


def test_subpackages_show_the_flow() -> None:
    subpackages = {p.parent.name for p in PACKAGE.glob("*/__init__.py")}
    assert subpackages == set(RANKS)
