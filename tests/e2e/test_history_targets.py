"""``[crm] history = ["task", "social_post"]`` end to end: every interaction is one Task and one
SocialPost, each written once, whatever fails on the way, and compliance and ``forget`` reach
both."""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from sqlalchemy import update
from support.e2e import World, make_world, poll_once, tasks

from sandbox.salesforce.api import SalesforceSandbox
from sandbox.seed import Customer, seed
from sandbox.server import Request
from syncd.cli import cli
from syncd.state.db import Database
from syncd.state.tables import deliveries

KEY = "Syncd_Key__c"  # [crm] social_post_key_field's default


@pytest.fixture
def world(state_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[World]:
    with make_world(state_url, tmp_path, monkeypatch) as w:
        # As `syncd salesforce fields` makes them: the SocialPost and SocialPersona upsert keys.
        w.sf.add_field("SocialPost", KEY, external_id=True, unique=True)
        w.sf.add_field("SocialPersona", KEY, external_id=True, unique=True)
        # [crm] is the config's last table.
        w.config.write_text(w.config.read_text() + 'history = ["task", "social_post"]\n')
        yield w


def social_posts(sf: SalesforceSandbox) -> dict[str, dict[str, Any]]:
    out: dict[str, dict[str, Any]] = {}
    for post in sf.records("SocialPost"):
        key = str(post[KEY])
        assert key not in out, f"duplicate SocialPost for {key}"
        out[key] = post
    return out


def invoke(w: World, *args: str) -> Any:
    result = CliRunner().invoke(cli, ["--config", str(w.config), *args])
    if result.exception and not isinstance(result.exception, SystemExit):
        raise result.exception
    assert result.exit_code == 0, result.output
    return result


def a_customer(w: World) -> tuple[Customer, str]:
    """A customer the resolver links to a Contact by their X id, and the brand's X id."""
    people = seed(w.x, w.sf, customers=4)
    c = next(c for c in people.customers if c.kind == "contact_by_id")
    assert c.crm_id is not None
    return c, people.brand_ids["acme"]


def a_conversation(w: World) -> tuple[str, str, str]:
    """A linked customer's complaint and the brand's answer; the customer's Contact id."""
    return _conversation(w, *a_customer(w))


def _conversation(w: World, c: Customer, brand: str) -> tuple[str, str, str]:
    assert c.crm_id is not None
    complaint = w.x.add_post(c.user_id, "@acme my order 4471 never arrived")["id"]
    answer = w.x.add_post(
        brand,
        f"@{c.handle} sorry to hear that, we are on it",
        in_reply_to=complaint,
    )["id"]
    return complaint, answer, c.crm_id


def test_each_interaction_is_one_task_and_one_social_post_and_a_rerun_writes_nothing(
    world: World,
) -> None:
    complaint, answer, contact = a_conversation(world)
    code, output = poll_once(world)
    assert code == 0, output

    posts, written = social_posts(world.sf), tasks(world.sf)
    assert set(posts) == set(written)
    assert {f"x:{complaint}", f"x:{answer}"} <= set(posts)
    inbound = posts[f"x:{complaint}"]
    assert inbound["Name"] == written[f"x:{complaint}"]["Subject"]
    assert (inbound["Provider"], inbound["MessageType"], inbound["IsOutbound"]) == (
        "Twitter",
        "Tweet",
        False,
    )
    assert inbound["ExternalPostId"] == complaint and inbound["WhoId"] == contact
    assert inbound["Content"] == "@acme my order 4471 never arrived"
    assert inbound["Handle"] and inbound["Posted"] and inbound["PostUrl"]
    reply = posts[f"x:{answer}"]
    assert (reply["MessageType"], reply["IsOutbound"], reply["WhoId"]) == ("Reply", True, contact)
    assert reply["Handle"] == "acme"  # the brand wrote it

    status = json.loads(invoke(world, "status", "--json").stdout)["targets"]
    assert set(status) == {"task", "social_post"}
    assert status["task"] == status["social_post"] == {"written": len(posts)}

    writes = _writes(world.sf)
    assert poll_once(world)[0] == 0
    assert social_posts(world.sf) == posts and tasks(world.sf) == written
    assert _writes(world.sf) == writes  # no upsert sent again


def _fail_after_apply(sf: SalesforceSandbox, path: str) -> list[str]:
    """The first write to ``path`` is applied, then answered 503; the list says it was."""
    failed: list[str] = []

    def fail_once(req: Request) -> None:
        if path in req.path and not failed:
            failed.append(req.path)
            sf.inject("status", endpoint="composite", phase="after", status=503, count=1)

    sf.on_request("composite", fail_once, phase="after")
    return failed


def _writes(sf: SalesforceSandbox) -> int:
    return sum(n for route, n in sf.requests_by_route.items() if route.startswith("PATCH"))


def test_a_social_post_write_answered_503_after_it_was_applied_is_not_made_twice(
    world: World,
) -> None:
    complaint, answer, _ = a_conversation(world)
    failed = _fail_after_apply(world.sf, "/SocialPost/")
    code, output = poll_once(world)
    assert code == 0, output
    assert failed  # the SocialPost batch was applied, then answered 503, and sent again

    posts, written = social_posts(world.sf), tasks(world.sf)  # each asserts no duplicate
    assert {f"x:{complaint}", f"x:{answer}"} <= set(posts)
    assert set(posts) == set(written)


def test_a_target_the_org_refuses_holds_back_no_other(world: World) -> None:
    """SocialPost refused (the object's write fails outright): the Tasks are written, and the
    SocialPosts follow once the org takes them."""
    complaint, answer, _ = a_conversation(world)

    def refuse(req: Request) -> None:
        if "/SocialPost/" in req.path:
            world.sf.inject("status", endpoint="composite", status=503, count=1)

    world.sf.on_request("composite", refuse, phase="before")
    poll_once(world)
    assert {f"x:{complaint}", f"x:{answer}"} <= set(tasks(world.sf))
    assert not social_posts(world.sf)

    world.sf.remove_hooks()
    assert poll_once(world)[0] == 0
    assert set(social_posts(world.sf)) == set(tasks(world.sf))


def _written_two_days_ago(w: World) -> None:
    """Every delivery so far written two days ago: due for a compliance check."""
    db = Database(_url(w))
    try:
        with db.transaction() as conn:
            conn.execute(
                update(deliveries).values(written_at=datetime.now(UTC) - timedelta(days=2))
            )
    finally:
        db.dispose()


def test_compliance_deletes_both_records_of_a_deleted_post(world: World) -> None:
    complaint, answer, _ = a_conversation(world)
    assert poll_once(world)[0] == 0
    _written_two_days_ago(world)
    world.x.delete_post(complaint)

    report = json.loads(invoke(world, "compliance", "run", "--json").stdout)
    assert (report["deleted"], report["acted"], report["failed"]) == (1, 2, 0)
    assert f"x:{complaint}" not in tasks(world.sf)
    assert f"x:{complaint}" not in social_posts(world.sf)
    assert f"x:{answer}" in tasks(world.sf) and f"x:{answer}" in social_posts(world.sf)


def test_forget_with_crm_deletes_the_persons_tasks_social_posts_and_persona(world: World) -> None:
    people = seed(world.x, world.sf, customers=4)
    c = next(c for c in people.customers if c.kind == "contact_by_id")
    other = next(o for o in people.customers if o.kind == "contact_by_handle")
    mine = world.x.add_post(c.user_id, "@acme please delete my data")["id"]
    theirs = world.x.add_post(other.user_id, "@acme love the new release")["id"]
    assert poll_once(world)[0] == 0
    assert {f"x:{mine}", f"x:{theirs}"} <= set(social_posts(world.sf))

    personas = {p["ExternalId"]: p["Id"] for p in _personas(world.sf)}
    assert set(personas) == {c.user_id, other.user_id}

    invoke(world, "forget", "--user", c.user_id, "--crm", "--yes")
    assert f"x:{mine}" not in social_posts(world.sf) and f"x:{mine}" not in tasks(world.sf)
    assert f"x:{theirs}" in social_posts(world.sf) and f"x:{theirs}" in tasks(world.sf)
    # Their SocialPersona too (their handle, name and id); the other customer's stays.
    assert [p["Id"] for p in _personas(world.sf)] == [personas[other.user_id]]


def _url(w: World) -> str:
    for line in w.config.read_text().splitlines():
        if line.startswith("url = "):
            return str(json.loads(line.removeprefix("url = ")))
    raise AssertionError("no state url in the config")


def test_a_social_post_the_org_refuses_is_a_dead_letter_of_its_own(world: World) -> None:
    complaint, _, _ = a_conversation(world)

    def refuse_one(req: Request) -> None:
        if "/SocialPost/" in req.path:
            world.sf.remove_hooks()
            world.sf.inject(
                "record_error", endpoint="composite", code="FIELD_CUSTOM_VALIDATION_EXCEPTION"
            )

    world.sf.on_request("composite", refuse_one, phase="before")
    poll_once(world)  # exits "incomplete": a record was dead-lettered
    letters = json.loads(invoke(world, "deadletter", "list", "--json").stdout)
    assert [(d["target"], d["error_code"]) for d in letters] == [
        ("social_post", "FIELD_CUSTOM_VALIDATION_EXCEPTION")
    ]
    assert set(tasks(world.sf)) - set(social_posts(world.sf)) == {f"x:{letters[0]['post_id']}"}

    invoke(world, "deadletter", "retry", "--all")
    assert poll_once(world)[0] == 0
    assert set(social_posts(world.sf)) == set(tasks(world.sf))
    assert f"x:{complaint}" in social_posts(world.sf)


def test_without_a_key_field_a_create_answered_503_after_it_was_applied_is_not_made_twice(
    state_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An org whose admin cannot add the key field (``social_post_match = "query"``): the
    write sent again finds the SocialPost the first one made, by the post's network id."""
    with make_world(state_url, tmp_path, monkeypatch) as w:
        w.config.write_text(
            w.config.read_text()
            + 'history = ["task", "social_post"]\nsocial_post_match = "query"\n'
        )
        complaint, answer, _ = a_conversation(w)
        failed: list[str] = []

        def fail_once(req: Request) -> None:
            if req.method == "POST" and "SocialPost" in req.body.decode() and not failed:
                failed.append(req.path)
                w.sf.inject("status", endpoint="composite", phase="after", status=503, count=1)

        w.sf.on_request("composite", fail_once, phase="after")
        code, output = poll_once(w)
        assert code == 0, output
        assert failed  # the create was applied, answered 503, and sent again

        made = Counter(str(post["ExternalPostId"]) for post in w.sf.records("SocialPost"))
        assert made == {complaint: 1, answer: 1}
        assert set(tasks(w.sf)) == {f"x:{complaint}", f"x:{answer}"}

        assert poll_once(w)[0] == 0  # a second run writes nothing new
        assert len(w.sf.records("SocialPost")) == 2


# -- SocialPersonas ------------------------------------------------------------------------
def _persona_calls(sf: SalesforceSandbox) -> list[str]:
    """Each request about SocialPersonas from now on (queries and writes), as it was sent."""
    calls: list[str] = []

    def note(req: Request) -> None:
        what = f"{req.method} {req.path} {req.query.get('q', '')}"
        if "SocialPersona" in what:
            calls.append(what)

    sf.on_request("*", note)
    return calls


def _personas(sf: SalesforceSandbox) -> list[dict[str, Any]]:
    return list(sf.records("SocialPersona"))


def test_one_persona_per_author_named_by_every_social_post_and_written_once(
    world: World,
) -> None:
    c, brand = a_customer(world)
    complaint, answer, contact = _conversation(world, c, brand)
    more = [world.x.add_post(c.user_id, f"@acme still waiting, day {n}")["id"] for n in (1, 2)]
    calls = _persona_calls(world.sf)
    assert poll_once(world)[0] == 0

    (persona,) = _personas(world.sf)
    assert (persona["ParentId"], persona["Provider"], persona["ExternalId"]) == (
        contact,
        "Twitter",
        c.user_id,
    )
    assert persona["Name"] == c.handle and persona[KEY] == f"x:{c.user_id}"
    posts = social_posts(world.sf)
    assert {posts[f"x:{p}"]["PersonaId"] for p in (complaint, answer, *more)} == {persona["Id"]}
    assert len(calls) == 2  # one look-up, one write, for all four posts

    # Later posts of the same author: the persona is known, not asked about nor written.
    later = world.x.add_post(c.user_id, "@acme any news?")["id"]
    calls.clear()
    assert poll_once(world)[0] == 0
    assert social_posts(world.sf)[f"x:{later}"]["PersonaId"] == persona["Id"]
    assert calls == [] and len(_personas(world.sf)) == 1


def test_a_persona_the_org_has_is_reused_not_made_again(world: World) -> None:
    """Salesforce's own inbound handler made the persona (under a Contact of its own): it is
    found by Provider + ExternalId and moved under the linked person."""
    c, _ = a_customer(world)
    assert c.crm_id is not None
    stray = world.sf.insert("Contact", {"LastName": c.handle})
    theirs = world.sf.insert(
        "SocialPersona",
        {"Name": c.handle, "Provider": "Twitter", "ExternalId": c.user_id, "ParentId": stray},
    )
    post = world.x.add_post(c.user_id, "@acme hello again")["id"]
    assert poll_once(world)[0] == 0

    (persona,) = _personas(world.sf)
    assert (persona["Id"], persona["ParentId"]) == (theirs, c.crm_id)
    assert social_posts(world.sf)[f"x:{post}"]["PersonaId"] == theirs


def test_a_relinked_author_s_persona_moves_to_the_new_person(world: World) -> None:
    c, brand = a_customer(world)
    _, _, contact = _conversation(world, c, brand)
    assert poll_once(world)[0] == 0
    (persona,) = _personas(world.sf)
    other = world.sf.insert("Contact", {"LastName": "Other"})
    invoke(world, "links", "add", f"@{c.handle}", other)
    later = world.x.add_post(c.user_id, "@acme this is my new account manager's contact")["id"]
    assert poll_once(world)[0] == 0

    (moved,) = _personas(world.sf)
    assert (moved["Id"], moved["ParentId"]) == (persona["Id"], other)
    posts = social_posts(world.sf)
    assert posts[f"x:{later}"]["PersonaId"] == persona["Id"]
    assert posts[f"x:{later}"]["WhoId"] == other and contact != other


def test_a_merged_away_person_s_persona_follows_the_survivor(world: World) -> None:
    c, brand = a_customer(world)
    _, _, contact = _conversation(world, c, brand)
    assert poll_once(world)[0] == 0
    (persona,) = _personas(world.sf)
    survivor = world.sf.insert("Contact", {"LastName": "Survivor"})
    world.sf.merge("Contact", survivor, [contact])
    later = world.x.add_post(c.user_id, "@acme after the merge")["id"]
    assert poll_once(world)[0] == 0

    (moved,) = _personas(world.sf)
    assert (moved["Id"], moved["ParentId"]) == (persona["Id"], survivor)
    post = social_posts(world.sf)[f"x:{later}"]
    assert (post["PersonaId"], post["WhoId"]) == (persona["Id"], survivor)


def test_a_persona_write_answered_503_after_it_was_applied_makes_no_second_persona(
    world: World,
) -> None:
    complaint, answer, _ = a_conversation(world)
    failed = _fail_after_apply(world.sf, "/SocialPersona/")
    code, output = poll_once(world)
    assert code == 0, output
    assert failed  # the persona was made, answered 503, and the batch sent again

    (persona,) = _personas(world.sf)
    posts = social_posts(world.sf)
    assert {posts[f"x:{p}"]["PersonaId"] for p in (complaint, answer)} == {persona["Id"]}


# -- ReplyToId -----------------------------------------------------------------------------
def _social_post_writes(sf: SalesforceSandbox) -> list[int]:
    """The number of SocialPosts each write sends from now on."""
    sizes: list[int] = []

    def note(req: Request) -> None:
        if "/SocialPost/" in req.path:
            sizes.append(len(req.json()["records"]))

    sf.on_request("composite", note)
    return sizes


def test_a_reply_written_after_the_post_it_answers_names_it_at_once(world: World) -> None:
    c, brand = a_customer(world)
    complaint = world.x.add_post(c.user_id, "@acme my parcel is lost")["id"]
    assert poll_once(world)[0] == 0
    answer = world.x.add_post(brand, f"@{c.handle} we found it", in_reply_to=complaint)["id"]
    writes = _social_post_writes(world.sf)
    assert poll_once(world)[0] == 0

    posts = social_posts(world.sf)
    assert posts[f"x:{answer}"]["ReplyToId"] == posts[f"x:{complaint}"]["Id"]
    assert posts[f"x:{complaint}"].get("ReplyToId") is None
    assert writes == [1]  # the answer, once


def test_a_reply_written_with_the_post_it_answers_is_given_it_after(world: World) -> None:
    complaint, answer, _ = a_conversation(world)
    writes = _social_post_writes(world.sf)
    assert poll_once(world)[0] == 0

    posts = social_posts(world.sf)
    assert posts[f"x:{answer}"]["ReplyToId"] == posts[f"x:{complaint}"]["Id"]
    assert writes == [2, 1]  # both, then the answer again with the complaint's id
    assert poll_once(world)[0] == 0
    assert writes == [2, 1]  # and never again


def test_a_reply_read_with_the_post_it_answers_but_written_a_call_later_is_given_it(
    world: World,
) -> None:
    """One read of the outbox holds both, in different CRM calls: the answer's record was
    read before the complaint's call stored its id, so it is written without it, then again
    with it in the same run, and never after."""
    world.config.write_text(world.config.read_text() + "\n[writer]\nbatch_size = 1\n")
    c, brand = a_customer(world)
    complaint = world.x.add_post(c.user_id, "@acme my parcel is lost")["id"]
    for n in range(6):  # five batches of one a call: the answer goes in the second
        world.x.add_post(c.user_id, f"@acme and another thing, number {n}")
    answer = world.x.add_post(brand, f"@{c.handle} we found it", in_reply_to=complaint)["id"]
    writes = _social_post_writes(world.sf)
    assert poll_once(world)[0] == 0

    posts = social_posts(world.sf)
    assert posts[f"x:{answer}"]["ReplyToId"] == posts[f"x:{complaint}"]["Id"]
    # Each post once, the answer again where it was read early (SQLite reads 25 batches at
    # once; PostgreSQL's writer claims one call's worth at a time, read after the store).
    assert sum(writes) <= 8 + 1
    sent = list(writes)
    assert poll_once(world)[0] == 0
    assert writes == sent


def test_a_reply_written_before_the_post_it_answers_is_given_it_when_that_is_written(
    world: World,
) -> None:
    """The post answered is a held author's (not linked yet): the reply to it, a linked
    customer's, is written first, and again once the held author is linked and written."""
    people = seed(world.x, world.sf, customers=4)
    stranger = next(c for c in people.customers if c.kind == "unknown")
    c = next(c for c in people.customers if c.kind == "contact_by_id")
    first = world.x.add_post(stranger.user_id, "@acme is the shop open on sunday?")["id"]
    reply = world.x.add_post(c.user_id, "@acme it is, till 4", in_reply_to=first)["id"]
    assert poll_once(world)[0] == 0
    posts = social_posts(world.sf)
    assert f"x:{first}" not in posts and posts[f"x:{reply}"].get("ReplyToId") is None

    contact = world.sf.insert("Contact", {"LastName": stranger.last})
    invoke(world, "links", "add", f"@{stranger.handle}", contact)
    assert poll_once(world)[0] == 0
    posts = social_posts(world.sf)
    assert posts[f"x:{reply}"]["ReplyToId"] == posts[f"x:{first}"]["Id"]


def test_a_reply_to_a_post_deleted_since_is_written_without_it(world: World) -> None:
    c, brand = a_customer(world)
    complaint = world.x.add_post(c.user_id, "@acme my parcel is lost")["id"]
    assert poll_once(world)[0] == 0
    answer = world.x.add_post(brand, f"@{c.handle} we found it", in_reply_to=complaint)["id"]
    _written_two_days_ago(world)
    world.x.delete_post(complaint)
    assert json.loads(invoke(world, "compliance", "run", "--json").stdout)["deleted"] == 1
    assert poll_once(world)[0] == 0

    posts = social_posts(world.sf)
    assert f"x:{complaint}" not in posts
    assert posts[f"x:{answer}"].get("ReplyToId") is None


def _with_cases(w: World) -> None:
    """``[crm.cases]`` on, and Case's key field as `syncd salesforce fields` makes it."""
    w.sf.add_field("Case", KEY, external_id=True, unique=True)
    w.config.write_text(w.config.read_text() + '\n[crm.cases]\nopen = "all"\n')


def test_with_cases_a_conversation_is_one_case_every_record_points_at_and_a_rerun_writes_nothing(
    world: World,
) -> None:
    """``[crm.cases]`` through the CLI: the complaint opens a Case, the brand's answer joins
    it; the Task's WhatId and the SocialPost's ParentId name it; a second poll writes nothing."""
    _with_cases(world)
    complaint, answer, contact = a_conversation(world)
    code, output = poll_once(world)
    assert code == 0, output

    cases = world.sf.records("Case")
    assert [(c[KEY], c["ContactId"], c["Origin"]) for c in cases] == [
        (f"x:{complaint}", contact, "Twitter")
    ]
    posts, written = social_posts(world.sf), tasks(world.sf)
    for key in (f"x:{complaint}", f"x:{answer}"):
        assert written[key]["WhatId"] == posts[key]["ParentId"] == cases[0]["Id"]
    assert posts[f"x:{answer}"]["ReplyToId"] == posts[f"x:{complaint}"]["Id"]
    assert json.loads(invoke(world, "status", "--json").stdout)["cases"] == 1
    assert "cases opened for conversations: 1" in invoke(world, "status").stdout

    writes = _writes(world.sf)
    assert poll_once(world)[0] == 0
    assert world.sf.records("Case") == cases
    assert _writes(world.sf) == writes


def test_forget_with_crm_deletes_the_cases_opened_for_the_person(world: World) -> None:
    _with_cases(world)
    people = seed(world.x, world.sf, customers=4)
    c = next(c for c in people.customers if c.kind == "contact_by_id")
    other = next(o for o in people.customers if o.kind == "contact_by_handle")
    mine = world.x.add_post(c.user_id, "@acme please delete my data")["id"]
    theirs = world.x.add_post(other.user_id, "@acme my parcel is late")["id"]
    assert poll_once(world)[0] == 0
    assert {case[KEY] for case in world.sf.records("Case")} == {f"x:{mine}", f"x:{theirs}"}

    invoke(world, "forget", "--user", c.user_id, "--crm", "--yes")
    assert [case[KEY] for case in world.sf.records("Case")] == [f"x:{theirs}"]
    # A later post of the other customer still joins their Case.
    again = world.x.add_post(other.user_id, "@acme any news?")["id"]
    assert poll_once(world)[0] == 0
    assert [case[KEY] for case in world.sf.records("Case")] == [f"x:{theirs}"]
    assert tasks(world.sf)[f"x:{again}"]["WhatId"] == world.sf.records("Case")[0]["Id"]
