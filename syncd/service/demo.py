"""``syncd demo``: the real daemon against the built-in sandbox, then what reached the CRM.

Starts the X and Salesforce stand-ins on loopback, seeds a brand and its customers, plays
mentions and brand replies over a few seconds while ``syncd run``'s daemon polls them through
tweepy and writes them through simple-salesforce, waits until it has caught up, then reads
the customers' timelines back from the CRM with SOQL.
"""

from __future__ import annotations

import os
import random
import tempfile
import threading
import time
from datetime import UTC, datetime
from pathlib import Path

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from connectors.salesforce.crm import SalesforceCrm
from sandbox.salesforce.api import SalesforceSandbox
from sandbox.seed import BRAND_HANDLES, World, next_post, seed
from sandbox.x.api import XSandbox
from syncd.config import settings as config_mod
from syncd.service.app import App
from syncd.service.daemon import Daemon
from syncd.state import outbox
from syncd.state.status import status as read_status

CATCH_UP_TIMEOUT = 60.0

DEMO_CONFIG = """\
[state]
url = "{state_url}"

[daemon]
write_interval = "500ms"
resolve_interval = "1s"
jitter = "100ms"

[resolver]
retry_after = "1s"
max_retry_after = "2s"

[[sources]]
name = "acme-x"
type = "x"
bearer_token = "env:SYNCD_DEMO_X_BEARER"
api_base_url = "{x_url}"
accounts = {accounts}
streams = ["mentions", "replies"]
interval = "1s"
start = "1m"  # the player starts a moment before the daemon's first poll

[crm]
type = "salesforce"
login_url = "{sf_url}"
username = "{sf_user}"
password = "env:SYNCD_DEMO_SF_PASSWORD"
security_token = "env:SYNCD_DEMO_SF_TOKEN"
api_version = "61.0"
"""


class Player(threading.Thread):
    """Posts to the X stand-in over time, as customers and the brand would."""

    def __init__(
        self, x: XSandbox, sf: SalesforceSandbox, world: World, posts: int, seconds: float
    ) -> None:
        super().__init__(name="demo-player", daemon=True)
        self.x, self.sf, self.world = x, sf, world
        self.posts, self.seconds = posts, seconds
        self.done_at: datetime | None = None
        self.late_contact: str | None = None
        self.counts = {"mention": 0, "reply": 0}

    def run(self) -> None:
        rng = random.Random(11)
        pause = self.seconds / max(self.posts, 1)
        for n in range(self.posts):
            kind, _ = next_post(self.x, self.world, rng)
            self.counts[kind] += 1
            if n == self.posts // 2:
                self._rep_adds_a_contact()
            time.sleep(pause)
        self.done_at = datetime.now(UTC)

    def _rep_adds_a_contact(self) -> None:
        # Midway, a rep creates a Contact for a customer the CRM did not know: everything
        # held for that author is written, oldest first, without anyone replaying anything.
        unknown = self.world.by_kind("unknown")
        if unknown:
            c = unknown[0]
            c.crm_id = self.sf.insert(
                "Contact", {"FirstName": c.first, "LastName": c.last, "X_User_Id__c": c.user_id}
            )
            c.kind = "contact_by_id"
            self.late_contact = c.handle


def run_demo(
    *,
    customers: int,
    posts: int,
    seconds: float,
    state_url: str | None,
    show: int,
    console: Console,
) -> int:
    started = time.monotonic()
    with (
        tempfile.TemporaryDirectory(prefix="syncd-demo-") as tmp,
        XSandbox(bearer_token="demo-x-bearer") as x,
        SalesforceSandbox() as sf,
    ):
        assert isinstance(x, XSandbox) and isinstance(sf, SalesforceSandbox)
        world = seed(x, sf, customers)
        os.environ["SYNCD_DEMO_X_BEARER"] = "demo-x-bearer"
        os.environ["SYNCD_DEMO_SF_PASSWORD"] = "sandbox-password"
        os.environ["SYNCD_DEMO_SF_TOKEN"] = "sandbox-token"
        path = Path(tmp) / "config.toml"
        path.write_text(
            DEMO_CONFIG.format(
                state_url=state_url or f"sqlite:///{Path(tmp) / 'state.db'}",
                x_url=x.url,
                sf_url=sf.url,
                sf_user="integration@sandbox.example",
                accounts="[" + ", ".join(f'"{h}"' for h in BRAND_HANDLES) + "]",
            )
        )
        console.print(f"[bold]syncd demo[/]  X stand-in {x.url}  Salesforce stand-in {sf.url}")
        console.print(
            f"seeded {len(world.customers)} customers: "
            f"{len(world.by_kind('contact_by_id'))} Contacts by X id, "
            f"{len(world.by_kind('contact_by_handle'))} by handle only, "
            f"{len(world.by_kind('lead'))} Leads, "
            f"{len(world.by_kind('unknown'))} unknown to the CRM"
        )
        app = App(config_mod.load(path))
        app.open()
        player = Player(x, sf, world, posts, seconds)
        console.print(f"playing {posts} posts over {seconds:g}s while the daemon runs …")
        player.start()
        deadline = time.monotonic() + seconds + CATCH_UP_TIMEOUT
        daemon = Daemon(
            app, stop_when=lambda: caught_up(app, player) or time.monotonic() > deadline
        )
        code = daemon.run()
        try:
            if code == 0 and not caught_up(app, player):
                console.print("[red]the daemon did not catch up in time[/]")
                code = 1
            _report(console, app, world, player, x, sf, show, time.monotonic() - started)
        finally:
            app.close()
    return code


def caught_up(app: App, player: Player) -> bool:
    """The player is done, every stream was walked since, and nothing is left to write."""
    if player.done_at is None:
        return False
    now = datetime.now(UTC)
    with app.db.connect() as conn:
        st = read_status(conn, app.settings.crm.name)
        streams_done = len(st.streams) == len(BRAND_HANDLES) * 2 and all(
            s.last_success_at is not None and s.last_success_at > player.done_at for s in st.streams
        )
        nothing_ready = not outbox.ready_deliveries(conn, app.settings.crm.name, now, 1)
        nothing_due = not outbox.identities_to_resolve(conn, app.settings.crm.name, now, 1)
    return streams_done and nothing_ready and nothing_due


def _report(
    console: Console,
    app: App,
    world: World,
    player: Player,
    x: XSandbox,
    sf: SalesforceSandbox,
    show: int,
    elapsed: float,
) -> None:
    crm = app.crm
    assert isinstance(crm, SalesforceCrm)  # the demo's CRM is the Salesforce stand-in
    tasks = crm.query(
        "SELECT Id, WhoId, Subject, Description, ActivityDate, Social_Post_Id__c, "
        "Social_Direction__c FROM Task ORDER BY ActivityDate"
    )
    by_who: dict[str, list[dict[str, object]]] = {}
    for t in tasks:
        by_who.setdefault(str(t["WhoId"]), []).append(t)
    names = {c.crm_id: c for c in world.customers if c.crm_id}
    console.print()
    console.print(f"[bold]CRM timelines[/] (the {show} busiest customers, read back with SOQL)")
    for who, items in sorted(by_who.items(), key=lambda kv: -len(kv[1]))[:show]:
        c = names.get(who)
        title = f"{c.first} {c.last} (@{c.handle})" if c else who
        console.print(f"\n[bold]{escape(title)}[/]  {who}")
        for t in sorted(items, key=lambda t: int(str(t["Social_Post_Id__c"]).split(":")[1])):
            arrow = "→" if t["Social_Direction__c"] == "Outbound" else "←"
            text = " ".join(str(t["Description"]).split("\n")[0].split())
            console.print(
                f"  {t['ActivityDate']} {arrow} {escape(str(t['Subject'])):<42.42} "
                f"{escape(text):.60}",
                no_wrap=True,
                overflow="ellipsis",
                soft_wrap=False,
            )
    with app.db.connect() as conn:
        st = read_status(conn, app.settings.crm.name)
    external_ids = [t["Social_Post_Id__c"] for t in tasks]
    duplicates = len(external_ids) - len(set(external_ids))
    written = st.deliveries.get("written", 0)
    console.print()
    summary = Table(title="totals", title_justify="left", show_header=False)
    rows = [
        (
            "posts played",
            f"{player.counts['mention']} mentions, {player.counts['reply']} brand replies",
        ),
        ("interactions fetched", str(st.interactions)),
        ("written to Salesforce", str(written)),
        ("Tasks in Salesforce (SOQL)", f"{len(tasks)} ({duplicates} duplicates)"),
        (
            "held (author not in CRM)",
            f"{st.deliveries.get('pending', 0)} interactions from {st.held_identities} authors",
        ),
        ("dead-lettered", str(st.deliveries.get("dead", 0))),
        ("quarantined", str(st.quarantined)),
        (
            "linked late (rep added Contact)",
            f"@{player.late_contact}" if player.late_contact else "-",
        ),
        ("X API requests", str(x.request_count)),
        ("Salesforce API calls", str(sf.api_calls)),
        ("seconds", f"{elapsed:.1f}"),
    ]
    for k, v in rows:
        summary.add_row(k, v)
    console.print(summary)
