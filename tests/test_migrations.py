"""The migrations build exactly the schema ``syncd.state.tables`` describes, on both backends."""

from __future__ import annotations

from datetime import UTC, datetime

from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import select

from syncd.state.db import Database, alembic_config
from syncd.state.lock import AlreadyRunning, InstanceLock
from syncd.state.tables import deliveries, identities, interactions, metadata


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


def test_deliveries_stored_before_0008_learn_their_author(state_url: str) -> None:
    db = Database(state_url)
    now = datetime(2026, 11, 1, tzinfo=UTC)
    try:
        with db.engine.begin() as conn:
            command.upgrade(alembic_config(conn), "0007")
            for user_id in ("7", "8"):
                conn.execute(
                    identities.insert().values(
                        network="x", user_id=user_id, first_seen_at=now, updated_at=now
                    )
                )
            ids = dict(conn.execute(select(identities.c.user_id, identities.c.id)).all())
            for post_id, user_id in (("201", "8"), ("202", "7")):
                row = conn.execute(
                    interactions.insert()
                    .values(
                        network="x",
                        post_id=post_id,
                        source="x",
                        account="acme",
                        stream="mentions",
                        direction="inbound",
                        text="hi",
                        url="https://x.com/",
                        author_id=user_id,
                        counterpart_identity_id=ids[user_id],
                        created_at=now,
                        fetched_at=now,
                        raw={},
                    )
                    .returning(interactions.c.id)
                ).scalar_one()
                conn.execute(
                    deliveries.insert().values(
                        interaction_id=row,
                        crm="sf",
                        state="pending",
                        created_at=now,
                        updated_at=now,
                    )
                )
        db.upgrade()
        with db.connect() as conn:
            got = conn.execute(
                select(interactions.c.post_id, deliveries.c.identity_id).join(
                    deliveries, deliveries.c.interaction_id == interactions.c.id
                )
            ).all()
    finally:
        db.dispose()
    assert sorted(got) == [("201", ids["8"]), ("202", ids["7"])]
