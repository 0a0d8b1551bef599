"""connectors.bluesky backfills and gap plans against the loopback stand-in: mentions of a past
window by ``searchPosts`` (its 10,000-hit depth passed by narrowing the window) and the replies
and quotes naming no one through the brand's posts, the brand's replies by its author feed
back to the window, counts and estimates, and the plans of gaps."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from connectors.bluesky import backfill
from connectors.bluesky.parse import Mark, parse_post_views, parse_search, thread_replies
from connectors.bluesky.source import BlueskySource
from sandbox.bluesky.api import BlueskySandbox
from syncd.backfill.estimate import estimate
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


def test_the_plan_reads_mentions_by_search_and_the_brands_posts_and_replies_by_the_feed(
    source: BlueskySource,
) -> None:
    backfiller: Backfiller = source
    assert isinstance(source, GapCloser)
    account = Account("bluesky", "acme.bsky.social", "did:plc:acme")
    mentions, post_replies, post_quotes, replies = backfiller.plan_backfill(
        account, [Stream.MENTIONS, Stream.REPLIES], WEEK_AGO, NOW + timedelta(days=1), NOW
    )
    assert [s.route for s in (mentions, post_replies, post_quotes, replies)] == [
        "search_posts", "post_replies", "post_quotes", "author_feed",
    ]  # fmt: skip
    # What the live poll reads of the window: its mentions by search, the replies and
    # quotes naming no one through the brand's posts; all in the same window, never past now.
    for segment in (mentions, post_replies, post_quotes, replies):
        assert (segment.since, segment.until) == (WEEK_AGO, NOW)
    assert {s.stream for s in (mentions, post_replies, post_quotes)} == {Stream.MENTIONS}
    # The brand's posts are scanned from gap_lookback (30 days) before the window.
    assert backfill.scan_from(post_replies) == backfill.scan_from(post_quotes)
    assert backfill.scan_from(post_replies) == WEEK_AGO - timedelta(days=30)
    # The plan says how far search reaches and what the scans cannot.
    assert mentions.note is not None and "10,000" in mentions.note
    assert post_replies.note is not None and "before the window" in post_replies.note
    assert "made before then, or deleted since" in post_replies.note
    assert post_quotes.note is not None and "quotes" in post_quotes.note
    assert replies.note is not None and "author feed" in replies.note
    assert {s.route for s in (mentions, post_replies, post_quotes, replies)} <= (
        source.shared_routes
    )  # the per-IP limit polls use
    assert backfiller.plan_backfill(account, [Stream.MENTIONS], NOW, NOW, NOW) == []
    assert Segment.from_json(mentions.as_json()) == mentions
    assert Segment.from_json(post_quotes.as_json()) == post_quotes
    (only,) = backfiller.plan_backfill(account, [Stream.REPLIES], WEEK_AGO, NOW, NOW)
    assert only == replies


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
    segment, *_ = source.plan_backfill(
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
    segment, *_ = source.plan_backfill(
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
    segment, *_ = source.plan_backfill(world.brand, [Stream.MENTIONS], WEEK_AGO, NOW, NOW)
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
    mentions, *_, replies = source.plan_backfill(
        world.brand, [Stream.MENTIONS, Stream.REPLIES], WEEK_AGO, NOW, NOW
    )
    counted = source.count_posts(world.brand, mentions)
    assert counted.posts == 7 and not counted.exact  # more pages: the total may be rounded
    assert source.count_posts(world.brand, replies).posts == 0


def test_a_gap_in_the_mentions_is_planned_as_a_search_and_scans_of_the_brands_posts(
    world: World, source: BlueskySource
) -> None:
    lost = world.mention(NOW - timedelta(hours=3), "@acme lost")
    world.mention(NOW - timedelta(hours=30), "@acme long before")
    since = Mark.of(NOW - timedelta(hours=5), "at://x").text()
    until = Mark.of(NOW - timedelta(hours=2), "at://y").text()
    plan = source.plan_gap(world.brand, Stream.MENTIONS, since, until, NOW)
    search, replies, quotes = plan.segments
    assert (search.route, replies.route, quotes.route) == (
        "search_posts", "post_replies", "post_quotes",
    )  # fmt: skip
    # Back by the overlap, as live walks read, for backdated posts below the mark.
    assert search.since == NOW - timedelta(hours=5) - source.overlap
    assert search.until > NOW - timedelta(hours=2)
    # Replies and quotes in the same window, found through the brand's posts made from the
    # lookback (30 days by default) before it; what lies beyond is said, and the gap closes.
    assert (replies.since, replies.until) == (quotes.since, quotes.until) == (
        search.since, search.until,
    )  # fmt: skip
    assert backfill.scan_from(replies) == search.since - timedelta(days=30)
    assert replies.note is not None and "made before" in replies.note
    assert "deleted since" in replies.note and "4 levels" in replies.note
    assert quotes.note is not None and "quotes" in quotes.note
    assert plan.unreachable is None
    assert {replies.route, quotes.route} <= source.shared_routes  # the per-IP limit polls use
    assert Segment.from_json(replies.as_json()) == replies
    assert posts(read_segment(source, world.brand, search)) == [lost]
    replies_gap = source.plan_gap(world.brand, Stream.REPLIES, since, until, NOW)
    assert [s.route for s in replies_gap.segments] == ["author_feed"]
    assert replies_gap.unreachable is None
    with pytest.raises(Exception, match="not a Bluesky mark"):
        source.plan_gap(world.brand, Stream.MENTIONS, "1234", until, NOW)


def gap_plan(source: BlueskySource, world: World, start: datetime, end: datetime) -> list[Segment]:
    since, until = Mark.of(start, "at://x").text(), Mark.of(end, "at://y").text()
    return list(source.plan_gap(world.brand, Stream.MENTIONS, since, until, NOW).segments)


def notified(world: World, since: datetime, until: datetime) -> set[str]:
    """What the brand's notifications (mention, reply, quote) held in the window."""
    return {
        n.uri
        for n in world.sandbox.notifications
        if n.recipient == world.brand.user_id and since <= n.sort_at < until
    }


def test_a_gap_recovers_the_replies_and_quotes_its_notifications_held(
    world: World, source: BlueskySource
) -> None:
    sb, brand, fan = world.sandbox, world.brand.user_id, world.fan
    other = sb.add_user("other.bsky.social").did
    start, end = NOW - timedelta(hours=6), NOW - timedelta(hours=2)
    inside = NOW - timedelta(hours=4)

    def post(did: str, text: str, at: datetime, **kw: str) -> str:
        return sb.add_post(did, text, created_at=at, **kw).uri  # type: ignore[arg-type]

    # Brand posts: one made days before the gap, one in it, one after it.
    old_news = post(brand, "old news", NOW - timedelta(days=3))
    news = post(brand, "news", inside - timedelta(minutes=30))
    post(brand, "later news", NOW - timedelta(minutes=30))
    for n in range(8):  # more brand posts than a feed page, none answered
        post(brand, f"filler {n}", NOW - timedelta(days=1, minutes=n))
    # Inside the window: a plain reply, a thread going 5 levels down (the fifth level does
    # not notify the brand), the brand's own answer, a reply to that answer, quotes.
    plain = post(fan, "agreed", inside, in_reply_to=old_news)
    deep = [post(fan, "1", inside, in_reply_to=news)]
    for n, who in enumerate([other, fan, other, fan], start=2):
        deep.append(post(who, str(n), inside + timedelta(minutes=n), in_reply_to=deep[-1]))
    answer = post(brand, "thanks", inside, in_reply_to=plain)
    to_answer = post(other, "you're welcome", inside, in_reply_to=answer)
    quoted = post(other, "look at this", inside, quote=old_news)
    quoted_news = post(fan, "and this", inside, quote=news)
    mention = world.mention(inside, "@acme hi")
    # Outside the window: a reply and a quote before it.
    post(fan, "early", start - timedelta(hours=3), in_reply_to=old_news)
    post(fan, "early quote", start - timedelta(hours=3), quote=old_news)
    plan = gap_plan(source, world, start, end)
    window = (plan[0].since, plan[0].until)
    found: set[str] = set()
    for segment in plan:
        found |= set(posts(read_segment(source, world.brand, segment)))
    expected = {plain, *deep[:4], to_answer, quoted, quoted_news, mention}
    assert found == expected
    assert found == notified(world, *window)  # exactly what the notifications held
    assert deep[4] not in found and answer not in found
    # The scans asked only about posts answered or quoted: a thread for each of the three
    # answered posts, quotes for the two quoted ones.
    assert world.calls("app.bsky.feed.getPostThread") == 3
    assert world.calls("app.bsky.feed.getQuotes") == 2
    # A plan's estimate: what the first feed page's posts count, never exact.
    counted = source.count_posts(world.brand, plan[2])
    assert counted.posts >= 1 and not counted.exact


def test_a_backfill_of_a_window_reads_the_replies_and_quotes_that_name_no_one(
    world: World, source: BlueskySource
) -> None:
    sb, brand, fan = world.sandbox, world.brand.user_id, world.fan
    other = sb.add_user("other.bsky.social").did
    since, until = WEEK_AGO, WEEK_AGO + timedelta(days=1)
    inside = since + timedelta(hours=6)

    def post(did: str, text: str, at: datetime, **kw: str) -> str:
        return sb.add_post(did, text, created_at=at, **kw).uri  # type: ignore[arg-type]

    # The brand's posts: one ten days before the window (within gap_lookback), one in it,
    # and more after it than a feed page holds.
    old_news = post(brand, "old news", since - timedelta(days=10))
    news = post(brand, "news", inside - timedelta(hours=1))
    for n in range(5):
        post(brand, f"filler {n}", NOW - timedelta(hours=n + 1))
    # In the window: a plain reply and a quote naming no one, a reply to a reply, a mention.
    plain = post(fan, "agreed", inside, in_reply_to=old_news)
    quote = post(fan, "look at this", inside, quote=old_news)
    below = post(other, "me too", inside + timedelta(minutes=5), in_reply_to=plain)
    quoted_news = post(other, "and this", inside, quote=news)
    mention = world.mention(inside, "@acme hi")
    # Outside it: a reply before, a quote after.
    post(fan, "early", since - timedelta(hours=2), in_reply_to=old_news)
    post(fan, "late quote", until + timedelta(hours=2), quote=news)
    plan = source.plan_backfill(world.brand, [Stream.MENTIONS], since, until, NOW)
    assert [s.route for s in plan] == ["search_posts", "post_replies", "post_quotes"]
    read = {s.route: posts(read_segment(source, world.brand, s)) for s in plan}
    assert read["search_posts"] == [mention]  # search alone finds none of the others
    found = [p for route in read.values() for p in route]
    assert sorted(found) == sorted([plain, quote, below, quoted_news, mention])  # once each
    assert set(found) == notified(world, since, until)  # what the live poll would have read


def test_a_brand_post_scan_is_estimated_by_its_requests_and_says_what_it_extrapolated(
    world: World, source: BlueskySource
) -> None:
    sb, brand, fan = world.sandbox, world.brand.user_id, world.fan
    for day in range(40):  # a post a day, each answered twice and quoted once within hours
        made = NOW - timedelta(days=day, hours=12)
        uri = sb.add_post(brand, f"news {day}", created_at=made).uri
        sb.add_post(fan, "re", in_reply_to=uri, created_at=made + timedelta(hours=1))
        sb.add_post(fan, "re again", in_reply_to=uri, created_at=made + timedelta(hours=2))
        sb.add_post(fan, "look", quote=uri, created_at=made + timedelta(hours=3))
    since, until = NOW - timedelta(days=5), NOW - timedelta(days=4)
    plan = source.plan_backfill(world.brand, [Stream.MENTIONS], since, until, NOW)
    est = estimate(source, world.brand, plan, price_per_post=0.0)
    for seg, asked_of in zip(est.segments[1:], ("getPostThread", "getQuotes"), strict=True):
        nsids = ("app.bsky.feed.getAuthorFeed", f"app.bsky.feed.{asked_of}")
        before = sum(world.calls(n) for n in nsids)
        found = posts(read_segment(source, world.brand, seg.segment))
        spent = sum(world.calls(n) for n in nsids) - before
        # 12 feed pages back to the lookback, then one request for each of the 31 posts
        # made between it and the window's end: far more than a page per post found (the
        # two replies to, and the quote of, the post made in the window).
        assert spent == 43 and len(found) == (2 if asked_of == "getPostThread" else 1)
        assert spent / 2 <= seg.requests <= spent * 2
        assert seg.count.posts <= 2 * max(len(found), 1) and not seg.count.exact
        basis = seg.count.basis
        assert basis is not None and basis in est.notes
        assert "counted" in basis and "extrapolated" in basis
        assert ("replyCount" if asked_of == "getPostThread" else "quoteCount") in basis
    # A feed read in one page: the posts scanned and asked about are counted, not guessed.
    whole = world.source(page_size=100)
    nsids = ("app.bsky.feed.getAuthorFeed", "app.bsky.feed.getPostThread")
    try:
        segment = whole.plan_backfill(world.brand, [Stream.MENTIONS], since, until, NOW)[1]
        counted = whole.count_posts(world.brand, segment)
        before = sum(world.calls(n) for n in nsids)
        read_segment(whole, world.brand, segment)
        spent = sum(world.calls(n) for n in nsids) - before
    finally:
        whole.close()
    assert counted.reads == spent == 1 + 31
    assert counted.basis is not None and "all on the newest page" in counted.basis


def test_replies_to_posts_older_than_the_lookback_are_not_reached(
    world: World, source: BlueskySource, tmp_path: Path
) -> None:
    sb, brand = world.sandbox, world.brand.user_id
    start, end = NOW - timedelta(hours=6), NOW - timedelta(hours=2)
    ancient = sb.add_post(brand, "ancient", created_at=NOW - timedelta(days=40)).uri
    for n in range(12):  # older still: the feed walk stops before them
        sb.add_post(brand, f"older {n}", created_at=NOW - timedelta(days=41 + n))
    reply = sb.add_post(
        world.fan, "late answer", in_reply_to=ancient, created_at=NOW - timedelta(hours=4)
    ).uri
    quote = sb.add_post(
        world.fan, "late quote", quote=ancient, created_at=NOW - timedelta(hours=4)
    ).uri
    found = {
        p
        for s in gap_plan(source, world, start, end)
        for p in posts(read_segment(source, world.brand, s))
    }
    assert found == set()  # 40 days before: beyond the default 30
    # The walk stopped at the first feed page reaching below the lookback: two segments,
    # each reading the one page of 3 that holds "ancient" and two older posts.
    assert world.calls("app.bsky.feed.getAuthorFeed") == 2
    assert world.calls("app.bsky.feed.getPostThread") == 0
    longer = BlueskySource(
        identifier="acme.bsky.social",
        app_password=PASSWORD,
        session_file=world.session_file,
        service=sb.url,
        page_size=3,
        gap_lookback=timedelta(days=45).total_seconds(),
    )
    try:
        plan = gap_plan(longer, world, start, end)
        assert (
            plan[1].note is not None
            and backfill.iso(start - longer.overlap - timedelta(days=45)) in plan[1].note
        )
        found = {p for s in plan for p in posts(read_segment(longer, world.brand, s))}
    finally:
        longer.close()
    assert found == {reply, quote}


def test_a_brand_post_scan_goes_on_from_its_stored_position_after_a_restart(
    world: World, source: BlueskySource
) -> None:
    sb, brand = world.sandbox, world.brand.user_id
    start, end = NOW - timedelta(hours=6), NOW - timedelta(hours=2)
    answered = [
        sb.add_post(brand, f"news {n}", created_at=NOW - timedelta(days=1, hours=n)).uri
        for n in range(7)
    ]
    replies = {
        sb.add_post(world.fan, f"re {n}", in_reply_to=uri, created_at=NOW - timedelta(hours=4)).uri
        for n, uri in enumerate(answered)
    }
    segment = gap_plan(source, world, start, end)[1]
    pages = [source.fetch_segment(world.brand, segment, None)]
    for _ in range(4):  # part way: a feed page and some of its posts' threads
        pages.append(
            source.fetch_segment(world.brand, segment, pages[-1].next_cursor.pagination_token)
        )
    token = pages[-1].next_cursor.pagination_token
    assert token is not None
    # The post the position names is deleted meanwhile, and another process (its memory
    # empty) takes the job up: the page is read again, and the walk goes on past that post.
    stored = backfill.PostScanToken.parse(token)
    assert stored.rkey is not None
    gone = f"at://{brand}/app.bsky.feed.post/{stored.rkey}"
    sb.delete_post(gone)
    other = world.source()
    try:
        rest = [other.fetch_segment(world.brand, segment, token)]
        while (nxt := rest[-1].next_cursor.pagination_token) is not None:
            assert len(rest) < 30
            rest.append(other.fetch_segment(world.brand, segment, nxt))
    finally:
        other.close()
    found = set(posts(pages)) | set(posts(rest))
    lost_with_it = {p.uri for p in sb.posts.values() if p.parent == gone}
    assert found == replies - lost_with_it
    # One request a step, the restart's included: the page is read again as a step of its own.
    asked = world.calls("app.bsky.feed.getAuthorFeed") + world.calls("app.bsky.feed.getPostThread")
    assert asked == len(pages) + len(rest)
    with pytest.raises(MalformedAnswer):
        backfill.PostScanToken.parse("garbage")


def test_a_thread_answer_yields_the_replies_that_notify_the_anchors_author() -> None:
    brand = Account("bluesky", "acme.bsky.social", "did:plc:acme")

    def view(name: str, did: str = "did:plc:fan", **viewer: bool) -> dict[str, Any]:
        return {
            "uri": f"at://{did}/app.bsky.feed.post/{name}",
            "author": {"did": did, "handle": "fan.bsky.social", "viewer": viewer},
            "record": {"text": name, "createdAt": "2026-11-01T10:00:00.000Z"},
            "indexedAt": "2026-11-01T10:00:01.000Z",
        }

    def node(post: dict[str, Any], *replies: dict[str, Any]) -> dict[str, Any]:
        return {
            "$type": "app.bsky.feed.defs#threadViewPost",
            "post": post,
            "replies": list(replies),
        }

    blocked = {
        "$type": "app.bsky.feed.defs#blockedPost",
        "uri": "at://did:plc:x/app.bsky.feed.post/b",
        "blocked": True,
        "author": {"did": "did:plc:x"},
    }
    hidden = view("hidden")
    body = {
        "thread": node(
            view("anchor", "did:plc:acme"),
            node(
                view("a1"), node(view("a2"), node(view("a3"), node(view("a4"), node(view("a5")))))
            ),
            node(hidden, node(view("below-hidden"))),
            node(view("muted", "did:plc:muted", muted=True)),
            node(view("mine", "did:plc:acme"), node(view("re-mine"))),
            blocked,
        ),
        "threadgate": {"record": {"hiddenReplies": [hidden["uri"]]}},
    }
    views = thread_replies(body)
    names = [v["uri"].rsplit("/", 1)[1] for v in views]
    # Four levels down (not a5); the hidden reply itself but not what lies below it (the
    # appview stops notifying above a hidden reply); no blockedPost.
    assert sorted(names) == sorted(["a1", "a2", "a3", "a4", "hidden", "muted", "mine", "re-mine"])
    page, _ = parse_post_views(
        views,
        account=brand,
        since=datetime(2026, 11, 1, tzinfo=UTC),
        until=datetime(2026, 11, 2, tzinfo=UTC),
        headers={},
    )
    kept = sorted(i.post_id.rsplit("/", 1)[1] for i in page.interactions)
    # The brand's own post is not a customer's; a muted author never reaches the brand.
    assert kept == sorted(["a1", "a2", "a3", "a4", "hidden", "re-mine"])
    assert {i.stream for i in page.interactions} == {Stream.MENTIONS}
    late, _ = parse_post_views(
        views, account=brand, since=datetime(2026, 11, 2, tzinfo=UTC), until=NOW, headers={}
    )
    assert late.interactions == ()  # outside the window
    assert thread_replies({"thread": blocked}) == []
    with pytest.raises(MalformedAnswer):
        thread_replies({"posts": []})


def test_a_search_token_narrows_only_when_the_next_page_would_be_too_deep() -> None:
    segment = backfill.plan([Stream.MENTIONS], WEEK_AGO, NOW, NOW, 100)[0]
    assert segment.route == backfill.SEARCH
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
