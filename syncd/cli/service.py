"""Running the service: run, poll --once, status, resume, db upgrade."""

from __future__ import annotations

import json
import logging
import os
import signal
import sys
from collections.abc import Sequence
from dataclasses import asdict
from datetime import datetime
from pathlib import Path
from types import FrameType

import click
from rich.cells import cell_len
from rich.console import Console
from rich.table import Table

from syncd.budget.ledger import budgets
from syncd.cli.base import cli, config_path, settings, state, user_errors
from syncd.cli.budget_view import print_budgets
from syncd.cli.text import literal as escape  # rich's escape, and no terminal controls
from syncd.config import settings as config_mod
from syncd.contracts import redaction
from syncd.model import DeliveryState, GapState
from syncd.service.app import App
from syncd.state.status import Gaps, StreamStatus

EXIT_INCOMPLETE = 1  # `poll --once`: something did not go through


def _app(ctx: click.Context) -> App:
    app = App(settings(ctx))
    app.open()
    return app


@cli.command()
@click.pass_context
@user_errors
def run(ctx: click.Context) -> None:
    """Run the daemon: poll, resolve and write on schedule until SIGTERM or SIGINT.

    SIGHUP reloads the configuration. Only one daemon may run on a SQLite state database;
    on PostgreSQL several share the work.
    """
    from syncd.service.daemon import Daemon, open_waiting
    from syncd.state.lock import InstanceLock

    # Until the daemon installs its own handlers, a stop request unwinds start-up cleanly
    # (migrations roll back, the SQLite lock is released) instead of killing the process mid-way.
    signal.signal(signal.SIGTERM, _stop_during_startup)
    path = config_path(ctx)
    loaded = settings(ctx)
    with InstanceLock(loaded.state.url):
        app = App(loaded)
        open_waiting(app)
        daemon = Daemon(app, reload=lambda: _reload(path))
        try:
            code = daemon.run()
        finally:
            daemon.app.close()
        if daemon.abandoned:
            # A worker thread is stuck in a network call past the stop deadline; the
            # interpreter would wait for it at exit. Nothing of it is committed.
            logging.shutdown()
            sys.stdout.flush()
            os._exit(code)
    sys.exit(code)


def _reload(path: Path) -> config_mod.Settings:
    loaded = config_mod.load(path)
    redaction.protect_settings(loaded)  # rotated credentials are new values to keep out of logs
    return loaded


def _stop_during_startup(signum: int, _frame: FrameType | None) -> None:
    raise SystemExit(0)


@cli.command()
@click.option("--once", is_flag=True, required=True, help="One full cycle, then exit.")
@click.option("--json", "as_json", is_flag=True, help="Print the cycle report as JSON.")
@click.pass_context
@user_errors
def poll(ctx: click.Context, once: bool, as_json: bool) -> None:
    """Poll every stream, resolve and write once. Exit 0 only if everything went through.

    A gap (more posts arrived since the last poll than a timeline holds) is searched and its
    posts written in the same run; exit 1 names each gap still open and why.
    """
    app = _app(ctx)
    try:
        report = app.cycle()
    finally:
        app.close()
    for g in report.gaps:  # on stderr in both forms: the JSON on stdout stays whole
        by = f" (backfill {g.backfill_id})" if g.backfill_id is not None else ""
        click.echo(
            f"OPEN GAP {g.id} {g.source} @{g.account} {g.stream} after id {g.since_id}, before "
            f"id {g.until_id}: {g.state}{by}: {g.why}",
            err=True,
        )
    if as_json:
        click.echo(json.dumps(asdict(report), default=str, indent=2))
    else:
        for job_id, r in report.polls.items():
            click.echo(
                f"{job_id}: {r.pages} page(s), {r.seen} seen, {r.new} new"
                + (f", {r.quarantined} quarantined" if r.quarantined else "")
            )
        if report.resolve:
            click.echo(
                f"resolver: {report.resolve.looked_up} looked up, "
                f"{report.resolve.linked} linked, {report.resolve.review} to review, "
                f"{report.resolve.unmatched} held"
                + (f", {report.resolve.leads} Leads created" if report.resolve.leads else "")
                + (f", {report.resolve.skipped} skipped" if report.resolve.skipped else "")
            )
        if report.deliver:
            d = report.deliver
            click.echo(
                f"writer: {d.written} written, {d.retrying} retrying, {d.dead} dead-lettered"
            )
        for where, error in report.errors.items():
            click.echo(f"FAILED {where}: {error}", err=True)
    sys.exit(0 if report.ok else EXIT_INCOMPLETE)


@cli.command()
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@click.pass_context
@user_errors
def status(ctx: click.Context, as_json: bool) -> None:
    """Per-stream cursors and last success, deliveries by state, gaps, parked accounts and
    streams."""
    from syncd.state.status import status as read_status

    with state(ctx) as (loaded, conn):
        st = read_status(conn, loaded.crm.name, budgets(loaded.sources))
    if as_json:
        click.echo(json.dumps(asdict(st), default=str, indent=2))
        return
    console = Console()
    _print_streams(console, st.streams)
    states = ", ".join(f"{k} {v}" for k, v in sorted(st.deliveries.items())) or "none"
    console.print(f"interactions: {st.interactions}   deliveries: {states}")
    if len(st.targets) > 1:  # several history targets: where each stands
        for target, by_state in sorted(st.targets.items()):
            line = ", ".join(f"{k} {v}" for k, v in sorted(by_state.items()))
            console.print(f"  {target}: {line}", highlight=False)
    if st.cases:
        console.print(f"cases opened for conversations: {st.cases}", highlight=False)
    if st.claims:
        claims = ", ".join(f"{owner} {n}" for owner, n in sorted(st.claims.items()))
        console.print(f"being written (claimed by instance): {claims}", highlight=False)
    console.print(
        f"held identities (no CRM match yet): {st.held_identities}   "
        f"waiting for review: {st.review}   "
        f"quarantined items: {st.quarantined}   "
        f"dead letters: {st.deliveries.get(DeliveryState.DEAD, 0)}"
    )
    if st.withheld:
        counts = ", ".join(f"{w.source} ({w.network}) {w.interactions}" for w in st.withheld)
        console.print(
            f"author withheld by the network (stored, never written to the CRM): {counts}",
            highlight=False,
        )
    for b in st.backfills:
        of = f" of ~{b.estimated:,}" if b.estimated is not None else ""
        by = f" by {b.lease_owner}" if b.lease_owner else ""
        console.print(
            f"backfill {b.id} {b.source} @{b.account} {b.since:%Y-%m-%d} → {b.until:%Y-%m-%d}: "
            f"{b.status}{by}, read {b.read:,}{of}, new {b.new:,}, written {b.written:,}, "
            f"held {b.held:,}" + (f": {escape(b.error)}" if b.error else ""),
            highlight=False,
        )
    _print_gaps(console, st.gaps)
    print_budgets(console, st.budgets)
    for p in st.parked:
        if p.kind == "unreadable":  # one stream: its answers could not be read
            console.print(
                f"[red]PARKED[/] stream {p.name} since {_when(p.parked_at)}: "
                f"{escape(p.reason)}\n"
                f"  its account's other streams go on; once the API (or the proxy before it) "
                f"answers sanely: syncd resume {p.name}",
                highlight=False,
            )
            continue
        console.print(
            f"[red]PARKED[/] {p.name} since {_when(p.parked_at)} after {p.failures} "
            f"authentication failures: {escape(p.reason)}\n"
            f"  fix the credentials, then: syncd resume {p.name}",
            highlight=False,
        )


@cli.command()
@click.argument("names", nargs=-1)
@click.option("--all", "all_", is_flag=True, help="Resume everything parked.")
@click.pass_context
@user_errors
def resume(ctx: click.Context, names: tuple[str, ...], all_: bool) -> None:
    """Resume parked accounts or streams (NAME as `syncd status` shows it, e.g. x:acme,
    x:acme:mentions, or crm).

    A running daemon notices within seconds and polls them again with the credentials it
    reads now.
    """
    from syncd.errors import UserError
    from syncd.state import admin

    if not names and not all_:
        raise click.UsageError("name what to resume, or pass --all")
    with state(ctx, write=True) as (_, conn):
        parked = {p.name for p in admin.parked_list(conn)}
        wanted = None if all_ else [_park_name(n, parked) for n in names]
        done = admin.unpark(conn, wanted)
    if not done:
        raise UserError("nothing to resume: " + (", ".join(sorted(parked)) or "nothing is parked"))
    click.echo("resumed: " + ", ".join(done))


_HEADERS = ("source", "account", "stream", "since_id", "last success (UTC)", "last error")
_ERROR_MIN = 10  # columns the last error wraps in, at the least, in the wide table


def _print_streams(console: Console, streams: Sequence[StreamStatus]) -> None:
    """One row a stream; on a terminal too narrow for that row's fixed columns, one table a
    source, under its name, each stream's since_id and last error under its last success:
    every name is shown whole either way."""
    rows = [
        (
            escape(s.source),
            escape(s.account),
            s.stream + (" (mid-walk)" if s.in_walk else ""),
            escape(s.since_id or "-"),
            _when(s.last_success_at),
            # A walk the page bound stopped is no error, but it is still under way.
            escape(s.last_error or s.walk_stopped or ""),
        )
        for s in streams
    ]
    # Each column takes its widest cell plus a space each side and a rule: the five kept
    # on one line, and room for the error to wrap in.
    fixed = [max([cell_len(h), *(cell_len(r[i]) for r in rows)]) for i, h in enumerate(_HEADERS)]
    if sum(fixed[:5]) + _ERROR_MIN + 3 * len(_HEADERS) + 1 <= console.width:
        table = Table(*_HEADERS)
        for row in rows:
            table.add_row(*row)
        for column in table.columns[:5]:
            column.no_wrap = True
        console.print(table)
        return
    by_source: dict[str, list[tuple[str, ...]]] = {}
    for row in rows:
        by_source.setdefault(row[0], []).append(row[1:])
    for source, mine in by_source.items():
        table = Table("account", "stream", _HEADERS[4], title=f"[bold]{source}[/]")
        table.title_justify = "left"
        for account, stream, since_id, when, error in mine:
            details = f"{when}\nsince_id {since_id}" + (f"\nlast error: {error}" if error else "")
            table.add_row(account, stream, details)
        table.columns[0].no_wrap = table.columns[1].no_wrap = True
        table.columns[2].overflow = "fold"  # an unbroken since_id or error still shows whole
        console.print(table)


def _park_name(given: str, parked: set[str]) -> str:
    """Accept "x:acme", or a bare "acme" when one parked name ends with it."""
    if given in parked:
        return given
    matches = [p for p in parked if p.split(":", 1)[-1].lower() == given.lower().lstrip("@")]
    return matches[0] if len(matches) == 1 else given


def _print_gaps(console: Console, gaps: Gaps) -> None:
    """Posts a live walk could not reach: being recovered, or out of reach (with why)."""
    for g in gaps.unclosed:
        where = f"gap {g.id} {g.source} @{g.account} {g.stream} after id {g.since_id}, before id "
        if g.state == GapState.UNCLOSABLE:
            got = f" ({g.recovered:,} recovered)" if g.recovered else ""
            console.print(
                f"[red]UNCLOSABLE[/] {where}{g.until_id}{got}: {escape(g.reason or '')}",
                highlight=False,
            )
        else:
            by = f" by backfill {g.backfill_id}" if g.backfill_id is not None else ""
            console.print(f"{where}{g.until_id}: {g.state}{by}", highlight=False)
    if gaps.closed:
        console.print(f"gaps closed: {gaps.closed}, posts recovered: {gaps.recovered:,}")


def _when(value: datetime | None) -> str:
    return value.strftime("%Y-%m-%d %H:%M:%S") if value else "never"


@cli.group()
def db() -> None:
    """State database maintenance."""


@db.command("upgrade")
@click.pass_context
@user_errors
def db_upgrade(ctx: click.Context) -> None:
    """Apply pending migrations to the state database."""
    from syncd.state.db import Database

    section = settings(ctx).state
    database = Database(section.url, timeouts=section.timeouts())
    try:
        database.upgrade()
        click.echo(f"state database at revision {database.revision()}")
    finally:
        database.dispose()
