"""Conversations as Cases (``[crm.cases]``), against the Salesforce stand-in, on each backend.

A customer's complaint, the brand's answer and the customer's follow-up are one Case: the
Case names the Contact, its Origin the network and its Priority the customer's tier; every
Task of the conversation points at it (WhatId), every SocialPost too (ParentId). A post
outside the reply chain joins the customer's latest Case within the join window; a Case
closed since is reopened within the reopen window and replaced after it. Leads and the
brand's own posts open none; ``open = "replies"`` opens only for posts answering the brand.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import select, update
from support.salesforce import crm

from connectors.salesforce.settings import IDENTITY_DEFAULTS
from sandbox.salesforce.api import SalesforceSandbox
from sandbox.server import Request
from syncd.model import Account, Author, Cursor, DeliveryState, Direction, Interaction, Page, Stream
from syncd.pipeline import Pipeline, PipelineSettings
from syncd.state.db import Database
from syncd.state.ingest import ingest_page, store_accounts
from syncd.state.tables import deliveries

T0 = datetime(2026, 11, 2, 12, 0, tzinfo=UTC)
BRAND = "100"  # the brand account's id on every network here
KEY = "Syncd_Key__c"
PRIORITY = {
    "field": "Account.CustomerPriority__c",
    "task": {"High": "High", "Low": "Low"},
    "case": {"High": "High", "Low": "Low"},
}


@dataclass
class Clock:
    now: datetime = T0

    def __call__(self) -> datetime:
        return self.now


@dataclass
class Customer:
    name: str
    tier: str | None = None
    lead: bool = False
    record: str = ""

    def user_id(self, network: str) -> str:
        return (
            "2" + str(int.from_bytes(self.name.encode(), "big") % 10**15)
            if network == "x"
            else f"https://social.example/users/{self.name.lower()}"
        )


class World:
    def __init__(self, db: Database, sb: SalesforceSandbox, **cases: Any) -> None:
        self.db, self.sb, self.clock = db, sb, Clock()
        sb.clock = self.clock
        self.serial = 1000
        sb.add_field("Account", "CustomerPriority__c")
        for obj in ("SocialPost", "SocialPersona", "Case"):
            sb.add_field(obj, KEY, external_id=True, unique=True)
        for obj in ("Contact", "Lead"):
            for name in ("Mastodon_Actor_URI__c", "Mastodon_Account__c"):
                sb.add_field(obj, name)
        fields = {n: IDENTITY_DEFAULTS[n].model_dump() for n in ("x", "mastodon")}
        self.crm = crm(
            sb,
            identity_fields=fields,
            priority=PRIORITY,
            history=["task", "social_post"],
            cases=cases,
        )
        self.pipeline = Pipeline(db, "sf", self.crm, PipelineSettings(), self.clock)

    def customer(self, name: str, tier: str | None = None, *, lead: bool = False) -> Customer:
        c = Customer(name, tier, lead)
        ids = {"X_User_Id__c": c.user_id("x"), "Mastodon_Actor_URI__c": c.user_id("mastodon")}
        if lead:
            c.record = self.sb.insert("Lead", {"LastName": name, "Company": "Co", **ids})
        else:
            account = self.sb.insert(
                "Account",
                {"Name": f"{name} Ltd", **({"CustomerPriority__c": tier} if tier else {})},
            )
            c.record = self.sb.insert("Contact", {"LastName": name, "AccountId": account, **ids})
        return c

    def post(
        self,
        c: Customer,
        text: str,
        *,
        network: str = "x",
        reply_to: str | None = None,
        to_user: str | None = None,
        brand: bool = False,
    ) -> str:
        """A post by ``c`` (``brand``: the brand's answer to ``c``); returns its post id."""
        self.serial += 1
        post_id, user = str(self.serial), c.user_id(network)
        direction = Direction.OUTBOUND if brand else Direction.INBOUND
        stream = Stream.REPLIES if brand else Stream.MENTIONS
        item = Interaction(
            network, post_id, "acme", stream, direction, BRAND if brand else user, user, text,
            self.clock(), f"https://{network}.example/{post_id}", in_reply_to_post_id=reply_to,
            in_reply_to_user_id=to_user,
        )  # fmt: skip
        people = (Author(network, user, c.name.lower(), c.name),)
        with self.db.transaction() as conn:
            # As the poller stores the brand account once it resolved its id.
            store_accounts(conn, network, [Account(network, "acme", BRAND)], self.clock())
            ingest_page(
                conn, source=network, network=network, account=Account(network, "acme", BRAND),
                stream=stream, page=Page((item,), people, Cursor(since_id=post_id)), crms=["sf"],
                brand_ids={BRAND}, now=self.clock(), targets=("task", "social_post"),
            )  # fmt: skip
        return post_id

    def run(self) -> None:
        self.pipeline.resolve(check_crm=True)
        self.pipeline.deliver()

    def later(self, **delta: float) -> None:
        self.clock.now += timedelta(**delta)

    def cases(self) -> dict[str, dict[str, Any]]:
        out: dict[str, dict[str, Any]] = {}
        for case in self.sb.records("Case"):
            assert case[KEY] not in out, f"two Cases under {case[KEY]}"
            out[str(case[KEY])] = case
        return out

    def case_of(self, network: str, post_id: str) -> tuple[str | None, str | None]:
        """The Case the post's Task (WhatId) and SocialPost (ParentId) point at."""
        key = f"{network}:{post_id}"
        task = [t for t in self.sb.records("Task") if t["Social_Post_Id__c"] == key]
        post = [p for p in self.sb.records("SocialPost") if p[KEY] == key]
        assert len(task) == len(post) == 1, (key, task, post)
        return task[0].get("WhatId"), post[0].get("ParentId")


@pytest.fixture
def world(db: Database, sb: SalesforceSandbox) -> World:
    return World(db, sb)


def test_a_conversation_is_one_case_on_every_record_and_a_second_run_writes_nothing(
    world: World,
) -> None:
    ada = world.customer("Ada", "High")
    complaint = world.post(ada, "@acme my order 4471 never arrived")
    world.later(minutes=5)
    answer = world.post(ada, "@ada sorry, we are on it", reply_to=complaint, brand=True)
    world.later(minutes=5)
    follow_up = world.post(ada, "@acme still nothing", reply_to=answer, to_user=BRAND)
    world.run()

    cases = world.cases()
    assert list(cases) == [f"x:{complaint}"]
    case = cases[f"x:{complaint}"]
    assert (case["ContactId"], case["Origin"], case["Priority"]) == (ada.record, "Twitter", "High")
    assert case["Subject"] == "X mention from @ada" and "never arrived" in case["Description"]
    for post in (complaint, answer, follow_up):
        assert world.case_of("x", post) == (case["Id"], case["Id"])

    calls = world.sb.api_calls
    world.pipeline.deliver()
    assert world.sb.api_calls == calls  # nothing waits: nothing is asked or written
    assert list(world.cases()) == [f"x:{complaint}"]


def test_the_premier_customers_cases_are_high_on_every_network_and_the_standard_ones_low(
    world: World,
) -> None:
    premier, standard = world.customer("Premier", "High"), world.customer("Standard", "Low")
    posts = {
        (c.name, n): world.post(c, "@acme my order never arrived", network=n)
        for c in (premier, standard)
        for n in ("x", "mastodon")
    }
    world.run()

    cases = world.cases()
    got = {
        (c.name, n): (cases[f"{n}:{posts[(c.name, n)]}"]["Priority"],
                      cases[f"{n}:{posts[(c.name, n)]}"]["Origin"])
        for c in (premier, standard) for n in ("x", "mastodon")
    }  # fmt: skip
    assert got == {
        ("Premier", "x"): ("High", "Twitter"),
        ("Premier", "mastodon"): ("High", "Mastodon"),
        ("Standard", "x"): ("Low", "Twitter"),
        ("Standard", "mastodon"): ("Low", "Mastodon"),
    }
    tasks = {t["Social_Post_Id__c"]: t for t in world.sb.records("Task")}
    assert {tasks[k]["Priority"] for k in cases if cases[k]["Priority"] == "High"} == {"High"}


def test_a_new_post_joins_the_customers_latest_case_within_the_join_window_only(
    world: World,
) -> None:
    ada = world.customer("Ada")
    first = world.post(ada, "@acme the app crashes")
    world.later(hours=3)
    again = world.post(ada, "@acme it crashed again")  # no reply chain, within 24 h
    world.run()
    world.later(hours=30)
    later = world.post(ada, "@acme how do I change my address?")
    world.run()

    cases = world.cases()
    assert set(cases) == {f"x:{first}", f"x:{later}"}
    first_case = cases[f"x:{first}"]["Id"]
    assert world.case_of("x", again) == (first_case, first_case)
    assert world.case_of("x", later)[0] == cases[f"x:{later}"]["Id"]


def test_a_closed_case_is_reopened_within_the_reopen_window_and_replaced_after_it(
    world: World,
) -> None:
    ada = world.customer("Ada")
    complaint = world.post(ada, "@acme refund please")
    world.run()
    case = world.cases()[f"x:{complaint}"]
    world.later(hours=2)
    world.sb.update("Case", case["Id"], {"Status": "Closed"})

    world.later(days=2)
    back = world.post(ada, "@acme the refund never came", reply_to=complaint, to_user=BRAND)
    world.run()
    reopened = world.cases()[f"x:{complaint}"]
    assert (reopened["Status"], reopened["IsClosed"]) == ("New", False)
    assert world.case_of("x", back) == (case["Id"], case["Id"])

    world.sb.update("Case", case["Id"], {"Status": "Closed"})
    world.later(days=6)
    again = world.post(ada, "@acme still no refund", reply_to=back, to_user=BRAND)
    world.run()
    cases = world.cases()
    assert set(cases) == {f"x:{complaint}", f"x:{again}"}
    assert cases[f"x:{complaint}"]["IsClosed"] is True  # left closed: a new Case took it
    assert world.case_of("x", again)[0] == cases[f"x:{again}"]["Id"]


def test_a_post_made_before_its_case_closed_joins_it_without_reopening(world: World) -> None:
    ada = world.customer("Ada")
    complaint = world.post(ada, "@acme broken")
    world.run()
    case = world.cases()[f"x:{complaint}"]
    earlier = world.clock() + timedelta(minutes=10)
    world.later(hours=1)
    world.sb.update("Case", case["Id"], {"Status": "Closed"})
    world.later(hours=1)
    # Read late (a backfill): made while the Case was open.
    world.clock.now, now = earlier, world.clock()
    late = world.post(ada, "@acme also the lid", reply_to=complaint, to_user=BRAND)
    world.clock.now = now + timedelta(hours=2)
    world.run()
    assert world.cases()[f"x:{complaint}"]["IsClosed"] is True
    assert world.case_of("x", late) == (case["Id"], case["Id"])


def test_leads_and_the_brands_posts_open_no_case(world: World) -> None:
    lead = world.customer("Leo", lead=True)
    ada = world.customer("Ada")
    mention = world.post(lead, "@acme do you ship to Norway?")
    unprompted = world.post(ada, "@ada we miss you", brand=True)  # the brand starts it
    world.run()
    assert world.cases() == {}
    assert world.case_of("x", mention) == (None, None)
    assert world.case_of("x", unprompted) == (None, None)


def test_open_replies_opens_cases_only_for_posts_answering_the_brand(
    db: Database, sb: SalesforceSandbox
) -> None:
    world = World(db, sb, open="replies")
    ada = world.customer("Ada")
    mention = world.post(ada, "@acme is great")
    answer = world.post(
        ada, "@acme your last post: the link is broken", reply_to="77", to_user=BRAND
    )
    world.run()
    assert list(world.cases()) == [f"x:{answer}"]
    assert world.case_of("x", mention) == (None, None)


def test_a_case_the_org_refuses_dead_letters_its_posts_until_fixed_and_replayed(
    db: Database, sb: SalesforceSandbox
) -> None:
    world = World(db, sb)
    sb.set_picklist("Case", "Origin", ["Phone", "Email", "Web"], restricted=True)
    ada = world.customer("Ada")
    complaint = world.post(ada, "@acme help")
    world.run()
    assert world.cases() == {} and sb.records("Task") == []
    with db.connect() as conn:
        rows = conn.execute(select(deliveries.c.state, deliveries.c.last_error_code)).all()
    assert Counter(rows) == {(DeliveryState.DEAD, "INVALID_OR_NULL_FOR_RESTRICTED_PICKLIST"): 2}

    sb.set_picklist("Case", "Origin", ["Phone", "Email", "Web", "Twitter"], restricted=True)
    with db.transaction() as conn:  # what `syncd dead-letters replay` does
        conn.execute(update(deliveries).values(state=DeliveryState.PENDING, next_attempt_at=None))
    world.run()
    case = world.cases()[f"x:{complaint}"]
    assert world.case_of("x", complaint) == (case["Id"], case["Id"])


def test_a_case_upsert_answered_503_after_it_was_applied_makes_no_second_case(
    world: World,
) -> None:
    ada = world.customer("Ada")
    failed: list[str] = []

    def fail_once(req: Request) -> None:
        if "/Case/" in req.path and req.method == "PATCH" and not failed:
            failed.append(req.path)
            world.sb.inject("status", endpoint="composite", phase="after", status=503, count=1)

    world.sb.on_request("composite", fail_once, phase="after")
    complaint = world.post(ada, "@acme help")
    world.run()
    assert failed
    case = world.cases()[f"x:{complaint}"]  # one, not two
    assert world.case_of("x", complaint) == (case["Id"], case["Id"])


def test_a_bounded_write_run_decides_cases_round_by_round_until_its_batches_are_spent(
    world: World,
) -> None:
    """The daemon's write job runs ``deliver(max_batches=50)``: Cases are decided a write
    batch at a time, so one run takes every round its batches allow, not just the first."""
    ada = world.customer("Ada")
    for n in range(450):
        world.post(ada, f"@acme complaint {n}")
    world.pipeline.resolve(check_crm=True)
    result = world.pipeline.deliver(max_batches=50)
    assert result.written == 900  # a Task and a SocialPost each
    assert len(world.cases()) == 1  # one customer's posts within a day: one conversation
    assert {t.get("WhatId") for t in world.sb.records("Task")} == {
        next(iter(world.cases().values()))["Id"]
    }


def test_a_customer_answering_another_customers_post_opens_a_case_of_their_own(
    world: World,
) -> None:
    ada, bob = world.customer("Ada"), world.customer("Bob")
    complaint = world.post(ada, "@acme my parcel is lost")
    me_too = world.post(bob, "@ada @acme mine too!", reply_to=complaint)
    world.run()
    cases = world.cases()
    assert set(cases) == {f"x:{complaint}", f"x:{me_too}"}
    assert cases[f"x:{me_too}"]["ContactId"] == bob.record
    assert world.case_of("x", me_too)[0] == cases[f"x:{me_too}"]["Id"]


def test_many_new_cases_share_composite_calls_of_five_collections(world: World) -> None:
    """250 conversations opened in a round: two collections of Cases (200 and 50) in one
    Composite call, which counts once against the org's allocation."""
    people = [world.customer(f"C{n:03d}") for n in range(250)]
    for c in people:
        world.post(c, "@acme where is my order?")
    world.pipeline.resolve(check_crm=True)
    calls: list[tuple[str, bool]] = []
    world.sb.on_request("*", lambda req: calls.append((req.path, req.subrequest)))
    world.pipeline.file_cases()
    assert len(world.cases()) == 250
    outer = [p for p, sub in calls if not sub and "/composite" in p]
    inner = [p for p, sub in calls if sub and "/Case/" in p]
    assert len(outer) == 1 and len(inner) == 2, calls
