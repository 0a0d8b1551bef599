"""``syncd demo``: the real daemon against the built-in sandbox, then what reached the CRM.

Starts every stand-in of the sandbox on loopback with a brand and its customers seeded, plays
posts over a few seconds while ``syncd run``'s daemon polls and writes them through the real
connectors, waits until it has caught up, then prints the customers' timelines as the CRM
holds them. What is played and read back is the sandbox's business; this module only
orchestrates, so it names no network.
"""

from __future__ import annotations

import os
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from sandbox.run import Player, Readback, Sandbox
from syncd.config import settings as config_mod
from syncd.service.app import App
from syncd.service.daemon import Daemon
from syncd.state import outbox
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
) -> int:
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="syncd-demo-") as tmp, Sandbox() as sandbox:
        sandbox.seed(customers)
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
            )
        )
        console.print(f"[bold]syncd demo[/]  {sandbox.describe()}")
        console.print(sandbox.seeded())
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
        finally:
            app.close()
    return code


def caught_up(app: App, player: Player, streams: int) -> bool:
    """The player is done, every stream was walked since, and nothing is left to write."""
    if player.done_at is None:
        return False
    now = datetime.now(UTC)
    with app.db.connect() as conn:
        st = read_status(conn, app.settings.crm.name)
        streams_done = len(st.streams) == streams and all(
            s.last_success_at is not None and s.last_success_at > player.done_at for s in st.streams
        )
        nothing_ready = not outbox.ready_deliveries(conn, app.settings.crm.name, now, 1)
        nothing_due = not outbox.identities_to_resolve(conn, app.settings.crm.name, now, 1)
    return streams_done and nothing_ready and nothing_due


def _report(
    console: Console, app: App, sandbox: Sandbox, player: Player, show: int, elapsed: float
) -> None:
    crm = sandbox.readback()
    _timelines(console, crm, show)
    with app.db.connect() as conn:
        st = read_status(conn, app.settings.crm.name)
    requests = sandbox.requests()  # after the read-back, which the CRM counts too
    console.print()
    summary = Table(title="totals", title_justify="left", show_header=False)
    rows = [
        ("posts played", player.played()),
        ("interactions fetched", str(st.interactions)),
        (f"written to {sandbox.crm_title}", str(st.deliveries.get("written", 0))),
        (crm.label, f"{crm.records} ({crm.duplicates} duplicates)"),
        ("by network", crm.networks()),
        (
            "held (author not in CRM)",
            f"{st.deliveries.get('pending', 0)} interactions from {st.held_identities} authors",
        ),
        (
            "author withheld by the network",
            ", ".join(f"{w.network} {w.interactions}" for w in st.withheld) or "0",
        ),
        ("dead-lettered", str(st.deliveries.get("dead", 0))),
        ("quarantined", str(st.quarantined)),
        player.late_link(),
        *requests,
        ("seconds", f"{elapsed:.1f}"),
    ]
    for k, v in rows:
        summary.add_row(k, v)
    console.print(summary)


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
