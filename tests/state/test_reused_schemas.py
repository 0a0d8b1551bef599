"""The migrated PostgreSQL schemas ``db`` reuses: each test gets one as a fresh migration leaves
it, whatever the test before did to its own."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest
from sqlalchemy import Engine, func, select, text
from support.databases import MigratedSchemas, schema_url
from support.pipeline import BRAND, T0

from syncd.state import ingest
from syncd.state.db import Database
from syncd.state.tables import accounts

# SQLite databases are copied from a migrated file, never reused.
pytestmark = pytest.mark.parametrize(
    "state_url", [pytest.param("postgresql", marks=pytest.mark.postgres)], indirect=True
)


def url(admin: Engine) -> str:
    return admin.url.render_as_string(hide_password=False)


@pytest.fixture
def schemas(state_url: str, _pg_admin: Engine) -> Iterator[MigratedSchemas]:
    # state_url: PostgreSQL is there (or the test is skipped, or fails if it must be there).
    pool = MigratedSchemas(_pg_admin, url(_pg_admin))
    yield pool
    pool.drop_all()


def lent(pool: MigratedSchemas, admin: Engine) -> tuple[str, Database]:
    """An empty schema, as ``state_url`` makes, replaced by a migrated one."""
    schema = f"t_{uuid.uuid4().hex[:12]}"
    with admin.begin() as conn:
        conn.execute(text(f'CREATE SCHEMA "{schema}"'))
    pool.lend(schema)
    return schema, Database(schema_url(url(admin), schema))


def drop(admin: Engine, schema: str) -> None:
    with admin.begin() as conn:
        conn.execute(text(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE'))


def test_a_returned_schema_comes_back_empty_and_its_ids_start_again(
    schemas: MigratedSchemas, _pg_admin: Engine
) -> None:
    first, db = lent(schemas, _pg_admin)
    with db.transaction() as conn:
        ingest.store_accounts(conn, "x", [BRAND], T0)
        first_id = conn.execute(select(accounts.c.id)).scalar_one()
    db.dispose()
    schemas.take_back(first)
    assert len(schemas.spare) == 1  # kept for the next test

    second, db = lent(schemas, _pg_admin)
    try:
        assert schemas.spare == []  # the same one, not migrated again
        with db.connect() as conn:
            assert conn.execute(select(func.count()).select_from(accounts)).scalar_one() == 0
        db.upgrade()  # at head already: nothing to do, nothing fails
        with db.transaction() as conn:
            ingest.store_accounts(conn, "x", [BRAND], T0)
            assert conn.execute(select(accounts.c.id)).scalar_one() == first_id
    finally:
        db.dispose()
        drop(_pg_admin, second)


def test_a_schema_the_test_changed_is_not_reused(
    schemas: MigratedSchemas, _pg_admin: Engine
) -> None:
    schema, db = lent(schemas, _pg_admin)
    with db.transaction() as conn:
        conn.execute(text("ALTER TABLE accounts ADD COLUMN extra integer"))
    db.dispose()
    schemas.take_back(schema)
    assert schemas.spare == []
    drop(_pg_admin, schema)
