"""The resolver's local copy of the CRM people carrying a network user id or handle: loaded
page by page from Salesforce (the stand-in, through simple-salesforce), kept current by the
change watch, reloaded daily, dropped for people a write finds gone; and decided exactly as
the CRM look-up decides."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from support.crm_keys import T, k, linked_to, person, stage_on, x
from support.pipeline import Clock
from support.salesforce import crm

import connectors.salesforce.identity.keys as sf_keys
from sandbox.salesforce.api import SalesforceSandbox
from syncd.errors import TransientError
from syncd.resolver import on_file
from syncd.state import crm_keys
from syncd.state.db import Database

LATER = "2026-11-22T11:00:00.000+0000"


# -- deciding, as the CRM look-up decides ----------------------------------------------------
def test_contacts_before_leads_user_id_before_handle_and_no_guessing() -> None:
    ann_c = person("Contact", "003A", x(handle="ann"))
    ann_l = person("Lead", "00QA", x(user_id="1"), rank=1)
    bob = person("Contact", "003B", x(user_id="2", handle="someone"))
    bob_by_handle = person("Contact", "003C", x(handle="bob"))
    twins = [person("Contact", f"003T{n}", x(handle="twin")) for n in (1, 2)]
    twin_lead = person("Lead", "00QT", x(user_id="3"), rank=1)
    everyone = [ann_c, ann_l, bob, bob_by_handle, *twins, twin_lead]
    found = on_file.matches([k("1", "@Ann"), k("2", "bob"), k("3", "TWIN"), k("4")], everyone)
    assert found[k("1", "@Ann")].ref.id == "003A"  # a Contact's handle beats a Lead's id
    assert found[k("1", "@Ann")].matcher == "crm_handle"
    assert (found[k("2", "bob")].ref.id, found[k("2", "bob")].matcher) == ("003B", "crm_user_id")
    assert k("3", "TWIN") not in found  # two Contacts: ambiguous, and the Lead is not asked
    assert k("4") not in found


def test_the_copy_replaces_people_whole_and_never_goes_back_in_time(db: Database) -> None:
    now = Clock().now
    with db.transaction() as conn:
        crm_keys.put(conn, "sf", [person("Contact", "003A", x("1", "@Ann"), stamp=LATER)], now)
        crm_keys.put(conn, "sf", [person("Contact", "003A", x("9", "old"), stamp=T)], now)
        assert [p.keys for p in crm_keys.find(conn, "sf", [k("1")])] == [(x("1", "ann"),)]
        assert crm_keys.find(conn, "sf", [k("9", "old")]) == []  # the older copy was refused
        assert crm_keys.find(conn, "sf", [k("0", "ANN")])[0].ref.id == "003A"  # by handle
        crm_keys.put(conn, "sf", [person("Contact", "003A", stamp=LATER)], now)  # fields cleared
        assert crm_keys.find(conn, "sf", [k("1", "ann")]) == []
        crm_keys.put(conn, "sf", [person("Lead", "00QB", x("2"), rank=1)], now)
        crm_keys.forget(conn, "sf", ["00QB"])
        assert crm_keys.find(conn, "sf", [k("2")]) == []
        assert crm_keys.find(conn, "other", [k("1")]) == []  # one copy per CRM


def test_a_load_page_older_than_the_copy_leaves_its_priority_alone(db: Database) -> None:
    """The change watch stored a newer version of the person (a new priority) while a load
    was under way: the load's older page keeps neither its keys nor its priority."""
    from syncd.model import CrmRef, KeysOnFile, KeysPage

    now = Clock().now
    newer = KeysOnFile(CrmRef("Contact", "003A", "Ann", "High"), (x("1"),), 0, LATER)
    older = KeysOnFile(CrmRef("Contact", "003A", "Ann", "Low"), (x("1"),), 0, T)
    with db.transaction() as conn:
        crm_keys.put(conn, "sf", [newer], now)
        crm_keys.store_page(conn, "sf", KeysPage((older,), "next"), now)
        assert [p.ref.priority for p in crm_keys.find(conn, "sf", [k("1")])] == ["High"]


# -- Salesforce ------------------------------------------------------------------------------
def test_salesforce_lists_everyone_with_an_id_or_handle_page_by_page(
    sb: SalesforceSandbox,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(sf_keys, "KEYS_PAGE", 2)
    ann = sb.insert("Contact", {"LastName": "Ann", "X_User_Id__c": "1"})
    bob = sb.insert("Contact", {"LastName": "Bob", "X_Handle__c": "@Bob"})
    cy = sb.insert("Contact", {"LastName": "Cy", "X_User_Id__c": "3", "X_Handle__c": "cy"})
    sb.insert("Contact", {"LastName": "Nobody"})
    dee = sb.insert("Lead", {"LastName": "Dee", "Company": "D", "X_Handle__c": "dee"})
    sb.insert("Lead", {"LastName": "Was", "Company": "W", "X_Handle__c": "w", "IsConverted": True})
    client = crm(sb)
    pages, after = [], None
    before = client.api_calls
    while True:
        page = client.keys_on_file(after)
        pages.append(page)
        if (after := page.next) is None:
            break
    assert client.api_calls - before == len(pages) == 3  # 2 + 1 Contacts, then the Lead
    got = {p.ref.id: (p.ref.object, p.rank, p.keys) for page in pages for p in page.people}
    assert got == {
        ann: ("Contact", 0, (x("1"),)),
        bob: ("Contact", 0, (x(handle="Bob"),)),
        cy: ("Contact", 0, (x("3", "cy"),)),
        dee: ("Lead", 1, (x(handle="dee"),)),  # a converted Lead is history, not a person
    }
    assert all(p.stamp for page in pages for p in page.people)
    # A cursor that cannot be read starts over rather than stopping short.
    assert client.keys_on_file("{not json").people[0].ref.id == sorted([ann, bob, cy])[0]


def test_salesforce_changes_say_what_each_changed_person_now_carries(
    sb: SalesforceSandbox,
) -> None:
    client = crm(sb)
    ann = sb.insert("Contact", {"LastName": "Ann", "X_Handle__c": "ann"})
    start = client.people_changes(None)
    later = datetime.now(UTC) + timedelta(seconds=2)  # stamps are whole seconds
    sb.clock = lambda: later
    sb.update("Contact", ann, {"X_Handle__c": None})
    bob = sb.insert("Contact", {"LastName": "Bob", "X_User_Id__c": "2"})
    changes = client.people_changes(start.mark)
    assert {p.ref.id: p.keys for p in changes.on_file} == {ann: (), bob: (x("2"),)}


def test_ids_and_handles_come_from_the_copy_not_a_query_per_batch(
    db: Database,
    sb: SalesforceSandbox,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    alice = sb.insert("Contact", {"LastName": "Alice", "X_User_Id__c": "7"})
    client = crm(sb)
    asked: list[object] = []
    monkeypatch.setattr(client, "lookup", lambda keys: asked.append(keys) or {})  # type: ignore[func-returns-value]
    p, clock = stage_on(db, client)
    r = p.resolve()
    assert (r.linked, r.unmatched) == (1, 1) and asked == []
    assert list(linked_to(db).values()) == [alice]

    # Bob's Contact gains his handle: the watch carries it into the copy, Bob is linked.
    bob = sb.insert("Contact", {"LastName": "Bob"})
    sb.update("Contact", bob, {"X_Handle__c": "@BOB"})
    clock.now += timedelta(minutes=6)
    assert p.resolve().linked == 1 and asked == []
    assert sorted(linked_to(db).values()) == sorted([alice, bob])
    p.deliver()
    assert {t["WhoId"] for t in sb.records("Task")} == {alice, bob}


def test_new_authors_unknown_to_the_copy_wait_for_a_fuller_search_batch(
    db: Database,
    sb: SalesforceSandbox,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    alice = sb.insert("Contact", {"LastName": "Alice", "X_User_Id__c": "7"})
    client = crm(sb)
    searches: list[object] = []
    real = client.find_people
    monkeypatch.setattr(client, "find_people", lambda q: searches.append(q) or real(q))  # type: ignore[func-returns-value]
    p, clock = stage_on(db, client)
    # The daemon's resolver gathers: Alice, on file, is linked at once; Bob, new and
    # unknown, waits for company before anyone searches for him.
    r = p.resolve(gather=timedelta(seconds=10))
    assert (r.linked, r.unmatched) == (1, 0) and searches == []
    assert list(linked_to(db).values()) == [alice]
    clock.now += timedelta(seconds=11)
    assert p.resolve(gather=timedelta(seconds=10)).unmatched == 1 and len(searches) == 1


def test_a_person_gone_from_the_crm_leaves_the_copy(
    db: Database,
    sb: SalesforceSandbox,
) -> None:
    alice = sb.insert("Contact", {"LastName": "Alice", "X_User_Id__c": "7"})
    p, clock = stage_on(db, crm(sb))
    assert p.resolve().linked == 1
    sb.delete("Contact", alice)  # no change query reports a deletion
    assert p.deliver().relinking == 2  # both of Alice's posts came back
    with db.connect() as conn:
        assert crm_keys.find(conn, "sf", [k("7")]) == []
    clock.now += timedelta(hours=2)
    assert p.resolve().linked == 0  # not linked to the deleted Contact again

    # A deletion the writer never met is swept by the daily reload.
    ghost = sb.insert("Contact", {"LastName": "Ghost", "X_User_Id__c": "99"})
    clock.now += timedelta(minutes=6)
    p.resolve()
    with db.connect() as conn:
        assert [g.ref.id for g in crm_keys.find(conn, "sf", [k("99")])] == [ghost]
    sb.delete("Contact", ghost)
    clock.now += timedelta(days=1)
    p.resolve()
    with db.connect() as conn:
        assert crm_keys.find(conn, "sf", [k("99")]) == []


def test_a_load_cut_short_resumes_and_until_loaded_the_crm_is_asked(
    db: Database,
    sb: SalesforceSandbox,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(sf_keys, "KEYS_PAGE", 1)
    alice = sb.insert("Contact", {"LastName": "Alice", "X_User_Id__c": "7"})
    sb.insert("Contact", {"LastName": "Zed", "X_User_Id__c": "70"})
    client = crm(sb)
    real = client.keys_on_file
    cursors: list[str | None] = []

    def flaky(after: str | None) -> object:
        cursors.append(after)
        if len(cursors) == 2:
            raise TransientError("salesforce: 503", system="salesforce")
        return real(after)

    monkeypatch.setattr(client, "keys_on_file", flaky)
    p, clock = stage_on(db, client)
    assert p.resolve().linked == 1  # the CRM answered the look-up itself
    with db.connect() as conn:
        assert crm_keys.load_state(conn, "sf").loaded_at is None
    clock.now += timedelta(minutes=1)
    p.resolve()
    assert cursors[0] is None and cursors[2] == cursors[1] is not None  # resumed, not restarted
    with db.connect() as conn:
        assert crm_keys.load_state(conn, "sf").loaded_at is not None
        assert [a.ref.id for a in crm_keys.find(conn, "sf", [k("7")])] == [alice]
