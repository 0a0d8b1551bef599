"""Facebook and Instagram identities on the Salesforce side, against the stand-in: the
identity fields (made by ``syncd salesforce fields``, verified by ``syncd check``), a scoped
id and the bare PSID a rep types, MessagingEndUser records of an org using Salesforce
messaging, SocialPersona by Provider, and the resolver chain deciding Facebook authors.

syncd keys a Meta author as ``<page-id>:<psid>`` (connectors/meta/parse.py scoped_id); the
numbers below are the recorded Page and its commenter (python-facebook fixtures).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from support.salesforce import settings

from connectors.salesforce.crm import SalesforceCrm
from connectors.salesforce.settings import IDENTITY_DEFAULTS, IdentityFields
from connectors.salesforce.setup.fields import objects, specs
from connectors.salesforce.setup.package import package
from sandbox.salesforce.api import SalesforceSandbox
from sandbox.seed import set_up_org
from syncd.model import IdentityKey, KeysPage, Profile
from syncd.resolver import Policy, on_file, resolve

PAGE = "2121008874780932"
OTHER_PAGE = "104720315323712"
PSID = "2711636948859886"
IG = "17841405822304914"
IGSID = "17858893269000001"
META = ["facebook", "instagram"]


@pytest.fixture
def env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SF_PASSWORD", "sandbox-password")
    monkeypatch.setenv("SF_TOKEN", "sandbox-token")


def _sandbox(messaging: bool) -> SalesforceSandbox:
    leads = [f.user_id for f in IDENTITY_DEFAULTS.values()]
    sandbox = SalesforceSandbox(
        external_ids={"Task": ["Social_Post_Id__c"], "Lead": leads}, messaging=messaging
    )
    set_up_org(sandbox)
    return sandbox


@pytest.fixture
def sb(env: None) -> Iterator[SalesforceSandbox]:
    with _sandbox(messaging=False) as sandbox:
        yield sandbox


@pytest.fixture
def msb(env: None) -> Iterator[SalesforceSandbox]:
    """An org that answers Messenger and Instagram in Salesforce messaging."""
    with _sandbox(messaging=True) as sandbox:
        yield sandbox


def crm(sb: SalesforceSandbox, networks: list[str] = META, **kw: Any) -> SalesforceCrm:
    return SalesforceCrm.from_settings(settings(login_url=sb.url, **kw).for_networks(networks))


def calls(sb: SalesforceSandbox) -> list[str]:
    seen: list[str] = []
    sb.on_request("*", lambda req: seen.append(f"{req.method} {req.path}"))
    return seen


def queries(sb: SalesforceSandbox) -> list[str]:
    seen: list[str] = []
    sb.on_request("query", lambda req: seen.append(req.query.get("q") or ""))
    return seen


def fb(psid: str = PSID, page: str = PAGE) -> IdentityKey:
    return IdentityKey("facebook", f"{page}:{psid}", None)


def ig(igsid: str = IGSID, username: str | None = "pat.ig") -> IdentityKey:
    return IdentityKey("instagram", f"{IG}:{igsid}", username)


def channel(sb: SalesforceSandbox, kind: str, key: str) -> str:
    return sb.insert(
        "MessagingChannel",
        {"DeveloperName": f"{kind}_{key}", "MasterLabel": kind, "MessageType": kind,
         "MessagingPlatformKey": key},
    )  # fmt: skip


def end_user(sb: SalesforceSandbox, chan: str, kind: str, key: str, contact: str | None) -> str:
    values = {"Name": key, "MessageType": kind, "MessagingChannelId": chan,
              "MessagingPlatformKey": key, "ContactId": contact}  # fmt: skip
    return sb.insert("MessagingEndUser", {k: v for k, v in values.items() if v is not None})


# -- settings, package, check ----------------------------------------------------------------


def test_facebook_and_instagram_get_their_documented_fields(env: None) -> None:
    every = settings().for_networks(["x", *META]).identity_fields
    assert every["facebook"] == IdentityFields(user_id="Facebook_PSID__c", handle=None)
    assert every["instagram"] == IdentityFields(
        user_id="Instagram_IGSID__c", handle="Instagram_Username__c"
    )
    # Only Facebook goes without a handle field; a scope only where ids are scoped.
    with pytest.raises(ValueError, match="handle is missing"):
        settings(identity_fields={"x": {"user_id": "X_User_Id__c"}})
    with pytest.raises(ValueError, match="scope: only for facebook, instagram"):
        settings(identity_fields={"x": {"user_id": "A__c", "handle": "B__c", "scope": "1"}})
    scoped = settings(identity_fields={"facebook": {"user_id": "PSID__c", "scope": PAGE}})
    assert scoped.identity_fields["facebook"].on_file(PSID) == f"{PAGE}:{PSID}"


def test_the_package_creates_the_meta_fields_and_no_facebook_handle(env: None) -> None:
    files = package(settings().for_networks(META))
    for obj in ("Contact", "Lead"):
        text = files[f"objects/{obj}.object"]
        for name in ("Facebook_PSID__c", "Instagram_IGSID__c", "Instagram_Username__c"):
            assert f"<fullName>{name}</fullName>" in text
        assert "Facebook_Handle" not in text and "<fullName>None" not in text
    by_path = {s.path: s for s in specs(settings().for_networks(META))}
    psid = by_path["Contact.Facebook_PSID__c"]
    assert psid.external_id and psid.filterable and psid.min_length == 64
    assert by_path["Lead.Instagram_Username__c"].min_length == 30
    # MessagingEndUser is Salesforce's own object: checked, never created, never demanded.
    (messaging,) = [o for o in objects(settings().for_networks(META)) if o.optional]
    assert messaging.name == "MessagingEndUser"
    assert not [n for n in files if "MessagingEndUser" in n]
    assert not [o for o in objects(settings().for_networks(["x"])) if o.optional]


def test_check_verifies_the_meta_fields(sb: SalesforceSandbox) -> None:
    rows = {r.item: r for r in crm(sb).check()}
    for path in ("Contact.Facebook_PSID__c", "Lead.Instagram_IGSID__c",
                 "Contact.Instagram_Username__c"):  # fmt: skip
        assert rows[path].ok, rows[path]
    # An org without messaging is told what it misses, not failed.
    assert rows["MessagingEndUser"].ok and "does not use" in rows["MessagingEndUser"].detail
    sb.add_field("Contact", "PSID_Short__c", "string", length=20)
    fields = {"facebook": {"user_id": "PSID_Short__c"}}
    short = {r.item: r for r in crm(sb, identity_fields=fields).check()}
    assert not short["Contact.PSID_Short__c"].ok  # "<page>:<psid>" would not fit
    assert not short["Lead.PSID_Short__c"].ok  # no such field on Lead


def test_check_verifies_messaging_end_user_where_the_org_has_it(msb: SalesforceSandbox) -> None:
    rows = {r.item: r for r in crm(msb).check()}
    assert rows["MessagingEndUser"].ok and "does not use" not in rows["MessagingEndUser"].detail
    assert rows["MessagingEndUser.MessagingPlatformKey"].ok
    assert rows["MessagingEndUser.ContactId"].ok


# -- the identity fields ---------------------------------------------------------------------


def test_a_scoped_psid_on_file_links_and_another_pages_does_not(sb: SalesforceSandbox) -> None:
    pat = sb.insert("Contact", {"LastName": "Doe", "Facebook_PSID__c": f"{PAGE}:{PSID}"})
    sb.insert("Contact", {"LastName": "Else", "Facebook_PSID__c": f"{OTHER_PAGE}:777"})
    found = crm(sb).lookup([fb(), fb("777")])
    assert {k: (m.ref.id, m.matcher) for k, m in found.items()} == {fb(): (pat, "crm_user_id")}


def test_a_bare_psid_counts_only_in_the_fields_scope(sb: SalesforceSandbox) -> None:
    pat = sb.insert("Contact", {"LastName": "Doe", "Facebook_PSID__c": PSID})
    assert crm(sb).lookup([fb()]) == {}  # no scope: the number alone is nobody's key
    scoped = {"facebook": {"user_id": "Facebook_PSID__c", "scope": PAGE}}
    client = crm(sb, identity_fields=scoped)
    found = client.lookup([fb(), fb(PSID, OTHER_PAGE)])
    assert {k: m.ref.id for k, m in found.items()} == {fb(): pat}
    # The local copy reads the field the same way.
    (listed,) = [p for p in client.keys_on_file(None).people if p.ref.id == pat]
    assert [(k.network, k.user_id) for k in listed.keys] == [("facebook", f"{PAGE}:{PSID}")]


def test_instagram_by_igsid_then_by_username_as_evidence(sb: SalesforceSandbox) -> None:
    pat = sb.insert("Contact", {"LastName": "Doe", "Instagram_IGSID__c": f"{IG}:{IGSID}"})
    sam = sb.insert("Lead", {"LastName": "Roe", "Company": "C", "Instagram_Username__c": "@sam"})
    sam_key = ig("17858893269000002", "sam")
    found = crm(sb).lookup([ig(), sam_key])
    assert {k: (m.ref.id, m.matcher) for k, m in found.items()} == {
        ig(): (pat, "crm_user_id"),
        sam_key: (sam, "crm_handle"),
    }


def test_meta_lookups_are_batched(sb: SalesforceSandbox) -> None:
    for n in range(3):
        sb.insert("Contact", {"LastName": f"P{n}", "Facebook_PSID__c": f"{PAGE}:{n}"})
    seen = queries(sb)
    keys = [fb(str(n)) for n in range(150)] + [ig(str(n), f"u{n}") for n in range(150)]
    found = crm(sb).lookup(keys)
    assert len(found) == 3
    # One query per network per person object: Leads are asked about the rest.
    assert len(seen) == 4
    assert all("Facebook_Handle" not in q for q in seen)


def test_a_facebook_lead_is_upserted_by_its_scoped_id(sb: SalesforceSandbox) -> None:
    client = crm(sb)
    ref = client.upsert_lead(Profile(fb(), display_name="Pat Doe"))
    again = client.upsert_lead(Profile(fb(), display_name="Pat Doe"))
    assert ref == again
    (lead,) = sb.records("Lead")
    assert lead["Facebook_PSID__c"] == f"{PAGE}:{PSID}" and lead["LastName"] == "Doe"


# -- MessagingEndUser ------------------------------------------------------------------------


def test_messaging_end_users_link_to_their_contact_on_the_right_page(
    msb: SalesforceSandbox,
) -> None:
    pat = msb.insert("Contact", {"LastName": "Doe"})
    ann = msb.insert("Contact", {"LastName": "Poe"})
    page, other = channel(msb, "Facebook", PAGE), channel(msb, "Facebook", OTHER_PAGE)
    end_user(msb, page, "Facebook", PSID, pat)
    end_user(msb, other, "Facebook", "555", ann)  # another Page's person with that number
    end_user(msb, page, "Facebook", "666", None)  # no Contact: links no one
    insta = channel(msb, "Instagram", IG)
    end_user(msb, insta, "Instagram", IGSID, ann)
    seen = calls(msb)
    client = crm(msb)
    found = client.personas([fb(), fb("555"), fb("666"), ig(), IdentityKey("x", "12", "jack")])
    assert {k: [r.id for r in refs] for k, refs in found.items()} == {fb(): [pat], ig(): [ann]}
    describes = [c for c in seen if c.endswith("/sobjects/MessagingEndUser/describe")]
    asked = [c for c in seen if "/query" in c]
    assert len(describes) == 1 and len(asked) == 2  # one query per network for the batch
    seen.clear()
    client.personas([fb(str(n)) for n in range(200)])
    assert len([c for c in seen if "/query" in c]) == 1  # 200 authors: one query
    assert not [c for c in seen if "describe" in c]  # the object is known to be there


def test_an_org_without_messaging_is_asked_once_whether_it_has_it(sb: SalesforceSandbox) -> None:
    seen = calls(sb)
    client = crm(sb)
    assert client.personas([fb()]) == {}
    assert client.personas([fb("1")]) == {}
    assert [c for c in seen if "MessagingEndUser" in c] == [
        c for c in seen if c.endswith("/sobjects/MessagingEndUser/describe")
    ]
    assert len([c for c in seen if "describe" in c]) == 1
    assert not [c for c in seen if "/query" in c]


def test_no_meta_author_no_messaging_call(msb: SalesforceSandbox) -> None:
    seen = calls(msb)
    assert crm(msb, ["x", *META]).personas([IdentityKey("x", "12", "jack")]) == {}
    assert not [c for c in seen if "Messaging" in c]
    assert crm(msb, messaging_end_users=False).personas([fb()]) == {}
    assert not [c for c in seen if "Messaging" in c]


# -- SocialPersona ---------------------------------------------------------------------------


def test_facebook_personas_are_asked_by_provider_and_scoped_or_bare_id(
    sb: SalesforceSandbox,
) -> None:
    pat = sb.insert("Contact", {"LastName": "Doe"})
    ann = sb.insert("Contact", {"LastName": "Poe"})
    sb.insert("SocialPersona", {"Name": "Pat Doe", "Provider": "Facebook", "ParentId": pat,
                                "ExternalId": PSID})  # fmt: skip
    sb.insert("SocialPersona", {"Name": "ann", "Provider": "Instagram", "ParentId": ann,
                                "ExternalId": f"{IG}:{IGSID}"})  # fmt: skip
    seen = queries(sb)
    scoped = {"facebook": {"user_id": "Facebook_PSID__c", "scope": PAGE}}
    client = crm(sb, identity_fields=scoped, social_personas=True, messaging_end_users=False)
    found = client.personas([fb(), ig()])
    assert {k: [r.id for r in refs] for k, refs in found.items()} == {fb(): [pat], ig(): [ann]}
    assert any("Provider = 'Facebook'" in q for q in seen)
    # Without the scope the bare PSID is nobody's; Instagram's scoped ExternalId still is.
    both = crm(sb, social_personas=True, messaging_end_users=False).personas([fb(), ig()])
    assert {k: [r.id for r in refs] for k, refs in both.items()} == {ig(): [ann]}


# -- the resolver chain ----------------------------------------------------------------------


def _decisions(client: SalesforceCrm, profiles: dict[int, Profile], copy: bool) -> dict[int, Any]:
    lookup = None
    if copy:  # the resolver's local copy of the identity fields, as the daemon keeps it
        page: KeysPage = client.keys_on_file(None)
        people = list(page.people)
        while page.next is not None:
            page = client.keys_on_file(page.next)
            people += page.people
        lookup = lambda keys: on_file.matches(keys, people)  # noqa: E731
    return resolve(client, profiles, Policy(), lookup=lookup)


@pytest.mark.parametrize("copy", [False, True], ids=["asked", "local-copy"])
def test_facebook_authors_link_by_field_or_messaging_never_by_name(
    msb: SalesforceSandbox, copy: bool
) -> None:
    by_field = msb.insert(
        "Contact", {"FirstName": "Pat", "LastName": "Doe", "Facebook_PSID__c": f"{PAGE}:{PSID}"}
    )
    by_messaging = msb.insert("Contact", {"FirstName": "Ann", "LastName": "Poe"})
    end_user(msb, channel(msb, "Facebook", PAGE), "Facebook", "4242", by_messaging)
    namesake = msb.insert("Contact", {"FirstName": "Sam", "LastName": "Roe"})
    profiles = {
        1: Profile(fb(), display_name="Pat Doe"),
        2: Profile(fb("4242"), display_name="Ann Poe"),
        3: Profile(fb("9999"), display_name="Sam Roe"),  # a name is all Facebook gives
    }
    decided = _decisions(crm(msb), profiles, copy)
    assert decided[1].link is not None and decided[1].link.ref.id == by_field
    assert decided[2].link is not None and decided[2].link.ref.id == by_messaging
    assert decided[3].link is None  # to review (or held), never linked by a name alone
    assert [c.ref.id for c in decided[3].review] in ([namesake], [])
