"""Backfill pacing reads which routes share live polls' rate limit from the source (each
connector declares its own), and a walk a source says was cut (``Page.cut``) is a gap."""

from __future__ import annotations

import inspect
from datetime import UTC, datetime, timedelta
from types import SimpleNamespace
from typing import Any, ClassVar

import pytest

from connectors.bluesky.source import BlueskySource
from connectors.mastodon.source import MastodonSource
from connectors.x.source import XSource
from syncd.backfill import runner as runner_mod
from syncd.backfill.runner import Runner
from syncd.model import Cursor, Page, RateInfo, Segment, Stream
from syncd.state import gaps
from syncd.state.db import Database
from syncd.state.horizon import first_start, walk_step

NOW = datetime(2026, 11, 20, 12, 0, tzinfo=UTC)
RESET = NOW + timedelta(minutes=10)


class Declaring:
    network: ClassVar[str] = "somewhere"
    shared_routes: ClassVar[frozenset[str]] = frozenset({"timeline"})


def runner(source: Any) -> Runner:
    pipeline: Any = SimpleNamespace(db=None, clock=lambda: NOW, known_authors=lambda _n: None)
    return Runner(pipeline, "src", source, 1, owner="me")


def segment(route: str) -> Segment:
    return Segment(Stream.MENTIONS, route, NOW - timedelta(days=1), NOW, min_interval=1.0)


def page(remaining: int) -> Page:
    return Page((), (), Cursor(), rate=RateInfo(limit=100, remaining=remaining, reset_at=RESET))


def test_a_route_the_source_shares_with_polls_keeps_a_reserve() -> None:
    run = runner(Declaring())
    # 20 of 100 left is the reserve (0.2): wait for the window to reset.
    assert run.pacing(segment("timeline"), page(20)) == pytest.approx(600.0)
    assert run.pacing(segment("timeline"), page(21)) == pytest.approx(1.0)
    # A route the source does not declare shared spends its window to the end.
    assert run.pacing(segment("search"), page(20)) == pytest.approx(1.0)
    assert run.pacing(segment("search"), page(0)) == pytest.approx(600.0)


def test_each_connector_declares_its_shared_routes_and_the_runner_names_none() -> None:
    assert XSource.shared_routes == {"mentions_timeline", "user_timeline"}  # as before
    assert MastodonSource.shared_routes == {"mentions_timeline", "user_timeline"}
    # Bluesky counts every request against one per-IP limit, its gaps' brand-post scans too.
    assert BlueskySource.shared_routes == {
        "search_posts", "author_feed", "post_replies", "post_quotes",
    }  # fmt: skip
    code = inspect.getsource(runner_mod)
    assert "mentions_timeline" not in code and "SHARED_ROUTES" not in code


def walk_end(db: Database, done: Page) -> list[gaps.Gap]:
    with db.transaction() as conn:
        first_start(conn, "s", "acme", Stream.MENTIONS, "mark-0", NOW)
        walk_step(conn, "s", "net", "acme", Stream.MENTIONS, done, NOW)
    with db.connect() as conn:
        return gaps.listing(conn)


def test_a_walk_the_source_says_was_cut_is_a_gap_whatever_it_saw(db: Database) -> None:
    cut = Page((), (), Cursor(since_id="mark-9"), returned=1, oldest_id="mark-5", cut=True)
    (gap,) = walk_end(db, cut)
    assert (gap.since_id, gap.until_id, gap.walk_seen) == ("mark-0", "mark-5", 1)


def test_a_walk_not_cut_and_without_a_horizon_is_no_gap(db: Database) -> None:
    whole = Page((), (), Cursor(since_id="mark-9"), returned=80, oldest_id="mark-1")
    assert walk_end(db, whole) == []
