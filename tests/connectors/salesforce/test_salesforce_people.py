"""Identity resolution against Salesforce: personas, candidates, survivors of merges, Leads.

Through the real simple-salesforce against the stand-in, plus the generated SOQL on its own.
The injection tests pass hostile author strings through every call that puts them in SOQL.
"""

from __future__ import annotations

import logging
import math
import random
from typing import Any

import pytest
from support.salesforce import crm, key

from connectors.salesforce.composite import STATEMENT_BUDGET
from connectors.salesforce.crm import SalesforceCrm
from connectors.salesforce.identity.lookup import MAX_VALUE
from connectors.salesforce.identity.people import (
    CANDIDATE_LIMIT,
    id18,
    lead_fields,
    person_record,
    persona_soql,
    prepared,
    survivor_soql,
)
from connectors.salesforce.identity.search import people_queries
from connectors.salesforce.settings import IdentityFields
from sandbox.salesforce.api import SalesforceSandbox
from sandbox.salesforce.soql import query as soql
from syncd.model import CrmRef, IdentityKey, PeopleQuery, PersonRecord, Profile
from syncd.resolver.evidence import name_search

X = IdentityFields(user_id="X_User_Id__c", handle="X_Handle__c")
HOSTILE = [
    "' OR Name != '",
    "o'brien",
    "back\\slash\\",
    "\\' OR Id != null OR Name = \\'",
    "100%",
    "%",
    "_",
    "a_b",
    "%%' OR '%' = '",
    "select id from contact where name like '%'",
    "NULL",
    '"double" quotes',
    "new\nline\ttab",
    "\u202eمرحبا\u202c abc",
    "😀🎉 fan",
    "x" * 1000,
    "名" * 1000,
]


def soql_counter(sb: SalesforceSandbox) -> list[str]:
    """Every SOQL query the stand-in runs from now on, composite subrequests included."""
    seen: list[str] = []
    sb.on_request("query", lambda req: seen.append(req.query.get("q") or ""))
    return seen


def calls(crm: SalesforceCrm, run: Any) -> tuple[Any, int]:
    before = crm.api_calls
    result = run()
    return result, crm.api_calls - before


def contact(sb: SalesforceSandbox, last: str, **fields: Any) -> str:
    return sb.insert("Contact", {"LastName": last, **fields})


def persona(sb: SalesforceSandbox, parent: str, name: str, external: str | None, **kw: Any) -> str:
    values = {"Name": name, "Provider": "Twitter", "ParentId": parent, "ExternalId": external}
    return sb.insert("SocialPersona", {**values, **kw})


# -- personas ----------------------------------------------------------------------------------


def test_personas_are_off_by_default_and_make_no_call(sb: SalesforceSandbox) -> None:
    jack = contact(sb, "Dorsey")
    persona(sb, jack, "jack", "12")
    client = crm(sb)
    assert client.personas([key("12", "jack")]) == {}
    assert client.api_calls == 0 and client.logins == 0 and sb.api_calls == 0


def test_personas_by_external_id_then_handle(sb: SalesforceSandbox) -> None:
    jack = contact(sb, "Dorsey", FirstName="Jack")
    twin = contact(sb, "Twin")
    ev = sb.insert("Lead", {"LastName": "Williams", "Company": "Obvious"})
    account = sb.insert("Account", {"Name": "Acme"})
    persona(sb, twin, "jack", "12")
    persona(sb, jack, "jack", "12", IsDefault=True)
    persona(sb, jack, "jack_again", "12")  # a second persona of the same person: one ref
    persona(sb, ev, "@EV", None)  # no user id recorded: matched by handle
    persona(sb, account, "acme", "14")  # an Account is no person
    persona(sb, jack, "renamed", "77")  # another user who had the handle: not by name
    persona(sb, twin, "biz", "13", Provider="Facebook")  # another network's id space
    found, n = calls(
        client := crm(sb, social_personas=True),
        lambda: client.personas(
            [key("12", "nobody"), key("99", "ev"), key("14"), key("88", "renamed"), key("13")]
        ),
    )
    assert found == {
        key("12", "nobody"): [
            CrmRef("Contact", jack, "Jack Dorsey"),
            CrmRef("Contact", twin, "Twin"),
        ],
        key("99", "ev"): [CrmRef("Lead", ev, "Williams")],
    }
    assert n == 2  # the personas, and the user id held by the one parent matched by handle
    only_contacts = crm(sb, social_personas=True, person_objects=["Contact"])
    assert only_contacts.personas([key("99", "ev")]) == {}


def test_a_persona_matched_by_handle_never_names_a_person_holding_another_user_id(
    sb: SalesforceSandbox,
) -> None:
    """X gives a released handle to a new account: Jane's persona names only the handle,
    her Contact holds her user id (111). The newcomer (999) taking @janedoe is not her."""
    jane = contact(sb, "Doe", FirstName="Jane", X_User_Id__c="111")
    persona(sb, jane, "janedoe", None)
    client = crm(sb, social_personas=True)
    assert client.personas([key("999", "janedoe")]) == {}
    assert client.personas([key("111", "janedoe")]) == {
        key("111", "janedoe"): [CrmRef("Contact", jane, "Jane Doe")]
    }


def test_personas_batch_200_keys_per_query(sb: SalesforceSandbox) -> None:
    people = [contact(sb, f"P{i}") for i in range(0, 450, 50)]
    for i, pid in zip(range(0, 450, 50), people, strict=True):
        persona(sb, pid, f"user{i}", str(1000 + i))
    keys = [key(str(1000 + i), f"user{i}") for i in range(450)]
    found, n = calls(client := crm(sb, social_personas=True), lambda: client.personas(keys))
    assert n == math.ceil(450 / 200)
    assert {k.user_id for k in found} == {str(1000 + i) for i in range(0, 450, 50)}


# -- find_people -------------------------------------------------------------------------------


@pytest.fixture
def people(sb: SalesforceSandbox) -> dict[str, str]:
    acme = sb.insert("Account", {"Name": "Acme", "Website": "https://www.acme.com/about"})
    other = sb.insert("Account", {"Name": "Not Acme", "Website": "notacme.com"})
    return {
        "ann": contact(
            sb, "Lee", FirstName="Ann", Email="Ann.Lee@Gmail.com", Phone="+1 (415) 555-0134",
            MailingCity="Oakland", AccountId=acme, X_User_Id__c="12", X_Handle__c="@annlee",
        ),
        "bob": contact(sb, "Bobson", FirstName="Robert", MobilePhone="020 7946 0958"),
        "near": contact(sb, "Near", Phone="5550 1234", AccountId=other),
        "lea": sb.insert(
            "Lead",
            {
                "LastName": "Stone", "FirstName": "Biz", "Company": "Obvious",
                "City": "SF", "Website": "http://obvious.io", "Email": "biz@obvious.io",
                "MobilePhone": "415.555.0199", "X_Handle__c": "biz",
            },
        ),
        "gone": sb.insert(
            "Lead", {"LastName": "Stoner", "Company": "Old", "IsConverted": True}
        ),
    }  # fmt: skip


def ids(found: Any) -> set[str]:
    return {p.ref.id for p in found}


def test_find_people_by_each_kind_of_value(sb: SalesforceSandbox, people: dict[str, str]) -> None:
    client = crm(sb)
    assert client.find_people(PeopleQuery()) == [] and client.api_calls == 0
    (ann,) = client.find_people(PeopleQuery(emails=frozenset({"ann.lee@gmail.com"})))
    assert ann == PersonRecord(
        CrmRef("Contact", people["ann"], "Ann Lee"), "Ann", "Lee", "Ann.Lee@Gmail.com",
        "+1 (415) 555-0134", "Oakland", "Acme", "https://www.acme.com/about", "12", "annlee",
    )  # fmt: skip
    (lea,) = client.find_people(PeopleQuery(phones=frozenset({"4155550199"})))
    assert lea == PersonRecord(
        CrmRef("Lead", people["lea"], "Biz Stone"), "Biz", "Stone", "biz@obvious.io",
        "415.555.0199", "SF", "Obvious", "http://obvious.io", None, "biz",
    )  # fmt: skip
    # Digits compare whatever the punctuation, national against international form; a
    # record whose digits merely contain the number's in order is not a match.
    phones = frozenset({"14155550134", "442079460958", "5551234"})
    assert ids(client.find_people(PeopleQuery(phones=phones))) == {people["ann"], people["bob"]}
    prefixes = frozenset({"bob", "sto"})  # last names; a converted Lead is never a candidate
    assert ids(client.find_people(PeopleQuery(name_prefixes=prefixes))) == {
        people["bob"], people["lea"],
    }  # fmt: skip
    assert ids(client.find_people(PeopleQuery(name_prefixes=frozenset({"rob"})))) == {people["bob"]}
    domains = frozenset({"acme.com", "obvious.io", "gmail.com"})
    assert ids(client.find_people(PeopleQuery(domains=domains))) == {people["ann"], people["lea"]}
    assert client.find_people(PeopleQuery(domains=frozenset({"cme.com"}))) == []


def test_find_people_by_record_id(sb: SalesforceSandbox, people: dict[str, str]) -> None:
    """How an admin links by hand: the id as typed (15 or 18 characters), each id asked only
    of the object its key prefix names; a converted Lead or a non-id is never found."""
    client, queries = crm(sb), soql_counter(sb)
    wanted = frozenset({people["ann"][:15], people["lea"], people["gone"], "x' OR Id != '"})
    found, n = calls(client, lambda: client.find_people(PeopleQuery(ids=wanted)))
    assert ids(found) == {people["ann"], people["lea"]}
    assert (n, len(queries)) == (1, 2)  # one query per object, in one composite call
    contact_only = frozenset({people["bob"]})
    found, n = calls(client, lambda: client.find_people(PeopleQuery(ids=contact_only)))
    assert ids(found) == {people["bob"]} and len(queries) == 3  # no Lead query for a Contact id


def test_find_people_batches_450_values(sb: SalesforceSandbox, people: dict[str, str]) -> None:
    """Values are packed as tightly as a statement allows: never more than a query per 200
    values per object, and up to five queries to a call."""
    queries = soql_counter(sb)
    emails = frozenset({f"someone{i}@example.com" for i in range(449)} | {"biz@obvious.io"})
    found, n = calls(client := crm(sb), lambda: client.find_people(PeopleQuery(emails=emails)))
    assert ids(found) == {people["lea"]}
    assert (n, len(queries)) == (1, 2)  # Contact and Lead, in one call
    many = PeopleQuery(emails=frozenset(f"somebody.else.{i}@example.com" for i in range(2000)))
    chunks = len(list(people_queries("Contact", X, many)))
    found, n = calls(client, lambda: client.find_people(many))
    assert 1 < chunks <= math.ceil(2000 / 200) and n == math.ceil(2 * chunks / 5)
    only = crm(sb, person_objects=["Lead"])
    mixed = PeopleQuery(
        emails=frozenset(f"e{i}@example.com" for i in range(150)),
        phones=frozenset(f"1415555{i:04d}" for i in range(150)),
        name_prefixes=frozenset(f"nm{i}" for i in range(150)),
    )
    del queries[:]
    only.find_people(mixed)
    assert len(queries) <= math.ceil(450 / 200)
    prefixes = PeopleQuery(name_prefixes=frozenset(f"nam{i}" for i in range(450)))
    assert len(list(people_queries("Contact", X, prefixes))) <= math.ceil(450 / 200)


def test_find_people_statements_stay_within_budget() -> None:
    query = PeopleQuery(name_prefixes=frozenset(f"{'n' * 200}{i}" for i in range(300)))
    texts = list(people_queries("Contact", X, query))
    assert len(texts) > 1
    for text in texts:
        assert len(text) < STATEMENT_BUDGET + 1000
        assert text.endswith(f"LIMIT {CANDIDATE_LIMIT}")


def test_find_people_warns_at_the_row_cap(
    sb: SalesforceSandbox, caplog: pytest.LogCaptureFixture
) -> None:
    for i in range(CANDIDATE_LIMIT + 5):
        contact(sb, f"Smith{i}")
    with caplog.at_level(logging.WARNING, "connectors.salesforce"):
        found = crm(sb, person_objects=["Contact"]).find_people(
            PeopleQuery(name_prefixes=frozenset({"smi"}))
        )
    assert len(found) == CANDIDATE_LIMIT and "the cap" in caplog.text


def names(*pairs: tuple[str, str]) -> PeopleQuery:
    return PeopleQuery(names=frozenset(pairs))


def test_find_people_by_name_pairs(sb: SalesforceSandbox) -> None:
    """Both names at once: a J. Smith, not every Smith nor every John."""
    want = {
        "john": contact(sb, "Smith", FirstName="John"),
        "jane": contact(sb, "SMITHERS", FirstName="jane"),
        "zoe": contact(sb, "Müller", FirstName="Zoë"),
        "zoe2": contact(sb, "Muller", FirstName="Zoe"),
    }
    contact(sb, "Smith", FirstName="Mary")  # the last name alone
    contact(sb, "Stone", FirstName="John")  # the first name alone
    contact(sb, "Jones", FirstName="Smith")  # the two swapped
    contact(sb, "Smith")  # no first name
    sb.insert("Lead", {"FirstName": "Jo", "LastName": "Smith", "Company": "X", "IsConverted": True})
    client = crm(sb)
    assert ids(client.find_people(names(("j", "smi")))) == {want["john"], want["jane"]}
    assert ids(client.find_people(names(("joh", "sm"), ("mar", "x")))) == {want["john"]}
    assert ids(client.find_people(names(("j", "")))) == set()  # a half pair finds nobody
    # LIKE ignores case, not accents: the author's name as typed finds the accented record,
    # its folded form the plain one; the resolver sends both.
    assert ids(client.find_people(names(("z", "mul")))) == {want["zoe2"]}
    assert ids(client.find_people(names(("z", "mül")))) == {want["zoe"]}
    assert ids(client.find_people(PeopleQuery(names=frozenset(name_search("ZOË Müller")[1])))) == {
        want["zoe"], want["zoe2"],
    }  # fmt: skip


def test_rows_are_checked_against_pairs_as_the_resolver_folds_names() -> None:
    row = {"Id": "0035e00000AbCdEAAA", "FirstName": "ZOË", "LastName": "Müller-Lüdenscheidt"}
    for pair in (("z", "mul"), ("zoe", "m"), ("Zoë", "MÜL")):
        assert person_record("Contact", X, row, names(pair)) is not None
    for pair in (("z", "lud"), ("m", "zoe"), ("zoex", "m")):
        assert person_record("Contact", X, row, names(pair)) is None
    query = names(("z", "mul"))
    assert prepared(query) is prepared(PeopleQuery(names=frozenset({("z", "mul")})))


def _words(text: str) -> list[str]:
    return text.split()


FIRST_NAMES = _words("""James Mary John Linda Robert Patricia Michael Jennifer David Susan William
Sarah Richard Karen Thomas Nancy Daniel Lisa Mark Betty Paul Sandra Steven Ashley Andrew Emily
Kevin Donna Brian Michelle George Carol Omar Priya Wei Elif Kwame Ines Lars Yara Mateo Aiko
Sofia Hamza Chiara Dmitri Nadia Tariq Giulia Jorge Leila Kenji Amara Bilal Camille Farah Ingrid
Luca Mei Rahul Rosa Yusuf""")


def _surname(rng: random.Random) -> str:
    """Last names vary far more than first names: made up, a few thousand kinds."""
    onset, vowel = "bcdfghjklmnprstvwz", "aeiou"
    end = rng.choice(("", "n", "r", "s", "ck", "lle", "sen"))
    return "".join((*(rng.choice(onset) + rng.choice(vowel) for _ in "12"), end)).capitalize()


def test_a_batch_of_names_stays_selective_in_a_big_org(
    sb: SalesforceSandbox, caplog: pytest.LogCaptureFixture
) -> None:
    """200 authors' names over 3,000 Contacts: the first names' prefixes alone (any first or
    last name starting so) match nearly the whole org and the query is cut at the cap; pairs
    read a few rows each, and the e-mail asked in the same query still finds its person."""
    rng = random.Random(5)
    people = [(rng.choice(FIRST_NAMES), _surname(rng)) for _ in range(3000)]
    by_name: dict[tuple[str, str], set[str]] = {}
    for i, name in enumerate(people):
        record = contact(sb, name[1], FirstName=name[0], Email=f"p{i}@example.com")
        by_name.setdefault(name, set()).add(record)
    target = contact(sb, "Okafor", FirstName="Ada", Email="ada@okafor.example")
    authors = [rng.choice(people) for _ in range(200)]
    pairs = PeopleQuery(
        emails=frozenset({"ada@okafor.example"}),
        names=frozenset(p for a in authors for p in name_search(" ".join(a))[1]),
    )
    client = crm(sb, person_objects=["Contact"])
    rows = [len(client.query(q)) for q in people_queries("Contact", X, pairs)]
    assert len(rows) <= 3 and max(rows) < CANDIDATE_LIMIT // 2, rows  # 401 values
    with caplog.at_level(logging.WARNING, "connectors.salesforce"):
        found = ids(client.find_people(pairs))
    assert "the cap" not in caplog.text
    assert target in found and set().union(*(by_name[a] for a in authors)) <= found
    # The same authors by 3-letter prefixes, as before: a query fills the cap and is asked
    # again in halves, so nobody is cut off (at the price of more queries).
    prefixes = PeopleQuery(
        emails=pairs.emails,
        name_prefixes=frozenset(w[:3].lower() for a in authors for w in a),
    )
    packed = [len(client.query(q)) for q in people_queries("Contact", X, prefixes)]
    assert max(packed) >= CANDIDATE_LIMIT
    with caplog.at_level(logging.WARNING, "connectors.salesforce"):
        found, n = calls(client, lambda: ids(client.find_people(prefixes)))
    assert n > len(packed) and "the cap" not in caplog.text
    assert target in found and set().union(*(by_name[a] for a in authors)) <= found


# -- survivors ---------------------------------------------------------------------------------


def test_survivors_follow_merges_and_conversions(sb: SalesforceSandbox) -> None:
    a, b, c, d, e, f, g = (contact(sb, name) for name in "ABCDEFG")
    sb.merge("Contact", a, [b])
    sb.merge("Contact", d, [c])
    sb.merge("Contact", e, [d])  # c → d → e
    sb.delete("Contact", f)
    sb.delete("Contact", g, purge=True)
    kept = contact(sb, "Kept")
    lead = sb.insert("Lead", {"LastName": "L", "Company": "X"})
    converted = sb.insert(
        "Lead", {"LastName": "C", "Company": "X", "IsConverted": True, "ConvertedContactId": kept}
    )
    refs = [CrmRef("Contact", i) for i in (a, b[:15], c, f, g)] + [
        CrmRef("Lead", lead),
        CrmRef("Lead", converted),
        CrmRef("Contact", "not-an-id"),
    ]
    found, n = calls(client := crm(sb), lambda: client.survivors(refs))
    assert found == {
        CrmRef("Contact", b[:15]): CrmRef("Contact", a, "A"),
        CrmRef("Contact", c): CrmRef("Contact", e, "E"),
        CrmRef("Contact", f): None,
        CrmRef("Contact", g): None,
        CrmRef("Lead", converted): CrmRef("Contact", kept, "Kept"),
        CrmRef("Contact", "not-an-id"): None,
    }
    assert n == 4  # hop 0: Contacts, Leads; hop 1: Contacts (a, d, kept); hop 2: e
    assert [r["Id"] for r in sb.records("Contact")] == [a, e, kept]


def test_survivors_batch_200_ids_per_query(sb: SalesforceSandbox) -> None:
    refs = [CrmRef("Contact", contact(sb, f"P{i}")) for i in range(450)]
    found, n = calls(client := crm(sb), lambda: client.survivors(refs))
    assert found == {} and n == math.ceil(450 / 200)
    assert client.survivors([]) == {}


def test_merge_shows_in_query_all_only(sb: SalesforceSandbox) -> None:
    a, b = contact(sb, "A"), contact(sb, "B")
    sb.merge("Contact", a, [b])
    client = crm(sb)
    soql_text = f"SELECT Id, IsDeleted, MasterRecordId FROM Contact WHERE Id = '{b}'"
    assert client.query(soql_text) == []
    (row,) = client.query(soql_text, include_archived=True)
    assert (row["IsDeleted"], row["MasterRecordId"]) == (True, a)
    with pytest.raises(ValueError):
        sb.merge("Contact", a, [b])  # b is gone already
    with pytest.raises(ValueError):
        sb.merge("Task", a, [b])


# -- upsert_lead -------------------------------------------------------------------------------


def test_upsert_lead_twice_is_one_lead(sb: SalesforceSandbox) -> None:
    client = crm(sb)
    profile = Profile(
        key=IdentityKey("x", "4242", "@newbie"),
        display_name="Ada  King Lovelace",
        description="Engines. " * 5000,
        url="https://ada.example",
    )
    first, second = client.upsert_lead(profile), client.upsert_lead(profile)
    assert first == second == CrmRef("Lead", first.id, "Ada King Lovelace")
    (lead,) = sb.records("Lead")
    assert lead["Id"] == first.id
    assert (lead["FirstName"], lead["LastName"], lead["Company"], lead["LeadSource"]) == (
        "Ada King", "Lovelace", "Unknown (from social)", "Social",
    )  # fmt: skip
    assert (lead["X_User_Id__c"], lead["X_Handle__c"], lead["Website"]) == (
        "4242", "newbie", "https://ada.example",
    )  # fmt: skip
    assert len(lead["Description"]) <= 32_000
    assert client.lookup([key("4242")])[key("4242")].ref.id == first.id


def test_upsert_lead_without_a_name_uses_the_handle(sb: SalesforceSandbox) -> None:
    client = crm(sb, lead_company="Prospects", lead_source="X")
    ref = client.upsert_lead(Profile(key=IdentityKey("x", "7", "quiet")))
    (lead,) = sb.records("Lead")
    assert ref == CrmRef("Lead", lead["Id"], "quiet")
    assert (lead["FirstName"], lead["LastName"], lead["Company"], lead["LeadSource"]) == (
        None, "quiet", "Prospects", "X",
    )  # fmt: skip
    nameless = client.upsert_lead(Profile(key=IdentityKey("x", "8")))
    assert nameless.name == "8"


# -- injection ---------------------------------------------------------------------------------


@pytest.mark.parametrize("hostile", HOSTILE, ids=lambda h: repr(h[:20]))
def test_hostile_strings_through_every_call(sb: SalesforceSandbox, hostile: str) -> None:
    decoy = hostile.replace("%", "zz").replace("_", "q").replace("'", "").replace("\\", "")
    decoys = ["Alice", "Bob"] + ([decoy, decoy + "x"] if decoy != hostile else [])
    for name in decoys:
        contact(sb, name, FirstName=name, Email=f"{name.lower()}@example.com")
    target = contact(
        sb, hostile, FirstName=hostile, Email=f"{hostile.lower()}@example.com",
        X_Handle__c=hostile,
    )  # fmt: skip
    persona(sb, target, hostile, None)
    client = crm(sb, social_personas=True)
    # A value longer than any Salesforce text field (the stand-in stored it anyway) can match
    # no real record and, URL-encoded, could pass the 16 KB a call may carry: not asked.
    asked = {target} if len(f"@{hostile}@example.com") <= MAX_VALUE else set()
    # lookup: by handle the exact record; the same string as a user id finds nothing
    found = client.lookup([key("999", hostile)])
    assert {m.ref.id for m in found.values()} == asked
    assert client.lookup([key(hostile)]) == {}
    # personas: the exact one
    personas = client.personas([key("999", hostile)])
    assert {r.id for r in personas.get(key("999", hostile), [])} == asked
    assert client.personas([key(hostile, "nobody")]) == {}
    # find_people: a prefix, an e-mail and a domain made of it match it alone (or nothing)
    wanted = hostile.lower()
    assert ids(client.find_people(PeopleQuery(name_prefixes=frozenset({wanted})))) == asked
    assert ids(client.find_people(names((wanted, wanted)))) == asked
    assert client.find_people(names((wanted, "zz"), ("zz", wanted))) == []
    by_email = PeopleQuery(emails=frozenset({f"{wanted}@example.com"}))
    assert ids(client.find_people(by_email)) == asked
    assert client.find_people(PeopleQuery(domains=frozenset({wanted}))) == []
    # upsert_lead: stored verbatim (cut to the field's length), once
    profile = Profile(key=IdentityKey("x", "31337", hostile), display_name=hostile)
    assert client.upsert_lead(profile) == client.upsert_lead(profile)
    (lead,) = sb.records("Lead")
    assert lead["X_Handle__c"] == lead_fields(profile, client.settings, X)["X_Handle__c"]
    assert lead["LastName"] == lead_fields(profile, client.settings, X)["LastName"]


def _comparisons(cond: soql.Condition | None) -> list[soql.Comparison]:
    if isinstance(cond, soql.BoolOp):
        return [c for part in cond.operands for c in _comparisons(part)]
    if isinstance(cond, soql.Not):
        return _comparisons(cond.operand)
    return [cond] if cond is not None else []


@pytest.mark.parametrize("hostile", HOSTILE, ids=lambda h: repr(h[:20]))
def test_generated_soql_keeps_each_value_one_literal(hostile: str) -> None:
    """Parsed back, each query has exactly the comparisons it was built with, and each
    literal is the value itself (a LIKE pattern: the value, its wildcards literal). (A value
    longer than a text field holds is not asked at all: see the test above.)"""
    hostile = hostile[: MAX_VALUE - 1]  # "@" + it still fits
    text = persona_soql("x", [key(hostile, hostile)])
    bare = hostile.strip().removeprefix("@")
    values = [v.value for c in _comparisons(soql.parse(text).where) for v in c.values]
    assert values == ["Twitter", hostile, bare, f"@{bare}"]
    query = PeopleQuery(
        emails=frozenset({hostile}), name_prefixes=frozenset({hostile}),
        domains=frozenset({hostile}),
    )  # fmt: skip
    # (a value of 1,000 CJK characters is 9 KB of URL: its own query)
    texts = list(people_queries("Lead", X, query))
    comparisons = [c for t in texts for c in _comparisons(soql.parse(t).where)]
    assert [c.field for c in comparisons if c.field == "IsConverted"] == ["IsConverted"] * len(
        texts
    )
    comparisons = [c for c in comparisons if c.field != "IsConverted"]
    assert [c.op for c in comparisons] == ["IN", "LIKE", "LIKE", "LIKE", "LIKE"]
    assert [v.value for v in comparisons[0].values] == [hostile]
    first, last, email, site = (c.values[0].like for c in comparisons[1:])
    assert first and last and email and site
    wild = hostile.replace("%", "zz").replace("_", "q")
    for name in (first, last):
        assert name.fullmatch(hostile + "tail") and not name.fullmatch("z" + hostile)
        assert wild == hostile or not name.fullmatch(wild)
    assert email.fullmatch(f"me@{hostile}") and not email.fullmatch(f"me@{hostile}.evil")
    assert site.fullmatch(f"https://{hostile}/") and (wild == hostile or not site.fullmatch(wild))
    rid = id18("0035e00000AbCdE") or ""
    assert soql.parse(survivor_soql("Contact", [rid])).where is not None


def _ands(cond: soql.Condition | None) -> list[soql.BoolOp]:
    if isinstance(cond, soql.BoolOp):
        inner = [a for part in cond.operands for a in _ands(part)]
        return [cond, *inner] if cond.op == "AND" else inner
    return []


@pytest.mark.parametrize("hostile", HOSTILE, ids=lambda h: repr(h[:20]))
def test_a_name_pair_is_one_and_of_two_literal_prefixes(hostile: str) -> None:
    hostile = hostile[:MAX_VALUE]
    texts = list(people_queries("Contact", X, names((hostile, hostile), ("j", "smi"))))
    ands = [a for t in texts for a in _ands(soql.parse(t).where)]
    assert len(ands) == 2
    patterns = []
    for cond in ands:
        first, last = _comparisons(cond)
        assert (first.field, first.op, last.field, last.op) == (
            "FirstName", "LIKE", "LastName", "LIKE",
        )  # fmt: skip
        patterns.append((first.values[0].like, last.values[0].like))
    (theirs,) = [p for p in patterns if p[0] and p[0].fullmatch("John")]
    assert theirs[1] and theirs[1].fullmatch("Smithers") and not theirs[1].fullmatch("Jones")
    wild = hostile.replace("%", "zz").replace("_", "q")
    (ours,) = [p for p in patterns if p is not theirs]
    for pattern in ours:
        assert pattern and pattern.fullmatch(hostile + "tail")
        assert not pattern.fullmatch("z" + hostile)
        assert wild == hostile or not pattern.fullmatch(wild)


# -- what a batch's search costs ---------------------------------------------------------------
def _lower_cap(monkeypatch: pytest.MonkeyPatch, cap: int) -> None:
    from connectors.salesforce.identity import identity, search

    monkeypatch.setattr(identity, "CANDIDATE_LIMIT", cap)
    monkeypatch.setattr(search, "CANDIDATE_LIMIT", cap)


def test_a_batch_is_sized_by_the_rows_earlier_values_found(
    sb: SalesforceSandbox, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Each surname prefix finds three Contacts: a first batch of 20 fills the (lowered) cap
    of 40 rows and is asked again in halves; a later batch like it is spread over queries
    that stay under the cap from the start: one call, and every candidate still found."""
    _lower_cap(monkeypatch, 40)
    client = crm(sb, person_objects=["Contact"])
    prefixes = [f"q{a}{b}" for a in "aeiou" for b in "bdgklmnprt"][:40]
    for p in prefixes:
        for n in range(3):
            contact(sb, f"{p.capitalize()}son{n}")

    def batch(part: list[str]) -> PeopleQuery:
        return PeopleQuery(name_prefixes=frozenset(part))

    first, first_calls = calls(client, lambda: client.find_people(batch(prefixes[:20])))
    later, later_calls = calls(client, lambda: client.find_people(batch(prefixes[20:])))
    assert (len(first), len(later)) == (60, 60)
    assert first_calls == 2  # the whole batch filled the cap: its halves, in one more call
    assert later_calls == 1


def test_a_crowded_domain_is_asked_once_then_left_out_for_a_day(
    sb: SalesforceSandbox, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    _lower_cap(monkeypatch, 10)
    client = crm(sb, person_objects=["Contact"])
    for n in range(12):
        contact(sb, f"Worker{n}", Email=f"w{n}@bigcorp.example")
    alice = contact(sb, "Alice", Email="alice@bigcorp.example")
    now = [1000.0]
    client.identity.clock = lambda: now[0]
    seen = soql_counter(sb)

    def asked() -> int:
        return sum("bigcorp.example%'" in q for q in seen)

    query = PeopleQuery(
        emails=frozenset({"alice@bigcorp.example"}), domains=frozenset({"bigcorp.example"})
    )
    with caplog.at_level(logging.WARNING, "connectors.salesforce"):
        client.find_people(query)
    assert asked() == 2 and "left out of candidate searches" in caplog.text  # then alone
    again = client.find_people(query)
    assert asked() == 2 and [p.ref.id for p in again] == [alice]  # the e-mail still finds her
    now[0] += 24 * 3600
    client.find_people(query)
    assert asked() == 4  # a day on, asked again (the CRM may have changed)
