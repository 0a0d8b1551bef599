"""Noticing gaps: a walk after a since_id that the timeline's horizon cut short records one,
in the transaction of its last page, on SQLite and PostgreSQL; and how X plans to read one.
A stream's first walk reads back to the source's ``start`` and no further, and one cut before
it gets there is a gap back to ``start``, closed like any other.

The walks here are real: tweepy against the X sandbox, whose timelines hold only their newest
posts (small horizons keep the tests fast), stored by the pipeline's page transaction.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import select
from support.fake_crm import FakeCrm

from connectors.x.backfill import RECENT_REACH, plan_gap, posted_at
from connectors.x.source import XSource
from sandbox.x.api import XSandbox
from sandbox.x.store import snowflake
from syncd.backfill.gaps import recover
from syncd.backfill.runner import Runner
from syncd.errors import TransientError
from syncd.model import Account, Page, Stream
from syncd.pipeline import Pipeline, PipelineSettings
from syncd.state import gaps, ingest
from syncd.state.db import Database
from syncd.state.tables import cursors, interactions

TOKEN = "sandbox-x-bearer"
HORIZON = 30  # the sandbox's mentions horizon here (X's: 800), and the source told so
REPLIES_HORIZON = 40  # the brand's own posts (X's: 3,200)
PAGE = 10
SECOND = timedelta(seconds=1)


class Counting(XSource):
    """The real X source, telling the pipeline to stop after ``stop_after`` pages (a
    shutdown mid-walk)."""

    pipeline: Pipeline | None = None
    stop_after: int | None = None
    pages = 0

    after_page: Any = None  # called after each page (posts arriving during a walk)

    def fetch(self, *args: Any, **kwargs: Any) -> Page:
        page = super().fetch(*args, **kwargs)
        self.pages += 1
        if self.after_page is not None:
            self.after_page()
        if self.pipeline is not None and self.pages == self.stop_after:
            self.pipeline.stopping.set()
        return page


class World:
    def __init__(self, x: XSandbox, db: Database, start: str = "1h") -> None:
        self.x, self.db = x, db
        self.brand = x.add_user("acme")["id"]
        self.fan = x.add_user("fan")["id"]
        self.account = Account("x", "acme", self.brand)
        # Posts made in the last hour are after this start: first walks read them all.
        self.source = Counting(TOKEN, api_base_url=x.url, page_size=PAGE, start=start)
        self.source.horizons = {Stream.MENTIONS: HORIZON, Stream.REPLIES: REPLIES_HORIZON}
        self.pipeline = self.restart()

    def restart(self) -> Pipeline:
        self.pipeline = Pipeline(self.db, "sf", FakeCrm(), PipelineSettings(retries=0))
        self.source.pipeline = self.pipeline
        return self.pipeline

    def mentions(self, n: int, at: datetime | None = None) -> list[str]:
        """``n`` mentions, now or one a second from ``at`` on."""
        times = [at + i * SECOND if at else None for i in range(n)]
        return [
            str(self.x.add_post(self.fan, f"@acme hello {i}", created_at=t)["id"])
            for i, t in enumerate(times)
        ]

    def poll(self, stream: Stream = Stream.MENTIONS) -> None:
        self.pipeline.poll("x", self.source, self.account, stream)

    def stored(self) -> set[str]:
        with self.db.connect() as conn:
            return {r[0] for r in conn.execute(select(interactions.c.post_id))}

    def gaps(self) -> list[gaps.Gap]:
        with self.db.connect() as conn:
            return gaps.listing(conn)

    def walk(self) -> tuple[Any, ...]:
        with self.db.connect() as conn:
            row = conn.execute(
                select(cursors.c.pagination_token, cursors.c.walk_seen, cursors.c.walk_oldest_id)
            ).one()
        return tuple(row)


@pytest.fixture
def world(db: Database) -> Iterator[World]:
    with XSandbox(
        bearer_token=TOKEN, mentions_horizon=HORIZON, timeline_horizon=REPLIES_HORIZON
    ) as x:
        w = World(x, db)
        try:
            yield w
        finally:
            w.source.close()


def since_id(world: World) -> str:
    with world.db.connect() as conn:
        return str(conn.execute(select(cursors.c.since_id)).scalar_one())


def test_a_first_walk_reads_back_to_start_and_one_cut_before_it_is_a_gap_back_to_start(
    world: World,
) -> None:
    now = datetime.now(UTC)
    before = world.mentions(3, at=now - timedelta(hours=3))  # before start (1 hour ago)
    posted = world.mentions(HORIZON * 3, at=now - timedelta(minutes=30))
    world.poll()
    assert world.stored() == set(posted[-HORIZON:])  # the timeline's newest 30
    (gap,) = world.gaps()
    # From start (an id just below any post made at or after it) to the oldest post read.
    assert abs(posted_at(gap.since_id) - (now - timedelta(hours=1))) < timedelta(minutes=1)
    assert (gap.until_id, gap.walk_seen, gap.state) == (posted[-HORIZON], HORIZON, "open")
    assert max(map(int, before)) < int(gap.since_id) < int(posted[0])
    assert world.walk() == (None, 0, None)


def test_a_first_walk_that_met_start_is_no_gap(world: World) -> None:
    world.mentions(3, at=datetime.now(UTC) - timedelta(hours=3))  # before start
    # More might have been cut (horizon.suspect); one a second, as a quiet stream's come.
    n = HORIZON // 2 - 1
    posted = world.mentions(n, at=datetime.now(UTC) - n * SECOND)
    world.poll()
    assert world.stored() == set(posted) and world.gaps() == []


def test_start_now_stays_the_first_start_through_a_failed_first_poll(db: Database) -> None:
    with XSandbox(bearer_token=TOKEN, mentions_horizon=HORIZON) as x:
        world = World(x, db, start="now")
        try:
            world.mentions(4)  # before the first start: deliberately not read
            x.inject("status", endpoint="mentions", status=503, count=1)
            with pytest.raises(TransientError):
                world.poll()  # no page stored, but the first start is
            first = since_id(world)
            after = world.mentions(HORIZON + 5)  # between the first start and the first walk
            world.poll()
            assert since_id(world) == after[-1]
            # The walk was cut: the five it could not reach are the gap's, back to start.
            (gap,) = world.gaps()
            assert (gap.since_id, gap.until_id) == (first, after[5])
            assert world.stored() == set(after[5:])
        finally:
            world.source.close()


def test_a_gap_back_to_start_closes_like_any_other(world: World) -> None:
    now = datetime.now(UTC)
    world.mentions(3, at=now - timedelta(hours=3))  # before start: never read
    posted = world.mentions(HORIZON * 3, at=now - timedelta(minutes=30))
    world.poll()
    with world.db.transaction() as conn:
        ingest.store_accounts(conn, "x", [world.account], now)
    sources: Any = {"x": world.source}
    queued = recover(world.db, sources, now)
    (gap,) = world.gaps()
    assert queued.queued == [gap.id] and gap.backfill_id is not None
    runner = Runner(world.pipeline, "x", world.source, gap.backfill_id)
    assert runner.claim()
    while not runner.step().done:
        pass
    assert recover(world.db, sources, now).closed == [gap.id]
    (gap,) = world.gaps()
    assert (gap.state, gap.recovered) == ("closed", HORIZON * 2)
    assert world.stored() == set(posted)  # every post after start, none before


def test_a_walk_short_of_the_horizon_is_no_gap_and_one_past_it_is(world: World) -> None:
    world.mentions(5)
    world.poll()
    # One a second, as a quiet stream's come (a burst walked slowly is suspected: _Pace).
    n = HORIZON // 2 - 1
    world.mentions(n, at=datetime.now(UTC) - n * SECOND)
    world.poll()
    assert world.gaps() == []
    with world.db.connect() as conn:
        since = conn.execute(select(cursors.c.since_id)).scalar_one()

    posted = world.mentions(HORIZON + 1)
    world.poll()
    (gap,) = world.gaps()
    # The timeline held the newest HORIZON: the one before them is what the gap stands for.
    missing = sorted(set(posted) - world.stored(), key=int)
    assert missing == [posted[0]]
    assert (gap.since_id, gap.until_id) == (since, posted[1])
    assert int(gap.since_id) < int(missing[0]) < int(gap.until_id)
    assert (gap.state, gap.stream, gap.account, gap.walk_seen) == ("open", "mentions", "acme", 30)
    assert world.x.store.horizon_cuts == 1  # the sandbox agrees the walk was cut

    world.mentions(3)
    world.poll()  # a later, uncut walk adds nothing
    assert len(world.gaps()) == 1


def test_a_walk_cut_while_posts_arrive_is_a_gap_though_it_saw_fewer(world: World) -> None:
    world.mentions(5)
    world.poll()
    posted = world.mentions(HORIZON + 10)
    arrived: list[str] = []
    world.source.after_page = lambda: arrived.extend(world.mentions(5) if not arrived else [])
    world.poll()
    # The timeline's newest 30 moved by 5 during the walk: it saw 25, and the gap is real.
    (gap,) = world.gaps()
    assert gap.walk_seen == HORIZON - 5 + len(arrived) - 5
    assert set(posted[:15]).isdisjoint(world.stored())
    assert int(gap.since_id) < int(posted[0]) and int(gap.until_id) > int(posted[14])


@pytest.mark.parametrize("slow", [True, False])
def test_a_slow_walk_cut_by_posts_arriving_is_a_gap_though_it_saw_few(
    world: World, slow: bool
) -> None:
    # A busy state database slowed a walk down while posts came fast: it ended at the
    # horizon having seen fewer than half of it, its gap unrecorded, its oldest posts lost.
    now = [datetime.now(UTC)]
    world.pipeline = Pipeline(
        world.db, "sf", FakeCrm(), PipelineSettings(retries=0), clock=lambda: now[0]
    )
    world.source.pipeline = world.pipeline
    world.mentions(5)
    world.poll()
    posted = world.mentions(12, at=datetime.now(UTC) - 12 * SECOND)  # one a second

    def meanwhile() -> None:
        if slow and world.source.pages == 1:  # after the first page: a burst, a slow store
            world.mentions(HORIZON - 10)
            now[0] += 30 * SECOND

    world.source.pages = 0
    world.source.after_page = meanwhile
    world.poll()
    lost = set(posted) - world.stored()
    if slow:
        # 10 posts seen, spanning 9 s; at that pace 33 more came in the walk's 30 s.
        assert lost  # the timeline's newest 30 moved past them during the walk
        (gap,) = world.gaps()
        assert gap.walk_seen == 10
        assert all(int(gap.since_id) < int(p) < int(gap.until_id) for p in lost)
    else:
        # The same walk, quick and undisturbed: it reached since_id; no gap is suspected.
        assert not lost
        assert world.gaps() == []


def test_a_walk_cut_across_a_restart_is_judged_whole(world: World) -> None:
    world.mentions(5)
    world.poll()
    posted = world.mentions(HORIZON + 20)
    world.source.stop_after = world.source.pages + 2
    world.poll()  # stopped after two pages, mid-walk
    token, seen, oldest = world.walk()
    assert token is not None and seen == 2 * PAGE
    assert oldest == posted[-2 * PAGE]
    assert world.gaps() == []

    world.restart()  # a new process: what the walk saw so far comes from state
    world.poll()
    (gap,) = world.gaps()
    assert gap.walk_seen == HORIZON and gap.until_id == posted[-HORIZON]
    assert world.walk() == (None, 0, None)


def test_a_walk_that_paused_is_a_gap_whatever_it_saw(world: World) -> None:
    world.mentions(5)
    world.poll()
    posted = world.mentions(2 * PAGE)
    world.source.stop_after = world.source.pages + 1
    world.poll()  # one page, then a stop (a restart, a crash)
    world.mentions(HORIZON + 5)  # while it is stopped: the rest of the walk is out of reach
    world.restart()
    world.poll()
    # It saw 10 posts, far from the horizon, and the 10 before them are lost to the walk.
    assert set(posted[:PAGE]).isdisjoint(world.stored())
    (gap,) = world.gaps()
    assert (gap.walk_seen, gap.until_id) == (PAGE, posted[PAGE])


def test_a_page_retried_mid_walk_makes_it_a_suspected_gap_but_not_the_first_one(
    db: Database,
) -> None:
    with XSandbox(bearer_token=TOKEN, mentions_horizon=HORIZON) as x:
        world = World(x, db)
        settings = PipelineSettings(retries=1, retry_max_wait=0.01)
        world.pipeline = Pipeline(db, "sf", FakeCrm(), settings)
        try:
            world.mentions(5)
            x.inject("status", endpoint="mentions", status=503, count=1)
            world.poll()  # its first page retried: the walk had not begun
            assert world.gaps() == []
            world.mentions(PAGE + 2)
            state = {"pages": 0}

            def fail_second(_request: object) -> None:
                state["pages"] += 1
                if state["pages"] == 2:
                    x.inject("status", endpoint="mentions", status=503, count=1)

            x.on_request("mentions", fail_second)
            world.poll()  # its second page retried: posts may have passed it meanwhile
            (gap,) = world.gaps()
            assert gap.walk_seen == PAGE + 2
        finally:
            world.source.close()


def test_the_replies_stream_has_its_own_horizon(world: World) -> None:
    parent = world.x.add_post(world.fan, "@acme help")["id"]
    world.x.add_post(world.brand, "@fan sure", in_reply_to=parent)
    world.poll(Stream.REPLIES)
    # 45 own posts (40 reachable), of which originals are no history but count all the same.
    for i in range(45):
        if i % 3:
            world.x.add_post(world.brand, f"@fan answer {i}", in_reply_to=parent)
        else:
            world.x.add_post(world.brand, f"news {i}")
    world.poll(Stream.REPLIES)
    (gap,) = world.gaps()
    assert (gap.stream, gap.walk_seen) == ("replies", 40)


def test_retweets_count_toward_the_reach_of_the_brands_timeline(world: World) -> None:
    parent = world.x.add_post(world.fan, "@acme help")["id"]
    world.x.add_post(world.brand, "@fan sure", in_reply_to=parent)
    world.poll(Stream.REPLIES)
    # 50 own posts, 40 reachable: 10 replies and 40 retweets. X does not return retweets to a
    # walk that excludes them, yet counts them toward its reach: such a walk would see 10
    # replies, far from the horizon, and the cut would go unnoticed.
    replies = [
        world.x.add_post(world.brand, f"@fan answer {i}", in_reply_to=parent)["id"]
        for i in range(10)
    ]
    for _ in range(40):
        world.x.add_retweet(world.brand, parent)
    world.poll(Stream.REPLIES)
    (gap,) = world.gaps()
    assert (gap.stream, gap.walk_seen) == ("replies", REPLIES_HORIZON)
    assert set(replies).isdisjoint(world.stored())  # out of reach: the gap's to recover
    assert int(gap.until_id) > int(replies[-1])


def test_a_refused_page_token_starts_the_count_again(world: World) -> None:
    world.mentions(5)
    world.poll()
    n = HORIZON // 2 - 2  # counted twice, it would be a gap; one a second (see _Pace)
    world.mentions(n, at=datetime.now(UTC) - n * SECOND)
    world.source.stop_after = world.source.pages + 1
    world.poll()
    assert world.walk()[1] == PAGE
    with world.db.transaction() as conn:  # a token X no longer accepts
        conn.execute(cursors.update().values(pagination_token="bm90IGEgdG9rZW4"))
    world.restart()
    world.poll()  # the walk starts again from since_id: its posts are not counted twice
    assert world.gaps() == []
    assert world.walk() == (None, 0, None)


# -- planning a gap's recovery (X) -----------------------------------------------------------
NOW = datetime(2026, 11, 1, 12, 0, tzinfo=UTC)
ACME = Account("x", "acme", "100")


def ids(since: datetime, until: datetime) -> tuple[str, str]:
    return str(snowflake(since)), str(snowflake(until))


def test_snowflake_ids_tell_when_a_post_was_made() -> None:
    moment = datetime(2026, 3, 2, 9, 0, 30, 250_000, tzinfo=UTC)
    assert posted_at(str(snowflake(moment) + 4095)) == moment
    # A recorded mention (tests/fixtures/x-api-v2-json), created_at 2021-06-02T15:53:07.000Z.
    made = posted_at("1400118288307277824")
    assert made.replace(microsecond=0) == datetime(2021, 6, 2, 15, 53, 7, tzinfo=UTC)


def test_recent_search_reads_a_gap_of_the_last_days_between_its_ids() -> None:
    since, until = ids(NOW - timedelta(days=2), NOW - timedelta(hours=1))
    plan = plan_gap("recent", ACME, Stream.MENTIONS, since, until, NOW)
    (seg,) = plan.segments
    assert plan.unreachable is None and plan.ready_at is None
    assert (seg.route, seg.since_id, seg.until_id) == ("search_recent", since, until)
    assert seg.query == "(@acme OR to:acme) -from:acme"
    assert seg.since <= posted_at(since) and seg.until > posted_at(until)
    replies = plan_gap("recent", ACME, Stream.REPLIES, since, until, NOW).segments[0]
    assert replies.query == "from:acme is:reply"


def test_recent_search_reads_the_part_of_a_gap_inside_its_7_days_and_says_what_is_lost() -> None:
    since, until = ids(NOW - timedelta(days=9), NOW - timedelta(days=1))
    plan = plan_gap("recent", ACME, Stream.MENTIONS, since, until, NOW)
    (seg,) = plan.segments
    # X refuses a since_id older than recent search reaches: the window starts at its edge.
    assert seg.since_id is None and seg.until_id == until
    assert seg.since > NOW - RECENT_REACH
    assert plan.unreachable and "older than recent search reaches" in plan.unreachable
    assert "search_access = 'all'" in plan.unreachable


def test_a_gap_no_access_reaches_is_unreachable_with_the_key_to_change() -> None:
    old = ids(NOW - timedelta(days=30), NOW - timedelta(days=8))
    plan = plan_gap("recent", ACME, Stream.MENTIONS, *old, NOW)
    assert plan.segments == () and plan.unreachable and "7 days" in plan.unreachable
    fresh = ids(NOW - timedelta(days=1), NOW - timedelta(hours=1))
    none = plan_gap("none", ACME, Stream.REPLIES, *fresh, NOW)
    assert none.segments == () and none.unreachable
    assert "search_access = 'none'" in none.unreachable and "3,200" in none.unreachable


def test_full_archive_search_reads_any_gap_and_a_fresh_one_waits_for_search() -> None:
    old = ids(NOW - timedelta(days=400), NOW - timedelta(days=300))
    (seg,) = plan_gap("all", ACME, Stream.MENTIONS, *old, NOW, full_archive_interval=1.0).segments
    assert (seg.route, seg.since_id, seg.until_id) == ("search_all", *old)
    assert seg.min_interval == 1.0
    fresh = ids(NOW - timedelta(minutes=5), NOW - timedelta(seconds=5))
    plan = plan_gap("all", ACME, Stream.MENTIONS, *fresh, NOW)
    assert plan.segments == () and plan.unreachable is None
    assert plan.ready_at is not None and plan.ready_at > NOW
