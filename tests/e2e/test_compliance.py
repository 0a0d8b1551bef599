"""Posts deleted on X leave the CRM: the compliance job against both stand-ins over HTTP."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from sqlalchemy import select, update
from support.e2e import World, make_world, poll_once, tasks
from support.x_sandbox import recorded

from connectors.x.parse import parse_lookup
from connectors.x.source import XSource
from sandbox.seed import seed
from syncd.cli import cli
from syncd.state.db import Database
from syncd.state.tables import deliveries, interactions, post_checks


@pytest.fixture
def world(migrated_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[World]:
    with make_world(migrated_url, tmp_path, monkeypatch) as w:
        yield w


def compliance_run(w: World) -> dict[str, Any]:
    result = CliRunner().invoke(cli, ["--config", str(w.config), "compliance", "run", "--json"])
    if result.exception and not isinstance(result.exception, SystemExit):
        raise result.exception
    assert result.exit_code == 0, result.output
    report: dict[str, Any] = json.loads(result.stdout)
    return report


def two_posts_written(w: World) -> tuple[str, str]:
    people = seed(w.x, w.sf, customers=4)
    c = next(c for c in people.customers if c.kind == "contact_by_id")
    doomed = w.x.add_post(c.user_id, "@acme my order number is 12345")["id"]
    kept = w.x.add_post(c.user_id, "@acme thanks, sorted")["id"]
    code, output = poll_once(w)
    assert code == 0, output
    assert {f"x:{doomed}", f"x:{kept}"} <= set(tasks(w.sf))
    # Written two days ago: a post is first asked about once the interval (a day) has passed
    # since it was seen standing.
    db = Database(_url(w))
    try:
        with db.transaction() as conn:
            conn.execute(
                update(deliveries).values(written_at=datetime.now(UTC) - timedelta(days=2))
            )
    finally:
        db.dispose()
    return doomed, kept


def test_a_post_just_written_is_not_asked_about_at_once(world: World) -> None:
    people = seed(world.x, world.sf, customers=4)
    c = next(c for c in people.customers if c.kind == "contact_by_id")
    world.x.add_post(c.user_id, "@acme hello")
    assert poll_once(world)[0] == 0
    lookups = world.x.usage.posts_returned
    assert compliance_run(world)["checked"] == 0
    assert world.x.usage.posts_returned == lookups  # nothing re-read


def test_a_post_deleted_on_x_loses_its_task_once(world: World) -> None:
    doomed, kept = two_posts_written(world)
    before = tasks(world.sf)
    world.x.delete_post(doomed)

    report = compliance_run(world)
    assert report["deleted"] == 1 and report["acted"] == 1 and report["failed"] == 0
    assert report["checked"] == len(before)
    after = tasks(world.sf)
    assert f"x:{doomed}" not in after
    assert after[f"x:{kept}"] == before[f"x:{kept}"]  # untouched, not even re-written

    # Checked within the interval and acted on once: a second run asks and does nothing.
    calls = world.sf.api_calls
    again = compliance_run(world)
    assert (again["checked"], again["acted"]) == (0, 0)
    assert world.sf.api_calls == calls
    assert set(tasks(world.sf)) == set(after)

    db = Database(_url(world))
    try:
        with db.connect() as conn:
            row = conn.execute(
                select(post_checks, interactions.c.text, interactions.c.raw)
                .join(interactions, interactions.c.id == post_checks.c.interaction_id)
                .where(interactions.c.post_id == doomed)
            ).one()
    finally:
        db.dispose()
    assert row.deleted_at is not None and row.acted_at is not None and row.action == "delete"
    assert (row.text, row.raw) == ("", {})  # gone from the network, gone from state


def test_mark_keeps_the_task_and_says_the_post_is_deleted(world: World) -> None:
    text = world.config.read_text()  # before [[sources]]: a table after [crm] is inside it
    world.config.write_text(
        text.replace("[[sources]]", '[compliance]\naction = "mark"\n\n[[sources]]', 1)
    )
    doomed, kept = two_posts_written(world)
    world.x.delete_post(doomed)

    report = compliance_run(world)
    assert (report["deleted"], report["acted"]) == (1, 1)
    got = tasks(world.sf)
    assert got[f"x:{doomed}"]["Social_Post_Status__c"] == "Deleted"
    assert not got[f"x:{doomed}"]["Description"]
    assert got[f"x:{kept}"].get("Social_Post_Status__c") is None
    assert "thanks, sorted" in str(got[f"x:{kept}"]["Description"])
    assert compliance_run(world)["acted"] == 0


def test_a_task_deleted_by_hand_already_counts_as_done(world: World) -> None:
    doomed, _ = two_posts_written(world)
    world.sf.delete("Task", str(tasks(world.sf)[f"x:{doomed}"]["Id"]))
    world.x.delete_post(doomed)
    report = compliance_run(world)
    assert (report["acted"], report["failed"]) == (1, 0)


def _url(w: World) -> str:
    for line in w.config.read_text().splitlines():
        if line.startswith("url = "):
            return str(json.loads(line.removeprefix("url = ")))
    raise AssertionError("no state url")


def test_lookup_reads_x_s_recorded_not_found_errors() -> None:
    body = recorded("tweets-0b8bd2")["body"]
    asked = [str(i) for i in range(1, 16)]
    alive, deleted = parse_lookup(body, asked)
    assert alive == set() and deleted == set(asked)
    # A suspended author's post ("Forbidden", same problem type) decides nothing.
    forbidden = {**body["errors"][0], "title": "Forbidden"}
    assert parse_lookup({"errors": [forbidden]}, ["1"]) == (set(), set())
    assert parse_lookup({"data": [{"id": "2", "text": "hi"}]}, ["2", "3"]) == ({"2"}, set())


def test_lookup_posts_through_tweepy_against_the_stand_in() -> None:
    from sandbox.x.api import XSandbox

    with XSandbox() as x:
        fan = x.add_user("fan")["id"]
        posts = [x.add_post(fan, f"post {i}")["id"] for i in range(150)]
        for p in posts[::7]:
            x.delete_post(p)
        source = XSource("sandbox-x-bearer", api_base_url=x.url)
        try:
            alive, deleted = source.lookup_posts([*posts, "999999"])
        finally:
            source.close()
    assert deleted == {*posts[::7], "999999"}
    assert alive == set(posts) - set(posts[::7])
