"""Owned reads: an account's own timelines read with its own user token (OAuth 2.0, refreshed
and rotated in a token file, or OAuth 1.0a), everything else with the app token. Against the
loopback X stand-in, which checks every credential as X does and meters owned reads apart."""

from __future__ import annotations

import contextlib
import json
import logging
import os
import re
import stat
import threading
import tomllib
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from support import ROOT

from connectors.x.auth.auth import OAuth1UserAuth, OAuth2UserAuth
from connectors.x.auth.token_file import UserToken, write_private
from connectors.x.source import XSettings, XSource
from sandbox.server import Response, SandboxServer
from sandbox.x.api import XSandbox
from syncd.config import settings as config_mod
from syncd.contracts.secrets import Secret
from syncd.errors import AuthError, SyncdError, TransientError
from syncd.model import Account, Cursor, Segment, Stream

APP = "app-bearer-S3CRET-0123456789"
CLIENT = "syncd-test-client"
CONSUMER = ("consumer-key-S3CRET-42", "consumer-secret-S3CRET-42")


@pytest.fixture
def sandbox() -> Iterator[XSandbox]:
    with XSandbox(bearer_token=APP) as sb:
        for handle in ("acme", "globex", "fan"):
            sb.add_user(handle)
        sb.auth.add_client(CLIENT)
        sb.auth.add_consumer(*CONSUMER)
        yield sb


@pytest.fixture
def calls(sandbox: XSandbox) -> list[tuple[str, str | None]]:
    """(endpoint, Authorization header) of every request the stand-in serves."""
    seen: list[tuple[str, str | None]] = []
    sandbox.on_request("*", lambda req: seen.append((req.endpoint, req.header("authorization"))))
    return seen


def uid(sb: XSandbox, handle: str) -> str:
    user = sb.user_by_username(handle)
    assert user is not None
    return str(user["id"])


def account(sb: XSandbox, handle: str) -> Account:
    return Account("x", handle, uid(sb, handle))


def write_token(
    sb: XSandbox, path: Path, handle: str, *, expires_in: float = 3600, owner: str | None = None
) -> UserToken:
    """A token file as `syncd x authorize` leaves it, tokens issued by the stand-in."""
    answer = sb.auth.issue_tokens(CLIENT, uid(sb, handle))
    token = UserToken(
        str(answer["access_token"]),
        str(answer["refresh_token"]),
        datetime.now(UTC) + timedelta(seconds=expires_in),
        str(answer["scope"]),
        uid(sb, owner or handle),
        owner or handle,
    )
    write_private(path, token.to_json())
    return token


def stored(path: Path) -> dict[str, Any]:
    doc: dict[str, Any] = json.loads(path.read_text())
    return doc


def oauth2(path: Path) -> OAuth2UserAuth:
    return OAuth2UserAuth(type="oauth2", client_id=CLIENT, token_file=path)


def oauth1(sb: XSandbox, handle: str, monkeypatch: pytest.MonkeyPatch) -> OAuth1UserAuth:
    token, secret = sb.auth.issue_oauth1_token(CONSUMER[0], uid(sb, handle))
    for name, value in zip(("CK", "CS", "AT", "ATS"), (*CONSUMER, token, secret), strict=True):
        monkeypatch.setenv(f"T_{name}", value)
    refs = {k: Secret(f"env:T_{n}") for k, n in (
        ("consumer_key", "CK"), ("consumer_secret", "CS"),
        ("access_token", "AT"), ("access_token_secret", "ATS"),
    )}  # fmt: skip
    return OAuth1UserAuth(type="oauth1", **refs)


def source(sb: XSandbox, **user_auth: OAuth1UserAuth | OAuth2UserAuth) -> XSource:
    return XSource(APP, api_base_url=sb.url, user_auth=user_auth)


def bearer(value: str) -> str:
    return f"Bearer {value}"


# -- which credentials read what ------------------------------------------------------------------
def test_owned_streams_use_the_user_token_and_everything_else_the_app_token(
    sandbox: XSandbox, calls: list[tuple[str, str]], tmp_path: Path
) -> None:
    acme, globex, fan = (account(sandbox, h) for h in ("acme", "globex", "fan"))
    post = sandbox.add_post(fan.user_id, "@acme hello")["id"]
    sandbox.add_post(fan.user_id, "@globex hi")
    token = write_token(sandbox, tmp_path / "x-acme.json", "acme")
    src = source(sandbox, acme=oauth2(tmp_path / "x-acme.json"))
    try:
        mine = src.fetch(acme, Stream.MENTIONS, Cursor())
        src.fetch(acme, Stream.REPLIES, Cursor())
        theirs = src.fetch(globex, Stream.MENTIONS, Cursor())
        src.resolve_accounts(["acme"])
        src.lookup_posts([post])
        now = datetime.now(UTC)
        since, until = now - timedelta(days=1), now - timedelta(minutes=1)
        search = Segment(Stream.MENTIONS, "search_recent", since, until, "@acme")
        src.fetch_segment(acme, search, None)
    finally:
        src.close()
    assert [i.post_id for i in mine.interactions] == [post]
    assert (mine.reads.owned, theirs.reads.owned) == (True, False)
    assert calls == [
        ("mentions", bearer(token.access_token)),
        ("user_tweets", bearer(token.access_token)),
        ("mentions", bearer(APP)),
        ("users_by", bearer(APP)),
        ("tweets", bearer(APP)),
        ("search_recent", bearer(APP)),
    ]
    usage = sandbox.usage
    assert (usage.owned_posts_billed, usage.unowned_posts_billed) == (1, 1)


def test_oauth1_user_context_signs_the_owned_reads(
    sandbox: XSandbox, calls: list[tuple[str, str]], monkeypatch: pytest.MonkeyPatch
) -> None:
    acme = account(sandbox, "acme")
    sandbox.add_post(uid(sandbox, "fan"), "@acme hello")
    src = source(sandbox, acme=oauth1(sandbox, "acme", monkeypatch))
    try:
        page = src.fetch(acme, Stream.MENTIONS, Cursor())
        src.resolve_accounts(["acme"])
    finally:
        src.close()
    assert page.reads.owned and len(page.interactions) == 1
    assert calls[0][0] == "mentions" and calls[0][1].startswith("OAuth ")
    assert calls[1] == ("users_by", bearer(APP))
    assert sandbox.usage.owned_posts_billed == 1  # the stand-in verified the signature


def test_refused_oauth1_credentials_are_an_auth_error(
    sandbox: XSandbox, monkeypatch: pytest.MonkeyPatch
) -> None:
    auth = oauth1(sandbox, "acme", monkeypatch)
    monkeypatch.setenv("T_ATS", "not-the-token-secret")
    src = source(sandbox, acme=auth)
    try:
        with pytest.raises(AuthError) as info:
            src.fetch(account(sandbox, "acme"), Stream.MENTIONS, Cursor())
    finally:
        src.close()
    assert info.value.status == 401


# -- OAuth 2.0 refresh ----------------------------------------------------------------------------
def test_a_token_about_to_expire_is_refreshed_first_and_rotated(
    sandbox: XSandbox, calls: list[tuple[str, str]], tmp_path: Path
) -> None:
    path = tmp_path / "x-acme.json"
    old = write_token(sandbox, path, "acme", expires_in=60)  # inside the 5-minute margin
    src = source(sandbox, acme=oauth2(path))
    try:
        src.fetch(account(sandbox, "acme"), Stream.MENTIONS, Cursor())
    finally:
        src.close()
    new = stored(path)
    assert [e for e, _ in calls] == ["oauth2_token", "mentions"]
    assert calls[1][1] == bearer(new["access_token"])
    assert new["access_token"] != old.access_token
    assert new["refresh_token"] != old.refresh_token  # rotated, and the old one is dead:
    assert new["user_id"] == uid(sandbox, "acme") and new["username"] == "acme"
    assert datetime.fromisoformat(new["expires_at"]) > datetime.now(UTC) + timedelta(hours=1)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert sorted(p.name for p in tmp_path.iterdir()) == ["x-acme.json", "x-acme.json.lock"]


def test_a_refused_access_token_is_refreshed_once_and_the_read_retried(
    sandbox: XSandbox, calls: list[tuple[str, str]], tmp_path: Path
) -> None:
    path = tmp_path / "x-acme.json"
    old = write_token(sandbox, path, "acme")
    assert sandbox.auth.revoke_access_tokens(uid(sandbox, "acme")) == 1  # revoked early
    src = source(sandbox, acme=oauth2(path))
    try:
        page = src.fetch(account(sandbox, "acme"), Stream.MENTIONS, Cursor())
    finally:
        src.close()
    assert page.reads.owned
    assert [e for e, _ in calls] == ["mentions", "oauth2_token", "mentions"]
    assert calls[0][1] == bearer(old.access_token)
    assert calls[2][1] == bearer(stored(path)["access_token"])
    assert stored(path)["refresh_token"] != old.refresh_token


def test_a_dead_refresh_token_asks_for_authorize_until_the_file_changes(
    sandbox: XSandbox, calls: list[tuple[str, str]], tmp_path: Path
) -> None:
    path = tmp_path / "x-acme.json"
    write_token(sandbox, path, "acme", expires_in=60)
    sandbox.auth.revoke_refresh_tokens(uid(sandbox, "acme"))
    acme = account(sandbox, "acme")
    src = source(sandbox, acme=oauth2(path))
    try:
        for _ in range(2):
            with pytest.raises(AuthError) as info:
                src.fetch(acme, Stream.MENTIONS, Cursor())
            assert "run `syncd x authorize acme`" in str(info.value)
            assert "Value passed for the token was invalid" in str(info.value)
        assert [e for e, _ in calls] == ["oauth2_token"]  # X is not asked again for nothing
        write_token(sandbox, path, "acme")  # what `syncd x authorize acme` does
        assert src.fetch(acme, Stream.MENTIONS, Cursor()).reads.owned
    finally:
        src.close()


@pytest.mark.parametrize(
    ("status", "error", "expected"),
    [
        (400, "invalid_grant", "run `syncd x authorize acme`"),
        (401, "invalid_client", "check client_id and client_secret of user_auth.acme"),
    ],
)
def test_refusals_of_a_standard_token_endpoint(
    tmp_path: Path, status: int, error: str, expected: str
) -> None:
    server = SandboxServer()
    answer = {"error": error, "error_description": "refused"}
    server.route("POST", "/2/oauth2/token", lambda req: Response.json(answer, status))
    path = tmp_path / "x-acme.json"
    token = UserToken("access-S3CRET", "refresh-S3CRET", datetime.now(UTC), "", "1", "acme")
    write_private(path, token.to_json())
    with server:
        src = XSource(APP, api_base_url=server.url, user_auth={"acme": oauth2(path)})
        try:
            with pytest.raises(AuthError) as info:
                src.fetch(Account("x", "acme", "1"), Stream.MENTIONS, Cursor())
        finally:
            src.close()
    assert expected in str(info.value) and info.value.status == status
    assert "S3CRET" not in str(info.value)


def test_every_answer_is_reported_the_accounts_sessions_and_token_refreshes_included(
    sandbox: XSandbox, calls: list[tuple[str, str]], tmp_path: Path
) -> None:
    seen: list[tuple[str, int, dict[str, str]]] = []
    write_token(sandbox, tmp_path / "x-acme.json", "acme", expires_in=60)  # refreshed first
    acme, globex = account(sandbox, "acme"), account(sandbox, "globex")
    src = source(sandbox, acme=oauth2(tmp_path / "x-acme.json"))
    src.observe_responses(lambda route, status, headers: seen.append((route, status, {**headers})))
    try:
        src.fetch(acme, Stream.MENTIONS, Cursor())
        src.fetch(globex, Stream.MENTIONS, Cursor())
    finally:
        src.close()
    assert [c[0] for c in calls] == ["oauth2_token", "mentions", "mentions"]
    assert [(route, status) for route, status, _ in seen] == [
        ("/2/oauth2/token", 200),
        ("/2/users/:id/mentions", 200),  # with acme's own token
        ("/2/users/:id/mentions", 200),  # with the app's
    ]
    remaining, limit = XSource.rate_limit_headers
    assert all(int(h[limit]) > int(h[remaining]) >= 0 for _, _, h in seen[1:])


@pytest.mark.parametrize(("kind", "options"), [("status", {"status": 503}), ("malformed", {})])
def test_a_token_endpoint_failure_is_transient_and_the_next_poll_refreshes(
    sandbox: XSandbox, tmp_path: Path, kind: str, options: dict[str, Any]
) -> None:
    path = tmp_path / "x-acme.json"
    old = write_token(sandbox, path, "acme", expires_in=60)
    sandbox.inject(kind, endpoint="oauth2_token", count=1, **options)
    acme = account(sandbox, "acme")
    src = source(sandbox, acme=oauth2(path))
    try:
        with pytest.raises(TransientError):
            src.fetch(acme, Stream.MENTIONS, Cursor())
        assert stored(path)["refresh_token"] == old.refresh_token  # nothing half-written
        assert src.fetch(acme, Stream.MENTIONS, Cursor()).reads.owned
    finally:
        src.close()
    assert stored(path)["refresh_token"] != old.refresh_token


def test_a_confidential_client_refreshes_with_http_basic(
    sandbox: XSandbox, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    sandbox.auth.add_client("confidential", secret="client-S3CRET-77")
    monkeypatch.setenv("T_CLIENT_SECRET", "client-S3CRET-77")
    answer = sandbox.auth.issue_tokens("confidential", uid(sandbox, "acme"))
    path = tmp_path / "x-acme.json"
    expired = datetime.now(UTC) - timedelta(minutes=1)
    refresh = str(answer["refresh_token"])
    write_private(path, UserToken("gone", refresh, expired, "", None, None).to_json())
    auth = OAuth2UserAuth(
        type="oauth2",
        client_id="confidential",
        client_secret=Secret("env:T_CLIENT_SECRET"),
        token_file=path,
    )
    src = source(sandbox, acme=auth)
    try:
        assert src.fetch(account(sandbox, "acme"), Stream.MENTIONS, Cursor()).reads.owned
    finally:
        src.close()


def test_two_processes_on_one_token_file_never_refresh_with_a_retired_token(
    sandbox: XSandbox, calls: list[tuple[str, str]], tmp_path: Path
) -> None:
    """`syncd check` or a one-off poll beside the daemon: whichever refreshes first rotates the
    refresh token; the other must pick the new pair up from the file, not refresh again."""
    path = tmp_path / "x-acme.json"
    write_token(sandbox, path, "acme")
    acme = account(sandbox, "acme")
    first, second = source(sandbox, acme=oauth2(path)), source(sandbox, acme=oauth2(path))
    try:
        for src in (first, second):
            src.fetch(acme, Stream.MENTIONS, Cursor())
        sandbox.auth.revoke_access_tokens(acme.user_id)
        first.fetch(acme, Stream.MENTIONS, Cursor())  # 401, refresh, retry
        second.fetch(acme, Stream.MENTIONS, Cursor())  # 401, the file has the new pair
    finally:
        first.close()
        second.close()
    assert [e for e, _ in calls].count("oauth2_token") == 1
    assert calls[-1] == ("mentions", bearer(stored(path)["access_token"]))


def test_parallel_streams_of_one_account_refresh_once(
    sandbox: XSandbox, calls: list[tuple[str, str]], tmp_path: Path
) -> None:
    path = tmp_path / "x-acme.json"
    write_token(sandbox, path, "acme", expires_in=60)
    acme = account(sandbox, "acme")
    src = source(sandbox, acme=oauth2(path))
    errors: list[BaseException] = []

    def poll(stream: Stream) -> None:
        try:
            src.fetch(acme, stream, Cursor())
        except BaseException as exc:  # reported below
            errors.append(exc)

    threads = [threading.Thread(target=poll, args=(s,)) for s in (*Stream, *Stream)]
    try:
        for t in threads:
            t.start()
        for t in threads:
            t.join(10)
    finally:
        src.close()
    assert errors == []
    assert [e for e, _ in calls].count("oauth2_token") == 1


# -- setup problems ------------------------------------------------------------------------------
def test_a_missing_or_foreign_token_file_is_an_auth_error(
    sandbox: XSandbox, tmp_path: Path
) -> None:
    path = tmp_path / "x-acme.json"
    acme = account(sandbox, "acme")
    src = source(sandbox, acme=oauth2(path))
    try:
        with pytest.raises(AuthError, match=r"x-acme.json does not exist: run `syncd x authorize"):
            src.fetch(acme, Stream.MENTIONS, Cursor())
        path.write_text("{not json")
        with pytest.raises(AuthError, match=r"x-acme.json is not JSON"):
            src.fetch(acme, Stream.MENTIONS, Cursor())
        write_token(sandbox, path, "globex")  # someone authorized as the wrong account
        with pytest.raises(AuthError, match=r"holds the token of @globex .*not @acme's"):
            src.fetch(acme, Stream.MENTIONS, Cursor())
    finally:
        src.close()


def test_check_verifies_whose_each_user_token_is(
    sandbox: XSandbox, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    write_token(sandbox, tmp_path / "x-acme.json", "acme")
    src = source(
        sandbox,
        acme=oauth2(tmp_path / "x-acme.json"),
        globex=oauth1(sandbox, "fan", monkeypatch),  # fan's tokens under globex: wrong
        fan=oauth2(tmp_path / "x-fan.json"),  # never authorized
    )
    try:
        rows = {r.item: r for r in src.check(["acme", "globex", "fan"])}
    finally:
        src.close()
    assert rows["@acme user token"].ok
    assert "OAuth 2.0" in rows["@acme user token"].detail
    assert not rows["@globex user token"].ok
    assert "is @fan's" in rows["@globex user token"].detail
    assert "consumer_key" in rows["@globex user token"].fix
    assert not rows["@fan user token"].ok
    assert rows["@fan user token"].fix == "run `syncd x authorize fan` (see user_auth.fan)"


# -- settings -------------------------------------------------------------------------------------
def test_settings_key_user_auth_by_handle(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("T_APP", APP)
    monkeypatch.setenv("T_CS", "consumer-secret")
    settings = XSettings.model_validate(
        {
            "name": "acme-x",
            "type": "x",
            "bearer_token": "env:T_APP",
            "accounts": ["Acme", "globex"],
            "user_auth": {
                "@ACME": {
                    "type": "oauth2",
                    "client_id": CLIENT,
                    "token_file": str(tmp_path / "x-acme.json"),
                },
                "globex": {
                    "type": "oauth1",
                    **dict.fromkeys(
                        ("consumer_key", "consumer_secret", "access_token", "access_token_secret"),
                        "env:T_CS",
                    ),
                },
            },
        }
    )
    assert sorted(settings.user_auth) == ["acme", "globex"]
    acme = settings.user_auth["acme"]
    assert isinstance(acme, OAuth2UserAuth) and acme.redirect_uri == "http://127.0.0.1/callback"
    src = XSource.from_settings(settings)
    try:
        assert src.client.owned.covers(Account("x", "Acme", "1"))
        assert not src.client.owned.covers(Account("x", "other", "2"))
    finally:
        src.close()
    assert "consumer-secret" not in repr(settings) + repr(src) + repr(src.client.owned)


def test_the_documented_user_auth_tables_parse(monkeypatch: pytest.MonkeyPatch) -> None:
    """config.example.toml documents both kinds, commented out: uncommented and filled in,
    they are a valid configuration."""
    lines, inside = [], False
    for line in (ROOT / "config.example.toml").read_text().splitlines():
        inside = (inside or line.startswith("# [sources.user_auth.")) and line != "[crm]"
        if inside and re.match(r"# (\[sources\.user_auth\.\w+\]|\w+ = )", line):
            line = line.removeprefix("# ")
        lines.append(line)
    text = "\n".join(lines).replace('["CHANGE_ME"]', '["acme", "acmesupport"]')
    text = text.replace('"CHANGE_ME"', '"client-id"').replace("CHANGE_ME@", "someone@")
    for name in (
        "X_BEARER_TOKEN", "SF_PASSWORD", "SF_TOKEN", "X_CLIENT_SECRET", "X_CONSUMER_KEY",
        "X_CONSUMER_SECRET", "X_ACMESUPPORT_ACCESS_TOKEN", "X_ACMESUPPORT_ACCESS_TOKEN_SECRET",
    ):  # fmt: skip
        monkeypatch.setenv(name, f"value-of-{name}")
    source = config_mod.parse(tomllib.loads(text), ROOT / "config.example.toml").sources[0]
    assert isinstance(source, XSettings)
    acme, support = source.user_auth["acme"], source.user_auth["acmesupport"]
    assert isinstance(acme, OAuth2UserAuth) and acme.client_secret is not None
    assert acme.token_file == Path("/var/lib/syncd/x-acme.json")
    assert isinstance(support, OAuth1UserAuth)


# -- secrets --------------------------------------------------------------------------------------
def test_no_user_secret_reaches_a_log_line_an_error_or_a_repr(
    sandbox: XSandbox,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    path = tmp_path / "x-acme.json"
    write_token(sandbox, path, "acme", expires_in=60)
    sandbox.add_post(uid(sandbox, "fan"), "@acme @globex hello")
    src = source(sandbox, acme=oauth2(path), globex=oauth1(sandbox, "globex", monkeypatch))
    texts: list[str] = []
    debug = contextlib.ExitStack()  # other tests' CLI runs quieten these libraries' loggers
    for name in ("", "tweepy", "requests_oauthlib", "oauthlib"):
        debug.enter_context(caplog.at_level(logging.DEBUG, logger=name or None))
    try:
        with debug:
            src.fetch(account(sandbox, "acme"), Stream.MENTIONS, Cursor())  # refreshes first
            src.fetch(account(sandbox, "globex"), Stream.MENTIONS, Cursor())
            sandbox.auth.revoke_access_tokens(uid(sandbox, "acme"))
            sandbox.auth.revoke_refresh_tokens(uid(sandbox, "acme"))
            with pytest.raises(SyncdError) as info:
                src.fetch(account(sandbox, "acme"), Stream.MENTIONS, Cursor())
            refused = oauth1(sandbox, "globex", monkeypatch)
            monkeypatch.setenv("T_ATS", "wrong-token-secret")
            bad = source(sandbox, globex=refused)
            with pytest.raises(SyncdError) as info2:
                bad.fetch(account(sandbox, "globex"), Stream.MENTIONS, Cursor())
            bad.close()
        texts += [caplog.text, str(info.value), repr(info.value), str(info2.value)]
        texts += [repr(src), repr(src.client.owned), repr(src.__dict__), repr(src.client.__dict__)]
    finally:
        src.close()
    assert "oauth_signature" in caplog.text and "Bearer [redacted]" in caplog.text
    secrets = [*sandbox.auth.issued, *CONSUMER]
    leaked = [s for s in secrets for text in texts if s in text]
    assert leaked == []


def test_the_token_file_and_its_lock_are_private(sandbox: XSandbox, tmp_path: Path) -> None:
    path = tmp_path / "deeper" / "x-acme.json"
    old_umask = os.umask(0)  # even a careless umask leaves no readable token
    try:
        write_token(sandbox, path, "acme", expires_in=60)
        src = source(sandbox, acme=oauth2(path))
        try:
            src.fetch(account(sandbox, "acme"), Stream.MENTIONS, Cursor())
        finally:
            src.close()
    finally:
        os.umask(old_umask)
    for f in (path, path.with_name("x-acme.json.lock")):
        assert stat.S_IMODE(f.stat().st_mode) == 0o600, f
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700


def test_a_request_the_stand_in_sees_is_never_a_tokenless_retry(
    sandbox: XSandbox, calls: list[tuple[str, str]], tmp_path: Path
) -> None:
    """The retry after a refresh sends the new token, never none and never the app's."""
    path = tmp_path / "x-acme.json"
    write_token(sandbox, path, "acme")
    sandbox.auth.revoke_access_tokens(uid(sandbox, "acme"))
    sandbox.auth.revoke_refresh_tokens(uid(sandbox, "acme"))
    src = source(sandbox, acme=oauth2(path))
    try:
        with pytest.raises(AuthError):
            src.fetch(account(sandbox, "acme"), Stream.MENTIONS, Cursor())
    finally:
        src.close()
    assert [e for e, _ in calls] == ["mentions", "oauth2_token"]
    assert all(a and a != bearer(APP) for e, a in calls if e == "mentions")
