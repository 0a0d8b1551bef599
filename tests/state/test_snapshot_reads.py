"""``Database.snapshot``: a check made of several reads sees one moment on both backends. On
PostgreSQL a plain connection reads each statement at its own moment, and the demo's
"caught up" check once passed between a writer's claim and its store (a batch neither claimed
at the first read nor ready at the second)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest
from sqlalchemy import func, select

from syncd.state.tables import identities

NOW = datetime(2026, 12, 7, 12, tzinfo=UTC)


def _add(db: Any, user_id: str) -> None:
    with db.transaction() as conn:
        conn.execute(
            identities.insert(),
            {"network": "x", "user_id": user_id, "first_seen_at": NOW, "updated_at": NOW},
        )


def _count(conn: Any) -> int:
    return int(conn.execute(select(func.count()).select_from(identities)).scalar_one())


def test_a_snapshot_reads_one_moment_while_others_commit(db: Any) -> None:
    _add(db, "1")
    with db.snapshot() as conn:
        assert _count(conn) == 1
        _add(db, "2")  # committed by another connection between two reads
        assert _count(conn) == 1
    with db.snapshot() as conn:
        assert _count(conn) == 2


def test_a_plain_connection_on_postgresql_reads_each_statement_anew(db: Any) -> None:
    """What the snapshot is for: without it the second read sees the other commit."""
    if db.dialect != "postgresql":
        pytest.skip("SQLite's reading connections are snapshots already")
    _add(db, "1")
    with db.connect() as conn:
        assert _count(conn) == 1
        _add(db, "2")
        assert _count(conn) == 2
