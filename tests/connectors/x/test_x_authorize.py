"""``syncd x authorize``: OAuth 2.0 Authorization Code with PKCE through the real CLI, against
the X stand-in, which verifies the PKCE verifier and says whose the token is."""

from __future__ import annotations

import json
import stat
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import parse_qs, urlencode, urlsplit

import pytest
from click.testing import CliRunner, Result
from support.e2e import config_text

from connectors.x.source import XSource
from sandbox.x.api import XSandbox
from syncd.cli import cli
from syncd.config import settings as config_mod
from syncd.model import Cursor, Stream

CLIENT = "syncd-cli-client"
CALLBACK = "http://127.0.0.1/callback"
CLIENT_SECRET = "client-S3CRET-for-the-cli"


@dataclass
class Setup:
    x: XSandbox
    config: Path
    token_file: Path

    def run(self, *args: str, input: str | None = None) -> Result:
        return CliRunner().invoke(
            cli, ["--config", str(self.config), "x", "authorize", *args], input=input
        )


def write_config(x: XSandbox, tmp_path: Path, oauth2_body: str) -> Path:
    text = config_text(f"sqlite:///{tmp_path}/state.db", x.url, "http://127.0.0.1:9")
    table = "\n[sources.user_auth.acme]\n" + oauth2_body + "\n"
    text = text.replace("\n[crm]", table + "\n[crm]")
    path = tmp_path / "config.toml"
    path.write_text(text)
    return path


@pytest.fixture
def setup(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Setup]:
    monkeypatch.setenv("E2E_X_BEARER", "cli-bearer")
    monkeypatch.setenv("E2E_SF_PASSWORD", "pw")
    monkeypatch.setenv("E2E_SF_TOKEN", "tok")
    with XSandbox(bearer_token="cli-bearer") as x:
        for handle in ("acme", "acmesupport", "globex", "fan"):
            x.add_user(handle)
        x.auth.add_client(CLIENT, redirect_uris=[CALLBACK])
        token_file = tmp_path / "state" / "x-acme.json"
        body = f'type = "oauth2"\nclient_id = "{CLIENT}"\ntoken_file = "{token_file}"'
        yield Setup(x, write_config(x, tmp_path, body), token_file)


def printed_url(output: str) -> str:
    lines = [line.strip() for line in output.splitlines()]
    urls = [line for line in lines if line.startswith("https://x.com/i/oauth2/authorize?")]
    assert len(urls) == 1, output
    return urls[0]


def start(s: Setup) -> str:
    """Run the command, print the URL, walk away from the prompt: the authorization waits."""
    result = s.run("acme", input="")
    assert result.exit_code == 1, result.output
    assert "not finished" in result.stderr
    return printed_url(result.stdout)


def test_paste_the_redirect_address_and_the_token_is_saved_privately(setup: Setup) -> None:
    url = start(setup)
    query = parse_qs(urlsplit(url).query)
    assert query["scope"] == ["tweet.read users.read offline.access"]
    assert query["code_challenge_method"] == ["S256"] and query["redirect_uri"] == [CALLBACK]
    assert start(setup) == url  # run again before answering: the same authorization
    redirect = setup.x.approve(url, "acme")

    result = setup.run("acme", input=redirect + "\n")
    assert result.exit_code == 0, result.output
    assert f"saved the OAuth 2.0 token of @acme (user id {_uid(setup, 'acme')})" in result.stdout
    assert "syncd resume acme-x:acme" in result.stdout
    doc = json.loads(setup.token_file.read_text())
    assert doc["username"] == "acme" and doc["user_id"] == _uid(setup, "acme")
    assert doc["access_token"] in setup.x.auth.issued and doc["refresh_token"]
    assert stat.S_IMODE(setup.token_file.stat().st_mode) == 0o600
    assert sorted(p.name for p in setup.token_file.parent.iterdir()) == ["x-acme.json"]
    printed = result.output + redirect
    assert not [t for t in setup.x.auth.issued if t in printed]

    # The daemon's connector reads acme's own mentions with it: owned reads.
    settings = config_mod.load(setup.config)
    source = XSource.from_settings(settings.sources[0])  # type: ignore[arg-type]
    try:
        acme = source.resolve_accounts(["acme"])["acme"]
        assert source.fetch(acme, Stream.MENTIONS, Cursor()).reads.owned
    finally:
        source.close()


def test_a_pasted_address_for_another_authorization_is_refused(setup: Setup) -> None:
    url = start(setup)
    other = url.replace("state=", "state=someone-else")
    result = setup.run("acme", "--redirect-url", setup.x.approve(other, "acme"))
    assert result.exit_code == 1
    assert "state does not match" in result.stderr
    assert not setup.token_file.exists()
    # The authorization still waits for its own answer.
    result = setup.run("acme", "--redirect-url", setup.x.approve(url, "acme"))
    assert result.exit_code == 0, result.output
    assert setup.token_file.exists()


def test_a_token_for_the_wrong_account_is_not_saved(setup: Setup) -> None:
    url = start(setup)
    result = setup.run("acme", "--redirect-url", setup.x.approve(url, "globex"))
    assert result.exit_code == 1
    assert "X authorized @globex, not @acme; nothing was saved" in result.stderr
    assert not setup.token_file.exists()
    assert "Traceback" not in result.output


def test_a_refusal_on_the_consent_page_is_reported(setup: Setup) -> None:
    url = start(setup)
    state = parse_qs(urlsplit(url).query)["state"][0]
    denied = f"{CALLBACK}?" + urlencode({"error": "access_denied", "state": state})
    result = setup.run("acme", input=denied + "\n")
    assert result.exit_code == 1
    assert "X did not authorize syncd (access_denied)" in result.stderr


def test_a_confidential_client_with_a_bare_code(
    setup: Setup, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    setup.x.auth.add_client("confidential", secret=CLIENT_SECRET, redirect_uris=[CALLBACK])
    monkeypatch.setenv("T_CLIENT_SECRET", CLIENT_SECRET)
    body = (
        'type = "oauth2"\nclient_id = "confidential"\nclient_secret = "env:T_CLIENT_SECRET"\n'
        f'token_file = "{setup.token_file}"'
    )
    setup.config = write_config(setup.x, tmp_path, body)
    redirect = setup.x.approve(start(setup), "acme")
    code = parse_qs(urlsplit(redirect).query)["code"][0]
    result = setup.run("acme", "--code", code)
    assert result.exit_code == 0, result.output
    assert CLIENT_SECRET not in result.output
    assert json.loads(setup.token_file.read_text())["username"] == "acme"


def test_a_code_is_spent_by_one_exchange(setup: Setup) -> None:
    redirect = setup.x.approve(start(setup), "acme")
    assert setup.run("acme", "--redirect-url", redirect).exit_code == 0
    again = setup.run("acme", "--redirect-url", redirect)
    assert again.exit_code == 1
    assert "no authorization of @acme is waiting" in again.stderr


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["globex"], "@globex is not in the accounts of any X source"),
        (["acmesupport"], 'needs [sources.user_auth.acmesupport] with type = "oauth2"'),
        (["acme", "--source", "other-x"], "@acme is not in the accounts of source 'other-x'"),
    ],
)
def test_accounts_without_an_oauth2_table_are_refused(
    setup: Setup, args: list[str], message: str
) -> None:
    result = setup.run(*args)
    assert result.exit_code == 1
    assert message in result.stderr
    assert "Traceback" not in result.output


def test_redirect_url_and_code_exclude_each_other(setup: Setup) -> None:
    result = setup.run("acme", "--redirect-url", CALLBACK, "--code", "c")
    assert result.exit_code == 2 and "not both" in result.output


def _uid(s: Setup, handle: str) -> str:
    user = s.x.user_by_username(handle)
    assert user is not None
    return str(user["id"])
