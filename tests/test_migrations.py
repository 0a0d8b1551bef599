"""The migrations build exactly the schema ``syncd.state.tables`` describes, on both backends."""

from __future__ import annotations

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext

from syncd.state.db import Database
from syncd.state.lock import AlreadyRunning, InstanceLock
from syncd.state.tables import metadata


def test_migrations_match_the_table_definitions(state_url: str) -> None:
    db = Database(state_url)
    try:
        db.upgrade()
        db.upgrade()  # idempotent
        with db.connect() as conn:
            ctx = MigrationContext.configure(conn, opts={"compare_type": True})
            diff = compare_metadata(ctx, metadata)
    finally:
        db.dispose()
    # alembic_version is ours to keep; anything else is drift between code and migrations.
    assert [d for d in diff if "alembic_version" not in repr(d)] == []


def test_one_instance_lock_per_state_database(state_url: str) -> None:
    first = InstanceLock(state_url).acquire()
    try:
        try:
            InstanceLock(state_url).acquire()
        except AlreadyRunning as exc:
            assert "already running" in str(exc)
        else:
            raise AssertionError("a second lock on the same state was granted")
    finally:
        first.release()
    InstanceLock(state_url).acquire().release()  # free again once released
