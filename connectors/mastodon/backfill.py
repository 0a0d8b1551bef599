"""Mastodon backfills: a past window of the brand's mention notifications and own statuses,
read newest first with ``max_id`` through the same endpoints live polls use.

Neither endpoint has a horizon (they reach back as far as the instance keeps the account's
notifications and statuses), and Mastodon has no search a backfill could use instead. The
statuses endpoint starts at the window's end, its ids being times (milliseconds << 16);
notification ids are a sequence, so that walk starts at the newest and passes over what came
after the window. Paginated requests are limited to 300 per 15 minutes per account, shared with
live polls: a backfill asks at most one every 6 seconds, half of that.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from syncd.model import Segment, Stream

RATE_WINDOW = 15 * 60.0  # Mastodon's window for paginated requests
PAGINATED_LIMIT = 300  # paginated requests per RATE_WINDOW per account
MIN_INTERVAL = 2 * RATE_WINDOW / PAGINATED_LIMIT  # half the budget: live polls keep the rest
# The routes are the live polls' own endpoints, whose rate limit a backfill shares.
ROUTES = {Stream.MENTIONS: "mentions_timeline", Stream.REPLIES: "user_timeline"}
SHARED_ROUTES = frozenset(ROUTES.values())
NOTE = {
    Stream.MENTIONS: (
        "mention notifications, as far back as the instance keeps them (a notification of a "
        "deleted status, or one the account dismissed, is gone)"
    ),
    Stream.REPLIES: "the account's own statuses, as far back as they go",
}


def plan(
    streams: Sequence[Stream],
    since: datetime,
    until: datetime,
    now: datetime,
    page_size: int,
    min_interval: float = MIN_INTERVAL,
) -> list[Segment]:
    """One segment per stream for ``[since, min(until, now))``."""
    end = min(until, now)
    if end <= since:
        return []
    limits = {Stream.MENTIONS: 80, Stream.REPLIES: 40}
    return [
        Segment(
            stream=stream,
            route=ROUTES[stream],
            since=since,
            until=end,
            page_size=min(page_size, limits[stream]),
            requests_per_window=PAGINATED_LIMIT,
            rate_window=RATE_WINDOW,
            min_interval=min_interval,
            note=NOTE[stream],
        )
        for stream in streams
    ]


def status_id_at(moment: datetime) -> str:
    """The smallest status id made at ``moment``: Mastodon's ids are milliseconds << 16."""
    return str(max(math.floor(moment.timestamp() * 1000), 0) << 16)


def made_at(item: Any) -> datetime | None:
    value = item.get("created_at") if isinstance(item, dict) else None
    try:
        moment = datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    except ValueError:
        return None
    return moment if moment.tzinfo is not None else None


def inside(item: Any, segment: Segment) -> bool:
    """In the window (an item whose time cannot be read is kept: it is quarantined)."""
    moment = made_at(item)
    return moment is None or segment.since <= moment < segment.until
