"""A post deleted on the network while its delivery waited (a held author's) is never
written: before the write, deliveries whose post was last seen standing longer ago than
``[compliance] before_write`` are looked up (one request per 100), and the deleted ones end
``deleted`` with the reason, as compliance marks deleted posts. Fresh deliveries are written
as read, with no look-up. Both stand-ins over HTTP, on SQLite and PostgreSQL."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import select, update
from support.e2e import World, make_world, poll_once, tasks

from sandbox.seed import seed
from syncd.model import DeliveryState
from syncd.state.db import Database
from syncd.state.post_checks import DELETED_CODE
from syncd.state.tables import deliveries, interactions, post_checks


@pytest.fixture
def world(migrated_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[World]:
    with make_world(migrated_url, tmp_path, monkeypatch) as w:
        yield w


def _lookups(world: World) -> list[str]:
    asked: list[str] = []
    world.x.on_request("tweets", lambda req: asked.append(req.query.get("ids", "")))
    return asked


def _url(w: World) -> str:
    return w.config.read_text().split('url = "', 1)[1].split('"', 1)[0]


def _age(w: World, **delta: float) -> None:
    """As if every post had been read this long ago (the writer judges by when it was)."""
    db = Database(_url(w))
    try:
        with db.transaction() as conn:
            then = datetime.now(UTC) - timedelta(**delta)
            conn.execute(update(interactions).values(fetched_at=then))
    finally:
        db.dispose()


def test_a_held_authors_post_deleted_before_their_contact_appears_is_never_written(
    world: World,
) -> None:
    people = seed(world.x, world.sf, customers=4)
    held = next(c for c in people.customers if c.kind == "unknown")
    doomed = world.x.add_post(held.user_id, "@acme my card number is 4111…")["id"]
    kept = world.x.add_post(held.user_id, "@acme sorry, ignore that")["id"]
    asked = _lookups(world)
    code, output = poll_once(world)
    assert code == 0, output
    assert not {f"x:{doomed}", f"x:{kept}"} & set(tasks(world.sf))  # held: nobody to link
    world.x.delete_post(doomed)  # the author thinks better of it
    _age(world, hours=2)  # … while their history waits for a Contact
    world.sf.insert(
        "Contact",
        {"FirstName": held.first, "LastName": held.last, "X_User_Id__c": held.user_id},
    )

    for _ in range(30):  # a handful of runs at most: the held author is asked about again
        code, output = poll_once(world)
        assert code == 0, output
        if f"x:{kept}" in tasks(world.sf):
            break
    written = tasks(world.sf)
    assert f"x:{kept}" in written
    assert f"x:{doomed}" not in written
    assert len(asked) == 1 and set(asked[0].split(",")) == {doomed, kept}  # one look-up

    db = Database(_url(world))
    try:
        with db.connect() as conn:
            row = conn.execute(
                select(
                    deliveries.c.state,
                    deliveries.c.last_error_code,
                    deliveries.c.last_error,
                    interactions.c.text,
                    post_checks.c.deleted_at,
                    post_checks.c.acted_at,
                    post_checks.c.action,
                )
                .join(interactions, interactions.c.id == deliveries.c.interaction_id)
                .join(post_checks, post_checks.c.interaction_id == interactions.c.id)
                .where(interactions.c.post_id == doomed)
            ).one()
    finally:
        db.dispose()
    assert (row.state, row.last_error_code) == (DeliveryState.DELETED, DELETED_CODE)
    assert "deleted on x before it was written" in (row.last_error or "")
    assert row.text == ""  # gone from state too, as for any post deleted on the network
    assert row.deleted_at is not None and row.acted_at is not None and row.action == "unwritten"

    poll_once(world)  # never tried again
    assert f"x:{doomed}" not in tasks(world.sf)


def test_a_delivery_written_soon_after_its_read_costs_no_lookup(world: World) -> None:
    people = seed(world.x, world.sf, customers=4)
    c = next(c for c in people.customers if c.kind == "contact_by_id")
    post = world.x.add_post(c.user_id, "@acme hello")["id"]
    asked = _lookups(world)
    code, output = poll_once(world)
    assert code == 0, output
    assert f"x:{post}" in tasks(world.sf)
    assert asked == []


def test_before_write_is_a_compliance_setting() -> None:
    from syncd.config.settings import ComplianceSection

    assert ComplianceSection().before_write == 600.0
    assert ComplianceSection(before_write="0s").before_write == 0.0  # type: ignore[arg-type]


def test_a_lookup_that_fails_decides_nothing_and_is_said_once(world: World) -> None:
    people = seed(world.x, world.sf, customers=4)
    held = next(c for c in people.customers if c.kind == "unknown")
    posts = [world.x.add_post(held.user_id, f"@acme hello {i}")["id"] for i in range(2)]
    assert poll_once(world)[0] == 0
    _age(world, hours=2)
    world.sf.insert(
        "Contact",
        {"FirstName": held.first, "LastName": held.last, "X_User_Id__c": held.user_id},
    )
    world.x.inject("status", endpoint="tweets", status=503, rate=1.0)
    said = ""
    for _ in range(30):
        output = poll_once(world)[1]
        said += output
        if {f"x:{p}" for p in posts} <= set(tasks(world.sf)):
            break
    # Written as read: the compliance job checks them after their write, as any other.
    assert {f"x:{p}" for p in posts} <= set(tasks(world.sf))
    assert said.count("posts not checked before their write") == 1
