"""The standard suite every :class:`syncd.contracts.Crm` passes.

A connector gets the whole suite by one subclass that provides the ``crm_world`` fixture: a
:class:`CrmWorld`, the CRM it writes to (a loopback stand-in, or a fake's own state) with the
few verbs the suite needs to put people in it and to see what was written. Only what the
Protocol and the domain types document is asserted (``syncd/contracts.py``,
``syncd/model.py``, ``syncd/errors.py``), never one CRM's particulars.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any, Protocol

import pytest

from syncd.contracts import CheckRow, ConnectorSettings, Crm, RecordOutcome
from syncd.errors import AuthError, ExternalError, RateLimited, TransientError
from syncd.model import (
    CrmRef,
    Direction,
    HistoryRecord,
    IdentityKey,
    KeysPage,
    Match,
    PeopleChanges,
    PeopleQuery,
    PersonRecord,
    Profile,
    Refusal,
    WriteResult,
)

from .base import Contract

MAX_PAGES = 50


class CrmWorld(Protocol):
    """A CRM one connector writes to, as the suite drives it."""

    network: str  # the network whose identity fields the CRM is set up for
    # What :meth:`fail_next` can do: "rate_limit", "transient".
    faults: frozenset[str]

    def make_crm(self, *, valid_credentials: bool = True) -> Crm:
        """A connector instance on this CRM (refused by it when not valid)."""
        ...

    def add_person(
        self,
        last: str,
        *,
        first: str | None = None,
        email: str | None = None,
        user_id: str | None = None,
        handle: str | None = None,
    ) -> CrmRef:
        """A new person (a Contact, or whatever this CRM's first person object is) carrying
        these values, the network ids in its identity fields."""
        ...

    def delete_person(self, ref: CrmRef) -> None:
        """Delete a person outright (no merge)."""
        ...

    def history_count(self, external_id: str) -> int:
        """How many live history records carry this external id."""
        ...

    def fail_next(self, fault: str) -> None:
        """Make the next call fail so: the CRM's request limit, or a 5xx."""
        ...


class CrmContract(Contract):
    """Subclass as ``TestXxxCrm(CrmContract)`` and provide ``crm_world``; what an
    implementation is known to lack goes in ``known_gaps`` (see :class:`~contract.base.Contract`).
    """

    @pytest.fixture
    def crm_world(self) -> CrmWorld:
        raise NotImplementedError("a CrmContract subclass provides the crm_world fixture")

    @pytest.fixture
    def crm(self, crm_world: CrmWorld) -> Iterator[Crm]:
        crm = crm_world.make_crm()
        yield crm
        crm.close()

    @staticmethod
    def record(world: CrmWorld, n: int, who: CrmRef, text: str = "hello") -> HistoryRecord:
        post = str(1_800_000_000_000_000_000 + n)
        return HistoryRecord(
            external_id=f"{world.network}:{post}",
            who=who,
            network=world.network,
            direction=Direction.INBOUND,
            subject=f"Mention from @customer{n}",
            description=f"{text} {n}",
            occurred_at=datetime(2026, 11, 1, 12, 0, tzinfo=UTC),
            handle=f"customer{n}",
            url=f"https://example.com/status/{post}",
            conversation_id=post,
        )

    def key(self, world: CrmWorld, user_id: str, handle: str | None = None) -> IdentityKey:
        return IdentityKey(world.network, user_id, handle)

    # -- what it is ----------------------------------------------------------------------------
    def test_declares_its_settings(self, crm: Crm) -> None:
        assert issubclass(type(crm).Settings, ConnectorSettings)
        assert callable(type(crm).from_settings)
        for name in (
            "lookup", "upsert_history", "personas", "find_people", "people_changes",
            "keys_on_file", "survivors", "upsert_lead", "delete_history",
            "mark_history_deleted", "check", "close",
        ):  # fmt: skip
            assert callable(getattr(crm, name, None)), f"no {name}"

    # -- lookup --------------------------------------------------------------------------------
    def test_lookup_answers_only_the_keys_it_found(self, crm_world: CrmWorld, crm: Crm) -> None:
        alice = crm_world.add_person("Liddell", first="Alice", user_id="1001", handle="alice")
        known, unknown = self.key(crm_world, "1001", "alice"), self.key(crm_world, "9999", "zz")
        assert dict(crm.lookup([])) == {}
        found = crm.lookup([known, unknown])
        assert set(found) == {known}
        match = found[known]
        assert isinstance(match, Match) and match.matcher == "crm_user_id"
        assert (match.ref.object, match.ref.id) == (alice.object, alice.id)
        assert match.held_user_id is None

    def test_lookup_is_batched_over_many_keys(self, crm_world: CrmWorld, crm: Crm) -> None:
        a = crm_world.add_person("One", user_id="1001")
        b = crm_world.add_person("Two", user_id="1250")
        keys = [self.key(crm_world, str(1000 + n), f"user{n}") for n in range(300)]
        found = crm.lookup(keys)
        assert {k.user_id: m.ref.id for k, m in found.items()} == {"1001": a.id, "1250": b.id}

    def test_lookup_falls_back_to_the_handle(self, crm_world: CrmWorld, crm: Crm) -> None:
        carol = crm_world.add_person("Carol", handle="carol")  # no user id on file
        key = self.key(crm_world, "3003", "carol")
        match = crm.lookup([key])[key]
        assert match.matcher == "crm_handle" and match.ref.id == carol.id
        assert match.held_user_id is None

    def test_a_handle_held_under_another_user_id_is_flagged(
        self, crm_world: CrmWorld, crm: Crm
    ) -> None:
        crm_world.add_person("Dan", user_id="4004", handle="dan")
        key = self.key(crm_world, "5005", "dan")  # another user has the handle now
        found = crm.lookup([key])
        assert key not in found or found[key].held_user_id == "4004"

    # -- upsert_history ------------------------------------------------------------------------
    def test_upsert_answers_one_result_per_record_in_order(
        self, crm_world: CrmWorld, crm: Crm
    ) -> None:
        who = crm_world.add_person("Liddell", user_id="1001")
        records = [self.record(crm_world, n, who) for n in (3, 1, 2)]
        results = list(crm.upsert_history(records))
        assert [r.external_id for r in results] == [r.external_id for r in records]
        assert all(isinstance(r, WriteResult) and r.ok and r.crm_id for r in results)
        assert all(r.created is not False for r in results)
        assert len({r.crm_id for r in results}) == 3
        assert all(crm_world.history_count(r.external_id) == 1 for r in records)

    def test_upsert_is_idempotent_by_external_id(self, crm_world: CrmWorld, crm: Crm) -> None:
        who = crm_world.add_person("Liddell", user_id="1001")
        first = crm.upsert_history([self.record(crm_world, 1, who)])
        again = crm.upsert_history([self.record(crm_world, 1, who, text="edited")])
        assert first[0].ok and again[0].ok
        assert again[0].crm_id == first[0].crm_id
        assert again[0].created is not True
        assert crm_world.history_count(first[0].external_id) == 1

    def test_upsert_takes_more_records_than_one_call(self, crm_world: CrmWorld, crm: Crm) -> None:
        who = crm_world.add_person("Liddell", user_id="1001")
        records = [self.record(crm_world, n, who) for n in range(230)]
        results = crm.upsert_history(records)
        assert [r.external_id for r in results] == [r.external_id for r in records]
        assert all(r.ok for r in results)

    def test_a_refused_record_fails_alone(self, crm_world: CrmWorld, crm: Crm) -> None:
        alive = crm_world.add_person("Alive", user_id="1001")
        gone = crm_world.add_person("Gone", user_id="1002")
        crm_world.delete_person(gone)
        records = [self.record(crm_world, 1, alive), self.record(crm_world, 2, gone)]
        records.append(self.record(crm_world, 3, alive))
        results = crm.upsert_history(records)  # no exception for the batch
        assert [r.external_id for r in results] == [r.external_id for r in records]
        assert [r.ok for r in results] == [True, False, True]
        assert results[1].error_code
        # The connector says what the refusal means: the person is gone, resolve again.
        assert results[1].refusal is Refusal.GONE
        assert crm_world.history_count(records[1].external_id) == 0

    # -- people for the resolver ---------------------------------------------------------------
    def test_find_people_answers_every_person_matching_a_value(
        self, crm_world: CrmWorld, crm: Crm
    ) -> None:
        alice = crm_world.add_person("Liddell", first="Alice", email="alice@example.com")
        bob = crm_world.add_person("Builder", first="Bob", email="bob@example.org")
        query = PeopleQuery(
            emails=frozenset({"alice@example.com"}), names=frozenset({("bob", "bui")})
        )
        people = crm.find_people(query)
        assert all(isinstance(p, PersonRecord) for p in people)
        by_id = {p.ref.id: p for p in people}
        assert {alice.id, bob.id} <= set(by_id)
        assert by_id[alice.id].email == "alice@example.com"
        assert (by_id[bob.id].first_name, by_id[bob.id].last_name) == ("Bob", "Builder")

    def test_personas_leave_out_keys_with_none(self, crm_world: CrmWorld, crm: Crm) -> None:
        crm_world.add_person("Liddell", user_id="1001", handle="alice")
        assert dict(crm.personas([self.key(crm_world, "7777", "nobody")])) == {}

    def test_people_changes_without_a_mark_only_starts_the_watch(
        self, crm_world: CrmWorld, crm: Crm
    ) -> None:
        crm_world.add_person("Before", user_id="1001")
        start = crm.people_changes(None)
        assert isinstance(start, PeopleChanges) and start.people == ()
        if start.mark is None:
            pytest.skip("this CRM cannot tell which people changed")
        later = crm_world.add_person("After", user_id="1002", email="after@example.com")
        changes = crm.people_changes(start.mark)
        assert not changes.complete or later.id in {p.ref.id for p in changes.people}
        assert changes.mark is not None

    def test_keys_on_file_pages_reach_every_person_with_a_key(
        self, crm_world: CrmWorld, crm: Crm
    ) -> None:
        alice = crm_world.add_person("Liddell", user_id="1001", handle="alice")
        crm_world.add_person("Nobody")  # no key: need not be listed
        first = crm.keys_on_file(None)
        if first is None:
            pytest.skip("this CRM cannot list the keys on file (lookup is asked instead)")
        pages: list[KeysPage] = [first]
        while pages[-1].next is not None:
            assert len(pages) < MAX_PAGES, "the pages never end"
            next_page = crm.keys_on_file(pages[-1].next)
            assert next_page is not None
            pages.append(next_page)
        listed = {p.ref.id: p for page in pages for p in page.people}
        assert {(k.network, k.user_id, k.handle) for k in listed[alice.id].keys} == {
            (crm_world.network, "1001", "alice")
        }

    def test_survivors_answer_only_people_gone(self, crm_world: CrmWorld, crm: Crm) -> None:
        alive = crm_world.add_person("Alive", user_id="1001")
        gone = crm_world.add_person("Gone", user_id="1002")
        crm_world.delete_person(gone)
        assert dict(crm.survivors([alive, gone])) == {gone: None}

    def test_upsert_lead_is_idempotent(self, crm_world: CrmWorld, crm: Crm) -> None:
        key = self.key(crm_world, "6006", "newcomer")
        profile = Profile(key, display_name="New Comer", location="Lyon")
        first = crm.upsert_lead(profile)
        again = crm.upsert_lead(profile)
        assert isinstance(first, CrmRef) and first.object == "Lead"
        assert (again.object, again.id) == (first.object, first.id)

    # -- removing history ----------------------------------------------------------------------
    def _written(self, world: CrmWorld, crm: Crm, n: int) -> tuple[list[str], list[str]]:
        """(external ids, CRM record ids) of ``n`` records written."""
        who = world.add_person("Liddell", user_id="1001")
        results = crm.upsert_history([self.record(world, k, who) for k in range(n)])
        assert all(r.ok and r.crm_id for r in results)
        return [r.external_id for r in results], [str(r.crm_id) for r in results]

    def test_delete_history_answers_each_id_and_is_done_when_gone(
        self, crm_world: CrmWorld, crm: Crm
    ) -> None:
        written, ids = self._written(crm_world, crm, 2)
        outcomes = list(crm.delete_history(ids[::-1]))
        assert all(isinstance(o, RecordOutcome) for o in outcomes)
        assert [(o.record_id, o.ok) for o in outcomes] == [(i, True) for i in ids[::-1]]
        assert [crm_world.history_count(e) for e in written] == [0, 0]
        again = crm.delete_history(ids)  # already deleted: done, not an error
        assert [(o.record_id, o.ok) for o in again] == [(i, True) for i in ids]

    def test_mark_history_deleted_answers_each_id(self, crm_world: CrmWorld, crm: Crm) -> None:
        written, ids = self._written(crm_world, crm, 2)
        outcomes = crm.mark_history_deleted(ids)
        assert [(o.record_id, o.ok) for o in outcomes] == [(i, True) for i in ids]
        assert [crm_world.history_count(e) for e in written] == [1, 1]  # marked, not removed
        crm.delete_history(ids[:1])
        gone = crm.mark_history_deleted(ids)  # a record no longer there counts as done
        assert [(o.record_id, o.ok) for o in gone] == [(i, True) for i in ids]

    # -- check ---------------------------------------------------------------------------------
    def test_check_answers_rows(self, crm: Crm) -> None:
        rows = list(crm.check())
        assert rows and all(isinstance(r, CheckRow) for r in rows)
        assert all(r.ok for r in rows), [r for r in rows if not r.ok]

    def test_check_reports_refused_credentials_as_a_row(self, crm_world: CrmWorld) -> None:
        refused = crm_world.make_crm(valid_credentials=False)
        try:
            rows = list(refused.check())
        finally:
            refused.close()
        assert any(not r.ok for r in rows)

    # -- errors: syncd.errors, classified ------------------------------------------------------
    def test_refused_credentials_raise_auth_error(self, crm_world: CrmWorld) -> None:
        refused = crm_world.make_crm(valid_credentials=False)
        try:
            with pytest.raises(AuthError):
                refused.lookup([self.key(crm_world, "1001")])
        finally:
            refused.close()

    def _fails(self, world: CrmWorld, crm: Crm, fault: str) -> Any:
        if fault not in world.faults:
            pytest.skip(f"this world cannot make a call fail with {fault!r}")
        world.fail_next(fault)
        with pytest.raises(ExternalError) as info:
            crm.lookup([self.key(world, "1001")])
        return info.value

    def test_the_request_limit_raises_rate_limited_with_resume_at(
        self, crm_world: CrmWorld, crm: Crm
    ) -> None:
        error = self._fails(crm_world, crm, "rate_limit")
        assert isinstance(error, RateLimited)
        assert error.resume_at.utcoffset() is not None

    def test_a_server_error_raises_transient_error(self, crm_world: CrmWorld, crm: Crm) -> None:
        assert isinstance(self._fails(crm_world, crm, "transient"), TransientError)
