"""What resolving authors of three networks costs in Salesforce calls, counted on the stand-in.

A fixed small world: customers on X (their user id on the Contact, so the local copy links
them) and on Mastodon and Bluesky (found by the e-mail their bio shows, as the benchmarks'
customers there are), every e-mail on one domain that more Contacts share than a candidate
query may return. The authors arrive interleaved, so each resolve round holds all three
networks. Counted: the API calls the whole resolve stage makes, by what they ask.
"""

from __future__ import annotations

import itertools
from collections import Counter
from datetime import UTC, datetime
from urllib.parse import parse_qs, urlsplit

import pytest
from support.salesforce import crm

from connectors.salesforce.identity import identity, search
from connectors.salesforce.settings import IDENTITY_DEFAULTS
from sandbox.salesforce.api import SalesforceSandbox
from sandbox.server import Request
from syncd.model import Account, Author, Cursor, Direction, Interaction, Page, Stream
from syncd.resolver.stage import ResolveSettings, run
from syncd.state import authors
from syncd.state.db import Database
from syncd.state.ingest import ingest_page

NETWORKS = ("x", "mastodon", "bluesky")
PER_NETWORK = 12  # customers on each network
CAP = 30  # candidate rows per query, lowered from 2,000 so a small world reaches it
DOMAIN = "customers.example"
FILLERS = 40  # more Contacts on the domain: with the customers' 24, over the cap
NOW = datetime(2026, 11, 2, 12, 0, tzinfo=UTC)


def _kind(soql: str) -> str:
    if "ORDER BY Id" in soql:
        return "keys copy"
    if "SystemModstamp" in soql:
        return "changes"
    return "candidates" if "LIKE" in soql or "Email IN" in soql else "other"


def _world(
    sb: SalesforceSandbox, db: Database
) -> dict[tuple[str, str], str]:  # (network, user id) → Contact id
    for obj in ("Contact", "Lead"):
        for name in (
            "Mastodon_Actor_URI__c",
            "Mastodon_Account__c",
            "Bluesky_DID__c",
            "Bluesky_Handle__c",
        ):
            sb.add_field(obj, name)
    for i in range(FILLERS):
        sb.insert("Contact", {"LastName": f"Filler{i}", "Email": f"filler{i}@{DOMAIN}"})
    expected: dict[tuple[str, str], str] = {}
    pages: dict[str, list[Author]] = {n: [] for n in NETWORKS}
    # Names no two people share a search prefix of: each name finds its own Contact alone.
    firsts = ("".join(p).capitalize() for p in itertools.product("bdgkmp", "aeiou", "lnrst"))
    lasts = ("".join(p).capitalize() for p in itertools.product("tvzsrn", "aeiou", "bdgkp"))
    for i, network in itertools.product(range(PER_NETWORK), NETWORKS):
        first, last = next(firsts), next(lasts)
        handle = f"{first}{last}".lower()
        user_id = {
            "x": str(1000 + i),
            "mastodon": f"https://social.example/users/{handle}",
            "bluesky": f"did:plc:{handle}{i:016d}",
        }[network]
        contact = {"FirstName": first, "LastName": last}
        bio = None
        if network == "x":
            contact["X_User_Id__c"] = user_id
        else:
            contact["Email"] = bio = f"{handle}@{DOMAIN}"
        expected[(network, user_id)] = sb.insert("Contact", contact)
        pages[network].append(Author(network, user_id, handle, f"{first} {last}", bio))
    serial = 0
    for half in (slice(0, PER_NETWORK // 2), slice(PER_NETWORK // 2, None)):
        for network in NETWORKS:  # a round of 18 authors holds 6 of each network
            people = tuple(pages[network][half])
            items = []
            for a in people:
                serial += 1
                url = f"https://{network}.example/{serial}"
                items.append(
                    Interaction(network, str(serial), "acme", Stream.MENTIONS, Direction.INBOUND,
                                a.user_id, a.user_id, "@acme hello", NOW, url)
                )  # fmt: skip
            page = Page(tuple(items), people, Cursor(since_id=str(serial)))
            with db.transaction() as conn:
                ingest_page(
                    conn, source=network, network=network, account=Account(network, "acme", "1"),
                    stream=Stream.MENTIONS, page=page, crms=["sf"], brand_ids={"1"}, now=NOW,
                )  # fmt: skip
    return expected


def test_three_networks_cost_one_search_per_round_and_a_crowded_domain_is_asked_once(
    db: Database, sb: SalesforceSandbox, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(identity, "CANDIDATE_LIMIT", CAP)
    monkeypatch.setattr(search, "CANDIDATE_LIMIT", CAP)
    expected = _world(sb, db)
    calls: Counter[str] = Counter()
    crowded = f"'%@{DOMAIN}'"
    domain_asked = 0

    def see(req: Request) -> None:
        nonlocal domain_asked
        if req.endpoint == "query":
            soql = req.query.get("q", "")
            domain_asked += crowded in soql and "FROM Contact" in soql
            if not req.subrequest:
                calls[_kind(soql)] += 1
        elif req.endpoint == "composite_request":
            subs = req.json()["compositeRequest"]
            asked = {_kind(parse_qs(urlsplit(s["url"]).query)["q"][0]) for s in subs}
            calls["+".join(sorted(asked))] += 1
        elif not req.subrequest and req.endpoint != "login":  # logins are free
            calls[f"{req.method} {req.endpoint}"] += 1

    sb.on_request("*", see)
    fields = {n: IDENTITY_DEFAULTS[n].model_dump() for n in NETWORKS}
    client = crm(sb, identity_fields=fields)
    settings = ResolveSettings(batch=3 * PER_NETWORK // 2)  # two rounds
    result = run(db, "sf", client, settings, lambda: NOW, lambda call: call(), lambda: False)

    with db.connect() as conn:
        linked = {
            (i.key.network, i.key.user_id): i.link.ref.id
            for i in authors.links_list(conn, "sf")
            if i.link is not None
        }
    assert linked == expected  # every customer, on every network, to their own Contact
    assert (result.linked, result.review, result.unmatched) == (3 * PER_NETWORK, 0, 0)
    # The copy (one page per object) and one change watch; then the X authors are linked
    # from the copy, and each round searches its Mastodon and Bluesky authors together, in
    # one composite call for Contacts and Leads: the first round's Contact query fills the
    # cap and is halved until the crowded domain stands alone (6 more calls); the second
    # round leaves the domain out of its Contact query: one call.
    assert calls == {"keys copy": 2, "changes": 1, "candidates": 8}, calls
    assert domain_asked == 7  # the first round's Contact queries alone
    assert sum(calls.values()) == sb.api_calls  # every call the org counts is seen here
