"""connectors.bluesky backfills and gap plans against the loopback stand-in: mentions of a past
window by ``searchPosts`` (its 10,000-hit depth passed by narrowing the window), the brand's
replies by its author feed back to the window, counts, and the plans of gaps."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from connectors.bluesky import backfill
from connectors.bluesky.parse import Mark, parse_search
from connectors.bluesky.source import BlueskySource
from sandbox.bluesky.api import BlueskySandbox
from syncd.contracts import Backfiller, GapCloser
from syncd.errors import MalformedAnswer
from syncd.model import Account, Page, Segment, Stream

PASSWORD = "backfill-app-password"
NOW = datetime.now(UTC).replace(microsecond=0)
WEEK_AGO = NOW - timedelta(days=7)


class World:
    def __init__(self, sandbox: BlueskySandbox, session_file: Path) -> None:
        self.sandbox = sandbox
        self.brand = Account(
            "bluesky",
            "acme.bsky.social",
            sandbox.add_user("acme.bsky.social", password=PASSWORD).did,
        )
        self.fan = sandbox.add_user("fan.bsky.social").did
        self.session_file = session_file

    def source(self, page_size: int = 3) -> BlueskySource:
        return BlueskySource(
            identifier="acme.bsky.social",
            app_password=PASSWORD,
            session_file=self.session_file,
            service=self.sandbox.url,
            page_size=page_size,
        )

    def mention(self, at: datetime, text: str = "@acme help") -> str:
        post = self.sandbox.add_post(self.fan, text, mentions=(self.brand.user_id,), created_at=at)
        return post.uri

    def calls(self, nsid: str) -> int:
        return self.sandbox.requests_by_route.get(f"GET ^/xrpc/{nsid}/?$", 0)


@pytest.fixture
def world(tmp_path: Path) -> Iterator[World]:
    sandbox = BlueskySandbox()
    with sandbox:
        yield World(sandbox, tmp_path / "acme.session")


@pytest.fixture
def source(world: World) -> Iterator[BlueskySource]:
    made = world.source()
    yield made
    made.close()


def read_segment(source: BlueskySource, account: Account, segment: Segment) -> list[Page]:
    pages = [source.fetch_segment(account, segment, None)]
    while (token := pages[-1].next_cursor.pagination_token) is not None:
        assert len(pages) < 60
        pages.append(source.fetch_segment(account, segment, token))
    return pages


def posts(pages: list[Page]) -> list[str]:
    return [i.post_id for p in pages for i in p.interactions]


def test_the_plan_reads_mentions_by_search_and_replies_by_the_author_feed(
    source: BlueskySource,
) -> None:
    backfiller: Backfiller = source
    assert isinstance(source, GapCloser)
    account = Account("bluesky", "acme.bsky.social", "did:plc:acme")
    mentions, replies = backfiller.plan_backfill(
        account, [Stream.MENTIONS, Stream.REPLIES], WEEK_AGO, NOW + timedelta(days=1), NOW
    )
    assert (mentions.route, replies.route) == ("search_posts", "author_feed")
    assert mentions.until == NOW and mentions.since == WEEK_AGO  # never past now
    # The plan says how far search reaches and what it cannot find.
    assert mentions.note is not None and "10,000" in mentions.note
    assert "do not mention" in mentions.note
    assert replies.note is not None and "author feed" in replies.note
    assert {mentions.route, replies.route} <= source.shared_routes  # the per-IP limit polls use
    assert backfiller.plan_backfill(account, [Stream.MENTIONS], NOW, NOW, NOW) == []
    assert Segment.from_json(mentions.as_json()) == mentions


def test_mentions_of_a_past_window_are_read_by_search_newest_first(
    world: World, source: BlueskySource
) -> None:
    seen: list[dict[str, list[str]]] = []
    world.sandbox.on_request("searchPosts", lambda req: seen.append(req.multi))
    inside = [world.mention(WEEK_AGO + timedelta(hours=h), f"@acme {h}") for h in range(1, 8)]
    world.mention(WEEK_AGO - timedelta(hours=1), "@acme before the window")
    world.mention(NOW - timedelta(hours=1), "@acme after the window")
    world.sandbox.add_post(world.fan, "no mention", created_at=WEEK_AGO + timedelta(hours=2))
    world.sandbox.add_post(
        world.brand.user_id,
        "@acme the brand itself",
        mentions=(world.brand.user_id,),
        created_at=WEEK_AGO + timedelta(hours=3),
    )
    (segment,) = source.plan_backfill(
        world.brand, [Stream.MENTIONS], WEEK_AGO, WEEK_AGO + timedelta(days=1), NOW
    )
    pages = read_segment(source, world.brand, segment)
    assert posts(pages) == inside[::-1]
    assert len(pages) == 3  # 7 posts, 3 a page
    (first, *_) = pages[0].interactions
    assert first.stream is Stream.MENTIONS and first.counterpart_id == world.fan
    assert {a.user_id for p in pages for a in p.authors} == {world.fan}
    assert seen[0]["mentions"] == [world.brand.user_id] and seen[0]["sort"] == ["latest"]
    assert seen[0]["since"][0].startswith(WEEK_AGO.strftime("%Y-%m-%dT%H:%M:%S"))


def test_a_window_deeper_than_search_goes_is_read_as_narrower_queries(
    world: World, source: BlueskySource, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The service's depth made small, as Bluesky's is (10,000) for a window holding more: a
    # cursor past it would be refused (400) and the read would fail.
    world.sandbox.search_depth = 4
    monkeypatch.setattr(backfill, "SEARCH_DEPTH", 4)
    inside = [world.mention(WEEK_AGO + timedelta(minutes=m)) for m in range(1, 12)]
    (segment,) = source.plan_backfill(
        world.brand, [Stream.MENTIONS], WEEK_AGO, WEEK_AGO + timedelta(hours=1), NOW
    )
    pages = read_segment(source, world.brand, segment)
    assert set(posts(pages)) == set(inside)
    assert world.calls("app.bsky.feed.searchPosts") > 4  # it went on past the first query
    tokens = [p.next_cursor.pagination_token for p in pages[:-1]]
    assert len(set(tokens)) == len(tokens)


def test_the_service_refuses_a_cursor_deeper_than_it_goes(world: World) -> None:
    world.sandbox.search_depth = 4
    source = world.source()
    (segment,) = source.plan_backfill(world.brand, [Stream.MENTIONS], WEEK_AGO, NOW, NOW)
    deep = backfill.SearchToken(segment.until, 3, "6").text()
    with pytest.raises(Exception, match="paginate so deep"):
        source.fetch_segment(world.brand, segment, deep)
    ending_past = backfill.SearchToken(segment.until, 2, "2").text()  # 2 + a page of 3 > 4
    with pytest.raises(Exception, match="disallowed size/offset"):
        source.fetch_segment(world.brand, segment, ending_past)
    source.close()


def test_replies_are_read_from_the_author_feed_back_to_the_window(
    world: World, source: BlueskySource
) -> None:
    asked = world.mention(WEEK_AGO + timedelta(hours=1))
    answers = [
        world.sandbox.add_post(
            world.brand.user_id,
            f"@fan answer {h}",
            in_reply_to=asked,
            created_at=WEEK_AGO + timedelta(hours=h),
        ).uri
        for h in range(2, 6)
    ]
    for h in range(10):  # newer than the window: read over, not kept
        world.sandbox.add_post(
            world.brand.user_id,
            f"@fan later {h}",
            in_reply_to=asked,
            created_at=NOW - timedelta(hours=h),
        )
    for h in range(1, 20):  # older than the window: the walk stops at the first page below
        world.sandbox.add_post(
            world.brand.user_id,
            "old",
            in_reply_to=asked,
            created_at=WEEK_AGO - timedelta(days=h),
        )
    (segment,) = source.plan_backfill(
        world.brand, [Stream.REPLIES], WEEK_AGO, WEEK_AGO + timedelta(days=1), NOW
    )
    pages = read_segment(source, world.brand, segment)
    assert posts(pages) == answers[::-1]
    assert {i.counterpart_id for p in pages for i in p.interactions} == {world.fan}
    # 10 newer, 4 inside, then one page reaching below the window: 5 pages of 3, not all 33.
    assert len(pages) == 5


def test_counts_take_the_search_hits_total(world: World, source: BlueskySource) -> None:
    for h in range(1, 8):
        world.mention(WEEK_AGO + timedelta(hours=h))
    mentions, replies = source.plan_backfill(
        world.brand, [Stream.MENTIONS, Stream.REPLIES], WEEK_AGO, NOW, NOW
    )
    counted = source.count_posts(world.brand, mentions)
    assert counted.posts == 7 and not counted.exact  # more pages: the total may be rounded
    assert source.count_posts(world.brand, replies).posts == 0


def test_a_gap_in_the_mentions_is_planned_as_a_search_between_its_marks(
    world: World, source: BlueskySource
) -> None:
    lost = world.mention(NOW - timedelta(hours=3), "@acme lost")
    world.mention(NOW - timedelta(hours=30), "@acme long before")
    since = Mark.of(NOW - timedelta(hours=5), "at://x").text()
    until = Mark.of(NOW - timedelta(hours=2), "at://y").text()
    plan = source.plan_gap(world.brand, Stream.MENTIONS, since, until, NOW)
    (segment,) = plan.segments
    assert segment.route == "search_posts"
    # Back by the overlap, as live walks read, for backdated posts below the mark.
    assert segment.since == NOW - timedelta(hours=5) - source.overlap
    assert segment.until > NOW - timedelta(hours=2)
    assert plan.unreachable is not None and "do not mention" in plan.unreachable
    assert posts(read_segment(source, world.brand, segment)) == [lost]
    replies = source.plan_gap(world.brand, Stream.REPLIES, since, until, NOW)
    assert [s.route for s in replies.segments] == ["author_feed"] and replies.unreachable is None
    with pytest.raises(Exception, match="not a Bluesky mark"):
        source.plan_gap(world.brand, Stream.MENTIONS, "1234", until, NOW)


def test_a_search_token_narrows_only_when_the_next_page_would_be_too_deep() -> None:
    segment = backfill.plan([Stream.MENTIONS], WEEK_AGO, NOW, NOW, 100)[0]
    start = backfill.SearchToken.parse(None, segment)
    assert start == backfill.SearchToken(NOW)
    nxt = start.following("100", 100, NOW - timedelta(hours=1), segment)
    assert nxt == backfill.SearchToken(NOW, 100, "100")
    assert backfill.SearchToken.parse(nxt.text(), segment) == nxt
    deep = backfill.SearchToken(NOW, 9_900, "9900")
    oldest = NOW - timedelta(days=2)
    assert deep.following("10000", 100, oldest, segment) == backfill.SearchToken(
        oldest + timedelta(milliseconds=1)
    )
    assert deep.following(None, 100, oldest, segment) is None  # the query's end
    assert deep.following("10000", 100, WEEK_AGO, segment) is None  # the window's start
    with pytest.raises(Exception, match="unreadable"):
        backfill.SearchToken.parse("garbage", segment)


def test_a_search_answer_keeps_good_hits_and_quarantines_a_bad_one() -> None:
    brand = Account("bluesky", "acme.bsky.social", "did:plc:acme")
    fan = {"did": "did:plc:fan", "handle": "fan.bsky.social"}
    good = {
        "uri": "at://did:plc:fan/app.bsky.feed.post/3kgood",
        "author": fan,
        "record": {"text": "@acme hi", "createdAt": "2026-11-01T10:00:00.000Z"},
        "indexedAt": "2026-11-01T10:00:01.000Z",
    }
    backdated = {
        **good,
        "uri": "at://did:plc:fan/app.bsky.feed.post/3kold",
        "record": {"text": "@acme old", "createdAt": "2026-10-01T10:00:00.000Z"},
    }
    bad = {**good, "uri": "at://did:plc:fan/app.bsky.feed.post/3kbad", "author": {"x": 1}}
    page, oldest = parse_search(
        {"posts": [good, backdated, bad], "cursor": "3"}, account=brand, headers={}
    )
    assert [i.post_id for i in page.interactions] == [good["uri"], backdated["uri"]]
    assert [q.item_id for q in page.quarantined] == [bad["uri"]] and page.returned == 3
    # Search sorts a backdated post by the time it says it was written.
    assert oldest == datetime(2026, 10, 1, 10, tzinfo=UTC)
    with pytest.raises(MalformedAnswer):
        parse_search({"hits": []}, account=brand, headers={})
