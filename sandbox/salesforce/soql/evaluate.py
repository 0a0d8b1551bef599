"""Evaluating a bound SOQL query (:mod:`sandbox.salesforce.soql.bind`) against stored records.

Semantics follow Salesforce rather than Python: text compares case-insensitively with ``=``,
``IN`` and ``LIKE``; ``!=`` matches nulls; record ids compare in their 18-character form;
ORDER BY puts nulls first unless told otherwise; relative date literals are day ranges in UTC.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal, InvalidOperation
from typing import Any

from sandbox.salesforce.schema import normalize_id
from sandbox.salesforce.schema import parse_stamp as to_datetime
from sandbox.salesforce.soql.query import (
    BoolOp,
    Comparison,
    Condition,
    Literal,
    Not,
    OrderItem,
    Query,
)

Record = Mapping[str, Any]


def day_range(word: str, today: date) -> tuple[datetime, datetime]:
    """[start, end) of a relative date literal such as TODAY or LAST_N_DAYS:7."""
    name, _, n_text = word.upper().partition(":")
    n = int(n_text or 0)
    first, days = {
        "TODAY": (today, 1),
        "YESTERDAY": (today - timedelta(days=1), 1),
        "TOMORROW": (today + timedelta(days=1), 1),
        "LAST_N_DAYS": (today - timedelta(days=n), n + 1),  # includes today
        "NEXT_N_DAYS": (today + timedelta(days=1), n),
        "N_DAYS_AGO": (today - timedelta(days=n), 1),
    }[name]
    start = datetime(first.year, first.month, first.day, tzinfo=UTC)
    return start, start + timedelta(days=days)


def _number(value: object) -> Decimal | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float | Decimal):
        return Decimal(str(value))
    if isinstance(value, str):
        try:
            return Decimal(value)
        except InvalidOperation:
            return None
    return None


def _pair(value: object, lit: Literal, is_id: bool) -> tuple[Any, Any] | None:
    """Both sides of a comparison in one comparable domain, or None when incomparable."""
    if lit.kind == "string":
        if not isinstance(value, str):
            return None
        if is_id:
            return normalize_id(value) or value, normalize_id(lit.value) or lit.value
        return value.casefold(), str(lit.value).casefold()
    if lit.kind == "number":
        num = _number(value)
        return None if num is None else (num, lit.value)
    if lit.kind == "boolean":
        return (value, lit.value) if isinstance(value, bool) else None
    stamp = to_datetime(value)
    if stamp is None:
        return None
    if lit.kind == "date":
        return stamp.date(), lit.value
    return stamp, lit.value  # datetime


_OPS = {
    "=": lambda a, b: a == b,
    "!=": lambda a, b: a != b,
    "<": lambda a, b: a < b,
    "<=": lambda a, b: a <= b,
    ">": lambda a, b: a > b,
    ">=": lambda a, b: a >= b,
}


class Matcher:
    """Evaluates WHERE conditions; ``now`` anchors relative date literals."""

    def __init__(self, now: datetime) -> None:
        self.today = now.astimezone(UTC).date()
        # IN lists of text, as sets of compared forms: Salesforce answers an IN on an indexed
        # field from the index, and comparing every record with every listed value made a
        # look-up of 200 authors cost 800 comparisons per stored person.
        self._in_sets: dict[int, frozenset[str] | None] = {}

    def compare(self, value: object, op: str, lit: Literal, is_id: bool) -> bool:
        if lit.kind == "null":
            return (value is None) == (op == "=")
        if value is None:
            return op == "!="
        if lit.kind == "range":
            stamp = to_datetime(value)
            if stamp is None:
                return op == "!="
            start, end = day_range(str(lit.value), self.today)
            return {
                "=": start <= stamp < end,
                "!=": not start <= stamp < end,
                "<": stamp < start,
                "<=": stamp < end,
                ">": stamp >= end,
                ">=": stamp >= start,
            }[op]
        pair = _pair(value, lit, is_id)
        if pair is None:
            return op == "!="
        try:
            return bool(_OPS[op](*pair))
        except TypeError:
            return False

    def matches(self, cond: Condition, record: Record) -> bool:
        if isinstance(cond, Not):
            return not self.matches(cond.operand, record)
        if isinstance(cond, BoolOp):
            parts = (self.matches(c, record) for c in cond.operands)
            return all(parts) if cond.op == "AND" else any(parts)
        value = record.get(cond.field)
        if cond.op == "LIKE":
            like = cond.values[0].like
            return isinstance(value, str) and like is not None and bool(like.fullmatch(value))
        if cond.op in ("IN", "NOT IN"):
            found = self._listed(cond, value)
            return found if cond.op == "IN" else not found
        return self.compare(value, cond.op, cond.values[0], cond.is_id)

    def _listed(self, cond: Comparison, value: object) -> bool:
        """``value`` equals one of the IN list's values, as :meth:`compare` says."""
        # Keyed by identity: the query, and so the condition, outlives this matcher.
        key = id(cond)
        if key not in self._in_sets:
            text = all(lit.kind == "string" for lit in cond.values)
            self._in_sets[key] = (
                frozenset(_text_key(str(lit.value), cond.is_id) for lit in cond.values)
                if text
                else None
            )
        listed = self._in_sets[key]
        if listed is None:
            return any(self.compare(value, "=", lit, cond.is_id) for lit in cond.values)
        # A non-text value equals no text literal (compare's pairing finds them incomparable).
        return isinstance(value, str) and _text_key(value, cond.is_id) in listed


def _text_key(value: str, is_id: bool) -> str:
    """The form text is compared in: an id's 18 characters, else case-folded."""
    return (normalize_id(value) or value) if is_id else value.casefold()


def _sort_value(value: object, is_id: bool = False) -> tuple[int, Any]:
    if isinstance(value, bool):
        return 1, int(value)
    if isinstance(value, int | float | Decimal):
        return 2, Decimal(str(value))
    if isinstance(value, str):
        # Ids sort case-sensitively, as ``Id > '…'`` compares them: case-folded, ids with
        # lowercase base-62 digits sorted among uppercase ones, and paging by Id (``WHERE
        # Id > last ORDER BY Id``) skipped records.
        return 3, _text_key(value, is_id)
    return 4, str(value)


def order(records: list[Record], items: Sequence[OrderItem]) -> list[Record]:
    """Sort like ORDER BY: one stable pass per key, last key first."""
    out = list(records)
    for item in reversed(items):
        name, is_id = item.field.name, item.is_id
        # after an optional reverse, nulls must land where NULLS FIRST/LAST says
        nulls_high = item.nulls_last != item.descending

        def key(
            rec: Record, name: str = name, nulls_high: bool = nulls_high, is_id: bool = is_id
        ) -> tuple[Any, ...]:
            value = rec.get(name)
            if value is None:
                return (1 if nulls_high else 0, 0, 0)
            return (0 if nulls_high else 1, *_sort_value(value, is_id))

        out.sort(key=key, reverse=item.descending)
    return out


def index_hint(cond: Condition | None) -> tuple[str, list[str]] | None:
    """``(field, values)`` when every match must have ``field`` equal to one of ``values``.

    Lets the store answer ``WHERE Social_Post_Id__c IN (…)`` from its index instead of
    scanning 100k Tasks.
    """
    if (
        isinstance(cond, Comparison)
        and cond.op in ("=", "IN")
        and all(lit.kind == "string" for lit in cond.values)
    ):
        return cond.field, [str(lit.value) for lit in cond.values]
    if isinstance(cond, BoolOp) and cond.op == "AND":
        for part in cond.operands:
            if hint := index_hint(part):
                return hint
    return None


def run(
    query: Query, records: Iterable[Record], now: datetime, *, matched: bool = False
) -> list[Record]:
    """The records ``query`` selects, ordered, after OFFSET and LIMIT (not yet projected).
    ``matched``: the records are known to satisfy the WHERE clause already."""
    matcher = Matcher(now)
    where = None if matched else query.where
    selected = [r for r in records if where is None or matcher.matches(where, r)]
    if query.order_by:
        selected = order(selected, query.order_by)
    start = query.offset or 0
    stop = None if query.limit is None else start + query.limit
    return selected[start:stop]
