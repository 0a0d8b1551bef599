"""State is the floor the core stands on: it imports nothing of the layers that use it (issue
17), so the value types it stores live in :mod:`syncd.model`; and all SQL lives in it."""

from __future__ import annotations

import ast
from pathlib import Path

import syncd

SYNCD = Path(syncd.__file__).parent
ABOVE_STATE = ("resolver", "budget", "pipeline", "backfill", "compliance", "cli", "config")


def _imports(path: Path) -> set[str]:
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.ImportFrom) and node.module:
            found.add(node.module)
            found.update(f"{node.module}.{alias.name}" for alias in node.names)
        elif isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
    return found


def test_state_imports_nothing_of_the_layers_above_it() -> None:
    upward = {
        f"{path.relative_to(SYNCD)}: {name}"
        for path in sorted((SYNCD / "state").rglob("*.py"))
        for name in _imports(path)
        if any(name == f"syncd.{p}" or name.startswith(f"syncd.{p}.") for p in ABOVE_STATE)
    }
    assert upward == set()


def test_only_state_builds_sql() -> None:
    # Outside state, SQLAlchemy is a connection handed through, an engine URL or an error.
    handed_through = {"sqlalchemy.Connection", "sqlalchemy.Engine"}
    building = sorted(
        f"{path.relative_to(SYNCD)}: {name}"
        for path in SYNCD.rglob("*.py")
        if "state" not in path.relative_to(SYNCD).parts
        for name in _imports(path)
        if name.startswith("sqlalchemy.")
        and name not in handed_through
        and not name.startswith(("sqlalchemy.exc", "sqlalchemy.engine"))
    )
    assert building == []
