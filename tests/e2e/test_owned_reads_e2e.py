"""Owned reads through the real daemon: an account configured for an OAuth 2.0 user token it
does not have yet is parked with the fix in its reason; `syncd x authorize`, then `syncd
resume`, and its mentions reach the CRM read as owned reads, while the other brand account
goes on with the app token throughout."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner
from support.e2e import Daemon, make_world, tasks, wait_for

from sandbox.seed import seed
from syncd.cli import cli

CLIENT = "syncd-e2e-client"

pytestmark = pytest.mark.parametrize("state_url", ["sqlite"], indirect=True)


def cli_run(config: Path, *args: str, input: str | None = None) -> tuple[int, str]:
    result = CliRunner().invoke(cli, ["--config", str(config), *args], input=input)
    return result.exit_code, result.output


def test_park_authorize_resume_and_read_as_owned(
    state_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with make_world(state_url, tmp_path, monkeypatch) as world:
        people = seed(world.x, world.sf, customers=6)
        linked = [c for c in people.customers if c.kind == "contact_by_id"]
        world.x.auth.add_client(CLIENT)
        token_file = tmp_path / "x-acme.json"
        table = (
            f'\n[sources.user_auth.acme]\ntype = "oauth2"\nclient_id = "{CLIENT}"\n'
            f'token_file = "{token_file}"\n'
        )
        world.config.write_text(world.config.read_text().replace("\n[crm]", table + "\n[crm]"))
        support = world.x.add_post(linked[0].user_id, "@acmesupport read with the app token")

        daemon = Daemon(world.config)
        try:
            wait_for(lambda: "acme-x:acme parked after" in daemon.log, what="@acme parked")
            wait_for(lambda: f"x:{support['id']}" in tasks(world.sf), what="@acmesupport")
            code, out = cli_run(world.config, "status", "--json")
            assert code == 0, out
            (parked,) = json.loads(out)["parked"]
            assert parked["name"] == "acme-x:acme"
            assert "x-acme.json does not exist: run `syncd x authorize acme`" in parked["reason"]
            assert world.x.usage.owned_posts_billed == 0

            code, out = cli_run(world.config, "x", "authorize", "acme", input="")
            assert code == 1, out
            url = next(w for w in out.split() if w.startswith("https://x.com/i/oauth2/"))
            redirect = world.x.approve(url, "acme")
            code, out = cli_run(world.config, "x", "authorize", "acme", input=redirect + "\n")
            assert code == 0, out
            code, out = cli_run(world.config, "resume", "acme-x:acme")
            assert code == 0, out

            mention = world.x.add_post(linked[-1].user_id, "@acme read with acme's own token")
            wait_for(lambda: f"x:{mention['id']}" in tasks(world.sf), what="@acme's mention")
        finally:
            exit_code = daemon.stop()
        assert exit_code == 0, daemon.log
        assert "acme-x:acme resumed" in daemon.log
        assert world.x.usage.owned_posts_billed >= 1
