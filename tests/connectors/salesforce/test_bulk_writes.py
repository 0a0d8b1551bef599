"""A large backlog goes through a Bulk API 2.0 job (``[writer] bulk_threshold``), against the
Salesforce stand-in's ingest endpoints through simple-salesforce, on each backend.

Each record is written once whatever step the writer stops at: a job stored but never sent
is aborted and its records sent again in another; a job sent but not noted is followed to
its results. A job costs the same handful of calls whatever its size.
"""

from __future__ import annotations

import csv
import io
from collections import Counter
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import select
from support.salesforce import crm

from connectors.salesforce.bulk import _lines
from sandbox.salesforce.api import SalesforceSandbox
from sandbox.server import Request
from syncd.errors import ExternalError
from syncd.model import Account, Author, Cursor, DeliveryState, Direction, Interaction, Page, Stream
from syncd.pipeline import Pipeline, PipelineSettings
from syncd.pipeline.history import build_record
from syncd.state import bulk as bulk_state
from syncd.state import outbox
from syncd.state.db import Database
from syncd.state.ingest import ingest_page
from syncd.state.tables import bulk_jobs, deliveries

T0 = datetime(2026, 11, 2, 12, 0, tzinfo=UTC)
PEOPLE = 5


def _world(db: Database, sb: SalesforceSandbox, posts: int, threshold: int = 100) -> Pipeline:
    for n in range(PEOPLE):
        sb.insert("Contact", {"LastName": f"Person {n}", "X_User_Id__c": f"90{n}"})
    items = [
        Interaction("x", str(10_000 + i), "acme", Stream.MENTIONS, Direction.INBOUND,
                    f"90{i % PEOPLE}", f"90{i % PEOPLE}", f"@acme post {i}",
                    T0 + timedelta(seconds=i), f"https://x.com/p/{i}")
        for i in range(posts)
    ]  # fmt: skip
    people = tuple(Author("x", f"90{n}", f"person{n}") for n in range(PEOPLE))
    with db.transaction() as conn:
        ingest_page(
            conn, source="x", network="x", account=Account("x", "acme", "1"),
            stream=Stream.MENTIONS, page=Page(tuple(items), people, Cursor(since_id="1")),
            crms=["sf"], brand_ids={"1"}, now=T0,
        )  # fmt: skip
    settings = PipelineSettings(bulk_threshold=threshold)
    pipeline = Pipeline(db, "sf", crm(sb), settings, lambda: T0 + timedelta(hours=1))
    assert pipeline.resolve(check_crm=True).linked == PEOPLE
    return pipeline


def _tasks(sb: SalesforceSandbox) -> Counter[str]:
    return Counter(str(t["Social_Post_Id__c"]) for t in sb.records("Task"))


def _states(db: Database) -> Counter[str]:
    with db.connect() as conn:
        return Counter(conn.scalars(select(deliveries.c.state)))


def _jobs(db: Database) -> list[str]:
    with db.connect() as conn:
        return list(conn.scalars(select(bulk_jobs.c.state).order_by(bulk_jobs.c.id)))


def _bulk_calls(sb: SalesforceSandbox) -> Counter[str]:
    calls: Counter[str] = Counter()

    def see(req: Request) -> None:
        if not req.subrequest and req.endpoint != "login":
            calls["bulk" if "/jobs/ingest" in req.path else req.endpoint] += 1

    sb.on_request("*", see)
    return calls


@pytest.mark.parametrize("posts", [300, 1500])
def test_a_backlog_is_one_bulk_job_of_a_handful_of_calls_whatever_its_size(
    db: Database, sb: SalesforceSandbox, posts: int
) -> None:
    pipeline = _world(db, sb, posts)
    calls = _bulk_calls(sb)
    # The daemon's bounded run: the job made and sent; its answers come on a later run.
    first = pipeline.deliver(max_batches=50)
    assert first.attempted == 0 and _jobs(db) == ["sent"]
    pipeline.writer.bulk._next.clear()  # type: ignore[union-attr]  # its first look is due
    second = pipeline.deliver(max_batches=50)
    assert second.written == posts and _jobs(db) == ["done"]
    assert _tasks(sb) == {f"x:{10_000 + i}": 1 for i in range(posts)}
    assert _states(db) == {DeliveryState.WRITTEN: posts}
    # create, upload, close; a look at the job; its two result lists: never per record.
    assert calls == {"bulk": 6}, calls
    assert pipeline.deliver().attempted == 0 and calls == {"bulk": 6}


def test_a_run_that_writes_everything_waits_for_its_job(
    db: Database, sb: SalesforceSandbox, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``syncd poll --once`` and a backfill's last round: every answer stored on return,
    a job still processing looked at again, a little later each time."""
    from syncd.pipeline import bulk

    monkeypatch.setattr(bulk, "FIRST_LOOK", 0.05)  # the same doubling, in less time
    pipeline = _world(db, sb, 200)
    sb.bulk2.in_progress_polls = 2
    calls = _bulk_calls(sb)
    assert pipeline.deliver().written == 200 and _jobs(db) == ["done"]
    assert calls == {"bulk": 8}, calls  # three looks: InProgress twice, then done


def test_below_the_threshold_records_go_in_batches(db: Database, sb: SalesforceSandbox) -> None:
    pipeline = _world(db, sb, 99)
    calls = _bulk_calls(sb)
    assert pipeline.deliver().written == 99
    assert _jobs(db) == [] and "bulk" not in calls


def test_a_job_whose_upload_failed_is_aborted_and_its_records_sent_in_another(
    db: Database, sb: SalesforceSandbox
) -> None:
    pipeline = _world(db, sb, 200)
    sb.inject("status", endpoint="bulk2_upload", status=503, count=1)
    with pytest.raises(ExternalError):
        pipeline.deliver()  # the job was stored and made, its upload refused
    assert _jobs(db) == ["made"]
    # Never sent: aborted, its deliveries free; a new job takes them, and is waited for.
    assert pipeline.deliver().written == 200
    assert _jobs(db) == ["abandoned", "done"]
    assert _tasks(sb) == {f"x:{10_000 + i}": 1 for i in range(200)}


def test_a_job_sent_before_the_writer_stopped_is_followed_to_its_results(
    db: Database, sb: SalesforceSandbox
) -> None:
    """The writer stopped right after the job was closed, before noting it was sent: the job
    is found "made", Salesforce says it is no longer open, and its results are taken."""
    pipeline = _world(db, sb, 150)
    client = pipeline.writer.crm
    with db.connect() as conn:
        ready = outbox.ready_deliveries(conn, "sf", T0 + timedelta(hours=1), 1000)
    job_id = client.start_bulk("task")  # type: ignore[attr-defined]
    with db.transaction() as conn:
        bulk_state.store_job(conn, "sf", "task", job_id, [d.delivery_id for d in ready], T0)
    records = [build_record(d) for d in ready]
    assert client.send_bulk(job_id, "task", records) == 150  # type: ignore[attr-defined]
    assert _jobs(db) == ["made"]

    assert pipeline.deliver().written == 150
    assert _jobs(db) == ["done"]
    assert _tasks(sb) == {f"x:{10_000 + i}": 1 for i in range(150)}


def test_records_the_org_refuses_in_a_job_are_dead_letters(
    db: Database, sb: SalesforceSandbox
) -> None:
    pipeline = _world(db, sb, 120)
    sb.set_picklist("Task", "Status", ["Not Started"], restricted=True)
    result = pipeline.deliver()
    assert result.dead == 120 and _states(db) == {DeliveryState.DEAD: 120}
    with db.connect() as conn:
        codes = set(conn.scalars(select(deliveries.c.last_error_code)))
    assert codes == {"INVALID_OR_NULL_FOR_RESTRICTED_PICKLIST"}


def test_records_one_upload_cannot_hold_go_out_afterwards(
    db: Database, sb: SalesforceSandbox, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An upload holds 100 MB of CSV: the records past it are freed and written after."""
    from connectors.salesforce import bulk

    monkeypatch.setattr(bulk, "MAX_UPLOAD_BYTES", 40_000)
    pipeline = _world(db, sb, 400)
    assert pipeline.deliver().written == 400
    with db.connect() as conn:
        sizes = list(conn.scalars(select(bulk_jobs.c.records).order_by(bulk_jobs.c.id)))
    assert 0 < sizes[0] < 400  # the first job took what fitted
    assert _tasks(sb) == {f"x:{10_000 + i}": 1 for i in range(400)}
    assert _states(db) == {DeliveryState.WRITTEN: 400}


def test_a_bulk_job_has_a_column_for_every_field_a_task_may_carry(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from dataclasses import replace

    from support.salesforce import record, settings

    from connectors.salesforce.records import task_columns, task_record
    from syncd.model import CrmRef

    monkeypatch.setenv("SF_PASSWORD", "pw")
    monkeypatch.setenv("SF_TOKEN", "token")
    s = settings(priority={"task": {"High": "High"}})
    r = replace(
        record(1, "003000000000001"),
        who=CrmRef("Contact", "003000000000001", None, "High"),
        case_id="500000000000001",
    )
    full = task_record(r, s)
    assert "Priority" in full and "WhatId" in full
    assert set(full) - {"attributes"} <= set(task_columns(s))


def test_records_a_job_wrote_for_someone_forgotten_meanwhile_are_deleted(
    db: Database, sb: SalesforceSandbox
) -> None:
    from syncd.compliance import forget

    pipeline = _world(db, sb, 200)
    pipeline.deliver(max_batches=50)  # the job sent; its answers not yet taken
    assert _jobs(db) == ["sent"]
    forget.forget(
        db, "x", "900", crm_name="sf", crm=pipeline.writer.crm, lease=1.0,
        clock=lambda: T0 + timedelta(hours=1), wait=lambda _: None,
    )  # fmt: skip
    pipeline.writer.bulk._next.clear()  # type: ignore[union-attr]
    pipeline.deliver()
    assert _jobs(db) == ["done"]
    # Person 0 wrote every fifth post: none of theirs is left, all the others are.
    assert _tasks(sb) == {f"x:{10_000 + i}": 1 for i in range(200) if i % PEOPLE}


@pytest.mark.parametrize(
    "text",
    [
        "",
        "a,b\n",
        "a,b\n1,2",  # no newline at the end
        'a,b\r\n"one\nline and\r\nanother",2\r\n',  # a quoted field over lines
        'a,b\n"\u2028, ""quoted""",\n\n',
    ],
)
def test_bulk_results_are_read_line_by_line_as_a_file_reads_them(text: str) -> None:
    assert list(_lines(text)) == list(io.StringIO(text))
    assert list(csv.DictReader(_lines(text))) == list(csv.DictReader(io.StringIO(text)))
