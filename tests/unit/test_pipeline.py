"""The pipeline's transactional rules, on SQLite and PostgreSQL, with scripted connectors.

The connectors here are in-memory scripts so each rule can be pinned exactly; the same rules
are exercised through real HTTP, tweepy and simple-salesforce in test_end_to_end.py.
"""

from __future__ import annotations

import os
import stat
import threading
from collections.abc import Mapping, Sequence
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import func, select
from support.fake_crm import FakeCrm
from support.pipeline import (
    BRAND,
    T0,
    Clock,
    author,
    count,
    make,
    post,
    scripted,
    seed_cursor,
    two_page_walk,
)

from syncd.errors import (
    ExternalError,
    PaginationExpired,
    PartialWrite,
    RateLimited,
    TransientError,
)
from syncd.model import (
    Account,
    CrmRef,
    Cursor,
    Direction,
    HistoryRecord,
    Page,
    Quarantined,
    Stream,
    WriteResult,
)
from syncd.pipeline import Pipeline, PipelineSettings
from syncd.pipeline import deliver as writer
from syncd.state import ingest as st
from syncd.state.db import Database
from syncd.state.tables import deliveries, identities, interactions, links, quarantine


def test_walk_stores_pages_and_moves_cursor_only_at_the_end(db: Database) -> None:
    seed_cursor(db, "100")
    source = scripted(two_page_walk())
    pipeline = make(db, FakeCrm({}))
    result = pipeline.poll("src", source, BRAND, Stream.MENTIONS)
    assert (result.pages, result.new, result.queued) == (2, 3, 3)
    with db.connect() as conn:
        assert st.load_cursor(conn, "src", "acme", Stream.MENTIONS) == Cursor(since_id="205")
    assert count(db, interactions) == 3
    assert count(db, deliveries) == 3
    assert count(db, identities) == 2


def test_crash_mid_walk_resumes_from_the_stored_page(db: Database) -> None:
    seed_cursor(db, "100")
    script = two_page_walk()
    script[Cursor("100", "p2", "205")] = TransientError("connection reset")
    pipeline = make(db, FakeCrm({}))
    with pytest.raises(TransientError):
        pipeline.poll("src", scripted(script), BRAND, Stream.MENTIONS)
    with db.connect() as conn:
        # The first page is stored, with the cursor naming the second: since_id not yet moved.
        assert st.load_cursor(conn, "src", "acme", Stream.MENTIONS) == Cursor("100", "p2", "205")
    assert count(db, interactions) == 2

    source = scripted(two_page_walk())
    result = pipeline.poll("src", source, BRAND, Stream.MENTIONS)
    assert source.fetched == [Cursor("100", "p2", "205")]  # only the missing page is read again
    assert result.new == 1
    assert count(db, interactions) == 3


def test_shutdown_stops_between_pages_and_the_next_start_resumes(db: Database) -> None:
    seed_cursor(db, "100")
    pipeline = make(db, FakeCrm({}))
    source = scripted(two_page_walk())
    pipeline.stopping.set()
    first = pipeline.poll("src", source, BRAND, Stream.MENTIONS)
    assert (first.pages, first.new) == (1, 2)
    with db.connect() as conn:
        assert st.load_cursor(conn, "src", "acme", Stream.MENTIONS).in_walk
    pipeline.stopping.clear()
    second = pipeline.poll("src", source, BRAND, Stream.MENTIONS)
    assert (second.pages, second.new) == (1, 1)
    assert source.fetched[-1] == Cursor("100", "p2", "205")


def test_replayed_page_adds_nothing(db: Database) -> None:
    seed_cursor(db, "100")
    pipeline = make(db, FakeCrm({}))
    pipeline.poll("src", scripted(two_page_walk()), BRAND, Stream.MENTIONS)
    seed_cursor(db, "100")  # as if the cursor had not been saved
    again = pipeline.poll("src", scripted(two_page_walk()), BRAND, Stream.MENTIONS)
    assert (again.seen, again.new, again.queued) == (3, 0, 0)
    assert count(db, interactions) == 3
    assert count(db, deliveries) == 3


def test_refused_pagination_token_restarts_the_walk(db: Database) -> None:
    seed_cursor(db, "100", Cursor("100", "stale", "999"))
    script = two_page_walk()
    script[Cursor("100", "stale", "999")] = PaginationExpired("invalid token", status=400)
    source = scripted(script)
    result = make(db, FakeCrm({})).poll("src", source, BRAND, Stream.MENTIONS)
    assert source.fetched[0] == Cursor("100", "stale", "999")
    assert source.fetched[1] == Cursor(since_id="100")
    assert result.new == 3


def test_only_the_source_says_a_pagination_token_expired(db: Database) -> None:
    """A 400 the source did not call an expired token is any refusal: the walk is not
    restarted, and keeps its place."""
    seed_cursor(db, "100", Cursor("100", "stale", "999"))
    script = two_page_walk()
    script[Cursor("100", "stale", "999")] = ExternalError("bad request", status=400)
    source = scripted(script)
    with pytest.raises(ExternalError, match="bad request"):
        make(db, FakeCrm({})).poll("src", source, BRAND, Stream.MENTIONS)
    assert source.fetched == [Cursor("100", "stale", "999")]
    with db.connect() as conn:
        assert st.load_cursor(conn, "src", "acme", Stream.MENTIONS) == Cursor("100", "stale", "999")


def test_brand_counterparts_and_bad_items(db: Database) -> None:
    with db.transaction() as conn:
        st.store_accounts(conn, "src", [BRAND, Account("x", "acmesupport", "101")], T0)
    page = Page(
        interactions=(post("301", "7"), post("302", "101")),  # 302: another brand account
        authors=(author("7", "alice"), author("101", "acmesupport")),
        next_cursor=Cursor(since_id="302"),
        quarantined=(Quarantined("x", "created_at is not a date", {"id": "303"}, "303"),),
    )
    result = make(db, FakeCrm({})).poll(
        "src",
        scripted({Cursor(): page}),
        BRAND,
        Stream.MENTIONS,
    )
    assert (result.new, result.queued, result.quarantined) == (2, 1, 1)
    with db.connect() as conn:
        row = conn.execute(select(quarantine)).mappings().one()
    assert row["reason"] == "created_at is not a date"
    assert row["raw"] == {"id": "303"}


def test_handles_follow_renames_but_identity_stays(db: Database) -> None:
    pages = {
        Cursor(): Page((post("401", "7"),), (author("7", "alice"),), Cursor(since_id="401")),
        Cursor(since_id="401"): Page(
            (post("402", "7"),), (author("7", "alice_new"),), Cursor(since_id="402")
        ),
    }
    pipeline = make(db, FakeCrm({}))
    source = scripted(pages)
    pipeline.poll("src", source, BRAND, Stream.MENTIONS)
    pipeline.poll("src", source, BRAND, Stream.MENTIONS)
    with db.connect() as conn:
        rows = conn.execute(select(identities.c.user_id, identities.c.handle)).all()
    assert rows == [("7", "alice_new")]


def test_resolve_holds_unknown_authors_and_writes_when_a_link_appears(db: Database) -> None:
    seed_cursor(db, "100")
    clock = Clock()
    crm = FakeCrm({"7": "003A"})  # alice is a Contact; bob (8) is unknown
    pipeline = make(db, crm, clock)
    pipeline.poll("src", scripted(two_page_walk()), BRAND, Stream.MENTIONS)

    resolved = pipeline.resolve()
    assert (resolved.looked_up, resolved.linked, resolved.unmatched) == (2, 1, 1)
    assert len(crm.lookups) == 1  # one batched look-up, not one per author
    delivered = pipeline.deliver()
    assert delivered.written == 2
    assert sorted(crm.records) == ["x:203", "x:205"]
    # Oldest first, with the subject the CRM shows.
    assert [r.external_id for r in crm.upserts[0]] == ["x:203", "x:205"]
    assert crm.upserts[0][0].subject == "X mention from @alice"
    assert crm.upserts[0][0].who == CrmRef("Contact", "003A")

    # bob is not asked about again before his back-off has passed ...
    assert pipeline.resolve().looked_up == 0
    crm.people["8"] = "003B"
    clock.now += timedelta(minutes=6)
    # ... then he is, and his held mention goes out.
    assert pipeline.resolve().linked == 1
    assert pipeline.deliver().written == 1
    assert sorted(crm.records) == ["x:203", "x:204", "x:205"]
    assert pipeline.deliver().attempted == 0
    assert count(db, deliveries, deliveries.c.state == "written") == 3


def test_outbound_reply_lands_in_the_customer_history(db: Database) -> None:
    reply = post("501", "100", direction=Direction.OUTBOUND, counterpart="7")
    page = Page((reply,), (author("100", "acme"), author("7", "alice")), Cursor(since_id="501"))
    crm = FakeCrm({"7": "003A"})
    pipeline = make(db, crm)
    with db.transaction() as conn:
        st.store_accounts(conn, "src", [BRAND], T0)
    pipeline.poll("src", scripted({Cursor(): page}), BRAND, Stream.REPLIES)
    pipeline.resolve()
    pipeline.deliver()
    record = crm.records["x:501"]
    assert record.subject == "X reply from @acme to @alice"
    assert record.direction is Direction.OUTBOUND
    assert record.who.id == "003A"


def test_per_record_errors_retry_relink_or_dead_letter(db: Database) -> None:
    seed_cursor(db, "100")
    clock = Clock()
    crm = FakeCrm({"7": "003A", "8": "003B"})
    pipeline = make(db, crm, clock)
    pipeline.poll("src", scripted(two_page_walk()), BRAND, Stream.MENTIONS)
    pipeline.resolve()
    crm.errors = {
        "x:203": "UNABLE_TO_LOCK_ROW",
        "x:204": "ENTITY_IS_DELETED",
        "x:205": "FIELD_CUSTOM_VALIDATION_EXCEPTION",
    }
    result = pipeline.deliver()
    assert (result.written, result.retrying, result.relinking, result.dead) == (0, 1, 1, 1)
    with db.connect() as conn:
        dead = (
            conn.execute(select(deliveries.c.last_error_code).where(deliveries.c.state == "dead"))
            .scalars()
            .all()
        )
        bob_links = conn.execute(
            select(func.count())
            .select_from(links)
            .join(identities, identities.c.id == links.c.identity_id)
            .where(identities.c.user_id == "8")
        ).scalar_one()
        attempts = dict(
            conn.execute(
                select(interactions.c.post_id, deliveries.c.attempts).join(
                    interactions, interactions.c.id == deliveries.c.interaction_id
                )
            ).all()
        )
    assert dead == ["FIELD_CUSTOM_VALIDATION_EXCEPTION"]
    assert bob_links == 0  # the deleted Contact's link is gone; bob goes back to resolution
    # A lock counts against the record's attempts; its person being merged away does not.
    assert (attempts["203"], attempts["204"]) == (1, 0)

    crm.people["8"] = "003C"  # the survivor
    pipeline.resolve()
    clock.now += timedelta(minutes=1)
    result = pipeline.deliver()
    assert result.written == 2
    assert crm.records["x:204"].who.id == "003C"
    assert "x:205" not in crm.records


class FailingCrm(FakeCrm):
    """Refuses its ``fail_at``-th upsert call (counting from 1) outright."""

    def __init__(self, people: Mapping[str, str], fail_at: int) -> None:
        super().__init__(people)
        self.fail_at = fail_at

    def upsert_history(self, records: Sequence[HistoryRecord]) -> list[WriteResult]:
        if len(self.upserts) + 1 == self.fail_at:
            self.upserts.append([])
            raise ExternalError("the CRM is down", system="crm", status=503)
        return super().upsert_history(records)


def test_a_failed_batch_keeps_what_the_batches_before_it_wrote(
    db: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(writer, "CALL_BATCHES", 1)  # a CRM call a batch
    seed_cursor(db, "100")
    crm = FailingCrm({"7": "003A", "8": "003B"}, fail_at=2)
    settings = PipelineSettings(retries=0, write_batch=1)
    pipeline = Pipeline(db, "sf", crm, settings, clock=Clock())
    pipeline.poll("src", scripted(two_page_walk()), BRAND, Stream.MENTIONS)
    pipeline.resolve()
    with pytest.raises(ExternalError):
        pipeline.deliver()
    # The first batch's answer is stored (answers are stored a few batches at a time).
    assert count(db, deliveries, deliveries.c.state == "written") == 1
    assert pipeline.deliver().written == 2
    sent = [r.external_id for batch in crm.upserts for r in batch]
    assert sorted(sent) == ["x:203", "x:204", "x:205"]  # none sent twice


class TargetDownCrm(FakeCrm):
    """Writes two history targets; ``down``'s records fail as a whole in every call (a CRM
    without that object), the other target's beside them are written."""

    def __init__(
        self, people: Mapping[str, str], down: str | None, error: type[ExternalError]
    ) -> None:
        super().__init__(people, targets=("task", "social_post"))
        self.down = down
        self.error = error
        self.batches: list[list[HistoryRecord]] = []

    def upsert_history(self, records: Sequence[HistoryRecord]) -> list[WriteResult]:
        self.batches.append(list(records))
        if self.down is None:
            return super().upsert_history(records)
        failed = self.error(f"no {self.down} in this CRM", system="crm", status=404)
        others = [r for r in records if r.target != self.down]
        if not others:
            raise failed
        written = iter(super().upsert_history(others))
        results = [None if r.target == self.down else next(written) for r in records]
        raise PartialWrite(results, {self.down: failed})


def test_each_target_is_one_delivery_and_one_target_down_holds_back_no_other(
    db: Database,
) -> None:
    seed_cursor(db, "100")
    crm = TargetDownCrm({"7": "003A", "8": "003B"}, down="social_post", error=ExternalError)
    pipeline = Pipeline(db, "sf", crm, PipelineSettings(retries=0), clock=Clock())
    assert pipeline.poll("src", scripted(two_page_walk()), BRAND, Stream.MENTIONS).queued == 6
    pipeline.resolve()
    with pytest.raises(ExternalError):
        pipeline.deliver()
    # Both targets went in one call; the Tasks are written though the SocialPosts failed.
    assert [{r.target for r in call} for call in crm.batches] == [{"task", "social_post"}]
    assert sorted(crm.records) == ["x:203", "x:204", "x:205"]
    with db.connect() as conn:
        states = conn.execute(
            select(deliveries.c.target, deliveries.c.state, deliveries.c.attempts).order_by(
                deliveries.c.id
            )
        ).all()
    # Not an attempt of the records: the target failed, as a call does.
    assert sorted(states) == [("social_post", "pending", 0)] * 3 + [("task", "written", 1)] * 3

    crm.down = None
    assert pipeline.deliver().written == 3
    assert [{r.target for r in call} for call in crm.batches[1:]] == [{"social_post"}]
    assert sorted(crm.records) == [
        "social_post|x:203",
        "social_post|x:204",
        "social_post|x:205",
        "x:203",
        "x:204",
        "x:205",
    ]
    assert set(crm.created.values()) == {1}  # each record made once
    assert pipeline.deliver().written == 0


def test_a_target_failing_for_a_moment_is_sent_again_without_the_other(db: Database) -> None:
    """A transient failure of one target (a part of a Composite call answered 503) is retried
    at once, with the records not answered only."""
    seed_cursor(db, "100")
    crm = TargetDownCrm({"7": "003A", "8": "003B"}, down="social_post", error=TransientError)
    flaky = crm.upsert_history

    def once(records: Sequence[HistoryRecord]) -> list[WriteResult]:
        try:
            return flaky(records)
        finally:
            crm.down = None

    crm.upsert_history = once  # type: ignore[method-assign]
    pipeline = Pipeline(db, "sf", crm, PipelineSettings(retries=1, retry_max_wait=0), clock=Clock())
    pipeline.poll("src", scripted(two_page_walk()), BRAND, Stream.MENTIONS)
    pipeline.resolve()
    assert pipeline.deliver().written == 6
    assert [{r.target for r in call} for call in crm.batches] == [
        {"task", "social_post"},
        {"social_post"},
    ]
    assert sorted(crm.sent) == sorted(crm.records) and set(crm.created.values()) == {1}


def test_a_rate_limit_on_one_target_stops_the_others_too(db: Database) -> None:
    """A rate limit (or refused credentials) is the CRM's as a whole, not one target's."""
    seed_cursor(db, "100")
    crm = FakeCrm({"7": "003A", "8": "003B"}, targets=("task", "social_post"))
    pipeline = Pipeline(db, "sf", crm, PipelineSettings(retries=0), clock=Clock())
    pipeline.poll("src", scripted(two_page_walk()), BRAND, Stream.MENTIONS)
    pipeline.resolve()
    crm.faults.append("rate_limit")
    with pytest.raises(RateLimited):
        pipeline.deliver()
    assert crm.received == 0  # the second target's batch was not sent
    assert pipeline.deliver().written == 6


def test_a_read_never_holds_the_write_lock(db: Database) -> None:
    seed_cursor(db, "100")
    with db.connect() as reading:
        before = reading.execute(select(func.count()).select_from(interactions)).scalar_one()
        # A writer (here the same thread) commits while the read is open...
        with db.transaction() as conn:
            st.store_page(
                conn,
                source="src",
                network="x",
                account=BRAND,
                page=Page((post("301", "7"),), (author("7", "alice"),), Cursor()),
                crms=["sf"],
                brand_ids=set(),
                now=T0,
            )
        # ... and the read goes on seeing its snapshot.
        assert reading.execute(select(func.count()).select_from(interactions)).scalar_one() == (
            before if db.dialect == "sqlite" else before + 1
        )
    assert count(db, interactions) == before + 1


def test_sqlite_state_file_is_private(tmp_path: Path) -> None:
    path = tmp_path / "sub" / "state.db"
    database = Database(f"sqlite:///{path}")
    database.upgrade()
    database.upgrade()  # idempotent
    assert database.revision() is not None
    database.dispose()
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600


class _Named:
    """A source that names its account: a Facebook Page configured by its id."""

    network = "facebook"

    def __init__(self, name: str | None) -> None:
        self.name, self.asked = name, 0

    def resolve_accounts(self, handles: Sequence[str]) -> dict[str, Account]:
        self.asked += 1
        return {h: Account("facebook", h, h, display_name=self.name) for h in handles}


def test_an_account_stored_by_its_id_without_a_name_is_asked_for_its_name(db: Database) -> None:
    pipeline = Pipeline(db, "sf", FakeCrm({}), PipelineSettings())
    with db.transaction() as conn:  # as stored before names were kept
        st.store_accounts(conn, "fb", [Account("facebook", "100", "100")], T0)
    source = _Named("Acme")
    [found], _ = pipeline.accounts("fb", source, ["100"])  # type: ignore[arg-type]
    assert (found.user_id, found.display_name, source.asked) == ("100", "Acme", 1)
    [again], _ = pipeline.accounts("fb", source, ["100"])  # type: ignore[arg-type]
    assert again == found and source.asked == 1  # named now: read from state


class _Waits(threading.Event):
    """A stopping flag that notes the waits asked of it instead of sleeping."""

    def __init__(self) -> None:
        super().__init__()
        self.asked: list[float | None] = []

    def wait(self, timeout: float | None = None) -> bool:
        self.asked.append(timeout)
        return self.is_set()


@pytest.mark.parametrize("age", [0.25, 5.0])
def test_a_partial_call_of_young_posts_waits_once_for_more(db: Database, age: float) -> None:
    # [writer] batch_wait: a live round with fewer records than one CRM call carries holds
    # them while its oldest record was queued less than the wait ago, and only until then,
    # whatever the posts' own stamps say (here hours ahead of this clock).
    seed_cursor(db, "100")
    crm = FakeCrm({"7": "003A", "8": "003B"})
    clock = Clock()
    settings = PipelineSettings(retries=0, batch_wait=1.0)
    pipeline = Pipeline(db, "sf", crm, settings, clock=clock)
    pipeline.poll("src", scripted(two_page_walk()), BRAND, Stream.MENTIONS)
    pipeline.resolve()
    waits = _Waits()
    pipeline.writer.stopping = waits
    clock.now = T0 + timedelta(seconds=age)  # every record was queued at T0: `age` ago
    assert pipeline.deliver(max_batches=50).written == 3
    assert waits.asked == ([pytest.approx(0.75)] if age < 1.0 else [])
    assert len(crm.upserts) == 1  # one call for all, after the wait


def test_a_run_that_writes_everything_never_waits(db: Database) -> None:
    seed_cursor(db, "100")
    clock = Clock()
    crm = FakeCrm({"7": "003A", "8": "003B"})
    pipeline = Pipeline(db, "sf", crm, PipelineSettings(batch_wait=1.0), clock=clock)
    pipeline.poll("src", scripted(two_page_walk()), BRAND, Stream.MENTIONS)
    pipeline.resolve()
    waits = _Waits()
    pipeline.writer.stopping = waits
    clock.now = T0 + timedelta(minutes=203)
    assert pipeline.deliver().written == 3  # poll --once, a backfill: drained at once
    assert waits.asked == []
