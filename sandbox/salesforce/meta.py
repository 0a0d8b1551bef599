"""Metadata resources of the Salesforce stand-in: versions, limits, record counts, describe.

Describe is minimal but real-shaped: the keys ``syncd check`` reads (``name``, the object's
access flags, ``fields[]`` with ``type``, ``length``, ``externalId``, ``unique``,
``createable``, ``updateable``, ``filterable``, ``referenceTo``) carry real values, keyed and
sorted as a real describe (CumulusCI's recorded ones) has them; what Setup would say of a
custom field (length, External ID, read-only) comes from ``add_field``.
"""

from __future__ import annotations

from typing import Any

from sandbox.salesforce.schema import (
    API_VERSIONS,
    COMPUTED,
    READ_ONLY,
    REFERENCES,
    STANDARD_OBJECTS,
    Picklist,
    label_of,
    version_label,
)
from sandbox.salesforce.store import SalesforceStore, Table

_SIZED = ("string", "combobox", "picklist", "email", "url", "phone")
_LONG = 32_000  # Description fields are long text areas
_SOAP = {
    "id": "tns:ID",
    "reference": "tns:ID",
    "boolean": "xsd:boolean",
    "date": "xsd:date",
    "datetime": "xsd:dateTime",
    "double": "xsd:double",
    "currency": "xsd:double",
}


def versions() -> list[dict[str, str]]:
    return [
        {"label": version_label(v), "url": f"/services/data/v{v}", "version": v}
        for v in API_VERSIONS
    ]


def limits(
    store: SalesforceStore,
    api_calls: int,
    daily_limit: int,
    bulk_batches: tuple[int, int] = (15_000, 0),
) -> dict[str, Any]:
    """``bulk_batches``: the daily Bulk API batch allocation and what the last 24 h used."""
    stored = sum(len(t.records) for t in store.tables())

    def pair(top: int, used: int = 0) -> dict[str, int]:
        return {"Max": top, "Remaining": max(0, top - used)}

    return {
        "DailyApiRequests": pair(daily_limit, api_calls),
        "DailyBulkApiBatches": pair(*bulk_batches),
        "DailyBulkV2QueryJobs": pair(10_000),
        "DataStorageMB": pair(10_240, -(-stored * 2 // 1024)),  # a record costs about 2 KB
        "SingleEmail": pair(5_000),
    }


def record_counts(store: SalesforceStore, wanted: str) -> dict[str, Any]:
    names = {n.strip().lower() for n in wanted.split(",") if n.strip()}
    counts = []
    for table in store.tables():
        live = sum(1 for r in table.records.values() if not r["IsDeleted"])
        if live and (not names or table.name.lower() in names):  # zero counts are omitted
            counts.append({"count": live, "name": table.name})
    return {"sObjects": counts}


def brief(base: str, table: Table) -> dict[str, Any]:
    """An object's entry in the global describe; ``base`` is ``/services/data/vXX.X``."""
    url = f"{base}/sobjects/{table.name}"
    return {
        "name": table.name,
        "label": label_of(table.name),
        "keyPrefix": table.prefix,
        "custom": table.name.endswith("__c"),
        "createable": True,
        "updateable": True,
        "deletable": True,
        "queryable": True,
        "urls": {"sobject": url, "describe": f"{url}/describe", "rowTemplate": f"{url}/{{ID}}"},
    }


def global_describe(base: str, store: SalesforceStore) -> dict[str, Any]:
    sobjects = [brief(base, t) for t in store.tables()]
    return {"encoding": "UTF-8", "maxBatchSize": 200, "sobjects": sobjects}


def describe(base: str, table: Table, store: SalesforceStore) -> dict[str, Any]:
    locked = READ_ONLY | COMPUTED.get(table.name, frozenset())
    fields = [field(table, n, locked, store.picklists.get((table.name, n))) for n in table.types]
    return {**brief(base, table), "fields": fields}


def _required(table: Table) -> tuple[str, ...]:
    std = STANDARD_OBJECTS.get(table.name)
    return std.required if std else ()


def _values(table: Table, name: str, picklist: Picklist | None) -> list[dict[str, Any]]:
    """``picklistValues`` as a real describe lists them, the object's default marked."""
    if picklist is None:
        return []
    std = STANDARD_OBJECTS.get(table.name)
    default = dict(std.defaults).get(name) if std else None
    return [
        {"active": True, "defaultValue": v == default, "label": v, "validFor": None, "value": v}
        for v in picklist.values
    ]


def field(
    table: Table, name: str, locked: frozenset[str] | set[str], picklist: Picklist | None = None
) -> dict[str, Any]:
    """One ``fields[]`` entry, with the keys (and key order) of a real describe."""
    type_ = table.types[name]
    ext = name in table.external
    targets = REFERENCES.get((table.name, name), ("", ()))[1]
    length = _LONG if type_ == "textarea" else 255 if type_ in _SIZED else 0
    entry: dict[str, Any] = {
        "calculated": False,
        "caseSensitive": ext,
        "createable": name not in locked,
        "custom": name.endswith("__c"),
        "externalId": ext,
        "filterable": True,
        "idLookup": ext or name == "Id",
        "label": label_of(name),
        "length": length,
        "name": name,
        # required on create: not nillable, as a real describe says of them
        "nillable": name not in ("Id", "IsDeleted", *_required(table)),
        "picklistValues": _values(table, name, picklist),
        "referenceTo": list(targets),
        "restrictedPicklist": bool(picklist and picklist.restricted),
        "soapType": _SOAP.get(type_, "xsd:string"),
        "type": type_,
        "unique": ext,
        "updateable": name not in locked,
        **table.attrs.get(name, {}),
    }
    # A long text area cannot be filtered, grouped or sorted in SOQL.
    entry["filterable"] = not (type_ == "textarea" and entry["length"] > 255)
    entry["byteLength"] = entry["length"] * 3  # UTF-8, as Salesforce sizes them
    return dict(sorted(entry.items()))
