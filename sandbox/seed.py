"""The demo world: a brand with two X accounts, customers on X, and a CRM that knows most of them.

Deterministic (seeded) so two demo runs tell the same story. Some customers are Contacts
matched by their X user id, some only by handle (typed by a rep, with '@' and odd casing),
some are Leads, and some are unknown to the CRM: their posts are held, never invented into
Contacts.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from typing import Literal

from sandbox.salesforce.api import SalesforceSandbox
from sandbox.x.api import XSandbox

BRAND_HANDLES = ("acme", "acmesupport")

FIRST = [
    "Ada",
    "Ben",
    "Chloe",
    "Dev",
    "Elif",
    "Farah",
    "Gus",
    "Hana",
    "Ines",
    "Jon",
    "Kemal",
    "Lena",
    "Mateo",
    "Nia",
    "Omar",
    "Priya",
    "Quinn",
    "Rosa",
    "Sami",
    "Tomas",
    "Uma",
    "Viktor",
    "Wen",
    "Xavi",
    "Yara",
    "Zane",
]
LAST = [
    "Okafor",
    "Lindqvist",
    "Moreau",
    "Patel",
    "Yilmaz",
    "Haddad",
    "Novak",
    "Sato",
    "Costa",
    "Berg",
    "Demir",
    "Fischer",
    "Garcia",
    "Ivanova",
    "Kowalski",
    "Mensah",
    "Nakamura",
    "Oliveira",
    "Quispe",
    "Rossi",
    "Schmidt",
    "Tanaka",
    "Usman",
    "Varga",
    "Weiss",
    "Zhou",
]
MENTIONS = [
    "@{brand} my order {n} still hasn't shipped, any news?",
    "@{brand} the app logs me out every morning since the update",
    "Loving the new release, @{brand}! The export button is perfect.",
    "@{brand} I was charged twice for order {n}, please help",
    "@{brand} is there an outage? Nothing loads for me",
    "@{brand} how do I change the email on my account?",
    "Thanks @{brand} for sorting my refund so quickly",
]
REPLIES = [
    "Sorry about that! We've sent you a DM to sort out order {n}.",
    "Thanks for flagging, our team is on it. Could you DM us your account email?",
    "Glad to hear it! Thanks for the kind words.",
    "We've refunded the duplicate charge; it shows in 3-5 days.",
]

Kind = Literal["contact_by_id", "contact_by_handle", "lead", "unknown"]
KINDS: tuple[Kind, ...] = ("contact_by_id", "contact_by_handle", "lead", "unknown")


@dataclass
class Customer:
    user_id: str
    handle: str
    first: str
    last: str
    kind: Kind
    crm_id: str | None = None


@dataclass
class World:
    brand_ids: dict[str, str]
    customers: list[Customer] = field(default_factory=list)
    recent_mentions: list[str] = field(default_factory=list)  # candidates for a brand reply

    def by_kind(self, kind: Kind) -> list[Customer]:
        return [c for c in self.customers if c.kind == kind]


# The custom fields syncd's default configuration uses, typed as `syncd salesforce fields`
# creates them, so `syncd check` passes against a seeded stand-in: name → (type, External ID).
# Each network's person fields (user id: External ID), as `syncd salesforce fields` makes them
# for a config reading X, Mastodon and Bluesky.
_PERSON_FIELDS = {
    "X_User_Id__c": ("string", True),
    "X_Handle__c": ("string", False),
    "Mastodon_Actor_URI__c": ("string", True),
    "Mastodon_Account__c": ("string", False),
    "Bluesky_DID__c": ("string", True),
    "Bluesky_Handle__c": ("string", False),
}
ORG_FIELDS: dict[str, dict[str, tuple[str, bool]]] = {
    "Contact": dict(_PERSON_FIELDS),
    "Lead": dict(_PERSON_FIELDS),
    "Task": {
        "Social_Network__c": ("string", False),
        "Social_Direction__c": ("picklist", False),
        "Social_Handle__c": ("string", False),
        "Social_Post_URL__c": ("url", False),
        "Social_Conversation_Id__c": ("string", False),
    },
}


def set_up_org(sf: SalesforceSandbox) -> None:
    """Create the custom fields an admin would create before installing syncd."""
    for sobject, fields in ORG_FIELDS.items():
        for name, (type_, external_id) in fields.items():
            # External ID without Unique: describe says so, upserts do not use it.
            sf.add_field(sobject, name, type_, external_id=external_id)


def seed(x: XSandbox, sf: SalesforceSandbox, customers: int = 300, rng_seed: int = 7) -> World:
    """Brand accounts and ``customers`` people; every fourth-ish kind is guaranteed present."""
    rng = random.Random(rng_seed)
    set_up_org(sf)
    world = World(
        brand_ids={
            h: x.add_user(h, f"Acme {'Support' if 'support' in h else 'Inc'}")["id"]
            for h in BRAND_HANDLES
        }
    )
    account_id = sf.insert("Account", {"Name": "Acme Customers", "Website": "https://acme.example"})
    weights = (55, 15, 15, 15)  # percent of customers of each kind
    kinds: list[Kind] = [k for k, w in zip(KINDS, weights, strict=True) for _ in range(w)]
    for i in range(customers):
        first, last = rng.choice(FIRST), rng.choice(LAST)
        handle = f"{first.lower()}{last.lower()[:4]}{i}"
        user = x.add_user(
            handle,
            f"{first} {last}",
            description="Customer since 2019",
            location=rng.choice(["Berlin", "Lagos", "Lima", "Osaka", "Leeds"]),
        )
        # The first four customers cover every kind, so even a tiny world tells the whole story.
        kind = KINDS[i] if i < len(KINDS) else rng.choice(kinds)
        c = Customer(user["id"], handle, first, last, kind)
        fields = {"FirstName": first, "LastName": last, "Email": f"{handle}@mail.example"}
        if c.kind == "contact_by_id":
            c.crm_id = sf.insert(
                "Contact",
                {
                    **fields,
                    "AccountId": account_id,
                    "X_User_Id__c": c.user_id,
                    "X_Handle__c": handle,
                },
            )
        elif c.kind == "contact_by_handle":
            # Typed in by a rep: leading '@' and different case. Matched case-insensitively.
            c.crm_id = sf.insert(
                "Contact", {**fields, "AccountId": account_id, "X_Handle__c": "@" + handle.upper()}
            )
        elif c.kind == "lead":
            c.crm_id = sf.insert(
                "Lead", {**fields, "Company": f"{last} GmbH", "X_User_Id__c": c.user_id}
            )
        world.customers.append(c)
    return world


def next_post(x: XSandbox, world: World, rng: random.Random) -> tuple[str, str]:
    """Add one post: mostly customer mentions, sometimes a brand reply to a recent mention."""
    recent = world.recent_mentions
    if recent and rng.random() < 0.3:
        parent_id = recent.pop(rng.randrange(len(recent)))
        brand = rng.choice(BRAND_HANDLES)
        text = rng.choice(REPLIES).format(n=rng.randint(10000, 99999))
        post = x.add_post(world.brand_ids[brand], text, in_reply_to=parent_id)
        return ("reply", post["id"])
    customer = rng.choice(world.customers)
    if rng.random() < 0.05:
        # Mentions both brand accounts: one interaction, not two.
        text = f"@{BRAND_HANDLES[0]} @{BRAND_HANDLES[1]} is anyone there?"
    else:
        brand = rng.choice(BRAND_HANDLES)
        text = rng.choice(MENTIONS).format(brand=brand, n=rng.randint(10000, 99999))
    post = x.add_post(customer.user_id, text)
    recent.append(post["id"])
    del recent[:-50]
    return ("mention", post["id"])
