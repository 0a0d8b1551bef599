"""The Salesforce stand-in's Service Cloud objects: SocialPost, SocialPersona and Case, with
their required fields, picklists and lookups, and an org without Social Customer Service.
Error bodies are held against CumulusCI's recordings of a real org (fixtures/cumulusci)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
import yaml
from simple_salesforce.exceptions import SalesforceMalformedRequest
from support import FIXTURES
from support.salesforce import login, raw

from sandbox.salesforce.api import SalesforceSandbox

POSTED = "2026-03-01T10:00:00Z"


@pytest.fixture
def sb() -> Iterator[SalesforceSandbox]:
    with SalesforceSandbox(external_ids={"SocialPost": ["Syncd_Key__c"]}) as sandbox:
        yield sandbox


def recorded(name: str) -> list[Any]:
    """The compositeResponse bodies of a CumulusCI cassette."""
    (interaction,) = yaml.safe_load((FIXTURES / "cumulusci" / name).read_text())["interactions"]
    answers = json.loads(interaction["response"]["body"]["string"])["compositeResponse"]
    return [a["body"] for a in answers]


def errors(exc: pytest.ExceptionInfo[SalesforceMalformedRequest]) -> Any:
    return exc.value.content


def test_required_fields_of_the_social_objects(sb: SalesforceSandbox) -> None:
    sf = login(sb)
    with pytest.raises(SalesforceMalformedRequest) as err:
        sf.SocialPost.create({"Content": "hi"})
    assert errors(err) == [
        {
            "message": "Required fields are missing: [Name, Posted]",
            "errorCode": "REQUIRED_FIELD_MISSING",
            "fields": ["Name", "Posted"],
        }
    ]
    with pytest.raises(SalesforceMalformedRequest) as err:
        sf.SocialPersona.create({"Name": "ann"})
    assert errors(err)[0]["fields"] == ["Provider", "ParentId"]
    described = {f["name"]: f["nillable"] for f in sf.SocialPersona.describe()["fields"]}
    assert [n for n in ("Name", "Provider", "ParentId", "ExternalId") if not described[n]] == [
        "Name", "Provider", "ParentId",
    ]  # fmt: skip
    post = sf.SocialPost.create({"Name": "Post from ann", "Posted": POSTED})["id"]
    assert sf.SocialPost.get(post)["IsOutbound"] is False


def test_provider_is_restricted_to_the_real_values(sb: SalesforceSandbox) -> None:
    """No Mastodon or Bluesky: such a persona is Other + MediaProvider; values match exactly."""
    sf = login(sb)
    ann = sb.insert("Contact", {"LastName": "Lee"})
    for provider in ("Mastodon", "twitter"):
        with pytest.raises(SalesforceMalformedRequest) as err:
            sf.SocialPersona.create({"Name": "ann", "Provider": provider, "ParentId": ann})
        assert errors(err) == [
            {
                "message": f"Provider: bad value for restricted picklist field: {provider}",
                "errorCode": "INVALID_OR_NULL_FOR_RESTRICTED_PICKLIST",
                "fields": ["Provider"],
            }
        ]
    values = {"Name": "ann@example.social", "Provider": "Other", "MediaProvider": "Mastodon"}
    assert sf.SocialPersona.create({**values, "ParentId": ann})["success"]
    with pytest.raises(SalesforceMalformedRequest) as err:
        sf.SocialPost.create({"Name": "p", "Posted": POSTED, "MessageType": "Toot"})
    assert errors(err)[0]["errorCode"] == "INVALID_OR_NULL_FOR_RESTRICTED_PICKLIST"
    for kind in ("Tweet", "Reply", "Comment", "Post", "Direct", "Private", "Retweet"):
        assert sf.SocialPost.create({"Name": kind, "Posted": POSTED, "MessageType": kind})
    fields = {f["name"]: f for f in sf.SocialPost.describe()["fields"]}
    assert fields["Provider"]["restrictedPicklist"] is True
    listed = [v["value"] for v in fields["Provider"]["picklistValues"]]
    assert "Other" in listed and "Twitter" in listed and "Mastodon" not in listed


def test_social_lookups_name_their_real_targets(sb: SalesforceSandbox) -> None:
    sf = login(sb)
    ann = sb.insert("Contact", {"LastName": "Lee"})
    case = sb.insert("Case", {"Subject": "Broken", "ContactId": ann})
    persona = sb.insert("SocialPersona", {"Name": "ann", "Provider": "Twitter", "ParentId": ann})
    parent = sb.insert("SocialPost", {"Name": "first", "Posted": POSTED})
    post = {"Name": "p", "Posted": POSTED, "PersonaId": persona, "WhoId": ann}
    reply = sf.SocialPost.create({**post, "ReplyToId": parent, "ParentId": case})["id"]
    assert (sb.get("SocialPost", reply) or {}).get("ParentId") == case
    for field, wrong in (("ParentId", ann), ("ReplyToId", case), ("PersonaId", parent)):
        with pytest.raises(SalesforceMalformedRequest) as err:
            sf.SocialPost.create({**post, field: wrong})
        assert errors(err)[0]["errorCode"] == "FIELD_INTEGRITY_EXCEPTION", field
    # a persona may hang off a post (the default handler parks unknown authors there)
    assert sf.SocialPersona.create({"Name": "bo", "Provider": "Twitter", "ParentId": parent})
    with pytest.raises(SalesforceMalformedRequest) as err:
        sf.Case.create({"ContactId": parent})
    assert errors(err)[0]["fields"] == ["ContactId"]


def test_case_status_drives_is_closed_and_the_picklists_are_the_defaults(
    sb: SalesforceSandbox,
) -> None:
    sf = login(sb)
    case = sf.Case.create({"Subject": "Broken", "Origin": "Web"})["id"]
    got = sf.Case.get(case)
    assert (got["Status"], got["Priority"], got["IsClosed"], got["ClosedDate"]) == (
        "New", "Medium", False, None,
    )  # fmt: skip
    assert got["CaseNumber"] and sf.Case.get(case)["CaseNumber"] == got["CaseNumber"]
    sf.Case.update(case, {"Status": "Closed"})
    closed = sf.Case.get(case)
    assert closed["IsClosed"] is True and closed["ClosedDate"]
    sf.Case.update(case, {"Status": "Working"})  # reopened
    assert (sf.Case.get(case)["IsClosed"], sf.Case.get(case)["ClosedDate"]) == (False, None)
    with pytest.raises(SalesforceMalformedRequest) as err:
        sf.Case.update(case, {"IsClosed": True})
    assert errors(err)[0]["errorCode"] == "INVALID_FIELD_FOR_INSERT_UPDATE"
    # Origin is not restricted in a new org: any value is kept; an admin may restrict it
    assert sf.Case.create({"Origin": "Mastodon"})["success"]
    sb.set_picklist("Case", "Origin", ["Phone", "Email", "Web", "Twitter"], restricted=True)
    with pytest.raises(SalesforceMalformedRequest) as err:
        sf.Case.create({"Origin": "Mastodon"})
    assert errors(err)[0]["errorCode"] == "INVALID_OR_NULL_FOR_RESTRICTED_PICKLIST"
    described = {f["name"]: f for f in sf.Case.describe()["fields"]}
    origin = [v["value"] for v in described["Origin"]["picklistValues"]]
    assert origin == ["Phone", "Email", "Web", "Twitter"]
    priority = described["Priority"]["picklistValues"]
    assert [(v["value"], v["defaultValue"]) for v in priority] == [
        ("High", False), ("Medium", True), ("Low", False),
    ]  # fmt: skip
    task = {f["name"]: f for f in sf.Task.describe()["fields"]}["Priority"]
    assert [v["value"] for v in task["picklistValues"]] == ["High", "Normal", "Low"]


def test_an_org_without_social_customer_service_knows_no_social_objects() -> None:
    """As an org knows no object by an unknown name: SOQL answers INVALID_TYPE, REST 404
    NOT_FOUND, each as recorded from a real org; a collections record INVALID_TYPE."""
    with SalesforceSandbox(social=False) as sb:
        sf = login(sb)
        soql = "select count() from SocialPost"
        resp = raw(sb, sf, "GET", f"query/?q={soql}")
        (_, unknown) = recorded("TestCountSObjects.test_count_sobjects__errors.yaml")
        assert resp.status_code == 400
        assert resp.json() == [
            {
                "message": unknown[0]["message"].replace("XYZZY", "SocialPost"),
                "errorCode": "INVALID_TYPE",
            }
        ]
        (not_found,) = recorded("TestCompositeParallelSalesforce.test_errors.yaml")
        for method, path in (
            ("GET", "sobjects/SocialPersona/describe"),
            ("GET", "sobjects/SocialPost"),
            ("POST", "sobjects/SocialPost"),
            ("PATCH", "sobjects/SocialPost/Syncd_Key__c/x:1"),
            ("PATCH", "composite/sobjects/SocialPost/Syncd_Key__c"),
        ):
            resp = raw(sb, sf, method, path, json={"Name": "p", "records": []})
            assert (resp.status_code, resp.json()) == (404, not_found), path
        record = {"attributes": {"type": "SocialPost"}, "Name": "p", "Posted": POSTED}
        answer = sf.restful("composite/sobjects", method="POST", json={"records": [record]})
        assert answer[0]["errors"][0]["statusCode"] == "INVALID_TYPE"
        names = {o["name"] for o in sf.describe()["sobjects"]}
        assert "Case" in names and not names & {"SocialPost", "SocialPersona"}
        with pytest.raises(ValueError):
            sb.insert("SocialPersona", {"Name": "ann"})
