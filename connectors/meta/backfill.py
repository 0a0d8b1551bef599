"""Meta backfills: which part of a past window the Graph API still reaches, as segments of
the core's backfill machinery (:class:`syncd.contracts.Backfiller`).

Graph has no search and no "since" over a Page's or account's whole history: a post's
comments are listed by time, but posts are reached only by walking the feed (or ``/media``)
newest first. So a backfill walks the same posts a live walk re-scans, the watch window's,
and keeps the comments made inside the segment's window; nothing before the watch window's
start is read, and the segment's note says so. Messenger is not read: only a thread's 20
newest messages have details.

No counts endpoint either: a segment's count is what its first step finds, exact when that
step was the whole segment.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

from syncd.errors import MalformedAnswer
from syncd.model import Cursor, Page, PostCount, Segment, Stream

if TYPE_CHECKING:  # a source's backfill steps are the walk's (walk.py imports this module)
    from connectors.meta.walk import Collected, WalkToken

# Facebook: comments on the Page's posts (and visitor and tagged posts) of the window.
PAGE_COMMENTS = "page_comments"
# Seconds between two backfill steps: the account's budget is the live polls' too (on a
# Page, 4800 calls a day per engaged user), and each step may make several calls.
INTERVAL = 2.0
PAGE_NOTE = (
    "comments and replies on the Page's posts of the watch window, and visitor and tagged "
    "posts; comments on older posts and Messenger messages are not read"
)
# Instagram: comments on the account's media (and media tagging it) of the window.
ACCOUNT_MEDIA = "account_media"
MEDIA_NOTE = (
    "comments and replies on the account's media of the watch window, and media tagging "
    "it; comments on older media, @mentions in other people's captions and comments "
    "(webhook only) and DMs are not read"
)


def plan(
    route: str,
    note: str,
    streams: Sequence[Stream],
    since: datetime,
    until: datetime,
    now: datetime,
    watch_window: timedelta,
    page_size: int,
) -> list[Segment]:
    """One segment a stream over the window, cut to the watch window (saying so). No
    network call."""
    start, end = max(since, now - watch_window), min(until, now)
    if end <= start:
        return []
    if since < start:
        note += f"; nothing before {start:%Y-%m-%d %H:%M} UTC (the watch window's start)"
    return [
        Segment(
            stream=stream,
            route=route,
            since=start,
            until=end,
            page_size=page_size,
            min_interval=INTERVAL,
            note=note,
        )
        for stream in streams
    ]


def check_route(segment: Segment, routes: frozenset[str], network: str) -> None:
    if segment.route not in routes:
        raise MalformedAnswer(f"no Meta backfill route {segment.route!r}", system=network)


def step_page(
    got: Collected, at: WalkToken | None, following: WalkToken | None, network: str
) -> Page:
    """A backfill step's page: what it gathered and where the next step starts (None: the
    segment is read). A backfill keeps no marks and moves no ``since_id``."""
    if following is not None:
        following = replace(following, step=(at.step if at else 0) + 1)
    return Page(
        interactions=tuple(got.interactions),
        authors=tuple(got.authors.values()),
        next_cursor=Cursor(pagination_token=following.text(network) if following else None),
        quarantined=tuple(got.quarantined),
        returned=len(got.interactions) + len(got.quarantined),
    )


def count(first: Page) -> PostCount:
    """No counts endpoint: what the first step finds, exact when it is the whole."""
    found = len(first.interactions) + len(first.quarantined)
    return PostCount(found, exact=first.next_cursor.pagination_token is None)
