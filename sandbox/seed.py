"""The demo world: a brand with two X accounts, customers on X, and a CRM that knows most of them.

Deterministic (seeded) so two demo runs tell the same story. Some customers are Contacts
matched by their X user id, some only by handle (typed by a rep, with '@' and odd casing),
some are Leads, and some are unknown to the CRM: their posts are held, never invented into
Contacts.

Given the Mastodon and Bluesky stand-ins too, the brand has one account on each and every
customer is present on one, two or all three networks. The CRM has each network's identity
fields, as `syncd salesforce fields` creates them, filled in for the customers it knows there,
as an org running syncd has them: a record holds the immutable id of each network its person
is on (X user id, Mastodon actor URI, Bluesky DID) and that network's handle, or, for the
Contacts known "by handle only", the handles a rep typed. Some customers' Mastodon and Bluesky
accounts are not on file (:attr:`Customer.by_evidence`): their profile there carries the
e-mail address their Contact or Lead holds (as people write "reach me at …" in a bio), and
the resolver links on that. Someone the CRM does not know has an address it does not hold,
and stays held on every network.

Given the Meta stand-in too, the brand has a Facebook Page and the Instagram account linked to
it, each with posts of the last weeks (comments land on old posts as on new ones), and some
customers are on Facebook (comments and replies on the Page's posts, a Messenger thread) or
Instagram (comments on the media). Meta gives no handle and no e-mail address: the CRM knows a
Facebook author only by the Page-scoped id, an Instagram one by the IGSID (or a username a rep
typed), and the fields holding them are filled for the Contacts and Leads that have them on
file (:data:`sandbox.config.META_IDENTITY_FIELDS`). Everyone else is known there by name
alone, which never links: they go to review or are held. Some comments come without ``from``
(Meta withholds it from an app without Advanced Access): stored with no author, never linked.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Literal

from sandbox.bluesky.api import BlueskySandbox
from sandbox.config import META_IDENTITY_FIELDS, Secrets
from sandbox.mastodon.api import MastodonSandbox
from sandbox.meta.api import MetaSandbox
from sandbox.meta.store import IGAccount, IGUser, Page, Person
from sandbox.salesforce.api import SalesforceSandbox
from sandbox.x.api import XSandbox

BRAND_HANDLES = ("acme", "acmesupport")
MASTODON_BRAND = "acme"  # a local account of the Mastodon stand-in, read with its own token
BLUESKY_BRAND = "acme.bsky.social"
# Customers' Mastodon home: another instance, as most customers' is (user@domain, their own URI).
CUSTOMER_INSTANCE = "social.example"
# Of the customers on Mastodon or Bluesky, the share whose accounts there the CRM does not hold:
# found by the e-mail address their profile shows.
BY_EVIDENCE = 0.3
# The Meta brand: a Page and the Instagram account linked to it.
META_PAGE = "Acme"
META_INSTAGRAM = "acme"
# Of the customers, the share on Facebook and on Instagram (drawn apart from the other networks).
ON_FACEBOOK = 0.35
ON_INSTAGRAM = 0.3
# Of their comments, the share Meta gives without ``from``.
WITHHELD = 0.1
# The customer's tier, held on their Account as a Developer Edition org ships it (a picklist
# High/Medium/Low), which `[crm.priority]` reads: an Account per tier, and the share of
# Contacts under each (Leads have no Account). The first customer, on every network, is a
# premier one, so even a tiny world shows a tier followed across networks.
TIER_FIELD = "CustomerPriority__c"
TIERS: tuple[tuple[str, str, int], ...] = (
    ("High", "Acme Premier Customers", 25),
    ("Medium", "Acme Customers", 50),
    ("Low", "Acme Basic Customers", 25),
)
# How old the brand's posts on Facebook and Instagram are, in days: comments land on all.
META_POST_AGES = (60, 21, 3)
# Who is on which network besides X, for a world of several: (networks, weight).
PRESENCE: tuple[tuple[frozenset[str], int], ...] = (
    (frozenset({"x"}), 35),
    (frozenset({"x", "mastodon"}), 15),
    (frozenset({"x", "bluesky"}), 15),
    (frozenset({"x", "mastodon", "bluesky"}), 10),
    (frozenset({"mastodon"}), 10),
    (frozenset({"bluesky"}), 10),
    (frozenset({"mastodon", "bluesky"}), 5),
)

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
    networks: frozenset[str] = frozenset({"x"})
    mastodon_id: str | None = None  # the account id on the Mastodon stand-in
    mastodon_uri: str | None = None  # its actor URI, the same on every instance
    bluesky_did: str | None = None
    facebook: Person | None = None  # their Facebook user on the Meta stand-in
    instagram: IGUser | None = None
    # Their ids under the brand's Page and Instagram account, as syncd keys them.
    facebook_id: str | None = None
    instagram_id: str | None = None
    # The CRM does not hold their Mastodon or Bluesky account: linked there by the e-mail
    # address their profile shows, not by an identity field.
    by_evidence: bool = False
    tier: str | None = None  # their Account's TIER_FIELD (a Contact's; a Lead has none)

    @property
    def email(self) -> str:
        return f"{self.handle}@mail.example"

    @property
    def mastodon_acct(self) -> str:
        return f"{self.handle}@{CUSTOMER_INSTANCE}"

    @property
    def bluesky_handle(self) -> str:
        return f"{self.handle}.bsky.social"


@dataclass
class World:
    brand_ids: dict[str, str]
    customers: list[Customer] = field(default_factory=list)
    recent_mentions: list[str] = field(default_factory=list)  # candidates for a brand reply
    mastodon: MastodonSandbox | None = None
    bluesky: BlueskySandbox | None = None
    mastodon_brand: str | None = None  # the brand's account id there
    bluesky_brand: str | None = None  # the brand's DID
    # Mentions on Mastodon (status id, author's acct) and Bluesky (at-uri): reply candidates.
    recent_mastodon: list[tuple[str, str]] = field(default_factory=list)
    recent_bluesky: list[str] = field(default_factory=list)
    played: dict[str, int] = field(default_factory=dict)  # external id → order of play
    meta: MetaSandbox | None = None
    meta_networks: tuple[str, ...] = ()  # "facebook" and/or "instagram"
    page: Page | None = None
    instagram: IGAccount | None = None
    page_posts: list[str] = field(default_factory=list)  # the Page's posts, oldest first
    media: list[str] = field(default_factory=list)  # the Instagram account's media
    # Comments (Facebook: comment id; Instagram: comment id, media id) the brand may answer.
    recent_facebook: list[str] = field(default_factory=list)
    recent_instagram: list[tuple[str, str]] = field(default_factory=list)
    withheld: int = 0  # comments played without ``from``
    withhold: float = WITHHELD  # the share of comments played without ``from``

    def by_kind(self, kind: Kind) -> list[Customer]:
        return [c for c in self.customers if c.kind == kind]

    @property
    def networks(self) -> tuple[str, ...]:
        """The networks posts are played on, X first."""
        others = (("mastodon", self.mastodon), ("bluesky", self.bluesky))
        return (
            "x",
            *(name for name, server in others if server is not None),
            *self.meta_networks,
        )

    def on(self, network: str) -> list[Customer]:
        return [c for c in self.customers if network in c.networks]


@dataclass(frozen=True)
class Played:
    kind: str  # "mention" (a customer's) or "reply" (the brand's)
    network: str
    external_id: str  # as syncd keys the CRM record: "<network>:<post id or uri>"


# The custom fields syncd's default configuration uses, typed as `syncd salesforce fields`
# creates them, so `syncd check` passes against a seeded stand-in: name → (type, External ID).
# Each network's person fields (user id: External ID), as `syncd salesforce fields` makes them
# for a config reading X, Mastodon, Bluesky, Facebook and Instagram.
_PERSON_FIELDS = {
    "X_User_Id__c": ("string", True),
    "X_Handle__c": ("string", False),
    "Mastodon_Actor_URI__c": ("string", True),
    "Mastodon_Account__c": ("string", False),
    "Bluesky_DID__c": ("string", True),
    "Bluesky_Handle__c": ("string", False),
    "Facebook_PSID__c": ("string", True),
    "Instagram_IGSID__c": ("string", True),
    "Instagram_Username__c": ("string", False),
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


# The Meta identity fields (a demo org's own, named in the configuration), on both person objects.
_META_FIELDS = {
    f[key]: ("string", key == "user_id") for f in META_IDENTITY_FIELDS.values() for key in f
}
META_ORG_FIELDS: dict[str, dict[str, tuple[str, bool]]] = {
    "Contact": dict(_META_FIELDS),
    "Lead": dict(_META_FIELDS),
}


def set_up_org(sf: SalesforceSandbox, *, meta: bool = False) -> None:
    """Create the custom fields an admin would create before installing syncd; with ``meta``,
    those holding Facebook's and Instagram's ids too."""
    _add_fields(sf, ORG_FIELDS)
    if meta:
        _add_fields(sf, META_ORG_FIELDS)


def _add_fields(sf: SalesforceSandbox, org: dict[str, dict[str, tuple[str, bool]]]) -> None:
    for sobject, fields in org.items():
        for name, (type_, external_id) in fields.items():
            # External ID without Unique: describe says so, upserts do not use it.
            sf.add_field(sobject, name, type_, external_id=external_id)


def seed(
    x: XSandbox,
    sf: SalesforceSandbox,
    customers: int = 300,
    rng_seed: int = 7,
    *,
    mastodon: MastodonSandbox | None = None,
    bluesky: BlueskySandbox | None = None,
    secrets: Secrets | None = None,
    meta: MetaSandbox | None = None,
    meta_networks: Sequence[str] = ("facebook", "instagram"),
    brand: MetaBrand | None = None,
) -> World:
    """Brand accounts and ``customers`` people; every fourth-ish kind is guaranteed present.

    With ``mastodon`` and/or ``bluesky``, the brand and customers are there too (see the
    module's doc); the brand's token and app password are ``secrets``'. With ``meta``, the
    brand's Page and Instagram account (``brand``, made already, or made here), and customers
    on ``meta_networks`` of them.
    """
    rng = random.Random(rng_seed)
    set_up_org(sf, meta=meta is not None)
    world = World(
        brand_ids={
            h: x.add_user(h, f"Acme {'Support' if 'support' in h else 'Inc'}")["id"]
            for h in BRAND_HANDLES
        }
    )
    sf.add_field("Account", TIER_FIELD, "picklist")
    accounts = {
        tier: sf.insert(
            "Account", {"Name": name, "Website": "https://acme.example", TIER_FIELD: tier}
        )
        for tier, name, _ in TIERS
    }
    tiers = [tier for tier, _, weight in TIERS for _ in range(weight)]
    # An RNG of its own, as for the presence: the X world's draws stay as they were.
    tier_rng = random.Random(rng_seed + 4)
    weights = (55, 15, 15, 15)  # percent of customers of each kind
    kinds: list[Kind] = [k for k, w in zip(KINDS, weights, strict=True) for _ in range(w)]
    present = {"x"} | {n for n, s in (("mastodon", mastodon), ("bluesky", bluesky)) if s}
    presence = _presence(customers, present, rng_seed) if len(present) > 1 else None
    if presence is not None:
        _seed_brand(world, mastodon, bluesky, secrets or Secrets())
    # An RNG of its own, as for the presence: the X world's draws stay as they were.
    evidence = random.Random(rng_seed + 2)
    on_meta = random.Random(rng_seed + 3)
    if meta is not None:
        _seed_meta(world, meta, meta_networks, secrets or Secrets(), brand)
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
        if presence is not None:
            c.networks = presence[i]
            # The third (a Lead on X and Bluesky) is always one of them, so even a tiny world
            # shows an author linked by the address in their profile.
            c.by_evidence = i == 2 or (i >= len(KINDS) and evidence.random() < BY_EVIDENCE)
            _join_networks(c, world)
        if meta is not None:
            _join_meta(c, world, on_meta, first=i < len(KINDS))
        fields = {"FirstName": first, "LastName": last, "Email": f"{handle}@mail.example"}
        if c.kind in ("contact_by_id", "contact_by_handle"):
            c.tier = TIERS[0][0] if i == 0 else tier_rng.choice(tiers)
            fields["AccountId"] = accounts[c.tier]
        if c.kind == "contact_by_id":
            x_handle = {"X_Handle__c": handle} if "x" in c.networks else {}
            c.crm_id = sf.insert("Contact", {**fields, **on_file(c), **x_handle})
        elif c.kind == "contact_by_handle":
            c.crm_id = sf.insert("Contact", {**fields, **typed(c)})
        elif c.kind == "lead":
            c.crm_id = sf.insert("Lead", {**fields, "Company": f"{last} GmbH", **on_file(c)})
        world.customers.append(c)
    return world


def on_file(c: Customer) -> dict[str, str]:
    """The identity fields a CRM record of ``c`` holds, as `syncd salesforce fields` names
    them: for each network ``c`` is on, its immutable id (X user id, Mastodon actor URI,
    Bluesky DID), and Mastodon's and Bluesky's handle beside it (X's is added by the caller
    where the record has it). A customer found by evidence has no Mastodon or Bluesky field."""
    fields = {"X_User_Id__c": c.user_id} if "x" in c.networks else {}
    if c.by_evidence:
        return fields
    if c.mastodon_uri is not None:
        fields |= {"Mastodon_Actor_URI__c": c.mastodon_uri, "Mastodon_Account__c": c.mastodon_acct}
    if c.bluesky_did is not None:
        fields |= {"Bluesky_DID__c": c.bluesky_did, "Bluesky_Handle__c": c.bluesky_handle}
    return fields | meta_on_file(c)


def meta_on_file(c: Customer) -> dict[str, str]:
    """The Meta ids a CRM record of ``c`` holds: the Page-scoped id and the
    IGSID (with their username), keyed as syncd keys them, ``<page or account id>:<id>``."""
    fb, ig = META_IDENTITY_FIELDS["facebook"], META_IDENTITY_FIELDS["instagram"]
    fields: dict[str, str] = {}
    if c.facebook is not None and c.facebook_id is not None:
        fields |= {fb["user_id"]: c.facebook_id}
    if c.instagram is not None and c.instagram_id is not None:
        fields |= {ig["user_id"]: c.instagram_id, ig["handle"]: c.instagram.username}
    return fields


def file_everyone(world: World, sf: SalesforceSandbox) -> None:
    """Every customer of ``world`` known to the CRM by each of their networks' ids, so each
    interaction has exactly one right answer (the chaos benchmark's world): one not in the
    CRM gets a Contact holding them (and the e-mail an evidence match would use), and one
    found there by evidence or by a typed handle gets their Meta ids, which Meta's answers
    never lead to (no e-mail, and a name never links on its own)."""
    for c in world.customers:
        if c.crm_id is None:
            # meta_on_file beside on_file: one found by evidence has no Meta ids in on_file.
            fields = {"LastName": c.last, **on_file(c), **meta_on_file(c)}
            if c.networks != {"x"}:  # some are found by it there (see the module's doc)
                fields["Email"] = c.email
            c.crm_id = sf.insert("Contact", fields)
        elif (c.by_evidence or c.kind == "contact_by_handle") and (ids := meta_on_file(c)):
            sf.update("Contact" if c.kind != "lead" else "Lead", c.crm_id, ids)


def typed(c: Customer) -> dict[str, str]:
    """The handles a rep typed into a Contact: no ids, a leading '@' and odd casing, as people
    write them (matched without case, with or without '@')."""
    fields = {"X_Handle__c": "@" + c.handle.upper()} if "x" in c.networks else {}
    if c.by_evidence:
        return fields
    if c.mastodon_uri is not None:
        fields["Mastodon_Account__c"] = f"@{c.handle.capitalize()}@{CUSTOMER_INSTANCE}"
    if c.bluesky_did is not None:
        fields["Bluesky_Handle__c"] = "@" + c.bluesky_handle
    if c.instagram is not None:
        fields[META_IDENTITY_FIELDS["instagram"]["handle"]] = "@" + c.instagram.username
    return fields


def _presence(customers: int, present: set[str], rng_seed: int) -> list[frozenset[str]]:
    """The networks each customer is on."""
    # An RNG of its own: the X world's draws stay as they were.
    rng = random.Random(rng_seed + 1)
    patterns = [(p & present, w) for p, w in PRESENCE if p & present]
    draw = [p for p, w in patterns for _ in range(w)]
    # The first customers, one of each kind, show each network beside X; the one the CRM does
    # not know (and a rep adds midway) is on all of them.
    others = [n for n in ("mastodon", "bluesky") if n in present]
    everywhere = frozenset(present)
    first = [everywhere, frozenset({"x", others[0]}), frozenset({"x", others[-1]}), everywhere]
    return [first[i] if i < len(first) else rng.choice(draw) for i in range(customers)]


def _seed_brand(
    world: World,
    mastodon: MastodonSandbox | None,
    bluesky: BlueskySandbox | None,
    secrets: Secrets,
) -> None:
    world.mastodon, world.bluesky = mastodon, bluesky
    if mastodon is not None:
        mastodon.add_token(secrets.mastodon_token, MASTODON_BRAND)
        world.mastodon_brand = mastodon.add_account(MASTODON_BRAND, display_name="Acme Inc").id
        # Mentions from strangers are what the brand needs to see (`syncd check` says so).
        mastodon.policy.update(for_private_mentions="accept", for_limited_accounts="accept")
    if bluesky is not None:
        brand = bluesky.add_user(
            BLUESKY_BRAND, password=secrets.bluesky_password, display_name="Acme Inc"
        )
        world.bluesky_brand = brand.did


def _join_networks(c: Customer, world: World) -> None:
    """``c``'s accounts on the networks besides X they are on."""
    bio = f"Customer since 2019. Reach me at {c.email}"
    if world.mastodon is not None and "mastodon" in c.networks:
        account = world.mastodon.add_account(
            c.handle, domain=CUSTOMER_INSTANCE, display_name=f"{c.first} {c.last}", note=bio
        )
        c.mastodon_id, c.mastodon_uri = account.id, account.uri
    if world.bluesky is not None and "bluesky" in c.networks:
        user = world.bluesky.add_user(c.bluesky_handle, display_name=f"{c.first} {c.last}")
        user.description = bio
        c.bluesky_did = user.did


@dataclass(frozen=True)
class MetaBrand:
    page: Page
    instagram: IGAccount


def meta_brand(meta: MetaSandbox, secrets: Secrets) -> MetaBrand:
    """The brand's Page, read with its Page token, and the Instagram account linked to it."""
    page = meta.add_page(META_PAGE, token=secrets.meta_page_token)
    return MetaBrand(page, meta.add_instagram_account(page.id, META_INSTAGRAM, "Acme Inc"))


def _seed_meta(
    world: World,
    meta: MetaSandbox,
    networks: Sequence[str],
    secrets: Secrets,
    brand: MetaBrand | None,
) -> None:
    """The brand on Meta (``brand``, or made now), with posts of the last weeks."""
    world.meta = meta
    world.meta_networks = tuple(n for n in ("facebook", "instagram") if n in networks)
    brand = brand or meta_brand(meta, secrets)
    world.page, world.instagram = brand.page, brand.instagram
    now = datetime.now(UTC)
    for days in META_POST_AGES:
        at = now - timedelta(days=days)
        world.page_posts.append(
            meta.add_post(world.page.id, f"Acme news, {days} days ago", at=at).id
        )
        world.media.append(meta.add_media(world.instagram.id, f"New in store ({days}d)", at=at).id)


def _join_meta(c: Customer, world: World, rng: random.Random, *, first: bool) -> None:
    """``c`` on Facebook and Instagram, by draw (the first customers, one of each kind, on
    every one the world plays)."""
    meta, page, account = world.meta, world.page, world.instagram
    assert meta is not None and page is not None and account is not None
    if "facebook" in world.meta_networks and (first or rng.random() < ON_FACEBOOK):
        c.facebook = meta.add_person(f"{c.first} {c.last}")
        c.facebook_id = f"{page.id}:{meta.scoped_id(c.facebook, page.id)}"
    if "instagram" in world.meta_networks and (first or rng.random() < ON_INSTAGRAM):
        c.instagram = meta.add_ig_user(f"{c.handle}.ig")
        c.instagram_id = f"{account.id}:{meta.igsid(c.instagram, account.id)}"


def next_post(x: XSandbox, world: World, rng: random.Random) -> tuple[str, str]:
    """Add one post: mostly customer mentions, sometimes a brand reply to a recent mention."""
    return _x_post(x, world, rng, world.customers)


def play(x: XSandbox, world: World, rng: random.Random) -> Played:
    """Add one post on one of the world's networks, as :func:`next_post` does on X.

    A world of X alone plays exactly :func:`next_post`'s posts, so its figures stay comparable.
    """
    networks = world.networks
    network = networks[0] if len(networks) == 1 else rng.choice(networks)
    if network == "mastodon":
        kind, uri = _mastodon_post(world, rng)
    elif network == "bluesky":
        kind, uri = _bluesky_post(world, rng)
    elif network == "facebook":
        kind, uri = _facebook_post(world, rng)
    elif network == "instagram":
        kind, uri = _instagram_post(world, rng)
    else:
        customers = world.customers if len(networks) == 1 else world.on("x")
        kind, uri = _x_post(x, world, rng, customers)
    external_id = f"{network}:{uri}"
    world.played[external_id] = len(world.played)
    return Played(kind, network, external_id)


def _mastodon_post(world: World, rng: random.Random) -> tuple[str, str]:
    m, brand = world.mastodon, world.mastodon_brand
    assert m is not None and brand is not None
    recent = world.recent_mastodon
    if recent and rng.random() < 0.3:
        status_id, acct = recent.pop(rng.randrange(len(recent)))
        text = rng.choice(REPLIES).format(n=rng.randint(10000, 99999))
        return ("reply", m.add_status(brand, f"@{acct} {text}", in_reply_to=status_id).uri)
    customer = rng.choice(world.on("mastodon"))
    assert customer.mastodon_id is not None
    text = rng.choice(MENTIONS).format(brand=MASTODON_BRAND, n=rng.randint(10000, 99999))
    status = m.add_status(customer.mastodon_id, text)
    recent.append((status.id, customer.mastodon_acct))
    del recent[:-50]
    return ("mention", status.uri)


def _bluesky_post(world: World, rng: random.Random) -> tuple[str, str]:
    b, brand = world.bluesky, world.bluesky_brand
    assert b is not None and brand is not None
    recent = world.recent_bluesky
    if recent and rng.random() < 0.3:
        parent = recent.pop(rng.randrange(len(recent)))
        text = rng.choice(REPLIES).format(n=rng.randint(10000, 99999))
        return ("reply", b.add_post(brand, text, in_reply_to=parent).uri)
    customer = rng.choice(world.on("bluesky"))
    assert customer.bluesky_did is not None
    text = rng.choice(MENTIONS).format(brand=BLUESKY_BRAND, n=rng.randint(10000, 99999))
    post = b.add_post(customer.bluesky_did, text, mentions=(brand,))
    recent.append(post.uri)
    del recent[:-50]
    return ("mention", post.uri)


def _facebook_post(world: World, rng: random.Random) -> tuple[str, str]:
    """A customer's comment on one of the Page's posts (old ones too) or Messenger message,
    or the Page's reply to a recent comment."""
    meta, page = world.meta, world.page
    assert meta is not None and page is not None
    recent = world.recent_facebook
    text = rng.choice(REPLIES).format(n=rng.randint(10000, 99999))
    if recent and rng.random() < 0.3:
        parent = recent.pop(rng.randrange(len(recent)))
        return ("reply", meta.add_reply(parent, page, text).id)
    customer = rng.choice([c for c in world.customers if c.facebook is not None])
    assert customer.facebook is not None
    said = rng.choice(MENTIONS).format(brand=META_PAGE, n=rng.randint(10000, 99999))
    if rng.random() < 0.2:
        meta.add_message(page.id, customer.facebook, said)
        conv = meta.conversation(page.id, customer.facebook)
        return ("mention", conv.messages[-1].id)
    withheld = rng.random() < world.withhold
    world.withheld += withheld
    comment = meta.add_comment(
        rng.choice(world.page_posts), customer.facebook, said, withhold_from=withheld
    )
    recent.append(comment.id)
    del recent[:-50]
    return ("mention", comment.id)


def _instagram_post(world: World, rng: random.Random) -> tuple[str, str]:
    """A customer's comment on one of the account's media or Direct message, or the
    account's reply to a recent comment."""
    meta, account = world.meta, world.instagram
    assert meta is not None and account is not None
    recent = world.recent_instagram
    if recent and rng.random() < 0.3:
        comment_id, media_id = recent.pop(rng.randrange(len(recent)))
        text = rng.choice(REPLIES).format(n=rng.randint(10000, 99999))
        return ("reply", meta.add_ig_comment(media_id, account, text, reply_to=comment_id).id)
    customer = rng.choice([c for c in world.customers if c.instagram is not None])
    assert customer.instagram is not None
    media_id = rng.choice(world.media)
    said = rng.choice(MENTIONS).format(brand=META_INSTAGRAM, n=rng.randint(10000, 99999))
    if rng.random() < 0.2:
        return ("mention", meta.add_direct_message(account.id, customer.instagram, said).id)
    withheld = rng.random() < world.withhold
    world.withheld += withheld
    comment = meta.add_ig_comment(media_id, customer.instagram, said, withhold_from=withheld)
    recent.append((comment.id, media_id))
    del recent[:-50]
    return ("mention", comment.id)


def _x_post(
    x: XSandbox, world: World, rng: random.Random, customers: Sequence[Customer]
) -> tuple[str, str]:
    recent = world.recent_mentions
    if recent and rng.random() < 0.3:
        parent_id = recent.pop(rng.randrange(len(recent)))
        brand = rng.choice(BRAND_HANDLES)
        text = rng.choice(REPLIES).format(n=rng.randint(10000, 99999))
        post = x.add_post(world.brand_ids[brand], text, in_reply_to=parent_id)
        return ("reply", post["id"])
    customer = rng.choice(customers)
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
