"""A page token X no longer takes (it answers 400) starts the read again from its beginning:
a live walk from its since_id, a backfill segment from its start. The X connector says so
(PaginationExpired); nothing of the core reads an HTTP status. tweepy against the X sandbox,
on SQLite and PostgreSQL."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from sqlalchemy import select, update
from support.fake_crm import FakeCrm

from connectors.x.source import XSource
from sandbox.x.api import XSandbox
from syncd.backfill.runner import Runner
from syncd.model import Account, BackfillState, Cursor, Page, Stream
from syncd.pipeline import Pipeline, PipelineSettings
from syncd.state import backfills
from syncd.state import ingest as st
from syncd.state.db import Database
from syncd.state.tables import backfills as backfills_table
from syncd.state.tables import interactions

TOKEN = "sandbox-x-bearer"


def _stored(db: Database) -> set[str]:
    with db.connect() as conn:
        return {r[0] for r in conn.execute(select(interactions.c.post_id))}


def _pipeline(db: Database) -> Pipeline:
    return Pipeline(db, "sf", FakeCrm(), PipelineSettings(retries=0))


def test_a_walk_whose_stored_token_is_refused_reads_again_from_since_id(db: Database) -> None:
    with XSandbox(bearer_token=TOKEN) as x:
        account = Account("x", "acme", x.add_user("acme")["id"])
        fan = x.add_user("fan")["id"]
        posted = [str(x.add_post(fan, f"@acme hello {i}")["id"]) for i in range(25)]
        source = XSource(TOKEN, api_base_url=x.url, page_size=10)
        pipeline = _pipeline(db)
        try:
            pipeline.accounts("x", source, ["acme"])
            with db.transaction() as conn:  # a walk paused on a token X has since forgotten
                st.ingest_page(
                    conn,
                    source="x",
                    network="x",
                    account=account,
                    stream=Stream.MENTIONS,
                    page=Page((), (), Cursor(None, "stale", posted[-1])),
                    crms=["sf"],
                    brand_ids=set(),
                    now=datetime.now(UTC),
                )
            result = pipeline.poll("x", source, account, Stream.MENTIONS)
        finally:
            source.close()
    assert result.new == len(posted)
    assert set(posted) <= _stored(db)
    with db.connect() as conn:
        assert st.load_cursor(conn, "x", "acme", Stream.MENTIONS) == Cursor(since_id=posted[-1])


def test_a_backfill_segment_whose_token_is_refused_starts_again(db: Database) -> None:
    with XSandbox(bearer_token=TOKEN) as x:
        account = Account("x", "acme", x.add_user("acme")["id"])
        fan = x.add_user("fan")["id"]
        now = datetime.now(UTC)
        posted = [
            str(
                x.add_post(fan, f"@acme hi {i}", created_at=now - timedelta(hours=2, seconds=i))[
                    "id"
                ]
            )
            for i in range(150)  # search pages hold 100: two pages
        ]
        source = XSource(TOKEN, api_base_url=x.url)
        pipeline = _pipeline(db)
        try:
            pipeline.accounts("x", source, ["acme"])
            since = now - timedelta(days=1)
            plan = source.plan_backfill(account, [Stream.MENTIONS], since, now, now)
            with db.transaction() as conn:
                job_id = backfills.create(
                    conn,
                    source="x",
                    network="x",
                    account="acme",
                    since=since,
                    until=now,
                    streams=["mentions"],
                    plan=plan,
                    estimate=None,
                    status=BackfillState.QUEUED,
                    now=now,
                )
            runner = Runner(pipeline, "x", source, job_id)
            assert runner.claim()
            assert not runner.step().done  # the first page; the job keeps the next token
            with db.transaction() as conn:  # which X no longer takes by the next step
                conn.execute(
                    update(backfills_table)
                    .where(backfills_table.c.id == job_id)
                    .values(token="garbage!")
                )
            steps = 0
            while not runner.step().done:
                steps += 1
                assert steps < 10, "the segment never ended"
        finally:
            source.close()
    assert set(posted) <= _stored(db)
    with db.connect() as conn:
        job = backfills.get(conn, job_id)
    assert job is not None and job.status == BackfillState.DONE
