"""SocialPersonas written with the SocialPost target: one per author across networks, found
before made, and named by each post's PersonaId."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace
from typing import Any

import pytest
from support.salesforce import record, settings

from connectors.salesforce.crm import SalesforceCrm
from connectors.salesforce.records import persona_record
from sandbox.salesforce.api import SalesforceSandbox
from syncd.model import HistoryRecord, Persona, Refusal

PASSWORD, TOKEN = "sandbox-password", "sandbox-token"
KEY = "Syncd_Key__c"


@pytest.fixture(autouse=True)
def secrets(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SF_PASSWORD", PASSWORD)
    monkeypatch.setenv("SF_TOKEN", TOKEN)


@pytest.fixture
def org() -> Iterator[SalesforceSandbox]:
    sb = SalesforceSandbox(
        username="integration@sandbox.example",
        password=PASSWORD,
        security_token=TOKEN,
        external_ids={"SocialPost": [KEY], "SocialPersona": [KEY]},
    )
    sb.start()
    try:
        yield sb
    finally:
        sb.stop()


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
