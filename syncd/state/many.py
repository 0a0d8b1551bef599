"""Many rows in one statement whose text does not depend on how many there are, and many
values over several statements (:func:`chunks`).

Given a list of rows, SQLAlchemy sends PostgreSQL either one statement per row (an
executemany: each parsed, bound and run by the server on its own) or, with RETURNING, one
statement with a placeholder per value (insertmanyvalues: its text differs with every row
count, so psycopg converts it again in Python for every page and the server plans it anew).
Both cost a page of posts far more than its rows do. On PostgreSQL the rows are sent instead
as one JSON document, made by the json module's C encoder, that the server turns back into
rows (``json_to_recordset``, typed as the table's columns): one short statement per table,
the same text every time, which psycopg caches and prepares. Arrays, one per column, were
tried first: psycopg quotes each element of a text array in Python, which cost as much as
the placeholders it saved. SQLite runs in the process and is given the list as before.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator, Mapping, Sequence
from datetime import date, datetime
from functools import partial
from typing import Any, TypeVar

from sqlalchemy import (
    JSON,
    ColumnElement,
    Connection,
    CursorResult,
    Insert,
    Text,
    any_,
    bindparam,
    cast,
    column,
    func,
    select,
)
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
    given = given_rows(conn, rows, {n: table.c[n].type for n in names})
    return conn.execute(stmt.from_select(names, select(*(given[n] for n in names))))


def given_rows(
    conn: Connection, rows: Sequence[Mapping[str, Any]], types: Mapping[str, TypeEngine[Any]]
) -> Mapping[str, ColumnElement[Any]]:
    """The values of ``rows`` by column name, for a statement run for all of them: on
    PostgreSQL columns of the rows sent as one document (execute the statement without
    parameters), elsewhere bound parameters (execute it with ``rows``, an executemany)."""
    if conn.dialect.name != "postgresql":
        return {n: bindparam(n, type_=t) for n, t in types.items()}
    document = bindparam("many_rows", _document(conn, rows, types), type_=Text)
    # A JSON column's value is sent as the text SQLAlchemy would bind (see _document).
    sent = {n: Text() if isinstance(t, JSON) else t for n, t in types.items()}
    given = (
        func.json_to_recordset(cast(document, JSON))
        .table_valued(*(column(n, t) for n, t in sent.items()))
        .render_derived(name="v", with_types=True)
    )
    return {n: cast(given.c[n], t) if isinstance(t, JSON) else given.c[n] for n, t in types.items()}


def _document(
    conn: Connection, rows: Sequence[Mapping[str, Any]], types: Mapping[str, TypeEngine[Any]]
) -> str:
    """The rows as JSON, each value as its column's type binds it (a UTC datetime's check,
    stored text's redaction). A JSON column's value is the JSON text SQLAlchemy binds (None
    its null, unless the column keeps None as NULL), as a string: the server then stores
    the same text, escapes included (a NUL or a lone surrogate a post's payload may carry
    would not survive being taken out of the document as a value)."""
    dialect = conn.dialect
    serialize = getattr(dialect, "_json_serializer", None) or json.dumps
    binds: dict[str, Callable[[Any], Any]] = {}
    for n, t in types.items():
        if isinstance(t, JSON):
            binds[n] = partial(_json_text, serialize, t)
        elif (bind := t.dialect_impl(dialect).bind_processor(dialect)) is not None:
            binds[n] = bind
    values = [dict(r) for r in rows]
    for n, processor in binds.items():
        for v in values:
            v[n] = processor(v[n])
    return json.dumps(values, default=_encode, separators=(",", ":"))


def _json_text(serialize: Callable[[Any], str], t: JSON, value: Any) -> str | None:
    if value is None or value is JSON.NULL:
        return None if t.none_as_null and value is None else "null"
    return serialize(value)


def _encode(value: Any) -> Any:
    if isinstance(value, datetime | date):
        return value.isoformat()
    raise TypeError(f"a {type(value).__name__} cannot be sent as a column's value")


T = TypeVar("T")
IN_LIST = 500  # values per IN list: far below any backend's bound-parameter limit


def one_of(conn: Connection, col: ColumnElement[Any], values: Sequence[Any]) -> ColumnElement[bool]:
    """``col`` is one of ``values`` (a chunk's worth). On PostgreSQL as ``= ANY`` of one array:
    an IN list of 500 placeholders is converted by psycopg value by value and planned anew
    for every length, and took 2.6 times as long as the array for 500 record ids of 16,000
    (``bench``-sized CRM copy, client side included)."""
    if conn.dialect.name != "postgresql":
        return col.in_(values)
    return col == any_(bindparam(None, list(values), type_=ARRAY(col.type)))


def chunks(items: Sequence[T], size: int = IN_LIST) -> Iterator[Sequence[T]]:
    """``items`` in slices of ``size``: one IN list each, where a statement would ask about
    more values than one should carry."""
    for start in range(0, len(items), size):
        yield items[start : start + size]
