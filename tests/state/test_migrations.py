"""The migrations build exactly the schema ``syncd.state.tables`` describes, on both backends."""

from __future__ import annotations

import subprocess
import sys
import threading
from datetime import UTC, datetime

import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Connection, func, inspect, select, text
from sqlalchemy.exc import IntegrityError

from syncd.state.db import Database, alembic_config, head_revision
from syncd.state.lock import AlreadyRunning, InstanceLock
from syncd.state.tables import (
    accounts,
    cursors,
    deliveries,
    identities,
    interactions,
    metadata,
    post_checks,
    stream_marks,
    webhook_hints,
)


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


def test_the_head_revision_read_from_the_file_names_is_alembics() -> None:
    scripts = ScriptDirectory.from_config(alembic_config())
    assert head_revision() == scripts.get_current_head()
    for script in scripts.walk_revisions():
        assert script.path is not None
        assert script.revision == script.path.rsplit("/", 1)[-1][:4]


# What `syncd run` does first: open the state database, migrating it if need be.
_OPEN = """
import sys
from syncd.state.db import Database
db = Database(sys.argv[1])
db.upgrade()
db.dispose()
print(" ".join(sorted({m.split(".")[0] for m in sys.modules} & {"alembic", "mako"})))
"""


def _opened_with(url: str) -> str:
    done = subprocess.run(
        [sys.executable, "-c", _OPEN, url], capture_output=True, text=True, check=True
    )
    return done.stdout.strip()


def test_a_schema_at_head_is_opened_without_alembic(state_url: str) -> None:
    assert _opened_with(state_url) == "alembic mako"  # an empty database is migrated
    db = Database(state_url)
    try:
        assert db.revision() == _head()
        assert db.at_head()
        with db.engine.begin() as conn:
            command.downgrade(alembic_config(conn), "-1")
        assert not db.at_head()
        assert _opened_with(state_url) == "alembic mako"  # one migration behind
        assert db.revision() == _head()
    finally:
        db.dispose()
    assert _opened_with(state_url) == ""


def test_one_instance_lock_per_sqlite_state_several_on_postgresql(state_url: str) -> None:
    first = InstanceLock(state_url).acquire()
    try:
        if state_url.startswith("postgresql"):
            InstanceLock(state_url).acquire().release()  # instances share the work there
        else:
            with pytest.raises(AlreadyRunning, match="already running"):
                InstanceLock(state_url).acquire()
    finally:
        first.release()
    InstanceLock(state_url).acquire().release()  # free again once released


def test_0009_adds_delivery_claims_and_takes_them_away_again(state_url: str) -> None:
    db = Database(state_url)
    try:
        with db.engine.begin() as conn:
            command.upgrade(alembic_config(conn), "0009")
        assert db.revision() == "0009"
        assert {"claimed_by", "claim_until"} <= _columns(db, "deliveries")
        with db.engine.begin() as conn:
            command.downgrade(alembic_config(conn), "0008")
        assert db.revision() == "0008"
        columns = _columns(db, "deliveries")
        assert "claimed_by" not in columns and "claim_until" not in columns
        assert "identity_id" in columns  # 0008's work stays
        db.upgrade()
        assert {"claimed_by", "claim_until"} <= _columns(db, "deliveries")
    finally:
        db.dispose()


def test_0010_adds_gaps_and_walk_progress_and_takes_them_away_again(state_url: str) -> None:
    db = Database(state_url)
    now = datetime(2026, 11, 1, tzinfo=UTC)
    try:
        with db.engine.begin() as conn:
            command.upgrade(alembic_config(conn), "0009")
            # A walk under way when the upgrade runs: it must come out counting from nothing.
            conn.execute(
                text(
                    "INSERT INTO cursors (source, account, stream, since_id, pagination_token,"
                    " updated_at) VALUES ('x', 'acme', 'mentions', '5', 'tok', :now)"
                ),
                {"now": now},
            )
            command.upgrade(alembic_config(conn), "0010")
        assert {"walk_seen", "walk_oldest_id"} <= _columns(db, "cursors")
        assert "gaps" in _tables(db)
        with db.connect() as conn:
            row = conn.execute(select(cursors.c.walk_seen, cursors.c.walk_oldest_id)).one()
        assert tuple(row) == (0, None)
        with db.engine.begin() as conn:
            command.downgrade(alembic_config(conn), "0009")
        assert "gaps" not in _tables(db)
        columns = _columns(db, "cursors")
        assert "walk_seen" not in columns and "walk_oldest_id" not in columns
        assert "pending_since_id" in columns  # the walk itself survives the downgrade
        db.upgrade()
        assert "gaps" in _tables(db)
    finally:
        db.dispose()


def _head() -> str | None:
    return ScriptDirectory.from_config(alembic_config()).get_current_head()


def _tables(db: Database) -> set[str]:
    with db.engine.connect() as conn:
        return set(inspect(conn).get_table_names())


def _columns(db: Database, table: str) -> set[str]:
    with db.engine.connect() as conn:
        return {c["name"] for c in inspect(conn).get_columns(table)}


# PostgreSQL only: on SQLite the second daemon is refused (flock) before it migrates.
@pytest.mark.parametrize(
    "state_url", [pytest.param("postgresql", marks=pytest.mark.postgres)], indirect=True
)
def test_instances_starting_together_migrate_one_at_a_time(state_url: str) -> None:
    dbs = [Database(state_url) for _ in range(3)]
    errors: list[BaseException] = []

    def start(db: Database) -> None:
        try:
            db.upgrade()
        except BaseException as exc:  # reported below, in the test's thread
            errors.append(exc)

    threads = [threading.Thread(target=start, args=(db,)) for db in dbs]
    try:
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
        assert errors == []
        assert {db.revision() for db in dbs} == {_head()}
    finally:
        for db in dbs:
            db.dispose()


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


def test_0017_takes_the_ref_of_posts_read_before_from_their_payload(state_url: str) -> None:
    db = Database(state_url)
    now = datetime(2026, 11, 1, tzinfo=UTC)
    remote = "https://other.example/users/pat/statuses/777"
    payloads = {
        remote: {"id": "110", "uri": remote},  # a status of another instance: its id here
        "https://social.example/users/pat/statuses/111": {"id": "111"},  # one of the brand's
        "https://other.example/users/pat/statuses/778": {},  # emptied (retention, forget)
        "https://other.example/users/pat/statuses/779": {"id": 112},  # not text: not an id
        "9001": {"id": "9001", "text": "hi"},  # an X post: its id is its key
    }
    try:
        with db.engine.begin() as conn:
            command.upgrade(alembic_config(conn), "0016")
            conn.execute(
                accounts.insert(),
                [
                    {
                        "source": "m",
                        "network": "mastodon",
                        "handle": "acme",
                        "user_id": "https://Social.Example/users/acme",
                        "resolved_at": now,
                    },
                    {
                        "source": "xs",
                        "network": "x",
                        "handle": "acme",
                        "user_id": "100",
                        "resolved_at": now,
                    },
                ],
            )
            person = conn.execute(
                identities.insert()
                .values(network="mastodon", user_id="p", first_seen_at=now, updated_at=now)
                .returning(identities.c.id)
            ).scalar_one()
            for post_id, raw in payloads.items():
                conn.execute(
                    interactions.insert().values(
                        network="x" if post_id == "9001" else "mastodon",
                        post_id=post_id,
                        source="xs" if post_id == "9001" else "m",
                        account="acme",
                        stream="mentions",
                        direction="inbound",
                        text="hi",
                        url="https://example.com/",
                        author_id="p",
                        counterpart_identity_id=person,
                        created_at=now,
                        fetched_at=now,
                        raw=raw,
                    )
                )
            command.upgrade(alembic_config(conn), "0017")
        with db.connect() as conn:
            refs = dict(conn.execute(select(interactions.c.post_id, interactions.c.ref)).all())
        assert refs == {
            remote: "social.example/110",
            "https://social.example/users/pat/statuses/111": "social.example/111",
            "https://other.example/users/pat/statuses/778": None,
            "https://other.example/users/pat/statuses/779": None,
            "9001": None,
        }
        with db.engine.begin() as conn:
            command.downgrade(alembic_config(conn), "0016")
        assert "ref" not in _columns(db, "interactions")
        db.upgrade()
        assert "ref" in _columns(db, "interactions")
    finally:
        db.dispose()


def test_0018_lets_an_interaction_go_without_author_and_keeps_marks(state_url: str) -> None:
    """SQLite rebuilds ``interactions`` (referenced by deliveries and post checks) to let its
    author columns be NULL: every row and every reference comes through, and references are
    enforced again after. A downgrade drops the author-less rows an older syncd cannot hold."""
    db = Database(state_url)
    now = datetime(2026, 11, 1, tzinfo=UTC)
    try:
        with db.migration() as conn:
            command.upgrade(alembic_config(conn), "0016")
            known = _interaction(conn, "201", "7", now)
            conn.execute(
                deliveries.insert().values(
                    interaction_id=known,
                    identity_id=_identity(conn, "7"),
                    crm="sf",
                    state="written",
                    created_at=now,
                    updated_at=now,
                )
            )
            conn.execute(post_checks.insert().values(interaction_id=known, checked_at=now))
        with db.migration() as conn:
            command.upgrade(alembic_config(conn), "0018")
        assert db.revision() == "0018"
        assert "stream_marks" in _tables(db)
        with db.transaction() as conn:
            withheld = _interaction(conn, "202", None, now)
            conn.execute(
                cursors.insert().values(
                    source="src", account="acme", stream="mentions", updated_at=now
                )
            )
            conn.execute(
                stream_marks.insert().values(
                    source="src", account="acme", stream="mentions", key="p1", value="c" * 400,
                    updated_at=now,
                )
            )  # fmt: skip
        with db.connect() as conn:
            assert conn.execute(select(func.count()).select_from(deliveries)).scalar_one() == 1
            assert conn.execute(select(post_checks.c.interaction_id)).scalars().all() == [known]
        with pytest.raises(IntegrityError), db.transaction() as conn:
            conn.execute(post_checks.insert().values(interaction_id=known + 999, checked_at=now))
        with db.migration() as conn:
            command.downgrade(alembic_config(conn), "0016")
        assert "stream_marks" not in _tables(db)
        with db.connect() as conn:
            ids = conn.execute(select(interactions.c.id)).scalars().all()
        assert ids == [known] and withheld not in ids
        db.upgrade()
        assert db.revision() == _head()
    finally:
        db.dispose()


def _identity(conn: Connection, user_id: str) -> int:
    found = conn.execute(
        select(identities.c.id).where(identities.c.user_id == user_id)
    ).scalar_one_or_none()
    if found is not None:
        return int(found)
    now = datetime(2026, 11, 1, tzinfo=UTC)
    return int(
        conn.execute(
            identities.insert()
            .values(network="x", user_id=user_id, first_seen_at=now, updated_at=now)
            .returning(identities.c.id)
        ).scalar_one()
    )


def _interaction(conn: Connection, post_id: str, author: str | None, now: datetime) -> int:
    return int(
        conn.execute(
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
                author_id=author,
                counterpart_identity_id=_identity(conn, author) if author else None,
                created_at=now,
                fetched_at=now,
                raw={},
            )
            .returning(interactions.c.id)
        ).scalar_one()
    )


def test_0019_adds_the_webhook_hint_store_and_takes_it_away_again(state_url: str) -> None:
    """One row per (source, object, kind), whatever the account or time: a delivery sent
    again is refused by the database itself, not only by the code that inserts."""
    db = Database(state_url)
    now = datetime(2026, 12, 1, tzinfo=UTC)
    row = {"source": "src", "account": "1", "object_id": "9", "kind": "k", "received_at": now}
    try:
        with db.migration() as conn:
            command.upgrade(alembic_config(conn), "0018")
        assert "webhook_hints" not in _tables(db)
        with db.migration() as conn:
            command.upgrade(alembic_config(conn), "0019")
        with db.transaction() as conn:
            conn.execute(webhook_hints.insert().values(**row))
            conn.execute(webhook_hints.insert().values(**{**row, "kind": "other"}))
        with pytest.raises(IntegrityError), db.transaction() as conn:
            conn.execute(webhook_hints.insert().values(**{**row, "account": "2"}))
        with db.migration() as conn:
            command.downgrade(alembic_config(conn), "0018")
        assert "webhook_hints" not in _tables(db)
        db.upgrade()
        assert db.revision() == _head()
    finally:
        db.dispose()


def test_0020_keeps_a_name_beside_each_brand_account_and_takes_it_away_again(
    state_url: str,
) -> None:
    """Accounts stored before have no name (the poller asks for it); a downgrade keeps them."""
    db = Database(state_url)
    now = datetime(2026, 12, 1, tzinfo=UTC)
    row = {"source": "fb", "network": "facebook", "handle": "1", "user_id": "1"}
    try:
        with db.migration() as conn:
            command.upgrade(alembic_config(conn), "0019")
            insert = "INSERT INTO accounts (source, network, handle, user_id, resolved_at) "
            conn.execute(
                text(insert + "VALUES (:source, :network, :handle, :user_id, :at)"),
                {**row, "at": now},
            )
        with db.migration() as conn:
            command.upgrade(alembic_config(conn), "0020")
        with db.transaction() as conn:
            assert conn.execute(select(accounts.c.display_name)).scalar_one() is None
            conn.execute(accounts.update().values(display_name="Acme"))
        with db.migration() as conn:
            command.downgrade(alembic_config(conn), "0019")
        assert "display_name" not in _columns(db, "accounts")
        with db.engine.connect() as conn:
            assert conn.execute(text("SELECT count(*) FROM accounts")).scalar_one() == 1
        db.upgrade()
        assert db.revision() == _head()
    finally:
        db.dispose()


def test_0022_makes_every_delivery_a_task_and_takes_a_second_target_away_again(
    state_url: str,
) -> None:
    """Deliveries stored before were the one record a CRM wrote: target "task". After it,
    an interaction has one delivery per target; a downgrade keeps only the Tasks'."""
    db = Database(state_url)
    now = datetime(2026, 12, 6, tzinfo=UTC)
    try:
        with db.migration() as conn:
            command.upgrade(alembic_config(conn), "0021")
            who = conn.execute(
                identities.insert().returning(identities.c.id),
                {"network": "x", "user_id": "7", "first_seen_at": now, "updated_at": now},
            ).scalar_one()
            post = {
                "network": "x", "source": "x", "account": "acme", "stream": "mentions",
                "direction": "inbound", "author_id": "7", "counterpart_identity_id": who,
                "text": "hi", "created_at": now, "url": "https://x.com/i/1", "raw": {},
                "fetched_at": now,
            }  # fmt: skip
            iid = conn.execute(
                interactions.insert().returning(interactions.c.id), {**post, "post_id": "1"}
            ).scalar_one()
            conn.execute(
                text(
                    "INSERT INTO deliveries (interaction_id, identity_id, crm, state, attempts,"
                    " created_at, updated_at) VALUES (:i, :w, 'sf', 'written', 1, :now, :now)"
                ),
                {"i": iid, "w": who, "now": now},
            )
        with db.migration() as conn:
            command.upgrade(alembic_config(conn), "0022")
        row = {"interaction_id": iid, "identity_id": who, "crm": "sf", "state": "pending"}
        with db.transaction() as conn:
            assert conn.execute(select(deliveries.c.target)).scalars().all() == ["task"]
            stamps = {"created_at": now, "updated_at": now}
            conn.execute(deliveries.insert(), {**row, **stamps, "target": "social_post"})
        with pytest.raises(IntegrityError), db.transaction() as conn:
            conn.execute(deliveries.insert(), {**row, **stamps, "target": "social_post"})
        with db.migration() as conn:
            command.downgrade(alembic_config(conn), "0021")
        assert "target" not in _columns(db, "deliveries")
        with db.engine.connect() as conn:
            assert conn.execute(text("SELECT state FROM deliveries")).scalars().all() == ["written"]
        db.upgrade()
        assert db.revision() == _head()
    finally:
        db.dispose()
