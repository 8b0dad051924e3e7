"""Import direction between our packages, read from the source (imports inside functions too).

kernel      ← imports nothing of ours
lexicons    ← kernel
ingest      ← kernel, lexicons
projectors  ← kernel, lexicons
api         ← kernel, lexicons
plyr_appview (the wiring: CLI, process supervision) ← anything; nothing imports it
bench       ← anything but tests (what both need lives in ``testkit``)
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
OURS = {"kernel", "lexicons", "ingest", "projectors", "api", "plyr_appview", "testkit", "tests"}
ALLOWED: dict[str, set[str]] = {
    "kernel": set(),
    "lexicons": {"kernel"},
    "ingest": {"kernel", "lexicons"},
    "projectors": {"kernel", "lexicons"},
    "api": {"kernel", "lexicons"},
    "plyr_appview": {"kernel", "lexicons", "ingest", "projectors", "api"},
    "testkit": {"kernel", "lexicons", "ingest", "projectors", "api", "plyr_appview"},
    "bench": {"kernel", "lexicons", "ingest", "projectors", "api", "plyr_appview", "testkit"},
}


def imported_packages(path: Path) -> set[tuple[str, int]]:
    """Top-level packages of ours that ``path`` imports, with the line of each import."""
    found: set[tuple[str, int]] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names = [node.module]
        else:
            continue
        found.update((n.split(".")[0], node.lineno) for n in names if n.split(".")[0] in OURS)
    return found


def violations(package: str) -> list[str]:
    allowed = ALLOWED[package] | {package}
    return [
        f"{path.relative_to(ROOT)}:{line} imports {target}"
        for path in sorted((ROOT / package).rglob("*.py"))
        for target, line in sorted(imported_packages(path))
        if target not in allowed
    ]


@pytest.mark.parametrize("package", sorted(ALLOWED))
def test_package_imports_only_what_is_below_it(package: str) -> None:
    assert (ROOT / package).is_dir(), package
    assert violations(package) == []


def test_the_checker_sees_imports_inside_functions(tmp_path: Path) -> None:
    source = tmp_path / "m.py"
    source.write_text("def f():\n    from ingest.identity import x\n    import api.app\n")
    assert imported_packages(source) == {("ingest", 2), ("api", 3)}
