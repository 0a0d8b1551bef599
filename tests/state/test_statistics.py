"""Planner statistics for tables that grew faster than autovacuum analyses them: PostgreSQL
plans a join against a table it believes empty as a scan per outer row (the daemon ran at a
fifth of SQLite's speed in the first minute of a new state database)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest
from sqlalchemy import text
from sqlalchemy.engine import make_url

from syncd.state import statistics
from syncd.state.db import Database
from syncd.state.tables import identities

NOW = datetime(2026, 12, 6, 12, tzinfo=UTC)


def _grow(db: Any, n: int, start: int = 0) -> None:
    with db.transaction() as conn:
        conn.execute(
            identities.insert(),
            [
                {"network": "x", "user_id": str(i), "first_seen_at": NOW, "updated_at": NOW}
                for i in range(start, start + n)
            ],
        )


def _analysed(db: Any) -> int:
    with db.connect() as conn:
        return int(
            conn.execute(
                text(
                    "SELECT analyze_count + autoanalyze_count FROM pg_stat_user_tables "
                    "WHERE schemaname = current_schema() AND relname = 'identities'"
                )
            ).scalar_one()
        )


def _wait_for_counts(db: Any, table: str, changed: int) -> None:
    """The server's statistics counters are flushed by each backend within a second."""
    import time

    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        with db.connect() as conn:
            got = conn.execute(
                text(
                    "SELECT n_mod_since_analyze FROM pg_stat_user_tables "
                    "WHERE schemaname = current_schema() AND relname = :t"
                ),
                {"t": table},
            ).scalar_one()
        if got >= changed:
            return
        time.sleep(0.2)
    raise AssertionError(f"{table}: the server never counted {changed} changed rows")


@pytest.mark.postgres
def test_a_table_that_grew_is_analysed_once_and_a_quiet_one_is_not(state_url: str) -> None:
    if make_url(state_url).get_backend_name() != "postgresql":
        pytest.skip("PostgreSQL's planner statistics")
    # A schema of its own, migrated here, not ``db``'s: that may be one an earlier test used
    # and emptied (conftest's MigratedSchemas), its tables' counters still holding that test's
    # inserts and deletes, some reported by their connections a while later. Autovacuum, which
    # may analyse a table 50 rows changed, is kept off identities.
    db = Database(state_url)
    try:
        db.upgrade()
        with db.transaction() as conn:
            conn.exec_driver_sql("ALTER TABLE identities SET (autovacuum_enabled = false)")
        _grown_is_analysed_once(db)
    finally:
        db.dispose()


def _grown_is_analysed_once(db: Any) -> None:
    _grow(db, 500)
    _wait_for_counts(db, "identities", 500)
    with db.transaction() as conn:
        assert statistics.refresh(conn) == []  # under MIN_CHANGED: left to autovacuum
    _grow(db, 1500, start=500)
    _wait_for_counts(db, "identities", 2000)
    before = _analysed(db)
    with db.transaction() as conn:
        assert statistics.refresh(conn) == ["identities"]
    with db.connect() as conn:
        tuples = conn.execute(
            text("SELECT reltuples FROM pg_class WHERE oid = 'identities'::regclass")
        ).scalar_one()
    assert tuples == 2000  # the planner now knows the size
    assert _analysed(db) == before + 1
    _grow(db, 300, start=2000)  # a fifth of 2,000 plus 1,000 is not reached
    with db.transaction() as conn:
        assert statistics.refresh(conn) == []


def test_sqlite_has_nothing_to_analyse(db: Any) -> None:
    if db.dialect != "sqlite":
        pytest.skip("SQLite")
    _grow(db, 3000)
    with db.transaction() as conn:
        assert statistics.refresh(conn) == []
