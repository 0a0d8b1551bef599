"""The parts of the Crm protocol the pipeline tests' in-memory CRMs share: an empty CRM.

A fake CRM subclasses :class:`NoExtras` and overrides what its test is about; the defaults
answer like an org with no social personas, no other candidates, nothing merged, and Leads
created (idempotently, by user id) on request.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from syncd.model import (
    CrmRef,
    IdentityKey,
    KeysPage,
    PeopleChanges,
    PeopleQuery,
    PersonRecord,
    Profile,
)


class NoExtras:
    persona_refs: dict[str, list[CrmRef]]  # user id → persona parents
    person_records: list[PersonRecord]
    merged: dict[str, CrmRef | None]  # gone record id → survivor, or None if deleted
    leads: dict[str, CrmRef]  # user id → Lead

    def _extras(self) -> None:
        for name, empty in (
            ("persona_refs", dict),
            ("person_records", list),
            ("merged", dict),
            ("leads", dict),
        ):
            if not hasattr(self, name):
                setattr(self, name, empty())

    def personas(self, keys: Sequence[IdentityKey]) -> Mapping[IdentityKey, Sequence[CrmRef]]:
        self._extras()
        return {k: self.persona_refs[k.user_id] for k in keys if k.user_id in self.persona_refs}

    def find_people(self, query: PeopleQuery) -> Sequence[PersonRecord]:
        self._extras()
        return list(self.person_records)

    def people_changes(self, mark: str | None) -> PeopleChanges:
        return PeopleChanges()  # cannot tell: held authors wait for their schedule

    def survivors(self, refs: Sequence[CrmRef]) -> Mapping[CrmRef, CrmRef | None]:
        self._extras()
        return {r: self.merged[r.id] for r in refs if r.id in self.merged}

    def upsert_lead(self, profile: Profile) -> CrmRef:
        self._extras()
        uid = profile.key.user_id
        if uid not in self.leads:
            self.leads[uid] = CrmRef("Lead", f"00Q{len(self.leads):012d}", profile.display_name)
        return self.leads[uid]

    def keys_on_file(self, after: str | None) -> KeysPage | None:
        return None  # cannot list them: the resolver asks ``lookup`` each time
