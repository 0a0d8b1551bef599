"""The local copy of the CRM people carrying a network user id or handle (``crm_keys``).

The resolver reads it instead of asking the CRM for every batch of authors. Pages of a load
and batches of changes go through :func:`put`, which replaces a person's rows as a whole
unless the copy already holds a newer version of that person; a whole load ends by sweeping
the people it did not see (deleted in the CRM, or no longer carrying any id or handle).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, and_, delete, select, update

from syncd.model import CrmRef, IdentityKey, KeyOnFile, KeysOnFile, KeysPage
from syncd.state import statistics, suppression
from syncd.state.ingest import insert_for
from syncd.state.linking import refresh_priorities, stored_priority
from syncd.state.many import chunks, insert_many, one_of
from syncd.state.tables import crm_key_loads, crm_keys

log = logging.getLogger("syncd.resolver")


@dataclass(frozen=True)
class LoadState:
    cursor: str | None = None  # the next page of a load under way
    started_at: datetime | None = None  # a load under way began then
    loaded_at: datetime | None = None  # the last whole load ended then; None: never


def load_state(conn: Connection, crm: str) -> LoadState:
    row = conn.execute(select(crm_key_loads).where(crm_key_loads.c.crm == crm)).first()
    return LoadState(row.cursor, row.started_at, row.loaded_at) if row else LoadState()


def begin_load(conn: Connection, crm: str, started_at: datetime) -> None:
    """Start a whole (re)load; a copy already loaded stays in use meanwhile."""
    ins = insert_for(conn, crm_key_loads)
    conn.execute(
        ins.on_conflict_do_update(
            index_elements=["crm"], set_={"cursor": None, "started_at": started_at}
        ),
        {"crm": crm, "cursor": None, "started_at": started_at, "loaded_at": None},
    )


def store_page(conn: Connection, crm: str, page: KeysPage, now: datetime) -> bool:
    """Store one page of a load and where the load stands; True when that ended it. The
    people's priority values go to their links too: the daily reload is what gives links
    made before priorities were configured (or a change the watch missed) their value."""
    put(conn, crm, page.people, now)
    # Not the copy's own: put wrote the page's values, or kept a newer version's.
    refresh_priorities(conn, crm, [p.ref for p in page.people], copy=False)
    where = crm_key_loads.c.crm == crm
    if page.next is not None:
        conn.execute(update(crm_key_loads).where(where).values(cursor=page.next))
        # A first load fills an empty table page by page, and each page's look-ups by
        # record were planned as on an empty table: scans growing with every page.
        statistics.refresh(conn, only=("crm_keys",))
        return False
    started = conn.execute(select(crm_key_loads.c.started_at).where(where)).scalar_one()
    # Whoever the load did not see is gone from the CRM or carries no key any more; people
    # the change watch reported during the load were stamped later and stay.
    conn.execute(delete(crm_keys).where(crm_keys.c.crm == crm, crm_keys.c.seen_at < started))
    conn.execute(
        update(crm_key_loads).where(where).values(cursor=None, started_at=None, loaded_at=now)
    )
    if conn.dialect.name == "postgresql":
        # The load rewrote the table, tens of thousands of rows at once (see
        # syncd.state.statistics): the resolver's look-ups are planned on its real size.
        conn.exec_driver_sql("ANALYZE crm_keys")
    return True


def put(conn: Connection, crm: str, people: Sequence[KeysOnFile], now: datetime) -> None:
    """Replace these people's rows (a person with no keys is removed), except where the copy
    holds a newer version of the person than the one given."""
    newest: dict[str, KeysOnFile] = {}
    for p in people:
        if p.ref.id not in newest or p.stamp >= newest[p.ref.id].stamp:
            newest[p.ref.id] = p
    for ids in chunks(list(newest)):
        held = conn.execute(
            select(crm_keys.c.record_id, crm_keys.c.stamp).where(
                crm_keys.c.crm == crm, one_of(conn, crm_keys.c.record_id, ids)
            )
        )
        for record_id, stamp in held:
            if record_id in newest and stamp > newest[record_id].stamp:
                del newest[record_id]  # an older copy of this person: keep what is there
    for ids in chunks(list(newest)):
        conn.execute(
            delete(crm_keys).where(crm_keys.c.crm == crm, one_of(conn, crm_keys.c.record_id, ids))
        )
    rows = [
        {
            "crm": crm,
            "record_id": p.ref.id,
            "object": p.ref.object,
            "name": p.ref.name,
            "priority": stored_priority(p.ref),
            "rank": p.rank,
            "stamp": p.stamp,
            "network": k.network,
            "user_id": (k.user_id or "").strip() or None,
            "handle": fold_handle(k.handle),
            "seen_at": now,
        }
        for p in newest.values()
        for k in p.keys
    ]
    rows = [fitted for row in rows if (fitted := _fitted(row)) is not None]
    rows = suppression.unforgotten_keys(conn, rows)  # forgotten people are not copied again
    if rows:
        insert_many(conn, crm_keys.insert(), rows)


def forget(conn: Connection, crm: str, record_ids: Iterable[str]) -> None:
    """Drop people a write found gone (merged away or deleted), so no author links to them
    again before the change watch or the next load says where they went."""
    for ids in chunks(sorted(set(record_ids))):
        conn.execute(
            delete(crm_keys).where(crm_keys.c.crm == crm, one_of(conn, crm_keys.c.record_id, ids))
        )


def find(conn: Connection, crm: str, keys: Sequence[IdentityKey]) -> list[KeysOnFile]:
    """The people carrying any of these keys' user ids or handles on the keys' networks,
    with those networks' keys."""
    by_network: dict[str, tuple[set[str], set[str]]] = {}
    for key in keys:
        ids, handles = by_network.setdefault(key.network, (set(), set()))
        ids.add(key.user_id.strip())
        if handle := fold_handle(key.handle):
            handles.add(handle)
    people: dict[str, tuple[CrmRef, int, str, list[KeyOnFile]]] = {}
    c = crm_keys.c
    for network, (ids, handles) in sorted(by_network.items()):
        asks = [one_of(conn, c.user_id, chunk) for chunk in chunks(sorted(ids))]
        asks += [one_of(conn, c.handle, chunk) for chunk in chunks(sorted(handles))]
        for wanted in asks:
            stmt = select(crm_keys).where(and_(c.crm == crm, c.network == network, wanted))
            # Sorted here, not by ORDER BY: without statistics SQLite then walked every
            # key of the CRM in record order instead of using the user id or handle index.
            for r in sorted(conn.execute(stmt), key=lambda r: (r.record_id, r.id)):
                ref = CrmRef(r.object, r.record_id, r.name, r.priority)
                entry = people.setdefault(r.record_id, (ref, r.rank, r.stamp, []))
                carried = KeyOnFile(r.network, r.user_id, r.handle)
                if carried not in entry[3]:
                    entry[3].append(carried)
    return [
        KeysOnFile(ref, tuple(found), rank, stamp) for ref, rank, stamp, found in people.values()
    ]


# What the columns hold (tables.py); PostgreSQL refuses a longer value, failing the batch.
_SIZES = {
    name: length
    for name in ("record_id", "object", "stamp", "network", "user_id", "handle")
    if (length := getattr(crm_keys.c[name].type, "length", None)) is not None
}
_KEYS = ("user_id", "handle")


def _fitted(row: dict[str, Any]) -> dict[str, Any] | None:
    """One person's key as the copy can hold it: a user id or handle longer than its column
    is left out (the person is not matched by it; said with the record), and a row with
    nothing left, or whose record fields do not fit, is not stored. Never fatal to a batch."""
    for name, length in _SIZES.items():
        value = row[name]
        if isinstance(value, str) and len(value) > length:
            log.warning(
                "CRM record %s: its %s on %s is %d characters, more than the %d the copy "
                "holds; not used for matching",
                str(row["record_id"])[:40],
                name.replace("_", " "),
                str(row["network"])[:32],
                len(value),
                length,
            )
            if name not in _KEYS:
                return None
            row = {**row, name: None}
    return row if any(row[name] for name in _KEYS) else None


def fold_handle(handle: str | None) -> str | None:
    """A handle as the copy keeps and compares it: no '@', case-folded."""
    bare = (handle or "").strip().removeprefix("@").casefold()
    return bare or None
