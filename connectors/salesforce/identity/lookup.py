"""Salesforce identity look-up: SOQL for a batch of identity keys, and deciding each key.

Pure, so the queries and the matching rules are tested without an org: :func:`lookup_soql`
builds one query per chunk of keys (:func:`key_chunks` keeps each within the URL budget),
:func:`match_rows` decides each key from the rows that query returned.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Container, Iterable, Iterator, Mapping, Sequence
from typing import Any, TypeVar
from urllib.parse import quote_plus

from connectors.salesforce.records import BATCH, SYSTEM, bare_handle
from connectors.salesforce.settings import IdentityFields
from syncd.model import CrmRef, IdentityKey, Match

__all__ = [
    "SOQL_URL_BUDGET", "chunks", "key_chunks", "lookup_soql", "match_rows", "settle", "soql_quote",
]  # fmt: skip

T = TypeVar("T")

# The connector's one logger name, so logging set up for connectors.salesforce.crm covers this too.
log = logging.getLogger("connectors.salesforce")

# URI + headers of one request may not exceed 16,384 bytes (help article 000386264; the
# stand-in refuses more, as Salesforce does): the values of one query may take 14,000, which
# leaves 2,384 for the path, the SELECT list and the headers (under 1,000 in practice).
SOQL_URL_BUDGET = 14_000
MAX_VALUE = 255

_SOQL_ESCAPES = {
    "\\": "\\\\", "'": "\\'", '"': '\\"',
    "\n": "\\n", "\r": "\\r", "\t": "\\t", "\b": "\\b", "\f": "\\f",
}  # fmt: skip


def soql_quote(value: str, *, like: bool = False) -> str:
    """``value`` as a quoted SOQL string literal, safe to paste into a query.

    ``_`` and ``%`` are wildcards only in LIKE, and escaping them anywhere else is a syntax
    error, so they are escaped only for a LIKE pattern (``like=True``).
    """
    escaped = "".join(_SOQL_ESCAPES.get(c, c) for c in value)
    if like:
        escaped = escaped.replace("_", "\\_").replace("%", "\\%")
    return f"'{escaped}'"


def field(row: Mapping[str, Any], path: str) -> Any:
    """A row's value at ``path`` (``Account.Name``), whatever casing the answer used."""
    value: Any = row
    for part in path.split("."):
        if not isinstance(value, Mapping):
            return None
        if part in value:  # answers spell fields as asked, nearly always: no scan
            value = value[part]
            continue
        value = next((v for k, v in value.items() if str(k).lower() == part.lower()), None)
    return value


def priority_of(row: Mapping[str, Any], path: str | None) -> str | None:
    """The customer's priority value a row holds at ``path`` (None: not asked, or empty)."""
    value = field(row, path) if path else None
    text = str(value).strip() if value is not None else ""
    return text or None


def askable(value: str) -> bool:
    """Whether a value can be in a Salesforce text field at all (none holds more than 255
    characters): a longer one matches nothing, and alone could overflow a query URL."""
    return len(value) <= MAX_VALUE


def handle_values(key: IdentityKey) -> list[str]:
    # CRM data entry varies: a handle field may hold "name" or "@name".
    bare = bare_handle(key.handle)
    return [v for v in (bare, f"@{bare}") if askable(v)] if bare else []


def id_values(key: IdentityKey, fields: IdentityFields | None = None) -> list[str]:
    """The user id as syncd keys it, and the bare id a field of its scope may hold."""
    bare = fields.bare(key.user_id) if fields is not None else None
    return [v for v in (key.user_id, bare) if v and askable(v)]


def _lookup_values(key: IdentityKey, fields: IdentityFields | None = None) -> list[str]:
    handles = handle_values(key) if fields is None or fields.handle else []
    return id_values(key, fields) + handles


def lookup_soql(
    obj: str, fields: IdentityFields, keys: Sequence[IdentityKey], priority: str | None = None
) -> str:
    """ONE query for a chunk of keys against one person object; with the customer's
    ``priority`` field (a path: ``Account.CustomerPriority__c``), so the match carries it."""
    user_ids = dict.fromkeys(v for k in keys for v in id_values(k, fields))
    handles = dict.fromkeys(v for k in keys for v in handle_values(k)) if fields.handle else {}
    parts = [f"{fields.user_id} IN ({', '.join(map(soql_quote, user_ids))})"] if user_ids else []
    if handles:
        parts.append(f"{fields.handle} IN ({', '.join(map(soql_quote, handles))})")
    where = " OR ".join(parts)
    columns = ["Id", "Name", fields.user_id, *([fields.handle] if fields.handle else [])]
    select = ", ".join(columns + ([priority] if priority else []))
    return f"SELECT {select} FROM {obj} WHERE {where}"


def chunks(items: Iterable[T], cost: Callable[[T], int]) -> Iterator[list[T]]:
    """Runs of at most :data:`BATCH` items whose ``cost`` (URL-encoded query text) stays
    within :data:`SOQL_URL_BUDGET`; an item costlier than the budget goes alone."""
    chunk: list[T] = []
    size = 0
    for item in items:
        spent = cost(item)
        if chunk and (len(chunk) == BATCH or size + spent > SOQL_URL_BUDGET):
            yield chunk
            chunk, size = [], 0
        chunk.append(item)
        size += spent
    if chunk:
        yield chunk


def url_cost(text: str) -> int:
    """What ``text`` adds to a query URL, with a separator."""
    return len(quote_plus(text)) + 4


def key_chunks(
    keys: Sequence[IdentityKey], fields: IdentityFields | None = None
) -> Iterator[list[IdentityKey]]:
    """Chunks of the keys that have a value to ask by."""
    askable_keys = [k for k in keys if _lookup_values(k, fields)]
    return chunks(
        askable_keys, lambda k: sum(url_cost(soql_quote(v)) for v in _lookup_values(k, fields))
    )


def match_rows(
    obj: str,
    fields: IdentityFields,
    keys: Sequence[IdentityKey],
    rows: Sequence[Mapping[str, Any]],
    ids_only: Container[IdentityKey] = (),
    priority: str | None = None,
) -> dict[IdentityKey, Match | None]:
    """Decide each key against one object's rows; ``None`` marks an ambiguous key.

    The immutable user id beats the handle. Two records matching the same way is ambiguous and
    never guessed. A handle on a record holding another user id is no match: the answer says
    so (``held_user_id``), for a person to look at. Keys in ``ids_only`` (an earlier object
    held their handle under another id) are decided by user id alone. Keys absent from the
    result matched nothing here. ``priority``: the field the query read the customer's
    priority value from, carried by each match.
    """
    by_user_id: dict[str, dict[str, CrmRef]] = {}
    by_handle: dict[str, dict[str, tuple[CrmRef, str]]] = {}
    for row in rows:
        # Salesforce answers with each field's own casing, whatever casing the query used.
        values = {str(k).lower(): v for k, v in row.items()}
        ref = CrmRef(obj, str(values["id"]), values.get("name"), priority_of(row, priority))
        user_id = fields.on_file(str(values.get(fields.user_id.lower()) or "")) or ""
        if user_id:
            by_user_id.setdefault(user_id, {})[ref.id] = ref
        held_handle = values.get(fields.handle.lower()) if fields.handle else None
        if handle := bare_handle(held_handle):
            by_handle.setdefault(handle.casefold(), {})[ref.id] = (ref, user_id)
    decided: dict[IdentityKey, Match | None] = {}
    for key in keys:
        handle, user_id = bare_handle(key.handle), key.user_id.strip()
        by_id = by_user_id.get(user_id, {})
        by_name = by_handle.get(handle.casefold(), {}) if handle and key not in ids_only else {}
        if len(by_id) == 1:
            decided[key] = Match(next(iter(by_id.values())), "crm_user_id")
        elif not by_id and len(by_name) == 1:
            ((ref, held),) = by_name.values()
            decided[key] = Match(ref, "crm_handle", held if held not in ("", user_id) else None)
        elif by_id or by_name:
            matcher, hits = ("crm_user_id", by_id) if by_id else ("crm_handle", by_name)
            log.warning("%s: %d %ss match %s by %s", SYSTEM, len(hits), obj, key, matcher)
            decided[key] = None
    return decided


def settle(
    found: dict[IdentityKey, Match],
    keys: Sequence[IdentityKey],
    decided: Mapping[IdentityKey, Match | None],
) -> list[IdentityKey]:
    """Take one object's answers (:func:`match_rows`) into ``found``; return the keys the
    next object is asked about: those nothing matched, and those whose handle a record of
    another user id holds (kept in ``found`` unless a later object holds their own id)."""
    again: list[IdentityKey] = []
    for key in keys:
        if key not in decided:
            again.append(key)
        elif (match := decided[key]) is None:
            found.pop(key, None)  # ambiguous: never guessed
        else:
            found[key] = match
            if match.held_user_id is not None:
                again.append(key)
    return again
