"""Held authors are asked again when the CRM gains or changes people, not only on schedule:
the resolve stage against a scripted CRM, and Salesforce's change query against the sandbox."""

from __future__ import annotations

from datetime import timedelta

import pytest
from support.fake_crm import FakeCrm
from support.pipeline import BRAND, Clock, scripted, seed_cursor, two_page_walk
from support.salesforce import crm

import connectors.salesforce.identity.watch as sf_watch
from connectors.salesforce.identity.people import id18
from sandbox.salesforce.api import SalesforceSandbox
from syncd.errors import AuthError, TransientError
from syncd.model import CrmRef, PeopleChanges, PersonRecord, Stream
from syncd.pipeline import Pipeline, PipelineSettings
from syncd.resolver.stage import ResolveSettings
from syncd.state.db import Database

BOB = PersonRecord(CrmRef("Contact", "003BOB", "Bob Stone"), "Bob", "Stone", user_id="8")
STRANGER = PersonRecord(CrmRef("Contact", "003ZED", "Zed Quill"), "Zed", "Quill")


class WatchedCrm(FakeCrm):
    """A CRM whose people change between rounds, as the watch reports them."""

    def __init__(self) -> None:
        super().__init__({"7": "003A"})
        self.changes: list[PeopleChanges | Exception] = []
        self.marks: list[str | None] = []

    def people_changes(self, mark: str | None) -> PeopleChanges:
        self.marks.append(mark)
        if mark is None:
            return PeopleChanges((), "m0")
        answer = self.changes.pop(0) if self.changes else PeopleChanges((), mark)
        if isinstance(answer, Exception):
            raise answer
        return answer


def held_bob(
    db: Database, crm: WatchedCrm, check: timedelta = timedelta(minutes=5)
) -> tuple[Pipeline, Clock]:
    """Alice is linked by user id; Bob is nobody yet and waits an hour for his next try."""
    seed_cursor(db, "100")
    clock = Clock()
    resolve = ResolveSettings(backoff=timedelta(hours=1), crm_check=check)
    p = Pipeline(db, "sf", crm, PipelineSettings(retries=0, resolve=resolve), clock=clock)
    p.poll("src", scripted(two_page_walk()), BRAND, Stream.MENTIONS)
    r = p.resolve()
    assert (r.linked, r.unmatched, r.woken) == (1, 1, 0)
    return p, clock


def bob_appears(crm: WatchedCrm, *changed: PersonRecord, complete: bool = True) -> None:
    crm.people["8"] = BOB.ref.id
    crm.changes.append(PeopleChanges(changed, "m1", complete))


def test_a_new_person_wakes_the_held_author_they_could_be(db: Database) -> None:
    crm = WatchedCrm()
    p, clock = held_bob(db, crm)
    bob_appears(crm, STRANGER, BOB)
    clock.now += timedelta(minutes=6)  # the watch is due; Bob's own retry is not
    r = p.resolve()
    assert (r.woken, r.linked) == (1, 1)
    p.deliver()
    assert crm.records["x:204"].who.id == "003BOB"
    assert crm.marks == [None, "m0"]  # the mark handed back is the one stored


def test_an_unrelated_change_wakes_nobody(db: Database) -> None:
    crm = WatchedCrm()
    p, clock = held_bob(db, crm)
    crm.changes.append(PeopleChanges((STRANGER,), "m1"))
    clock.now += timedelta(minutes=6)
    r = p.resolve()
    assert (r.woken, r.looked_up) == (0, 0)


def test_too_many_changes_to_list_wake_everyone_held(db: Database) -> None:
    crm = WatchedCrm()
    p, clock = held_bob(db, crm)
    bob_appears(crm, STRANGER, complete=False)  # Bob is beyond what the answer listed
    clock.now += timedelta(minutes=6)
    assert p.resolve().linked == 1


def test_the_crm_is_asked_at_most_once_per_interval(db: Database) -> None:
    crm = WatchedCrm()
    p, clock = held_bob(db, crm)
    clock.now += timedelta(minutes=2)
    p.resolve()
    assert crm.marks == [None]


def test_a_zero_interval_never_asks(db: Database) -> None:
    crm = WatchedCrm()
    held_bob(db, crm, check=timedelta(0))
    assert crm.marks == []


def test_a_failing_watch_costs_only_the_early_wake_up(db: Database) -> None:
    crm = WatchedCrm()
    p, clock = held_bob(db, crm)
    crm.changes.append(TransientError("salesforce: 503", system="salesforce"))
    clock.now += timedelta(minutes=6)
    assert p.resolve().woken == 0  # the round itself goes on
    bob_appears(crm, BOB)
    clock.now += timedelta(minutes=6)
    assert p.resolve().linked == 1
    crm.changes.append(AuthError("salesforce: session refused", system="salesforce"))
    clock.now += timedelta(minutes=6)
    with pytest.raises(AuthError):
        p.resolve()


# -- Salesforce ------------------------------------------------------------------------------
def test_salesforce_reports_people_created_or_changed_since_the_mark(
    sb: SalesforceSandbox,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    if True:
        client = crm(sb)
        start = client.people_changes(None)
        assert start.people == () and start.mark  # an empty org starts from the epoch
        ann = sb.insert("Contact", {"FirstName": "Ann", "LastName": "Lee", "Email": "a@x.io"})
        sb.insert("Lead", {"LastName": "Done", "Company": "C", "IsConverted": True})
        first = client.people_changes(start.mark)
        assert [p.ref.id for p in first.people] == [ann] and first.complete
        assert first.people[0].email == "a@x.io"  # scored like any candidate
        assert client.people_changes(first.mark).people == ()  # nothing new since

        baseline = crm(sb).people_changes(None)  # a new watch starts from what exists
        assert baseline.people == ()
        lea = sb.insert("Lead", {"FirstName": "Lea", "LastName": "Ray", "Company": "R"})
        assert [p.ref.id for p in client.people_changes(first.mark).people] == [lea]

        before = client.api_calls
        monkeypatch.setattr(sf_watch, "CANDIDATE_LIMIT", 2)
        for n in range(3):
            sb.insert("Contact", {"LastName": f"Bulk{n}"})
        bulk = client.people_changes(first.mark)
        # One API call a check, however many person objects: a query each, one composite.
        assert not bulk.complete and client.api_calls - before == 1
        rest = client.people_changes(bulk.mark)
        names = [p.ref.name or "" for p in (*bulk.people, *rest.people)]
        assert sorted(names) == ["Bulk0", "Bulk1", "Bulk2", "Lea Ray"]  # none lost, none twice
        assert rest.complete


def test_a_page_of_changes_all_at_one_seen_second_moves_the_mark_on(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    at = "2026-11-22T18:00:00.000+0000"
    rows = [{"Id": f"003{n:012d}", "SystemModstamp": at} for n in range(3)]
    mark = sf_watch.Watermark(at, tuple(id18(r["Id"]) or "" for r in rows))
    fresh, after, whole = sf_watch.advance(mark, rows[:2])  # a capped page, nothing new
    assert fresh == [] and whole  # under the real cap: whole, nothing new, mark kept
    assert after == mark
    monkeypatch.setattr(sf_watch, "CANDIDATE_LIMIT", 2)
    fresh, after, whole = sf_watch.advance(mark, rows[:2])
    assert fresh == [] and not whole and after.stamp == "2026-11-22T18:00:01.000+0000"
