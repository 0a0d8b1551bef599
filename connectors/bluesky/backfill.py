"""Bluesky backfills and gap recovery: which endpoint reaches which part of a past window.

- ``mentions``: what the live poll reads of the window (the notifications of reason
  mention, reply and quote), by three segments, one per reason:

  - ``mention``: ``app.bsky.feed.searchPosts`` with ``mentions=<the brand's DID>``, ``since``
    (inclusive) and ``until`` (exclusive) on the posts' sort time, ``sort=latest``. Search
    finds a post only by its mention facet, so the replies and quotes that name no one are
    the next two segments'. Bluesky's search service (Palomar, bluesky-social/indigo
    ``search/``) reads the cursor as an offset and refuses one over 10,000, or a page whose
    offset and size pass 10,000, so one query reaches its newest 10,000 hits: a window
    holding more is read as successive queries, each ending (``until``) at the oldest post
    the previous one read.
  - ``reply``: ``post_replies`` walks the brand's author feed (as ``replies`` does) for its
    posts sorted from ``lookback`` before the window's start up to its end (the segment's
    ``query`` holds that first moment) and reads each one's thread (``getPostThread``,
    ``depth`` 4, ``parentHeight`` 0): the appview notifies a reply to the authors of its
    ancestors up to 4 levels above it (:data:`~connectors.bluesky.parse.REPLY_NOTIFY_DEPTH`),
    so a reply the brand heard of lies at most 4 levels below one of its posts; the replies
    sorted in the window are kept. A post whose ``replyCount`` is 0 is not asked about.
  - ``quote``: ``post_quotes`` walks the same posts and reads each one's quotes
    (``getQuotes``, newest first by sort time) down to the window's start. A post whose
    ``quoteCount`` is 0 is not asked about.

- ``replies``: ``app.bsky.feed.getAuthorFeed`` (``posts_with_replies``), the live poll's
  endpoint, walked from the newest post back to the window's start: it reaches back as far as
  the account's posts go, and pages newer than the window are read and passed over.

A backfill's window and a gap's (a walk of the notifications that ran out before its mark,
read between the marks) are planned alike, with the same ``gap_lookback``. What the
brand-post segments cannot reach, said in their notes: replies to and quotes of the brand's
posts made before the lookback, and of its posts deleted since (a deleted post is not on
its feed, and the appview no longer lists its thread or quotes). Such posts may not exist at
all, and every part of the gap's window is read, so a gap closes with the note (as an X
gap read by search closes, with what search itself does not hold unsaid) rather than
staying unclosable; a larger ``gap_lookback`` reaches further back.

A brand-post segment's position (the job's stored token) is the author feed page being
walked and the brand post on it to read next (its sort time, its record key and the
``getQuotes`` cursor); the brand posts of the pages last read are kept in memory, so each step
makes one request. After a restart (nothing in memory) the post named is read, then its page
again, as a step of its own, and the walk goes on with the page's posts sorted before it.

No counts endpoint: a search's ``hitsTotal`` (which the lexicon says may be rounded) or one
page extrapolated. A brand-post segment is estimated from the newest page of the author feed
(:func:`brand_post_count`): its posts' ``replyCount`` (or ``quoteCount``) and how often they
were made, extrapolated over the window, and the requests that scan takes (a feed page per
``page_size`` posts back to the lookback, then a thread or a quotes page per post asked
about), which are many more than a page per post found.

Requests are limited per IP (3,000 per 5 minutes) for polls and backfills alike, so a
backfill leaves live polls a reserve (``shared_routes``) and asks at most one request a
second.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from typing import Any

from connectors.bluesky.parse import NETWORK, BrandPost, Mark, parse_time, sort_at
from syncd.errors import MalformedAnswer
from syncd.model import GapPlan, PostCount, Segment, Stream

SEARCH = "search_posts"
AUTHOR_FEED = "author_feed"
POST_REPLIES = "post_replies"  # the brand's posts by its author feed, each one's thread
POST_QUOTES = "post_quotes"  # the brand's posts by its author feed, each one's quotes
BRAND_POST_ROUTES = (POST_REPLIES, POST_QUOTES)
ROUTES = {Stream.MENTIONS: SEARCH, Stream.REPLIES: AUTHOR_FEED}
# Every endpoint counts against the one per-IP limit live polls spend too.
SHARED_ROUTES = frozenset({SEARCH, AUTHOR_FEED, *BRAND_POST_ROUTES})
# How far before a gap's (or a backfill's) start the brand's posts are scanned for replies
# and quotes landing in it (``gap_lookback``): they come mostly within days of the post.
GAP_LOOKBACK = timedelta(days=30)
RATE_WINDOW = 300.0
REQUESTS_PER_WINDOW = 3000
MIN_INTERVAL = 1.0  # a backfill takes at most a tenth of the per-IP limit
SEARCH_DEPTH = 10_000  # the deepest offset Bluesky's search accepts as a cursor
# q is required; the mentions filter does the selecting. "*" is what Palomar itself searches
# for when a query holds only filters.
SEARCH_QUERY = "*"
# until is exclusive: a next query ends just after the oldest sort time read, so posts sharing
# it are read again (the unique key absorbs them) rather than skipped.
_TICK = timedelta(milliseconds=1)

NOTE = {
    Stream.MENTIONS: (
        "posts mentioning the account, by search: as far back as Bluesky's search index "
        "holds (its newest 10,000 hits a query; syncd narrows the window and asks again)"
    ),
    Stream.REPLIES: "the account's own replies, through its author feed, as far back as they go",
}


def _brand_post_note(route: str, scan_from: datetime, where: str) -> str:
    what = (
        "replies (up to 4 levels below one of the account's posts, as Bluesky notifies "
        "them), by each post's thread"
        if route == POST_REPLIES
        else "quotes of the account's posts, by each post's quotes"
    )
    return (
        f"{what}, for its posts made since {iso(scan_from)} (gap_lookback before the {where}), "
        "found through its author feed; not reached: those of its posts made before then, or "
        "deleted since"
    )


def iso(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def _segment(stream: Stream, since: datetime, until: datetime, page_size: int) -> Segment:
    return Segment(
        stream=stream,
        route=ROUTES[stream],
        since=since,
        until=until,
        query=SEARCH_QUERY if stream is Stream.MENTIONS else None,
        page_size=page_size,
        requests_per_window=REQUESTS_PER_WINDOW,
        note=NOTE[stream],
        min_interval=MIN_INTERVAL,
        rate_window=RATE_WINDOW,
    )


def plan(
    streams: Sequence[Stream],
    since: datetime,
    until: datetime,
    now: datetime,
    page_size: int,
    lookback: timedelta = GAP_LOOKBACK,
) -> list[Segment]:
    """The segments reading ``[since, min(until, now))``: ``replies`` by the author feed,
    ``mentions`` by search and through the brand's posts made from ``lookback`` before the
    window (see the module's docstring)."""
    end = min(until, now)
    if end <= since:
        return []
    out: list[Segment] = []
    for stream in streams:
        segment = _segment(stream, since, end, page_size)
        if stream is Stream.MENTIONS:
            out.extend(_mentions(segment, lookback, "window"))
        else:
            out.append(segment)
    return out


def _mentions(search: Segment, lookback: timedelta, where: str) -> tuple[Segment, ...]:
    """A mentions window's segments: ``search`` and the brand-post scans beside it."""
    # Search finds a post only by its mention: the replies and quotes that name no one are
    # read through the brand's posts they answer or quote.
    scan_from = search.since - lookback
    brand_posts = tuple(
        replace(
            search,
            route=route,
            query=iso(scan_from),
            note=_brand_post_note(route, scan_from, where),
        )
        for route in BRAND_POST_ROUTES
    )
    return (search, *brand_posts)


def plan_gap(
    stream: Stream,
    since_id: str,
    until_id: str,
    overlap: timedelta,
    page_size: int,
    lookback: timedelta = GAP_LOOKBACK,
) -> GapPlan:
    """The window between two marks of a walk (``since_id``: the stored mark the walk never
    met; ``until_id``: the oldest item it read). The start reaches back ``overlap`` further,
    as live walks do, for backdated posts sorted below the mark. A ``mentions`` gap is read
    by search and through the brand's posts made from ``lookback`` before it (see the
    module's docstring)."""
    start, end = Mark.parse(since_id), Mark.parse(until_id)
    if start is None or end is None:
        raise MalformedAnswer("a Bluesky gap without its marks", system=NETWORK)
    segment = _segment(stream, start.at - overlap, end.at + _TICK, page_size)
    if stream is not Stream.MENTIONS:
        return GapPlan((segment,))
    return GapPlan(_mentions(segment, lookback, "gap"))


def scan_from(segment: Segment) -> datetime:
    """The first moment of the brand posts a brand-post segment reads about."""
    at = parse_time(segment.query)
    if at is None:
        raise MalformedAnswer("a Bluesky brand-post segment without its start", system=NETWORK)
    return at


def wanted(post: BrandPost, route: str) -> bool:
    """Whether a brand post is asked about on ``route``: not when its view counts no reply
    (or quote); a post whose view leaves the count out is asked."""
    count = post.replies if route == POST_REPLIES else post.quotes
    return count is None or count > 0


@dataclass(frozen=True)
class PostScanToken:
    """Where a brand-post segment stands, on the author feed page read with ``feed`` (None:
    the first page). With ``rkey``: that brand post (sorted at ``at``) is read next, its
    quotes from ``sub`` (a ``getQuotes`` cursor). Without: the page is read next, and the
    walk goes on with its first post sorted before ``at`` (None: its first post)."""

    feed: str | None = None
    at: datetime | None = None
    rkey: str | None = None
    sub: str | None = None

    def text(self) -> str:
        # Whole microseconds: a record's createdAt may carry them, and the walk resumes
        # below this very time.
        when = self.at.isoformat() if self.at is not None else None
        text = json.dumps([self.feed, when, self.rkey, self.sub], separators=(",", ":"))
        if len(text) > _TOKEN_MAX:
            raise MalformedAnswer("a Bluesky position too long to keep", system=NETWORK)
        return text

    @classmethod
    def parse(cls, text: str | None) -> PostScanToken:
        if text is None:
            return cls()
        try:
            value = json.loads(text)
        except ValueError:
            value = None
        unreadable = MalformedAnswer(
            "a stored Bluesky post scan position is unreadable", system=NETWORK
        )
        if (
            not isinstance(value, list)
            or len(value) != 4
            or not all(v is None or isinstance(v, str) for v in value)
        ):
            raise unreadable
        feed, when, rkey, sub = value
        at = parse_time(when) if when is not None else None
        if (when is not None or rkey is not None) and at is None:
            raise unreadable
        return cls(feed, at, rkey, sub)


_TOKEN_MAX = 500  # the job's stored token


@dataclass(frozen=True)
class SearchToken:
    """Where a search segment stands: the ``until`` of the query being read, how many hits
    it has read, and the service's cursor (none: the query's first page)."""

    until: datetime
    read: int = 0
    cursor: str | None = None

    def text(self) -> str:
        return f"{iso(self.until)}|{self.read}|{self.cursor or ''}"

    @classmethod
    def parse(cls, text: str | None, segment: Segment) -> SearchToken:
        if text is None:
            return cls(segment.until)
        until, _, rest = text.partition("|")
        read, _, cursor = rest.partition("|")
        at = parse_time(until)
        if at is None or not read.isdigit():
            raise MalformedAnswer("a stored Bluesky search position is unreadable", system=NETWORK)
        return cls(at, int(read), cursor or None)

    def following(
        self, cursor: str | None, returned: int, oldest: datetime | None, segment: Segment
    ) -> SearchToken | None:
        """The position after a page: the same query's next page, a narrower query when the
        next would be deeper than search goes, or None at the end of the segment."""
        if cursor is None or returned == 0:
            return None
        read = self.read + returned
        if read + segment.page_size <= SEARCH_DEPTH:
            return SearchToken(self.until, read, cursor)
        if oldest is None or oldest <= segment.since:
            return None
        # Narrowing ends the query at the oldest post read; a window of more than 10,000
        # posts in one millisecond would repeat the token, which the runner stops on.
        return SearchToken(min(oldest + _TICK, self.until))


def estimate(posts: int, more: bool, oldest: datetime | None, segment: Segment) -> PostCount:
    """One page of the window, extrapolated over its span (exact when it was the last)."""
    if not more:
        return PostCount(posts, exact=True)
    covered = max((segment.until - (oldest or segment.until)).total_seconds(), 1.0)
    span = (segment.until - segment.since).total_seconds()
    return PostCount(math.ceil(posts * span / covered), exact=False)


def brand_post_count(
    posts: Sequence[BrandPost],
    more: bool,
    oldest: datetime | None,
    segment: Segment,
    now: datetime,
) -> PostCount:
    """A brand-post segment's estimate from the newest page of the account's author feed:
    ``posts`` (its own on the page), ``more`` (the feed goes on) and ``oldest`` (the page's
    oldest sort time, reposts included). Never exact: which replies (or quotes) land in the
    window only reading them tells; and ``replyCount`` counts direct replies, not the levels
    below that the threads are read to."""
    replies = segment.route == POST_REPLIES
    kind, field = ("replies", "replyCount") if replies else ("quotes", "quoteCount")
    start = scan_from(segment)
    window = _seconds(segment.until - segment.since)
    scan = _seconds(segment.until - start)

    def drew(post: BrandPost) -> int:
        return (post.replies if replies else post.quotes) or 0

    def asks(post: BrandPost) -> int:  # a thread, or the quotes' pages
        if not wanted(post, segment.route):
            return 0
        return 1 if replies else max(1, math.ceil(drew(post) / segment.page_size))

    counted = f"{segment.route}: counted: the {field} of "
    if not more or (oldest is not None and oldest < start):
        # The walk ends on this page: the posts scanned and asked about are known.
        scanned = [p for p in posts if start <= p.at < segment.until]
        found = math.ceil(sum(drew(p) for p in scanned) * window / scan)
        return PostCount(
            found,
            exact=False,
            reads=1 + sum(asks(p) for p in scanned),
            basis=(
                f"{counted}the account's {len(scanned)} posts made since "
                f"{start:%Y-%m-%d %H:%M} UTC (all on the newest page of its feed); "
                f"extrapolated: the window's share of their {kind}"
            ),
        )
    if not posts or oldest is None:
        return PostCount(
            0,
            exact=False,
            basis=(
                f"{segment.route}: the newest page of the account's feed holds none of its "
                "own posts: nothing to count or extrapolate from"
            ),
        )
    covered = _seconds(now - oldest)  # the newest page holds every post since its oldest
    rate = len(posts) / covered  # of its own posts, a second
    pages = math.ceil(_seconds(now - start) / covered)  # the walk: newest page to lookback
    scanning = rate * scan
    asked = math.ceil(scanning * sum(asks(p) for p in posts) / len(posts))
    each = sum(drew(p) for p in posts) / len(posts)
    return PostCount(
        math.ceil(rate * window * each),
        exact=False,
        reads=pages + asked,
        basis=(
            f"{counted}its {len(posts)} posts on the newest page of its feed (made since "
            f"{oldest:%Y-%m-%d %H:%M} UTC, {rate * 86_400:.1f} a day, {each:.1f} {kind} each); "
            f"extrapolated: that rate over the window for its {kind}, and over the "
            f"{_days(scan)} scanned for the requests (~{math.ceil(scanning):,} posts, "
            f"{pages:,} feed pages, {asked:,} {'threads' if replies else 'quotes pages'})"
        ),
    )


def _seconds(span: timedelta) -> float:
    return max(span.total_seconds(), 1.0)


def _days(seconds: float) -> str:
    days = seconds / 86_400
    return f"{days:.0f} days" if days >= 2 else f"{seconds / 3600:.0f} hours"


def feed_oldest(body: Any) -> datetime | None:
    """The oldest sort time on an author feed page. The feed is ordered by sort time (the
    older of index and creation time, so a backdated post sorts by when it says it was
    written), which a post view's ``indexedAt`` alone does not tell; a repost sorts by when
    it was reposted."""
    items = body.get("feed") if isinstance(body, dict) else None
    times: list[datetime] = []
    for item in items if isinstance(items, list) else []:
        if not isinstance(item, dict):
            continue
        reason = item.get("reason")
        reposted = parse_time(reason.get("indexedAt")) if isinstance(reason, dict) else None
        at = reposted or sort_at(item.get("post"))
        if at is not None:
            times.append(at)
    return min(times, default=None)


def hits_total(body: Any) -> int | None:
    value = body.get("hitsTotal") if isinstance(body, dict) else None
    return value if isinstance(value, int) and not isinstance(value, bool) and value >= 0 else None
