"""The Python API tests and the demo use to set up and change the Salesforce stand-in's org.

Seeding, reading and deleting records directly (no API call, not counted), and merging
records as a user merging duplicates in Setup would. Mixed into
:class:`~sandbox.salesforce.api.SalesforceSandbox`, which owns ``lock`` and ``store``.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from typing import Any

from sandbox.salesforce.schema import Picklist, normalize_id
from sandbox.salesforce.store import DmlError, RequestError, SalesforceStore

# Objects Salesforce can merge; the losers keep the winner's id in MasterRecordId.
MERGEABLE = ("Account", "Contact", "Lead")


class OrgAdmin:
    lock: threading.RLock
    store: SalesforceStore

    # -- the Python API tests use ---------------------------------------------------------
    def insert(self, sobject: str, fields: dict[str, Any]) -> str:
        """Seed a record directly: no API call, no required-field or lookup checks.

        Read-only fields, an unknown sObject and a duplicate external id raise ValueError.
        """
        with self.lock:
            try:
                return self.store.create(sobject, fields, check=False)
            except (DmlError, RequestError) as exc:
                raise ValueError(f"{sobject}: {exc}") from None

    def update(self, sobject: str, record_id: str, fields: dict[str, Any]) -> None:
        """Change a record as a user editing it would (its SystemModstamp moves on);
        ValueError when there is no such live record or a value is refused."""
        with self.lock:
            try:
                self.store.update(sobject, record_id, fields)
            except (DmlError, RequestError) as exc:
                raise ValueError(f"{sobject} {record_id}: {exc}") from None

    def add_field(
        self,
        sobject: str,
        name: str,
        field_type: str = "string",
        *,
        length: int | None = None,
        external_id: bool = False,
        unique: bool = False,
        case_sensitive: bool | None = None,
        editable: bool = True,
    ) -> None:
        """Define a custom field before any record carries it, as Setup would.

        Without it a field exists only once some record has it, and SOQL naming it fails
        with INVALID_FIELD, as it would in an org that lacks the field. ``field_type`` is
        describe's name (string, textarea, url, picklist …). ``external_id`` with ``unique``
        makes it an upsert key, as ``external_ids=`` does; either alone, and ``length`` and
        ``editable`` (False: read-only for the API user), only change what describe says, as
        does ``case_sensitive`` (an upsert key is described case-sensitive unless False;
        matching stays exact).
        """
        with self.lock:
            table = self.store.table(sobject, create=True)
            if table is None:
                raise ValueError(f"no sObject {sobject!r} (custom objects end in __c)")
            known = table.add_field(name, field_type)
            if external_id and unique:
                table.make_external(known)
            elif external_id:
                table.make_indexed(known)
            attrs: dict[str, object] = {}
            if known not in table.external:  # an upsert key stays one: its flags say so
                attrs.update(externalId=external_id, unique=unique)
            if length is not None:
                attrs["length"] = length
            if case_sensitive is not None:
                attrs["caseSensitive"] = case_sensitive
            if not editable:
                attrs.update(createable=False, updateable=False)
            table.attrs[known] = attrs

    def set_picklist(
        self, sobject: str, field: str, values: Sequence[str], *, restricted: bool | None = None
    ) -> None:
        """Replace a standard picklist's values (``restricted``: also change whether other
        values are refused), as an admin editing it in Setup would; ValueError for a field
        that is no picklist of the stand-in's."""
        with self.lock:
            old = self.store.picklists.get((sobject, field))
            if old is None:
                raise ValueError(f"{sobject}.{field} is not a picklist of the stand-in")
            self.store.picklists[(sobject, field)] = Picklist(
                tuple(values),
                old.restricted if restricted is None else restricted,
                tuple(v for v in old.closed if v in values),
            )

    def records(self, sobject: str) -> list[dict[str, Any]]:
        """Copies of the live (not deleted) records of ``sobject``, in creation order."""
        with self.lock:
            table = self.store.table(sobject)
            if table is None:
                return []
            return [
                dict(self.store.view(table, r))
                for r in table.records.values()
                if not r["IsDeleted"]
            ]

    def get(self, sobject: str, record_id: str) -> dict[str, Any] | None:
        with self.lock:
            table = self.store.table(sobject)
            rec = self.store.live(table, record_id) if table else None
            return dict(self.store.view(table, rec)) if table and rec else None

    def delete(self, sobject: str, record_id: str, *, purge: bool = False) -> None:
        """Move a record to the recycle bin (``purge``: and empty it from there); KeyError if
        there is no such live record. A Task naming it as WhoId then fails ENTITY_IS_DELETED,
        or INVALID_CROSS_REFERENCE_KEY once purged."""
        with self.lock:
            try:
                self.store.delete(sobject, record_id, purge)
            except (DmlError, RequestError):
                raise KeyError(f"{sobject} {record_id}") from None

    def merge(self, sobject: str, master_id: str, loser_ids: Sequence[str]) -> None:
        """Merge duplicates into ``master_id``, as Salesforce's merge does: each loser goes
        to the recycle bin with ``MasterRecordId`` naming the master, so ``queryAll`` shows
        ``IsDeleted = true`` and the master's id, and ``query`` no longer sees it. (Child
        records are not re-parented.) ValueError when a record is not a live ``sobject``."""
        with self.lock:
            table = self.store.table(sobject)
            if table is None or table.name not in MERGEABLE:
                raise ValueError(f"{sobject!r} cannot be merged (only {', '.join(MERGEABLE)})")
            master = self.store.live(table, master_id)
            losers = [self.store.live(table, i) for i in loser_ids]
            if master is None or any(r is None for r in losers):
                raise ValueError(f"merge: every record must be a live {table.name}")
            if not 1 <= len(loser_ids) <= 2 or any(
                normalize_id(i) == master["Id"] for i in loser_ids
            ):
                raise ValueError("merge: one or two other records merge into the master")
            for loser in losers:
                assert loser is not None
                self.store.delete(table.name, loser["Id"])
                loser["MasterRecordId"] = master["Id"]
