"""Queries in one Composite call: the stand-in's resource (its limits, one API call, the URI
limit it exists to get around) and the candidate search that uses it (halving a query
Salesforce finds too complicated). The recorded composite answers of a real org are
replayed in test_sandbox_salesforce.py."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any
from urllib.parse import quote

import pytest
from support.salesforce import V, crm, login, raw

import connectors.salesforce.composite as composite
from connectors.salesforce.composite import Answer, query_many
from sandbox.salesforce.api import SalesforceSandbox
from syncd.model import PeopleQuery

pytestmark = pytest.mark.usefixtures("sb")


def subrequest(soql: str, ref: str) -> dict[str, str]:
    return {
        "method": "GET",
        "url": f"/services/data/v{V}/query?q={quote(soql)}",
        "referenceId": ref,
    }


def test_a_composite_is_one_api_call_whatever_it_carries(sb: SalesforceSandbox) -> None:
    sb.insert("Contact", {"LastName": "Ann+Lee", "Email": "a+b@x.io"})
    sf = login(sb)
    before = sb.api_calls
    answers = query_many(
        sf,
        [
            "SELECT Id, LastName FROM Contact WHERE Email = 'a+b@x.io'",  # '+' stays a '+'
            "SELECT Id FROM Lead",
            "SELECT Id FROM Nope__c",
        ],
    )
    assert sb.api_calls - before == 1
    assert [r["LastName"] for r in answers[0].rows] == ["Ann+Lee"] and answers[1].rows == []
    assert answers[2].error is not None and answers[2].error_code() == "INVALID_TYPE"


def test_the_composite_limits_are_salesforces(sb: SalesforceSandbox) -> None:
    sf = login(sb)
    six = [subrequest("SELECT Id FROM Contact", f"r{i}") for i in range(6)]
    refused = raw(sb, sf, "POST", "composite", json={"compositeRequest": six})
    assert refused.status_code == 400 and "at most 5" in refused.text
    many = [
        {"method": "GET", "url": f"/services/data/v{V}/limits", "referenceId": f"r{i}"}
        for i in range(26)
    ]
    refused = raw(sb, sf, "POST", "composite", json={"compositeRequest": many})
    assert refused.status_code == 400 and "1 to 25" in refused.text
    twice = [subrequest("SELECT Id FROM Contact", "same")] * 2
    refused = raw(sb, sf, "POST", "composite", json={"compositeRequest": twice})
    assert refused.status_code == 400 and "Duplicate referenceId" in refused.text
    with pytest.raises(ValueError):
        query_many(sf, ["SELECT Id FROM Contact"] * 6)


def test_a_long_query_fits_in_a_composite_but_not_in_a_url(sb: SalesforceSandbox) -> None:
    sf = login(sb)
    names = ", ".join(f"'name{i:05d}'" for i in range(2000))  # 26 KB of SOQL
    soql = f"SELECT Id FROM Contact WHERE LastName IN ({names})"
    direct = raw(sb, sf, "GET", "query", params={"q": soql})
    assert direct.status_code == 414  # Salesforce's 16 KB of URI and headers
    assert query_many(sf, [soql])[0].error is None
    too_long = f"SELECT Id FROM Contact WHERE LastName IN ({names}, {names}, {names}, {names})"
    (answer,) = query_many(sf, [too_long])
    assert answer.error_code() == "MALFORMED_QUERY"  # the statement limit still binds
    headers = {"X-Padding": "p" * 9000}
    medium = f"SELECT Id FROM Contact WHERE LastName IN ({names[:8000]}'x')"
    assert raw(sb, sf, "GET", "query", params={"q": medium}, headers=headers).status_code == 431


def test_a_query_too_complicated_is_asked_again_in_halves(
    sb: SalesforceSandbox,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    for n in range(6):
        sb.insert("Contact", {"LastName": f"Person{n}", "Email": f"p{n}@x.io"})
    real, sizes = query_many, []

    def picky(sf: Any, soqls: Sequence[str]) -> list[Answer]:
        answers = real(sf, soqls)
        out = []
        for soql, answer in zip(soqls, answers, strict=True):
            sizes.append(soql.count("@x.io"))
            if soql.count("@x.io") > 2:  # Salesforce's expansion found it too complicated
                error = [{"errorCode": "QUERY_TOO_COMPLICATED", "message": "too complicated"}]
                out.append(Answer([], composite._ERRORS[400]("url", 400, "query", error)))  # type: ignore[arg-type]
            else:
                out.append(answer)
        return out

    monkeypatch.setattr(composite, "query_many", picky)
    client = crm(sb, person_objects=["Contact"])
    emails = frozenset(f"p{n}@x.io" for n in range(6))
    found = client.find_people(PeopleQuery(emails=emails))
    assert sorted(p.email or "" for p in found) == sorted(emails)
    assert sizes == [6, 3, 3, 1, 2, 1, 2]  # halved until each part passed
