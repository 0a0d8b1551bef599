"""The review queue and the links commands, end to end: X and Salesforce stand-ins, the real
state database, the CLI as an admin types it."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from support.e2e import World, make_world, poll_once, tasks

from sandbox.seed import seed
from syncd.cli import cli


@pytest.fixture
def world(migrated_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[World]:
    with make_world(migrated_url, tmp_path, monkeypatch) as w:
        seed(w.x, w.sf, customers=4)
        yield w


def run(world: World, *args: str, code: int = 0, stdin: str | None = None) -> str:
    result = CliRunner().invoke(cli, ["--config", str(world.config), *args], input=stdin)
    assert result.exit_code == code, result.output
    return result.output


def run_json(world: World, *args: str) -> Any:
    return json.loads(run(world, *args, "--json"))


def homonyms(world: World, handle: str, first: str, last: str) -> tuple[str, list[str]]:
    """An X author whose display name two Contacts share: the resolver must ask."""
    user = world.x.add_user(handle, f"{first} {last}")
    people = [
        world.sf.insert("Contact", {"FirstName": first, "LastName": last, "MailingCity": city})
        for city in ("Leeds", "Lima")
    ]
    return user["id"], people


def post(world: World, user_id: str, text: str, minutes_ago: int) -> str:
    at = datetime.now(UTC) - timedelta(minutes=minutes_ago)
    return str(world.x.add_post(user_id, f"@acme {text}", created_at=at)["id"])


def queued(world: World) -> dict[str, dict[str, Any]]:
    return {r["handle"]: r for r in run_json(world, "links", "list", "--review")}


def test_accept_reject_add_remove_and_what_reaches_the_crm(world: World) -> None:
    uid, (leeds, lima) = homonyms(world, "janedoe_x", "Jane", "Doe")
    older, newer = post(world, uid, "my order is late", 30), post(world, uid, "still late", 5)
    assert poll_once(world)[0] == 0
    assert not {older, newer} & set(tasks(world.sf))  # held: nobody is sure who she is

    (jane,) = queued(world).values()
    assert {c["id"] for c in jane["candidates"]} == {leeds, lima}
    assert all(c["matcher"] == "fuzzy_name" and c["reasons"] for c in jane["candidates"])
    shown = run_json(world, "links", "show", "@JaneDoe_X")  # handles match case-insensitively
    assert shown["held"] == 2 and shown["link"] is None
    assert [p["post_id"] for p in shown["posts"]] == [newer, older]
    assert "still late" in run(world, "links", "show", "@janedoe_x")
    assert "nobody is waiting" not in run(world, "links", "list", "--review")

    by_id = {c["id"]: c["candidate"] for c in jane["candidates"]}
    assert run_json(world, "links", "reject", str(by_id[lima]))["rejected"] == [by_id[lima]]
    out = run(world, "links", "accept", str(by_id[leeds]), "--note", "same city as her orders")
    assert f"Contact {leeds}" in out and "2 held interaction(s)" in out
    assert "nobody is waiting" in run(world, "links", "list", "--review")

    assert poll_once(world)[0] == 0
    written = [t for t in world.sf.records("Task") if t["WhoId"] == leeds]
    assert [t["Social_Post_Id__c"] for t in written] == [f"x:{older}", f"x:{newer}"]  # oldest first

    (link,) = [i for i in run_json(world, "links", "list") if i["handle"] == "janedoe_x"]
    assert link["link"]["id"] == leeds and link["created_by"].startswith("admin")
    assert link["link"]["matcher"] == "fuzzy_name"  # what the person accepted, with its reasons

    # Removing the link: the record is rejected for her, so the resolver does not undo it.
    assert run_json(world, "links", "remove", "@janedoe_x")["removed"]["id"] == leeds
    third = post(world, uid, "anyone there?", 1)
    assert poll_once(world)[0] == 0
    assert f"x:{third}" not in tasks(world.sf)
    assert "janedoe_x" not in queued(world)  # both Contacts are now rejected for her

    # Linked by hand to a record the CRM confirms, even one rejected before.
    done = run_json(world, "links", "add", "@janedoe_x", lima, "--note", "she called")
    assert done["link"]["matcher"] == "manual" and done["released"] == 1
    assert poll_once(world)[0] == 0
    assert tasks(world.sf)[f"x:{third}"]["WhoId"] == lima

    actions = [(e["action"], e["crm_id"]) for e in run_json(world, "links", "show", uid)["history"]]
    assert actions == [
        ("reject", lima),
        ("link", leeds),
        ("unlink", leeds),
        ("reject", leeds),
        ("link", lima),
    ]


def test_mistakes_get_a_clear_message_and_change_nothing(world: World) -> None:
    uid, (leeds, _) = homonyms(world, "janedoe_x", "Jane", "Doe")
    post(world, uid, "hello", 1)
    poll_once(world)
    assert "no author '@ghost'" in run(world, "links", "show", "@ghost", code=1)
    assert "no candidate 999" in run(world, "links", "accept", "999", code=1)
    assert "nothing was rejected" in run(world, "links", "reject", "999", code=1)
    assert "not a CRM record id" in run(world, "links", "add", "@janedoe_x", "x'; --", code=1)
    gone = "003" + "0" * 11 + "Z"
    assert "has no person" in run(world, "links", "add", "@janedoe_x", gone, code=1)
    assert "has no link to remove" in run(world, "links", "remove", "@janedoe_x", code=1)

    # A rejected candidate cannot be accepted: the message says how to link it anyway.
    (jane,) = queued(world).values()
    cid = next(c["candidate"] for c in jane["candidates"] if c["id"] == leeds)
    run(world, "links", "reject", str(cid))
    assert "links add" in run(world, "links", "accept", str(cid), code=1)
    assert run_json(world, "links", "list") == [] or all(
        i["handle"] != "janedoe_x" for i in run_json(world, "links", "list")
    )


def test_interactive_review_rejects_accepts_searches_and_quits(world: World) -> None:
    a, ann = homonyms(world, "ann_x", "Ann", "Lee")
    b, _ = homonyms(world, "bo_x", "Bo", "Stone")
    c, _ = homonyms(world, "cy_x", "Cy", "Vance")
    work = world.sf.insert(
        "Contact", {"FirstName": "Robert", "LastName": "Stone", "Email": "bo@stone.example"}
    )
    for uid in (a, b, c):
        post(world, uid, "help please", 3)
    poll_once(world)

    # Ann: reject the second candidate, then accept the one left. Bo: search by e-mail and
    # link to the result. Cy: quit before deciding.
    answers = "r2\n1\n/ bo@stone.example\n1\nq\n"
    out = run(world, "links", "review", stdin=answers)
    assert "help please" in out and "fuzzy_name" in out  # recent posts and the matcher shown
    assert "accepted 1, rejected 1, linked by hand 1; 1 author(s) still waiting" in out

    links = {i["handle"]: i["link"] for i in run_json(world, "links", "list")}
    assert links["ann_x"]["id"] in ann and links["bo_x"]["id"] == work
    assert links["bo_x"]["matcher"] == "manual"
    assert list(queued(world)) == ["cy_x"]

    # End of input is a quit: nothing decided, nothing lost.
    out = run(world, "links", "review", stdin="")
    assert "nothing decided; 1 author(s) still waiting" in out
    assert "nobody is waiting" not in run(world, "links", "list", "--review")
