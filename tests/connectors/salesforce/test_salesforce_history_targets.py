"""Salesforce history targets: a record as a SocialPost, the targets each upserted on their own
object, and a deleted post's records marked on each; SocialPersonas written with SocialPosts,
one per author across networks, found before made, and named by each post's PersonaId."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

import pytest
from pydantic import ValidationError
from support.salesforce import record, settings

from connectors.salesforce.crm import SalesforceCrm
from connectors.salesforce.records import message_type, persona_record, social_post_record
from sandbox.salesforce.api import SalesforceSandbox
from syncd.errors import PartialWrite, TransientError
from syncd.model import Direction, HistoryRecord, Persona, Refusal

PASSWORD, TOKEN = "sandbox-password", "sandbox-token"
KEY = "Syncd_Key__c"


@pytest.fixture(autouse=True)
def secrets(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SF_PASSWORD", PASSWORD)
    monkeypatch.setenv("SF_TOKEN", TOKEN)


def test_history_defaults_to_tasks_and_takes_each_target_once() -> None:
    assert settings().history == ["task"]
    assert settings(history=["task", "social_post"]).history == ["task", "social_post"]
    for wrong in ([], ["task", "task"], ["note"]):
        with pytest.raises(ValidationError):
            settings(history=wrong)


def test_a_mention_as_a_social_post() -> None:
    rec = record(1, "003WHO", handle="@jack", description="where is my order?")
    rec = replace(rec, subject="X mention from @jack", url="https://x.com/jack/status/1")
    post = social_post_record(rec, settings())
    assert post == {
        "attributes": {"type": "SocialPost"},
        "Syncd_Key__c": "x:1399688059608702977",
        "Name": "X mention from @jack",
        "Posted": "2024-05-01T12:00:00Z",
        "Content": "where is my order?",
        "Handle": "jack",
        "PostUrl": "https://x.com/jack/status/1",
        "Provider": "Twitter",
        "MediaProvider": None,
        "MessageType": "Tweet",
        "IsOutbound": False,
        "ExternalPostId": "1399688059608702977",
        "WhoId": "003WHO",
    }


def test_networks_the_provider_picklist_lacks_are_other_with_their_name() -> None:
    rec = record(1, "003", network="mastodon", external_id="mastodon:https://m.example/1")
    post = social_post_record(rec, settings(social_post_key_field="Post_Key__c"))
    assert (post["Provider"], post["MediaProvider"]) == ("Other", "mastodon")
    assert post["Post_Key__c"] == "mastodon:https://m.example/1"
    assert post["ExternalPostId"] == "https://m.example/1"


@pytest.mark.parametrize(
    ("network", "started", "answered"),
    [
        ("x", "Tweet", "Reply"),
        ("facebook", "Post", "Comment"),
        ("instagram", "Post", "Comment"),
        ("bluesky", "Post", "Reply"),
        ("mastodon", "Post", "Reply"),
    ],
)
def test_message_type_is_the_network_word(network: str, started: str, answered: str) -> None:
    rec = record(1, "003", network=network)
    assert message_type(rec) == started
    assert message_type(replace(rec, in_reply_to="42")) == answered


def test_the_brand_s_reply_is_outbound_and_the_brand_s() -> None:
    rec = record(
        1, "003", direction=Direction.OUTBOUND, in_reply_to="1399688059608702976", brand="acme"
    )
    post = social_post_record(rec, settings())
    assert (post["IsOutbound"], post["MessageType"], post["Handle"]) == (True, "Reply", "acme")
    naive = social_post_record(replace(rec, occurred_at=datetime(2024, 5, 1, 12)), settings())
    assert naive["Posted"] == "2024-05-01T12:00:00Z"
    assert datetime.fromisoformat(naive["Posted"]) == datetime(2024, 5, 1, 12, tzinfo=UTC)


@pytest.fixture
def org() -> Iterator[SalesforceSandbox]:
    sb = SalesforceSandbox(
        username="integration@sandbox.example",
        password=PASSWORD,
        security_token=TOKEN,
        external_ids={
            "Task": ["Social_Post_Id__c"],
            "SocialPost": ["Syncd_Key__c"],
            "SocialPersona": ["Syncd_Key__c"],
        },
    )
    sb.start()
    try:
        yield sb
    finally:
        sb.stop()


def test_both_targets_upserted_in_one_call_and_deleted_by_id(
    org: SalesforceSandbox,
) -> None:
    who = org.insert("Contact", {"LastName": "Ng"})
    crm = SalesforceCrm.from_settings(settings(login_url=org.url, history=["task", "social_post"]))
    assert crm.history_targets == ("task", "social_post")
    recs = [record(n, who) for n in range(3)]
    mixed = [r for rec in recs for r in (rec, replace(rec, target="social_post"))]
    calls = crm.api_calls
    results = crm.upsert_history(mixed)
    # One Composite call carries both targets' collections, whatever the order of the records.
    assert crm.api_calls - calls == 1
    assert [r.external_id for r in results] == [r.external_id for r in mixed]
    assert all(r.ok and r.created for r in results)
    ids = [r.crm_id for r in results]
    assert [i[:3] for i in ids if i] == ["00T", "0ST"] * 3
    again = crm.upsert_history(mixed)
    assert [r.crm_id for r in again] == ids and not any(r.created for r in again)
    assert len(org.records("SocialPost")) == 3 and len(org.records("Task")) == 3

    unknown = crm.upsert_history([replace(recs[0], target="note")])
    assert (unknown[0].ok, unknown[0].error_code) == (False, "UNKNOWN_TARGET")

    outcomes = crm.delete_history([i for i in ids[:2] if i])
    assert all(o.ok for o in outcomes)
    assert len(org.records("SocialPost")) == 2 and len(org.records("Task")) == 2


def test_a_deleted_post_s_task_and_social_post_are_marked_each_their_way(
    org: SalesforceSandbox,
) -> None:
    org.add_field("Task", "Social_Post_Status__c")
    org.add_field("SocialPost", "Status", "picklist")
    who = org.insert("Contact", {"LastName": "Ng"})
    crm = SalesforceCrm.from_settings(settings(login_url=org.url, history=["social_post", "task"]))
    rec = record(1, who)
    results = crm.upsert_history([replace(rec, target="social_post"), rec])
    post_id, task_id = (r.crm_id or "" for r in results)
    assert all(o.ok for o in crm.mark_history_deleted([task_id, post_id]))
    post, task = org.get("SocialPost", post_id), org.get("Task", task_id)
    assert post is not None and task is not None
    assert (post["Status"], post["Content"]) == ("DELETED", None)
    assert (task["Social_Post_Status__c"], task["Description"]) == ("Deleted", None)


def test_without_a_key_field_social_posts_are_found_by_their_network_id(
    org: SalesforceSandbox,
) -> None:
    """``social_post_match = "query"``: a write sent again updates what the first made, and
    ids that differ only in case (Bluesky rkeys) stay two posts."""
    org.add_field("SocialPost", "Syncd_Key__c")  # not an upsert key: never written here
    who = org.insert("Contact", {"LastName": "Ng"})
    crm = SalesforceCrm.from_settings(
        settings(login_url=org.url, history=["social_post"], social_post_match="query")
    )
    base = "at://did:plc:ab/app.bsky.feed.post/"
    recs = [
        replace(record(n, who), target="social_post", network="bluesky", external_id=f"bluesky:{u}")
        for n, u in enumerate((base + "3kAbc", base + "3kabc", base + "3kxyz"))
    ]
    calls = crm.api_calls
    first = crm.upsert_history(recs[:2])
    assert crm.api_calls - calls == 2  # the query, the create
    assert [(r.ok, r.created) for r in first] == [(True, True)] * 2
    again = crm.upsert_history(recs)
    assert [r.created for r in again] == [False, False, True]
    assert [r.crm_id for r in again[:2]] == [r.crm_id for r in first]
    posts = org.records("SocialPost")
    assert sorted(p["ExternalPostId"] for p in posts) == sorted(
        u.split(":", 1)[1] for u in (r.external_id for r in recs)
    )
    assert all(p.get("Syncd_Key__c") is None for p in posts)
    assert {(p["Provider"], p["MediaProvider"]) for p in posts} == {("Other", "bluesky")}


# -- SocialPersonas ------------------------------------------------------------------------
def post(n: int, who: str, network: str, user_id: str, handle: str | None) -> HistoryRecord:
    return replace(
        record(n, who, handle=handle),
        external_id=f"{network}:{n}",
        network=network,
        target="social_post",
        author=Persona(user_id, handle, f"Name {user_id}"),
    )


def crm_for(org: SalesforceSandbox, **kw: Any) -> SalesforceCrm:
    return SalesforceCrm.from_settings(settings(login_url=org.url, history=["social_post"], **kw))


def test_a_persona_entry_is_the_author_under_the_record_s_person() -> None:
    rec = post(1, "003A", "mastodon", "109", "ann@m.example")
    assert rec.author is not None
    assert persona_record(rec, rec.author, settings()) == {
        "attributes": {"type": "SocialPersona"},
        KEY: "mastodon:109",
        "Name": "ann@m.example",
        "RealName": "Name 109",
        "Provider": "Other",
        "MediaProvider": "mastodon",
        "ExternalId": "109",
        "ParentId": "003A",
    }
    nameless = replace(rec, network="facebook", author=Persona("55", None, "Ann Lee"))
    assert nameless.author is not None
    entry = persona_record(nameless, nameless.author, settings(), keyed=False)
    assert (entry["Name"], entry["Provider"], entry["MediaProvider"]) == (
        "Ann Lee",
        "Facebook",
        None,
    )
    assert KEY not in entry


def test_one_persona_per_author_across_posts_and_networks(org: SalesforceSandbox) -> None:
    ann, bob = (
        org.insert("Contact", {"LastName": "Ann"}),
        org.insert("Contact", {"LastName": "Bob"}),
    )
    records = [
        post(1, ann, "x", "11", "ann"),
        post(2, ann, "x", "11", "ann"),
        post(3, ann, "mastodon", "11", "ann@m.example"),  # the same id on another network
        post(4, bob, "bluesky", "did:plc:bob", "bob.bsky.social"),
        post(5, bob, "bluesky", "did:plc:bob", "bob.bsky.social"),
    ]
    crm = crm_for(org)
    calls = crm.api_calls
    results = crm.upsert_history(records)
    assert crm.api_calls - calls == 3  # the look-up, the personas, the posts
    assert all(r.ok for r in results)

    personas = {p[KEY]: p for p in org.records("SocialPersona")}
    assert set(personas) == {"x:11", "mastodon:11", "bluesky:did:plc:bob"}
    assert [(p["Provider"], p["MediaProvider"], p["ParentId"]) for p in personas.values()] == [
        ("Twitter", None, ann),
        ("Other", "mastodon", ann),
        ("Other", "bluesky", bob),
    ]
    by_post = {p[KEY]: p["PersonaId"] for p in org.records("SocialPost")}
    expected = ["x:11", "x:11", "mastodon:11", "bluesky:did:plc:bob", "bluesky:did:plc:bob"]
    assert [by_post[r.external_id] for r in records] == [personas[k]["Id"] for k in expected]
    assert [r.persona_id for r in results] == [personas[k]["Id"] for k in expected]

    # Known personas (the writer sends them back): the posts alone, one call.
    known = [
        replace(r, author=replace(r.author, persona_id=a.persona_id))
        for r, a in zip(records, results, strict=True)
        if r.author is not None
    ]
    calls = crm.api_calls
    assert all(r.ok for r in crm.upsert_history(known))
    assert crm.api_calls - calls == 1
    assert len(org.records("SocialPersona")) == 3


def test_an_other_persona_the_org_has_is_found_by_media_provider_and_external_id(
    org: SalesforceSandbox,
) -> None:
    ann = org.insert("Contact", {"LastName": "Ann"})
    handlers = org.insert("Contact", {"LastName": "ann@m.example"})
    theirs = org.insert(
        "SocialPersona",
        {
            "Name": "ann@m.example",
            "Provider": "Other",
            "MediaProvider": "Mastodon",  # as an admin typed it
            "ExternalId": "109",
            "ParentId": handlers,
        },
    )
    # Another network's persona with the same id is someone else.
    org.insert(
        "SocialPersona",
        {"Name": "x", "Provider": "Twitter", "ExternalId": "109", "ParentId": handlers},
    )
    results = crm_for(org).upsert_history([post(1, ann, "mastodon", "109", "ann@m.example")])
    assert results[0].ok and results[0].persona_id == theirs
    persona = org.get("SocialPersona", theirs)
    assert persona is not None and persona["ParentId"] == ann
    assert len(org.records("SocialPersona")) == 2


def test_without_key_fields_personas_are_created_and_found_again(org: SalesforceSandbox) -> None:
    ann = org.insert("Contact", {"LastName": "Ann"})
    crm = crm_for(org, social_post_match="query")
    first = crm.upsert_history([post(1, ann, "x", "11", "ann")])
    again = crm.upsert_history([post(2, ann, "x", "11", "ann")])  # as a write sent again
    assert first[0].ok and again[0].ok
    (persona,) = org.records("SocialPersona")
    assert first[0].persona_id == again[0].persona_id == persona["Id"]


def test_a_persona_refused_refuses_its_author_s_posts_only(org: SalesforceSandbox) -> None:
    ann = org.insert("Contact", {"LastName": "Ann"})
    gone = org.insert("Contact", {"LastName": "Gone"})
    org.delete("Contact", gone)
    results = crm_for(org).upsert_history(
        [post(1, gone, "x", "66", "gone"), post(2, ann, "x", "11", "ann")]
    )
    assert [r.ok for r in results] == [False, True]
    assert results[0].external_id == "x:1" and results[0].crm_id is None
    # The person is gone: the writer resolves the author again, as for a post refused so.
    assert results[0].refusal is Refusal.GONE
    assert [p[KEY] for p in org.records("SocialPost")] == ["x:2"]


# -- several targets and batches in few calls -------------------------------------------------
def both(org: SalesforceSandbox, **kw: Any) -> SalesforceCrm:
    return SalesforceCrm.from_settings(
        settings(login_url=org.url, history=["social_post", "task"], **kw)
    )


def interactions(people: list[str], n: int) -> list[HistoryRecord]:
    """``n`` posts by ``n`` authors new to the org, each as a SocialPost and as a Task."""
    posts = [post(i, people[i % len(people)], "x", str(1000 + i), f"u{i}") for i in range(n)]
    return [r for p in posts for r in (p, replace(p, target="task"))]


def test_a_thousand_interactions_by_new_authors_to_both_targets_in_four_calls(
    org: SalesforceSandbox,
) -> None:
    people = [org.insert("Contact", {"LastName": f"P{i}"}) for i in range(7)]
    records = interactions(people, 1000)
    crm = both(org)
    calls = crm.api_calls
    results = crm.upsert_history(records)
    # The persona look-ups (2), then 5 persona upserts, then 5 SocialPost upserts, 5 Task
    # upserts beside them: up to five a Composite call (17 calls one request a call).
    assert crm.api_calls - calls == 4
    assert [r.external_id for r in results] == [r.external_id for r in records]
    assert all(r.ok and r.created for r in results)
    personas = {p["ExternalId"]: p for p in org.records("SocialPersona")}
    assert len(personas) == 1000
    posts = {p[KEY]: p for p in org.records("SocialPost")}
    assert len(posts) == 1000 and len(org.records("Task")) == 1000
    for r, a in zip(records, results, strict=True):
        if r.target == "social_post" and r.author is not None:
            persona = personas[r.author.user_id]
            assert posts[r.external_id]["PersonaId"] == persona["Id"] == a.persona_id
            assert persona["ParentId"] == r.who.id


def test_an_org_without_social_posts_still_takes_the_tasks() -> None:
    sb = SalesforceSandbox(
        username="integration@sandbox.example",
        password=PASSWORD,
        security_token=TOKEN,
        external_ids={"Task": ["Social_Post_Id__c"]},
        social=False,
    )
    sb.start()
    try:
        who = sb.insert("Contact", {"LastName": "Ng"})
        crm = both(sb)
        # Posts by new authors (the persona look-up fails) and one without an author (its
        # SocialPost upsert fails).
        no_author = record(9, who)
        records = [
            *interactions([who], 3),
            replace(no_author, target="social_post"),
            replace(no_author, target="task"),
        ]
        with pytest.raises(PartialWrite) as raised:
            crm.upsert_history(records)
        answered = raised.value.results
        assert [a is not None and a.ok for a in answered] == [r.target == "task" for r in records]
        assert set(raised.value.failures) == {"social_post"}
        assert not raised.value.transient  # what to enable is a person's to do
        assert len(sb.records("Task")) == 4
    finally:
        sb.stop()


def test_a_subrequest_failing_after_its_write_leaves_its_records_to_send_again(
    org: SalesforceSandbox,
) -> None:
    who = org.insert("Contact", {"LastName": "Ng"})
    records = [replace(record(n, who), target=t) for n in range(3) for t in ("social_post", "task")]
    crm = both(org)
    # The first collections subrequest (the SocialPosts) is applied, then answered 503.
    org.inject("status", endpoint="composite", status=503, phase="after", count=1)
    with pytest.raises(PartialWrite) as raised:
        crm.upsert_history(records)
    assert raised.value.transient and set(raised.value.failures) == {"social_post"}
    answered = raised.value.results
    assert [a is not None for a in answered] == [r.target == "task" for r in records]
    assert len(org.records("SocialPost")) == 3  # written, though not answered
    again = [r for r, a in zip(records, answered, strict=True) if a is None]
    results = crm.upsert_history(again)  # as the writer sends them again
    assert all(r.ok and not r.created for r in results)
    assert len(org.records("SocialPost")) == 3 and len(org.records("Task")) == 3


def test_a_composite_failing_whole_answers_nothing(org: SalesforceSandbox) -> None:
    who = org.insert("Contact", {"LastName": "Ng"})
    records = [replace(record(n, who), target=t) for n in range(2) for t in ("social_post", "task")]
    org.inject("status", endpoint="composite_request", status=503, count=1)
    with pytest.raises(TransientError):
        both(org).upsert_history(records)
    assert both(org).upsert_history(records)[0].ok
