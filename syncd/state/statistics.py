"""Fresh planner statistics for the tables a new or bursting state database fills fastest.

PostgreSQL plans every statement from statistics that autovacuum refreshes on its own
schedule: a table is analysed once a tenth of it changed, and autovacuum looks at most once
a minute. A state database that grows from nothing (a first start, a first backfill) or by
more than it held (a burst) is planned meanwhile as if nearly empty: a join to the links of
the waiting authors then scanned every link once per author, a thousand times a call, and
the daemon ran at a fifth of SQLite's speed. Analysing the tables that grew by more than a
fifth since their last analysis (a few milliseconds each at these sizes) keeps the plans
those of the real sizes; in a steady state autovacuum gets there first and nothing is done.
SQLite plans without such statistics here (the queries are shaped for its planner), so
this is PostgreSQL's alone.
"""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import Connection, bindparam, text

from syncd.state.coordination import shared

# The tables a poll, a resolve round and a write round read by joins and look-ups.
TABLES = (
    "interactions",
    "deliveries",
    "identities",
    "identity_handles",
    "links",
    "candidates",
    "crm_keys",
    "cases",
)
MIN_CHANGED = 1000  # rows changed before a table is worth analysing again
SHARE = 0.2  # … and this share of the rows it held when last analysed

_STALE = text(
    "SELECT s.relname, s.n_mod_since_analyze, c.reltuples "
    "FROM pg_stat_user_tables s JOIN pg_class c ON c.oid = s.relid "
    "WHERE s.schemaname = current_schema() AND s.relname IN :names"
).bindparams(bindparam("names", expanding=True))


def stale(conn: Connection, only: Sequence[str] = TABLES) -> list[str]:
    """The tables (of :data:`TABLES`, or ``only`` those) that changed by more than
    :data:`MIN_CHANGED` rows and :data:`SHARE` of their size since PostgreSQL last analysed
    them (none on SQLite)."""
    if not shared(conn):
        return []
    rows = conn.execute(_STALE, {"names": [name for name in only if name in TABLES]})
    # reltuples is -1 for a table never analysed (PostgreSQL 14 and later): taken as empty.
    return sorted(
        str(name)
        for name, changed, tuples in rows
        if changed >= MIN_CHANGED + SHARE * max(float(tuples), 0.0)
    )


def refresh(conn: Connection, only: Sequence[str] = TABLES) -> list[str]:
    """Analyse the :func:`stale` tables; the names analysed."""
    names = stale(conn, only)
    for name in names:
        assert name in TABLES  # a fixed name, never an input: safe to put in the statement
        conn.exec_driver_sql(f'ANALYZE "{name}"')
    return names
