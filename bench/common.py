"""What the benchmarks share: the stand-ins' secrets, the live workload, and how it is measured.

Each benchmark is a script of its own (``python bench/<name>.py``) and imports no other: what
two of them need lives here. The stand-ins run in the benchmark's process, and syncd gets its
configuration for them from :func:`sandbox.config.syncd_config`, its secrets from
:data:`SECRETS`.

The live workload of the throughput benchmarks (:mod:`throughput`, :mod:`naive`, :mod:`growth`,
:mod:`xcost`): ``seed`` creates ``accounts`` brand accounts with a few posts each, and
``authors`` customers, a share of them Contacts carrying their X user id (linked). ``Feeder``
then posts ``interactions`` at ``rate`` per second, in small ticks, as a thread: mentions of a
random brand (one in five a reply to one of its posts), and now and then a brand's reply to a
recent mention (outbound history). Every post's creation is timed on the wall clock, and every
Task the Salesforce stand-in stores is timed too, so the latency from a post's creation to its
CRM write is measured, not guessed. :class:`Options` is that workload's shape, one set of
command-line options for every script that runs it.
"""

from __future__ import annotations

import argparse
import random
import threading
import time
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field, fields
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sandbox.bluesky.api import BlueskySandbox
from sandbox.config import (
    META_IDENTITY_FIELDS,
    Secrets,
    TomlValue,
    bluesky_source,
    facebook_source,
    instagram_source,
    mastodon_source,
    meta_identity_fields,
    syncd_config,
)
from sandbox.mastodon.api import MastodonSandbox
from sandbox.meta.api import BUDGETS as META_BUDGETS
from sandbox.meta.api import MetaSandbox
from sandbox.salesforce.api import SalesforceSandbox
from sandbox.seed import (
    BLUESKY_BRAND,
    CUSTOMER_INSTANCE,
    FIRST,
    LAST,
    MASTODON_BRAND,
    META_ORG_FIELDS,
    MetaBrand,
    meta_brand,
    set_up_org,
)
from sandbox.x.api import XSandbox

# The stand-ins' secrets, under the environment names the rendered configuration reads:
# a benchmark starts its stand-ins with them and puts them into syncd's environment.
SECRETS = Secrets(
    x_bearer="bench-bearer",
    mastodon_token="bench-mastodon-token",
    bluesky_password="bench-bluesky-app-password",
    meta_page_token="bench-meta-page-token",
)


NETWORKS = ("x", "mastodon", "bluesky", "facebook", "instagram")
# Names --networks takes for several networks at once.
SHORTHANDS = {"meta": ("facebook", "instagram")}


def networks_arg(parser: argparse.ArgumentParser) -> None:
    """``--networks x,mastodon,bluesky,facebook,instagram`` (``meta``: Facebook and
    Instagram): where the brand and its customers are. X is always among them (the world is
    seeded there), named or not.

    The default, X alone, keeps a run's figures comparable with those before the other
    networks were played.
    """

    def parse(text: str) -> tuple[str, ...]:
        named = {n.strip() for n in text.split(",") if n.strip()}
        chosen = {"x"} | {m for n in named for m in SHORTHANDS.get(n, (n,))}
        if not named or chosen - set(NETWORKS):
            names = ", ".join((*NETWORKS, *SHORTHANDS))
            raise argparse.ArgumentTypeError(f"a comma-separated list of {names}: {text!r}")
        return tuple(n for n in NETWORKS if n in chosen)

    parser.add_argument(
        "--networks",
        type=parse,
        default=("x",),
        help="Networks the brand is on, comma-separated: x (default, always), mastodon, "
        "bluesky, facebook, instagram, meta (the last two).",
    )


def x_standin(**options: Any) -> XSandbox:
    """The X stand-in, taking :data:`SECRETS`' bearer token; ``options`` as XSandbox takes them."""
    return XSandbox(bearer_token=SECRETS.x_bearer, **options)


def salesforce_standin(**options: Any) -> SalesforceSandbox:
    """The Salesforce stand-in, taking :data:`SECRETS`' password and security token;
    ``options`` as SalesforceSandbox takes them."""
    return SalesforceSandbox(
        password=SECRETS.salesforce_password, security_token=SECRETS.salesforce_token, **options
    )


# Each stand-in's delay per HTTP request, in seconds, by --latency. On loopback a call costs
# well under a millisecond, so a pattern that makes a call per post looks cheaper than it is;
# "real" is what a call to each API takes from a server near it (issue 21).
LATENCIES: dict[str, dict[str, float]] = {
    "none": {"x": 0.0, "mastodon": 0.0, "bluesky": 0.0, "meta": 0.0, "salesforce": 0.0},
    "real": {"x": 0.15, "mastodon": 0.15, "bluesky": 0.15, "meta": 0.15, "salesforce": 0.2},
}
_API_NAMES = {
    "x": "X",
    "mastodon": "Mastodon",
    "bluesky": "Bluesky",
    "meta": "Meta",
    "salesforce": "Salesforce",
}


def latency_arg(parser: argparse.ArgumentParser) -> None:
    """``--latency none|real``: the stand-ins answer at once, or after a real API's delay."""
    parser.add_argument(
        "--latency",
        choices=sorted(LATENCIES),
        default="none",
        help="Per-request delay of the stand-ins: none (default, loopback speed) or real "
        "(X, Mastodon, Bluesky, Meta 150 ms, Salesforce 200 ms).",
    )


def describe_latency(latency: dict[str, float]) -> str:
    """``X 150 ms, …, Salesforce 200 ms``, or ``none``."""
    if not any(latency.values()):
        return "none"
    return ", ".join(
        f"{_API_NAMES[api]} {seconds * 1000:.0f} ms" for api, seconds in latency.items()
    )


# X's own limits would make this a measure of X (450 mention requests per 15 minutes per
# app): lifted in the stand-in. The 800-mention horizon stays, and is reported if crossed.
UNLIMITED = {
    "mentions": 10**7,
    "user_tweets": 10**7,
    "user_lookup": 10**7,
    "tweet_lookup": 10**7,
    "search_recent": 10**7,
    "search_all": 10**7,
    "counts": 10**7,
}
REPLY_SHARE = 0.2  # mentions that reply to one of the brand's posts
OUTBOUND_SHARE = 0.05  # interactions that are the brand's reply to a mention
TICK = 0.05  # seconds between bursts of the feeder
# Generated surnames (19,600 of them, ~1,000 three-letter beginnings) beside the seed's
# common ones: a name is shared by a few people, as in a real customer base, and the
# resolver's prefix search finds a handful of Contacts per name, not dozens.
_C, _V = "bdfgklmnprstvz", "aeiou"


def surname(rng: random.Random) -> str:
    if rng.random() < 0.1:
        return rng.choice(LAST)
    c, v = rng.choice, rng.choice
    return (c(_C) + v(_V) + c(_C) + v(_V) + c("nrsl")).capitalize()


@dataclass
class Options:
    """The live workload: how many interactions, brands, authors, how fast, how often polled."""

    interactions: int = 100_000
    accounts: int = 10
    authors: int = 20_000
    linked: float = 0.8
    rate: float = 3_000.0
    poll: float = 1.0
    seed: int = 7
    state: str | None = None  # a PostgreSQL URL; None: SQLite in a temporary directory

    @staticmethod
    def add_arguments(parser: argparse.ArgumentParser) -> None:
        parser.add_argument("--interactions", type=int, default=Options.interactions)
        parser.add_argument("--accounts", type=int, default=Options.accounts)
        parser.add_argument("--authors", type=int, default=Options.authors)
        parser.add_argument("--linked", type=float, default=Options.linked)
        parser.add_argument("--rate", type=float, default=Options.rate, help="Arrivals per second.")
        parser.add_argument(
            "--poll", type=float, default=Options.poll, help="Poll interval, seconds."
        )
        parser.add_argument("--seed", type=int, default=Options.seed)
        parser.add_argument("--state", help="A PostgreSQL URL; default: SQLite, temporary.")

    @classmethod
    def from_args(cls, ns: argparse.Namespace) -> Options:
        return cls(**{f.name: getattr(ns, f.name) for f in fields(cls)})

    def argv(self) -> list[str]:
        """These options as :meth:`add_arguments` reads them, for another benchmark's run."""
        out: list[str] = []
        for f in fields(self):
            value = getattr(self, f.name)
            if value is not None:
                out.append(f"--{f.name}={value}")
        return out


def service_environment() -> dict[str, str]:
    """The environment ``systemd/syncd.service`` gives the daemon (its ``Environment=``
    lines, e.g. ``MALLOC_ARENA_MAX=2``): the benches run ``syncd`` as the service runs it,
    read from the unit so the two cannot drift apart."""
    unit = Path(__file__).resolve().parent.parent / "systemd" / "syncd.service"
    pairs = (
        line.removeprefix("Environment=").split("=", 1)
        for line in unit.read_text().splitlines()
        if line.startswith("Environment=")
    )
    return {key: value for key, value in pairs}


def daemon_config(
    state_url: str,
    x_url: str,
    sf_url: str,
    accounts: Sequence[str],
    poll: float,
    elsewhere: Elsewhere | None = None,
    session_file: str = "",
    history: Sequence[str] = ("task",),
    cases: bool = False,
) -> str:
    """syncd as the throughput workload runs it: every job at the poll interval (the CRM
    change check at its default 10 s), no jitter;
    with ``elsewhere``, a source for the brand's account on each other network too (the
    Bluesky session kept in ``session_file``)."""
    every = f"{poll}s"
    others: list[dict[str, TomlValue]] = []
    keys: dict[str, TomlValue] = {"interval": every}
    if elsewhere is not None and elsewhere.mastodon is not None:
        others.append(
            mastodon_source(elsewhere.mastodon.url, MASTODON_BRAND, secrets=SECRETS, keys=keys)
        )
    if elsewhere is not None and elsewhere.bluesky is not None:
        url = elsewhere.bluesky.url
        others.append(bluesky_source(url, BLUESKY_BRAND, session_file, secrets=SECRETS, keys=keys))
    meta = elsewhere.meta if elsewhere is not None else None
    brand = elsewhere.meta_brand if elsewhere is not None else None
    meta_networks = (
        [n for n in elsewhere.networks if n in META_IDENTITY_FIELDS] if elsewhere else []
    )
    if meta is not None and brand is not None:
        if "facebook" in meta_networks:
            others.append(facebook_source(meta.url, brand.page.id, secrets=SECRETS, keys=keys))
        if "instagram" in meta_networks:
            account = brand.instagram
            others.append(
                instagram_source(meta.url, account.id, account.username, secrets=SECRETS, keys=keys)
            )
    return syncd_config(
        sources=others,
        state_url=state_url,
        x_url=x_url,
        salesforce_url=sf_url,
        accounts=accounts,
        secrets=SECRETS,
        source_name="x",
        source={"interval": every},
        crm={
            **meta_identity_fields(meta_networks),
            **({"history": list(history)} if tuple(history) != ("task",) else {}),
            # [crm.cases]: each conversation a Case, opened or joined before its records.
            **({"cases": {"open": "all"}} if cases else {}),
        },
        tables={
            "logging": {"level": "WARNING"},
            # The change check at the product's default cadence (a 10 s write interval's),
            # not every poll interval: while any author is held it is a Salesforce call a
            # run, and nobody's Contact changes during a bench.
            "resolver": {"crm_check_interval": "10s"},
            "daemon": {
                "write_interval": every,
                "resolve_interval": every,
                "jitter": "0s",
                "lease": "30s",
            },
        },
    )


@dataclass
class People:
    brands: list[tuple[str, str]]  # (handle, X user id)
    brand_posts: dict[str, list[str]]  # brand user id → its post ids
    authors: list[tuple[str, bool]]  # (X user id, linked in the CRM)


def seed(
    x: XSandbox, sf: SalesforceSandbox, *, accounts: int, authors: int, linked: float, seed: int
) -> People:
    rng = random.Random(seed)
    set_up_org(sf)
    company = sf.insert("Account", {"Name": "Customers"})
    brands: list[tuple[str, str]] = []
    posts: dict[str, list[str]] = {}
    for b in range(accounts):
        user = x.add_user(f"brand{b}", f"Brand {b}")
        brands.append((user["username"], user["id"]))
        posts[user["id"]] = [
            x.add_post(user["id"], f"News from Brand {b}, part {k}")["id"] for k in range(5)
        ]
    people: list[tuple[str, bool]] = []
    for i in range(authors):
        # Real names repeat: a person the CRM lacks may share one with a Contact, and the
        # resolver must look, and must not link on the name alone.
        first, last = rng.choice(FIRST), surname(rng)
        user = x.add_user(f"{first[:5]}{last[:4]}{i}", f"{first} {last}")
        known = rng.random() < linked
        if known:
            sf.insert(
                "Contact",
                {
                    "FirstName": first,
                    "LastName": last,
                    "AccountId": company,
                    "X_User_Id__c": user["id"],
                },
            )
        people.append((user["id"], known))
    return People(brands, posts, people)


# The other networks' own limits would make a run a measure of them: lifted as X's are.
MASTODON_UNLIMITED = {"all": (10**7, 300.0), "paginated": (10**7, 900.0)}
BLUESKY_UNLIMITED = 10**7
META_UNLIMITED = {bucket: (10**7, window) for bucket, (_, window) in META_BUDGETS.items()}
# How old the Meta brand's posts are, in days: comments land on the old ones as on the new.
META_POST_AGES = (45, 7, 1)


@dataclass
class Elsewhere:
    """The brand and customers on the networks beside X (``--networks``): one brand account
    on each, and customers of that network alone. On Mastodon and Bluesky the CRM finds them
    by the e-mail address their profile shows (it has no identity fields for those networks
    here); on Facebook and Instagram, which show no address, by the Page-scoped id or IGSID
    their Contact holds (:data:`sandbox.config.META_IDENTITY_FIELDS`)."""

    mastodon: MastodonSandbox | None
    bluesky: BlueskySandbox | None
    meta: MetaSandbox | None = None
    meta_networks: tuple[str, ...] = ()
    meta_brand: MetaBrand | None = None
    brand: dict[str, str] = field(default_factory=dict)  # network → account id / DID
    authors: dict[str, list[tuple[str, str, bool]]] = field(default_factory=dict)
    # network → (account id / DID / Meta person key, Mastodon acct or Bluesky handle or
    # name, linked in the CRM)
    posts: dict[str, list[str]] = field(default_factory=dict)  # the Page's posts, its media

    @property
    def networks(self) -> list[str]:
        named = [n for n, s in (("mastodon", self.mastodon), ("bluesky", self.bluesky)) if s]
        return [*named, *(self.meta_networks if self.meta else ())]


def seed_elsewhere(
    sf: SalesforceSandbox,
    mastodon: MastodonSandbox | None,
    bluesky: BlueskySandbox | None,
    *,
    authors: int,
    linked: float,
    seed: int,
    meta: MetaSandbox | None = None,
    meta_networks: Sequence[str] = (),
) -> Elsewhere:
    """``authors`` customers on each of ``mastodon``, ``bluesky`` and ``meta_networks`` (on
    ``meta``), a ``linked`` share of them Contacts; after :func:`seed`, whose Account and
    fields it uses."""
    rng = random.Random(seed + 1)  # its own: X's people stay as they were
    company = sf.insert("Account", {"Name": "Customers elsewhere"})
    out = Elsewhere(mastodon, bluesky, meta, tuple(meta_networks) if meta else ())
    if mastodon is not None:
        mastodon.add_token(SECRETS.mastodon_token, MASTODON_BRAND)
        out.brand["mastodon"] = mastodon.add_account(MASTODON_BRAND).id
        mastodon.policy.update(for_private_mentions="accept", for_limited_accounts="accept")
    if bluesky is not None:
        brand = bluesky.add_user(BLUESKY_BRAND, password=SECRETS.bluesky_password)
        out.brand["bluesky"] = brand.did
    if meta is not None and out.meta_networks:
        _seed_meta_brand(sf, meta, out)
    for network in out.networks:
        people: list[tuple[str, str, bool]] = []
        for i in range(authors):
            first, last = rng.choice(FIRST), surname(rng)
            name = f"{first[:5]}{last[:4]}{i}".lower()
            email = f"{name}@{network}.mail.example"
            bio = f"Reach me at {email}"
            on_file: dict[str, str] = {}
            if network == "mastodon" and mastodon is not None:
                account = mastodon.add_account(
                    name, domain=CUSTOMER_INSTANCE, display_name=f"{first} {last}", note=bio
                )
                key, handle = account.id, f"{name}@{CUSTOMER_INSTANCE}"
            elif network == "bluesky" and bluesky is not None:
                user = bluesky.add_user(f"{name}.bsky.social", display_name=f"{first} {last}")
                user.description = bio
                key, handle = user.did, user.handle
            else:
                key, handle, on_file = _meta_person(meta, out, network, name, f"{first} {last}")
            known = rng.random() < linked
            if known:
                sf.insert(
                    "Contact",
                    {
                        "FirstName": first,
                        "LastName": last,
                        "AccountId": company,
                        "Email": email,
                        **on_file,
                    },
                )
            people.append((key, handle, known))
        out.authors[network] = people
    return out


def _seed_meta_brand(sf: SalesforceSandbox, meta: MetaSandbox, out: Elsewhere) -> None:
    """The brand's Page and Instagram account with posts of the last weeks, and the CRM
    fields holding Meta's ids."""
    for sobject, named in META_ORG_FIELDS.items():
        for name, (type_, external_id) in named.items():
            sf.add_field(sobject, name, type_, external_id=external_id)
    brand = out.meta_brand = meta_brand(meta, SECRETS)
    out.brand["facebook"], out.brand["instagram"] = brand.page.id, brand.instagram.id
    now = time.time()
    for days in META_POST_AGES:
        at = datetime.fromtimestamp(now - days * 86400.0, UTC)
        post = meta.add_post(brand.page.id, f"news of {days} days ago", at=at)
        out.posts.setdefault("facebook", []).append(post.id)
        media = meta.add_media(brand.instagram.id, f"photo of {days} days ago", at=at)
        out.posts.setdefault("instagram", []).append(media.id)


def _meta_person(
    meta: MetaSandbox | None, out: Elsewhere, network: str, name: str, full_name: str
) -> tuple[str, str, dict[str, str]]:
    """A Facebook or Instagram customer: (their key on the stand-in, their name or
    username, the CRM fields holding their id as syncd keys it)."""
    assert meta is not None and out.meta_brand is not None
    fields = META_IDENTITY_FIELDS[network]
    if network == "facebook":
        person = meta.add_person(full_name)
        page = out.meta_brand.page.id
        scoped = f"{page}:{meta.scoped_id(person, page)}"
        return person.key, full_name, {fields["user_id"]: scoped}
    user = meta.add_ig_user(f"{name}.ig")
    account = out.meta_brand.instagram.id
    igsid = f"{account}:{meta.igsid(user, account)}"
    return user.key, user.username, {fields["user_id"]: igsid, fields["handle"]: user.username}


@dataclass
class Feeder:
    """Posts ``total`` interactions at ``rate`` per second, in a thread; with ``elsewhere``,
    spread over X and the other networks alike."""

    x: XSandbox
    people: People
    total: int
    rate: float
    seed: int
    elsewhere: Elsewhere | None = None
    # post id (X) or external id ("mastodon:<uri>", "bluesky:<at-uri>") → wall-clock time
    created: dict[str, float] = field(default_factory=dict)
    linked: set[str] = field(default_factory=set)  # post ids a linked customer is party to
    cpu_seconds: float = 0.0
    first: float = 0.0
    _thread: threading.Thread | None = None

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="feeder", daemon=True)
        self._thread.start()

    def join(self) -> None:
        if self._thread is not None:
            self._thread.join()

    @property
    def done(self) -> bool:
        return self._thread is not None and not self._thread.is_alive()

    def _run(self) -> None:
        rng = random.Random(self.seed)
        cpu = time.thread_time()
        recent: deque[tuple[str, str, str, bool]] = deque(maxlen=500)  # mention, brand, author
        # network → its recent mentions: (status id or at-uri, author's handle, linked)
        elsewhere: dict[str, deque[tuple[str, str, bool]]] = {}
        networks = ["x", *(self.elsewhere.networks if self.elsewhere else [])]
        started = time.monotonic()
        sent = 0
        self.first = time.time()
        while sent < self.total:
            due = min(self.total, int((time.monotonic() - started) * self.rate) + 1)
            with self.x.lock:  # one burst at a time, as a reader would see it land
                while sent < due:
                    # X alone draws nothing more: its posts stay those of earlier runs.
                    network = rng.choice(networks) if len(networks) > 1 else "x"
                    if network == "x":
                        self._post(rng, recent)
                    else:
                        self._post_elsewhere(
                            network, rng, elsewhere.setdefault(network, deque(maxlen=500))
                        )
                    sent += 1
            pause = started + sent / self.rate - time.monotonic()
            if pause > 0:
                time.sleep(min(pause, TICK))
        self.cpu_seconds = time.thread_time() - cpu

    def _post(self, rng: random.Random, recent: deque[tuple[str, str, str, bool]]) -> None:
        store = self.x.store
        if recent and rng.random() < OUTBOUND_SHARE:
            mention, brand_id, author_id, known = recent[rng.randrange(len(recent))]
            handle = store.users[author_id].username
            post: Any = store.add_post(
                brand_id, f"@{handle} thanks, we are on it", in_reply_to=mention
            )
        else:
            handle, brand_id = self.people.brands[rng.randrange(len(self.people.brands))]
            author_id, known = self.people.authors[rng.randrange(len(self.people.authors))]
            parent = None
            if rng.random() < REPLY_SHARE:
                parent = rng.choice(self.people.brand_posts[brand_id])
            post = store.add_post(
                author_id, f"@{handle} question {len(self.created)}", in_reply_to=parent
            )
            recent.append((str(post.id), brand_id, author_id, known))
        pid = str(post.id)
        self.created[pid] = time.time()
        if known:
            self.linked.add(pid)

    def _post_elsewhere(
        self, network: str, rng: random.Random, recent: deque[tuple[str, str, bool]]
    ) -> None:
        there = self.elsewhere
        assert there is not None
        brand = there.brand[network]
        if network in ("facebook", "instagram"):
            self._post_on_meta(network, rng, recent)
            return
        if recent and rng.random() < OUTBOUND_SHARE:  # the brand answers a recent mention
            parent, handle, known = recent[rng.randrange(len(recent))]
            if network == "mastodon" and there.mastodon is not None:
                text = f"@{handle} thanks, we are on it"
                uri = there.mastodon.add_status(brand, text, in_reply_to=parent).uri
            else:
                assert there.bluesky is not None
                uri = there.bluesky.add_post(brand, "thanks, we are on it", in_reply_to=parent).uri
        else:
            people = there.authors[network]
            author, handle, known = people[rng.randrange(len(people))]
            text = f"@{MASTODON_BRAND if network == 'mastodon' else BLUESKY_BRAND} question"
            text += f" {len(self.created)}"
            if network == "mastodon" and there.mastodon is not None:
                status = there.mastodon.add_status(author, text)
                parent_id, uri = status.id, status.uri
            else:
                assert there.bluesky is not None
                post = there.bluesky.add_post(author, text, mentions=(brand,))
                parent_id = uri = post.uri
            recent.append((parent_id, handle, known))
        key = f"{network}:{uri}"
        self.created[key] = time.time()
        if known:
            self.linked.add(key)

    def _post_on_meta(
        self, network: str, rng: random.Random, recent: deque[tuple[str, str, bool]]
    ) -> None:
        """A customer's comment on one of the brand's posts (old ones too), or the brand's
        reply to a recent one."""
        there = self.elsewhere
        assert there is not None and there.meta is not None and there.meta_brand is not None
        meta, brand = there.meta, there.meta_brand
        store = meta.store
        if recent and rng.random() < OUTBOUND_SHARE:
            parent, handle, known = recent[rng.randrange(len(recent))]
            if network == "facebook":
                item_id = meta.add_reply(parent, brand.page, "thanks, we are on it").id
            else:
                media = store.ig_comments[parent].media_id
                answer = meta.add_ig_comment(media, brand.instagram, "on it", reply_to=parent)
                item_id = answer.id
        else:
            people = there.authors[network]
            author, handle, known = people[rng.randrange(len(people))]
            text = f"question {len(self.created)}"
            post = rng.choice(there.posts[network])
            if network == "facebook":
                item_id = meta.add_comment(post, store.people[author], text).id
            else:
                item_id = meta.add_ig_comment(post, store.ig_users[author], text).id
            recent.append((item_id, handle, known))
        key = f"{network}:{item_id}"
        self.created[key] = time.time()
        if known:
            self.linked.add(key)


SOCIAL_POST_KEY = "Syncd_Key__c"  # [crm] social_post_key_field's default


class WriteClock:
    """Times every post the Salesforce stand-in stores, by its external id: once its Task is
    stored, or with ``social_posts``, once its Task and its SocialPost both are."""

    def __init__(
        self,
        sf: SalesforceSandbox,
        field_name: str = "Social_Post_Id__c",
        *,
        social_posts: bool = False,
    ) -> None:
        self.written: dict[str, float] = {}
        self.writes = 0  # stores, repeats included
        self.firsts = 0  # stores of a record not stored before
        self._field = field_name
        keys = {"Task": field_name} | ({"SocialPost": SOCIAL_POST_KEY} if social_posts else {})
        seen: dict[str, set[str]] = {}

        def on_apply(sobject: str, rec: dict[str, Any]) -> None:
            if sobject in keys:
                self.writes += 1
                key = str(rec.get(keys[sobject]) or "").removeprefix("x:")
                objects = seen.setdefault(key, set())
                if sobject not in objects:
                    self.firsts += 1
                objects.add(sobject)
                if len(objects) == len(keys):
                    self.written.setdefault(key, time.time())

        sf.store.on_apply = on_apply


def percentile(values: list[float], q: float) -> float:
    if not values:
        return 0.0
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


@dataclass
class NaiveReport:
    """The naive pattern's figures (:mod:`naive`), which :mod:`throughput` sets syncd's against."""

    interactions: int = 0
    full: int = 0  # the count it is projected to
    written: int = 0
    expected_written: int = 0
    seconds: float = 0.0
    projected_seconds: float = 0.0
    rate: float = 0.0
    x_requests: int = 0
    sf_calls: int = 0
    sf_per_1000: float = 0.0
    p50: float = 0.0
    p95: float = 0.0
    complete: bool = False
    latency: dict[str, float] = field(default_factory=dict)  # per request, by stand-in
    daily_api_limit: int = 0  # the Salesforce stand-in's allocation for the run


def show_naive(r: NaiveReport) -> None:
    print(f"naive pattern: {r.interactions:,} interactions, one look-up and one create per post, "
          f"API latency {describe_latency(r.latency)}")  # fmt: skip
    print(f"  written              {r.written:,} of {r.expected_written:,} "
          f"(Salesforce daily allocation {r.daily_api_limit:,})")  # fmt: skip
    print(f"  seconds              {r.seconds:.1f}" + (
        f" (projected to {r.full:,}: {r.projected_seconds:,.0f})" if r.full != r.interactions
        else ""))  # fmt: skip
    print(f"  interactions/s       {r.rate:,.0f}")
    print(f"  X requests           {r.x_requests:,}")
    print(f"  Salesforce calls     {r.sf_calls:,} ({r.sf_per_1000:,.0f} per 1,000)")
    print(f"  latency p50 / p95    {r.p50:.1f} s / {r.p95:.1f} s")
