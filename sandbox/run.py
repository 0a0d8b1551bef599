"""The whole sandbox, running: every stand-in, the demo world, posts played, what reached the CRM.

:class:`Sandbox` is what ``syncd demo`` and ``syncd sandbox`` hold, so that neither names a
network: it starts the stand-ins declared in :mod:`sandbox.config`, seeds the demo brand and
its customers (:mod:`sandbox.seed`), renders syncd's configuration for them, plays posts over
time as customers and the brand would, and reads back, as an admin would with SOQL, what syncd
wrote into the CRM.
"""

from __future__ import annotations

import contextlib
import json
import random
import tempfile
import threading
import time
import urllib.parse
import urllib.request
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import click

from sandbox.bluesky.api import BlueskySandbox
from sandbox.config import (
    NETWORKS,
    STANDIN_OF,
    STANDINS,
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
from sandbox.meta.api import MetaSandbox
from sandbox.salesforce.api import SalesforceSandbox
from sandbox.seed import (
    BLUESKY_BRAND,
    BRAND_HANDLES,
    MASTODON_BRAND,
    MetaBrand,
    Played,
    World,
    meta_brand,
    on_file,
    play,
    seed,
)
from sandbox.server import CONTROL_PATH, SandboxServer
from sandbox.x.api import XSandbox

API_VERSION = "61.0"
# What syncd writes for each interaction, read back in the order a rep's timeline shows it.
READBACK = (
    "SELECT Id, WhoId, Subject, Description, ActivityDate, Social_Post_Id__c, "
    "Social_Direction__c, Social_Network__c FROM Task ORDER BY ActivityDate"
)
# How a timeline names each network's records.
NETWORK_TAGS = {"x": "X", "mastodon": "Ma", "bluesky": "Bs", "facebook": "FB", "instagram": "IG"}


@dataclass(frozen=True)
class Entry:
    """One interaction in a customer's CRM timeline."""

    date: str
    outbound: bool  # the brand's post, not the customer's
    subject: str
    text: str  # its first line, whitespace collapsed
    network: str = "-"  # Social_Network__c


@dataclass(frozen=True)
class Timeline:
    title: str  # the customer as the world knows them, or the CRM id of a stranger
    record_id: str
    entries: tuple[Entry, ...]  # oldest post first


@dataclass(frozen=True)
class Readback:
    """What reached the CRM: one timeline per person, the busiest first."""

    timelines: tuple[Timeline, ...]
    records: int
    duplicates: int  # records sharing one post's external id
    label: str  # how the records are named in a report
    via: str  # how they were read
    by_network: dict[str, int] = field(default_factory=dict)  # records per Social_Network__c

    def networks(self) -> str:
        """``x 120, mastodon 41, bluesky 39``: the records of each network, as a report row."""
        return ", ".join(f"{n} {k}" for n, k in self.by_network.items()) or "-"


class Player(threading.Thread):
    """Posts mentions and brand replies over time, as customers and the brand would.

    Midway, a rep creates a Contact for a customer the CRM did not know: everything held for
    that author must then be written, oldest first, without anyone replaying anything.
    """

    def __init__(self, sandbox: Sandbox, world: World, posts: int, seconds: float) -> None:
        super().__init__(name="demo-player", daemon=True)
        self.sandbox, self.world = sandbox, world
        self.posts, self.seconds = posts, seconds
        self.done_at: datetime | None = None
        self.late_contact: str | None = None
        self.counts = {"mention": 0, "reply": 0}
        self.networks: Counter[str] = Counter()

    def run(self) -> None:
        rng = random.Random(11)
        pause = self.seconds / max(self.posts, 1)
        for n in range(self.posts):
            played = self.sandbox.post(rng)
            self.counts[played.kind] += 1
            self.networks[played.network] += 1
            if n == self.posts // 2:
                self._rep_adds_a_contact()
            time.sleep(pause)
        self.done_at = datetime.now(UTC)

    def _rep_adds_a_contact(self) -> None:
        unknown = self.world.by_kind("unknown")
        if unknown:
            c = unknown[0]
            # On file as an X author, with the address their other profiles carry.
            c.crm_id = self.sandbox.salesforce.insert(
                "Contact",
                {"FirstName": c.first, "LastName": c.last, "Email": c.email, **on_file(c)},
            )
            c.kind = "contact_by_id"
            self.late_contact = c.handle

    def played(self) -> str:
        said = f"{self.counts['mention']} mentions, {self.counts['reply']} brand replies"
        if len(self.networks) > 1:
            said += " (" + ", ".join(f"{n} {k}" for n, k in self.networks.items()) + ")"
        return said

    def late_link(self) -> tuple[str, str]:
        """The report's row for the rep's Contact."""
        return (
            "linked late (rep added Contact)",
            f"@{self.late_contact}" if self.late_contact else "-",
        )


class Sandbox:
    """Every stand-in, on loopback; a context manager that starts and stops them all.

    ``networks`` are those of :data:`sandbox.config.NETWORKS` it runs (X always): the brand
    and its customers are on each, and syncd's configuration reads each.
    """

    def __init__(
        self,
        *,
        ports: Mapping[str, int] | None = None,
        secrets: Secrets | None = None,
        networks: Sequence[str] = NETWORKS,
    ):
        ports = dict(ports or {})
        if unknown := set(ports) - {s.name for s in STANDINS}:
            raise ValueError(
                f"no stand-in {sorted(unknown)}; there are {[s.name for s in STANDINS]}"
            )
        if "x" not in networks or set(networks) - set(NETWORKS):
            raise ValueError(f"networks: x and any of {list(NETWORKS[1:])}, not {list(networks)}")
        self.secrets = secrets or Secrets()
        self.mastodon: MastodonSandbox | None = None
        self.bluesky: BlueskySandbox | None = None
        self.meta: MetaSandbox | None = None
        # Of Meta's networks, those played and read (the stand-in serves both regardless).
        self.meta_networks = tuple(n for n in networks if STANDIN_OF[n] == "meta")
        built: list[SandboxServer] = []
        try:  # each binds its port when built: one taken, and those bound already are let go
            self.x = XSandbox(port=ports.get("x", 0), bearer_token=self.secrets.x_bearer)
            built.append(self.x)
            if "mastodon" in networks:
                self.mastodon = MastodonSandbox(port=ports.get("mastodon", 0))
                built.append(self.mastodon)
            if "bluesky" in networks:
                self.bluesky = BlueskySandbox(port=ports.get("bluesky", 0))
                built.append(self.bluesky)
            self.meta_brand: MetaBrand | None = None
            if self.meta_networks:
                self.meta = MetaSandbox(port=ports.get("meta", 0))
                built.append(self.meta)
                # Made now: the configuration names the Page and the account by their ids.
                self.meta_brand = meta_brand(self.meta, self.secrets)
            self.salesforce = SalesforceSandbox(
                port=ports.get("salesforce", 0),
                password=self.secrets.salesforce_password,
                security_token=self.secrets.salesforce_token,
            )
        except BaseException:
            for server in built:
                server.stop()
            raise
        self.accounts: tuple[str, ...] = BRAND_HANDLES
        self.world: World | None = None
        # Where syncd keeps the Bluesky session between polls: the sandbox's, gone with it.
        self._tmp = tempfile.TemporaryDirectory(prefix="syncd-sandbox-")
        self._stack = contextlib.ExitStack()

    @property
    def networks(self) -> tuple[str, ...]:
        servers = self.servers
        return tuple(
            n
            for n in NETWORKS
            if STANDIN_OF[n] in servers and (STANDIN_OF[n] != "meta" or n in self.meta_networks)
        )

    @property
    def servers(self) -> dict[str, SandboxServer]:
        """Each stand-in it runs by its name in :data:`sandbox.config.STANDINS`."""
        servers: dict[str, SandboxServer] = {"x": self.x}
        if self.mastodon is not None:
            servers["mastodon"] = self.mastodon
        if self.bluesky is not None:
            servers["bluesky"] = self.bluesky
        if self.meta is not None:
            servers["meta"] = self.meta
        servers["salesforce"] = self.salesforce
        return servers

    @property
    def account_count(self) -> int:
        """The brand accounts syncd reads, over every network: each has every stream."""
        return len(self.accounts) + len(self.networks) - 1  # one account on each other network

    def __enter__(self) -> Sandbox:
        with contextlib.ExitStack() as stack:
            for server in self.servers.values():
                stack.enter_context(server)
            self._stack = stack.pop_all()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stack.close()
        self._tmp.cleanup()

    def describe(self) -> str:
        """``X stand-in http://127.0.0.1:…  Salesforce stand-in …``"""
        servers = self.servers
        return "  ".join(
            f"{s.title} stand-in {servers[s.name].url}" for s in STANDINS if s.name in servers
        )

    @property
    def crm_title(self) -> str:
        return next(s.title for s in STANDINS if s.name == "salesforce")

    # -- syncd's view --------------------------------------------------------------------
    def environ(self) -> dict[str, str]:
        """The secrets the configuration names, for syncd's environment."""
        return self.secrets.environ()

    def config(
        self,
        state_url: str,
        *,
        source: Mapping[str, TomlValue] | None = None,
        tables: Mapping[str, Mapping[str, TomlValue]] | None = None,
        crm: Mapping[str, TomlValue] | None = None,
    ) -> str:
        """syncd's configuration for this sandbox, reading the brand's accounts on every
        network it runs; ``source``'s keys go to each source, ``crm``'s to ``[crm]``."""
        others: list[Mapping[str, TomlValue]] = []
        if self.mastodon is not None:
            others.append(
                mastodon_source(
                    self.mastodon.url, MASTODON_BRAND, secrets=self.secrets, keys=source
                )
            )
        if self.bluesky is not None:
            session = str(Path(self._tmp.name) / "bluesky.session")
            others.append(
                bluesky_source(
                    self.bluesky.url, BLUESKY_BRAND, session, secrets=self.secrets, keys=source
                )
            )
        if self.meta is not None and self.meta_brand is not None:
            page, account = self.meta_brand.page, self.meta_brand.instagram
            if "facebook" in self.meta_networks:
                others.append(
                    facebook_source(self.meta.url, page.id, secrets=self.secrets, keys=source)
                )
            if "instagram" in self.meta_networks:
                others.append(
                    instagram_source(
                        self.meta.url,
                        account.id,
                        account.username,
                        secrets=self.secrets,
                        keys=source,
                    )
                )
        return syncd_config(
            state_url=state_url,
            x_url=self.x.url,
            salesforce_url=self.salesforce.url,
            accounts=self.accounts,
            secrets=self.secrets,
            source=source,
            crm={
                "api_version": API_VERSION,
                **meta_identity_fields(self.meta_networks),
                **(crm or {}),
            },
            tables=tables,
            sources=others,
        )

    # -- the world -----------------------------------------------------------------------
    def seed(self, customers: int = 300) -> World:
        self.world = seed(
            self.x,
            self.salesforce,
            customers,
            mastodon=self.mastodon,
            bluesky=self.bluesky,
            secrets=self.secrets,
            meta=self.meta,
            meta_networks=self.meta_networks,
            brand=self.meta_brand,
        )
        return self.world

    def seeded(self) -> str:
        """Who the world holds, and how the CRM knows them."""
        w = self._world()
        said = (
            f"seeded {len(w.customers)} customers: "
            f"{len(w.by_kind('contact_by_id'))} Contacts by X id, "
            f"{len(w.by_kind('contact_by_handle'))} by handle only, "
            f"{len(w.by_kind('lead'))} Leads, "
            f"{len(w.by_kind('unknown'))} unknown to the CRM"
        )
        if set(self.networks) & {"mastodon", "bluesky"}:
            on = Counter(len(c.networks) for c in w.customers)
            each = ", ".join(
                f"{n} {len(w.on(n))}" for n in self.networks if n in ("x", "mastodon", "bluesky")
            )
            known = [c for c in w.customers if c.kind != "unknown" and c.networks != {"x"}]
            evidence = sum(c.by_evidence for c in known)
            said += (
                f"\n  on {each}; {on[1]} on one network, {on[2]} on two, {on[3]} on all three"
                "\n  (the CRM holds each network's id and handle fields for the people it knows"
                f" there;\n  {evidence} of the {len(known)} it knows beyond X are not on file"
                " there and link by the e-mail address their profile shows)"
            )
        if self.meta_networks:
            fb = [c for c in w.customers if c.facebook is not None]
            ig = [c for c in w.customers if c.instagram is not None]
            fb_ids = sum(
                c.crm_id is not None and not c.by_evidence
                for c in fb
                if c.kind != "contact_by_handle"
            )
            ig_ids = sum(
                c.crm_id is not None and not c.by_evidence
                for c in ig
                if c.kind != "contact_by_handle"
            )
            typed_ig = sum(c.kind == "contact_by_handle" and not c.by_evidence for c in ig)
            said += (
                f"\n  on Facebook {len(fb)} (the CRM holds the Page-scoped id of {fb_ids}; the"
                " rest it knows by name at most, which never links: review or held),"
                f"\n  on Instagram {len(ig)} (the IGSID of {ig_ids}, a username a rep typed for"
                f" {typed_ig}); some comments come without an author (Meta withholds it)"
            )
        return said

    def post(self, rng: random.Random) -> Played:
        return play(self.x, self._world(), rng)

    def play(self, posts: int, seconds: float) -> Player:
        """Start playing ``posts`` posts over ``seconds``."""
        player = Player(self, self._world(), posts, seconds)
        player.start()
        return player

    def _world(self) -> World:
        if self.world is None:
            raise RuntimeError("the sandbox is not seeded: call seed() first")
        return self.world

    # -- what happened -------------------------------------------------------------------
    def requests(self) -> list[tuple[str, str]]:
        """The API requests each stand-in served, as a report's rows."""
        rows = [
            (f"{s.title} API requests", str(self.servers[s.name].request_count))
            for s in STANDINS
            if s.name in self.servers and s.name != "salesforce"
        ]
        return [*rows, ("Salesforce API calls", str(self.salesforce.api_calls))]

    def soql(self, query: str) -> list[dict[str, Any]]:
        """Every record ``query`` selects, read over the CRM's REST API as an admin would."""
        return self._soql(query)

    def readback(self) -> Readback:
        """The CRM's timelines, read with SOQL over its REST API, as an admin would."""
        tasks = self._soql(READBACK)
        by_who: dict[str, list[dict[str, Any]]] = {}
        for t in tasks:
            by_who.setdefault(str(t["WhoId"]), []).append(t)
        names = {c.crm_id: c for c in self._world().customers if c.crm_id}
        order = self._world().played
        timelines = []
        for who, items in sorted(by_who.items(), key=lambda kv: -len(kv[1])):
            c = names.get(who)
            # In the order played (a Mastodon or Bluesky id is no number to sort by); what
            # was not played comes by date.
            items.sort(key=lambda t: (str(t["ActivityDate"]), order.get(t["Social_Post_Id__c"], 0)))
            entries = tuple(
                Entry(
                    date=str(t["ActivityDate"]),
                    outbound=t["Social_Direction__c"] == "Outbound",
                    subject=str(t["Subject"]),
                    text=" ".join(str(t["Description"]).split("\n")[0].split()),
                    network=str(t.get("Social_Network__c") or "-"),
                )
                for t in items
            )
            title = f"{c.first} {c.last} (@{c.handle})" if c else who
            timelines.append(Timeline(title, who, entries))
        external_ids = [t["Social_Post_Id__c"] for t in tasks]
        return Readback(
            timelines=tuple(timelines),
            records=len(tasks),
            duplicates=len(external_ids) - len(set(external_ids)),
            label=f"Tasks in {self.crm_title} (SOQL)",
            via="SOQL",
            by_network=dict(Counter(str(t.get("Social_Network__c") or "-") for t in tasks)),
        )

    def _soql(self, query: str) -> list[dict[str, Any]]:
        creds = self.salesforce.auth.creds
        form = {
            "grant_type": "client_credentials",
            "client_id": creds.consumer_key,
            "client_secret": creds.consumer_secret,
        }
        token = _json(f"{self.salesforce.url}/services/oauth2/token", data=form)
        headers = {"Authorization": f"Bearer {token['access_token']}"}
        q = urllib.parse.urlencode({"q": query})
        page = _json(f"{token['instance_url']}/services/data/v{API_VERSION}/query?{q}", headers)
        records: list[dict[str, Any]] = page["records"]
        while not page["done"]:
            page = _json(f"{token['instance_url']}{page['nextRecordsUrl']}", headers)
            records += page["records"]
        return records


def _json(
    url: str, headers: dict[str, str] | None = None, data: dict[str, str] | None = None
) -> Any:
    body = urllib.parse.urlencode(data).encode() if data is not None else None
    req = urllib.request.Request(url, data=body, headers=headers or {})
    with urllib.request.urlopen(req, timeout=30) as resp:
        return json.load(resp)


def serve(
    *, ports: Mapping[str, int] | None = None, seed_world: bool = True, post_every: float = 2.0
) -> None:
    """``syncd sandbox``: every stand-in in the foreground, for trying syncd by hand."""
    stop = threading.Event()
    with Sandbox(ports=ports) as sandbox:
        x, sf, secrets = sandbox.x, sandbox.salesforce, sandbox.secrets
        click.echo(f"X API v2 stand-in:      {x.url}   (bearer token: {secrets.x_bearer})")
        if sandbox.mastodon is not None:
            click.echo(
                f"Mastodon stand-in:      {sandbox.mastodon.url}   (api_base_url;"
                f" @{MASTODON_BRAND}'s access token: {secrets.mastodon_token})"
            )
        if sandbox.bluesky is not None:
            click.echo(
                f"Bluesky stand-in:       {sandbox.bluesky.url}   (service; {BLUESKY_BRAND}'s"
                f" app password: {secrets.bluesky_password})"
            )
        if sandbox.meta is not None and sandbox.meta_brand is not None:
            page, account = sandbox.meta_brand.page, sandbox.meta_brand.instagram
            click.echo(
                f"Meta Graph stand-in:    {sandbox.meta.url}   (api_base_url; Page {page.id}"
                f" and Instagram account {account.id}, Page token: {secrets.meta_page_token})"
            )
        click.echo(f"Salesforce stand-in:    {sf.url}   (login_url)")
        click.echo(f"  username {sf.auth.creds.username}, password {secrets.salesforce_password},")
        click.echo(f"  security token {secrets.salesforce_token}")
        for n, server in enumerate(sandbox.servers.values()):
            label = "fault injection:" if n == 0 else ""
            click.echo(f"{label:<24}POST/GET/DELETE {server.url}{CONTROL_PATH}")
        click.echo('  e.g. {"kind": "status", "endpoint": "mentions", "status": 503, "count": 3}')
        if seed_world:
            world = sandbox.seed()
            brand = "@acme and @acmesupport on X"
            if sandbox.mastodon is not None:
                brand += f", @{MASTODON_BRAND} on Mastodon"
            if sandbox.bluesky is not None:
                brand += f", @{BLUESKY_BRAND} on Bluesky"
            if sandbox.meta_brand is not None:
                page, account = sandbox.meta_brand.page, sandbox.meta_brand.instagram
                brand += f", the Page {page.name} and @{account.username} on Instagram"
            click.echo(
                f"seeded brand {brand} with {len(world.customers)} customers;"
                f" a new mention or reply every {post_every:g}s"
            )
            rng = random.Random()
            with contextlib.suppress(KeyboardInterrupt):
                while not stop.wait(post_every):
                    sandbox.post(rng)
        else:
            with contextlib.suppress(KeyboardInterrupt):
                stop.wait()
