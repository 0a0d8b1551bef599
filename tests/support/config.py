"""Writing broken configs and checking what syncd says about them."""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import pytest

SECRETS = ("x-secret-value", "sf-secret-value", "tok-secret-value")


BASE = """\
[state]
url = "sqlite:///{tmp}/state.db"

[daemon]
write_interval = "10s"

[[sources]]
name = "acme-x"
type = "x"
bearer_token = "env:T_X_BEARER"
api_base_url = "http://127.0.0.1:9"
accounts = ["acme"]
page_size = 100
interval = "2m"

[crm]
type = "salesforce"
login_url = "http://127.0.0.1:9"
username = "u@example.com"
password = "env:T_SF_PASSWORD"
security_token = "file:{tmp}/token"
"""


def edit(*pairs: tuple[str, str]) -> str:
    """BASE with each ``old`` replaced by ``new``; ``old`` must be there (so rows stay honest)."""
    text = BASE
    for old, new in pairs:
        assert old in text, old
        text = text.replace(old, new, 1)
    return text


@dataclass(frozen=True)
class Case:
    id: str
    toml: str | None  # None: the config file does not exist
    # Every problem expected, as (key path, fragment of its message); nothing else may appear.
    expected: list[tuple[str, str]]
    env: dict[str, str | None] = field(default_factory=dict)
    hidden: tuple[str, ...] = ()  # strings the output must never contain (secret values)
    setup: Callable[[Path], object] | None = None
    marks: tuple[pytest.MarkDecorator, ...] = ()


def problem_lines(stderr: str) -> list[str]:
    """The problem lines of a ConfigError as the CLI prints it, checked to be well formed."""
    lines = stderr.rstrip("\n").split("\n")
    head = re.fullmatch(
        r"syncd: invalid configuration(?: in \S+?)?(?:: (?P<one>.+)| \((?P<n>\d+) problems\):)",
        lines[0],
    )
    assert head, stderr
    if head["n"]:
        assert len(lines) == int(head["n"]) + 1, stderr
        assert all(line.startswith("  ") for line in lines[1:]), stderr
        return [line.strip() for line in lines[1:]]
    assert len(lines) == 1, stderr  # one problem: one line in all
    return [head["one"]]


def check(output: str, case: Case, tmp: Path) -> None:
    assert "Traceback" not in output
    for secret in (*SECRETS, *case.hidden):
        assert secret not in output
    lines = problem_lines(output)
    assert len(lines) == len(case.expected), output
    for line, (path, fragment) in zip(lines, case.expected, strict=True):
        fragment = fragment.replace("{tmp}", str(tmp))
        if path:
            assert line.startswith(f"{path}: "), (path, output)
        assert fragment in line, (fragment, output)
        assert len(line) <= 200 + 2 + 400  # ConfigError's clip: a line, not a screenful
