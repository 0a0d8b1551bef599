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


def imported_modules(path: Path) -> set[str]:
    """Every absolute module ``path`` imports, in full (``syncd.state.db``)."""
    out: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            out |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            out.add(node.module)
            if node.module == "syncd":  # ``from syncd import secrets``: the module syncd.secrets
                out |= {f"syncd.{alias.name}" for alias in node.names}
    return out


# What a connector may use of the core: the contract and its types. The second set is what
# connectors still use today and issue 17 moves out of the core (a ratchet: it may shrink,
# never grow).
CONNECTOR_MAY_IMPORT = {"syncd", "syncd.model", "syncd.contracts", "syncd.errors"}
CONNECTOR_STILL_IMPORTS = {
    "syncd.secrets",
    "syncd.urls",
    "syncd.private_files",
    "syncd.config.problems",
    "syncd.resolver.evidence",
}


def test_connectors_use_only_the_contract_of_the_core() -> None:
    used: dict[str, set[str]] = {}
    for f in sorted((ROOT / "connectors").rglob("*.py")):
        core = {m for m in imported_modules(f) if m == "syncd" or m.startswith("syncd.")}
        if extra := core - CONNECTOR_MAY_IMPORT - CONNECTOR_STILL_IMPORTS:
            used[str(f.relative_to(ROOT))] = extra
    assert used == {}


def test_the_ratchet_names_only_what_connectors_still_use() -> None:
    # Once a module leaves CONNECTOR_STILL_IMPORTS's reasons, it must leave the list too.
    still = set()
    for f in (ROOT / "connectors").rglob("*.py"):
        still |= imported_modules(f) & CONNECTOR_STILL_IMPORTS
    assert still == CONNECTOR_STILL_IMPORTS

