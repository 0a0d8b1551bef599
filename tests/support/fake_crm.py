"""The in-memory :class:`~syncd.contracts.Crm` every test that needs a CRM but not Salesforce
uses; ``tests/contract/test_crms.py`` holds it to the same suite as the real connector.

By default it answers like an empty org: nobody known, no social personas, nothing merged,
Leads created idempotently by user id, history upserted by external id. A test puts people in
it and turns on the misbehaviour it is about (per-record refusals, an outright failure, a
crash mid-batch, refused credentials); what it records (lookups, searches, batches, stores)
is there to assert on.
"""

from __future__ import annotations

import itertools
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any, ClassVar, Literal, Self

from syncd.contracts import CheckRow, ConnectorSettings, RecordOutcome
from syncd.errors import AuthError, RateLimited, TransientError
from syncd.model import (
    DEFAULT_TARGET,
    CrmRef,
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

# What the fake's error codes mean, as a CRM connector reads its own (Salesforce's here);
# any other code is final.
REFUSALS = {"UNABLE_TO_LOCK_ROW": Refusal.RETRY, "ENTITY_IS_DELETED": Refusal.GONE}

if TYPE_CHECKING:
    from syncd.contracts import Crm

SYSTEM = "fake-crm"
Fault = Literal["rate_limit", "transient"]
# A person as a test names one: a Contact id, or the whole reference (with its name).
Person = CrmRef | str


class Crash(Exception):
    """A process death. Not a SyncdError: nothing in syncd may catch and survive it."""


class FakeCrmSettings(ConnectorSettings):
    type: Literal["fake"]


def record_key(record: HistoryRecord) -> str:
    """Where the fake keeps a record: by external id, prefixed by any target but the first
    (each target is its own object, with its own records under the same external id)."""
    if record.target == DEFAULT_TARGET:
        return record.external_id
    return f"{record.target}|{record.external_id}"


def as_ref(person: Person) -> CrmRef:
    return person if isinstance(person, CrmRef) else CrmRef("Contact", person)


class FakeCrm:
    """An org in memory; satisfies :class:`syncd.contracts.Crm`.

    ``people`` finds a person by the author's user id, ``handles`` (lower case) by handle when
    no user id matches; ``person_records`` is every candidate ``find_people`` answers, whatever
    the query. ``errors`` answers a record key's (:func:`record_key`) next upsert with that
    error code (once); a record for a person in ``deleted`` is refused with
    ENTITY_IS_DELETED, as after a merge in Salesforce. ``crash_after`` takes that many more
    records, over one call or several, then dies before answering: the CRM has them, the
    caller never hears. ``strict`` asserts that every record names a person this CRM knows
    or once knew (the property tests' invariant). ``targets``: its history targets.
    """

    Settings: ClassVar[type[ConnectorSettings]] = FakeCrmSettings

    def __init__(
        self,
        people: Mapping[str, Person] | None = None,
        *,
        handles: Mapping[str, Person] | None = None,
        person_records: Iterable[PersonRecord] = (),
        refuse_login: bool = False,
        strict: bool = False,
        targets: Sequence[str] = (DEFAULT_TARGET,),
    ) -> None:
        self.history_targets = tuple(targets)
        self.people: dict[str, Person] = dict(people or {})  # user id → person
        self.handles: dict[str, Person] = dict(handles or {})  # handle, lower case → person
        self.person_records = list(person_records)
        self.persona_refs: dict[str, list[CrmRef]] = {}  # user id → persona parents
        self.merged: dict[str, CrmRef | None] = {}  # gone record id → survivor, None: deleted
        self.deleted: set[str] = set()  # person ids whose history is refused
        self.leads: dict[str, CrmRef] = {}  # user id → Lead
        self.errors: dict[str, str] = {}  # external id → error code, answered once
        self.faults: list[Fault] = []  # the next calls' failures, in order
        self.crash_after: int | None = None
        self.refuse_login = refuse_login
        self.strict = strict
        self.closed = False
        # The history: by external id, with the record id each got when created.
        self.records: dict[str, HistoryRecord] = {}
        self.crm_ids: dict[str, str] = {}
        self.marked: set[str] = set()  # record ids marked as a deleted post's
        self._record_ids = itertools.count()
        # What was asked, to assert on.
        self.calls: list[str] = []  # the person searches, in order: "lookup", "find_people"
        self.lookups: list[list[IdentityKey]] = []
        self.queries: list[PeopleQuery] = []
        self.upserts: list[list[HistoryRecord]] = []  # every batch, as received
        self.sent: list[str] = []  # external ids received; tests clear it between rounds
        self.received = 0  # records received, ever
        self.created: Counter[str] = Counter()  # external id → creations
        self.stores: Counter[str] = Counter()  # external id → times stored

    @classmethod
    def from_settings(cls, settings: Any) -> Self:
        return cls()

    # -- finding people ----------------------------------------------------------------------
    def lookup(self, keys: Sequence[IdentityKey]) -> dict[IdentityKey, Match]:
        self._call()
        self.calls.append("lookup")
        self.lookups.append(list(keys))
        found: dict[IdentityKey, Match] = {}
        for k in keys:
            if k.user_id in self.people:
                found[k] = Match(as_ref(self.people[k.user_id]), "crm_user_id")
            elif (k.handle or "").lower() in self.handles:
                found[k] = Match(as_ref(self.handles[(k.handle or "").lower()]), "crm_handle")
        return found

    def personas(self, keys: Sequence[IdentityKey]) -> dict[IdentityKey, list[CrmRef]]:
        self._call()
        return {k: self.persona_refs[k.user_id] for k in keys if k.user_id in self.persona_refs}

    def find_people(self, query: PeopleQuery) -> list[PersonRecord]:
        self._call()
        self.calls.append("find_people")
        self.queries.append(query)
        return list(self.person_records)

    def people_changes(self, mark: str | None) -> PeopleChanges:
        self._call()
        return PeopleChanges()  # cannot tell: held authors wait for their schedule

    def keys_on_file(self, after: str | None) -> KeysPage | None:
        self._call()
        return None  # cannot list them: the resolver asks ``lookup`` each time

    def survivors(self, refs: Sequence[CrmRef]) -> dict[CrmRef, CrmRef | None]:
        self._call()
        return {r: self.merged[r.id] for r in refs if r.id in self.merged}

    def upsert_lead(self, profile: Profile) -> CrmRef:
        self._call()
        uid = profile.key.user_id
        if uid not in self.leads:
            self.leads[uid] = CrmRef("Lead", f"00Q{len(self.leads):012d}", profile.display_name)
        return self.leads[uid]

    # -- history -----------------------------------------------------------------------------
    def upsert_history(self, records: Sequence[HistoryRecord]) -> list[WriteResult]:
        self._call()
        self.upserts.append(list(records))
        out: list[WriteResult] = []
        for r in records:
            if self.crash_after == 0:
                self.crash_after = None
                raise Crash("CRM took part of the batch, then the connection died")
            if self.crash_after is not None:
                self.crash_after -= 1
            key = record_key(r)
            self.sent.append(key)
            self.received += 1
            if self.strict:  # never invented: every record names someone this CRM knew
                assert r.who.id in {as_ref(p).id for p in self.people.values()} | self.deleted, r
            code = "ENTITY_IS_DELETED" if r.who.id in self.deleted else None
            code = code or self.errors.pop(key, None)
            if code:
                refusal = REFUSALS.get(code, Refusal.FINAL)
                out.append(WriteResult(r.external_id, False, None, None, code, code, refusal))
                continue
            created = key not in self.records
            if created:
                self.created[key] += 1
                self.crm_ids[key] = f"00T{next(self._record_ids):06d}"
            self.records[key] = r
            self.stores[key] += 1
            out.append(WriteResult(r.external_id, True, self.crm_ids[key], created))
        if self.crash_after == 0:
            self.crash_after = None
            raise Crash("CRM took the whole batch, then the connection died")
        return out

    def delete_history(self, record_ids: Sequence[str]) -> list[RecordOutcome]:
        self._call()
        for external_id in self._external_ids(record_ids):
            del self.records[external_id], self.crm_ids[external_id]
        return [RecordOutcome(i, True) for i in record_ids]  # gone before counts as done

    def mark_history_deleted(self, record_ids: Sequence[str]) -> list[RecordOutcome]:
        self._call()
        for external_id in self._external_ids(record_ids):
            self.records[external_id] = replace(self.records[external_id], description="")
            self.marked.add(self.crm_ids[external_id])
        return [RecordOutcome(i, True) for i in record_ids]  # no longer there counts as done

    def _external_ids(self, record_ids: Sequence[str]) -> list[str]:
        wanted = set(record_ids)
        return [e for e, crm_id in self.crm_ids.items() if crm_id in wanted]

    # -- the rest of the contract ------------------------------------------------------------
    def check(self) -> list[CheckRow]:
        if self.refuse_login:
            return [CheckRow("login", False, "credentials refused", "correct the credentials")]
        return [CheckRow("login", True, "logged in"), CheckRow("history", True, "writable")]

    def close(self) -> None:
        self.closed = True

    def _call(self) -> None:
        """One API call: refused with bad credentials, or failing as queued."""
        if self.refuse_login:
            raise AuthError("fake: credentials refused", system=SYSTEM, status=401)
        fault = self.faults.pop(0) if self.faults else None
        if fault == "rate_limit":
            resume = datetime.now(UTC) + timedelta(minutes=1)
            raise RateLimited("fake: request limit", resume_at=resume, system=SYSTEM, status=403)
        if fault == "transient":
            raise TransientError("fake: 503", system=SYSTEM, status=503)


if TYPE_CHECKING:
    _: type[Crm] = FakeCrm
