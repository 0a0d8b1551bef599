"""connectors.bluesky: the real connector, through the atproto SDK, against the loopback
stand-in (sandbox/bluesky/): walks and marks, the overlap, the session (a poll never logs
in), rate limits, errors classified, bad items quarantined, compliance lookups, ``check``."""

from __future__ import annotations

import json
import re
import time
import tomllib
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from pydantic import ValidationError

import connectors
from connectors.bluesky.parse import EXTERNAL_ID_MAX, Mark, author_of, parse_notifications, post_url
from connectors.bluesky.source import BlueskySettings, BlueskySource
from sandbox.bluesky.api import BlueskySandbox
from syncd.config import settings as config_mod
from syncd.contracts import Source
from syncd.errors import (
    AuthError,
    MalformedAnswer,
    RateLimited,
    TransientError,
)
from syncd.model import Account, Cursor, Direction, Page, Stream

ROOT = Path(__file__).parent.parent.parent.parent
FIXTURES = ROOT / "tests" / "fixtures" / "atproto"
PASSWORD = "connector-app-password"


@dataclass
class World:
    sandbox: BlueskySandbox
    brand: Account
    fan: str
    session_file: Path

    def source(
        self, *, password: str = PASSWORD, session_file: Path | None = None, **options: Any
    ) -> BlueskySource:
        return BlueskySource(
            identifier="acme.bsky.social",
            app_password=password,
            session_file=session_file or self.session_file,
            service=self.sandbox.url,
            **options,
        )

    def mention(self, text: str = "@acme help", **options: Any) -> str:
        post = self.sandbox.add_post(self.fan, text, mentions=(self.brand.user_id,), **options)
        return post.uri

    def logins(self) -> int:
        return self.sandbox.requests_by_route.get(_route("com.atproto.server.createSession"), 0)

    def refreshes(self) -> int:
        return self.sandbox.requests_by_route.get(_route("com.atproto.server.refreshSession"), 0)

    def calls(self, nsid: str) -> int:
        return self.sandbox.requests_by_route.get(_route(nsid, "GET"), 0)


def _route(nsid: str, method: str = "POST") -> str:
    return f"{method} ^/xrpc/{nsid}/?$"  # the stand-in's route pattern, as it counts them


@pytest.fixture
def world(tmp_path: Path) -> Iterator[World]:
    sandbox = BlueskySandbox()
    with sandbox:
        brand = sandbox.add_user("acme.bsky.social", password=PASSWORD).did
        fan = sandbox.add_user("fan.bsky.social", display_name="Fan").did
        yield World(
            sandbox, Account("bluesky", "acme.bsky.social", brand), fan, tmp_path / "acme.session"
        )


@pytest.fixture
def source(world: World) -> Iterator[BlueskySource]:
    made = world.source(page_size=3)
    yield made
    made.close()


def walk(source: BlueskySource, account: Account, stream: Stream, cursor: Cursor) -> list[Page]:
    pages = [source.fetch(account, stream, cursor)]
    while not pages[-1].walk_complete:
        assert len(pages) < 30
        pages.append(source.fetch(account, stream, pages[-1].next_cursor))
    return pages


def read(pages: list[Page]) -> list[str]:
    return [i.post_id for p in pages for i in p.interactions]


# -- registry and settings -------------------------------------------------------------------
def test_registered_under_its_type() -> None:
    assert connectors.source_class("bluesky") is BlueskySource
    source_type: type[Source] = BlueskySource
    assert source_type.network == "bluesky"


def test_settings(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BLUESKY_APP_PASSWORD", "from-the-environment")
    base = {
        "name": "acme-bluesky",
        "type": "bluesky",
        "identifier": "acme.bsky.social",
        "app_password": "env:BLUESKY_APP_PASSWORD",
        "session_file": str(tmp_path / "s.session"),
        "accounts": ["acme.bsky.social"],
    }
    settings = BlueskySettings.model_validate(base)
    assert settings.service == "https://bsky.social" and settings.overlap == 3600.0
    assert "from-the-environment" not in repr(settings)
    for bad in (
        {"accounts": ["acme.bsky.social", "other.bsky.social"]},  # one login reads one account
        {"session_file": "relative.session"},
        {"service": "http://pds.example.com"},  # no plain HTTP but to loopback
        {"page_size": 101},
        {"seen_at": "now"},
    ):
        with pytest.raises(ValidationError):
            BlueskySettings.model_validate({**base, **bad})
    assert BlueskySettings.model_validate(
        {**base, "service": "http://127.0.0.1:8080/"}
    ).service == ("http://127.0.0.1:8080")


# -- the session: a poll never logs in ----------------------------------------------------------
def test_one_login_then_the_kept_session_across_instances(world: World) -> None:
    world.mention()
    first = world.source()
    first.fetch(world.brand, Stream.MENTIONS, Cursor())
    first.close()
    assert world.logins() == 1
    assert world.session_file.stat().st_mode & 0o777 == 0o600
    assert PASSWORD not in world.session_file.read_text()
    for _ in range(3):  # restarts and polls import the kept session
        again = world.source()
        again.fetch(world.brand, Stream.MENTIONS, Cursor())
        again.close()
    assert world.logins() == 1


def test_an_expired_token_is_refreshed_once_and_the_call_made_again(
    world: World, source: BlueskySource
) -> None:
    uri = world.mention()
    source.fetch(world.brand, Stream.MENTIONS, Cursor())
    before = world.session_file.read_text()
    world.sandbox.expire_sessions()  # the server says ExpiredToken; the client thought it good
    page = source.fetch(world.brand, Stream.MENTIONS, Cursor())
    assert read([page]) == [uri]
    assert (world.logins(), world.refreshes()) == (1, 1)
    assert world.session_file.read_text() != before  # the new pair is kept
    # A new instance (a restart) uses the refreshed pair, not the rotated-out one.
    again = world.source()
    assert read([again.fetch(world.brand, Stream.MENTIONS, Cursor())]) == [uri]
    again.close()
    assert (world.logins(), world.refreshes()) == (1, 1)


def test_a_refresh_cut_off_by_the_network_is_a_transient_failure(
    world: World, source: BlueskySource
) -> None:
    """The SDK lets a dropped connection through as httpx's own error: during the refresh an
    ExpiredToken asks for, it must still be a failure the runner retries, not a crash."""
    uri = world.mention()
    source.fetch(world.brand, Stream.MENTIONS, Cursor())
    world.sandbox.expire_sessions()
    world.sandbox.inject("drop", endpoint="refreshSession", count=1)
    with pytest.raises(TransientError):
        source.fetch(world.brand, Stream.MENTIONS, Cursor())
    assert read([source.fetch(world.brand, Stream.MENTIONS, Cursor())]) == [uri]
    assert world.logins() == 1


def test_a_refused_refresh_token_logs_in_once_and_no_more(world: World) -> None:
    first = world.source()
    first.fetch(world.brand, Stream.MENTIONS, Cursor())  # an earlier process logged in
    first.close()
    source = world.source()  # this one starts from the kept session: no login
    source.fetch(world.brand, Stream.MENTIONS, Cursor())
    assert world.logins() == 1
    with world.sandbox.lock:  # the refresh token was revoked (a password change, say)
        world.sandbox._refresh.clear()
    world.sandbox.expire_sessions()
    source.fetch(world.brand, Stream.MENTIONS, Cursor())
    assert world.logins() == 2
    with world.sandbox.lock:
        world.sandbox._refresh.clear()
    world.sandbox.expire_sessions()
    with pytest.raises(AuthError) as info:
        source.fetch(world.brand, Stream.MENTIONS, Cursor())
    source.close()
    assert world.logins() == 2 and "logged in once already" in str(info.value)


def test_every_answer_is_reported_across_a_new_login_and_a_rebuilt_http_client(
    world: World,
) -> None:
    seen: list[tuple[str, int, dict[str, str]]] = []

    def observe(route: str, status: int, headers: Mapping[str, str]) -> None:
        seen.append((route, status, dict(headers)))

    earlier = world.source()  # an earlier process logged in; this one imports its session
    earlier.fetch(world.brand, Stream.MENTIONS, Cursor())
    earlier.close()
    served = world.sandbox.request_count
    source = world.source()
    source.observe_responses(observe)
    source.observe_responses(observe)  # given again (a reload's attach): still told once
    world.mention()
    source.fetch(world.brand, Stream.MENTIONS, Cursor())
    with world.sandbox.lock:  # the refresh token revoked: the client logs in again
        world.sandbox._refresh.clear()
    world.sandbox.expire_sessions()
    source.fetch(world.brand, Stream.MENTIONS, Cursor())
    assert world.logins() == 2
    # The SDK builds its httpx client again from what it was given (Request.clone): the
    # answers of the new one are still reported.
    source.client.sdk._request = source.client.sdk.request.clone()
    source.fetch(world.brand, Stream.REPLIES, Cursor())
    source.close()
    assert len(seen) == world.sandbox.request_count - served  # every answer, each once
    routes = [(route, status) for route, status, _ in seen]
    notifications = "/xrpc/app.bsky.notification.listNotifications"
    assert routes == [
        (notifications, 200),
        (notifications, 400),  # ExpiredToken
        ("/xrpc/com.atproto.server.refreshSession", 400),  # refused: a new login
        ("/xrpc/com.atproto.server.createSession", 200),
        (notifications, 200),
        ("/xrpc/app.bsky.feed.getAuthorFeed", 200),
    ]
    # Header names come in lower case, as RateLimited names them (the stand-in's answers
    # spell them RateLimit-Remaining).
    remaining, limit = BlueskySource.rate_limit_headers
    answered = [h for _, status, h in seen if status == 200]
    assert all(int(h[limit]) > int(h[remaining]) >= 0 for h in answered)


def test_two_processes_sharing_the_session_file_refresh_without_logging_in(world: World) -> None:
    one, two = world.source(), world.source()  # e.g. two instances on one PostgreSQL state
    one.fetch(world.brand, Stream.MENTIONS, Cursor())
    two.fetch(world.brand, Stream.MENTIONS, Cursor())
    world.sandbox.expire_sessions()
    one.fetch(world.brand, Stream.MENTIONS, Cursor())  # refreshes: the refresh token rotates
    two.fetch(world.brand, Stream.MENTIONS, Cursor())  # its refresh is refused: the file's
    one.close()
    two.close()
    assert (world.logins(), world.refreshes()) == (1, 2)


def test_a_wrong_password_is_an_auth_error_without_the_password(world: World) -> None:
    refused = world.source(password="hunter2-wrong")
    with pytest.raises(AuthError) as info:
        refused.fetch(world.brand, Stream.MENTIONS, Cursor())
    refused.close()
    assert info.value.system == "bluesky" and "hunter2-wrong" not in str(info.value)
    assert "hunter2-wrong" not in repr(refused.client.__dict__.get("_store"))
    assert not world.session_file.exists()


def test_a_session_naming_a_plain_http_pds_elsewhere_is_refused(world: World) -> None:
    world.session_file.write_text("acme.bsky.social:::did:plc:x:::a:::b:::http://pds.example.com\n")
    world.session_file.chmod(0o600)
    source = world.source()
    with pytest.raises(AuthError, match="plain HTTP"):
        source.fetch(world.brand, Stream.MENTIONS, Cursor())
    source.close()


# -- walks -----------------------------------------------------------------------------------
def test_walks_page_back_to_the_mark_and_never_mark_notifications_read(
    world: World, source: BlueskySource
) -> None:
    seen_params: list[dict[str, list[str]]] = []
    world.sandbox.on_request("listNotifications", lambda req: seen_params.append(req.multi))
    first = [world.mention(f"@acme {n}") for n in range(7)]
    pages = walk(source, world.brand, Stream.MENTIONS, Cursor())
    assert len(pages) == 3 and read(pages) == first[::-1]
    assert pages[0].next_cursor.pending_since_id == pages[-1].next_cursor.since_id
    assert pages[0].rate is not None and pages[0].rate.limit == 3000
    later = [world.mention(f"@acme later {n}") for n in range(2)]
    again = walk(source, world.brand, Stream.MENTIONS, pages[-1].next_cursor)
    # The overlap reads the last hour again: new posts first, repeats for the unique key.
    assert read(again)[:2] == later[::-1] and set(read(again)) == set(first + later)
    assert all(p["reasons"] == ["mention", "reply", "quote"] for p in seen_params)
    assert not any("seenAt" in p for p in seen_params)
    assert not any("updateSeen" in route for route in world.sandbox.requests_by_route)
    assert not any(p.cut for p in again)


def test_without_overlap_a_walk_stops_at_the_mark(world: World) -> None:
    source = world.source(page_size=3, overlap=0.0)
    old = []
    for n in range(4):
        old.append(world.mention(f"@acme {n}"))
        time.sleep(0.002)  # index times are in milliseconds: posts of one share a time
    done = walk(source, world.brand, Stream.MENTIONS, Cursor())[-1].next_cursor
    assert done.since_id is not None
    time.sleep(0.002)
    new = world.mention("@acme new")
    pages = walk(source, world.brand, Stream.MENTIONS, done)
    # The mark's own post is read again (a post of the same millisecond could be new).
    assert read(pages) == [new, old[-1]]
    source.close()


def test_a_backdated_post_below_the_mark_is_read_by_the_overlap(
    world: World, source: BlueskySource
) -> None:
    world.mention("@acme before")
    done = walk(source, world.brand, Stream.MENTIONS, Cursor())[-1].next_cursor
    ten_minutes_ago = datetime.now(UTC) - timedelta(minutes=10)
    late = world.mention("@acme written earlier, posted now", created_at=ten_minutes_ago)
    assert late in read(walk(source, world.brand, Stream.MENTIONS, done))
    strict = world.source(overlap=0.0)
    assert late not in read(walk(strict, world.brand, Stream.MENTIONS, done))
    strict.close()


def test_a_walk_that_never_meets_its_mark_is_a_gap(world: World, source: BlueskySource) -> None:
    world.mention("@acme kept")
    gone = world.mention("@acme deleted later")
    done = walk(source, world.brand, Stream.MENTIONS, Cursor())[-1].next_cursor
    # The mark's post is deleted and the older one dropped by the network: nothing at or
    # below the mark comes back.
    world.sandbox.delete_post(gone)
    with world.sandbox.lock:
        world.sandbox.notifications.clear()
    fresh = world.mention("@acme new")
    # A mark from two hours on (before the overlap's reach) that no notification meets.
    far = Mark(datetime.now(UTC) - timedelta(hours=2), "0123456789abcdef").text()
    pages = walk(source, world.brand, Stream.MENTIONS, Cursor(since_id=far))
    assert read(pages) == [fresh] and pages[-1].cut and pages[-1].oldest_id is not None
    met = walk(source, world.brand, Stream.MENTIONS, done)
    assert not met[-1].cut or read(met) == [fresh]


def test_a_first_walk_reads_back_to_start(world: World) -> None:
    source = world.source(start="1h", overlap=0.0)
    week_ago = datetime.now(UTC) - timedelta(days=7)
    world.mention("@acme backdated a week", created_at=week_ago)
    recent = world.mention("@acme now")
    since = source.start_after(datetime.now(UTC))
    pages = walk(source, world.brand, Stream.MENTIONS, Cursor(since_id=since))
    assert read(pages) == [recent] and not pages[-1].cut
    source.close()


def test_a_reply_that_mentions_is_read_once(world: World, source: BlueskySource) -> None:
    news = world.sandbox.add_post(world.brand.user_id, "news").uri
    reply = world.sandbox.add_post(
        world.fan, "@acme re", in_reply_to=news, mentions=(world.brand.user_id,)
    ).uri
    quote = world.sandbox.add_post(world.fan, "look", quote=news).uri
    plain_reply = world.sandbox.add_post(world.fan, "nice", in_reply_to=news).uri
    pages = walk(source, world.brand, Stream.MENTIONS, Cursor())
    assert read(pages) == [plain_reply, quote, reply]
    by_id = {i.post_id: i for p in pages for i in p.interactions}
    assert by_id[reply].in_reply_to_post_id == news and by_id[reply].conversation_id == news
    assert by_id[reply].raw["reason"] == "mention"
    mention = by_id[reply]
    assert mention.external_id == f"bluesky:{reply}"
    rkey = reply.rsplit("/", 1)[1]
    assert mention.url == f"https://bsky.app/profile/{world.fan}/post/{rkey}"
    assert mention.direction is Direction.INBOUND and mention.counterpart_id == world.fan


def test_replies_are_attributed_to_the_parents_author_even_when_it_is_gone(
    world: World, source: BlueskySource
) -> None:
    asked = world.mention("@acme question")
    gone = world.mention("@acme another")
    answer = world.sandbox.add_post(world.brand.user_id, "on it", in_reply_to=asked).uri
    second = world.sandbox.add_post(world.brand.user_id, "done", in_reply_to=gone).uri
    own = world.sandbox.add_post(world.brand.user_id, "thread start").uri
    world.sandbox.add_post(world.brand.user_id, "thread 2/2", in_reply_to=own)  # its own thread
    blocked = world.mention("@acme and then blocked us")
    third = world.sandbox.add_post(world.brand.user_id, "sorry", in_reply_to=blocked).uri
    world.sandbox.delete_post(gone)
    world.sandbox.blocked.add(blocked)
    pages = walk(source, world.brand, Stream.REPLIES, Cursor())
    replies = {i.post_id: i for p in pages for i in p.interactions}
    assert set(replies) == {answer, second, third}
    # The blocked parent's author has no handle in its view: never a profile without one.
    assert all(a.handle for p in pages for a in p.authors)
    assert all(r.direction is Direction.OUTBOUND for r in replies.values())
    assert {r.counterpart_id for r in replies.values()} == {world.fan}
    assert any(
        a.user_id == world.fan and a.handle == "fan.bsky.social" for p in pages for a in p.authors
    )


# -- errors ----------------------------------------------------------------------------------
def test_a_429_is_rate_limited_until_the_reset(world: World, source: BlueskySource) -> None:
    world.sandbox.inject("rate_limit", endpoint="listNotifications", seconds=120.0)
    with pytest.raises(RateLimited) as info:
        source.fetch(world.brand, Stream.MENTIONS, Cursor())
    wait = info.value.resume_at - datetime.now(UTC)
    assert timedelta(seconds=100) < wait <= timedelta(seconds=121)
    assert info.value.status == 429 and info.value.system == "bluesky"


def test_the_ip_window_is_paced_by_its_headers(world: World) -> None:
    world.sandbox.requests_per_window = 4
    source = world.source()
    page = source.fetch(world.brand, Stream.MENTIONS, Cursor())
    assert page.rate is not None and page.rate.limit == 4 and page.rate.remaining == 3
    assert page.rate.reset_at is not None and page.rate.reset_at > datetime.now(UTC)
    for _ in range(3):
        source.fetch(world.brand, Stream.REPLIES, Cursor())
    with pytest.raises(RateLimited) as info:
        source.fetch(world.brand, Stream.MENTIONS, Cursor())
    assert info.value.resume_at <= datetime.now(UTC) + timedelta(minutes=5, seconds=1)
    source.close()


@pytest.mark.parametrize(
    ("kind", "options", "error"),
    [
        ("status", {"status": 503}, TransientError),
        ("status", {"status": 502}, TransientError),
        ("malformed", {}, MalformedAnswer),
        ("drop", {}, TransientError),
    ],
)
def test_failures_are_classified(
    world: World, source: BlueskySource, kind: str, options: dict[str, int], error: type[Exception]
) -> None:
    source.fetch(world.brand, Stream.MENTIONS, Cursor())  # logged in
    world.sandbox.inject(kind, endpoint="listNotifications", **options)
    with pytest.raises(error) as info:
        source.fetch(world.brand, Stream.MENTIONS, Cursor())
    assert getattr(info.value, "system", None) == "bluesky"


def test_a_bad_item_is_quarantined_and_the_rest_read(world: World, source: BlueskySource) -> None:
    posted = [world.mention(f"@acme {n}") for n in range(3)]
    world.sandbox.inject("bad_item", endpoint="listNotifications")
    page = source.fetch(world.brand, Stream.MENTIONS, Cursor())
    (bad,) = page.quarantined
    assert bad.item_id == posted[-1] and "author" in bad.reason
    assert read([page]) == posted[:2][::-1]


def test_the_wrong_account_is_refused(world: World, source: BlueskySource) -> None:
    other = Account("bluesky", "fan.bsky.social", world.fan)
    with pytest.raises(AuthError, match="logged in as"):
        source.fetch(other, Stream.MENTIONS, Cursor())


# -- compliance ------------------------------------------------------------------------------
def test_lookup_posts_tells_standing_deleted_and_blocked_in_batches(
    world: World, source: BlueskySource
) -> None:
    kept, gone, hidden = (world.mention(f"@acme {n}") for n in range(3))
    world.sandbox.delete_post(gone)
    world.sandbox.blocked.add(hidden)
    missing = [f"at://{world.fan}/app.bsky.feed.post/3kzzzzzzzz{n:03d}" for n in range(60)]
    asked = [*missing[:30], kept, *missing[30:], gone, hidden, "not-an-uri"]
    alive, deleted = source.lookup_posts(asked)
    assert alive == {kept}
    assert deleted == {gone, *missing}
    assert hidden not in alive | deleted  # blocked: asked again later, never acted on
    assert world.calls("app.bsky.feed.getPosts") == 3  # 63 uris, 25 a call


# -- check -----------------------------------------------------------------------------------
def test_check_rows(world: World, source: BlueskySource) -> None:
    rows = source.check(["acme", "fan.bsky.social", "nosuch"])
    by_item = {r.item: r for r in rows}
    assert by_item["session"].ok and world.brand.user_id in by_item["session"].detail
    assert by_item["@acme"].ok
    assert (
        not by_item["@fan.bsky.social"].ok
        and "not the logged-in" in by_item["@fan.bsky.social"].detail
    )
    assert not by_item["@nosuch"].ok and by_item["@nosuch"].fix
    refused = world.source(password="nope", session_file=world.session_file.with_name("x"))
    (row,) = refused.check(["acme"])
    refused.close()
    assert not row.ok and "nope" not in row.detail and "app_password" in row.fix


# -- translation of recorded bodies ----------------------------------------------------------
def test_recorded_profiles_and_posts_translate() -> None:
    follow = json.loads((FIXTURES / "get_follows.json").read_text())["follows"][0]
    author = author_of(follow)
    assert (author.user_id, author.handle) == (follow["did"], follow["handle"])
    post = json.loads((FIXTURES / "thread_view_post_with_embed_media.json").read_text())["thread"][
        "post"
    ]
    did, rkey = post["author"]["did"], post["uri"].rsplit("/", 1)[1]
    assert post_url(post["uri"]) == f"https://bsky.app/profile/{did}/post/{rkey}"
    assert author_of({**follow, "handle": "handle.invalid"}).handle is None


def test_an_at_uri_too_long_for_the_crm_key_is_quarantined() -> None:
    brand = Account("bluesky", "acme.bsky.social", "did:plc:brandbrandbrandbrandbran")
    did = "did:web:" + "a" * 50 + ".example.com"
    long_uri = f"at://{did}/app.bsky.feed.post/" + "k" * 200
    note = {
        "uri": long_uri,
        "cid": "bafy",
        "author": {"did": did, "handle": "long.example.com"},
        "reason": "mention",
        "record": {
            "$type": "app.bsky.feed.post",
            "text": "@acme",
            "createdAt": "2026-12-01T10:00:00.000Z",
        },
        "isRead": False,
        "indexedAt": "2026-12-01T10:00:00.000Z",
    }
    assert len(f"bluesky:{long_uri}") > EXTERNAL_ID_MAX
    page = parse_notifications(
        {"notifications": [note]}, account=brand, cursor=Cursor(), overlap=timedelta(0), headers={}
    )
    assert page.interactions == () and str(EXTERNAL_ID_MAX) in page.quarantined[0].reason


def test_plain_http_goes_to_loopback_only_redirects_included(world: World) -> None:
    source = world.source()
    hooks = source.client.sdk.request._client.event_hooks["request"]
    for url in ("http://pds.example.com/xrpc/x", "http://10.0.0.1/xrpc/x"):
        with pytest.raises(httpx.UnsupportedProtocol):
            for hook in hooks:
                hook(httpx.Request("GET", url))
    for hook in hooks:  # loopback and TLS pass
        hook(httpx.Request("GET", "http://127.0.0.1:1/xrpc/x"))
        hook(httpx.Request("GET", "https://pds.example.com/xrpc/x"))
    source.close()


def test_the_documented_bluesky_table_parses(monkeypatch: pytest.MonkeyPatch) -> None:
    """config.example.toml documents the Bluesky source commented out: uncommented, it is a
    valid configuration with the defaults it says."""
    lines, inside = [], False
    for line in (ROOT / "config.example.toml").read_text().splitlines():
        inside = inside or line.startswith("# A Bluesky source")
        if inside and re.match(r"# (\[\[sources\]\]|\w+ = )", line):
            line = line.removeprefix("# ")
        lines.append(line)
    text = "\n".join(lines).replace('["CHANGE_ME"]', '["acme"]')
    text = text.replace("CHANGE_ME@", "someone@")
    for name in ("X_BEARER_TOKEN", "SF_PASSWORD", "SF_TOKEN", "BLUESKY_APP_PASSWORD"):
        monkeypatch.setenv(name, f"value-of-{name}")
    sources = config_mod.parse(tomllib.loads(text), ROOT / "config.example.toml").sources
    (bluesky,) = [s for s in sources if isinstance(s, BlueskySettings)]
    assert bluesky.accounts == ["acme.bsky.social"] and bluesky.identifier == "acme.bsky.social"
    assert bluesky.session_file == Path("/var/lib/syncd/bluesky-acme.session")
    assert (bluesky.page_size, bluesky.overlap, bluesky.interval) == (50, 3600.0, 60.0)
    assert bluesky.app_password.reveal() == "value-of-BLUESKY_APP_PASSWORD"


@pytest.mark.parametrize(
    "kept", ["not a session", "acme.bsky.social:::did:plc:x:::a.b.c:::d.e.f:::https://pds.test"]
)
def test_a_kept_session_syncd_did_not_write_is_an_auth_error_saying_what_to_do(
    world: World, kept: str
) -> None:
    world.session_file.write_text(kept + "\n")
    world.session_file.chmod(0o600)
    source = world.source()
    with pytest.raises(AuthError, match="remove the file"):
        source.fetch(world.brand, Stream.MENTIONS, Cursor())
    source.close()
    assert world.logins() == 0  # never a login behind the admin's back
