"""Bluesky backfills and gap recovery: which endpoint reaches which part of a past window.

- ``mentions``: ``app.bsky.feed.searchPosts`` with ``mentions=<the brand's DID>``, ``since``
  (inclusive) and ``until`` (exclusive) on the posts' sort time, ``sort=latest``. Search finds
  a post only by its mention facet: a reply or a quote that does not name the brand (which
  ``listNotifications`` tells live) is not found, and the plan says so. Bluesky's search service
  (Palomar, bluesky-social/indigo ``search/``) reads the cursor as an offset and refuses one
  over 10,000, or a page whose offset and size pass 10,000, so one query reaches its newest
  10,000 hits: a window holding more is read as successive queries, each ending (``until``) at
  the oldest post the previous one read.
- ``replies``: ``app.bsky.feed.getAuthorFeed`` (``posts_with_replies``), the live poll's
  endpoint, walked from the newest post back to the window's start: it reaches back as far as
  the account's posts go, and pages newer than the window are read and passed over.

No counts endpoint: a search's ``hitsTotal`` (which the lexicon says may be rounded) or one
page extrapolated. Requests are limited per IP (3,000 per 5 minutes) for polls and backfills
alike, so a backfill leaves live polls a reserve (``shared_routes``) and asks at most one
request a second.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from connectors.bluesky.parse import NETWORK, Mark, parse_time, sort_at
from syncd.errors import MalformedAnswer
from syncd.model import GapPlan, PostCount, Segment, Stream

SEARCH = "search_posts"
AUTHOR_FEED = "author_feed"
ROUTES = {Stream.MENTIONS: SEARCH, Stream.REPLIES: AUTHOR_FEED}
# Both endpoints count against the one per-IP limit live polls spend too.
SHARED_ROUTES = frozenset({SEARCH, AUTHOR_FEED})
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
        "holds (its newest 10,000 hits a query; syncd narrows the window and asks again); "
        "replies and quotes that do not mention the account are not found by search"
    ),
    Stream.REPLIES: "the account's own replies, through its author feed, as far back as they go",
}
UNSEARCHABLE = (
    "replies to and quotes of the account's posts that do not mention it: search finds posts "
    "only by their mention, and the notifications that listed them no longer reach back there"
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
    streams: Sequence[Stream], since: datetime, until: datetime, now: datetime, page_size: int
) -> list[Segment]:
    """One segment per stream for ``[since, min(until, now))``."""
    end = min(until, now)
    if end <= since:
        return []
    return [_segment(stream, since, end, page_size) for stream in streams]


def plan_gap(
    stream: Stream, since_id: str, until_id: str, overlap: timedelta, page_size: int
) -> GapPlan:
    """The window between two marks of a walk (``since_id``: the stored mark the walk never
    met; ``until_id``: the oldest item it read). The start reaches back ``overlap`` further,
    as live walks do, for backdated posts sorted below the mark."""
    start, end = Mark.parse(since_id), Mark.parse(until_id)
    if start is None or end is None:
        raise MalformedAnswer("a Bluesky gap without its marks", system=NETWORK)
    segment = _segment(stream, start.at - overlap, end.at + _TICK, page_size)
    if stream is Stream.MENTIONS:
        return GapPlan((segment,), unreachable=UNSEARCHABLE)
    return GapPlan((segment,))


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
