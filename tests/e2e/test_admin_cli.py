"""What an admin sees and repairs, end to end: quarantine, dead letters, gone Contacts.

Faults are injected in the stand-ins; the CLI runs against the real state database.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from support.e2e import World, make_world, poll_once, tasks

from sandbox.seed import Customer, seed
from syncd.cli import cli


@pytest.fixture
def world(migrated_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[World]:
    with make_world(migrated_url, tmp_path, monkeypatch) as w:
        yield w


def admin(world: World, *args: str, code: int = 0) -> str:
    result = CliRunner().invoke(cli, ["--config", str(world.config), *args])
    assert result.exit_code == code, result.output
    return result.output


def admin_json(world: World, *args: str) -> Any:
    return json.loads(admin(world, *args, "--json"))


def linked(world: World, n: int) -> list[Customer]:
    people = seed(world.x, world.sf, customers=max(8, n * 3))
    return [c for c in people.customers if c.kind == "contact_by_id"][:n]


def test_a_bad_item_is_quarantined_and_the_rest_of_its_page_goes_through(world: World) -> None:
    a, b = linked(world, 2)
    first = world.x.add_post(a.user_id, "@acme first")
    newest = world.x.add_post(b.user_id, "@acme second")  # newest first: the one broken
    world.x.inject("bad_item", endpoint="mentions", fields=["created_at"], how="bad_value")
    code, output = poll_once(world)
    assert code == 0, output
    assert "1 quarantined" in output
    assert set(tasks(world.sf)) == {f"x:{first['id']}"}

    items = admin_json(world, "quarantine", "list")
    assert len(items) == 1
    assert items[0]["item_id"] == newest["id"] and "created_at" in items[0]["reason"]
    shown = json.loads(admin(world, "quarantine", "show", str(items[0]["id"])))
    assert shown["raw"]["id"] == newest["id"]  # the payload exactly as the API sent it
    assert shown["raw"]["created_at"] == "yesterday"
    assert "created_at" in admin(world, "quarantine", "list")
    assert "no quarantined item 999" in admin(world, "quarantine", "show", "999", code=1)


def test_dead_letters_can_be_listed_retried_and_dropped(world: World) -> None:
    a, b = linked(world, 2)
    pa = world.x.add_post(a.user_id, "@acme refund?")
    pb = world.x.add_post(b.user_id, "@acme hello")
    world.sf.inject(
        "record_error",
        endpoint="composite",
        count=2,
        code="FIELD_CUSTOM_VALIDATION_EXCEPTION",
        message="Subject must not mention refunds",
    )
    code, output = poll_once(world)
    assert code == 1 and "2 dead-lettered" in output  # permanent: not retried by itself

    letters = admin_json(world, "deadletter", "list")
    assert {d["post_id"] for d in letters} == {pa["id"], pb["id"]}
    assert all(d["error_code"] == "FIELD_CUSTOM_VALIDATION_EXCEPTION" for d in letters)
    assert "Subject must not mention refunds" in letters[0]["error"]
    table = admin(world, "deadletter", "list")
    assert "FIELD_CUSTOM_VALIDATION_EXCEPTION" in table

    by_post = {d["post_id"]: d["delivery_id"] for d in letters}
    assert "queued again: 1" in admin(world, "deadletter", "retry", str(by_post[pa["id"]]))
    assert "dropped: 1" in admin(world, "deadletter", "drop", "--yes", str(by_post[pb["id"]]))
    code, output = poll_once(world)
    assert code == 0, output
    assert set(tasks(world.sf)) == {f"x:{pa['id']}"}
    assert admin_json(world, "deadletter", "list") == []
    status = admin_json(world, "status")
    assert status["deliveries"] == {"written": 1, "dropped": 1}
    assert "give delivery ids" in admin(world, "deadletter", "retry", code=2)


def test_a_deleted_contact_sends_the_author_back_to_the_resolver(world: World) -> None:
    (c,) = linked(world, 1)
    first = world.x.add_post(c.user_id, "@acme hi")
    assert poll_once(world)[0] == 0
    assert tasks(world.sf)[f"x:{first['id']}"]["WhoId"] == c.crm_id

    assert c.crm_id
    world.sf.delete("Contact", c.crm_id)  # merged away or deleted by a rep
    second = world.x.add_post(c.user_id, "@acme are you still there?")
    code, output = poll_once(world)
    assert "1 dead-lettered" not in output and "0 dead-lettered" in output
    assert admin_json(world, "deadletter", "list") == []
    assert admin_json(world, "status")["held_identities"] == 1  # waiting for a person again

    c.crm_id = world.sf.insert("Contact", {"LastName": c.last, "X_User_Id__c": c.user_id})
    time.sleep(1.1)  # past the resolver's back-off
    code, output = poll_once(world)
    assert code == 0, output
    assert tasks(world.sf)[f"x:{second['id']}"]["WhoId"] == c.crm_id
