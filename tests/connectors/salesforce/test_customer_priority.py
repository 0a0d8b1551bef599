"""Priority by customer, never by channel (``[crm.priority]``), against the Salesforce stand-in.

The same complaint from a premier customer and a standard one, each on X and on Mastodon: the
premier's Tasks are High on both networks, the standard's Low on both, whatever network the
complaint came from. The tier is on the Contact's Account (``Account.CustomerPriority__c``,
the field new Developer Edition orgs ship with), read by the queries that find the person:
resolving and writing cost the same calls with the priority as without it. A tier changed on
the Account reaches the next record through the change watch, in the same one call a check.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
from sqlalchemy import select
from support.salesforce import crm, settings

from connectors.salesforce.settings import IDENTITY_DEFAULTS
from sandbox.salesforce.api import SalesforceSandbox
from sandbox.server import Request
from syncd.model import (
    Account,
    Author,
    Cursor,
    Direction,
    IdentityKey,
    Interaction,
    Page,
    Stream,
)
from syncd.pipeline import Pipeline, PipelineSettings
from syncd.resolver import on_file, review
from syncd.resolver.stage import ResolveSettings, check_wanted
from syncd.state.db import Database
from syncd.state.ingest import ingest_page
from syncd.state.tables import candidates

NETWORKS = ("x", "mastodon")
T0 = datetime(2026, 11, 2, 12, 0, tzinfo=UTC)
COMPLAINT = "@acme my order never arrived"
PRIORITY = {
    "field": "Account.CustomerPriority__c",
    "task": {"High": "High", "Medium": "Normal", "Low": "Low"},
    "case": {"High": "High", "Medium": "Medium", "Low": "Low"},
    "default": "Medium",
}


@dataclass
class Clock:
    now: datetime = T0

    def __call__(self) -> datetime:
        return self.now

    def tick(self) -> None:
        self.now += timedelta(minutes=1)


@dataclass
class Customer:
    name: str
    tier: str | None  # the Account's CustomerPriority__c
    account: str = ""
    contact: str = ""

    def user_id(self, network: str) -> str:
        handle = self.name.lower()
        return "1" + str(sum(map(ord, handle))) if network == "x" else (
            f"https://social.example/users/{handle}"
        )  # fmt: skip


def _world(sb: SalesforceSandbox, customers: list[Customer]) -> None:
    sb.add_field("Account", "CustomerPriority__c")
    for obj in ("Contact", "Lead"):
        for name in ("Mastodon_Actor_URI__c", "Mastodon_Account__c"):
            sb.add_field(obj, name)
    for c in customers:
        account: dict[str, Any] = {"Name": f"{c.name} Ltd"}
        if c.tier is not None:
            account["CustomerPriority__c"] = c.tier
        c.account = sb.insert("Account", account)
        c.contact = sb.insert(
            "Contact",
            {
                "LastName": c.name,
                "AccountId": c.account,
                "X_User_Id__c": c.user_id("x"),
                "Mastodon_Actor_URI__c": c.user_id("mastodon"),
            },
        )


def _complain(db: Database, customers: list[Customer], serial: int, clock: Clock) -> int:
    """The same complaint from every customer on every network; returns the last post id."""
    for network in NETWORKS:
        items, people = [], []
        for c in customers:
            serial += 1
            user_id = c.user_id(network)
            people.append(Author(network, user_id, c.name.lower(), c.name))
            items.append(
                Interaction(network, str(serial), "acme", Stream.MENTIONS, Direction.INBOUND,
                            user_id, user_id, COMPLAINT, clock(), f"https://{network}.example/{serial}")
            )  # fmt: skip
        with db.transaction() as conn:
            ingest_page(
                conn, source=network, network=network, account=Account(network, "acme", "1"),
                stream=Stream.MENTIONS, page=Page(tuple(items), tuple(people),
                Cursor(since_id=str(serial))), crms=["sf"], brand_ids={"1"}, now=clock(),
            )  # fmt: skip
    return serial


def _counted(sb: SalesforceSandbox) -> Counter[str]:
    """The API calls the org counts, by what they ask."""
    calls: Counter[str] = Counter()

    def kind(soql: str) -> str:
        if "ORDER BY Id" in soql:
            return "keys copy"
        return "changes" if "SystemModstamp" in soql else "lookup"

    def see(req: Request) -> None:
        if req.endpoint == "query" and not req.subrequest:
            calls[kind(req.query.get("q", ""))] += 1
        elif req.endpoint == "composite_request":
            subs = req.json()["compositeRequest"]
            calls[
                "+".join(sorted({kind(parse_qs(urlsplit(s["url"]).query)["q"][0]) for s in subs}))
            ] += 1
        elif not req.subrequest and req.endpoint != "login":
            calls[f"{req.method} {req.endpoint}"] += 1

    sb.on_request("*", see)
    return calls


def _pipeline(
    db: Database, sb: SalesforceSandbox, clock: Clock, check: timedelta, priority: Any
) -> Pipeline:
    fields = {n: IDENTITY_DEFAULTS[n].model_dump() for n in NETWORKS}
    client = crm(sb, identity_fields=fields, priority=priority)
    settings = PipelineSettings(resolve=ResolveSettings(crm_check=check))
    return Pipeline(db, "sf", client, settings, clock)


def _priorities(sb: SalesforceSandbox, after: int = 0) -> dict[tuple[str, str], str]:
    """Each Task's (WhoId, network) → Priority, for the posts after ``after``."""
    out = {}
    for t in sb.records("Task"):
        network, post = str(t["Social_Post_Id__c"]).split(":", 1)
        if int(post) > after:
            out[(t["WhoId"], network)] = t["Priority"]
    return out


PREMIER, STANDARD, UNMAPPED, EMPTY = (
    Customer("Premier", "High"), Customer("Standard", "Low"),
    Customer("Platinum", "Platinum"), Customer("Blank", None),
)  # fmt: skip


@pytest.mark.parametrize(
    "check", [timedelta(seconds=10), timedelta(0)], ids=["keys-copy", "look-ups"]
)
@pytest.mark.parametrize("priority", [PRIORITY, None], ids=["priority", "none"])
def test_the_same_complaint_gets_the_customers_priority_on_every_network_at_no_extra_call(
    db: Database, sb: SalesforceSandbox, check: timedelta, priority: Any
) -> None:
    customers = [
        Customer(c.name, c.tier) for c in (PREMIER, STANDARD, UNMAPPED, EMPTY)
    ]  # fresh ids per run
    premier, standard, unmapped, empty = customers
    clock = Clock()
    sb.clock = clock
    _world(sb, customers)
    _complain(db, customers, 0, clock)
    calls = _counted(sb)
    pipeline = _pipeline(db, sb, clock, check, priority)

    assert pipeline.resolve(check_crm=True).linked == len(customers) * len(NETWORKS)
    assert pipeline.deliver().written == len(customers) * len(NETWORKS)

    got = _priorities(sb)
    if priority is None:  # no mapping: the org's own default, the same for everyone
        assert set(got.values()) == {"Normal"}
    else:
        assert got == {
            **{(premier.contact, n): "High" for n in NETWORKS},
            **{(standard.contact, n): "Low" for n in NETWORKS},
            # A value the map does not name, and no value: the configured default's.
            **{(unmapped.contact, n): "Normal" for n in NETWORKS},
            **{(empty.contact, n): "Normal" for n in NETWORKS},
        }
    # The priority rides on the queries that find the person: the same calls either way.
    write = {"PATCH composite": 1}
    if check:  # the local copy (a page per object) and the change watch's start
        assert calls == {"keys copy": 2, "changes": 1, **write}, calls
        # Nobody is held: the daemon's cadence asks the CRM only to keep priorities current.
        assert check_wanted(db, "sf", clock()) is (priority is not None)
    else:  # one look-up per network, Contacts answering every author
        assert calls == {"lookup": 2, **write}, calls
    assert sum(calls.values()) == sb.api_calls


def test_a_tier_changed_on_the_account_is_the_next_records_priority_on_every_network(
    db: Database, sb: SalesforceSandbox
) -> None:
    customers = [Customer(c.name, c.tier) for c in (PREMIER, STANDARD)]
    premier, standard = customers
    clock = Clock()
    sb.clock = clock
    _world(sb, customers)
    last = _complain(db, customers, 0, clock)
    pipeline = _pipeline(db, sb, clock, timedelta(seconds=10), PRIORITY)
    pipeline.resolve(check_crm=True)
    pipeline.deliver()
    assert _priorities(sb)[(standard.contact, "mastodon")] == "Low"

    clock.tick()
    sb.update("Account", standard.account, {"CustomerPriority__c": "High"})  # upgraded
    sb.update("Account", premier.account, {"CustomerPriority__c": "Medium"})  # downgraded
    clock.tick()
    _complain(db, customers, last, clock)
    calls = _counted(sb)
    pipeline.resolve(check_crm=True)
    pipeline.deliver()

    assert _priorities(sb, after=last) == {
        **{(standard.contact, n): "High" for n in NETWORKS},
        **{(premier.contact, n): "Normal" for n in NETWORKS},
    }
    # The watch asks for changed Contacts, Leads and Contacts' Accounts in one call.
    assert calls == {"changes": 1, "PATCH composite": 1}, calls


def test_a_tier_held_on_the_contact_is_watched_on_the_contact(
    db: Database, sb: SalesforceSandbox
) -> None:
    sb.add_field("Contact", "Tier__c")
    customer = Customer("Solo", None)
    clock = Clock()
    sb.clock = clock
    _world(sb, [customer])
    sb.update("Contact", customer.contact, {"Tier__c": "Low"})
    last = _complain(db, [customer], 0, clock)
    pipeline = _pipeline(db, sb, clock, timedelta(seconds=10), {**PRIORITY, "field": "Tier__c"})
    pipeline.resolve(check_crm=True)
    pipeline.deliver()
    assert set(_priorities(sb).values()) == {"Low"}

    clock.tick()
    sb.update("Contact", customer.contact, {"Tier__c": "High"})
    clock.tick()
    _complain(db, [customer], last, clock)
    pipeline.resolve(check_crm=True)
    pipeline.deliver()
    assert set(_priorities(sb, after=last).values()) == {"High"}


def test_links_made_before_priorities_were_configured_get_them_from_the_next_keys_load(
    db: Database, sb: SalesforceSandbox
) -> None:
    customer = Customer("Early", "High")
    clock = Clock()
    sb.clock = clock
    _world(sb, [customer])
    last = _complain(db, [customer], 0, clock)
    before = _pipeline(db, sb, clock, timedelta(seconds=10), None)
    before.resolve(check_crm=True)
    before.deliver()
    assert set(_priorities(sb).values()) == {"Normal"}  # the org's default: none configured

    clock.tick()
    on_file.reload_soon(db, "sf", clock())  # as the daily reload does
    after = _pipeline(db, sb, clock, timedelta(seconds=10), PRIORITY)
    _complain(db, [customer], last, clock)
    after.resolve(check_crm=True)
    after.deliver()
    assert set(_priorities(sb, after=last).values()) == {"High"}


def test_a_customer_merged_into_a_premier_contact_takes_the_survivors_priority(
    db: Database, sb: SalesforceSandbox
) -> None:
    duplicate, premier = Customer("Dupe", "Low"), Customer("Kept", "High")
    clock = Clock()
    sb.clock = clock
    _world(sb, [duplicate, premier])
    last = _complain(db, [duplicate], 0, clock)
    pipeline = _pipeline(db, sb, clock, timedelta(0), PRIORITY)
    pipeline.resolve()
    pipeline.deliver()
    assert set(_priorities(sb).values()) == {"Low"}

    sb.merge("Contact", premier.contact, [duplicate.contact])  # a rep merges the duplicate
    _complain(db, [duplicate], last, clock)
    pipeline.resolve()
    pipeline.deliver()  # the Contact is gone: the link follows the merge, with its priority
    pipeline.deliver()
    assert _priorities(sb, after=last) == {(premier.contact, n): "High" for n in NETWORKS}


def test_a_messaging_end_users_contact_carries_its_accounts_tier(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("SF_PASSWORD", "sandbox-password")
    monkeypatch.setenv("SF_TOKEN", "sandbox-token")
    with SalesforceSandbox(messaging=True) as msb:
        msb.add_field("Account", "CustomerPriority__c")
        account = msb.insert("Account", {"Name": "Premier Ltd", "CustomerPriority__c": "High"})
        contact = msb.insert("Contact", {"LastName": "Doe", "AccountId": account})
        page = msb.insert(
            "MessagingChannel",
            {"DeveloperName": "Facebook_1", "MasterLabel": "Facebook", "MessageType": "Facebook",
             "MessagingPlatformKey": "1"},
        )  # fmt: skip
        msb.insert(
            "MessagingEndUser",
            {"Name": "7", "MessageType": "Facebook", "MessagingChannelId": page,
             "MessagingPlatformKey": "7", "ContactId": contact},
        )  # fmt: skip
        key = IdentityKey("facebook", "1:7", None)
        client = crm(msb, priority=PRIORITY).identity
        (ref,) = client.personas([key])[key]
        assert (ref.id, ref.priority) == (contact, "High")


def test_a_value_maps_to_task_and_case_priority_whatever_its_case(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("SF_PASSWORD", "p")
    monkeypatch.setenv("SF_TOKEN", "t")
    mapped = settings(priority={**PRIORITY, "lead_field": "Rating"})
    assert [mapped.task_priority(v) for v in ("high", " Low ", "MEDIUM")] == [
        "High",
        "Low",
        "Normal",
    ]
    assert [mapped.case_priority(v) for v in ("high", "Gold", None)] == ["High", "Medium", "Medium"]
    assert [mapped.priority_column(o) for o in ("Contact", "Lead", "Account")] == [
        "Account.CustomerPriority__c", "Rating", None,
    ]  # fmt: skip
    # Without a default, an unmapped value leaves the priority to the org; a map not given
    # sets nothing at all; without [crm.priority], nothing is read or set.
    bare = settings(priority={"task": {"Gold": "High"}})
    assert (bare.task_priority("Gold"), bare.task_priority("Silver")) == ("High", None)
    assert bare.case_priority("Gold") is None
    assert (
        settings().task_priority("High") is None and settings().priority_column("Contact") is None
    )


def test_a_review_item_takes_a_changed_tier_and_its_link_carries_it(
    db: Database, sb: SalesforceSandbox
) -> None:
    customer = Customer("Queued", "Low")
    clock = Clock()
    sb.clock = clock
    _world(sb, [])
    customer.account = sb.insert("Account", {"Name": "Queued Ltd", "CustomerPriority__c": "Low"})
    customer.contact = sb.insert("Contact", {"LastName": "Queued", "AccountId": customer.account})
    _complain(db, [customer], 0, clock)
    pipeline = _pipeline(db, sb, clock, timedelta(seconds=10), PRIORITY)
    # No id on file: the candidate search finds the Contact by name alone, for a person to
    # decide, and reads the tier with it.
    assert pipeline.resolve(check_crm=True).review == len(NETWORKS)
    with db.connect() as conn:
        assert [p for (p,) in conn.execute(select(candidates.c.crm_priority))] == ["Low", "Low"]

    clock.tick()
    sb.update("Account", customer.account, {"CustomerPriority__c": "High"})
    clock.tick()
    pipeline.resolve(check_crm=True)  # the watch sees the Account change
    with db.transaction() as conn:
        ids = [i for (i,) in conn.execute(select(candidates.c.id))]
        for candidate_id in ids:
            review.accept(conn, "sf", candidate_id, "admin", clock(), None)
    pipeline.deliver()
    assert _priorities(sb) == {(customer.contact, n): "High" for n in NETWORKS}
