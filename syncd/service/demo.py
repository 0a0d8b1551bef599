"""``syncd demo``: the real daemon against the built-in sandbox, then what reached the CRM.

Starts every stand-in of the sandbox on loopback with a brand and its customers seeded, plays
posts over a few seconds while ``syncd run``'s daemon polls and writes them through the real
connectors, waits until it has caught up, then prints the customers' timelines as the CRM
holds them. What is played and read back is the sandbox's business; this module only
orchestrates, so it names no network.

``--service-cloud`` runs it as a Service Cloud org would: every interaction a Task and a
SocialPost, with the author's SocialPersona, ReplyToId threads and a priority that follows the
customer's tier (:mod:`sandbox.service_cloud`), each summed up after the Tasks. Cases
(``[crm.cases]``) are summed up too once the configuration has them.
"""

from __future__ import annotations

import os
import tempfile
import time
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from rich import box
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from sandbox import service_cloud as sc
from sandbox.run import Player, Readback, Sandbox
from syncd.config import settings as config_mod
from syncd.service.app import App
from syncd.service.daemon import Daemon
from syncd.state import outbox
from syncd.state.status import Status
from syncd.state.status import status as read_status

CATCH_UP_TIMEOUT = 60.0
STREAMS = ("mentions", "replies")


def run_demo(
    *,
    customers: int,
    posts: int,
    seconds: float,
    state_url: str | None,
    show: int,
    console: Console,
    service_cloud: bool = False,
) -> int:
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="syncd-demo-") as tmp, Sandbox() as sandbox:
        world = sandbox.seed(customers)
        personas_before = frozenset[str]()
        if service_cloud:
            sc.set_up_org(sandbox, world)
            # Taken before syncd runs: what it finds then is the org's, the rest it made.
            personas_before = sc.persona_ids(sandbox.soql)
        os.environ.update(sandbox.environ())
        path = Path(tmp) / "config.toml"
        path.write_text(
            sandbox.config(
                state_url or f"sqlite:///{Path(tmp) / 'state.db'}",
                tables={
                    "daemon": {
                        "write_interval": "500ms",
                        "resolve_interval": "1s",
                        "jitter": "100ms",
                    },
                    "resolver": {"retry_after": "1s", "max_retry_after": "2s"},
                },
                # Every source's: the player starts a moment before the daemon's first poll.
                source={"streams": list(STREAMS), "interval": "1s", "start": "1m"},
                crm=sc.crm_keys() if service_cloud else None,
            )
        )
        mode = " --service-cloud" if service_cloud else ""
        console.print(f"[bold]syncd demo{mode}[/]  {sandbox.describe()}")
        console.print(sandbox.seeded())
        if service_cloud:
            tiers = Counter(c.tier for c in world.customers if c.tier is not None)
            console.print(
                "  customer tiers on the Contacts' Accounts: "
                + ", ".join(f"{t} {n}" for t, n in sorted(tiers.items(), key=_tier_order))
                + f"; Leads and Accounts without one count as {sc.DEFAULT_TIER}"
            )
        app = App(config_mod.load(path))
        app.open()
        console.print(f"playing {posts} posts over {seconds:g}s while the daemon runs …")
        player = sandbox.play(posts, seconds)
        streams = sandbox.account_count * len(STREAMS)  # every account of every network
        deadline = time.monotonic() + seconds + CATCH_UP_TIMEOUT
        reached: list[bool] = []

        def done() -> bool:
            # Remembered, not asked again after the stop: a held author falls due again every
            # few seconds, so a second look can find work the first one rightly did not.
            if caught_up(app, player, streams):
                reached.append(True)
                return True
            return time.monotonic() > deadline

        code = Daemon(app, stop_when=done).run()
        try:
            if code == 0 and not reached:
                console.print("[red]the daemon did not catch up in time[/]")
                code = 1
            _report(console, app, sandbox, player, show, time.monotonic() - started)
            if service_cloud:
                _service_cloud(console, sandbox, personas_before)
                if cases_enabled(app.settings.crm):
                    _cases(console, sc.case_readback(sandbox.soql, social_posts=True))
        finally:
            app.close()
    return code


def caught_up(app: App, player: Player, streams: int) -> bool:
    """The player is done, every stream was walked since, and nothing is left to write."""
    if player.done_at is None:
        return False
    now = datetime.now(UTC)
    # One moment for every read: read apart, a batch claimed between the look at the claims
    # and the look at what is ready was in neither, and the demo stopped before its replies
    # were written again with their ReplyToId.
    with app.db.snapshot() as conn:
        st = read_status(conn, app.settings.crm.name)
        streams_done = len(st.streams) == streams and all(
            s.last_success_at is not None and s.last_success_at > player.done_at for s in st.streams
        )
        nothing_ready = not outbox.ready_deliveries(conn, app.settings.crm.name, now, 1)
        nothing_due = not outbox.identities_to_resolve(conn, app.settings.crm.name, now, 1)
    # On PostgreSQL a batch being written is claimed, so no longer "ready": not done either
    # (with several history targets a SocialPost batch, or a reply written again for its
    # ReplyToId, is often in flight when the Tasks are done).
    nothing_claimed = not any(st.claims.values())
    return streams_done and nothing_ready and nothing_due and nothing_claimed


def _report(
    console: Console, app: App, sandbox: Sandbox, player: Player, show: int, elapsed: float
) -> None:
    crm = sandbox.readback()
    _timelines(console, crm, show)
    with app.db.connect() as conn:
        st = read_status(conn, app.settings.crm.name)
    requests = sandbox.requests()  # after the read-back, which the CRM counts too
    console.print()
    # Each interaction has a delivery per history target: a held one is pending in each.
    held = max(
        (t.get("pending", 0) for t in st.targets.values()), default=st.deliveries.get("pending", 0)
    )
    summary = Table(title="totals", title_justify="left", show_header=False)
    rows = [
        ("posts played", player.played()),
        ("interactions fetched", str(st.interactions)),
        (f"written to {sandbox.crm_title}", _by_target(st, "written")),
        (crm.label, f"{crm.records} ({crm.duplicates} duplicates)"),
        ("by network", crm.networks()),
        (
            "held (author not in CRM)",
            f"{held} interactions from {st.held_identities} authors",
        ),
        (
            "author withheld by the network",
            ", ".join(f"{w.network} {w.interactions}" for w in st.withheld) or "0",
        ),
        ("dead-lettered", _by_target(st, "dead")),
        ("quarantined", str(st.quarantined)),
        player.late_link(),
        *requests,
        ("seconds", f"{elapsed:.1f}"),
    ]
    for k, v in rows:
        summary.add_row(k, v)
    console.print(summary)


def _by_target(st: Status, state: str) -> str:
    """The deliveries in ``state``, and, with several history targets, those of each."""
    total = str(st.deliveries.get(state, 0))
    if len(st.targets) < 2:
        return total
    return f"{total} ({', '.join(f'{t} {n.get(state, 0)}' for t, n in st.targets.items())})"


def _timelines(console: Console, crm: Readback, show: int) -> None:
    console.print()
    console.print(
        f"[bold]CRM timelines[/] (the {show} busiest customers, read back with {crm.via})"
    )
    for timeline in crm.timelines[:show]:
        console.print(f"\n[bold]{escape(timeline.title)}[/]  {timeline.record_id}")
        for e in timeline.entries:
            console.print(
                f"  {e.date} {escape(e.network):<9.9} {'→' if e.outbound else '←'} "
                f"{escape(e.subject):<42.42} "
                f"{escape(e.text):.60}",
                no_wrap=True,
                overflow="ellipsis",
                soft_wrap=False,
            )


def cases_enabled(crm: object) -> bool:
    """The configuration works conversations as Cases (``[crm.cases]``). Read by attribute:
    the CRM's settings are its connector's own."""
    return getattr(crm, "cases", None) is not None


def _tier_order(item: tuple[str, Any]) -> int:
    order = [tier for tier in sc.TASK_PRIORITY]
    return order.index(item[0]) if item[0] in order else len(order)


def _table(title: str, *columns: str, header: bool = True) -> Table:
    table = Table(title=title, title_justify="left", box=box.SIMPLE_HEAD, show_header=header)
    for n, name in enumerate(columns):
        table.add_column(name, justify="left" if n == 0 or not header else "right")
    return table


def _service_cloud(
    console: Console, sandbox: Sandbox, personas_before: frozenset[str]
) -> sc.SocialReadback:
    """The SocialPosts, SocialPersonas, threads and priorities syncd's records came to."""
    back = sc.social_readback(sandbox.soql, personas_before)
    console.print()
    console.print("[bold]Service Cloud[/] (read back with SOQL)")
    types = sorted({t for by in back.by_type.values() for t in by})
    posts = _table("SocialPosts by network and MessageType", "network", *types, "total")
    for network, by in back.by_type.items():
        posts.add_row(network, *(str(by.get(t, 0)) for t in types), str(sum(by.values())))
    posts.add_row(
        "all",
        *(str(sum(b.get(t, 0) for b in back.by_type.values())) for t in types),
        str(back.posts),
        style="bold",
    )
    console.print(posts)

    networks = back.networks
    prio = _table(
        "Task.Priority by customer tier (Account tier, per network)",
        "tier",
        "priority",
        *networks,
        "total",
    )
    for row in back.priorities:
        prio.add_row(
            row.tier,
            row.priority,
            *(str(row.by_network.get(n, 0)) for n in networks),
            str(sum(row.by_network.values())),
        )
    console.print(prio)
    same = "yes" if back.one_priority_per_tier() else "[red]no[/]"
    console.print(
        f"  one priority per tier on every network: {same}; customers with Tasks on 2+ "
        f"networks: {back.across_networks}, {back.one_priority} of them with one priority"
    )

    rows = _table("SocialPersonas, threads, duplicates", "", "", header=False)
    held = back.personas - back.personas_made
    reused = (
        f"{held} the org held before ({back.personas_reused} reused)"
        if personas_before
        else "the org held none before"
    )
    for k, v in (
        ("SocialPersonas", f"{back.personas}: {back.personas_made} made by syncd, {reused}"),
        ("SocialPosts without one", str(back.without_persona)),
        (
            "ReplyToId threads",
            f"{back.threads} threads, {back.replies} posts answering another",
        ),
        (
            "brand replies linked",
            f"{back.outbound_linked} of {back.outbound} name the post they answer"
            + (f", {back.dangling} name none" if back.dangling else ""),
        ),
        (
            "duplicates",
            f"SocialPosts {back.duplicates}, SocialPersonas {back.persona_duplicates}",
        ),
    ):
        rows.add_row(k, v)
    console.print(rows)
    return back


def _cases(console: Console, back: sc.CaseReadback) -> None:
    """The Cases syncd opened and what hangs on them."""
    console.print()
    table = _table(f"Cases ({back.cases}) by Origin and Priority", "Origin", "Priority", "Cases")
    for (origin, priority), n in sorted(back.by_origin_priority.items()):
        table.add_row(origin, priority, str(n))
    console.print(table)

    def spread(counts: dict[int, int], unit: str, of: str) -> str:
        return ", ".join(f"{k} {unit}: {n} {of}" for k, n in counts.items()) or "-"

    rows = _table("on the Cases", "", "", header=False)
    for k, v in (
        ("SocialPosts per Case", spread(back.social_posts_per_case, "posts", "Cases")),
        ("Tasks per Case", spread(back.tasks_per_case, "Tasks", "Cases")),
        ("Cases per conversation", spread(back.cases_per_conversation, "Cases", "conversations")),
        (
            "on no Case",
            f"SocialPosts {back.social_posts_without_case}, Tasks {back.tasks_without_case}",
        ),
    ):
        rows.add_row(k, v)
    console.print(rows)
