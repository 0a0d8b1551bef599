"""The tree's dependency rules, checked: what a folder may import is part of the design."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest
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


# The core knows no network and no outside system by name: what differs between them is each
# connector's to declare, found through the registry. Names in words, whichever case.
NAMED = {"x", "twitter", "salesforce"}
_NAMED_WORD = re.compile(r"(?<![A-Za-z0-9])(x|twitter|salesforce)(?![A-Za-z0-9])", re.IGNORECASE)
# Websites, not networks: a profile that links to x.com says nothing of who its author is,
# whichever network the profile is on, as with instagram.com or gmail.com beside them.
NAMING_ALLOWED = {
    ("syncd/resolver/evidence.py", "x.com"),
    ("syncd/resolver/evidence.py", "twitter.com"),
}
_WORDS = re.compile(r"[A-Z]+(?![a-z])|[A-Z]?[a-z]+|\d+")  # snake_case, dotted and CamelCase


def _docstrings(tree: ast.AST) -> set[int]:
    kinds = (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)
    return {
        id(node.body[0].value)
        for node in ast.walk(tree)
        if isinstance(node, kinds)
        and node.body
        and isinstance(node.body[0], ast.Expr)
        and isinstance(node.body[0].value, ast.Constant)
    }


def _names_a_system(name: str) -> bool:
    """An identifier or dotted path with a word that is a system's name (``x_group``,
    ``connectors.salesforce.crm``, ``XSource``)."""
    return any(word.lower() in NAMED for word in _WORDS.findall(name))


def naming(source: str, filename: str = "<probe>") -> list[str]:
    """Where code (not a comment or docstring) names x, twitter or salesforce: string
    constants, identifiers, attribute and argument names, imported modules and names."""
    tree = ast.parse(source, filename)
    docs = _docstrings(tree)
    found: list[str] = []
    for node in ast.walk(tree):
        names: list[str] = []
        if isinstance(node, ast.Constant) and isinstance(node.value, str):
            if id(node) not in docs and _NAMED_WORD.search(node.value):
                found.append(f"{node.lineno}: {node.value!r}")
            continue
        if isinstance(node, ast.Name):
            names = [node.id]
        elif isinstance(node, ast.Attribute):
            names = [node.attr]
        elif isinstance(node, ast.arg | ast.keyword):
            names = [node.arg or ""]
        elif isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
            names = [node.name]
        elif isinstance(node, ast.alias):
            names = [node.name, node.asname or ""]
        elif isinstance(node, ast.ImportFrom):
            names = [node.module or ""]
        found += [f"{getattr(node, 'lineno', '?')}: {n}" for n in names if _names_a_system(n)]
    return found


def test_the_core_names_no_network_and_no_crm() -> None:
    named: dict[str, list[str]] = {}
    for f in sorted((ROOT / "syncd").rglob("*.py")):
        where = str(f.relative_to(ROOT))
        hits = [
            h
            for h in naming(f.read_text(), where)
            if (where, h.split(": ", 1)[1].strip("'\"")) not in NAMING_ALLOWED
        ]
        if hits:
            named[where] = hits
    assert named == {}


@pytest.mark.parametrize(
    "probe",
    [
        'LABELS = {"x": "X"}',
        'url = "https://salesforce.example"',
        "print(f'{n} calls to Salesforce')",
        "header = 'x-rate-limit-reset'",
        "from connectors.x.auth import OAuth2UserAuth",
        "import connectors.salesforce.crm",
        "from connectors import salesforce",
        "def x_group() -> None: ...",
        "class TwitterSource: ...",
        "source = XSource(settings)",
        "settings.salesforce_url",
        "run(twitter=True)",
        "def f(salesforce_settings: object) -> None: ...",
        "for x in items: pass",
    ],
)
def test_naming_finds_a_system_named_in_code(probe: str) -> None:
    assert naming(probe)


@pytest.mark.parametrize(
    "clean",
    [
        '"""Reads X mentions into Salesforce."""',
        "# X bills owned reads at $0.001\nprice = 0.001",
        "def f() -> None:\n    '''The Salesforce way.'''",
        "hex_value = '0x1f'",
        "box = 'max', 'xx', 'taxi'",
        "label = network.title()",
        "parser = XMLParser(max_size=1, index=0x1)",
    ],
)
def test_naming_leaves_comments_docstrings_and_other_words(clean: str) -> None:
    assert naming(clean) == []


def test_the_core_reaches_connectors_only_through_the_registry() -> None:
    reached: dict[str, set[str]] = {}
    for f in sorted((ROOT / "syncd").rglob("*.py")):
        where = str(f.relative_to(ROOT))
        modules = {m for m in imported_modules(f) if m.startswith("connectors.")}
        if modules:
            reached[where] = modules
    assert reached == {}
