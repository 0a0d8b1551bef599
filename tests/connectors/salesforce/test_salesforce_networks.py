"""Mastodon and Bluesky identities against the Salesforce stand-in: each network's own
person fields (the documented defaults, filled in for the networks the sources read), its
SocialPersona rows (Provider "Other" + MediaProvider), its Leads; and X as it always was.

Through the real simple-salesforce against the stand-in, as an org set up by
``syncd salesforce fields`` for a config reading X, Mastodon and Bluesky.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from support.salesforce import settings

from connectors.salesforce.crm import SalesforceCrm
from connectors.salesforce.settings import IDENTITY_DEFAULTS, IdentityFields
from connectors.salesforce.setup.fields import specs
from connectors.salesforce.setup.package import package
from sandbox.salesforce.api import SalesforceSandbox
from sandbox.seed import set_up_org
from syncd.model import CrmRef, IdentityKey, PeopleQuery, Profile
from syncd.resolver import scoring

PAT_URI = "https://mastodon.example.social/users/pat"
PAT_ACCT = "pat@mastodon.example.social"
PAT_DID = "did:plc:ewvi7nxzyoun6zhxrhs64oiz"
PAT_BSKY = "pat.example.com"
ALL = ["x", "mastodon", "bluesky"]


@pytest.fixture
def sb(monkeypatch: pytest.MonkeyPatch) -> Iterator[SalesforceSandbox]:
    monkeypatch.setenv("SF_PASSWORD", "sandbox-password")
    monkeypatch.setenv("SF_TOKEN", "sandbox-token")
    # The stand-in upserts only by the fields it is told are keys (as a Unique External ID).
    leads = [f.user_id for f in IDENTITY_DEFAULTS.values()]
    sandbox = SalesforceSandbox(external_ids={"Task": ["Social_Post_Id__c"], "Lead": leads})
    set_up_org(sandbox)
    with sandbox:
        yield sandbox


def crm(sb: SalesforceSandbox, networks: list[str] = ALL, **kw: Any) -> SalesforceCrm:
    return SalesforceCrm.from_settings(settings(login_url=sb.url, **kw).for_networks(networks))


def queries(sb: SalesforceSandbox) -> list[str]:
    seen: list[str] = []
    sb.on_request("query", lambda req: seen.append(req.query.get("q") or ""))
    return seen


def mastodon(handle: str | None = PAT_ACCT, uri: str = PAT_URI) -> IdentityKey:
    return IdentityKey("mastodon", uri, handle)


def bluesky(handle: str | None = PAT_BSKY, did: str = PAT_DID) -> IdentityKey:
    return IdentityKey("bluesky", did, handle)


# -- settings --------------------------------------------------------------------------------


def test_the_networks_read_get_their_documented_fields(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SF_PASSWORD", "p")
    monkeypatch.setenv("SF_TOKEN", "t")
    plain = settings()
    # X only: the very settings of before, X's two fields and nothing else.
    assert plain.for_networks(["x"]) is plain
    assert plain.identity_fields == {
        "x": IdentityFields(user_id="X_User_Id__c", handle="X_Handle__c")
    }
    every = plain.for_networks(ALL).identity_fields
    assert every["mastodon"] == IdentityFields(
        user_id="Mastodon_Actor_URI__c", handle="Mastodon_Account__c"
    )
    assert every["bluesky"] == IdentityFields(user_id="Bluesky_DID__c", handle="Bluesky_Handle__c")
    # A network not read asks the org for nothing: a Bluesky-only brand needs no X field.
    assert set(plain.for_networks(["bluesky"]).identity_fields) == {"bluesky"}
    # A table names a network's fields; the networks it leaves out take their defaults.
    named = settings(identity_fields={"x": {"user_id": "Twitter_Id__c", "handle": "Tw__c"}})
    fields = named.for_networks(["x", "mastodon"]).identity_fields
    assert fields["x"] == IdentityFields(user_id="Twitter_Id__c", handle="Tw__c")
    assert fields["mastodon"] == IDENTITY_DEFAULTS["mastodon"]
    assert named.for_networks(["x"]) is named
    renamed = settings(
        identity_fields={"mastodon": {"user_id": "Fedi_URI__c", "handle": "Fedi__c"}}
    )
    assert renamed.for_networks(["mastodon"]).identity_fields["mastodon"].user_id == "Fedi_URI__c"


def test_the_package_creates_each_networks_fields(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SF_PASSWORD", "p")
    monkeypatch.setenv("SF_TOKEN", "t")
    plain = settings()
    x_only = package(plain.for_networks(["x"]))
    assert x_only == package(plain)  # an X-only config: the package it always was
    assert "Mastodon" not in "".join(x_only.values())
    files = package(plain.for_networks(ALL))
    for obj in ("Contact", "Lead"):
        text = files[f"objects/{obj}.object"]
        for name in ("Mastodon_Actor_URI__c", "Mastodon_Account__c", "Bluesky_DID__c",
                     "Bluesky_Handle__c", "X_User_Id__c", "X_Handle__c"):  # fmt: skip
            assert f"<fullName>{name}</fullName>" in text
            assert (
                f"<field>{obj}.{name}</field>"
                in files["permissionsets/Syncd_Integration.permissionset"]
            )
    by_path = {s.path: s for s in specs(plain.for_networks(ALL))}
    uri, acct = by_path["Contact.Mastodon_Actor_URI__c"], by_path["Contact.Mastodon_Account__c"]
    assert uri.external_id and not acct.external_id and uri.filterable and acct.filterable
    # The longest actor URI syncd keys (246 characters) must fit the org's field.
    assert uri.min_length == 246 and uri.length == 255
    assert by_path["Lead.Bluesky_DID__c"].external_id
    # The Task fields a check accepts: as always for X alone; full length once a network
    # with URI keys and user@domain handles is read ("mastodon:<uri>" runs to 255).
    task = ("Task.Social_Post_Id__c", "Task.Social_Handle__c", "Task.Social_Conversation_Id__c")
    x_paths = {s.path: s for s in specs(plain.for_networks(["x"]))}
    assert [x_paths[p].min_length for p in task] == [64, 16, 32]
    assert [by_path[p].min_length for p in task] == [255, 255, 255]


def test_personas_of_an_unlisted_provider_need_media_provider(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("SF_PASSWORD", "p")
    monkeypatch.setenv("SF_TOKEN", "t")
    x_only = settings(social_personas=True)
    assert not [s for s in specs(x_only) if s.sobject == "SocialPersona"]
    (media,) = [s for s in specs(x_only.for_networks(ALL)) if s.sobject == "SocialPersona"]
    assert (media.name, media.custom, media.filterable) == ("MediaProvider", False, True)


# -- look-ups --------------------------------------------------------------------------------


def test_mastodon_and_bluesky_authors_are_found_by_their_own_fields(sb: SalesforceSandbox) -> None:
    pat = sb.insert(
        "Contact",
        {"LastName": "Doe", "X_User_Id__c": "12", "Mastodon_Actor_URI__c": PAT_URI,
         "Bluesky_DID__c": PAT_DID},
    )  # fmt: skip
    sam = sb.insert("Contact", {"LastName": "Roe", "Mastodon_Account__c": "@sam@fosstodon.org"})
    ann = sb.insert(
        "Lead", {"LastName": "Poe", "Company": "C", "Bluesky_Handle__c": "ann.bsky.social"}
    )
    # X's field holding a Mastodon URI or a DID is no Mastodon or Bluesky identity.
    sb.insert("Contact", {"LastName": "Decoy", "X_User_Id__c": "did:plc:decoy"})
    client = crm(sb)
    sam_key = mastodon("sam@fosstodon.org", "https://fosstodon.org/users/sam")
    ann_key = bluesky("ann.bsky.social", "did:plc:ann")
    keys = [mastodon(), bluesky(), sam_key, ann_key, bluesky(None, "did:plc:decoy"),
            IdentityKey("x", "12", None)]  # fmt: skip
    found = client.lookup(keys)
    assert {k: (m.ref.id, m.matcher) for k, m in found.items()} == {
        mastodon(): (pat, "crm_user_id"),
        bluesky(): (pat, "crm_user_id"),
        IdentityKey("x", "12", None): (pat, "crm_user_id"),
        sam_key: (sam, "crm_handle"),  # "@user@domain" on file, as people type it
        ann_key: (ann, "crm_handle"),
    }


def test_each_network_is_asked_by_its_own_fields_only(sb: SalesforceSandbox) -> None:
    seen = queries(sb)
    crm(sb).lookup([mastodon(), IdentityKey("x", "12", "jack")])
    mine = [q for q in seen if "Mastodon" in q]
    assert mine and all("X_" not in q and "Bluesky" not in q for q in mine)
    xs = [q for q in seen if "X_User_Id__c" in q]
    assert xs and all("Mastodon" not in q for q in xs)


def test_an_x_only_crm_asks_for_no_other_networks_field(sb: SalesforceSandbox) -> None:
    seen = queries(sb)
    client = crm(sb, ["x"])
    sb.insert(
        "Contact", {"LastName": "Doe", "X_User_Id__c": "12", "Mastodon_Actor_URI__c": PAT_URI}
    )
    assert client.lookup([mastodon()]) == {}  # no fields for Mastodon: not looked up
    client.keys_on_file(None)
    client.people_changes(client.people_changes(None).mark)
    assert seen and not [q for q in seen if "Mastodon" in q or "Bluesky" in q]


def test_keys_on_file_and_changes_carry_every_networks_keys(sb: SalesforceSandbox) -> None:
    client = crm(sb)
    mark = client.people_changes(None).mark
    pat = sb.insert(
        "Contact",
        {"LastName": "Doe", "X_Handle__c": "@patdoe", "Mastodon_Actor_URI__c": PAT_URI,
         "Mastodon_Account__c": "@" + PAT_ACCT, "Bluesky_DID__c": PAT_DID},
    )  # fmt: skip
    expected = {("bluesky", PAT_DID, None), ("mastodon", PAT_URI, PAT_ACCT), ("x", None, "patdoe")}
    page = client.keys_on_file(None)
    (listed,) = [p for p in page.people if p.ref.id == pat]
    assert {(k.network, k.user_id, k.handle) for k in listed.keys} == expected
    changes = client.people_changes(mark)
    (changed,) = [p for p in changes.on_file if p.ref.id == pat]
    assert {(k.network, k.user_id, k.handle) for k in changed.keys} == expected


# -- Leads -----------------------------------------------------------------------------------


def test_a_lead_for_a_mastodon_author_is_upserted_by_its_uri(sb: SalesforceSandbox) -> None:
    paths: list[str] = []
    sb.on_request("*", lambda req: paths.append(f"{req.method} {req.path}"))
    client = crm(sb)
    profile = Profile(key=mastodon(), display_name="Pat Doe")
    first, again = client.upsert_lead(profile), client.upsert_lead(profile)
    assert first == again == CrmRef("Lead", first.id, "Pat Doe")
    (lead,) = sb.records("Lead")
    assert (lead["Mastodon_Actor_URI__c"], lead["Mastodon_Account__c"]) == (PAT_URI, PAT_ACCT)
    assert lead.get("X_User_Id__c") is None
    # The URI travels in the body: Salesforce refuses a "/" in an upsert's URL, even encoded.
    upserts = [p for p in paths if p.startswith("PATCH")]
    assert upserts and all(
        p.endswith("/composite/sobjects/Lead/Mastodon_Actor_URI__c") for p in upserts
    )
    assert client.lookup([mastodon()])[mastodon()].ref.id == first.id

    blue = client.upsert_lead(Profile(key=bluesky()))
    assert blue.name == PAT_BSKY and client.upsert_lead(Profile(key=bluesky())) == blue
    (row,) = [r for r in sb.records("Lead") if r["Id"] == blue.id]
    assert (row["Bluesky_DID__c"], row["Bluesky_Handle__c"]) == (PAT_DID, PAT_BSKY)


def test_an_x_lead_is_upserted_as_before(sb: SalesforceSandbox) -> None:
    paths: list[str] = []
    sb.on_request("*", lambda req: paths.append(f"{req.method} {req.path}"))
    ref = crm(sb).upsert_lead(Profile(key=IdentityKey("x", "4242", "newbie")))
    upserts = [p for p in paths if p.startswith("PATCH")]
    assert len(upserts) == 1 and upserts[0].endswith("/sobjects/Lead/X_User_Id__c/4242")
    (lead,) = sb.records("Lead")
    assert (lead["Id"], lead["X_User_Id__c"], lead["X_Handle__c"]) == (ref.id, "4242", "newbie")


# -- SocialPersona ---------------------------------------------------------------------------


def persona(sb: SalesforceSandbox, parent: str, name: str, external: str, **kw: Any) -> str:
    values = {"Name": name, "Provider": "Other", "ParentId": parent, "ExternalId": external}
    return sb.insert("SocialPersona", {**values, **kw})


def test_personas_of_mastodon_and_bluesky_are_other_with_media_provider(
    sb: SalesforceSandbox,
) -> None:
    pat = sb.insert("Contact", {"LastName": "Doe"})
    ann = sb.insert("Contact", {"LastName": "Poe"})
    persona(sb, pat, PAT_ACCT, PAT_URI, MediaProvider="Mastodon")  # any case: SOQL "=" ignores it
    persona(sb, ann, PAT_BSKY, PAT_DID, MediaProvider="bluesky")
    # The same ids under another network's name belong to that network, not these.
    persona(sb, ann, PAT_ACCT, PAT_URI, MediaProvider="threads")
    persona(sb, ann, "x", PAT_DID, MediaProvider="mastodon")
    seen = queries(sb)
    found = crm(sb, social_personas=True).personas([mastodon(), bluesky()])
    assert {k: [r.id for r in refs] for k, refs in found.items()} == {
        mastodon(): [pat],
        bluesky(): [ann],
    }
    assert any("Provider = 'Other' AND MediaProvider = 'mastodon'" in q for q in seen)


def test_x_personas_are_asked_as_before(sb: SalesforceSandbox) -> None:
    jack = sb.insert("Contact", {"LastName": "Jack"})
    sb.insert(
        "SocialPersona",
        {"Name": "jack", "Provider": "Twitter", "ParentId": jack, "ExternalId": "12"},
    )
    seen = queries(sb)
    found = crm(sb, ["x"], social_personas=True).personas([IdentityKey("x", "12", "jack")])
    assert [r.id for r in found[IdentityKey("x", "12", "jack")]] == [jack]
    assert all("MediaProvider" not in q for q in seen)


# -- candidates ------------------------------------------------------------------------------


def test_a_candidate_is_scored_by_the_authors_own_networks_keys(sb: SalesforceSandbox) -> None:
    """Pat's Contact holds an X user id: a Mastodon author is not "another X user", and is
    scored on what they share (the e-mail in the bio); an X author of another id still is."""
    pat = sb.insert(
        "Contact",
        {"LastName": "Doe", "FirstName": "Pat", "Email": "pat@example.com",
         "X_User_Id__c": "12", "Mastodon_Actor_URI__c": "https://other.example/users/pat"},
    )  # fmt: skip
    client = crm(sb)
    (person,) = client.find_people(PeopleQuery(emails=frozenset({"pat@example.com"})))
    assert person.ref.id == pat
    bio = "write to pat@example.com"
    fan = Profile(key=bluesky("pat.example.com"), display_name="Pat Doe", description=bio)
    scored = scoring.score(fan, person)
    assert scored is not None and scored.matcher == "contact_points"
    # Mastodon: the record holds another actor URI, so it is not this author.
    assert scoring.score(Profile(key=mastodon(), description=bio), person) is None
    assert scoring.score(Profile(key=IdentityKey("x", "99"), description=bio), person) is None
    same = scoring.score(Profile(key=IdentityKey("x", "12"), description=bio), person)
    assert same is not None and same.matcher == "crm_user_id"
    mark = client.people_changes(None).mark
    later = datetime.now(UTC) + timedelta(seconds=5)  # a stamp after the mark's
    sb.clock = lambda: later
    sb.update("Contact", pat, {"Bluesky_DID__c": PAT_DID, "Bluesky_Handle__c": "@" + PAT_BSKY})
    (changed,) = client.people_changes(mark).people
    again = scoring.score(fan, changed)
    assert again is not None and again.matcher == "crm_user_id"
