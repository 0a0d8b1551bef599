"""The command groups connectors add to ``syncd`` through the registry: listed, built only when
asked for, handed the configuration, their user errors printed as the command line's own."""

from __future__ import annotations

import sys
import types
from collections.abc import Iterator
from pathlib import Path

import click
import pytest
from click.testing import CliRunner
from support.config import BASE

import connectors
from syncd.cli import cli
from syncd.contracts.commands import CommandContext
from syncd.errors import UserError

MODULE = "tests_probe_commands"
built: list[CommandContext] = []


def _group(context: CommandContext) -> click.Group:
    built.append(context)

    @click.group("probe")
    def probe() -> None:
        """Probe helpers."""

    @probe.command("where")
    def where() -> None:
        click.echo(f"config {context.settings().path}")

    @probe.command("defaults")
    def defaults() -> None:
        click.echo("none" if context.settings_if_any() is None else "configured")

    @probe.command("refuse")
    def refuse() -> None:
        raise UserError("no such account")

    return probe


@pytest.fixture(autouse=True)
def probe_group(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    module = types.ModuleType(MODULE)
    module.__dict__["group"] = _group
    monkeypatch.setitem(sys.modules, MODULE, module)
    monkeypatch.setitem(connectors.COMMANDS, "probe", f"{MODULE}:group")
    monkeypatch.delenv("SYNCD_CONFIG", raising=False)
    built.clear()
    yield


@pytest.fixture
def config_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("T_X_BEARER", "bearer-token-value")
    monkeypatch.setenv("T_SF_PASSWORD", "password-value")
    (tmp_path / "token").write_text("security-token-value")
    path = tmp_path / "config.toml"
    path.write_text(BASE.format(tmp=tmp_path))
    return path


def test_the_registry_s_groups_are_listed_and_built_only_when_asked_for() -> None:
    result = CliRunner().invoke(cli, ["status", "--help"])
    assert result.exit_code == 0 and not built  # another command: the group is not built
    listed = CliRunner().invoke(cli, ["--help"])
    assert listed.exit_code == 0 and "probe" in listed.output and "Probe helpers." in listed.output
    for name in ("x", "salesforce"):  # the real connectors' groups, as before
        assert f"  {name} " in listed.output


def test_a_group_is_handed_the_configuration(config_file: Path) -> None:
    result = CliRunner().invoke(cli, ["--config", str(config_file), "probe", "where"])
    assert result.exit_code == 0, result.output
    assert result.output == f"config {config_file}\n"


def test_without_any_config_file_a_group_may_use_its_defaults(tmp_path: Path) -> None:
    result = CliRunner().invoke(cli, ["probe", "defaults"])
    assert (result.exit_code, result.output) == (0, "none\n")
    missing = tmp_path / "none.toml"  # named, so it must be there
    named = CliRunner().invoke(cli, ["--config", str(missing), "probe", "defaults"])
    assert named.exit_code == 2 and "does not exist" in named.output


def test_a_user_error_is_one_line_and_its_exit_code() -> None:
    result = CliRunner().invoke(cli, ["probe", "refuse"])
    assert result.exit_code == 1
    assert result.output == "syncd: no such account\n"
