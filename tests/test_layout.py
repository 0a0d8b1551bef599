"""The tree's dependency rules, checked: what a folder may import is part of the design."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def imported(path: Path) -> set[str]:
    """Top-level package of every module ``path`` imports (absolute imports only)."""
    out: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            out |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            out.add(node.module.split(".")[0])
    return out


def test_the_sandbox_imports_nothing_of_syncd() -> None:
    # The stand-ins play the outside APIs: written from the public specs, they must not lean
    # on syncd's own reading of those APIs, or a shared mistake would pass every test.
    files = sorted((ROOT / "sandbox").rglob("*.py"))
    assert files
    offenders = {
        str(f.relative_to(ROOT)): sorted(imported(f) & {"syncd", "connectors"}) for f in files
    }
    assert {f: mods for f, mods in offenders.items() if mods} == {}
