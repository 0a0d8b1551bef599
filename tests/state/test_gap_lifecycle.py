"""A gap's way through :func:`syncd.backfill.gaps.recover`, on SQLite and PostgreSQL, with a source
whose plans the test sets: queued as a backfill job, planned again while nobody started it,
withdrawn when nothing reaches it any more, reported once, settled when its job ends."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta

import pytest

from syncd.backfill.gaps import REPLAN_AFTER, recover
from syncd.model import Account, GapPlan, Segment, Stream
from syncd.state import backfills, ingest
from syncd.state import gaps as st
from syncd.state.db import Database
from syncd.state.tables import backfills as backfill_jobs
from syncd.state.tables import gaps

T0 = datetime(2026, 11, 1, 12, 0, tzinfo=UTC)
ACME = Account("x", "acme", "100")


class Planner:
    """A source that can search whatever the test says, when the test says."""

    network = "x"

    def __init__(self) -> None:
        self.reach: datetime | None = T0 - timedelta(days=1)  # None: nothing reaches the gap
        self.asked: list[tuple[str, str]] = []

    def plan_gap(
        self, account: Account, stream: Stream, since_id: str, until_id: str, now: datetime
    ) -> GapPlan:
        self.asked.append((since_id, until_id))
        if self.reach is None:
            return GapPlan(unreachable="search_access = 'none'")
        seg = Segment(stream, "search_recent", self.reach, now, "q", since_id=since_id)
        return GapPlan((seg,))


@pytest.fixture
def planner(db: Database) -> Planner:
    with db.transaction() as conn:
        ingest.store_accounts(conn, "acme-x", [ACME], T0)
        conn.execute(
            gaps.insert().values(
                source="acme-x",
                network="x",
                account="acme",
                stream="mentions",
                since_id="5",
                until_id="9",
                walk_seen=800,
                state="open",
                detected_at=T0,
                updated_at=T0,
            )
        )
    return Planner()


def the_gap(db: Database) -> st.Gap:
    with db.connect() as conn:
        (gap,) = st.listing(conn)
    return gap


def job_of(db: Database, gap: st.Gap) -> backfills.Job:
    assert gap.backfill_id is not None
    with db.connect() as conn:
        job = backfills.get(conn, gap.backfill_id)
    assert job is not None
    return job


def sources(planner: Planner) -> dict[str, Planner]:
    return {"acme-x": planner}


def run(db: Database, planner: Planner, now: datetime) -> None:
    recover(db, sources(planner), now)  # type: ignore[arg-type]


def test_an_open_gap_becomes_a_queued_backfill_bounded_by_its_ids(
    db: Database, planner: Planner
) -> None:
    run(db, planner, T0)
    gap = the_gap(db)
    job = job_of(db, gap)
    assert (gap.state, gap.reason) == ("closing", None)
    assert (job.status, job.account, job.streams) == ("queued", "acme", ["mentions"])
    (seg,) = job.plan
    assert (seg.route, seg.since_id) == ("search_recent", "5")
    run(db, planner, T0 + timedelta(seconds=1))  # planned once: no second job
    assert the_gap(db).backfill_id == job.id and planner.asked == [("5", "9")]


def test_a_queued_recovery_is_planned_again_only_until_someone_starts_it(
    db: Database, planner: Planner
) -> None:
    run(db, planner, T0)
    first = job_of(db, the_gap(db))
    planner.reach = T0 - timedelta(hours=1)  # what search reaches moved on
    run(db, planner, T0 + REPLAN_AFTER / 2)  # too soon: the plan still holds
    assert job_of(db, the_gap(db)).plan == first.plan
    later = T0 + REPLAN_AFTER
    run(db, planner, later)
    assert job_of(db, the_gap(db)).plan[0].since == T0 - timedelta(hours=1)

    with db.transaction() as conn:
        assert backfills.claim(conn, first.id, "other:1", later)
    planner.reach = T0
    run(db, planner, later + 2 * REPLAN_AFTER)  # started: its plan is its own now
    assert job_of(db, the_gap(db)).plan[0].since == T0 - timedelta(hours=1)


def test_a_queued_recovery_nothing_reaches_any_more_is_withdrawn_and_reported_once(
    db: Database, planner: Planner, caplog: pytest.LogCaptureFixture
) -> None:
    run(db, planner, T0)
    job = job_of(db, the_gap(db))
    planner.reach = None
    with caplog.at_level(logging.WARNING, logger="syncd.gaps"):
        for minutes in (10, 11, 12):
            run(db, planner, T0 + timedelta(minutes=minutes))
    gap = the_gap(db)
    assert (gap.state, gap.reason, gap.backfill_id) == (
        "unclosable",
        "search_access = 'none'",
        None,
    )
    with db.connect() as conn:
        assert backfills.get(conn, job.id).status == "cancelled"  # type: ignore[union-attr]
    # Warnings only: where an earlier test configured syncd's logging, INFO records (the
    # recovery's start) are captured too.
    said = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    assert [m.count("cannot be recovered") for m in said] == [1], said

    planner.reach = T0 - timedelta(days=1)  # search_access changed: it is recovered after all
    run(db, planner, T0 + timedelta(minutes=20))
    gap = the_gap(db)
    assert gap.state == "closing" and gap.reported_at is None


@pytest.mark.parametrize(
    ("ended", "state"),
    [("done", "closed"), ("failed", "closing"), ("cancelled", "unclosable")],
)
def test_a_gap_follows_its_recovery_job_when_it_ends(
    db: Database, planner: Planner, ended: str, state: str
) -> None:
    run(db, planner, T0)
    job = job_of(db, the_gap(db))
    with db.transaction() as conn:
        conn.execute(backfill_jobs.update().values(new=42))
        backfills.finish(conn, job.id, ended, T0)
    run(db, planner, T0 + timedelta(seconds=1))
    gap = the_gap(db)
    assert gap.state == state
    if ended == "done":
        assert gap.recovered == 42 and gap.closed_at is not None
    if ended == "failed":  # open again, and given a new job in the same pass
        assert gap.backfill_id is not None and gap.backfill_id != job.id
    if ended == "cancelled":  # by an admin: not tried again
        assert gap.reason == f"its recovery (backfill {job.id}) was cancelled"
        assert gap.recovered == 42 and planner.asked == [("5", "9")]


def test_a_gap_of_a_source_no_longer_configured_waits(db: Database, planner: Planner) -> None:
    recover(db, {}, T0)
    assert the_gap(db).state == "open"


def counts(db: Database) -> Sequence[object]:
    with db.connect() as conn:
        c = st.counts(conn)
    return [c.by_state, c.recovered]


def test_counts_by_stream_and_state(db: Database, planner: Planner) -> None:
    assert counts(db) == [
        {("acme-x", "acme", "mentions", "open"): 1},
        {("acme-x", "acme", "mentions"): 0},
    ]
