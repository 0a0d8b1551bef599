"""`syncd forget --crm` with the daemon running: afterwards neither the state database (every
column of every table) nor the Salesforce sandbox (every live record of every object) holds
the person's id, handle or name, and their next post is not read in. On SQLite and
PostgreSQL, through the real CLI, daemon, tweepy and simple-salesforce."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from sqlalchemy import insert, select
from support.e2e import Daemon, World, make_world, poll_once, tasks, wait_for

from sandbox.salesforce.api import SalesforceSandbox
from sandbox.seed import seed
from syncd.cli import cli
from syncd.config import settings as config
from syncd.state.db import Database
from syncd.state.tables import interactions, metadata, quarantine

KAY_ID, KAY, KAY_NAME = "4242424242424242", "kay_forgetme", "Kay Forget"


@pytest.fixture
def world(migrated_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[World]:
    with make_world(migrated_url, tmp_path, monkeypatch) as w:
        # Authors nobody matches get a Lead: forget must delete the one made for Kay.
        w.config.write_text(
            w.config.read_text().replace("[resolver]\n", '[resolver]\nunmatched = "lead"\n', 1)
        )
        yield w


def names_kay(value: Any) -> bool:
    blob = json.dumps(value, default=str).lower()
    return KAY_ID in blob or KAY in blob or KAY_NAME.lower() in blob


def state_rows_naming_kay(db: Database) -> list[tuple[str, Any]]:
    found = []
    with db.connect() as conn:
        for table in metadata.sorted_tables:
            for row in conn.execute(select(table)):
                if names_kay([str(v) for v in row]):
                    found.append((table.name, tuple(row)))
    return found


def crm_records_naming_kay(sf: SalesforceSandbox) -> list[tuple[str, Any]]:
    with sf.lock:
        objects = [t.name for t in sf.store.tables()]
    return [(name, r) for name in objects for r in sf.records(name) if names_kay(r)]


def until(daemon: Daemon, predicate: Callable[[], bool], what: str) -> None:
    try:
        wait_for(predicate, what=what)
    except AssertionError as exc:
        raise AssertionError(f"{exc}; the daemon said:\n{daemon.log[-3000:]}") from None


def test_forget_with_the_daemon_running_leaves_nothing_and_blocks_the_next_post(
    world: World,
) -> None:
    x, sf = world.x, world.sf
    # What a Lead upsert on the user id needs (README: unmatched = "lead").
    sf.add_field("Lead", "X_User_Id__c", external_id=True, unique=True)
    people = seed(x, sf, customers=4)
    bob = next(c for c in people.customers if c.kind == "contact_by_id")
    assert poll_once(world)[0] == 0  # the first start: what comes from now on is read
    x.add_user(KAY, KAY_NAME, user_id=KAY_ID)
    asked = x.add_post(KAY_ID, "@acme where is my parcel?")
    x.add_post(people.brand_ids["acmesupport"], "On its way!", in_reply_to=asked["id"])
    bobs = x.add_post(bob.user_id, f"@acme @{KAY} has the same problem")
    db = Database(config.load(world.config).state.url)
    daemon = Daemon(world.config)
    try:
        until(daemon, lambda: len(tasks(sf)) == 3, "three Tasks written")
        leads = [r for r in sf.records("Lead") if r.get("X_User_Id__c") == KAY_ID]
        assert len(leads) == 1  # made by syncd for Kay (unmatched = "lead")
        assert KAY in str(tasks(sf)[f"x:{bobs['id']}"]["Description"])
        with db.transaction() as conn:  # a bad item whose ids came as JSON numbers
            conn.execute(
                insert(quarantine).values(
                    source="acme-x", network="x", item_id=None, reason="post id is not an X id",
                    raw={"id": int(asked["id"]), "author_id": int(KAY_ID)},
                    created_at=datetime.now(UTC),
                )
            )  # fmt: skip

        result = CliRunner().invoke(
            cli, ["--config", str(world.config), "forget", "--user", f"@{KAY}", "--crm", "--yes",
                  "--json"],
        )  # fmt: skip
        assert result.exit_code == 0, result.output
        report = json.loads(result.stdout)
        assert report["crm_records_deleted"] == 3  # two Tasks and the Lead
        assert report["crm_records_rewritten"] == 1  # Bob's Task, which named Kay
        assert report["removed"]["quarantine"] == 1
        assert state_rows_naming_kay(db) == []
        assert crm_records_naming_kay(sf) == []
        assert "@[forgotten]" in str(tasks(sf)[f"x:{bobs['id']}"]["Description"])

        # The daemon polls on: Kay's next post is not read in, Bob's naming Kay is, redacted.
        x.add_post(KAY_ID, "@acme hello? anyone?")
        again = x.add_post(bob.user_id, f"@acme me too, and @{KAY} as well")
        until(daemon, lambda: f"x:{again['id']}" in tasks(sf), "Bob's next Task")
        assert tasks(sf)[f"x:{again['id']}"]["Description"].startswith(
            "@acme me too, and @[forgotten] as well"
        )
        assert state_rows_naming_kay(db) == []
        assert crm_records_naming_kay(sf) == []
        with db.connect() as conn:
            assert len(conn.scalars(select(interactions.c.post_id)).all()) == 2  # Bob's two
    finally:
        code = daemon.stop()
        db.dispose()
    assert code == 0, daemon.log
    assert "Traceback" not in daemon.log
