"""X backfills: which endpoint reaches which part of a past window, counting it, reading it.

The timelines reach only the newest posts (mentions: 800; a user's own posts: 3,200), so
a window is read by search where the configured access allows: recent search covers the
last 7 days, full-archive search everything. What no configured endpoint fully reaches is
read through the timeline as far as it goes, and the plan says so. :class:`XBackfill` reads
through the source's :class:`~connectors.x.client.XClient`.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

from connectors.x.authors import Authors
from connectors.x.client import XClient
from connectors.x.fields import TWEET_FIELDS
from connectors.x.parse import NETWORK, TIMELINE_HORIZONS, expired_token, parse_page
from syncd.contracts import KnownAuthors
from syncd.errors import ExternalError, MalformedAnswer, PaginationLoop
from syncd.model import Account, Cursor, GapPlan, Page, PostCount, Segment, Stream

SearchAccess = Literal["none", "recent", "all"]

RECENT_REACH = timedelta(days=7)
# X wants end_time at least 10 s before the request, and a recent-search start_time inside
# the 7 days when the request arrives: margins, so a plan made now still holds then.
END_MARGIN = timedelta(seconds=30)
RECENT_MARGIN = timedelta(minutes=10)
# (page size, requests per RATE_WINDOW with an app token), from X's documented limits.
RATE_WINDOW = 15 * 60.0
ROUTES: dict[str, tuple[int, int]] = {
    "search_recent": (100, 450),
    "search_all": (500, 300),
    "mentions_timeline": (100, 450),
    "user_timeline": (100, 1500),
}
HORIZONS = {
    "mentions_timeline": TIMELINE_HORIZONS[Stream.MENTIONS],
    "user_timeline": TIMELINE_HORIZONS[Stream.REPLIES],
}
SEARCH_ROUTES = ("search_recent", "search_all")
# The timelines are the live polls' own endpoints: a backfill reading them shares their limit.
SHARED_ROUTES = frozenset({"mentions_timeline", "user_timeline"})
# X's ids are snowflakes: milliseconds since this moment, shifted left by 22 bits.
_SNOWFLAKE_EPOCH_MS = 1288834974657
COUNT_PAGES_MAX = 50  # counts pages read for one estimate (a day bucket each: years)


def search_query(stream: Stream, handle: str) -> str:
    """What the timeline of ``stream`` holds, as a search query."""
    if stream is Stream.MENTIONS:
        return f"(@{handle} OR to:{handle}) -from:{handle}"
    return f"from:{handle} is:reply"


def plan(
    access: SearchAccess,
    account: Account,
    streams: Sequence[Stream],
    since: datetime,
    until: datetime,
    now: datetime,
    *,
    full_archive_interval: float = 1.0,
) -> list[Segment]:
    """The segments of ``[since, until)`` per stream, newest part first."""
    until = min(until, now - END_MARGIN)
    if since >= until:
        return []
    recent_floor = now - RECENT_REACH + RECENT_MARGIN
    out: list[Segment] = []
    for stream in streams:
        query = search_query(stream, account.handle)
        if access == "all":
            seg = _segment(stream, "search_all", since, until, query)
            out.append(replace(seg, min_interval=full_archive_interval))
            continue
        older_until = until
        if access == "recent" and until > recent_floor:
            out.append(_segment(stream, "search_recent", max(since, recent_floor), until, query))
            older_until = recent_floor
        if since < older_until:
            route = "mentions_timeline" if stream is Stream.MENTIONS else "user_timeline"
            reach = "recent search (7 days)" if access == "recent" else "no search"
            note = (
                f"older than what search_access = {access!r} reaches ({reach}): read through "
                f"the {stream} timeline, which holds only the newest {HORIZONS[route]:,} "
                "posts; set search_access = 'all' if your X plan has full-archive search"
            )
            out.append(_segment(stream, route, since, older_until, None, note))
    return out


def posted_at(post_id: str) -> datetime:
    """When an X post was made, read from its (snowflake) id."""
    return datetime.fromtimestamp(((int(post_id) >> 22) + _SNOWFLAKE_EPOCH_MS) / 1000, UTC)


def plan_gap(
    access: SearchAccess,
    account: Account,
    stream: Stream,
    since_id: str,
    until_id: str,
    now: datetime,
    *,
    full_archive_interval: float = 1.0,
) -> GapPlan:
    """Search segments for the posts of ``stream`` after ``since_id`` and before ``until_id``.

    The ids bound the search exactly; the time window, cut to whole seconds around them, only
    keeps the request inside what the endpoint reaches. Recent search refuses a since_id older
    than its 7 days, so a gap reaching further back is read from the 7-day edge and the rest
    is reported as unreachable."""
    start = posted_at(since_id).replace(microsecond=0)
    end = posted_at(until_id).replace(microsecond=0) + timedelta(seconds=1)
    if end > now - END_MARGIN:  # X searches only what is some seconds old
        return GapPlan(ready_at=end + END_MARGIN)
    timeline = f"the {stream} timeline (it holds only the newest {TIMELINE_HORIZONS[stream]:,})"
    if access == "none":
        return GapPlan(
            unreachable=f"search_access = 'none': only {timeline} was read; set "
            "search_access = 'recent' (7 days) or 'all' (full archive) to recover such gaps"
        )
    query = search_query(stream, account.handle)
    if access == "all":
        seg = _segment(stream, "search_all", start, end, query)
        seg = replace(seg, min_interval=full_archive_interval, since_id=since_id, until_id=until_id)
        return GapPlan((seg,))
    floor = now - RECENT_REACH + RECENT_MARGIN
    older = (
        f"posts from {_iso(start)} to {_iso(min(floor, end))} are older than recent search "
        "reaches (7 days) and no longer in "
        f"{timeline}; set search_access = 'all' if your X plan has full-archive search"
    )
    if end <= floor:
        return GapPlan(unreachable=older)
    if start >= floor:
        seg = _segment(stream, "search_recent", start, end, query)
        return GapPlan((replace(seg, since_id=since_id, until_id=until_id),))
    seg = replace(_segment(stream, "search_recent", floor, end, query), until_id=until_id)
    return GapPlan((seg,), unreachable=older)


def _segment(
    stream: Stream,
    route: str,
    since: datetime,
    until: datetime,
    query: str | None,
    note: str | None = None,
) -> Segment:
    page_size, per_window = ROUTES[route]
    return Segment(
        stream,
        route,
        since,
        until,
        query,
        page_size,
        per_window,
        HORIZONS.get(route),
        note,
        rate_window=RATE_WINDOW,
    )


def _iso(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


class XBackfill:
    """``plan_backfill``, ``count_posts`` and ``fetch_segment`` of the Backfiller contract,
    and ``plan_gap`` of the GapCloser one. A timeline segment is cut at the source's
    ``horizons`` (how many of the newest posts each timeline reaches), passed in because a
    stand-in's differ from X's."""

    def __init__(
        self,
        client: XClient,
        authors: Authors,
        *,
        search_access: SearchAccess,
        full_archive_interval: float,
    ) -> None:
        self.client = client
        self.authors = authors
        self.search_access: SearchAccess = search_access
        self.full_archive_interval = full_archive_interval

    def plan_backfill(
        self,
        account: Account,
        streams: Sequence[Stream],
        since: datetime,
        until: datetime,
        now: datetime,
    ) -> list[Segment]:
        return plan(
            self.search_access,
            account,
            streams,
            since,
            until,
            now,
            full_archive_interval=self.full_archive_interval,
        )

    def plan_gap(
        self, account: Account, stream: Stream, since_id: str, until_id: str, now: datetime
    ) -> GapPlan:
        return plan_gap(
            self.search_access,
            account,
            stream,
            since_id,
            until_id,
            now,
            full_archive_interval=self.full_archive_interval,
        )

    def count_posts(
        self, account: Account, segment: Segment, horizons: Mapping[Stream, int]
    ) -> PostCount:
        """Search segments ask the counts endpoint (day buckets); timelines are sampled:
        one page of the window, extrapolated over its span, capped at the horizon."""
        if segment.route in SEARCH_ROUTES:
            return self._counted(segment)
        page = self.fetch_segment(account, segment, None, None, horizons)
        posts = len(page.interactions) + len(page.quarantined)
        if page.next_cursor.pagination_token is None:
            return PostCount(posts, exact=True)
        oldest = min((i.created_at for i in page.interactions), default=segment.until)
        covered = max((segment.until - oldest).total_seconds(), 1.0)
        span = (segment.until - segment.since).total_seconds()
        guess = math.ceil(posts * span / covered)
        return PostCount(min(guess, segment.horizon or guess), exact=False)

    def _counted(self, segment: Segment) -> PostCount:
        recent = segment.route == "search_recent"
        app = self.client.app
        method = app.get_recent_tweets_count if recent else app.get_all_tweets_count
        params: dict[str, Any] = {
            "query": segment.query,
            "start_time": _iso(segment.since),
            "end_time": _iso(segment.until),
            "granularity": "day",
        }
        total, requests = 0, 0
        followed: set[str] = set()  # a token coming back would count the same days again
        while requests < COUNT_PAGES_MAX:
            body, _ = self.client.call(method, **params)
            requests += 1
            meta = body.get("meta") if isinstance(body, dict) else None
            if not isinstance(meta, dict) or not isinstance(meta.get("total_tweet_count"), int):
                raise MalformedAnswer("X sent an unreadable counts response", system=NETWORK)
            total += meta["total_tweet_count"]
            token = meta.get("next_token")
            if recent or not isinstance(token, str):
                return PostCount(total, exact=True, requests=requests)
            if token in followed:
                raise PaginationLoop(
                    "X sent a counts page token already followed: the count stops",
                    system=NETWORK,
                )
            followed.add(token)
            params["next_token"] = token
        return PostCount(total, exact=False, requests=requests)

    def fetch_segment(
        self,
        account: Account,
        segment: Segment,
        token: str | None,
        known: KnownAuthors | None,
        horizons: Mapping[Stream, int],
    ) -> Page:
        params: dict[str, Any] = {
            "start_time": _iso(segment.since),
            "end_time": _iso(segment.until),
            "max_results": segment.page_size,
            "tweet_fields": TWEET_FIELDS,
            **self.authors.expansions(known),
        }
        if segment.since_id is not None:
            params["since_id"] = segment.since_id
        if segment.until_id is not None:
            params["until_id"] = segment.until_id
        app = self.client.app
        if segment.route in SEARCH_ROUTES:
            search = segment.route == "search_recent"
            method = app.search_recent_tweets if search else app.search_all_tweets
            params["query"] = segment.query
            params["next_token"] = token
        else:
            mentions = segment.route == "mentions_timeline"
            method = app.get_users_mentions if mentions else app.get_users_tweets
            params["id"] = account.user_id
            params["pagination_token"] = token
            if not mentions:
                params["exclude"] = ["retweets"]
        try:
            body, headers = self.client.call(method, **params)
        except ExternalError as exc:
            if expired := expired_token(exc, token):
                raise expired from exc
            raise
        body, profiles = self.authors.complete(body, account, segment.stream, known)
        return parse_page(
            body,
            account=account,
            stream=segment.stream,
            cursor=Cursor(pagination_token=token),
            headers=headers,
            known=profiles,
            horizon=None if segment.route in SEARCH_ROUTES else horizons[segment.stream],
        )
