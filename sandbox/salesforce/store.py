"""Records of the Salesforce stand-in: tables, the validation of one write, and writes.

Not locked by itself: :class:`~sandbox.salesforce.api.SalesforceSandbox` calls it
under its lock. External-id values are indexed (exactly, for upsert matching, and
case-folded, for SOQL ``=``/``IN``), so a 200-record upsert into 100k Tasks costs 200 dict
look-ups, not 200 scans. sObject Collections build on this in :mod:`.salesforce_collections`.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from sandbox.salesforce.schema import (
    COMMON_FIELDS,
    COMPUTED,
    GATED,
    PICKLISTS,
    READ_ONLY,
    REFERENCES,
    STANDARD_OBJECTS,
    Picklist,
    coerce,
    infer_type,
    label_of,
    make_id,
    normalize_id,
)
from sandbox.salesforce.soql import index as soql_index
from sandbox.salesforce.soql.evaluate import index_hint
from sandbox.salesforce.soql.index import FieldIndex
from sandbox.salesforce.soql.query import Condition

Rec = dict[str, Any]


@dataclass(frozen=True)
class SaveError:
    status_code: str
    message: str
    fields: tuple[str, ...] = ()

    def result(self) -> dict[str, Any]:  # inside a SaveResult / UpsertResult
        return {"statusCode": self.status_code, "message": self.message, "fields": [*self.fields]}

    def rest(self) -> dict[str, Any]:  # a single-record REST error body entry
        return {"message": self.message, "errorCode": self.status_code, "fields": [*self.fields]}


class DmlError(Exception):
    def __init__(self, errors: Sequence[SaveError]) -> None:
        super().__init__("; ".join(f"{e.status_code}: {e.message}" for e in errors))
        self.errors = list(errors)


class RequestError(Exception):
    """The whole request is refused, as real REST does: ``[{"message", "errorCode"}]``."""

    def __init__(self, status: int, error_code: str, message: str) -> None:
        super().__init__(message)
        self.status, self.error_code, self.message = status, error_code, message

    def body(self) -> list[dict[str, Any]]:
        if self.error_code == "NOT_FOUND":  # recorded so by a real org (an unknown sObject)
            return [{"errorCode": self.error_code, "message": self.message}]
        return [{"message": self.message, "errorCode": self.error_code}]


def key_of(value: object) -> str:
    return value if isinstance(value, str) else json.dumps(value)


@dataclass
class Table:
    name: str
    prefix: str
    fields: dict[str, str] = field(default_factory=dict)  # lower-case → API name
    types: dict[str, str] = field(default_factory=dict)
    records: dict[str, Rec] = field(default_factory=dict)  # by Id, live and deleted
    external: list[str] = field(default_factory=list)  # upsert keys (External ID, Unique)
    exact: dict[str, dict[str, str]] = field(default_factory=dict)  # ext field → value → Id
    # External ID fields, unique or not, are indexed for SOQL ``=``/``IN``, as Salesforce
    # indexes them: value (case-folded) → Ids.
    indexed: list[str] = field(default_factory=list)
    folded: dict[str, dict[str, set[str]]] = field(default_factory=dict)
    # describe attributes Setup would give a field (length, externalId, unique): not enforced
    attrs: dict[str, dict[str, object]] = field(default_factory=dict)
    # Bumped by every write: the query indexes built on demand (soql_index) are rebuilt
    # once they are older.
    version: int = 0
    lookups: dict[str, FieldIndex] = field(default_factory=dict)

    def add_field(self, name: str, type_: str) -> str:
        known = self.fields.setdefault(name.lower(), name)
        self.types.setdefault(known, type_)
        return known

    def make_indexed(self, name: str) -> None:
        """Make a field an External ID: queries filtering on it read the index."""
        if name not in self.indexed:
            self.indexed.append(name)
            self.folded[name] = {}
            for rec in self.records.values():
                if not rec["IsDeleted"]:
                    self._index_one(name, rec, add=True, exact=False)

    def make_external(self, name: str) -> None:
        """Make a field an External ID, Unique: indexed, upserts find records by it."""
        self.make_indexed(name)
        if name not in self.external:
            self.external.append(name)
            self.exact[name] = {}
            for rec in self.records.values():
                if not rec["IsDeleted"]:
                    key = rec.get(name)
                    if key is not None and key != "":
                        self.exact[name][key_of(key)] = rec["Id"]

    def index(self, rec: Rec, add: bool) -> None:
        self.version += 1
        for name in self.indexed:
            self._index_one(name, rec, add, exact=name in self.exact)

    def _index_one(self, name: str, rec: Rec, add: bool, exact: bool) -> None:
        value = rec.get(name)
        if value is None or value == "":
            return
        key = key_of(value)
        folded = self.folded[name].setdefault(key.casefold(), set())
        if add:
            folded.add(rec["Id"])
            if exact:
                self.exact[name][key] = rec["Id"]
        else:
            folded.discard(rec["Id"])
            if exact:
                self.exact[name].pop(key, None)


@dataclass
class Plan:
    fields: Rec
    existing: Rec | None = None


class SalesforceStore:
    def __init__(
        self,
        external_ids: Mapping[str, Sequence[str]],
        clock: Callable[[], datetime],
        features: frozenset[str] = frozenset(),
    ) -> None:
        self.clock = clock
        self.features = features  # org features on: objects of GATED exist only with theirs
        self.picklists: dict[tuple[str, str], Picklist] = dict(PICKLISTS)  # Setup may edit
        self._case_number = 1000
        # Called with (sObject, record) after every insert or update: benchmarks time writes
        # finer than CreatedDate's whole seconds.
        self.on_apply: Callable[[str, Rec], None] | None = None
        self._tables: dict[str, Table] = {}
        self._prefixes: dict[str, Table] = {}
        self._serial = 0x10000  # so the first ids do not look like zero-filled placeholders
        self._custom = 0
        for sobject, names in external_ids.items():
            table = self.table(sobject, create=True)
            if table is None:
                raise ValueError(f"external_ids: no sObject {sobject!r} (custom ones end __c)")
            for name in names:
                table.make_external(table.add_field(name, "string"))
        self.user_id = ""
        self.org_id = self.create(
            "Organization",
            {
                "Name": "syncd sandbox",
                "IsSandbox": True,
                "InstanceName": "SANDBOX",
                "OrganizationType": "Developer Edition",
            },
            check=False,
        )
        self.user_id = self.create(
            "User",
            {
                "Username": "integration@sandbox.example",
                "FirstName": "Integration",
                "LastName": "User",
                "Email": "integration@sandbox.example",
                "IsActive": True,
            },
            check=False,
        )
        user = self._tables["user"].records[self.user_id]
        user.update(CreatedById=self.user_id, LastModifiedById=self.user_id)

    # -- schema (the soql.Schema protocol) ------------------------------------------------
    def table(self, name: str, create: bool = False) -> Table | None:
        table = self._tables.get(name.lower())
        if table is not None:
            return table
        std = next((k for k in STANDARD_OBJECTS if k.lower() == name.lower()), None)
        if std is not None and std in GATED and GATED[std] not in self.features:
            return None  # an org without the feature knows no such object
        if std is None and not (create and name.endswith("__c")):
            return None
        if std is not None:
            table = Table(std, STANDARD_OBJECTS[std].prefix)
            # describe's order, which GET of a record follows: Id, IsDeleted, the object's
            # own fields, the audit fields, then custom fields as they appear
            head = {"Id": "id"} if std == "Organization" else {"Id": "id", "IsDeleted": "boolean"}
            for fname, ftype in {**head, **STANDARD_OBJECTS[std].fields, **COMMON_FIELDS}.items():
                table.add_field(fname, ftype)
        else:
            table = Table(name, f"a{self._custom:02d}")  # custom objects' prefixes start a…
            self._custom += 1
            for fname, ftype in {"Name": "string", "OwnerId": "reference", **COMMON_FIELDS}.items():
                table.add_field(fname, ftype)
        self._tables[name.lower()] = table
        return table

    def object_name(self, name: str) -> str | None:
        table = self.table(name)
        return table.name if table else None

    def field_name(self, sobject: str, name: str) -> str | None:
        table = self.table(sobject)
        return table.fields.get(name.lower()) if table else None

    def field_type(self, sobject: str, name: str) -> str:
        table = self.table(sobject)
        return table.types.get(name, "string") if table else "string"

    def tables(self) -> list[Table]:
        for name in STANDARD_OBJECTS:
            self.table(name)  # a gated object without its feature stays absent
        return sorted(self._tables.values(), key=lambda t: t.name)

    def by_prefix(self, record_id: str) -> Table | None:
        # Asked for every parent of every row a query projects: remembered once found.
        found = self._prefixes.get(record_id[:3])
        if found is None:
            found = next((t for t in self.tables() if t.prefix == record_id[:3]), None)
            if found is not None:
                self._prefixes[found.prefix] = found
        return found

    # -- reads ----------------------------------------------------------------------------
    def _cutoff(self) -> str:
        return (self.clock() - timedelta(days=365)).date().isoformat()

    def archived(self, table: Table, rec: Rec, cutoff: str | None = None) -> bool:
        """Closed Tasks dated over 365 days back are archived: only queryAll sees them."""
        if table.name != "Task" or not rec.get("IsClosed"):
            return False
        when = rec.get("ActivityDate")  # ISO dates compare correctly as text
        return isinstance(when, str) and when[:10] < (cutoff or self._cutoff())

    def view(self, table: Table, rec: Rec, cutoff: str | None = None) -> Rec:
        """The record as reads see it: IsArchived depends on today's date."""
        if table.name == "Task":
            archived = self.archived(table, rec, cutoff)
            if archived != rec.get("IsArchived"):
                return {**rec, "IsArchived": archived}
        return rec

    def live(self, table: Table, record_id: str) -> Rec | None:
        rec = table.records.get(normalize_id(record_id) or "")
        return rec if rec is not None and not rec["IsDeleted"] else None

    def scan(
        self, table: Table, include_all: bool, where: Condition | None
    ) -> tuple[list[Rec], bool]:
        """Candidate records for a query, in creation order, and whether they all match
        ``where`` (else the caller still filters)."""
        # The indexes hold live records only, so queryAll must scan to see the recycle bin.
        hint = None if include_all else index_hint(where)
        # Ids grow with creation time and base-62 digits sort in ASCII order, so sorting
        # candidates by Id restores creation order.
        rows: Iterable[Rec]
        exact = False
        if hint and hint[0] == "Id":
            ids = {normalize_id(v) or v for v in hint[1]}
            rows = [table.records[i] for i in sorted(ids) if i in table.records]
        elif hint and hint[0] in table.indexed:
            found: set[str] = set()
            for value in hint[1]:
                found |= table.folded[hint[0]].get(value.casefold(), set())
            rows = [table.records[i] for i in sorted(found)]
        elif (some := None if include_all else soql_index.candidates(where, table)) is not None:
            rows, exact = [table.records[i] for i in sorted(some.ids)], some.exact
        else:
            rows = table.records.values()
        cutoff = self._cutoff()
        out = []
        for rec in rows:
            seen = self.view(table, rec, cutoff)
            if include_all or not (rec["IsDeleted"] or seen.get("IsArchived")):
                out.append(seen)
        return out, exact

    # -- writes ---------------------------------------------------------------------------
    def create(self, sobject: str, values: Mapping[str, Any], check: bool = True) -> str:
        """Insert one record; raise DmlError like a failed REST create."""
        table = self.table(sobject, create=not check)
        if table is None:
            raise RequestError(404, "NOT_FOUND", "The requested resource does not exist")
        plan = self.prepare(table, values, None, check, {})
        if isinstance(plan, list):
            raise DmlError(plan)
        return self.apply(table, plan)

    def update(self, sobject: str, record_id: str, values: Mapping[str, Any]) -> None:
        table = self.table(sobject)
        rec = table.records.get(normalize_id(record_id) or "") if table else None
        if table is None or rec is None:
            raise RequestError(404, "NOT_FOUND", "The requested resource does not exist")
        if rec["IsDeleted"]:
            raise DmlError([SaveError("ENTITY_IS_DELETED", "entity is deleted")])
        plan = self.prepare(table, values, rec, True, {})
        if isinstance(plan, list):
            raise DmlError(plan)
        self.apply(table, plan)

    def delete(self, sobject: str, record_id: str, purge: bool = False) -> None:
        """Soft delete, like the recycle bin: gone from query, still in queryAll."""
        table = self.table(sobject)
        rec = table.records.get(normalize_id(record_id) or "") if table else None
        if table is None or rec is None:
            raise RequestError(404, "NOT_FOUND", "The requested resource does not exist")
        if rec["IsDeleted"]:
            raise DmlError([SaveError("ENTITY_IS_DELETED", "entity is deleted")])
        table.index(rec, add=False)
        rec.update(IsDeleted=True, LastModifiedDate=self._now(), SystemModstamp=self._now())
        if purge:  # the bin emptied too: ids naming it become invalid cross-references
            del table.records[rec["Id"]]

    # -- internals ------------------------------------------------------------------------
    def _now(self) -> str:
        return self.clock().astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.000+0000")

    def prepare(
        self,
        table: Table,
        values: Mapping[str, Any],
        existing: Rec | None,
        check: bool,
        claimed: dict[tuple[str, str], str],
    ) -> Plan | list[SaveError]:
        """Canonical field names, coerced values and every validation error of one record."""
        fields: Rec = {}
        errors: list[SaveError] = []
        locked = READ_ONLY | COMPUTED.get(table.name, frozenset())
        for raw_name, raw_value in values.items():
            if raw_name == "attributes":
                continue
            name = table.fields.get(raw_name.lower(), raw_name)
            if check and name not in table.types and not name.endswith("__c"):
                # only custom fields can be new; a misspelt standard field fails the request
                raise RequestError(
                    400, "INVALID_FIELD", f"No such column '{name}' on sobject of type {table.name}"
                )
            if name in locked:
                errors.append(
                    SaveError(
                        "INVALID_FIELD_FOR_INSERT_UPDATE",
                        f"Unable to create/update fields: {name}. "
                        "Please check the security settings of this field and verify that it is "
                        "read/write for your profile or permission set.",
                        (name,),
                    )
                )
                continue
            try:
                fields[name] = coerce(table.types.get(name), raw_value) if check else raw_value
            except ValueError as exc:
                raise RequestError(400, "JSON_PARSER_ERROR", str(exc)) from None
        merged = {**(existing or {}), **fields}
        std = STANDARD_OBJECTS.get(table.name)
        missing = [
            f
            for f in (std.required if std else ())
            if merged.get(f) in (None, "") and (existing is None or f in fields)
        ]
        if missing and check:
            errors.append(
                SaveError(
                    "REQUIRED_FIELD_MISSING",
                    f"Required fields are missing: [{', '.join(missing)}]",
                    tuple(missing),
                )
            )
        for name, value in fields.items():
            picklist = self.picklists.get((table.name, name))
            allowed = picklist.values if picklist is not None and picklist.restricted else None
            # matched exactly, as Salesforce does: "twitter" is not "Twitter"
            if check and allowed is not None and value not in (None, "", *allowed):
                errors.append(
                    SaveError(
                        "INVALID_OR_NULL_FOR_RESTRICTED_PICKLIST",
                        f"{label_of(name)}: bad value for restricted picklist field: {value}",
                        (name,),
                    )
                )
            if check and value is not None and (table.name, name) in REFERENCES:
                error = self._check_reference(table.name, name, value)
                if isinstance(error, SaveError):
                    errors.append(error)
                else:
                    fields[name] = error
        own_id = existing["Id"] if existing else None
        for name in table.external:
            value = fields.get(name)
            if value is None or value == "":
                continue
            holder = table.exact[name].get(key_of(value)) or claimed.get((name, key_of(value)))
            if holder is not None and holder != own_id:
                errors.append(
                    SaveError(
                        "DUPLICATE_VALUE",
                        f"duplicate value found: {name} "
                        f"duplicates value on record with id: {holder}",
                    )
                )
            elif not errors:
                claimed[(name, key_of(value))] = own_id or "(this request)"
        return errors or Plan(fields, existing)

    def _check_reference(self, sobject: str, name: str, value: object) -> SaveError | str:
        label, targets = REFERENCES[(sobject, name)]
        record_id = normalize_id(value)
        if record_id is None:
            return SaveError(
                "MALFORMED_ID", f"{label}: id value of incorrect type: {value}", (name,)
            )
        target = self.by_prefix(record_id)
        if target is None or target.name not in targets:
            return SaveError(
                "FIELD_INTEGRITY_EXCEPTION",
                f"{label}: id value of incorrect type: {value}",
                (name,),
            )
        rec = target.records.get(record_id)
        if rec is None:
            return SaveError("INVALID_CROSS_REFERENCE_KEY", "invalid cross reference id")
        if rec["IsDeleted"]:
            return SaveError("ENTITY_IS_DELETED", "entity is deleted")
        return record_id

    def apply(self, table: Table, plan: Plan) -> str:
        now = self._now()
        for name, value in plan.fields.items():
            if name not in table.types:
                table.add_field(name, infer_type(value) if value is not None else "string")
        if plan.existing is not None:
            rec = plan.existing
            table.index(rec, add=False)
            rec.update(plan.fields, LastModifiedDate=now, SystemModstamp=now)
        else:
            self._serial += 1
            std = STANDARD_OBJECTS.get(table.name)
            rec = {
                "Id": make_id(table.prefix, self._serial),
                **dict(std.defaults if std else ()),
                **plan.fields,
                "IsDeleted": False,
                "CreatedDate": now,
                "LastModifiedDate": now,
                "SystemModstamp": now,
            }
            if self.user_id:
                rec.update(CreatedById=self.user_id, LastModifiedById=self.user_id)
                if "OwnerId" in table.types:
                    rec.setdefault("OwnerId", self.user_id)
            table.records[rec["Id"]] = rec
        if table.name in ("Contact", "Lead", "User"):
            rec["Name"] = (
                " ".join(p for p in (rec.get("FirstName"), rec.get("LastName")) if p) or None
            )
        if table.name in ("Task", "Case"):
            closed = rec.get("Status") in self.picklists[(table.name, "Status")].closed
            if table.name == "Case":
                if closed and not rec.get("IsClosed"):
                    rec["ClosedDate"] = now
                elif not closed:
                    rec["ClosedDate"] = None
                if plan.existing is None:
                    self._case_number += 1
                    rec["CaseNumber"] = f"{self._case_number:08d}"
            else:
                rec["IsArchived"] = False
            rec["IsClosed"] = closed
        table.index(rec, add=True)
        if self.on_apply is not None:
            self.on_apply(table.name, rec)
        return str(rec["Id"])
