"""Secrets never leak: not in a log line (even at DEBUG), status output, exception text or repr.

The daemon runs with known, distinctive secret values through the failures most likely to
print a request: server errors, dropped connections, expired sessions (a fresh login sends the
password again), refused logins, record errors. One brand account reads with an OAuth 2.0
user token refreshed (and rotated) on nearly every poll, the other with OAuth 1.0a signatures.
Then every text syncd produced is searched, for the configured secrets and for every token the
X stand-in ever issued.
"""

from __future__ import annotations

import json
import traceback
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from click.testing import CliRunner
from support.e2e import Daemon, config_text, tasks, wait_for

from connectors.x.auth.token_file import UserToken, write_private
from sandbox.salesforce.api import SalesforceSandbox
from sandbox.seed import seed
from sandbox.x.api import XSandbox
from syncd.cli import cli
from syncd.config import settings as config_mod
from syncd.errors import SyncdError
from syncd.service.app import App

X_BEARER = "xbearer-S3CRET-a1b2c3d4e5"
SF_PASSWORD = "sfpass-S3CRET-f6g7h8"
SF_TOKEN = "sftok-S3CRET-i9j0k1"
WRONG_PASSWORD = "wrongpass-S3CRET-l2m3n4"
X_CLIENT_SECRET = "xclient-S3CRET-o5p6q7"
X_CONSUMER_KEY = "xconsumerkey-S3CRET-u1v2"
X_CONSUMER_SECRET = "xconsumer-S3CRET-r8s9t0"
SECRETS = (
    X_BEARER,
    SF_PASSWORD,
    SF_TOKEN,
    WRONG_PASSWORD,
    X_CLIENT_SECRET,
    X_CONSUMER_KEY,
    X_CONSUMER_SECRET,
)

pytestmark = pytest.mark.parametrize("state_url", ["sqlite"], indirect=True)


class Sandboxes:
    def __init__(self, x: XSandbox, sf: SalesforceSandbox, config: Path) -> None:
        self.x, self.sf, self.config = x, sf, config


@pytest.fixture
def world(state_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Sandboxes]:
    monkeypatch.setenv("E2E_X_BEARER", X_BEARER)
    monkeypatch.setenv("E2E_SF_TOKEN", SF_TOKEN)
    password = tmp_path / "sf-password"
    password.write_text(SF_PASSWORD + "\n")
    with (
        XSandbox(bearer_token=X_BEARER) as x,
        SalesforceSandbox(password=SF_PASSWORD, security_token=SF_TOKEN) as sf,
    ):
        assert isinstance(x, XSandbox) and isinstance(sf, SalesforceSandbox)
        path = tmp_path / "config.toml"
        text = config_text(state_url, x.url, sf.url).replace(
            "env:E2E_SF_PASSWORD", f"file:{password}"
        )
        path.write_text(text)
        yield Sandboxes(x, sf, path)


def leaks(text: str, secrets: Sequence[str] = SECRETS) -> list[str]:
    return [s for s in secrets if s in text]


def owned_reads(
    world: Sandboxes, brand_ids: dict[str, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """@acme reads with an OAuth 2.0 user token (a confidential client), @acmesupport with
    OAuth 1.0a. The stand-in's tokens outlive syncd's 5-minute refresh margin by seconds, so
    nearly every poll refreshes and rotates."""
    world.x.auth.access_token_lifetime = timedelta(seconds=302)
    world.x.auth.add_client("syncd-e2e", secret=X_CLIENT_SECRET)
    answer = world.x.auth.issue_tokens("syncd-e2e", brand_ids["acme"])
    token_file = tmp_path / "x-acme.json"
    expires = datetime.now(UTC) + timedelta(seconds=290)  # refreshed at the first poll
    token = UserToken(
        str(answer["access_token"]), str(answer["refresh_token"]), expires, "", None, None
    )
    write_private(token_file, token.to_json())
    world.x.auth.add_consumer(X_CONSUMER_KEY, X_CONSUMER_SECRET)
    access, access_secret = world.x.auth.issue_oauth1_token(
        X_CONSUMER_KEY, brand_ids["acmesupport"]
    )
    for name, value in (
        ("CLIENT_SECRET", X_CLIENT_SECRET), ("CONSUMER_KEY", X_CONSUMER_KEY),
        ("CONSUMER_SECRET", X_CONSUMER_SECRET), ("ACCESS", access),
        ("ACCESS_SECRET", access_secret),
    ):  # fmt: skip
        monkeypatch.setenv(f"E2E_X_{name}", value)
    tables = f"""
[sources.user_auth.acme]
type = "oauth2"
client_id = "syncd-e2e"
client_secret = "env:E2E_X_CLIENT_SECRET"
token_file = "{token_file}"

[sources.user_auth.acmesupport]
type = "oauth1"
consumer_key = "env:E2E_X_CONSUMER_KEY"
consumer_secret = "env:E2E_X_CONSUMER_SECRET"
access_token = "env:E2E_X_ACCESS"
access_token_secret = "env:E2E_X_ACCESS_SECRET"
"""
    text = world.config.read_text()
    world.config.write_text(text.replace("\n[crm]", tables + "\n[crm]"))


def test_no_secret_in_logs_status_errors_or_reprs(
    world: Sandboxes, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    people = seed(world.x, world.sf, customers=8)
    owned_reads(world, people.brand_ids, tmp_path, monkeypatch)
    issued = len(world.x.auth.issued)
    linked = [c for c in people.customers if c.kind == "contact_by_id"]
    for kind, options in (
        ("status", {"status": 500}),
        ("drop", {}),
        ("malformed", {}),
        ("rate_limit", {"reset": True, "seconds": 1}),
    ):
        world.x.inject(kind, endpoint="*", count=1, **options)
    world.sf.inject("session_expired", endpoint="*", count=2)  # forces fresh logins
    world.sf.inject("status", endpoint="login", count=1, status=500)
    world.sf.inject("lock_row", endpoint="composite", count=1)
    world.sf.inject("record_error", endpoint="composite", count=1, code="DUPLICATE_VALUE")
    posts = [world.x.add_post(c.user_id, f"@acme hello {i}") for i, c in enumerate(linked)]

    texts: dict[str, str] = {}
    daemon = Daemon(world.config, "--log-level", "DEBUG")
    try:
        wait_for(lambda: len(tasks(world.sf)) >= len(posts) - 1, what="writes through the faults")
        # Then the password is changed under it: logins are refused until it is parked.
        (tmp_path / "sf-password").write_text(WRONG_PASSWORD + "\n")
        world.sf.inject("session_expired", endpoint="*", count=1)
        world.x.add_post(linked[0].user_id, "@acme after the password change")
        wait_for(lambda: "parked after" in daemon.log, what="the CRM to be parked")
        texts["status"] = _cli(world, "status")
        texts["status --json"] = _cli(world, "status", "--json")
        texts["deadletter list"] = _cli(world, "deadletter", "list", "--json")
    finally:
        daemon.stop()
    texts["daemon log (DEBUG)"] = daemon.log
    assert "DEBUG" in daemon.log and "INVALID_LOGIN" in daemon.log  # the log did see it all
    assert "oauth_signature" in daemon.log  # OAuth 1.0a signing, logged by oauthlib
    # Owned reads happened, and OAuth 2.0 tokens were refreshed and rotated meanwhile.
    assert world.x.usage.owned_posts_billed > 0 and len(world.x.auth.issued) > issued

    # The same failures in-process: exception text, traceback and every repr on the way.
    settings = config_mod.load(world.config)
    app = App(settings)
    app.open()
    try:
        texts["reprs"] = " ".join(
            repr(o) for o in (settings, settings.crm, *settings.sources, app.crm, app.db)
        )
        texts["reprs"] += " ".join(repr(s) for _, s in app.sources.values())
        world.sf.inject("session_expired", endpoint="*", count=1)
        with pytest.raises(SyncdError) as caught:
            app.pipeline.resolve()
            app.crm.lookup([])
            app.pipeline.deliver()
            raise AssertionError("the refused login did not raise")
        texts["exception"] = "".join(traceback.format_exception(caught.value))
        texts["exception"] += repr(caught.value)
        texts["cycle report"] = json.dumps(app.cycle().errors)
    finally:
        app.close()

    assert "".join(texts)  # something was collected
    every = (*SECRETS, *world.x.auth.issued)
    found = {where: leaks(text, every) for where, text in texts.items() if leaks(text, every)}
    assert found == {}, f"secrets leaked: {found}"
    state_file = Path(settings.state.url.removeprefix("sqlite:///"))
    for f in (state_file, state_file.with_name(state_file.name + "-wal")):
        if f.exists():
            assert leaks(f.read_bytes().decode("latin-1"), every) == [], f"secret stored in {f}"


def _cli(world: Sandboxes, *args: str) -> str:
    result = CliRunner().invoke(cli, ["--config", str(world.config), *args])
    assert result.exit_code == 0, result.output
    return result.output
