"""Issue 16, item 15: text from outside is printed as text, never as markup or terminal
control. ``[/b]`` in an API error crashed ``syncd status`` and ``[redacted]`` vanished (rich
markup); an escape sequence or a bidi override in a display name or a post reached the
admin's terminal through ``links show`` and ``links review``."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from support.e2e import World, make_world, poll_once

from sandbox.seed import seed
from syncd.cli import cli
from syncd.cli.text import literal, printable
from syncd.state.db import Database
from syncd.state.tables import cursors, parked

ESC_TITLE = "\x1b]0;owned\x07"  # sets the terminal's title
ESC_CLEAR = "\x1b[2J\x1b[H"  # clears the screen
RLO, LRI, PDI = "\u202e", "\u2066", "\u2069"
CONTROLS = ("\x1b", "\x07", "\x9b", RLO, LRI, PDI, "\u202a", "\x00")


def test_printable_keeps_text_and_drops_controls_and_overrides() -> None:
    assert printable("a\tb\nc ünïcödé 😀 [b]") == "a\tb\nc ünïcödé 😀 [b]"
    assert printable(f"{ESC_TITLE}Eve{RLO}gnp.exe{ESC_CLEAR}\x9b31m\x7f\r") == (
        "]0;ownedEvegnp.exe[2J[H31m"
    )
    assert literal("[/b] and [redacted]") == "\\[/b] and \\[redacted]"


@pytest.fixture
def world(state_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[World]:
    monkeypatch.setenv("COLUMNS", "250")  # rich would squeeze the error column away at 80
    with make_world(state_url, tmp_path, monkeypatch) as w:
        seed(w.x, w.sf, customers=4)  # the brand accounts, and a few customers
        yield w


def run(world: World, *args: str, stdin: str | None = None) -> Any:
    result = CliRunner().invoke(cli, ["--config", str(world.config), *args], input=stdin)
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    return result


def test_status_prints_api_errors_as_text(world: World, state_url: str) -> None:
    assert run(world, "status").exit_code == 0  # migrates the state database
    now = datetime.now(UTC)
    db = Database(state_url)
    try:
        with db.transaction() as conn:
            conn.execute(
                cursors.insert().values(
                    source="acme-x",
                    account="acme",
                    stream="mentions",
                    last_error=f"X API 500: [/b] broke [bold]it[/] [redacted]{ESC_CLEAR}{RLO}",
                    updated_at=now,
                )
            )
            conn.execute(
                parked.insert().values(
                    name="crm",
                    reason=f"login refused: [/red] {ESC_TITLE}[redacted]",
                    failures=3,
                    parked_at=now,
                    kind="auth",
                )
            )
    finally:
        db.dispose()

    result = run(world, "status")

    assert result.exit_code == 0, result.output
    out = result.stdout
    assert "X API 500: [/b] broke [bold]it[/] [redacted]" in out
    assert "login refused: [/red] ]0;owned[redacted]" in out
    assert not [c for c in CONTROLS if c in out]


def test_links_show_and_review_print_names_and_posts_without_controls(world: World) -> None:
    name = f"Eve{ESC_TITLE} {RLO}[bold]evil{LRI}x{PDI}"
    user = world.x.add_user("eve_x", name)
    world.x.add_post(user["id"], f"@acme hi{ESC_CLEAR} [/b] {RLO}txt.exe")
    poll_once(world)  # an unknown author: held

    shown = run(world, "links", "show", "@eve_x")
    assert shown.exit_code == 0, shown.output
    out = shown.stdout
    assert "@eve_x (Eve]0;owned [bold]evilx)" in out
    assert "hi[2J[H [/b] txt.exe" in out
    assert not [c for c in CONTROLS if c in out]
    # The JSON keeps the data as it is, for scripts: json escapes the C0 controls itself.
    data = json.loads(run(world, "links", "show", "@eve_x", "--json").stdout)
    assert data["display_name"] == name


def test_links_review_prints_the_author_without_controls(world: World) -> None:
    user = world.x.add_user("ann_x", "Ann Lee", description=f"bio{ESC_TITLE} [/i] {RLO}gpj")
    for city in ("Leeds", "Lima"):  # two Contacts share her name: the resolver asks
        world.sf.insert("Contact", {"FirstName": "Ann", "LastName": "Lee", "MailingCity": city})
    world.x.add_post(user["id"], f"@acme help{ESC_CLEAR} [/b]")
    poll_once(world)

    result = run(world, "links", "review", stdin="q\n")

    assert result.exit_code == 0, result.output
    out = result.stdout
    assert "1 of 1: @ann_x (Ann Lee)" in out
    assert "bio: bio]0;owned [/i] gpj" in out and "help[2J[H [/b]" in out
    assert not [c for c in CONTROLS if c in out]
