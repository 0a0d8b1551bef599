"""Indexes the Salesforce stand-in builds on demand, so a query reads only the records its
condition can match.

The resolver's candidate search sends conditions such as ``(FirstName LIKE 'j%' AND
(LastName LIKE 'smi%' OR …)) OR Email IN (…)``. Matching them against every stored person
cost the stand-in most of a benchmark's CPU, which made it, not syncd, what was measured.
:func:`candidates` reads such a condition as a plan: a text field's ``=``, ``IN`` and
prefix ``LIKE`` are answered from a sorted index of that field, ``AND`` intersects, ``OR``
unites, and anything else (``NOT``, ``!=``, a leading wildcard, a parent's field) means
"every record". The answer is a superset: the caller still matches each candidate with the
full condition, so an index can only save work, never change an answer.

Only ASCII values are indexed by their lower-case form: there ``lower()`` agrees with the
case-insensitive matching of ``=`` (casefold) and ``LIKE`` (``re.IGNORECASE``). Records
whose value is other text are candidates for every look-up of that field.
"""

from __future__ import annotations

from bisect import bisect_left, bisect_right
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from sandbox.salesforce.soql.query import BoolOp, Comparison, Condition, Literal, Not

if TYPE_CHECKING:
    from sandbox.salesforce.store import Table

# Below this many records a scan is as cheap as building an index.
MIN_RECORDS = 256


@dataclass
class FieldIndex:
    version: int
    keys: list[str] = field(default_factory=list)  # lower-case ASCII values, sorted
    ids: list[str] = field(default_factory=list)  # the record of each key
    other: set[str] = field(default_factory=set)  # records whose value is non-ASCII text

    @classmethod
    def build(cls, table: Table, name: str) -> FieldIndex:
        index = cls(table.version)
        pairs: list[tuple[str, str]] = []
        for rec in table.records.values():
            value = rec.get(name)
            if rec["IsDeleted"] or not isinstance(value, str):
                continue  # text comparisons never match a non-text value
            if value.isascii():
                pairs.append((value.lower(), rec["Id"]))
            else:
                index.other.add(rec["Id"])
        pairs.sort()
        index.keys = [k for k, _ in pairs]
        index.ids = [i for _, i in pairs]
        return index

    def equal(self, key: str) -> Found:
        lo, hi = bisect_left(self.keys, key), bisect_right(self.keys, key)
        return self._found(lo, hi, exact=True)

    def prefixed(self, prefix: str, exact: bool) -> Found:
        lo = bisect_left(self.keys, prefix)
        hi = bisect_left(self.keys, prefix + "\x7f", lo)  # past every ASCII continuation
        return self._found(lo, hi, exact)

    def _found(self, lo: int, hi: int, exact: bool) -> Found:
        # Non-ASCII values are only candidates: the full condition decides them.
        return Found({*self.ids[lo:hi], *self.other}, exact and not self.other)


@dataclass(frozen=True)
class Found:
    ids: set[str]
    exact: bool  # every id matches the condition: no need to match it again


def candidates(cond: Condition | None, table: Table) -> Found | None:
    """Ids of live records that may match ``cond`` (all of them do when ``exact``);
    None: any record may."""
    if cond is None or len(table.records) < MIN_RECORDS:
        return None
    return _plan(cond, table)


def _plan(cond: Condition, table: Table) -> Found | None:
    if isinstance(cond, Not):
        return None
    if isinstance(cond, BoolOp):
        parts = [_plan(c, table) for c in cond.operands]
        if cond.op == "OR":
            if any(p is None for p in parts):
                return None
            known = [p for p in parts if p is not None]
            return Found(set().union(*(p.ids for p in known)), all(p.exact for p in known))
        known = sorted((p for p in parts if p is not None), key=lambda p: len(p.ids))
        if not known:
            return None
        exact = len(known) == len(parts) and all(p.exact for p in known)
        return Found(set.intersection(*(p.ids for p in known)), exact)
    return _comparison(cond, table)


def _comparison(cond: Comparison, table: Table) -> Found | None:
    if cond.is_id or "." in cond.field:
        return None
    if cond.op == "LIKE":
        prefix, only_prefix = _like_prefix(cond.values[0])
        if not prefix or not prefix.isascii():
            return None
        return _index(table, cond.field).prefixed(prefix.lower(), only_prefix)
    if cond.op in ("=", "IN"):
        values = [lit.value for lit in cond.values]
        if not all(lit.kind == "string" and str(lit.value).isascii() for lit in cond.values):
            return None
        index = _index(table, cond.field)
        found = [index.equal(str(v).lower()) for v in values]
        return Found(set().union(*(f.ids for f in found)), all(f.exact for f in found))
    return None


def _index(table: Table, name: str) -> FieldIndex:
    found = table.lookups.get(name)
    if found is None or found.version != table.version:
        found = table.lookups[name] = FieldIndex.build(table, name)
    return found


def _like_prefix(lit: Literal) -> tuple[str, bool]:
    """The literal text a LIKE pattern starts with, up to its first wildcard, read back from
    the compiled pattern (each literal character is ``re.escape``d, a wildcard is ``.``);
    and whether the pattern is just that text and one ``%`` (the prefix decides a match)."""
    if lit.like is None:
        return "", False
    pattern, out, i = lit.like.pattern, [], 0
    while i < len(pattern):
        c = pattern[i]
        if c == "\\" and i + 1 < len(pattern):
            out.append(pattern[i + 1])
            i += 2
        elif c == ".":
            break
        else:
            out.append(c)
            i += 1
    return "".join(out), pattern[i:] == ".*"
