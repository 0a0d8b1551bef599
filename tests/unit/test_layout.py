"""The tree's dependency rules, checked: what a folder may import is part of the design."""

from __future__ import annotations

import ast
from pathlib import Path

from support import ROOT


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
            if node.module == "syncd":  # ``from syncd import errors``: the module syncd.errors
                out |= {f"syncd.{alias.name}" for alias in node.names}
    return out


# What a connector may use of the core: the data it carries (model), the contract it fulfils
# with what that contract hands it (contracts and its modules: secrets, URL policy, private
# files, text helpers) and the errors it raises. Nothing of the core's machinery.
def core_module_allowed(module: str) -> bool:
    return module in {"syncd", "syncd.model", "syncd.errors", "syncd.contracts"} or (
        module.startswith("syncd.contracts.")
    )


def test_connectors_use_only_the_contract_of_the_core() -> None:
    used: dict[str, set[str]] = {}
    for f in sorted((ROOT / "connectors").rglob("*.py")):
        core = {m for m in imported_modules(f) if m == "syncd" or m.startswith("syncd.")}
        if extra := {m for m in core if not core_module_allowed(m)}:
            used[str(f.relative_to(ROOT))] = extra
    assert used == {}
