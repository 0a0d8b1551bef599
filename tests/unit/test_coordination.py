"""Several instances on one PostgreSQL state database: claims, job locks, conflicts.

The whole (three ``syncd run`` against the stand-ins, one killed) is test_multi_instance.py;
these pin each rule with two connections or two pipelines in one process.
"""

from __future__ import annotations

import logging
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import create_engine, select, text, update
from sqlalchemy.exc import OperationalError
from support.fake_crm import FakeCrm
from support.fake_source import FakeXSource, Script

from syncd.errors import TransientError
from syncd.model import (
    Account,
    Author,
    Cursor,
    Direction,
    HistoryRecord,
    Interaction,
    Page,
    Stream,
    WriteResult,
)
from syncd.pipeline import PipelineSettings
from syncd.pipeline.coordination import CoordinatedPipeline
from syncd.pipeline.deliver import CLAIM_BATCHES
from syncd.state import ingest, outbox
from syncd.state.coordination import (
    JobLocks,
    conflicts_transient,
    is_conflict,
    owner_id,
    retry_conflicts,
)
from syncd.state.db import Database
from syncd.state.status import status
from syncd.state.tables import cursors, deliveries, identities, interactions, links

BRAND = Account("x", "acme", "100")
T0 = datetime(2026, 11, 1, 12, 0, tzinfo=UTC)
LEASE = timedelta(seconds=60)
PG_ONLY = pytest.mark.parametrize(
    "state_url", [pytest.param("postgresql", marks=pytest.mark.postgres)], indirect=True
)


def post(post_id: str, author: str) -> Interaction:
    return Interaction(
        network="x",
        post_id=post_id,
        account="acme",
        stream=Stream.MENTIONS,
        direction=Direction.INBOUND,
        author_id=author,
        counterpart_id=author,
        text=f"post {post_id}",
        created_at=T0 + timedelta(minutes=int(post_id) % 1000),
        url=f"https://x.com/u/status/{post_id}",
        raw={"id": post_id},
    )


def store(
    db: Database, post_ids: Sequence[str], authors: Sequence[str] = ("7",), name: str = "User"
) -> None:
    page = Page(
        tuple(post(p, authors[i % len(authors)]) for i, p in enumerate(post_ids)),
        tuple(Author("x", a, f"user{a}", f"{name} {a}") for a in authors),
        Cursor(),
    )
    with db.transaction() as conn:
        ingest.store_page(
            conn,
            source="src",
            network="x",
            account=BRAND,
            page=page,
            crms=["sf"],
            brand_ids=set(),
            now=T0,
        )


def linked(db: Database, posts: int) -> list[int]:
    """``posts`` pending deliveries of one author linked to a Contact; their ids."""
    store(db, [str(200 + i) for i in range(posts)])
    with db.transaction() as conn:
        identity = conn.execute(select(identities.c.id)).scalar_one()
        conn.execute(
            links.insert().values(
                identity_id=identity,
                crm="sf",
                crm_object="Contact",
                crm_id="003A",
                matcher="crm_user_id",
                created_by="test",
                created_at=T0,
            )
        )
        return list(conn.scalars(select(deliveries.c.id).order_by(deliveries.c.id)))


def ids(ready: Sequence[outbox.ReadyDelivery]) -> set[int]:
    return {d.delivery_id for d in ready}


# -- claims ----------------------------------------------------------------------------------
@PG_ONLY
def test_claimed_deliveries_are_skipped_by_others_until_the_lease_lapses(db: Database) -> None:
    every = linked(db, 6)
    with db.engine.connect() as a, db.engine.connect() as b:
        with a.begin():
            mine = outbox.claim(a, "sf", T0, 4, "A", T0 + LEASE)
            assert ids(mine) == set(every[:4])  # oldest first
            # Uncommitted: B skips the rows A holds locked instead of waiting for them.
            with b.begin():
                theirs = outbox.claim(b, "sf", T0, 10, "B", T0 + LEASE)
            assert ids(theirs) == set(every[4:])
        with b.begin():
            # Committed claims: ready to their owner only, until the lease lapses.
            assert outbox.ready_deliveries(b, "sf", T0, 10, owner="C") == []
            assert ids(outbox.ready_deliveries(b, "sf", T0, 10, owner="A")) == set(every[:4])
            assert ids(outbox.claim(b, "sf", T0, 10, "C", T0 + LEASE)) == set()
            later = T0 + LEASE + timedelta(seconds=1)
            assert ids(outbox.ready_deliveries(b, "sf", later, 10, owner="C")) == set(every)


@PG_ONLY
def test_only_the_claimer_stores_an_answer_and_storing_ends_the_claim(db: Database) -> None:
    every = linked(db, 3)
    with db.transaction() as conn:
        outbox.claim(conn, "sf", T0, 3, "A", T0 + LEASE)
        later = T0 + LEASE * 2
        # A outlived its lease and B took the deliveries over: A's late answers are ignored.
        assert ids(outbox.claim(conn, "sf", later, 3, "B", later + LEASE)) == set(every)
        outbox.mark_written(conn, [(every[0], "00T1")], later, owner="A")
        outbox.mark_failed(
            conn, every[1], code="X", message="x", now=later, retry_at=None, owner="A"
        )
        outbox.mark_written(conn, [(every[0], "00T1")], later, owner="B")
        outbox.release(conn, [every[1], every[2]], "A")  # not A's to hand back
        found = conn.execute(select(deliveries.c.id, deliveries.c.claimed_by, deliveries.c.state))
        rows, states = {}, {}
        for r in found:
            rows[r.id], states[r.id] = r.claimed_by, r.state
        assert rows == {every[0]: None, every[1]: "B", every[2]: "B"}
        assert states == {every[0]: "written", every[1]: "pending", every[2]: "pending"}
        outbox.release(conn, [every[1], every[2]], "B")
        assert ids(outbox.ready_deliveries(conn, "sf", later, 10, owner="C")) == set(every[1:])


class GatedCrm(FakeCrm):
    """Accepts every record; the first call waits for ``gate`` (a slow CRM in another
    instance), so the test can act while its claim is held."""

    def __init__(self, gate: threading.Event | None = None) -> None:
        super().__init__()
        self.gate = gate
        self.calling = threading.Event()

    def upsert_history(self, records: Sequence[HistoryRecord]) -> list[WriteResult]:
        self.calling.set()
        if self.gate is not None:
            assert self.gate.wait(30)
            self.gate = None
        return super().upsert_history(records)


@PG_ONLY
def test_two_writers_share_the_ready_deliveries_without_sending_any_twice(
    db: Database,
) -> None:
    every = linked(db, 16)
    settings = PipelineSettings(write_batch=2)
    gate = threading.Event()
    slow, fast = GatedCrm(gate), GatedCrm()
    first = CoordinatedPipeline(db, "sf", slow, settings, locks=JobLocks(db.url))
    second = CoordinatedPipeline(db, "sf", fast, settings, locks=JobLocks(db.url))
    second.writer.owner = "another-host:1:beef"  # as another process would be
    worker = threading.Thread(target=first.deliver)
    worker.start()
    try:
        assert slow.calling.wait(10)  # the first holds its claim, mid-write
        assert second.deliver().written == len(every) - CLAIM_BATCHES * 2
    finally:
        gate.set()
        worker.join(30)
    assert len(slow.sent) == CLAIM_BATCHES * 2
    assert sorted(slow.sent + fast.sent) == sorted(set(slow.sent + fast.sent))  # none twice
    with db.connect() as conn:
        left = conn.execute(
            select(deliveries.c.id).where(
                (deliveries.c.state != "written") | deliveries.c.claimed_by.is_not(None)
            )
        ).all()
    assert left == []


@PG_ONLY
def test_a_reply_noted_waiting_beside_the_store_of_its_post_is_taken_again(db: Database) -> None:
    """Writer A stores the answered post while writer B notes the reply as written without
    it: neither sees the other's uncommitted rows, so the reply waits; the next claim looks
    back over the stores beside it and makes it pending, to be written with the post."""
    parent, reply = linked(db, 2)
    with db.transaction() as conn:
        replied = select(deliveries.c.interaction_id).where(deliveries.c.id == reply)
        conn.execute(
            update(interactions)
            .where(interactions.c.id == replied.scalar_subquery())
            .values(in_reply_to_post_id="200")
        )
    later = T0 + timedelta(seconds=5)
    with db.engine.connect() as a, db.engine.connect() as b, a.begin():
        outbox.mark_written(a, [(parent, "0ST1")], later)
        assert outbox.rewrite_replies(a, [parent], later) == 0  # B's note is not seen
        with b.begin():
            outbox.mark_written(b, [(reply, "0ST2")], later)
            outbox.await_replies(b, [reply])
            assert outbox.rewrite_answered(b, later, ids=[reply]) == 0  # nor A's write
    with db.transaction() as conn:
        assert outbox.rewrite_answered(conn, later, written_since=later - LEASE) == 1
        state = conn.execute(select(deliveries.c.state).where(deliveries.c.id == reply))
        assert state.scalar_one() == "pending"
        ready = outbox.ready_deliveries(conn, "sf", later, 10)
    assert [(d.delivery_id, d.reply_to_id) for d in ready] == [(reply, "0ST1")]


@PG_ONLY
def test_a_stopped_writer_hands_its_claim_back_at_once(db: Database) -> None:
    every = linked(db, 6)
    crm = GatedCrm()
    pipeline = CoordinatedPipeline(
        db,
        "sf",
        crm,
        PipelineSettings(write_batch=2),
        clock=lambda: T0,
        locks=JobLocks(db.url),
    )
    assert pipeline.deliver(max_batches=1).written == 2
    with db.connect() as conn:
        # Only what one batch needs was claimed; nothing stays claimed after it.
        assert conn.execute(select(deliveries.c.claimed_by).distinct()).scalars().all() == [None]
        assert ids(outbox.ready_deliveries(conn, "sf", T0, 10, owner="C")) == set(every[2:])


def _dead_owner() -> str:
    """An owner id of this host whose process has ended."""
    child = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                           capture_output=True, text=True, check=True)  # fmt: skip
    return f"{socket.gethostname()}:{child.stdout.strip()}:dead"


@PG_ONLY
def test_a_writer_takes_over_at_once_what_a_dead_process_of_this_host_claimed(
    db: Database,
) -> None:
    every = linked(db, 6)
    dead = _dead_owner()
    elsewhere = "another-host:1:alive"  # whether it runs cannot be told: its claim stays
    with db.transaction() as conn:
        outbox.claim(conn, "sf", T0, 3, dead, T0 + LEASE)
        outbox.claim(conn, "sf", T0, 2, elsewhere, T0 + LEASE)
    pipeline = CoordinatedPipeline(
        db, "sf", GatedCrm(), PipelineSettings(write_batch=10), clock=lambda: T0,
        locks=JobLocks(db.url),
    )  # fmt: skip
    # Well inside the dead process's lease: its three are written now, the other host's not.
    assert pipeline.deliver().written == 4
    with db.connect() as conn:
        held = conn.execute(
            select(deliveries.c.id, deliveries.c.claimed_by).where(
                deliveries.c.claimed_by.is_not(None)
            )
        ).all()
    assert sorted((r.id, r.claimed_by) for r in held) == [(i, elsewhere) for i in every[3:5]]


@pytest.mark.parametrize("state_url", ["sqlite", "postgresql"], indirect=True)
def test_status_shows_what_each_instance_is_writing(db: Database, state_url: str) -> None:
    linked(db, 3)
    now = datetime.now(UTC)  # status asks the database's clock
    with db.transaction() as conn:
        if state_url.startswith("postgresql"):
            outbox.claim(conn, "sf", now, 2, "host:1:a", now + LEASE)
            outbox.claim(conn, "sf", now - LEASE * 2, 1, "host:2:b", now - LEASE)  # lapsed
        assert status(conn, "sf").claims == (
            {"host:1:a": 2} if state_url.startswith("postgresql") else {}
        )


# -- job locks -------------------------------------------------------------------------------
@pytest.fixture
def locks(db: Database) -> Iterator[tuple[JobLocks, JobLocks]]:
    pair = (JobLocks(db.url), JobLocks(db.url))  # two instances: two sessions
    yield pair
    for held in pair:
        held.dispose()


@PG_ONLY
def test_a_job_runs_in_one_instance_at_a_time(locks: tuple[JobLocks, JobLocks]) -> None:
    one, two = locks
    with one.hold("poll:x:acme:mentions") as mine:
        assert mine
        with two.hold("poll:x:acme:mentions") as theirs:
            assert not theirs
        with two.hold("poll:x:acme:replies") as other_job:
            assert other_job
        assert two.run("poll:x:acme:mentions", lambda: pytest.fail("ran twice")) is None
    with two.hold("poll:x:acme:mentions") as now_free:
        assert now_free


@PG_ONLY
def test_instances_on_another_schema_do_not_exclude_each_other(
    db: Database, state_url: str
) -> None:
    schema = f"t_{uuid.uuid4().hex[:12]}"
    base = state_url.split("?", 1)[0]
    admin = create_engine(base)
    with admin.begin() as conn:
        conn.execute(text(f'CREATE SCHEMA "{schema}"'))
    elsewhere = JobLocks(Database(f"{base}?options=-csearch_path%3D{schema}").url)
    here = JobLocks(db.url)
    try:
        with here.hold("resolve") as mine, elsewhere.hold("resolve") as theirs:
            assert mine and theirs
    finally:
        here.dispose()
        elsewhere.dispose()
        with admin.begin() as conn:
            conn.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
        admin.dispose()


@PG_ONLY
def test_a_poll_another_instance_is_running_is_skipped_quietly(
    db: Database, locks: tuple[JobLocks, JobLocks], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="syncd")
    one, two = locks
    pipeline = CoordinatedPipeline(db, "sf", GatedCrm(), locks=two)
    source = FakeXSource(Script.of(BRAND, {}))
    with one.hold("poll:src:acme:mentions"), one.hold("resolve"):
        result = pipeline.poll("src", source, BRAND, Stream.MENTIONS)
        assert (result.pages, result.seen) == (0, 0)
        assert source.fetched == []  # not polled while another instance holds the stream
        assert pipeline.resolve().looked_up == 0
    assert [r.levelname for r in caplog.records if "skipped" in r.getMessage()] == [
        "DEBUG",
        "DEBUG",
    ]


def test_one_instance_walks_a_stream_and_another_takes_over_when_it_stops(
    db: Database, locks: tuple[JobLocks, JobLocks]
) -> None:
    """Each instance polls on its own schedule: a scheduled poll (``spacing``) leaves a
    stream another instance began walking less than that ago, so the one walking it keeps
    it, and another takes over once it stops. A poll brought forward for fresh hints (no
    spacing) walks regardless. On SQLite (one instance) nothing is left."""
    now = [T0]
    pg = db.dialect == "postgresql"
    one, two = (
        CoordinatedPipeline(db, "sf", GatedCrm(), clock=lambda: now[0], locks=held, owner=name)
        for held, name in zip(locks, ("host:1:a", "host:2:b"), strict=True)
    )
    empty = {Cursor(): Page((), (), Cursor())}
    source = FakeXSource(Script.of(BRAND, empty))
    spacing = timedelta(milliseconds=1500)  # one and a half of a 1 s interval

    def walked(pipeline: CoordinatedPipeline, spacing: timedelta | None) -> bool:
        before = len(source.fetched)
        pipeline.poll("src", source, BRAND, Stream.MENTIONS, spacing=spacing)
        return len(source.fetched) > before

    def at(ms: int) -> None:
        now[0] = T0 + timedelta(milliseconds=ms)

    assert walked(one, spacing)
    at(500)
    assert walked(two, spacing) is not pg  # the other instance walks it
    assert walked(two, None)  # brought forward for hints: walks
    at(900)
    assert walked(one, spacing)  # its own run, started early or late: walks
    at(1500)
    assert walked(two, spacing) is not pg
    at(2400)
    assert walked(two, spacing)  # nobody walked it for 1.5 s: the first instance stopped
    at(2900)
    assert walked(one, spacing) is not pg  # now the second instance's
    other = Account("x", "globex", "200")  # streams are taken each on their own
    one.poll("src", FakeXSource(Script.of(other, empty)), other, Stream.MENTIONS, spacing=spacing)
    with db.connect() as conn:
        began = {
            r.account: (r.walk_started_by, r.walk_started_at) for r in conn.execute(select(cursors))
        }
    if pg:
        assert began == {
            "acme": ("host:2:b", T0 + timedelta(milliseconds=2400)),
            "globex": ("host:1:a", now[0]),
        }
    else:
        assert set(began.values()) == {(None, None)}
    # A process of this host that walked the stream and ended (this instance before a
    # restart: another owner id) keeps nothing: the stream is taken at once.
    ended = CoordinatedPipeline(
        db, "sf", GatedCrm(), clock=lambda: now[0], locks=locks[0], owner=_dead_owner()
    )
    at(5000)
    assert walked(ended, spacing)
    at(5100)
    assert walked(one, spacing)


def test_on_sqlite_every_job_lock_is_granted(tmp_path: Any) -> None:
    db = Database(f"sqlite:///{tmp_path / 'state.db'}")
    try:
        one, two = JobLocks(db.url), JobLocks(db.url)
        with one.hold("resolve") as mine, two.hold("resolve") as theirs:
            assert mine and theirs
    finally:
        db.dispose()


def test_the_owner_names_this_process() -> None:
    host, pid, nonce = owner_id().rsplit(":", 2)
    assert host and int(pid) > 0 and len(nonce) == 8
    assert owner_id() == owner_id()  # one lease per process


# -- conflicts -------------------------------------------------------------------------------
class _Orig(Exception):
    def __init__(self, sqlstate: str) -> None:
        super().__init__(f"sqlstate {sqlstate}")
        self.sqlstate = sqlstate


def conflict(sqlstate: str = "40P01") -> OperationalError:
    return OperationalError("UPDATE …", {}, _Orig(sqlstate))


def test_a_conflict_is_retried_and_other_errors_are_not() -> None:
    answers: list[Any] = [conflict(), conflict("40001"), "done"]

    def run() -> str:
        answer = answers.pop(0)
        if isinstance(answer, Exception):
            raise answer
        return str(answer)

    assert retry_conflicts(run) == "done"
    assert is_conflict(conflict()) and not is_conflict(conflict("23505"))
    calls = 0

    def broken() -> None:
        nonlocal calls
        calls += 1
        raise conflict("23505")

    with pytest.raises(OperationalError):
        retry_conflicts(broken)
    assert calls == 1
    with pytest.raises(TransientError, match="state database conflict"):
        conflicts_transient(lambda: (_ for _ in ()).throw(conflict()))


@PG_ONLY
def test_a_page_that_deadlocks_with_another_instance_is_stored_on_a_retry(
    db: Database, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="syncd.state")
    store(db, ["100"], authors=("1", "2"))  # both authors known
    errors: list[BaseException] = []

    def ingest_page() -> None:
        # Takes author 1's row, then waits for author 2's, which the other holds. The
        # authors' profiles changed: a known, unchanged author is only read, never locked.
        try:
            store(db, ["101", "102"], authors=("1", "2"), name="Renamed")
        except BaseException as exc:
            errors.append(exc)

    with db.engine.connect() as other:
        other.execute(update(identities).where(identities.c.user_id == "2").values(url="b"))
        page = threading.Thread(target=ingest_page)
        page.start()
        time.sleep(0.3)  # the page waits first, so its deadlock check fires first
        # Waits for the page's lock on author 1: a deadlock, which PostgreSQL breaks by
        # failing the page's savepoint; this statement then goes through.
        other.execute(update(identities).where(identities.c.user_id == "1").values(url="b"))
        other.commit()
        page.join(30)
    assert errors == []
    with db.connect() as conn:
        stored = conn.execute(select(interactions.c.post_id)).scalars().all()
    assert sorted(stored) == ["100", "101", "102"]
    assert "database conflict" in caplog.text
