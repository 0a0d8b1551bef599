"""Many rows in one INSERT whose text does not depend on how many there are.

Given a list of rows, SQLAlchemy sends PostgreSQL either one statement per row (an
executemany: each parsed, bound and run by the server on its own) or, with RETURNING, one
statement with a placeholder per value (insertmanyvalues: its text differs with every row
count, so psycopg converts it again in Python for every page and the server plans it anew).
Both cost a page of posts far more than its rows do. On PostgreSQL the rows are sent instead
as one array per column, unnested by the server: one short statement per table, the same
text every time, which psycopg caches and prepares. SQLite runs in the process and is given
the list as before.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from sqlalchemy import ColumnElement, Connection, CursorResult, Insert, bindparam, func, select
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.types import TypeEngine


def insert_many(
    conn: Connection, stmt: Insert, rows: Sequence[Mapping[str, Any]]
) -> CursorResult[*tuple[Any, ...]]:
    """Run ``stmt`` (an INSERT without values, its ON CONFLICT and RETURNING as wanted) for
    ``rows``, which all name the same columns. On PostgreSQL the rows are inserted in the
    order given (row locks are taken in that order), and an ON CONFLICT DO UPDATE must not
    meet the same key twice in them (it cannot change a row twice in one statement)."""
    if conn.dialect.name != "postgresql" or not rows:
        return conn.execute(stmt, list(rows))
    table = stmt.table
    names = list(rows[0])
    # One dimension: a JSON column's value that is itself a list stays one value.
    arrays = [
        bindparam(f"many_{n}", [r[n] for r in rows], type_=ARRAY(table.c[n].type, dimensions=1))
        for n in names
    ]
    given = func.unnest(*arrays).table_valued(*names).render_derived(name="v")
    return conn.execute(stmt.from_select(names, select(*(given.c[n] for n in names))))


def given_rows(
    conn: Connection, rows: Sequence[Mapping[str, Any]], types: Mapping[str, TypeEngine[Any]]
) -> Mapping[str, ColumnElement[Any]]:
    """The values of ``rows`` by column name, for an UPDATE or DELETE run for all of them:
    on PostgreSQL columns of the rows unnested from arrays (one statement, as
    :func:`insert_many`; execute it without parameters), elsewhere bound parameters (execute
    it with ``rows``, an executemany)."""
    if conn.dialect.name != "postgresql":
        return {n: bindparam(n, type_=t) for n, t in types.items()}
    arrays = [
        bindparam(f"many_{n}", [r[n] for r in rows], type_=ARRAY(t, dimensions=1))
        for n, t in types.items()
    ]
    given = func.unnest(*arrays).table_valued(*types).render_derived(name="v")
    return {n: given.c[n] for n in types}
