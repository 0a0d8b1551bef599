"""The Salesforce stand-in's query indexes never change an answer, only the work.

Every query is answered twice: from the candidates the index plan names, and by matching
every record. The records include what the index treats specially: non-ASCII names, empty
and missing values, deleted records, and writes after an index was built.
"""

from __future__ import annotations

import random

import pytest

from sandbox.salesforce.api import SalesforceSandbox
from sandbox.salesforce.soql import index as soql_index
from sandbox.salesforce.soql import query as soql
from sandbox.salesforce.soql.bind import bind
from sandbox.salesforce.soql.evaluate import run
from sandbox.salesforce.soql.paths import PathSchema, paths_of, with_paths

FIRST = ["Ada", "ada", "Ben", "Chloé", "Émile", "Jo", "JO", "Straße", "Zoë", "O'Neil", None]
LAST = ["Smith", "smith", "Smithers", "Scott", "Ng", "Østby", "Lindqvist", "50%_off", ""]

QUERIES = [
    "SELECT Id FROM Contact WHERE LastName LIKE 'smi%'",
    "SELECT Id FROM Contact WHERE LastName LIKE 'SMITH'",
    "SELECT Id FROM Contact WHERE LastName LIKE '%mith'",
    "SELECT Id FROM Contact WHERE LastName LIKE 's_ith%'",
    "SELECT Id FROM Contact WHERE LastName LIKE '50\\%%'",
    "SELECT Id FROM Contact WHERE LastName LIKE 'Ø%'",
    "SELECT Id FROM Contact WHERE FirstName = 'ADA'",
    "SELECT Id FROM Contact WHERE FirstName = 'straße'",
    "SELECT Id FROM Contact WHERE FirstName IN ('jo', 'Ben', 'zoë')",
    "SELECT Id FROM Contact WHERE (FirstName LIKE 'j%' AND (LastName LIKE 'smi%' "
    "OR LastName LIKE 'sco%')) OR Email IN ('a1@example.com', 'A2@EXAMPLE.COM')",
    "SELECT Id FROM Contact WHERE FirstName LIKE 'a%' AND NOT LastName LIKE 's%'",
    "SELECT Id FROM Contact WHERE FirstName LIKE 'a%' OR LastName != 'Ng'",
    "SELECT Id FROM Contact WHERE Email LIKE '%@example.com' AND LastName = 'ng'",
    "SELECT Id FROM Contact WHERE Account.Name LIKE 'acme%' AND FirstName LIKE 'b%'",
    # All-ASCII values: the plan is exact, and no row is matched again.
    "SELECT Id FROM Contact WHERE Email LIKE 'A1%' OR Email IN ('a2@example.com', 'x@y.z')",
    "SELECT Id FROM Contact WHERE Email LIKE 'a1%' AND Email LIKE '%5@example.com'",
]


@pytest.fixture
def org() -> SalesforceSandbox:
    sf = SalesforceSandbox()
    rng = random.Random(3)
    acme = sf.insert("Account", {"Name": "Acme"})
    for i in range(soql_index.MIN_RECORDS + 150):
        fields = {"LastName": rng.choice(LAST) or "X", "AccountId": acme}
        if (first := rng.choice(FIRST)) is not None:
            fields["FirstName"] = first
        if i % 3:
            fields["Email"] = f"a{i}@example.com"
        sf.insert("Contact", fields)
    return sf


def _both(sf: SalesforceSandbox, text: str) -> tuple[list[str], list[str]]:
    store = sf.store
    query = bind(soql.parse(text), PathSchema(store))
    table = store.table("Contact")
    assert table is not None

    def answer(rows: list[dict[str, object]]) -> list[str]:
        found = run(query, with_paths(store, table, rows, paths_of(query)), sf.clock())
        return [str(r["Id"]) for r in found]

    rows, matched = store.scan(table, False, query.where)
    if matched:  # the plan says every row matches: check that claim too
        assert answer(rows) == [str(r["Id"]) for r in rows]
    indexed = answer(rows)
    everything = [store.view(table, r) for r in table.records.values() if not r["IsDeleted"]]
    return indexed, answer(everything)


@pytest.mark.parametrize("text", QUERIES)
def test_an_indexed_answer_is_the_scanned_answer(org: SalesforceSandbox, text: str) -> None:
    indexed, scanned = _both(org, text)
    assert indexed == scanned


def test_the_index_follows_writes_and_deletions(org: SalesforceSandbox) -> None:
    text = "SELECT Id FROM Contact WHERE LastName LIKE 'smi%'"
    before, _ = _both(org, text)
    assert before
    org.store.delete("Contact", before[0])
    added = org.insert("Contact", {"LastName": "Smithson"})
    org.update("Contact", before[1], {"LastName": "Jones"})
    after, scanned = _both(org, text)
    assert after == scanned
    assert before[0] not in after and before[1] not in after and added in after


def test_an_exact_plan_is_only_claimed_where_it_holds(org: SalesforceSandbox) -> None:
    table = org.store.table("Contact")
    assert table is not None

    def plan(where: str) -> soql_index.Found | None:
        return soql_index.candidates(
            soql.parse(f"SELECT Id FROM Contact WHERE {where}").where, table
        )

    assert (found := plan("Email LIKE 'a1%' OR Email = 'a2@example.com'")) and found.exact
    assert (found := plan("Email LIKE 'a1%' AND Email LIKE '%@example.com'")) and not found.exact
    assert (found := plan("Email LIKE 'a_%'")) and not found.exact
    assert (found := plan("LastName LIKE 'smi%'")) and not found.exact  # Østby is not indexed


def test_the_plan_narrows_what_is_read(org: SalesforceSandbox) -> None:
    table = org.store.table("Contact")
    assert table is not None
    query = soql.parse("SELECT Id FROM Contact WHERE FirstName LIKE 'b%' AND LastName = 'ng'")
    some = soql_index.candidates(query.where, table)
    assert some is not None and len(some.ids) < len(table.records) / 10
    assert soql_index.candidates(soql.parse("SELECT Id FROM Contact").where, table) is None
