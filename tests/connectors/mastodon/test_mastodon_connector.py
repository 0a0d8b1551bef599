"""connectors.mastodon: recorded bodies parsed, and the real connector driving Mastodon.py
against the loopback stand-in (sandbox/mastodon/): walks and pagination, rate limits and
pacing, errors classified, bad items quarantined, deleted posts, check, settings."""

from __future__ import annotations

import json
import re
import tomllib
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml
from pydantic import ValidationError
from support import FIXTURES

import connectors
from connectors.mastodon.parse import MAX_URI, html_to_text, parse_mentions
from connectors.mastodon.source import MastodonSettings, MastodonSource
from sandbox.mastodon.api import MAccount, MastodonSandbox
from sandbox.server import Request
from syncd.config import settings as config_mod
from syncd.errors import AuthError, MalformedAnswer, RateLimited, TransientError
from syncd.model import Account, Cursor, Direction, Page, PostCount, Segment, Stream

TOKEN = "mastodon-token-0123456789-SECRET"
ROOT = Path(__file__).resolve().parents[3]


class World:
    def __init__(self, sb: MastodonSandbox) -> None:
        self.sb = sb
        sb.add_token(TOKEN, "acme")
        sb.policy.update(for_private_mentions="accept", for_limited_accounts="accept")
        self.acme = sb.add_account("acme")
        self.fan = sb.add_account("fan", domain="example.social", display_name="Fan")
        self.account = Account("mastodon", "acme", self.acme.uri)
        self.queries: list[tuple[str, dict[str, list[str]]]] = []
        sb.on_request("*", lambda req: self.queries.append((req.endpoint, dict(req.multi))))

    def source(
        self, page_size: int = 5, token: str = TOKEN, start: str = "2000-01-01"
    ) -> MastodonSource:
        return MastodonSource(token, api_base_url=self.sb.url, page_size=page_size, start=start)

    def mention(self, author: MAccount, text: str = "@acme help") -> str:
        return self.sb.add_status(author.id, text).uri


@pytest.fixture
def world() -> Iterator[World]:
    with MastodonSandbox() as sb:
        yield World(sb)


def walk(source: MastodonSource, account: Account, stream: Stream, cursor: Cursor) -> list[Page]:
    pages = [source.fetch(account, stream, cursor)]
    while not pages[-1].walk_complete:
        assert len(pages) < 50
        pages.append(source.fetch(account, stream, pages[-1].next_cursor))
    return pages


def read(pages: list[Page]) -> list[str]:
    return [i.post_id for p in pages for i in p.interactions]


# -- recorded bodies -------------------------------------------------------------------------
def recorded_mentions() -> list[Any]:
    doc = yaml.safe_load(
        (FIXTURES / "mastodon" / "test_notifications_mentions_only.yaml").read_text()
    )
    for item in doc["interactions"]:
        if item["request"]["uri"].endswith("/api/v1/notifications?types%5B%5D=mention"):
            body: list[Any] = json.loads(item["response"]["body"]["string"])
            return body
    raise LookupError("no recorded mention notifications")


def test_a_recorded_mention_translates() -> None:
    body = recorded_mentions()
    brand = Account(
        "mastodon", "mastodonpy_test", "http://localhost:3000/ap/users/117020565966271181"
    )
    out = parse_mentions(body, brand, "localhost:3000")
    (mention,) = out.interactions
    status = body[0]["status"]
    assert mention.post_id == status["uri"] and mention.external_id == f"mastodon:{status['uri']}"
    assert mention.author_id == mention.counterpart_id == status["account"]["uri"]
    assert mention.text == "@mastodonpy_test hello!"  # markup gone
    assert mention.created_at == datetime(2026, 8, 1, 13, 51, 42, 823000, tzinfo=UTC)
    assert mention.url == status["url"] and mention.direction is Direction.INBOUND
    # Where the brand's instance reads it again: the id it gave the status, with the instance.
    assert mention.ref == f"localhost:3000/{status['id']}"
    (author,) = out.authors
    # A local acct ("admin") made absolute; keyed on the actor uri.
    assert (author.user_id, author.handle) == (status["account"]["uri"], "admin@localhost:3000")
    assert out.quarantined == ()


def test_a_recorded_item_missing_its_time_is_quarantined_alone() -> None:
    body = recorded_mentions()
    broken = json.loads(json.dumps(body[0]))
    broken["id"] = "20"
    del broken["status"]["created_at"]
    out = parse_mentions([body[0], broken], Account("mastodon", "m", "u"), "localhost:3000")
    assert len(out.interactions) == 1
    (bad,) = out.quarantined
    assert bad.item_id == "20" and "created_at" in bad.reason and bad.raw == broken


def test_html_becomes_readable_text_with_links_as_urls() -> None:
    content = (
        '<p>Hi <span class="h-card" translate="no"><a href="https://a.example/@acme" '
        'class="u-url mention">@<span>acme</span></a></span>, see <a href="https://example.com/'
        'orders/12345?x=1&amp;y=2" rel="nofollow noopener" target="_blank"><span class="invisible">'
        'https://</span><span class="ellipsis">example.com/orders/1</span><span class="invisible">'
        '2345?x=1&amp;y=2</span></a> &amp; <a href="https://a.example/tags/help" class="mention '
        'hashtag" rel="tag">#<span>help</span></a></p><p>line one<br />line two &lt;3</p>'
    )
    assert html_to_text(content) == (
        "Hi @acme, see https://example.com/orders/12345?x=1&y=2 & #help\n\nline one\nline two <3"
    )


# -- walks -----------------------------------------------------------------------------------
def test_more_than_a_page_since_the_stored_id_is_read_whole_and_forward(world: World) -> None:
    source = world.source(page_size=5)
    world.mention(world.fan)
    done = walk(source, world.account, Stream.MENTIONS, Cursor())[-1].next_cursor
    # 13 arrive between two polls: a since_id walk would read the newest 5 and stop.
    arrived = [world.mention(world.fan, f"@acme q{k}") for k in range(13)]
    world.queries.clear()
    pages = walk(source, world.account, Stream.MENTIONS, done)
    got = read(pages)
    assert sorted(got) == sorted(arrived) and len(got) == len(set(got))
    # The first request is the newest page, unpaginated; then forward from the stored id.
    asked = [q for e, q in world.queries if e == "notifications"]
    assert "min_id" not in asked[0] and "max_id" not in asked[0]
    assert asked[1]["min_id"] == [done.since_id]
    assert all(q["types[]"] == ["mention"] for q in asked)
    # Each next min_id is the Link header's rel="prev" of the answer before.
    mins = [int(q["min_id"][0]) for q in asked[1:]]
    assert mins == sorted(mins) and len(set(mins)) == len(mins)
    newest = max((n.id for n in world.sb.notifications), key=int)
    assert pages[-1].next_cursor == Cursor(since_id=newest)
    assert all(p.horizon is None for p in pages)


def test_a_first_walk_reads_back_to_start_and_no_further(world: World) -> None:
    clock = [datetime(2026, 11, 1, 8, 0, tzinfo=UTC)]
    world.sb.clock = lambda: clock[0]
    old = [world.mention(world.fan, f"@acme old {k}") for k in range(4)]
    clock[0] = datetime(2026, 11, 3, 8, 0, tzinfo=UTC)
    recent = [world.mention(world.fan, f"@acme recent {k}") for k in range(7)]
    source = world.source(page_size=3, start="2026-11-02")
    world.queries.clear()
    pages = walk(source, world.account, Stream.MENTIONS, Cursor())
    assert sorted(read(pages)) == sorted(recent) and not set(old) & set(read(pages))
    # Newest first (max_id), then the end stores the newest id seen.
    asked = [q for e, q in world.queries if e == "notifications"]
    assert "max_id" not in asked[0] and all("max_id" in q for q in asked[1:])
    assert all("min_id" not in q for q in asked)
    newest = max((n.id for n in world.sb.notifications), key=int)
    assert pages[-1].next_cursor == Cursor(since_id=newest)
    assert pages[0].next_cursor.pending_since_id == newest
    # A later poll reads what came after, forward from there.
    later = world.mention(world.fan, "@acme later")
    assert read(walk(source, world.account, Stream.MENTIONS, pages[-1].next_cursor)) == [later]


def test_a_first_walk_from_now_reads_nothing_old_and_loses_nothing_new(world: World) -> None:
    world.mention(world.fan, "@acme before syncd")
    source = world.source(start="now")
    first = walk(source, world.account, Stream.MENTIONS, Cursor())
    assert read(first) == [] and first[-1].next_cursor.since_id is not None
    # An empty replies stream stores "0": whatever comes is after it.
    empty = walk(source, world.account, Stream.REPLIES, Cursor())
    assert empty[-1].next_cursor == Cursor(since_id="0")
    asked = world.sb.add_status(world.fan.id, "@acme new")
    answer = world.sb.add_status(world.acme.id, "@fan@example.social yes", in_reply_to=asked.id)
    assert read(walk(source, world.account, Stream.MENTIONS, first[-1].next_cursor)) == [asked.uri]
    assert read(walk(source, world.account, Stream.REPLIES, empty[-1].next_cursor)) == [answer.uri]


def test_a_first_walk_resumes_with_its_start(world: World) -> None:
    posted = [world.mention(world.fan, f"@acme {k}") for k in range(7)]
    first = world.source(page_size=3).fetch(world.account, Stream.MENTIONS, Cursor())
    assert first.next_cursor.in_walk and first.next_cursor.since_id is None
    # Another process, configured "now", goes on with the start the walk began with.
    again = world.source(page_size=3, start="now")
    rest = walk(again, world.account, Stream.MENTIONS, first.next_cursor)
    assert sorted(read([first, *rest])) == sorted(posted)


def test_an_idle_poll_is_one_unpaginated_request(world: World) -> None:
    source = world.source()
    world.mention(world.fan)
    done = walk(source, world.account, Stream.MENTIONS, Cursor())[-1].next_cursor
    world.queries.clear()
    pages = walk(source, world.account, Stream.MENTIONS, done)
    assert read(pages) == [] and pages[-1].next_cursor == done
    assert [e for e, _ in world.queries] == ["notifications"]
    assert not {"min_id", "max_id", "since_id"} & set(world.queries[0][1])


def test_other_notification_types_are_not_history(world: World) -> None:
    source = world.source()
    world.sb.add_notification(world.acme.id, "follow", world.fan.id)
    posted = world.mention(world.fan)
    page = source.fetch(world.account, Stream.MENTIONS, Cursor())
    assert read([page]) == [posted]


def test_a_deleted_status_leaves_the_walk(world: World) -> None:
    source = world.source()
    kept, gone = world.mention(world.fan), world.sb.add_status(world.fan.id, "@acme oops")
    world.sb.delete_status(gone.id)
    assert read(walk(source, world.account, Stream.MENTIONS, Cursor())) == [kept]


def test_replies_are_attributed_to_the_person_answered(world: World) -> None:
    source = world.source()
    other = world.sb.add_account("other")
    asked = world.sb.add_status(world.fan.id, "@acme broken")
    reply = world.sb.add_status(world.acme.id, "@fan@example.social fixed", in_reply_to=asked.id)
    world.sb.add_status(world.acme.id, "New release today https://example.com/release")
    thread = world.sb.add_status(world.acme.id, "1/2 a thread")
    world.sb.add_status(world.acme.id, "2/2 the end", in_reply_to=thread.id)  # to itself
    direct = world.sb.add_status(world.acme.id, "@other your order shipped")
    pages = walk(source, world.account, Stream.REPLIES, Cursor())
    got = {i.post_id: i for p in pages for i in p.interactions}
    assert set(got) == {reply.uri, direct.uri}
    assert got[reply.uri].counterpart_id == world.fan.uri
    assert got[reply.uri].in_reply_to_post_id == asked.uri
    assert got[reply.uri].text == "@fan fixed"
    assert (
        got[direct.uri].counterpart_id == other.uri and got[direct.uri].in_reply_to_post_id is None
    )
    assert all(
        i.direction is Direction.OUTBOUND and i.author_id == world.acme.uri for i in got.values()
    )
    authors = {a.user_id: a.handle for p in pages for a in p.authors}
    assert authors == {world.fan.uri: "fan@example.social", other.uri: f"other@{world.sb.host}"}
    # The brand's own statuses are read without boosts.
    statuses = [q for e, q in world.queries if e == "account_statuses"]
    assert statuses and all(q["exclude_reblogs"] in (["1"], ["true"]) for q in statuses)


def test_a_token_of_another_account_reads_nothing(world: World) -> None:
    source = world.source()
    stranger = Account("mastodon", "fan@example.social", world.fan.uri)
    with pytest.raises(AuthError, match="belongs to acme"):
        source.fetch(stranger, Stream.MENTIONS, Cursor())


# -- limits and errors -----------------------------------------------------------------------
def test_a_429_says_when_to_resume_from_the_iso_reset(world: World) -> None:
    source = world.source()
    world.mention(world.fan)
    world.sb.inject("rate_limit", endpoint="notifications", seconds=120)
    before = datetime.now(UTC)
    with pytest.raises(RateLimited) as info:
        source.fetch(world.account, Stream.MENTIONS, Cursor())
    assert info.value.system == "mastodon" and info.value.status == 429
    assert 100 < (info.value.resume_at - before).total_seconds() <= 121


def test_a_spent_window_waits_for_its_reset_without_asking(world: World) -> None:
    with MastodonSandbox(limits={"all": (3, 300.0)}) as sb:
        w = World(sb)
        source = w.source()
        w.mention(w.fan)
        source.fetch(w.account, Stream.MENTIONS, Cursor())  # verify_credentials, notifications
        page = source.fetch(w.account, Stream.MENTIONS, Cursor())  # the third: none left
        assert page.rate is not None and page.rate.remaining == 0 and page.rate.limit == 3
        asked = sb.request_count
        with pytest.raises(RateLimited) as info:
            source.fetch(w.account, Stream.MENTIONS, Cursor())
        assert sb.request_count == asked  # paced on the headers: no request drew a 429
        assert info.value.resume_at == page.rate.reset_at


def test_paginated_requests_meet_their_own_limit(world: World) -> None:
    with MastodonSandbox(limits={"paginated": (1, 900.0)}) as sb:
        w = World(sb)
        source = w.source(page_size=2)
        for k in range(7):
            w.mention(w.fan, f"@acme {k}")
        first = source.fetch(w.account, Stream.MENTIONS, Cursor())
        second = source.fetch(w.account, Stream.MENTIONS, first.next_cursor)
        assert second.next_cursor.in_walk
        with pytest.raises(RateLimited):
            source.fetch(w.account, Stream.MENTIONS, second.next_cursor)


@pytest.mark.parametrize(
    ("fault", "options", "error"),
    [
        ("status", {"status": 503}, TransientError),
        ("status", {"status": 502}, TransientError),
        ("malformed", {}, MalformedAnswer),
        ("drop", {}, TransientError),
    ],
)
def test_failures_are_classified(
    world: World, fault: str, options: dict[str, Any], error: type[Exception]
) -> None:
    source = world.source()
    world.mention(world.fan)
    source.me()
    world.sb.inject(fault, endpoint="notifications", **options)
    with pytest.raises(error) as info:
        source.fetch(world.account, Stream.MENTIONS, Cursor())
    assert getattr(info.value, "system", None) == "mastodon"


def test_a_refused_token_is_an_auth_error_without_the_token(world: World) -> None:
    source = world.source(token="revoked-" + TOKEN)
    with pytest.raises(AuthError) as info:
        source.fetch(world.account, Stream.MENTIONS, Cursor())
    assert info.value.status == 401 and TOKEN not in str(info.value)
    assert info.value.__cause__ is None and info.value.__context__ is None


def test_a_bad_item_is_quarantined_and_the_rest_read(world: World) -> None:
    source = world.source()
    posted = [world.mention(world.fan, f"@acme {k}") for k in range(3)]
    world.sb.inject("bad_item", endpoint="notifications")
    page = source.fetch(world.account, Stream.MENTIONS, Cursor())
    (bad,) = page.quarantined
    assert "created_at" in bad.reason and bad.raw["status"]["uri"] == posted[-1]
    assert read([page]) == posted[1::-1]


def test_a_uri_too_long_for_the_crm_key_is_quarantined(world: World) -> None:
    source = world.source()
    # A DNS name may have 253 characters: its actor's uri is longer than the key allows.
    domain = ".".join(["a" * 62] * 4)[:250] + ".io"
    long = world.sb.add_account("fan", domain=domain)
    assert len(long.uri) > MAX_URI
    world.mention(long)
    page = source.fetch(world.account, Stream.MENTIONS, Cursor())
    (bad,) = page.quarantined
    assert "255" in bad.reason and page.interactions == ()


# -- compliance ------------------------------------------------------------------------------
def test_lookup_posts_tells_deleted_from_standing(world: World) -> None:
    source = world.source()
    local = world.sb.add_account("local")
    kept, gone = world.mention(local, "@acme a"), world.mention(local, "@acme b")
    remote = world.mention(world.fan)
    world.sb.delete_status(gone.rsplit("/", 1)[1])
    world.queries.clear()
    alive, deleted = source.lookup_posts([kept, gone, remote])
    assert (alive, deleted) == ({kept}, {gone})
    # One batched read, and the one it left out asked alone: its 404 says deleted.
    assert [e for e, _ in world.queries] == ["statuses", "status"]


def test_a_status_of_another_instance_is_checked_by_the_id_the_brands_instance_gave_it(
    world: World,
) -> None:
    source = world.source()
    kept = world.sb.add_status(world.fan.id, "@acme still here")
    gone = world.sb.add_status(world.fan.id, "@acme my order number is 12345")
    page = source.fetch(world.account, Stream.MENTIONS, Cursor())
    refs = {i.post_id: i.ref for i in page.interactions if i.ref is not None}
    assert refs == {s.uri: f"{world.sb.host}/{s.id}" for s in (kept, gone)}
    assert gone.id not in gone.uri  # the uri tells nothing of the id here
    # The author deletes it on example.social; the Delete reaches the brand's instance.
    world.sb.delete_status(gone.id)
    world.queries.clear()
    # example.social does not even resolve: the brand's instance answers from its own copy.
    alive, deleted = source.lookup_posts([kept.uri, gone.uri], refs)
    assert (alive, deleted) == ({kept.uri}, {gone.uri})
    assert [e for e, _ in world.queries] == ["statuses", "status"]
    assert world.queries[0][1]["id[]"] == [kept.id, gone.id]
    # Without its ref such a status cannot be told, and is never taken for deleted.
    assert source.lookup_posts([kept.uri, gone.uri]) == (set(), set())


def test_a_ref_another_instance_gave_is_never_asked_here(world: World) -> None:
    source = world.source()
    remote = world.sb.add_status(world.fan.id, "@acme hello")
    # Read on another instance (another source, or before the brand moved): an id there names
    # nothing here, and a 404 for it must not say deleted.
    refs = {remote.uri: "mastodon.example/1234567890"}
    world.queries.clear()
    assert source.lookup_posts([remote.uri], refs) == (set(), set())
    assert "status" not in [e for e, _ in world.queries]


# -- check -----------------------------------------------------------------------------------
def test_check_passes_on_a_policy_that_accepts_strangers(world: World) -> None:
    rows = world.source().check(["acme"])
    assert [r.item for r in rows] == ["access token", "@acme", "notification policy"]
    assert all(r.ok for r in rows)


@pytest.mark.parametrize("key", ["for_not_following", "for_new_accounts", "for_private_mentions"])
@pytest.mark.parametrize("value", ["filter", "drop"])
def test_a_policy_hiding_strangers_fails_with_the_fix(world: World, key: str, value: str) -> None:
    world.sb.policy[key] = value
    rows = {r.item: r for r in world.source().check(["acme"])}
    policy = rows["notification policy"]
    assert not policy.ok and value in policy.detail
    assert f"{key}=accept" in policy.fix


def test_check_fails_a_handle_the_token_is_not_for(world: World) -> None:
    rows = {r.item: r for r in world.source().check(["acmesupport"])}
    assert not rows["@acmesupport"].ok and "acme" in rows["@acmesupport"].detail


def test_check_reports_a_refused_token_in_a_row(world: World) -> None:
    (row,) = world.source(token="wrong").check(["acme"])
    assert not row.ok and "access_token" in row.fix and TOKEN not in row.detail


# -- settings --------------------------------------------------------------------------------
def base(**more: Any) -> dict[str, Any]:
    return {
        "name": "acme-mastodon", "type": "mastodon", "api_base_url": "https://mastodon.social",
        "access_token": "env:M_TOKEN", "accounts": ["acme"], **more,
    }  # fmt: skip


def test_settings_registry_and_secret(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("M_TOKEN", TOKEN)
    assert connectors.source_class("mastodon") is MastodonSource
    settings = MastodonSettings.model_validate(base())
    assert settings.interval == 60.0 and settings.page_size == 80
    assert TOKEN not in repr(settings)
    source = MastodonSource.from_settings(settings)
    try:
        assert source.domain == "mastodon.social" and TOKEN not in repr(source)
    finally:
        source.close()


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"accounts": ["acme", "acmesupport"]}, "one account"),
        ({"api_base_url": "http://mastodon.social"}, "http"),
        ({"page_size": 81}, "80"),
    ],
)
def test_settings_refuse(change: dict[str, Any], message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        MastodonSettings.model_validate(base(**change))


def test_the_documented_source_parses(monkeypatch: pytest.MonkeyPatch) -> None:
    """config.example.toml documents a Mastodon source, commented out: uncommented, it is a
    valid one."""
    lines, inside = [], False
    for line in (ROOT / "config.example.toml").read_text().splitlines():
        if line.startswith("# A Bluesky source"):  # the next commented-out table
            inside = False
        else:
            inside = inside or line.startswith("# Another [[sources]] table: a Mastodon account")
        if inside and re.match(r"# (\[\[sources\]\]|\w+ = )", line):
            line = line.removeprefix("# ")
        lines.append(line)
    for name in ("X_BEARER_TOKEN", "SF_PASSWORD", "SF_TOKEN", "MASTODON_ACCESS_TOKEN"):
        monkeypatch.setenv(name, f"value-of-{name}")
    text = "\n".join(lines).replace('["CHANGE_ME"]', '["acme"]').replace("CHANGE_ME@", "a@")
    parsed = config_mod.parse(tomllib.loads(text), ROOT / "config.example.toml")
    (mastodon,) = [s for s in parsed.sources if s.type == "mastodon"]
    assert isinstance(mastodon, MastodonSettings)
    assert mastodon.accounts == ["acme"] and mastodon.api_base_url == "https://mastodon.social"
    assert mastodon.access_token.reveal() == "value-of-MASTODON_ACCESS_TOKEN"


def test_requests_carry_the_token_only_as_a_bearer_header(world: World) -> None:
    seen: list[Request] = []
    world.sb.on_request("notifications", seen.append)
    world.source().fetch(world.account, Stream.MENTIONS, Cursor())
    (req,) = seen
    assert req.header("authorization") == f"Bearer {TOKEN}"
    assert TOKEN not in json.dumps(req.multi)


# -- backfills -------------------------------------------------------------------------------
def segment_walk(source: MastodonSource, account: Account, segment: Segment) -> list[Page]:
    pages = [source.fetch_segment(account, segment, None)]
    while pages[-1].next_cursor.pagination_token is not None:
        assert len(pages) < 50
        pages.append(source.fetch_segment(account, segment, pages[-1].next_cursor.pagination_token))
    return pages


def test_a_backfill_reads_both_streams_of_a_past_window(world: World) -> None:
    clock = [datetime(2026, 10, 1, 9, 0, tzinfo=UTC)]
    world.sb.clock = lambda: clock[0]
    by_day: dict[int, tuple[str, str]] = {}
    for day in range(1, 11):  # one mention and one reply each day, 1-10 October
        clock[0] = datetime(2026, 10, day, 9, 0, tzinfo=UTC)
        asked = world.sb.add_status(world.fan.id, f"@acme day {day}")
        answer = world.sb.add_status(world.acme.id, "@fan@example.social ok", in_reply_to=asked.id)
        by_day[day] = (asked.uri, answer.uri)
    source = world.source(page_size=3)
    since, until = datetime(2026, 10, 3, tzinfo=UTC), datetime(2026, 10, 8, tzinfo=UTC)
    now = datetime(2026, 10, 20, tzinfo=UTC)
    mentions, replies = source.plan_backfill(
        world.account, [Stream.MENTIONS, Stream.REPLIES], since, until, now
    )
    assert (mentions.route, replies.route) == ("mentions_timeline", "user_timeline")
    assert mentions.min_interval >= 3.0 and mentions.rate_window == 900.0
    assert mentions.horizon is None and mentions.note
    world.queries.clear()
    got_mentions = read(segment_walk(source, world.account, mentions))
    got_replies = read(segment_walk(source, world.account, replies))
    assert sorted(got_mentions) == sorted(by_day[d][0] for d in range(3, 8))
    assert sorted(got_replies) == sorted(by_day[d][1] for d in range(3, 8))
    # The statuses walk starts at the window's end (ids are times); the notifications walk
    # at the newest, both newest first by max_id.
    first_statuses = next(q for e, q in world.queries if e == "account_statuses")
    assert int(first_statuses["max_id"][0]) >> 16 == int(until.timestamp() * 1000)
    assert all("min_id" not in q for _, q in world.queries)


def test_a_backfill_count_is_exact_for_one_page_and_sampled_beyond(world: World) -> None:
    for k in range(2):
        world.mention(world.fan, f"@acme {k}")
    source = world.source(page_size=5)
    now = datetime.now(UTC)
    (segment,) = source.plan_backfill(
        world.account, [Stream.MENTIONS], now - timedelta(days=1), now + timedelta(minutes=1), now
    )
    assert source.count_posts(world.account, segment) == PostCount(2, exact=True)
    for k in range(8):
        world.mention(world.fan, f"@acme more {k}")
    now = datetime.now(UTC) + timedelta(seconds=1)
    (segment,) = source.plan_backfill(
        world.account, [Stream.MENTIONS], now - timedelta(days=1), now, now
    )
    count = source.count_posts(world.account, segment)
    assert not count.exact and count.posts >= 5
    assert source.plan_backfill(world.account, [Stream.MENTIONS], now, now, now) == []
