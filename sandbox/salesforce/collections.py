"""sObject Collections for the Salesforce stand-in: create, upsert and delete up to 200 records.

Every record is validated before anything is written, so ``allOrNone`` needs no undo: when
one record fails, the others report ALL_OR_NONE_OPERATION_ROLLED_BACK and nothing changes.
Results come back in request order; failed entries carry no ``id``, as the real API's don't.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sandbox.salesforce.schema import normalize_id
from sandbox.salesforce.store import (
    Plan,
    RequestError,
    SalesforceStore,
    SaveError,
    Table,
    key_of,
)

MAX_RECORDS = 200
# Fields Salesforce lets you upsert on besides external ids (they are "idLookup").
ID_LOOKUP = {"Contact": ("Email",), "Lead": ("Email",), "User": ("Username", "Email")}
ROLLED_BACK = SaveError(
    "ALL_OR_NONE_OPERATION_ROLLED_BACK",
    "Record rolled back because not all records were valid and the request was using "
    "AllOrNone header",
)
_NO_TYPE = SaveError("INVALID_TYPE", "Must send a concrete entity type.")
Outcome = Plan | list[SaveError]


def check_size(records: Sequence[Any]) -> None:
    if len(records) > MAX_RECORDS:
        raise RequestError(
            400,
            "EXCEEDED_ID_LIMIT",
            "record limit reached. cannot submit more than 200 records into this call",
        )


def parse_collection(body: Any) -> tuple[list[Any], bool]:
    """The records and the allOrNone flag of a collections request body."""
    records = body.get("records") if isinstance(body, dict) else None
    if not isinstance(records, list):
        raise RequestError(400, "JSON_PARSER_ERROR", "Missing required field: records")
    return records, bool(body.get("allOrNone", False))


def _fields(table: Table, raw: object) -> tuple[dict[str, Any], list[SaveError]]:
    """The record's fields, or INVALID_TYPE when its ``attributes.type`` is not ``table``."""
    if not isinstance(raw, dict):
        return {}, [_NO_TYPE]
    attrs = raw.get("attributes")
    kind = attrs.get("type") if isinstance(attrs, dict) else None
    if not isinstance(kind, str) or kind.lower() != table.name.lower():
        return {}, [_NO_TYPE]
    return {k: v for k, v in raw.items() if k != "attributes"}, []


def _matches(store: SalesforceStore, table: Table, key: str, value: str | None) -> list[str]:
    if value is None:
        return []
    if key == "Id":
        rec = store.live(table, value)
        return [rec["Id"]] if rec else []
    if key in table.external:  # unique and, by Salesforce's default, case-sensitive
        found = table.exact[key].get(value)
        return [found] if found else []
    folded = value.casefold()  # idLookup fields such as Email match case-insensitively
    return [
        r["Id"]
        for r in table.records.values()
        if not r["IsDeleted"] and isinstance(r.get(key), str) and r[key].casefold() == folded
    ]


def _finish(
    store: SalesforceStore, outcomes: list[tuple[Table, Outcome]], all_or_none: bool, upsert: bool
) -> list[dict[str, Any]]:
    failed = any(isinstance(o, list) for _, o in outcomes)
    results: list[dict[str, Any]] = []
    for table, outcome in outcomes:
        if isinstance(outcome, list):
            results.append({"success": False, "errors": [e.result() for e in outcome]})
        elif all_or_none and failed:  # nothing was written, so nothing to undo
            results.append({"success": False, "errors": [ROLLED_BACK.result()]})
        else:
            created = outcome.existing is None
            result = {"id": store.apply(table, outcome), "success": True, "errors": []}
            results.append({**result, "created": created} if upsert else result)
    return results


def upsert_many(
    store: SalesforceStore, sobject: str, key_field: str, records: Sequence[Any], all_or_none: bool
) -> list[dict[str, Any]]:
    """PATCH composite/sobjects/{sobject}/{key_field}: one UpsertResult per record."""
    check_size(records)
    table = store.table(sobject)
    if table is None:
        raise RequestError(404, "NOT_FOUND", "The requested resource does not exist")
    key = table.fields.get(key_field.lower())
    if key is None:
        raise RequestError(
            404,
            "NOT_FOUND",
            f"Provided external ID field does not exist or is not accessible: {key_field}",
        )
    if key != "Id" and key not in table.external and key not in ID_LOOKUP.get(table.name, ()):
        raise RequestError(
            400,
            "INVALID_FIELD",
            f"Field name provided, {key} is not an External ID or indexed field for {table.name}",
        )
    outcomes: list[Outcome] = []
    values: list[str | None] = []
    for raw in records:
        fields, errors = _fields(table, raw)
        value = fields.pop(key, None) if key == "Id" else fields.get(key)
        values.append(None if value is None or value == "" else key_of(value))
        if not errors and key != "Id" and values[-1] is None:
            errors = [SaveError("MISSING_ARGUMENT", f"{key} not specified")]
        outcomes.append(errors or Plan(fields))
    seen: dict[str, int] = {}
    for v in values:
        if v is not None:
            seen[v] = seen.get(v, 0) + 1
    claimed: dict[tuple[str, str], str] = {}
    for i, outcome in enumerate(outcomes):
        if isinstance(outcome, list):
            continue
        v = values[i]
        # Salesforce rejects every record that shares a key within one request.
        if key != "Id" and v is not None and seen[v] > 1:
            msg = f"Duplicate external id specified: {v}"
            outcomes[i] = [SaveError("DUPLICATE_VALUE", msg, (key,))]
            continue
        found = _matches(store, table, key, v)
        if len(found) > 1:
            msg = f"{table.name}: more than one record found for external id field: {found}"
            outcomes[i] = [SaveError("DUPLICATE_EXTERNAL_ID", msg.replace("'", ""))]
        elif key == "Id" and v is not None and not found:
            outcomes[i] = [SaveError("NOT_FOUND", "The requested resource does not exist")]
        else:
            existing = table.records[found[0]] if found else None
            outcomes[i] = store.prepare(table, outcome.fields, existing, True, claimed)
    return _finish(store, [(table, o) for o in outcomes], all_or_none, upsert=True)


def create_many(
    store: SalesforceStore, records: Sequence[Any], all_or_none: bool
) -> list[dict[str, Any]]:
    """POST composite/sobjects: one SaveResult per record; types may be mixed."""
    check_size(records)
    outcomes: list[tuple[Table, Outcome]] = []
    claimed: dict[tuple[str, str], str] = {}
    fallback = store.table("Account")
    assert fallback is not None
    for raw in records:
        attrs = raw.get("attributes") if isinstance(raw, dict) else None
        table = store.table(str(attrs.get("type", ""))) if isinstance(attrs, dict) else None
        if table is None:
            outcomes.append((fallback, [_NO_TYPE]))  # never applied: it failed
            continue
        fields, errors = _fields(table, raw)
        outcomes.append((table, errors or store.prepare(table, fields, None, True, claimed)))
    return _finish(store, outcomes, all_or_none, upsert=False)


def delete_many(
    store: SalesforceStore, ids: Sequence[Any], all_or_none: bool
) -> list[dict[str, Any]]:
    """DELETE composite/sobjects?ids=…: one DeleteResult per id, in order; types may be mixed.

    A record already in the recycle bin answers ENTITY_IS_DELETED and one that never existed
    (or was purged) INVALID_CROSS_REFERENCE_KEY, as a real org does; failed entries carry no
    ``id``.
    """
    check_size(ids)
    outcomes: list[tuple[Table, str] | SaveError] = []
    for raw in ids:
        record_id = normalize_id(raw) if isinstance(raw, str) else None
        table = store.by_prefix(record_id) if record_id else None
        rec = table.records.get(record_id) if table is not None and record_id else None
        if record_id is None:
            outcomes.append(SaveError("MALFORMED_ID", f"malformed id {raw}"))
        elif table is None or rec is None:
            outcomes.append(SaveError("INVALID_CROSS_REFERENCE_KEY", "invalid cross reference id"))
        elif rec["IsDeleted"]:
            outcomes.append(SaveError("ENTITY_IS_DELETED", "entity is deleted"))
        else:
            outcomes.append((table, rec["Id"]))
    failed = any(isinstance(o, SaveError) for o in outcomes)
    results: list[dict[str, Any]] = []
    for outcome in outcomes:
        if isinstance(outcome, SaveError):
            results.append({"success": False, "errors": [outcome.result()]})
        elif all_or_none and failed:  # nothing was deleted, so nothing to undo
            results.append({"success": False, "errors": [ROLLED_BACK.result()]})
        else:
            store.delete(outcome[0].name, outcome[1])
            results.append({"id": outcome[1], "success": True, "errors": []})
    return results
