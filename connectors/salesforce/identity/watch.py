"""Which Contacts and Leads changed since the last look: the pure half of ``people_changes``.

Salesforce stamps every change in ``SystemModstamp``, to the second. The mark kept per
object is the newest stamp seen and the ids already reported at exactly that stamp: the next
query asks for ``SystemModstamp >= stamp`` (a record changed later in the same second is not
missed) and drops the ids already reported (nor is one reported twice).
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from connectors.salesforce.identity.lookup import field, soql_quote
from connectors.salesforce.identity.people import CANDIDATE_LIMIT, SHAPES, id18, person_fields
from connectors.salesforce.settings import IdentityFields

EPOCH = "1970-01-01T00:00:00.000+0000"
MAX_EXCLUDED = 200  # ids a query leaves out by name; more (a bulk load) are dropped in Python
_STAMP = re.compile(r"^(\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2})(?:\.(\d+))?(Z|[+-]\d{2}:?\d{2})$")


@dataclass(frozen=True)
class Watermark:
    stamp: str  # as the API wrote it: '2026-11-22T18:00:00.000+0000'
    seen: tuple[str, ...] = ()  # ids already reported at exactly ``stamp``


def parse_stamp(stamp: str) -> datetime:
    m = _STAMP.match(stamp.strip())
    if m is None:
        raise ValueError(f"not a Salesforce timestamp: {stamp!r}")
    day, fraction, zone = m.groups()
    zone = "+00:00" if zone == "Z" else zone if ":" in zone else f"{zone[:3]}:{zone[3:]}"
    return datetime.fromisoformat(f"{day}.{(fraction or '0')[:6]:0<6}{zone}")


def literal(moment: datetime) -> str:
    """A SOQL datetime literal: whole seconds, UTC."""
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def changes_soql(
    obj: str,
    fields: IdentityFields | None,
    since: Watermark | None,
    also: Sequence[str] = (),
    stamp: str = "SystemModstamp",
) -> str:
    """People of ``obj`` changed at or after the mark, oldest change first; without a mark,
    only the newest stamp (where a new watch starts). ``also``: more columns (every
    network's id and handle fields). ``stamp``: the change stamp watched, the person's own
    or their Account's (``Account.SystemModstamp``: a change to an Account field, such as
    the customer's priority, stamps the Account, not its Contacts)."""
    own = stamp == "SystemModstamp"
    if since is None:
        where = "" if own else f" WHERE {stamp} != null"
        return f"SELECT Id, {stamp} FROM {obj}{where} ORDER BY {stamp} DESC LIMIT 1"
    at = literal(parse_stamp(since.stamp))
    where = f"{stamp} >= {at}"
    if 0 < len(since.seen) <= MAX_EXCLUDED:  # so the seen ones do not fill the page again
        # Only at that very stamp: a seen record changed again later must be reported.
        seen = ", ".join(soql_quote(i) for i in since.seen)
        where += f" AND ({stamp} > {at} OR Id NOT IN ({seen}))"
    if only := SHAPES[obj].only:
        where = f"{only} AND {where}"
    return (
        f"SELECT {person_fields(obj, fields, also)}, {stamp} FROM {obj} WHERE {where} "
        f"ORDER BY {stamp}, Id LIMIT {CANDIDATE_LIMIT}"
    )


def restamped(rows: Sequence[Mapping[str, Any]], stamp: str) -> list[Mapping[str, Any]]:
    """Rows of a watch on another stamp than the person's own, stamped with the watched
    one, as :func:`advance` and :func:`start_mark` read them."""
    if stamp == "SystemModstamp":
        return list(rows)
    return [{**row, "SystemModstamp": field(row, stamp)} for row in rows]


def advance(
    since: Watermark, rows: Sequence[Mapping[str, Any]]
) -> tuple[list[Mapping[str, Any]], Watermark, bool]:
    """The rows not reported before, the mark after them, and whether the answer was whole."""
    start, fresh = parse_stamp(since.stamp), []
    for row in rows:
        stamp = parse_stamp(str(row["SystemModstamp"]))
        rid = id18(row.get("Id")) or str(row.get("Id"))
        if stamp > start or (stamp == start and rid not in since.seen):
            fresh.append(row)
    complete = len(rows) < CANDIDATE_LIMIT
    if not fresh:
        if not complete:  # a whole page at one stamp, all seen: step past that second
            later = start.replace(microsecond=0) + timedelta(seconds=1)
            return [], Watermark(later.strftime("%Y-%m-%dT%H:%M:%S.000+0000")), False
        return [], since, True
    last = str(fresh[-1]["SystemModstamp"])
    at_last = parse_stamp(last)
    same = [
        id18(r.get("Id")) or str(r.get("Id"))
        for r in fresh
        if parse_stamp(str(r["SystemModstamp"])) == at_last
    ]
    carried = list(since.seen) if at_last == start else []
    return fresh, Watermark(last, tuple(dict.fromkeys(carried + same))), complete


def start_mark(rows: Sequence[Mapping[str, Any]]) -> Watermark:
    """Where a new watch starts: after the newest record there is (the epoch if none)."""
    if not rows:
        return Watermark(EPOCH)
    newest = rows[0]
    return Watermark(str(newest["SystemModstamp"]), (id18(newest.get("Id")) or "",))


def read(mark: str | None) -> dict[str, Watermark]:
    """A stored mark back; anything unreadable starts afresh."""
    try:
        value = json.loads(mark) if mark else {}
    except ValueError:
        return {}
    out: dict[str, Watermark] = {}
    if isinstance(value, dict):
        for obj, m in value.items():
            if isinstance(m, dict) and isinstance(m.get("stamp"), str):
                out[str(obj)] = Watermark(m["stamp"], tuple(map(str, m.get("seen") or ())))
    return out


def write(marks: Mapping[str, Watermark]) -> str:
    return json.dumps(
        {obj: {"stamp": m.stamp, "seen": list(m.seen)} for obj, m in sorted(marks.items())}
    )
