"""Crash safety, measured: SIGKILL ``syncd run`` at chosen moments and count CRM records.

The X and Salesforce stand-ins run in this process; ``syncd run`` runs as a child process
against them while a player posts mentions and brand replies over time. The child is killed
with SIGKILL at random moments of four kinds, and restarted each time:

- ``ingest``: a few milliseconds after an X timeline page left the stand-in, while the child
  parses and stores it;
- ``crm-batch``: while a Task upsert is on its way to Salesforce, before Salesforce stores it;
- ``crm-answered``: after Salesforce stored the batch, before the answer reaches the child,
  which therefore never commits it: the window the external-id upsert must make harmless;
- ``timer``: at a random time.

With ``--fault-rate`` a fraction of all API calls also fail (5xx, stalls past the client
timeout, dropped connections, malformed JSON, 429s, expired sessions, row locks). At the end it
counts Salesforce Tasks per interaction and prints kills, faults, lost, duplicated and the
seconds the last child took to converge.

What it asserts (exit status 0 only if all hold): the source's ``start`` is the moment before
the player's first post, so every post played is after it; each one (mention or brand reply)
reached Salesforce as exactly one Task (lost 0, duplicated 0), and no Task stands for anything
else (unexpected 0); with ``--history task,social_post``, as exactly one Task and one
SocialPost, counted per target. The first child may start seconds after the first posts (a
loaded machine starts Python slowly, and kills come early), and posts arrive faster than X's
800-mention horizon allows a late or interrupted walk to reach: what such a walk could not
reach is a gap, recovered by search, which the report counts beside the walks the X stand-in
cut.

    python bench/chaos.py                      # 5,000 interactions, 50 kills, 0 % and 20 %
    python bench/chaos.py --interactions 300 --kills 10 --fault-rate 0.2 --json
    python bench/chaos.py --networks x,mastodon,bluesky   # the brand on all three networks
    python bench/chaos.py --networks meta       # X, the Facebook Page and Instagram account
    python bench/chaos.py --history task,social_post   # a Task and a SocialPost per post
    python bench/chaos.py --history task,social_post --social-post-match query  # no key field
    python bench/chaos.py --history task,social_post --cases   # and each conversation a Case

``--networks`` (default ``x``, so figures stay comparable with earlier runs) starts the
Mastodon and Bluesky stand-ins too, with the brand and its customers on them
(:mod:`sandbox.seed`), plays posts on each, and injects faults into each (their own kinds:
Mastodon's 429 with an ISO reset, Bluesky's expired access token). The same assertions hold
for every network's posts. ``facebook`` and ``instagram`` (``meta``: both) start the Meta
stand-in: customers comment on the Page's posts and the account's media, weeks-old ones as
well as new (a comment on an old post moves its ``updated_time``, not its place), write on
Messenger, and the brand answers; its faults are Graph's throttles with the usage headers
(a few, each pausing the account for the minute ``estimated_time_to_regain_access`` says)
and transient 500s, besides the common ones. Halfway through the posts the Page token
expires, once and for good as a real one does (190/463), and the run plays the admin once
both accounts are parked: a new token in the credential file, ``syncd resume``; what was
posted meanwhile must arrive like the rest. Every author is known (the CRM holds their
Page-scoped id or IGSID) and Meta withholds no ``from``, so each post has exactly one right
answer. No stream may be parked on unreadable answers: a fault drawn at random is no answer
broken every time.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import random
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from common import SECRETS, networks_arg, salesforce_standin, x_standin
from sqlalchemy import Connection, func, select
from sqlalchemy.exc import OperationalError

from sandbox.bluesky.api import BlueskySandbox
from sandbox.config import (
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
    BRAND_HANDLES,
    MASTODON_BRAND,
    World,
    file_everyone,
    play,
    seed,
)
from sandbox.server import SandboxServer
from sandbox.x.api import XSandbox
from syncd.state.db import Database
from syncd.state.tables import cursors, deliveries, gaps, interactions, parked

KILL_KINDS = ("ingest", "crm-batch", "crm-answered", "timer")
CLIENT_TIMEOUT = 2.0  # seconds; a "stall" fault waits longer than this

# Faults drawn at the configured total rate. The Salesforce request limit is left out on
# purpose: syncd rightly pauses writing for an hour on it, which no benchmark waits for.
X_FAULTS: list[tuple[str, dict[str, Any]]] = [
    ("status", {"status": 500}),
    ("status", {"status": 503}),
    ("stall", {"seconds": CLIENT_TIMEOUT + 1}),
    ("drop", {}),
    ("malformed", {}),
    ("rate_limit", {"reset": True, "seconds": 1}),
]
SF_FAULTS: list[tuple[str, dict[str, Any]]] = [
    ("status", {"status": 502}),
    ("stall", {"seconds": CLIENT_TIMEOUT + 1, "phase": "after"}),
    ("drop", {"phase": "after"}),
    ("malformed", {}),
    ("session_expired", {}),
    ("lock_row", {}),
]
# The other networks' own kinds beside the common ones: Mastodon's 429 (an ISO reset a
# second away), Bluesky's 429 and its access token expiring server-side.
MASTODON_FAULTS: list[tuple[str, dict[str, Any]]] = [
    ("status", {"status": 500}),
    ("status", {"status": 503}),
    ("stall", {"seconds": CLIENT_TIMEOUT + 1}),
    ("drop", {}),
    ("malformed", {}),
    ("rate_limit", {"seconds": 1}),
]
BLUESKY_FAULTS: list[tuple[str, dict[str, Any]]] = [
    ("status", {"status": 502}),
    ("stall", {"seconds": CLIENT_TIMEOUT + 1}),
    ("drop", {}),
    ("malformed", {}),
    ("rate_limit", {"seconds": 1}),
    ("expired_token", {}),
]
# Meta's: transient 500s and the common ones. Its throttles are injected a few times, not at
# a rate: each pauses the account for a whole minute. An expired Page token (190/463) is no
# transient fault (Meta never takes it back: an admin issues a new one), so it is not drawn
# at random: the token expires once, for good, and the run plays the admin (TokenExpiry).
META_FAULTS: list[tuple[str, dict[str, Any]]] = [
    ("status", {"status": 500}),
    ("status", {"status": 503}),
    ("stall", {"seconds": CLIENT_TIMEOUT + 1}),
    ("drop", {}),
    ("malformed", {}),
]
META_THROTTLES: list[dict[str, Any]] = [
    {"error_code": 80001, "minutes": 1},  # the Page's budget
    {"error_code": 80002, "minutes": 1},  # the Instagram account's
    {"error_code": 613, "minutes": 1},
]
# The reads a kill "mid-ingest" follows, per stand-in: its timelines or notifications.
PAGES = {
    "x": ("mentions", "user_tweets"),
    "mastodon": ("notifications", "account_statuses"),
    "bluesky": ("listNotifications", "getAuthorFeed"),
    "meta": ("feed", "media", "comments"),
}


@dataclass
class Report:
    interactions: int
    fault_rate: float
    networks: list[str] = field(default_factory=lambda: ["x"])
    played: dict[str, int] = field(default_factory=dict)  # posts played per network
    kills: int = 0
    kills_by_kind: dict[str, int] = field(default_factory=dict)
    requests: int = 0  # API requests every stand-in served, faulted ones included
    faults_injected: int = 0
    faults_by_kind: dict[str, int] = field(default_factory=dict)
    faults_by_network: dict[str, dict[str, int]] = field(default_factory=dict)  # "salesforce" too
    # Bluesky sessions refreshed: the client's answer to an expired token (and to its expiry).
    bluesky_refreshes: int = 0
    lost: int = 0
    duplicated: int = 0
    unexpected: int = 0  # Tasks for no interaction at all
    history: list[str] = field(default_factory=lambda: ["task"])  # [crm] history
    social_post_match: str = "key"  # [crm] social_post_match
    # Per history target: lost, duplicated and unexpected records (summed in the three above).
    by_target: dict[str, dict[str, int]] = field(default_factory=dict)
    # [crm.cases]: Cases opened; posts a Case was lost for (an inbound post of a customer
    # linked to a Contact whose records name no Case, or name a Case that does not exist, or
    # whose Task and SocialPost name different ones); Cases duplicated (one key twice, or
    # a Case no record names: a conversation opened twice and continued in the other).
    cases: bool = False
    cases_opened: int = 0
    cases_lost: int = 0
    cases_duplicated: int = 0
    cases_lost_sample: list[str] = field(default_factory=list)
    converge_seconds: float = 0.0
    total_seconds: float = 0.0
    tracebacks: int = 0
    horizon_cuts: int = 0  # walks X cut at its 800-mention horizon (issue 8's gap recovery)
    gaps: int = 0  # gaps syncd recorded (a cut walk, or one that may have been)
    gaps_closed: int = 0
    recovered: int = 0  # posts gap searches found that no walk had read
    first_poll_after: float = 0.0  # seconds from the first post to the first page stored
    lost_by_kind: dict[str, int] = field(default_factory=dict)  # network mention / reply
    lost_sample: list[str] = field(default_factory=list)
    # The Meta token's expiry (TokenExpiry): the accounts parked on it, seconds from the
    # expiry until all were, whether `syncd resume` (after the new token) succeeded, and the
    # posts made while they were parked.
    token_parked: list[str] = field(default_factory=list)
    token_parked_after: float = 0.0
    token_resumed: bool | None = None  # None: no Meta network in the run
    posted_while_parked: int = 0
    # Streams the daemon parked on unreadable answers ("… parked: 5 unreadable answers …").
    unreadable_parks: int = 0

    @property
    def ok(self) -> bool:
        return (
            self.lost == 0
            and self.duplicated == 0
            and self.unexpected == 0
            and self.token_resumed is not False
            and self.unreadable_parks == 0
            and self.cases_lost == 0
            and self.cases_duplicated == 0
        )


class Player(threading.Thread):
    """Posts ``n`` mentions and brand replies over ``seconds`` on the world's networks;
    remembers each as the CRM keys it (``x:<id>``, ``mastodon:<uri>``, ``bluesky:<at-uri>``)."""

    def __init__(self, x: XSandbox, world: World, n: int, seconds: float, rng_seed: int) -> None:
        super().__init__(name="chaos-player", daemon=True)
        self.x, self.world, self.n, self.seconds = x, world, n, seconds
        self.rng = random.Random(rng_seed)
        self.post_ids: list[str] = []
        self.kinds: dict[str, str] = {}  # external id → "<network> mention" / "… reply"
        self.halfway = threading.Event()
        self.done = threading.Event()

    def run(self) -> None:
        pause = self.seconds / max(self.n, 1)
        start = time.monotonic()
        for i in range(self.n):
            played = play(self.x, self.world, self.rng)
            self.post_ids.append(played.external_id)
            self.kinds[played.external_id] = f"{played.network} {played.kind}"
            if i + 1 >= self.n // 2:
                self.halfway.set()
            # Keep to the schedule without drifting when add_post is slow.
            time.sleep(max(0.0, start + (i + 1) * pause - time.monotonic()))
        self.done.set()


class Child:
    """One ``syncd run`` process."""

    def __init__(self, config: Path, log: Path) -> None:
        self.log = log.open("a")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "syncd", "--config", str(config), "run"],
            stdout=subprocess.DEVNULL,
            stderr=self.log,
            env=os.environ.copy(),
        )

    def kill(self) -> None:
        with contextlib.suppress(ProcessLookupError):  # it may have died on its own
            os.kill(self.proc.pid, signal.SIGKILL)

    def wait(self, timeout: float = 30.0) -> int:
        code = self.proc.wait(timeout)
        self.log.close()
        return code

    def terminate(self) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        return self.wait()


class TokenExpiry(threading.Thread):
    """Meta's Page token expires once, mid-run, and an admin does what the log and README
    say: once ``syncd status`` shows the accounts parked, a new Page token is issued,
    written over the credential file the config names, and ``syncd resume`` names the
    accounts. Each Meta account gets a post from a known customer while parked: nothing
    made meanwhile may be lost (the cursor and marks wait, parked, where they were)."""

    RENEWED = "chaos-renewed-meta-page-token"
    PARK_WAIT = 120.0  # seconds; a child killed meanwhile resumes all, and parks them again

    def __init__(
        self,
        meta: MetaSandbox,
        world: World,
        *,
        token: str,
        token_file: Path,
        config: Path,
        state_url: str,
        sources: list[str],
        start: threading.Event,
        rng: random.Random,
    ) -> None:
        super().__init__(name="chaos-token-expiry", daemon=True)
        self.meta, self.world, self.token, self.token_file = meta, world, token, token_file
        self.config, self.state_url, self.sources = config, state_url, sources
        self.start_event, self.rng = start, rng
        self.done = threading.Event()
        self.parked: list[str] = []
        self.parked_after = 0.0
        self.resumed: bool | None = None
        self.kinds: dict[str, str] = {}  # external id → kind, of the posts made while parked

    def run(self) -> None:
        try:
            self.start_event.wait()
            # Once each Meta source has stored a walk: the accounts are parked mid-run, their
            # cursors and marks kept, not before their set-up.
            self._wait(self._walked)
            self.meta.expire_token(self.token)
            expired = time.monotonic()
            self.parked = self._wait_parked()
            self.parked_after = round(time.monotonic() - expired, 1)
            self._post_while_parked()
            page = self.world.page
            assert page is not None
            self.meta.add_token(self.RENEWED, page.id)
            self.token_file.write_text(self.RENEWED)
            resume = subprocess.run(
                [sys.executable, "-m", "syncd", "--config", str(self.config), "resume"]
                + (self.parked or ["--all"]),
                capture_output=True,
                env=os.environ.copy(),
                timeout=120,
            )
            self.resumed = bool(self.parked) and resume.returncode == 0
        except BaseException:
            self.resumed = False  # the run fails, rather than pass without the episode
            raise
        finally:
            self.done.set()

    def _wait_parked(self) -> list[str]:
        """The Meta accounts, once all are parked at once (none: the wait ran out)."""
        return self._wait(self._parked) or []

    def _wait(self, check: Callable[[Connection], list[str] | None]) -> list[str] | None:
        """``check``'s answer once it gives one, asked every 0.25 s (None: the wait ran out)."""
        db = Database(self.state_url)
        try:
            deadline = time.monotonic() + self.PARK_WAIT
            while time.monotonic() < deadline:
                with contextlib.suppress(OperationalError), db.connect() as conn:
                    if (found := check(conn)) is not None:  # no tables before the first child
                        return found
                time.sleep(0.25)
            return None
        finally:
            db.dispose()

    def _walked(self, conn: Connection) -> list[str] | None:
        done = conn.execute(
            select(cursors.c.source).where(cursors.c.last_success_at.is_not(None))
        ).scalars()
        return [] if set(self.sources) <= set(done) else None

    def _parked(self, conn: Connection) -> list[str] | None:
        rows = conn.execute(select(parked.c.name).where(parked.c.kind == "auth")).scalars()
        names = sorted(str(n) for n in rows if str(n).split(":", 1)[0] in self.sources)
        # An account ("acme-facebook:<page id>"), or a source whose set-up was refused.
        return names if {n.split(":", 1)[0] for n in names} == set(self.sources) else None

    def _post_while_parked(self) -> None:
        w, meta, rng = self.world, self.meta, self.rng
        text = "still waiting for an answer"
        if "facebook" in w.meta_networks:
            c = rng.choice([c for c in w.customers if c.facebook is not None])
            assert c.facebook is not None
            made = meta.add_comment(rng.choice(w.page_posts), c.facebook, text)
            self.kinds[f"facebook:{made.id}"] = "facebook mention while parked"
        if "instagram" in w.meta_networks:
            c = rng.choice([c for c in w.customers if c.instagram is not None])
            assert c.instagram is not None
            ig = meta.add_ig_comment(rng.choice(w.media), c.instagram, text)
            self.kinds[f"instagram:{ig.id}"] = "instagram mention while parked"


class Killer:
    """Arms one kill of a chosen kind against the current child; fires once."""

    def __init__(
        self,
        networks: dict[str, SandboxServer],
        sf: SalesforceSandbox,
        rng: random.Random,
    ) -> None:
        self.networks, self.sf, self.rng = networks, sf, rng
        self.fired = threading.Event()
        self.fired_kind = ""
        self.child: Child | None = None
        self._lock = threading.Lock()

    def arm(self, child: Child, kind: str, timer: float) -> None:
        self.child = child
        self.fired.clear()
        for server in self.networks.values():
            server.remove_hooks()
        self.sf.remove_hooks()
        if kind == "ingest":
            for network, server in self.networks.items():
                for endpoint in PAGES[network]:
                    server.on_request(endpoint, self._after_page, phase="after")
        elif kind in ("crm-batch", "crm-answered"):
            phase = "before" if kind == "crm-batch" else "after"
            self.sf.on_request("composite", lambda _r: self._kill(child, kind), phase=phase)
        # Every kind also has a deadline: a child that never reaches the moment dies anyway.
        threading.Timer(timer, self._kill, args=(child, "timer")).start()

    def _kill(self, child: Child, kind: str) -> None:
        with self._lock:
            if self.fired.is_set() or child is not self.child:
                return
            child.kill()
            self.fired_kind = kind
            self.fired.set()

    def _after_page(self, _request: object) -> None:
        # The page is about to be sent: kill while the child stores it.
        child = self.child
        assert child is not None
        delay = self.rng.uniform(0.001, 0.03)
        threading.Timer(delay, self._kill, args=(child, "ingest")).start()


def _settled(db: Database, since: datetime) -> bool:
    """Every delivery written, and every stream walked by the last child, as its state says."""
    with db.connect() as conn:
        unwritten = conn.execute(
            select(func.count()).where(deliveries.c.state != "written")
        ).scalar_one()
        stored = conn.execute(select(func.count()).select_from(deliveries)).scalar_one()
        walked = conn.execute(select(func.min(cursors.c.last_success_at))).scalar_one()
    return unwritten == 0 and stored > 0 and walked is not None and walked > since


def _gaps(db: Database) -> tuple[int, int, int, datetime | None]:
    """Gaps recorded, closed, the posts their searches recovered; when the first page of a
    live walk was stored."""
    with db.connect() as conn:
        rows = conn.execute(select(gaps.c.state, gaps.c.recovered)).all()
        first = conn.execute(select(func.min(interactions.c.fetched_at))).scalar_one()
    closed = [r for r in rows if r.state == "closed"]
    return len(rows), len(closed), sum(r.recovered for r in closed), first


def _faults(
    server: SandboxServer, menu: list[tuple[str, dict[str, Any]]], total_rate: float
) -> None:
    # Each kind an equal share of the calls (one rate for all favoured the first kinds: a
    # rule is drawn only for calls every rule before it let pass).
    server.inject_mix(menu, total_rate)


def run(
    *,
    interactions: int,
    kills: int,
    fault_rate: float,
    seconds: float,
    customers: int,
    rng_seed: int,
    workdir: Path,
    state_url: str | None,
    converge_timeout: float,
    quiet: bool,
    networks: tuple[str, ...] = ("x",),
    history: tuple[str, ...] = ("task",),
    social_post_match: str = "key",
    cases: bool = False,
) -> Report:
    report = Report(
        interactions=interactions,
        fault_rate=fault_rate,
        networks=list(networks),
        history=list(history),
        social_post_match=social_post_match,
        cases=cases,
    )
    rng = random.Random(rng_seed)
    started = time.monotonic()

    def say(*parts: object) -> None:
        if not quiet:
            print(*parts, file=sys.stderr, flush=True)

    big = {"mentions": 10**7, "user_tweets": 10**7, "user_lookup": 10**7, "tweet_lookup": 10**7}
    with contextlib.ExitStack() as stack:
        x = stack.enter_context(x_standin(rate_limits=big))
        sf = stack.enter_context(salesforce_standin())
        assert isinstance(x, XSandbox) and isinstance(sf, SalesforceSandbox)
        # The networks' own limits lifted as X's are: this measures crash safety, not them.
        mastodon: MastodonSandbox | None = None
        bluesky: BlueskySandbox | None = None
        if "mastodon" in networks:
            lifted = {"all": (10**7, 300.0), "paginated": (10**7, 900.0)}
            mastodon = MastodonSandbox(limits=lifted)
            stack.enter_context(mastodon)
        if "bluesky" in networks:
            bluesky = BlueskySandbox(requests_per_window=10**7)
            stack.enter_context(bluesky)
        meta_networks = tuple(n for n in networks if n in ("facebook", "instagram"))
        meta: MetaSandbox | None = None
        if meta_networks:
            meta = MetaSandbox(budgets={k: (10**7, w) for k, (_, w) in META_BUDGETS.items()})
            stack.enter_context(meta)
        servers: dict[str, SandboxServer] = {"x": x}
        servers.update({"mastodon": mastodon} if mastodon else {})
        servers.update({"bluesky": bluesky} if bluesky else {})
        servers.update({"meta": meta} if meta else {})
        world = seed(
            x,
            sf,
            customers=customers,
            rng_seed=rng_seed,
            mastodon=mastodon,
            bluesky=bluesky,
            secrets=SECRETS,
            meta=meta,
            meta_networks=meta_networks,
        )
        world.withhold = 0.0  # an author-less comment is written nowhere: no right answer
        file_everyone(world, sf)  # every author a known customer: one right answer each
        if "social_post" in history and social_post_match == "key":
            # As `syncd salesforce fields` makes them: the SocialPost and SocialPersona keys.
            for sobject in ("SocialPost", "SocialPersona"):
                sf.add_field(sobject, SOCIAL_POST_KEY, external_id=True, unique=True)
        targets: dict[str, TomlValue] = (
            {"history": list(history), "social_post_match": social_post_match}
            if history != ("task",)
            else {}
        )
        if cases:
            # As `syncd salesforce fields` makes it with [crm.cases]: the Case key.
            sf.add_field("Case", SOCIAL_POST_KEY, external_id=True, unique=True)
            targets["cases"] = {"open": "all"}
        os.environ.update(SECRETS.environ())
        config = workdir / "config.toml"
        # Posts are played from the next instant on, and each has a later id than this start.
        start = datetime.now(UTC)
        keys: dict[str, TomlValue] = {
            "interval": "1s",
            "timeout": f"{CLIENT_TIMEOUT}s",
            "start": start.isoformat(timespec="milliseconds"),
        }
        others: list[dict[str, TomlValue]] = []
        if mastodon is not None:
            others.append(mastodon_source(mastodon.url, MASTODON_BRAND, secrets=SECRETS, keys=keys))
        if bluesky is not None:
            session = str(workdir / "bluesky.session")
            others.append(
                bluesky_source(bluesky.url, BLUESKY_BRAND, session, secrets=SECRETS, keys=keys)
            )
        # The Page token in a credential file, as README has an admin keep it: TokenExpiry
        # writes the new one there.
        token_file = workdir / "meta-page-token"
        token_file.write_text(SECRETS.meta_page_token)
        meta_keys = {**keys, "access_token": f"file:{token_file}"}
        if meta is not None and world.page is not None and "facebook" in meta_networks:
            others.append(facebook_source(meta.url, world.page.id, keys=meta_keys))
        if meta is not None and world.instagram is not None and "instagram" in meta_networks:
            account = world.instagram
            others.append(instagram_source(meta.url, account.id, account.username, keys=meta_keys))
        config.write_text(
            syncd_config(
                state_url=state_url or f"sqlite:///{workdir / 'state.db'}",
                x_url=x.url,
                salesforce_url=sf.url,
                accounts=BRAND_HANDLES,
                secrets=SECRETS,
                source_name="x",
                source={
                    "interval": "1s",
                    "timeout": f"{CLIENT_TIMEOUT}s",
                    # The moment before the first post is played: each stream's first walk
                    # reads back to it.
                    "start": start.isoformat(timespec="milliseconds"),
                },
                crm={
                    "timeout": f"{CLIENT_TIMEOUT}s",
                    **meta_identity_fields(meta_networks),
                    **targets,
                },
                tables={
                    "daemon": {
                        "write_interval": "500ms",
                        "resolve_interval": "1s",
                        "jitter": "100ms",
                        # On PostgreSQL a killed child's claimed deliveries wait out its lease
                        # before the restarted one (a new owner) takes them: short, so a run is
                        # not mostly waiting.
                        "lease": "5s",
                    },
                    "resolver": {"retry_after": "1s", "max_retry_after": "2s"},
                    "writer": {"retries": 3},
                },
                sources=others,
            )
        )
        log = workdir / "syncd.log"
        if fault_rate > 0:
            x.faults.seed = rng_seed
            sf.faults.seed = rng_seed + 1
            _faults(x, X_FAULTS, fault_rate)
            _faults(sf, SF_FAULTS, fault_rate)
            if mastodon is not None:
                mastodon.faults.seed = rng_seed + 2
                _faults(mastodon, MASTODON_FAULTS, fault_rate)
            if bluesky is not None:
                bluesky.faults.seed = rng_seed + 3
                _faults(bluesky, BLUESKY_FAULTS, fault_rate)
            if meta is not None:
                meta.faults.seed = rng_seed + 4
                _faults(meta, META_FAULTS, fault_rate)
                for options in META_THROTTLES:
                    meta.inject("throttle", endpoint="*", count=1, **options)

        player = Player(x, world, interactions, seconds, rng_seed)
        expiry: TokenExpiry | None = None
        if meta is not None:
            expiry = TokenExpiry(
                meta,
                world,
                token=SECRETS.meta_page_token,
                token_file=token_file,
                config=config,
                state_url=state_url or f"sqlite:///{workdir / 'state.db'}",
                sources=[str(s["name"]) for s in others if s["type"] in meta_networks],
                start=player.halfway,
                rng=random.Random(rng_seed + 5),
            )
            expiry.start()
        player.start()
        killer = Killer(servers, sf, rng)
        # Spread the kills over the arrival time; the child lives 0.3–2x that gap.
        gap = seconds / max(kills, 1)
        for n in range(kills):
            child = Child(config, log)
            kind = rng.choice(KILL_KINDS)
            # A moment-bound kill waits for its moment; the deadline only catches a child
            # that never gets there (start-up takes about a second).
            deadline = rng.uniform(0.3, max(0.6, 2 * gap)) if kind == "timer" else 5.0
            killer.arm(child, kind, timer=deadline)
            if not killer.fired.wait(60):
                raise RuntimeError(f"kill {n} ({kind}) never fired: is the child stuck?")
            fired = killer.fired_kind
            report.kills_by_kind[fired] = report.kills_by_kind.get(fired, 0) + 1
            report.kills += 1
            child.wait()
            say(f"kill {report.kills}/{kills}: {fired}")
        for server in servers.values():
            server.remove_hooks()
        sf.remove_hooks()
        player.join()
        report.played = dict(Counter(e.split(":", 1)[0] for e in player.post_ids))

        # The last child runs until everything played has reached the CRM (and the Meta
        # token's admin is done: what was posted while its accounts were parked, too).
        last = Child(config, log)
        t0, born = time.monotonic(), datetime.now(UTC)
        kinds = dict(player.kinds)
        db = Database(state_url or f"sqlite:///{workdir / 'state.db'}")
        while time.monotonic() - t0 < converge_timeout:
            ready = expiry is None or expiry.done.is_set()
            expected = set(player.post_ids) | (set(expiry.kinds) if expiry else set())
            got = [set(_records(sf, t, social_post_match)) for t in history]
            if ready and all(expected <= g for g in got) and _settled(db, born):
                break
            time.sleep(0.25)
        if expiry is not None:
            kinds |= expiry.kinds
            report.token_parked, report.token_resumed = expiry.parked, expiry.resumed
            report.token_parked_after = expiry.parked_after
            report.posted_while_parked = len(expiry.kinds)
            if not expiry.done.is_set():
                report.token_resumed = False
        expected = set(kinds)
        report.gaps, report.gaps_closed, report.recovered, first = _gaps(db)
        report.first_poll_after = round((first - start).total_seconds(), 1) if first else -1.0
        db.dispose()
        report.converge_seconds = round(time.monotonic() - t0, 1)
        if (code := last.terminate()) != 0:
            say(f"the last child exited with {code}")
        lost_kinds: Counter[str] = Counter()
        for target in history:
            counts = _records(sf, target, social_post_match)
            lost = sorted(e for e in expected if counts[e] == 0)
            lost_kinds.update(kinds[e] for e in lost)
            report.lost_sample += [f"{e} ({target})" for e in lost[:10]]
            # A SocialPost's persona made twice (one author, network and user id) counts too.
            twice = _persona_duplicates(sf) if target == "social_post" else 0
            report.by_target[target] = {
                "lost": len(lost),
                "duplicated": twice
                + sum(n - 1 for e, n in counts.items() if e in expected and n > 1),
                "unexpected": sum(n for e, n in counts.items() if e not in expected),
            }
        report.lost_by_kind = dict(lost_kinds)
        report.lost_sample = report.lost_sample[:10]
        if cases:
            _check_cases(sf, report, expected, history)
        for key in ("lost", "duplicated", "unexpected"):
            setattr(report, key, sum(t[key] for t in report.by_target.values()))
        everyone = [*servers.values(), sf]
        report.faults_injected = sum(s.faults.injected for s in everyone)
        report.requests = sum(s.request_count for s in everyone)
        by_kind: Counter[str] = Counter()
        for server in everyone:
            by_kind.update(server.faults.injected_by_kind)
        report.faults_by_kind = dict(by_kind)
        named = {**servers, "salesforce": sf}
        report.faults_by_network = {
            name: dict(sorted(s.faults.injected_by_kind.items())) for name, s in named.items()
        }
        if bluesky is not None:
            refresh = "POST ^/xrpc/com.atproto.server.refreshSession/?$"
            report.bluesky_refreshes = bluesky.requests_by_route.get(refresh, 0)
        text = log.read_text()
        report.tracebacks = text.count("Traceback")
        report.unreadable_parks = text.count("unreadable answers in a row")
        report.horizon_cuts = x.store.horizon_cuts
    report.total_seconds = round(time.monotonic() - started, 1)
    return report


SOCIAL_POST_KEY = "Syncd_Key__c"  # [crm] social_post_key_field's default


def _check_cases(
    sf: SalesforceSandbox, report: Report, expected: set[str], history: tuple[str, ...]
) -> None:
    """Every inbound post of a customer linked to a Contact is in a Case that exists, the
    same one on its Task and its SocialPost; no Case twice, none that no record names."""
    made = Counter(str(c[SOCIAL_POST_KEY]) for c in sf.records("Case"))
    ids = {str(c["Id"]) for c in sf.records("Case")}
    report.cases_opened = len(ids)
    named: dict[str, set[str | None]] = {}
    inbound: set[str] = set()
    for t in sf.records("Task"):
        key = str(t["Social_Post_Id__c"])
        named.setdefault(key, set()).add(t.get("WhatId"))
        # A Case names a Contact (Ids 003…); a Lead's posts have none.
        if t.get("Social_Direction__c") == "Inbound" and str(t.get("WhoId")).startswith("003"):
            inbound.add(key)
    if "social_post" in history:
        for post in sf.records("SocialPost"):
            named.setdefault(str(post[SOCIAL_POST_KEY]), set()).add(post.get("ParentId"))
    lost = sorted(
        k for k in expected & inbound if len(named.get(k, set())) != 1 or not (named[k] <= ids)
    )
    report.cases_lost = len(lost)
    report.cases_lost_sample = lost[:10]
    used = {case for names in named.values() for case in names if case}
    report.cases_duplicated = sum(n - 1 for n in made.values() if n > 1) + len(ids - used)


def _persona_duplicates(sf: SalesforceSandbox) -> int:
    """SocialPersonas beyond one per network account."""
    made = Counter(
        (p.get("Provider"), str(p.get("MediaProvider") or "").casefold(), p.get("ExternalId"))
        for p in sf.records("SocialPersona")
    )
    return sum(n - 1 for n in made.values() if n > 1)


# SocialPost.Provider → the network syncd names ("Other": MediaProvider names it).
_NETWORKS = {"Twitter": "x", "Facebook": "facebook", "Instagram": "instagram"}


def _records(sf: SalesforceSandbox, target: str, match: str) -> Counter[str]:
    """The records of one history target in the org, by the post's key (``x:<id>``)."""
    if target == "task":
        return Counter(str(t["Social_Post_Id__c"]) for t in sf.records("Task"))
    if match == "key":
        return Counter(str(p[SOCIAL_POST_KEY]) for p in sf.records("SocialPost"))
    # No key field: a SocialPost is told by its network and the network's post id.
    return Counter(
        f"{_NETWORKS.get(p['Provider'], p['MediaProvider'])}:{p['ExternalPostId']}"
        for p in sf.records("SocialPost")
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--interactions", type=int, default=5000)
    parser.add_argument("--kills", type=int, default=50)
    parser.add_argument(
        "--fault-rate",
        type=float,
        action="append",
        help="Fraction of API calls that fail; repeatable (default: 0 and 0.2).",
    )
    parser.add_argument("--seconds", type=float, default=None, help="Arrival time of the posts.")
    parser.add_argument("--customers", type=int, default=200)
    networks_arg(parser)
    parser.add_argument(
        "--history",
        default="task",
        help="[crm] history: task, social_post or task,social_post (default: task).",
    )
    parser.add_argument(
        "--social-post-match",
        choices=("key", "query"),
        default="key",
        help='[crm] social_post_match ("query": an org without the SocialPost key field).',
    )
    parser.add_argument(
        "--cases",
        action="store_true",
        help='[crm.cases] open = "all": each conversation a Case, checked like the records.',
    )
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--state", default=None, help="State URL (default: a temp SQLite file).")
    parser.add_argument("--converge-timeout", type=float, default=300.0)
    parser.add_argument("--json", action="store_true", help="One JSON report per line.")
    parser.add_argument("--keep", action="store_true", help="Keep the work directory.")
    args = parser.parse_args(argv)
    rates = args.fault_rate if args.fault_rate is not None else [0.0, 0.2]
    seconds = args.seconds if args.seconds is not None else max(10.0, args.kills * 1.5)
    ok = True
    for rate in rates:
        workdir = Path(tempfile.mkdtemp(prefix="syncd-chaos-"))
        report = run(
            interactions=args.interactions,
            kills=args.kills,
            fault_rate=rate,
            seconds=seconds,
            customers=args.customers,
            rng_seed=args.seed,
            workdir=workdir,
            state_url=args.state,
            converge_timeout=args.converge_timeout,
            quiet=args.json,
            networks=args.networks,
            history=tuple(args.history.split(",")),
            social_post_match=args.social_post_match,
            cases=args.cases,
        )
        ok = ok and report.ok
        if args.json:
            print(json.dumps({**asdict(report), "ok": report.ok, "workdir": str(workdir)}))
        else:
            _print(report, workdir)
        if not args.keep and report.ok:
            for f in sorted(workdir.iterdir()):
                f.unlink()
            workdir.rmdir()
    return 0 if ok else 1


def _print(r: Report, workdir: Path) -> None:
    kinds = ", ".join(f"{k} {v}" for k, v in sorted(r.kills_by_kind.items()))
    faults = ", ".join(f"{k} {v}" for k, v in sorted(r.faults_by_kind.items())) or "none"
    print(f"chaos: {r.interactions} interactions, fault rate {r.fault_rate:.0%}")
    if r.networks != ["x"]:
        played = ", ".join(f"{n} {k}" for n, k in r.played.items())
        print(f"  networks           {', '.join(r.networks)} (played: {played})")
    print(f"  kills              {r.kills} ({kinds})")
    share = r.faults_injected / r.requests if r.requests else 0.0
    print(f"  API requests       {r.requests}")
    print(f"  faults injected    {r.faults_injected} ({share:.0%} of requests: {faults})")
    if r.networks != ["x"]:
        for name, fired in r.faults_by_network.items():
            kinds_fired = ", ".join(f"{k} {v}" for k, v in fired.items()) or "none"
            print(f"    {name:<16} {kinds_fired}")
        if "bluesky" in r.networks:
            print(f"    bluesky sessions refreshed {r.bluesky_refreshes}")
    if r.history != ["task"]:
        print(f"  history            {', '.join(r.history)} (SocialPost by {r.social_post_match})")
        for target, got in r.by_target.items():
            print(f"    {target:<16} " + ", ".join(f"{k} {v}" for k, v in got.items()))
    if r.cases:
        print(
            f"  cases              opened {r.cases_opened}, lost {r.cases_lost}, "
            f"duplicated {r.cases_duplicated}"
        )
        if r.cases_lost:
            print(f"    e.g. {', '.join(r.cases_lost_sample)}")
    print(f"  lost               {r.lost}")
    if r.lost:
        print(f"    by kind {r.lost_by_kind}, e.g. {', '.join(r.lost_sample)}")
    print(f"  duplicated         {r.duplicated}")
    print(f"  unexpected records {r.unexpected}")
    print(f"  seconds to converge {r.converge_seconds} (after the last kill)")
    print(f"  total seconds      {r.total_seconds}")
    print(f"  tracebacks in log  {r.tracebacks}   log: {workdir / 'syncd.log'}")
    print(f"  streams parked on unreadable answers {r.unreadable_parks}")
    if r.token_resumed is not None:
        parked_names = ", ".join(r.token_parked) or "none (never all at once)"
        print(
            f"  Meta token expired once: parked {parked_names} {r.token_parked_after} s later; "
            f"new token and `syncd resume`: {'ok' if r.token_resumed else 'FAILED'}; "
            f"{r.posted_while_parked} post(s) made while parked"
        )
    print(f"  first page stored  {r.first_poll_after} s after the first post (start)")
    print(
        f"  horizon            {r.horizon_cuts} walk(s) cut by the X stand-in; {r.gaps} gap(s) "
        f"recorded, {r.gaps_closed} closed, {r.recovered} post(s) recovered by search"
    )
    verdict = "holds" if r.ok else "FAILS"
    names = {"task": "one Task", "social_post": "one SocialPost"}
    records = " and ".join(names[t] for t in r.history)
    cases = " (each inbound post of a Contact in exactly one Case)" if r.cases else ""
    print(
        f"  asserted: every one of the {r.interactions} posts played after start reached "
        f"Salesforce as exactly {records}{cases}, and no other exists: {verdict}"
    )


if __name__ == "__main__":
    sys.exit(main())
