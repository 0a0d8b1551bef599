"""Relationship fields in SOQL for the Salesforce stand-in: ``Account.Name``, ``Parent.Name``.

A child-to-parent path names a lookup by its relationship name (the field without its ``Id``
suffix: ``AccountId`` → ``Account``, ``ParentId`` → ``Parent``) and then a field of the record
it points to. Only the lookups the stand-in knows (``salesforce_schema.REFERENCES``) can be
walked, up to five levels deep as in a real org (``Contact.Account.Name`` from a
MessagingEndUser). A polymorphic lookup (SocialPersona's
``ParentId`` names an Account, a Contact or a Lead) offers only the fields of the ``Name``
object (Id, Name, Type), as in a real org.

The answer nests the parent like the real API: ``"Account": {"attributes": {…}, "Name": …}``,
or ``"Account": null`` when the lookup is empty.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from functools import cache
from typing import Any

from sandbox.salesforce.schema import REFERENCES, normalize_id
from sandbox.salesforce.soql.query import BoolOp, Condition, Not, Query
from sandbox.salesforce.store import SalesforceStore, Table

MAX_DEPTH = 5  # relationships one child-to-parent path may walk
# Fields a polymorphic relationship offers (the "Name" object), with their types.
_NAME_FIELDS = {"Id": "id", "Name": "string", "Type": "string"}


@cache  # asked per row and path of every answer; the schema's lookups never change
def _relationship(sobject: str, rel: str) -> tuple[str, tuple[str, ...]] | None:
    """The lookup field behind relationship ``rel`` of ``sobject``, and what it points to."""
    for (obj, field), (_, targets) in REFERENCES.items():
        if obj == sobject and field.lower() == f"{rel.lower()}id":
            return field, targets
    return None


class PathSchema:
    """The store's schema (the ``soql_bind.Schema`` protocol), plus ``Rel.Field`` paths."""

    def __init__(self, store: SalesforceStore) -> None:
        self.store = store

    def object_name(self, name: str) -> str | None:
        return self.store.object_name(name)

    def field_name(self, sobject: str, name: str) -> str | None:
        if "." not in name:
            return self.store.field_name(sobject, name)
        found = self._resolve(sobject, name)
        return found[0] if found else None

    def field_type(self, sobject: str, name: str) -> str:
        if "." not in name:
            return self.store.field_type(sobject, name)
        found = self._resolve(sobject, name)
        return found[1] if found else "string"

    def _resolve(self, sobject: str, path: str) -> tuple[str, str] | None:
        """``(canonical path, field type)``, or None when the path names nothing."""
        *rels, last = path.split(".")
        if not 1 <= len(rels) <= MAX_DEPTH:
            return None
        heads, current = [], sobject
        for i, part in enumerate(rels):
            rel = _relationship(current, part)
            if rel is None:
                return None
            field, targets = rel
            heads.append(field[:-2])  # the relationship name: the lookup field without "Id"
            if len(targets) > 1:  # a polymorphic parent: its Name fields, and no further
                name = next((n for n in _NAME_FIELDS if n.lower() == last.lower()), None)
                if name is None or i != len(rels) - 1:
                    return None
                return ".".join([*heads, name]), _NAME_FIELDS[name]
            current = targets[0]
        target = self.store.table(current)
        name = target.fields.get(last.lower()) if target else None
        if target is None or name is None:
            return None
        return ".".join([*heads, name]), target.types.get(name, "string")


def paths_of(query: Query) -> list[str]:
    """Every relationship path a bound query names, in SELECT, WHERE and ORDER BY."""
    names = [f.name for f in query.fields] + [o.field.name for o in query.order_by]

    def walk(cond: Condition | None) -> None:
        if isinstance(cond, Not):
            walk(cond.operand)
        elif isinstance(cond, BoolOp):
            for part in cond.operands:
                walk(part)
        elif cond is not None:
            names.append(cond.field)

    walk(query.where)
    return list(dict.fromkeys(n for n in names if "." in n))


def _parent(store: SalesforceStore, table: Table, rec: Mapping[str, Any], rel: str) -> Any:
    """The live record a relationship of ``rec`` points to, and its table; None if empty."""
    found = _relationship(table.name, rel)
    parent_id = normalize_id(rec.get(found[0])) if found else None
    target = store.by_prefix(parent_id) if parent_id else None
    if target is None or parent_id is None:
        return None
    parent = store.live(target, parent_id)
    return (target, parent) if parent is not None else None


def _ancestor(
    store: SalesforceStore, table: Table, rec: Mapping[str, Any], rels: Sequence[str]
) -> Any:
    """The live record at the end of a chain of relationships, and its table; None where a
    lookup on the way is empty."""
    found: Any = (table, rec)
    for rel in rels:
        found = _parent(store, found[0], found[1], rel)
        if found is None:
            return None
    return found


def _cached(
    store: SalesforceStore,
    table: Table,
    rec: Mapping[str, Any],
    rels: Sequence[str],
    parents: dict[tuple[Any, ...], Any],
) -> Any:
    """:func:`_ancestor`, remembered by the first lookup's value: the rest of the chain
    follows from it."""
    lookup = _relationship(table.name, rels[0])
    key = (*rels, rec.get(lookup[0]) if lookup else None)
    if key not in parents:
        parents[key] = _ancestor(store, table, rec, rels)
    return parents[key]


def with_paths(
    store: SalesforceStore, table: Table, rows: Sequence[Mapping[str, Any]], paths: Sequence[str]
) -> list[Mapping[str, Any]]:
    """Rows carrying each path's value under its dotted name, for WHERE and ORDER BY."""
    if not paths:
        return list(rows)
    out: list[Mapping[str, Any]] = []
    # Parents by (relationship, lookup value): records share few parents (a company's
    # Contacts one Account), and finding the parent (the id's checksum, its table) again
    # for every record and path cost a scan several times its matching.
    parents: dict[tuple[Any, ...], Any] = {}
    walks = []
    for path in paths:
        *rels, field = path.split(".")
        walks.append((path, rels, field))
    for rec in rows:
        extra: dict[str, Any] = {}
        for path, rels, field in walks:
            found = _cached(store, table, rec, rels, parents)
            if found is None:
                extra[path] = None
            elif field == "Type":
                extra[path] = found[0].name
            else:
                extra[path] = found[1].get(field)
        out.append({**rec, **extra})
    return out


def project(
    store: SalesforceStore,
    table: Table,
    rec: Mapping[str, Any],
    fields: Sequence[str],
    url: Callable[[str, str], str],
    parents: dict[tuple[Any, ...], Any] | None = None,
) -> dict[str, Any]:
    """One record of a query answer: the selected fields, relationships nested (each level
    of a longer path in its parent). ``parents`` remembers parents across the rows of one
    answer (many rows share one Account)."""
    out: dict[str, Any] = {"attributes": {"type": table.name, "url": url(table.name, rec["Id"])}}
    remembered = {} if parents is None else parents
    for name in fields:
        if "." not in name:
            out[name] = rec.get(name)
            continue
        *rels, field = name.split(".")
        level, child = out, table
        for depth, rel in enumerate(rels):
            found = _cached(store, table, rec, rels[: depth + 1], remembered)
            if found is None:
                level[rel] = None
                break
            target, parent = found
            polymorphic = len((_relationship(child.name, rel) or ("", ()))[1]) > 1
            nested = level.get(rel) or {
                "attributes": {
                    "type": "Name" if polymorphic else target.name,
                    "url": url(target.name, parent["Id"]),
                }
            }
            level[rel], level, child = nested, nested, target
        else:
            level[field] = child.name if field == "Type" else parent.get(field)
    return out
