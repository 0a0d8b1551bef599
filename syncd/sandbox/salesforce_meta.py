"""Metadata resources of the Salesforce stand-in: versions, limits, record counts, describe.

Describe is minimal but real-shaped: the keys syncd's setup checks read (``name``, ``fields[]``
with ``type``, ``externalId``, ``unique``, ``referenceTo``) carry real values.
"""

from __future__ import annotations

from typing import Any

from syncd.sandbox.salesforce_schema import API_VERSIONS, REFERENCES, label_of, version_label
from syncd.sandbox.salesforce_store import SalesforceStore, Table

_SIZED = ("string", "combobox", "picklist", "email", "url", "phone")


def versions() -> list[dict[str, str]]:
    return [
        {"label": version_label(v), "url": f"/services/data/v{v}", "version": v}
        for v in API_VERSIONS
    ]


def limits(store: SalesforceStore, api_calls: int, daily_limit: int) -> dict[str, Any]:
    stored = sum(len(t.records) for t in store.tables())

    def pair(top: int, used: int = 0) -> dict[str, int]:
        return {"Max": top, "Remaining": max(0, top - used)}

    return {
        "DailyApiRequests": pair(daily_limit, api_calls),
        "DailyBulkApiBatches": pair(15_000),
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


def describe(base: str, table: Table) -> dict[str, Any]:
    fields = []
    for name, type_ in table.types.items():
        ext = name in table.external
        targets = REFERENCES.get((table.name, name), ("", ()))[1]
        fields.append(
            {
                "name": name,
                "label": label_of(name),
                "type": type_,
                "length": 255 if type_ in _SIZED else 0,
                "externalId": ext,
                "unique": ext,
                "idLookup": ext or name == "Id",
                "nillable": name not in ("Id", "IsDeleted"),
                "custom": name.endswith("__c"),
                "caseSensitive": ext,
                "referenceTo": list(targets),
            }
        )
    return {**brief(base, table), "fields": fields}
