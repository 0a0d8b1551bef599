"""Search and counts for the X sandbox: ``/2/tweets/search/{recent,all}`` and
``/2/tweets/counts/{recent,all}``, answered as X does (checked against tweepy's and
academictwitteR's recordings and the OpenAPI specs).

- Time: ``end_time`` defaults to the request time minus the search lag (X: 10 s, seen in the
  recorded counts) and must itself be that old; ``start_time`` defaults to 7 days (recent) or
  30 days (full archive) before ``end_time``. Recent search reaches back 7 days and no further:
  an older ``start_time`` or ``end_time`` is X's 400. since_id/until_id narrow the window further.
- Search: newest first; ``next_token`` encodes the last id returned, so a walk is stable while
  posts arrive. No timeline horizon applies.
- Counts: buckets aligned to the granularity, the first and last cut at the window, oldest
  first, empty ones included. Full-archive counts come in pages of 31 days, newest page first.
"""

from __future__ import annotations

import math
from bisect import bisect_right
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from sandbox.server import Request
from sandbox.x import params as xp
from sandbox.x import render as xr
from sandbox.x.search_query import Plan, QueryError, parse
from sandbox.x.store import JsonObject, StoredPost, XStore, format_time

RECENT_REACH = timedelta(days=7)
ARCHIVE_DEFAULT_SPAN = timedelta(days=30)
COUNTS_PAGE_SPAN = timedelta(days=31)
GRANULARITY = {"minute": 60, "hour": 3600, "day": 86400}
SORT_ORDERS = ("recency", "relevancy")  # relevancy is answered in recency order
_FAR = datetime.max.replace(tzinfo=UTC)


@dataclass(frozen=True)
class Window:
    """What one request may see: ``start <= created_at < end`` and ``above < id < below``."""

    start: datetime
    end: datetime
    above: int | None
    below: int | None


def _minute(value: datetime) -> str:
    """X's wording of times in these messages: ``2025-01-17T09:13Z``."""
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%MZ")


def _floor(value: datetime, seconds: int) -> datetime:
    ts = value.timestamp()
    return datetime.fromtimestamp(ts - ts % seconds, UTC)


def _bad_time(parameter: str, value: datetime, rule: str) -> xp.InvalidRequest:
    shown = _minute(value)
    return xp.InvalidRequest(parameter, shown, f"Invalid '{parameter}':'{shown}'. {rule}")


def window(req: Request, store: XStore, now: datetime, lag: timedelta, *, archive: bool) -> Window:
    q = req.query
    above = xp.optional_id(q.get("since_id"), "since_id")
    below = xp.optional_id(q.get("until_id"), "until_id")
    start = xp.timestamp(q.get("start_time"), "start_time")
    end = xp.timestamp(q.get("end_time"), "end_time")
    latest = now - lag
    reach = _floor(now - RECENT_REACH, 60)  # X states the bound to the minute
    for name, value in (("start_time", start), ("end_time", end)):
        if value is None:
            continue
        if value > latest:
            rule = f"'{name}' must be a minimum of {lag.total_seconds():g} seconds prior to the "
            raise _bad_time(name, value, rule + "request time.")
        if not archive and value < reach:
            raise _bad_time(name, value, f"'{name}' must be on or after {_minute(reach)}")
    old = store.last_id_before(reach) if not archive and above is not None else None
    if above is not None and old is not None and above <= old:  # X's words for a stale cursor
        raise xp.InvalidRequest(
            "since_id",
            q["since_id"],
            f"'since_id' must be a tweet id created after {_minute(reach)}. Please use a "
            f"'since_id' that is larger than {old}",
        )
    if start is not None and end is not None and start >= end:
        raise _bad_time(
            "start_time", start, f"'start_time' must be before 'end_time':'{_minute(end)}'"
        )
    end = end or _floor(latest, 1)
    if start is None:
        start = end - (ARCHIVE_DEFAULT_SPAN if archive else RECENT_REACH)
        start = start if archive else max(start, reach)
    return Window(start, end, above, below)


def plan(req: Request, store: XStore) -> tuple[str, Plan]:
    text = req.query.get("query")
    if text is None:
        raise xp.InvalidRequest("query", "", "The `query` query parameter can not be empty")
    if not text.strip():
        raise xp.InvalidRequest(
            "query", text, f"Invalid 'query':'{text}'. 'query' must be a non-empty string"
        )
    try:
        return text, Plan(parse(text), store)
    except QueryError as exc:
        raise xp.InvalidRequest("query", text, exc.message) from None


def _token(req: Request) -> tuple[str, str] | None:
    for parameter in ("next_token", "pagination_token"):  # tweepy sends next_token
        if (token := req.query.get(parameter)) is not None:
            return parameter, token
    return None


def visible(store: XStore, post: StoredPost, win: Window) -> bool:
    return (
        not post.deleted
        and not store.users[post.author_id].suspended
        and win.start <= post.created_at < win.end
    )


def walk(
    store: XStore, query: Plan, win: Window, limit: int | None
) -> tuple[list[StoredPost], bool]:
    """Up to ``limit`` matching posts, newest first, and whether more match."""
    page: list[StoredPost] = []
    for pid in query.candidates(below=win.below, above=win.above, start=win.start, end=win.end):
        post = store.posts[pid]
        if not visible(store, post, win) or not query.matches(post):
            continue
        if len(page) == limit:
            return page, True
        page.append(post)
    return page, False


def search(
    req: Request, r: xr.Renderer, now: datetime, lag: timedelta, *, archive: bool
) -> JsonObject:
    endpoint = "search_all" if archive else "search_recent"
    text, query = plan(req, r.store)
    limit = xp.max_results(req.query.get("max_results"), 10, 500 if archive else 100)
    xp.one_of(req, "sort_order", SORT_ORDERS, "recency")
    win = window(req, r.store, now, lag, archive=archive)
    if (token := _token(req)) is not None:
        boundary = xp.decode_token(endpoint, text, token[1], token[0])
        below = boundary if win.below is None else min(boundary, win.below)
        win = Window(win.start, win.end, win.above, below)
    page, more = walk(r.store, query, win, limit)
    r.expand(page)
    meta: JsonObject = {}
    if page:  # the recorded key order
        meta["newest_id"], meta["oldest_id"] = str(page[0].id), str(page[-1].id)
    meta["result_count"] = len(page)
    if more:
        meta["next_token"] = xp.encode_token(endpoint, text, page[-1].id)
    return r.body([r.post(p) for p in page], meta)


def matching_ids(
    store: XStore, query: str, start: datetime | None, end: datetime | None
) -> list[str]:
    """Ids of every visible post ``query`` matches, newest first, with no API limit."""
    try:
        query_plan = Plan(parse(query), store)
    except QueryError as exc:
        raise ValueError(exc.message) from None
    win = Window(start or datetime.min.replace(tzinfo=UTC), end or _FAR, None, None)
    return [str(p.id) for p in walk(store, query_plan, win, None)[0]]


class PerSecond:
    """Requests per whole second, per key: full archive's "1 request per second"."""

    def __init__(self) -> None:
        self._used: dict[tuple[str, str], tuple[int, int]] = {}  # key -> (second, requests)

    def take(
        self, key: tuple[str, str], now: datetime, limit: int | None
    ) -> tuple[bool, dict[str, str]]:
        """Count one request; a refusal's rate-limit headers describe the one-second window
        (so a client that sleeps until ``x-rate-limit-reset`` waits one second, not 15 min)."""
        if limit is None:
            return True, {}
        second = math.floor(now.timestamp())
        start, used = self._used.get(key, (second, 0))
        used = used if start == second else 0
        if used >= limit:
            reset = str(second + 1)
            return False, {
                "x-rate-limit-limit": str(limit),
                "x-rate-limit-remaining": "0",
                "x-rate-limit-reset": reset,
            }
        self._used[key] = (second, used + 1)
        return True, {}

    def clear(self) -> None:
        self._used.clear()


def buckets(start: datetime, end: datetime, step: int) -> list[tuple[datetime, datetime]]:
    """``[start, end)`` cut at every multiple of ``step`` seconds (UTC), oldest first."""
    out = []
    t = start
    while t < end:
        nxt = min(_floor(t, step) + timedelta(seconds=step), end)
        out.append((t, nxt))
        t = nxt
    return out


def counts(
    req: Request,
    store: XStore,
    dialect: xr.Dialect,
    now: datetime,
    lag: timedelta,
    *,
    archive: bool,
) -> JsonObject:
    endpoint = "counts_all" if archive else "counts_recent"
    text, query = plan(req, store)
    step = GRANULARITY[xp.one_of(req, "granularity", GRANULARITY, "hour")]
    win = window(req, store, now, lag, archive=archive)
    page_end = win.end
    if (token := _token(req)) is not None:
        parameter, value = token
        # The token holds where the previous page started, in milliseconds.
        page_end = datetime.fromtimestamp(
            xp.decode_token(endpoint, text, value, parameter) / 1000, UTC
        )
        if not win.start < page_end <= win.end:
            raise xp.InvalidRequest(
                parameter, value, f"The `{parameter}` query parameter value [{value}] is not valid"
            )
    page_start = max(win.start, page_end - COUNTS_PAGE_SPAN) if archive else win.start
    cuts = buckets(page_start, page_end, step)
    tally = [0] * len(cuts)
    starts = [s for s, _ in cuts]
    page_win = Window(page_start, page_end, win.above, win.below)
    matched, _ = walk(store, query, page_win, None)
    for post in matched:
        tally[bisect_right(starts, post.created_at) - 1] += 1
    data: list[JsonObject] = []
    for (s, e), n in zip(cuts, tally, strict=True):
        bucket: JsonObject = {"end": format_time(e), "start": format_time(s), "tweet_count": n}
        if dialect.newer:
            bucket["post_count"] = n
        data.append(bucket)
    meta: JsonObject = {"total_tweet_count": sum(tally)}
    if dialect.newer:
        meta["total_post_count"] = sum(tally)
    if page_start > win.start:
        meta["next_token"] = xp.encode_token(endpoint, text, round(page_start.timestamp() * 1000))
    return {"data": data, "meta": meta} if data else {"meta": meta}
