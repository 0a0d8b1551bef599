"""The resolve stage in the pipeline: unmatched policies, provenance, review, merges."""

from __future__ import annotations

import threading
import time
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import select, text
from support.fake_crm import FakeCrm
from support.pipeline import (
    BRAND,
    Clock,
    author,
    count,
    post,
    scripted,
    seed_cursor,
    two_page_walk,
)
from support.salesforce import crm

from connectors.salesforce.crm import SalesforceCrm
from sandbox.salesforce.api import SalesforceSandbox
from syncd.model import Candidate, CrmRef, Cursor, Page, PersonRecord, Stream
from syncd.pipeline import Pipeline, PipelineSettings
from syncd.resolver import stage
from syncd.resolver.stage import ResolveSettings, Unmatched
from syncd.state import authors, ingest, linking
from syncd.state.db import Database
from syncd.state.tables import candidates, deliveries, link_events, links


def pipeline_with(db: Database, crm: FakeCrm, unmatched: Unmatched = "hold") -> Pipeline:
    settings = PipelineSettings(retries=0, resolve=ResolveSettings(unmatched={"x": unmatched}))
    return Pipeline(db, "sf", crm, settings, clock=Clock())


def walked(db: Database, crm: FakeCrm, unmatched: Unmatched = "hold") -> Pipeline:
    seed_cursor(db, "100")
    p = pipeline_with(db, crm, unmatched)
    p.poll("src", scripted(two_page_walk()), BRAND, Stream.MENTIONS)
    return p


def events(db: Database) -> list[dict[str, Any]]:
    with db.connect() as conn:
        return [dict(r._mapping) for r in conn.execute(link_events.select().order_by("id"))]


def test_a_link_records_its_matcher_score_reasons_and_maker(db: Database) -> None:
    p = walked(db, FakeCrm({"7": "003A"}))
    p.resolve()
    with db.connect() as conn:
        (info,) = authors.links_list(conn, "sf")
        history = authors.history(conn, "sf", info.identity_id)
    assert info.link is not None
    assert (info.link.matcher, info.link.score, info.created_by) == ("crm_user_id", 1.0, "resolver")
    assert info.link.reasons == ("user id 7 on file",)
    assert [(e["action"], e["crm_id"], e["actor"]) for e in history] == [
        ("link", "003A", "resolver")
    ]


def test_unmatched_hold_keeps_the_author_waiting(db: Database) -> None:
    p = walked(db, FakeCrm({"7": "003A"}))
    r = p.resolve()
    assert (r.linked, r.unmatched, r.leads, r.skipped) == (1, 1, 0, 0)
    assert count(db, deliveries, deliveries.c.state == "pending") == 3


def test_unmatched_lead_creates_one_lead_and_writes_to_it(db: Database) -> None:
    crm = FakeCrm({"7": "003A"})
    p = walked(db, crm, "lead")
    r = p.resolve()
    assert (r.linked, r.leads) == (1, 1)
    assert list(crm.leads) == ["8"]
    p.deliver()
    assert crm.records["x:204"].who == crm.leads["8"]
    assert [e["matcher"] for e in events(db)] == ["crm_user_id", "lead_created"]


def test_unmatched_skip_keeps_the_interactions_but_never_writes_them(db: Database) -> None:
    crm = FakeCrm({"7": "003A"})
    p = walked(db, crm, "skip")
    assert p.resolve().skipped == 1
    p.deliver()
    assert "x:204" not in crm.records
    assert count(db, deliveries, deliveries.c.state == "skipped") == 1
    assert count(db, deliveries, deliveries.c.state == "written") == 2


def test_unsure_matches_wait_in_the_review_queue_and_rejections_stick(db: Database) -> None:
    crm = FakeCrm({"7": "003A"})
    crm.person_records = [
        PersonRecord(CrmRef("Contact", "003B1", "Bob"), first_name="Bob"),
        PersonRecord(CrmRef("Contact", "003B2", "Bob"), first_name="Bob"),
    ]
    p = walked(db, crm)
    assert p.resolve().review == 1
    with db.connect() as conn:
        (review,) = authors.reviews(conn, "sf")
    assert review.key.user_id == "8"
    assert {c.ref.id for _, c in review.candidates} == {"003B1", "003B2"}
    first_id = review.candidates[0][0]
    with db.transaction() as conn:
        assert linking.reject(conn, "sf", [first_id], "admin", Clock()()) == 1
        left = authors.reviews(conn, "sf")[0].candidates
    assert len(left) == 1 and left[0][0] != first_id
    assert events(db)[-1]["action"] == "reject"


@pytest.mark.parametrize("survivor", [CrmRef("Contact", "003Z", "Alice (merged)"), None])
def test_a_merged_contact_is_followed_and_a_deleted_one_re_resolved(
    db: Database, survivor: CrmRef | None
) -> None:
    crm = FakeCrm({"7": "003A", "8": "003B"})
    p = walked(db, crm)
    p.resolve()
    crm.errors = {"x:203": "ENTITY_IS_DELETED", "x:205": "ENTITY_IS_DELETED"}
    crm.merged = {"003A": survivor}
    first = p.deliver()
    assert first.relinking == 2 and first.dead == 0
    if survivor is not None:
        p.deliver()  # the held records go to the survivor at once
        assert crm.records["x:203"].who == survivor
        assert [e["action"] for e in events(db)][-1] == "merge"
    else:
        assert "x:203" not in crm.records
        assert [e["action"] for e in events(db)][-1] == "unlink"
        crm.people["7"] = "003C"  # a rep re-creates alice
        p.resolve()
        p.deliver()
        assert crm.records["x:203"].who.id == "003C"


# -- a recycled handle (issue 16, item 6) ----------------------------------------------------
def _newcomer_mentions(db: Database, client: SalesforceCrm, copy: bool) -> Pipeline:
    """X user 999 took the handle @janedoe and mentions the brand; with ``copy`` the stage
    decides from its local copy of the CRM's ids and handles, else it asks the CRM."""
    seed_cursor(db, "100")
    page = Page((post("205", "999"),), (author("999", "janedoe"),), Cursor(since_id="205"))
    check = timedelta(minutes=5) if copy else timedelta(0)
    settings = PipelineSettings(retries=0, resolve=ResolveSettings(crm_check=check))
    p = Pipeline(db, "sf", client, settings, clock=Clock())
    p.poll("src", scripted({Cursor(since_id="100"): page}), BRAND, Stream.MENTIONS)
    return p


@pytest.mark.parametrize("copy", [True, False], ids=["local copy", "crm look-up"])
def test_a_handle_held_under_another_user_id_goes_to_review_never_linked(
    db: Database,
    sb: SalesforceSandbox,
    monkeypatch: pytest.MonkeyPatch,
    copy: bool,
) -> None:
    jane = sb.insert(
        "Contact",
        {"FirstName": "Jane", "LastName": "Doe", "X_User_Id__c": "111", "X_Handle__c": "janedoe"},
    )
    client = crm(sb)
    asked: list[object] = []
    real = client.lookup
    monkeypatch.setattr(client, "lookup", lambda keys: asked.append(keys) or real(keys))  # type: ignore[func-returns-value]
    r = _newcomer_mentions(db, client, copy).resolve()
    assert (r.linked, r.review) == (0, 1)
    assert bool(asked) is not copy  # the path under test answered
    with db.connect() as conn:
        assert count(db, links) == 0
        (review,) = authors.reviews(conn, "sf")
    ((_, candidate),) = review.candidates
    assert (candidate.ref.id, candidate.matcher) == (jane, "crm_handle")
    assert candidate.reasons[0] == (
        "holds X user id 111, not this author's 999: the handle @janedoe may have changed owners"
    )


# -- the on-file linker ----------------------------------------------------------------------
def test_the_on_file_linker_links_the_authors_the_copy_knows_without_a_call(
    db: Database, sb: SalesforceSandbox, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The daemon's "link" job: a new author the local copy knows is linked with no request
    to the CRM; one it does not know is left to the resolver's search. Before the copy is
    loaded it does nothing (the resolver loads it and decides)."""
    known = sb.insert("Contact", {"LastName": "Known", "X_User_Id__c": "777"})
    settings = PipelineSettings(retries=0, resolve=ResolveSettings(crm_check=timedelta(minutes=5)))
    p = Pipeline(db, "sf", crm(sb), settings, clock=Clock())
    seed_cursor(db, "100")
    page = Page(
        (post("205", "777"), post("206", "888")),
        (author("777", "known"), author("888", "stranger")),
        Cursor(since_id="206"),
    )
    p.poll("src", scripted({Cursor(since_id="100"): page}), BRAND, Stream.MENTIONS)
    assert p.link_on_file().linked == 0  # no copy yet
    assert count(db, links) == 0

    p.resolve()  # loads the copy, links 777, holds 888 for later
    with db.transaction() as conn:
        conn.execute(links.delete())  # as if 777 were new since: due again
        conn.execute(deliveries.update().values(state="pending"))
    asked = sb.request_count
    assert p.link_on_file().linked == 1
    assert sb.request_count == asked
    with db.connect() as conn:
        linked = conn.execute(select(links.c.crm_id, links.c.created_by)).all()
    assert linked == [(known, "resolver")]

    # Each run starts a little below the highest identity it tried (one committed late on
    # PostgreSQL may sit there); further below, an author is the resolver's, whose chain
    # asks the copy first.
    with db.transaction() as conn:
        conn.execute(links.delete())
    monkeypatch.setattr(stage, "LATE_IDS", 0)
    assert p.link_on_file().linked == 0
    monkeypatch.setattr(stage, "LATE_IDS", 1000)
    assert p.link_on_file().linked == 1
    with db.transaction() as conn:
        conn.execute(links.delete())
    monkeypatch.setattr(stage, "LATE_IDS", 0)
    assert p.resolve().linked == 1


@pytest.mark.parametrize(
    "state_url", [pytest.param("postgresql", marks=pytest.mark.postgres)], indirect=True
)
def test_two_linkers_linking_one_author_at_once_make_one_link_and_one_event(
    db: Database,
) -> None:
    """The on-file linker and a resolver run (another instance's too) link the same new
    author at once: the second read no link, and its insert waits for the first's commit;
    the first link stands, the second is no change, and one event says so."""
    p = walked(db, FakeCrm())
    with db.connect() as conn:
        identity = conn.execute(select(deliveries.c.identity_id)).scalars().first()
    assert identity is not None
    pick = Candidate(CrmRef("Contact", "003A", "Alice"), 1.0, "crm_user_id", ("user id",))
    second: list[int] = []

    def other() -> None:
        try:
            with db.engine.connect() as b, b.begin():
                second.append(linking.link_many(b, "sf", [(identity, pick)], "resolver", p.clock()))
        except BaseException as exc:  # seen by the test, not lost with the thread
            second.append(-1)
            raise AssertionError(repr(exc)) from exc

    with db.engine.connect() as a:
        with a.begin():
            assert linking.link_many(a, "sf", [(identity, pick)], "resolver", p.clock()) == 1
            worker = threading.Thread(target=other)
            worker.start()
            with db.engine.connect() as watch:  # until the other waits on this one's row
                waiting = text(
                    "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' "
                    "AND datname = current_database()"
                )
                while not watch.execute(waiting).scalar_one() and worker.is_alive():
                    watch.rollback()  # pg_stat_activity holds still within a transaction
                    time.sleep(0.05)
        worker.join(30)
    assert second == [0]
    assert count(db, links) == 1
    assert [e["identity_id"] for e in events(db)] == [identity]


def test_linking_many_accepts_each_ones_chosen_candidate_and_stales_the_rest(
    db: Database,
) -> None:
    now = datetime(2026, 3, 1, tzinfo=UTC)

    def offered(person: str) -> Candidate:
        return Candidate(CrmRef("Contact", person), 0.7, "fuzzy_name", ("same name",))

    with db.transaction() as conn:
        ids = ingest.upsert_identities(conn, "x", [], ["1", "2", "3"], now)
        for uid in ("1", "2", "3"):
            linking.queue(conn, "sf", ids[uid], [offered("003A"), offered("003B")], now)
        linking.link_many(
            conn, "sf", [(ids["1"], offered("003A")), (ids["2"], offered("003B"))], "admin", now
        )
    with db.connect() as conn:
        states = {
            (uid, r.crm_id): r.state
            for uid in ("1", "2", "3")
            for r in conn.execute(candidates.select().where(candidates.c.identity_id == ids[uid]))
        }
    assert states == {
        ("1", "003A"): "accepted",
        ("1", "003B"): "stale",
        ("2", "003A"): "stale",
        ("2", "003B"): "accepted",
        ("3", "003A"): "open",
        ("3", "003B"): "open",
    }
