"""Which X endpoint reads which part of a backfill window, with the configured search access;
and what a plan costs, from the counts and the rate limits. Pure: no HTTP."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import ClassVar

import pytest

from connectors.x.backfill import END_MARGIN, RECENT_MARGIN, RECENT_REACH, plan, search_query
from syncd.backfill.estimate import duration, estimate
from syncd.contracts import KnownAuthors
from syncd.model import Account, Page, PostCount, Segment, Stream

NOW = datetime(2026, 11, 22, 12, 0, tzinfo=UTC)
ACME = Account("x", "acme", "42")
BOTH = [Stream.MENTIONS, Stream.REPLIES]


def routes(segments: list[Segment]) -> list[tuple[str, str]]:
    return [(str(s.stream), s.route) for s in segments]


def test_full_archive_reads_any_window_with_one_search_per_stream() -> None:
    segs = plan("all", ACME, BOTH, NOW - timedelta(days=400), NOW, NOW)
    assert routes(segs) == [("mentions", "search_all"), ("replies", "search_all")]
    assert segs[0].query == "(@acme OR to:acme) -from:acme"
    assert segs[1].query == "from:acme is:reply"
    assert segs[0].page_size == 500 and segs[0].horizon is None and segs[0].note is None
    assert segs[0].until == NOW - END_MARGIN  # X refuses an end_time under 10 s old


def test_recent_access_splits_at_seven_days_and_says_what_it_cannot_reach() -> None:
    segs = plan("recent", ACME, [Stream.MENTIONS], NOW - timedelta(days=30), NOW, NOW)
    assert routes(segs) == [("mentions", "search_recent"), ("mentions", "mentions_timeline")]
    recent, older = segs
    floor = NOW - RECENT_REACH + RECENT_MARGIN
    assert recent.since == floor == older.until and recent.page_size == 100
    assert older.since == NOW - timedelta(days=30) and older.horizon == 800
    assert older.note and "800" in older.note and "search_access = 'all'" in older.note


def test_a_window_inside_the_last_week_needs_only_recent_search() -> None:
    segs = plan("recent", ACME, BOTH, NOW - timedelta(days=2), NOW - timedelta(days=1), NOW)
    assert routes(segs) == [("mentions", "search_recent"), ("replies", "search_recent")]


def test_without_search_the_timelines_are_all_there_is() -> None:
    segs = plan("none", ACME, BOTH, NOW - timedelta(days=3), NOW, NOW)
    assert routes(segs) == [("mentions", "mentions_timeline"), ("replies", "user_timeline")]
    assert [s.horizon for s in segs] == [800, 3200]
    assert all(s.query is None and s.note for s in segs)


@pytest.mark.parametrize("since", [NOW, NOW + timedelta(days=1), NOW - timedelta(seconds=5)])
def test_an_empty_or_future_window_plans_nothing(since: datetime) -> None:
    assert plan("all", ACME, BOTH, since, NOW + timedelta(days=2), NOW) == []


def test_queries_name_the_handle_as_configured() -> None:
    assert search_query(Stream.MENTIONS, "AcmeSupport") == (
        "(@AcmeSupport OR to:AcmeSupport) -from:AcmeSupport"
    )


def test_segments_survive_the_trip_through_state() -> None:
    (seg,) = plan("recent", ACME, [Stream.REPLIES], NOW - timedelta(days=1), NOW, NOW)
    assert Segment.from_json(seg.as_json()) == seg


class Counted:
    """A source whose counts are given, as the counts endpoint would answer."""

    network: ClassVar[str] = "x"
    shared_routes: ClassVar[frozenset[str]] = frozenset()

    def __init__(self, posts: int) -> None:
        self.posts = posts

    def plan_backfill(self, *a: object) -> list[Segment]:
        raise NotImplementedError

    def count_posts(self, account: Account, segment: Segment) -> PostCount:
        return PostCount(self.posts, exact=True, requests=3)

    def fetch_segment(
        self,
        account: Account,
        segment: Segment,
        token: str | None,
        known: KnownAuthors | None = None,
    ) -> Page:
        raise NotImplementedError


def test_the_estimate_prices_posts_and_counts_requests_calls_and_time() -> None:
    segs = plan("all", ACME, [Stream.MENTIONS], NOW - timedelta(days=400), NOW, NOW)
    est = estimate(Counted(200_000), ACME, segs, price_per_post=0.005)
    assert est.posts == 200_000 and est.exact and est.cost == pytest.approx(1000.0)
    assert est.source_requests == 400 and est.counting_requests == 3  # 500 posts per request
    assert est.crm_writes == 1000  # 200 Tasks per collections call
    assert est.crm_lookups == 1000 * 2 * 2  # at most: every author new, 2 kinds × 2 objects
    # 300 requests per 15 minutes, one per second: 400 requests wait one window.
    assert est.seconds == pytest.approx(400 * 1.0 + 15 * 60)  # a window is 15 minutes
    segments = est.as_json()["segments"]
    assert isinstance(segments, list) and segments[0]["requests"] == 400


def test_time_grows_by_a_window_per_rate_limit_batch() -> None:
    (seg,) = plan("recent", ACME, [Stream.MENTIONS], NOW - timedelta(days=1), NOW, NOW)
    assert duration(seg, 450) == pytest.approx(450 * 0.25)
    assert duration(seg, 451) == pytest.approx(451 * 0.25 + 15 * 60)
