"""Privacy: `syncd forget` leaves no trace of a person, raw payloads age out, state is 0600."""

from __future__ import annotations

import json
import re
import stat
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result
from sqlalchemy import Text, cast, insert, select, text
from support.e2e import World, make_world, poll_once, tasks
from support.salesforce import settings as sf_settings

from connectors.salesforce.crm import SalesforceCrm
from sandbox.salesforce.api import SalesforceSandbox
from sandbox.seed import seed
from syncd.cli import cli
from syncd.config import settings as config
from syncd.service.app import App
from syncd.state.db import Database
from syncd.state.tables import identity_handles, interactions, metadata, quarantine

KAY_ID, KAY = "4242424242424242", "kay_forgetme"


@pytest.fixture
def world(migrated_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[World]:
    with make_world(migrated_url, tmp_path, monkeypatch) as w:
        yield w


def invoke(w: World, *args: str) -> Result:
    result = CliRunner().invoke(cli, ["--config", str(w.config), *args])
    if result.exception and not isinstance(result.exception, SystemExit):
        raise result.exception
    return result


def state_db(w: World) -> Database:
    return Database(config.load(w.config).state.url)


def mentions(row: Any, user_id: str, handles: list[str]) -> bool:
    blob = json.dumps([str(v) for v in row], default=str)
    if re.search(rf"(?<![0-9]){user_id}(?![0-9])", blob):
        return True
    return any(re.search(rf"(?<![A-Za-z0-9_]){h}(?![A-Za-z0-9_])", blob, re.I) for h in handles)


def test_forget_leaves_no_row_naming_the_person_and_deletes_their_tasks(world: World) -> None:
    x, sf = world.x, world.sf
    people = seed(x, sf, customers=4)
    other = next(c for c in people.customers if c.kind == "contact_by_id")
    x.add_user(KAY, "Kay Forget", user_id=KAY_ID)
    sf.insert("Contact", {"LastName": "Forget", "X_User_Id__c": KAY_ID})
    assert poll_once(world)[0] == 0  # the first start: posts from now on are read
    asked = x.add_post(KAY_ID, "@acme where is my parcel?")
    x.add_post(people.brand_ids["acmesupport"], "On its way!", in_reply_to=asked["id"])
    x.add_post(KAY_ID, "@acme thanks")
    stays = x.add_post(other.user_id, "@acme hello")
    assert poll_once(world)[0] == 0
    before = tasks(sf)
    assert len([t for t in before.values() if t["Social_Handle__c"] == f"@{KAY}"]) == 3

    db = state_db(world)
    try:
        with db.transaction() as conn:  # a former handle, and a bad item naming Kay
            kay = conn.execute(text("SELECT id FROM identities WHERE user_id = :u"), {"u": KAY_ID})
            identity_id = kay.scalar_one()
            now = datetime.now(UTC)
            conn.execute(
                insert(identity_handles).values(
                    identity_id=identity_id, handle="kay_before", first_seen_at=now,
                    last_seen_at=now,
                )
            )  # fmt: skip
            conn.execute(
                insert(quarantine).values(
                    source="acme-x", network="x", item_id="1", reason="bad created_at",
                    raw={"id": "1", "author_id": KAY_ID, "text": "hi"}, created_at=now,
                )
            )  # fmt: skip
    finally:
        db.dispose()

    unknown = invoke(world, "forget", "--user", "@nobody_here", "--yes")
    assert unknown.exit_code != 0 and "no x user '@nobody_here' in state" in unknown.output
    brand = invoke(world, "forget", "--user", "acme", "--yes")
    assert brand.exit_code != 0 and "brand account" in brand.output

    result = invoke(world, "forget", "--user", "@KAY_BEFORE", "--crm", "--yes", "--json")
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["user_id"] == KAY_ID and report["crm_records_deleted"] == 3
    assert report["removed"]["interactions"] == 3 and report["removed"]["quarantine"] == 1
    after = tasks(sf)
    assert set(after) == set(before) - {
        k for k, t in before.items() if t["Social_Handle__c"] == f"@{KAY}"
    }
    assert f"x:{stays['id']}" in after

    db = state_db(world)
    try:
        with db.connect() as conn:
            for table in metadata.sorted_tables:
                for row in conn.execute(select(table)):
                    assert not mentions(row, KAY_ID, [KAY, "kay_before"]), (table.name, row)
            assert conn.execute(select(interactions.c.id)).first() is not None  # others stay
    finally:
        db.dispose()
    again = invoke(world, "forget", "--user", KAY_ID, "--yes")
    assert again.exit_code != 0  # nothing left to forget
    lifted = invoke(world, "forget", "--user", "@kay_before", "--unsuppress")  # a former handle
    assert lifted.exit_code == 0 and "no longer suppressed" in lifted.output, lifted.output
    assert invoke(world, "forget", "--user", KAY_ID, "--unsuppress").exit_code != 0


def test_old_raw_payloads_are_pruned_and_zero_keeps_them(world: World) -> None:
    people = seed(world.x, world.sf, customers=4)
    c = next(c for c in people.customers if c.kind == "contact_by_id")
    assert poll_once(world)[0] == 0  # the first start
    world.x.add_post(c.user_id, "@acme hello")
    assert poll_once(world)[0] == 0
    loaded = config.load(world.config)
    later = datetime.now(UTC) + timedelta(days=91)
    app = App(loaded, clock=lambda: later)
    try:
        assert app.prune()["interactions"] >= 1
        assert app.prune() == {"interactions": 0, "quarantine": 0}  # a second run: nothing
        with app.db.connect() as conn:
            raws = conn.scalars(select(cast(interactions.c.raw, Text))).all()
        assert raws and set(raws) == {"{}"}
    finally:
        app.close()
    keep = config.parse({**_raw(world), "privacy": {"payload_retention": "0s"}}, world.config)
    app = App(keep, clock=lambda: later)
    try:
        assert app.prune() == {}
    finally:
        app.close()


def _raw(w: World) -> dict[str, Any]:
    import tomllib

    return tomllib.loads(w.config.read_text())


def test_sqlite_state_files_are_owner_only(tmp_path: Path) -> None:
    path = tmp_path / "fresh" / "state.db"
    db = Database(f"sqlite:///{path}")
    try:
        db.upgrade()
        with db.transaction() as conn:
            conn.execute(text("CREATE TABLE t (x INTEGER)"))
            conn.execute(text("INSERT INTO t VALUES (1)"))
        wal = path.with_name("state.db-wal")
        assert wal.exists()
        for p in (path, wal, path.with_name("state.db-shm")):
            assert stat.S_IMODE(p.stat().st_mode) == 0o600, p
        assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    finally:
        db.dispose()
    path.chmod(0o644)  # e.g. restored from a backup
    Database(f"sqlite:///{path}").dispose()
    assert stat.S_IMODE(path.stat().st_mode) == 0o600


def test_delete_history_batches_and_counts_gone_records_as_done(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("SF_PASSWORD", "sandbox-password")
    monkeypatch.setenv("SF_TOKEN", "sandbox-token")
    with SalesforceSandbox() as sf:
        ids = [
            sf.insert("Task", {"Subject": f"t{i}", "Social_Post_Id__c": f"x:{i}"})
            for i in range(205)
        ]
        sf.delete("Task", ids[0])  # in the recycle bin
        sf.delete("Task", ids[1], purge=True)  # gone for good
        crm = SalesforceCrm(sf_settings(login_url=sf.url))
        try:
            calls = sf.api_calls
            outcomes = crm.delete_history(ids)
            assert sf.api_calls - calls == 2  # 200 + 5
            assert [o.record_id for o in outcomes] == ids and all(o.ok for o in outcomes)
            assert sf.records("Task") == []
            assert all(o.ok for o in crm.delete_history(ids[:3]))  # again: all already gone
            assert all(o.ok for o in crm.mark_history_deleted(ids[:2]))
        finally:
            crm.close()
