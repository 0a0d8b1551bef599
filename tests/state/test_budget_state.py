"""The read budget in state, on SQLite and PostgreSQL: daily counts and their sums, counts from
several writers at once, the guard's usage reads (at most every 15 minutes, whichever instance
asks), its threshold warnings (once per crossing), and migration 0011."""

from __future__ import annotations

import logging
import threading
from datetime import UTC, date, datetime, timedelta
from typing import Any, ClassVar

import pytest
from alembic import command
from sqlalchemy import inspect

from syncd.budget.guard import USAGE_INTERVAL, BudgetGuard
from syncd.budget.ledger import BudgetHeld, CappedSource
from syncd.errors import TransientError, UsageCapped
from syncd.model import Budget, Prices, ProjectUsage, Reads
from syncd.state import usage
from syncd.state.db import Database, alembic_config

# X's pay-per-use prices, as an X source's settings declare them by default.
PRICES = Prices(post=0.005, user=0.010, owned_post=0.001)


class Clock:
    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now


class FakeX:
    """A source that reports usage figures and counts how often it was asked."""

    network: ClassVar[str] = "x"

    def __init__(self) -> None:
        self.figures = ProjectUsage(posts=0, cap=2_000_000, reset_day=10)
        self.asked = 0
        self.fail: Exception | None = None

    def project_usage(self) -> ProjectUsage:
        self.asked += 1
        if self.fail is not None:
            raise self.fail
        return self.figures


def add(db: Database, reads: Reads, now: datetime, source: str = "acme-x") -> None:
    with db.transaction() as conn:
        usage.count(conn, source, "x", reads, now)


def guard(db: Database, x: FakeX, clock: Clock, budget: Budget | None = None) -> BudgetGuard:
    return BudgetGuard(db, {"acme-x": budget or Budget(PRICES)}, {"acme-x": x}, clock)  # type: ignore[dict-item]


# -- local counts ------------------------------------------------------------------------------
def test_counts_go_to_the_utc_day_and_add_up_over_the_period(db: Database) -> None:
    before_midnight = datetime(2027, 3, 9, 23, 59, 59, tzinfo=UTC)
    add(db, Reads(posts=5, users=2), before_midnight)
    add(db, Reads(posts=1, users=1), before_midnight)
    # An owned timeline's own posts are owned reads; a post expanded beside them is not.
    add(db, Reads(posts=7, expanded=1, owned=True), before_midnight + timedelta(seconds=1))
    add(db, Reads(posts=100), before_midnight, source="other")
    add(db, Reads(), before_midnight)  # nothing read: no row
    with db.connect() as conn:
        day1 = usage.reads(conn, "acme-x", date(2027, 3, 9), date(2027, 3, 9))
        day2 = usage.reads(conn, "acme-x", date(2027, 3, 10), date(2027, 3, 10))
        both = usage.reads(conn, "acme-x", date(2027, 3, 1), date(2027, 3, 31))
        late = usage.standing(conn, "acme-x", Budget(PRICES), before_midnight + timedelta(hours=1))
    assert (day1.posts, day1.users, day1.owned_posts) == (6, 3, 0)
    assert (day2.posts, day2.users, day2.owned_posts) == (1, 0, 7)
    assert (both.posts, both.users, both.owned_posts) == (7, 3, 7)
    # No reset day known: the calendar month, and "today" is the new UTC day.
    assert late.month == both and late.today == day2


def test_the_period_starts_on_the_networks_reset_day(db: Database) -> None:
    add(db, Reads(posts=50), datetime(2027, 3, 9, 12, tzinfo=UTC))  # the last day of a period
    add(db, Reads(posts=3), datetime(2027, 3, 10, 0, 0, 1, tzinfo=UTC))  # the first of the next
    x, clock = FakeX(), Clock(datetime(2027, 3, 10, 8, tzinfo=UTC))
    guard(db, x, clock).refresh("acme-x")  # learns cap_reset_day = 10
    with db.connect() as conn:
        st = usage.standing(conn, "acme-x", Budget(PRICES), clock())
    assert st.period_start == date(2027, 3, 10)
    assert st.resets_at == datetime(2027, 4, 10, tzinfo=UTC)
    assert st.month.posts == 3


def test_concurrent_writers_add_up(db: Database) -> None:
    now = datetime(2027, 3, 9, 12, tzinfo=UTC)
    errors: list[BaseException] = []

    def writer() -> None:
        try:
            for _ in range(20):
                add(db, Reads(posts=2, users=1), now)
        except BaseException as exc:  # reported on the test's thread
            errors.append(exc)

    threads = [threading.Thread(target=writer) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert errors == []
    with db.connect() as conn:
        total = usage.reads(conn, "acme-x", now.date(), now.date())
    assert (total.posts, total.users) == (160, 80)


# -- the network's figures ---------------------------------------------------------------------
def test_usage_is_read_at_most_every_15_minutes_whichever_instance_asks(db: Database) -> None:
    x, clock = FakeX(), Clock(datetime(2027, 3, 9, 12, tzinfo=UTC))
    first, second = guard(db, x, clock), guard(db, x, clock)  # two instances, one database
    first.before_poll("acme-x")
    second.before_poll("acme-x")
    assert x.asked == 1
    clock.now += USAGE_INTERVAL - timedelta(seconds=1)
    first.before_poll("acme-x")
    second.refresh("acme-x")
    assert x.asked == 1
    clock.now += timedelta(seconds=1)
    second.before_poll("acme-x")
    first.before_poll("acme-x")
    assert x.asked == 2
    with db.connect() as conn:
        kept = usage.ledger(conn, "acme-x")
    assert (kept.project_cap, kept.cap_reset_day, kept.read_at) == (2_000_000, 10, clock())


def test_a_failed_usage_read_is_said_once_and_waits_its_turn(
    db: Database, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="syncd.budget")
    x, clock = FakeX(), Clock(datetime(2027, 3, 9, 12, tzinfo=UTC))
    x.fail = TransientError("X API 503: over capacity")
    g = guard(db, x, clock)
    for _ in range(3):
        g.before_poll("acme-x")  # a failed read never stops the poll
        clock.now += USAGE_INTERVAL
    assert x.asked == 3
    x.fail = None
    g.before_poll("acme-x")
    messages = [r.getMessage() for r in caplog.records]
    assert len([m for m in messages if "could not be read" in m]) == 1
    assert len([m for m in messages if "read again" in m]) == 1


# -- thresholds --------------------------------------------------------------------------------
def test_each_threshold_is_logged_once_per_crossing(
    db: Database, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="syncd.budget")
    x, clock = FakeX(), Clock(datetime(2027, 3, 9, 12, tzinfo=UTC))
    first, second = (guard(db, x, clock, Budget(PRICES, posts=100)) for _ in range(2))
    add(db, Reads(posts=79), clock())
    first.review("acme-x")
    assert not caplog.records
    add(db, Reads(posts=1), clock())
    for g in (first, second, first, second):  # every poll of every instance looks
        g.review("acme-x")
    add(db, Reads(posts=5), clock())
    first.review("acme-x")  # 85 %: still the 80 % band
    add(db, Reads(posts=5), clock())
    second.review("acme-x")
    first.review("acme-x")
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 2
    assert "80% used this period: 80 posts" in warnings[0] and "pause at 90%" in warnings[0]
    assert "90% used" in warnings[1] and "backfills and gap recovery pause" in warnings[1]
    with pytest.raises(BudgetHeld, match="90% pauses backfills") as held:
        first.before_backfill("acme-x")
    # The guard learnt the reset day (the 10th) meanwhile: the 90 % said is not said again.
    assert held.value.until == datetime(2027, 3, 10, tzinfo=UTC)
    first.before_poll("acme-x")  # live polling goes on
    # A new period starts from nothing: the next crossing is said again.
    clock.now = datetime(2027, 3, 10, 1, tzinfo=UTC)
    first.before_backfill("acme-x")
    add(db, Reads(posts=80), clock())
    second.review("acme-x")
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 3 and "80% used this period: 80 posts" in warnings[2]


def test_a_cap_holds_every_read_of_the_source_until_its_reset(
    db: Database, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="syncd.budget")
    x, clock = FakeX(), Clock(datetime(2027, 3, 9, 12, tzinfo=UTC))
    first, second = guard(db, x, clock), guard(db, x, clock)
    first.before_poll("acme-x")  # the reset day is known: the 10th
    refused = UsageCapped("X API 429: Usage cap exceeded", resume_at=clock() + timedelta(hours=1))
    one = first.capped("acme-x", refused)
    two = second.capped("acme-x", refused)  # another instance's job met it too
    reset = datetime(2027, 3, 10, tzinfo=UTC)
    assert one.resume_at == two.resume_at == reset
    for g in (first, second):
        with pytest.raises(CappedSource) as info:
            g.before_poll("acme-x")
        assert info.value.resume_at == reset
        with pytest.raises(BudgetHeld, match="capped by the network"):
            g.before_backfill("acme-x")
    clock.now = reset
    second.before_poll("acme-x")
    first.before_poll("acme-x")
    first.before_backfill("acme-x")
    messages = [r.getMessage() for r in caplog.records]
    assert len([m for m in messages if "usage cap is reached" in m]) == 1
    assert len([m for m in messages if "cap has reset" in m]) == 1


def test_a_daily_cap_ends_at_midnight_and_an_unknown_reset_at_the_connectors_guess(
    db: Database,
) -> None:
    x, clock = FakeX(), Clock(datetime(2027, 3, 9, 12, tzinfo=UTC))
    x.fail = TransientError("no figures")
    g = guard(db, x, clock)
    guess = clock() + timedelta(hours=1)
    assert g.capped("acme-x", UsageCapped("capped", resume_at=guess)).resume_at == guess
    assert x.asked == 1  # it tried to learn the reset day, once
    clock.now = guess
    g.before_poll("acme-x")
    midnight = datetime(2027, 3, 10, tzinfo=UTC)
    daily = UsageCapped("capped", resume_at=midnight, period="Daily")
    assert g.capped("acme-x", daily).resume_at == midnight


# -- migration 0011 ----------------------------------------------------------------------------
def test_0011_adds_the_budget_tables_and_takes_them_away_again(state_url: str) -> None:
    db = Database(state_url)
    try:
        with db.engine.begin() as conn:
            command.upgrade(alembic_config(conn), "0011")
        assert {"api_reads", "source_budgets"} <= _tables(db)
        with db.engine.begin() as conn:
            command.downgrade(alembic_config(conn), "0010")
        assert not {"api_reads", "source_budgets"} & _tables(db)
        assert "gaps" in _tables(db)  # 0010's work stays
        db.upgrade()
        add(db, Reads(posts=1), datetime(2027, 3, 9, tzinfo=UTC))
    finally:
        db.dispose()


def _tables(db: Database) -> set[str]:
    with db.engine.connect() as conn:
        tables: Any = inspect(conn).get_table_names()
        return set(tables)
