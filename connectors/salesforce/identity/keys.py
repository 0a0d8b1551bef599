"""Every Contact and Lead carrying a network user id or handle: the pure half of
``keys_on_file``, the pages the resolver's local copy of the id and handle matchers is
loaded from.

Pages are keyset-paginated by record id (``Id > last ORDER BY Id``), so a cursor is a plain
``(object, last id)`` that survives a restart, and a record created during the load is read
or, if it sorts before the cursor, reported by the change watch.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

from connectors.salesforce.identity.lookup import field, priority_of, soql_quote
from connectors.salesforce.identity.people import SHAPES, id18, keys_held
from connectors.salesforce.settings import IdentityFields
from syncd.model import CrmRef, KeysOnFile

KEYS_PAGE = 2000  # rows per query: Salesforce's own batch size, so one call per page


def key_columns(fields: Mapping[str, IdentityFields]) -> list[str]:
    """Every network's user-id and handle fields, each once whatever its casing."""
    unique: dict[str, str] = {}
    for f in fields.values():
        for name in (f.user_id, f.handle):
            if name:
                unique.setdefault(name.lower(), name)
    return list(unique.values())


def keys_soql(
    obj: str, fields: Mapping[str, IdentityFields], after: str | None, priority: str | None = None
) -> str:
    """ONE page of ``obj`` records with any network's id or handle set, in id order, with
    the customer's ``priority`` field when one is configured."""
    columns = key_columns(fields)
    where = "(" + " OR ".join(f"{c} != null" for c in columns) + ")"
    if only := SHAPES[obj].only:
        where = f"{only} AND {where}"
    if after:
        where += f" AND Id > {soql_quote(after)}"
    select = ", ".join(
        ["Id", "Name", *columns, *([priority] if priority else []), "SystemModstamp"]
    )
    return f"SELECT {select} FROM {obj} WHERE {where} ORDER BY Id LIMIT {KEYS_PAGE}"


def _text(value: Any) -> str | None:
    text = str(value).strip() if value is not None else ""
    return text or None


def keys_of(
    obj: str,
    rank: int,
    fields: Mapping[str, IdentityFields],
    row: Mapping[str, Any],
    priority: str | None = None,
) -> KeysOnFile:
    """What one row carries, per network (networks with neither field set left out), and
    the customer's priority value read from ``priority``."""
    rid = id18(field(row, "Id")) or str(field(row, "Id"))
    ref = CrmRef(obj, rid, _text(field(row, "Name")), priority_of(row, priority))
    return KeysOnFile(ref, keys_held(fields, row), rank, str(field(row, "SystemModstamp") or ""))


def cursor(obj: str, after: str | None) -> str:
    return json.dumps({"object": obj, "after": after})


def read_cursor(value: str | None, objects: Sequence[str]) -> tuple[str | None, str | None]:
    """``(object, last id)`` to go on from: the first object from the start; an unreadable
    cursor or an object no longer configured starts over, rather than stop short."""
    if value is None:
        return (objects[0] if objects else None), None
    try:
        data = json.loads(value)
        obj, after = data["object"], data["after"]
    except (ValueError, KeyError, TypeError):
        return (objects[0] if objects else None), None
    if obj not in objects or not (after is None or isinstance(after, str)):
        return (objects[0] if objects else None), None
    return obj, after
