"""`syncd backfill`: bring a past window of a brand account into the CRM, resumably, after
saying what it will cost."""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime
from typing import Any, cast

import click
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn
from rich.table import Table

from syncd.backfill import plan
from syncd.backfill.estimate import Estimate
from syncd.backfill.foreground import Report, work
from syncd.backfill.runner import BackfillSource, Runner
from syncd.cli.base import cli, settings, state, user_errors
from syncd.contracts.text import label
from syncd.errors import UserError
from syncd.model import BackfillState, Stream
from syncd.service.app import App
from syncd.state import backfills
from syncd.state.backfills import Job

DATE_FORMATS = ["%Y-%m-%d", "%Y-%m-%dT%H:%M:%S", "%Y-%m-%dT%H:%M"]
BAR_TEXT = (
    "read · new {task.fields[new]} · written {task.fields[written]} · held {task.fields[held]}"
    " · {task.fields[rate]}/s · ETA {task.fields[eta]} {task.fields[wait]}"
)
LINE_EVERY = 5.0  # seconds between progress lines when stderr is not a terminal


def _utc(value: datetime | None) -> datetime | None:
    return value.replace(tzinfo=UTC) if value is not None and value.tzinfo is None else value


def _streams(value: str | None) -> list[Stream] | None:
    if value is None:
        return None
    names = [v.strip() for v in value.split(",") if v.strip()]
    known = {s.value for s in Stream}
    bad = [n for n in names if n not in known]
    if bad or not names:
        raise click.BadParameter(f"use {', '.join(sorted(known))} (comma-separated)")
    return [Stream(n) for n in dict.fromkeys(names)]


def _money(dollars: float) -> str:
    return f"${dollars:,.2f}"


def _duration(seconds: float) -> str:
    minutes, sec = divmod(int(seconds + 0.5), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m" if hours else f"{minutes}m{sec:02d}s" if minutes else f"{sec}s"


@cli.group(invoke_without_command=True)
@click.option("--source", "source_name", help="The [[sources]] name to read from.")
@click.option("--account", help="The brand account (handle) whose history to read.")
@click.option("--since", type=click.DateTime(DATE_FORMATS), help="Start of the window (UTC).")
@click.option("--until", type=click.DateTime(DATE_FORMATS), help="End of the window (UTC; now).")
@click.option("--streams", help="mentions,replies (default: the source's streams).")
@click.option("--dry-run", is_flag=True, help="Print the plan and the estimate; read nothing.")
@click.option("--yes", is_flag=True, help="Do not ask before spending over the threshold.")
@click.option("--queue", is_flag=True, help="Leave the job to the running daemon.")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable estimate and progress.")
@click.pass_context
@user_errors
def backfill(
    ctx: click.Context,
    source_name: str | None,
    account: str | None,
    since: datetime | None,
    until: datetime | None,
    streams: str | None,
    dry_run: bool,
    yes: bool,
    queue: bool,
    as_json: bool,
) -> None:
    """Read a past window into the CRM: estimate, confirm, then fetch, resolve and write.

    Interrupted (Ctrl-C, a crash, a reboot), it resumes from its last stored page:
    `syncd backfill resume ID`. Also: `backfill list`, `backfill cancel ID`.
    """
    if ctx.invoked_subcommand is not None:
        return
    missing = [f"--{n}" for n, v in (("source", source_name), ("account", account),
                                     ("since", since)) if v is None]  # fmt: skip
    if missing:
        raise click.UsageError(f"missing {', '.join(missing)} (or a subcommand: list, resume …)")
    assert source_name and account and since
    loaded = settings(ctx)
    src = plan.source_settings(loaded.sources, source_name)
    wanted = _streams(streams) or list(src.streams)
    start, end = _utc(since), _utc(until) or datetime.now(UTC)
    assert start is not None
    if start >= end:
        raise UserError("--since must be before --until")
    app = App(loaded)
    try:
        app.open()
        _, source = app.sources[source_name]
        made = plan.make(
            app.pipeline,
            source_name,
            source,
            src,
            loaded.crm,
            account=account,
            streams=wanted,
            since=start,
            until=end,
            now=datetime.now(UTC),
            write_batch=loaded.writer.batch_size,
        )
        est = made.estimate
        if as_json:
            click.echo(json.dumps({"estimate": est.as_json()}))
        else:
            _print_estimate(
                Console(highlight=False),
                source_name,
                made.account.handle,
                est,
                network=source.network,
                crm=loaded.crm.type,
            )
        if dry_run:
            return
        threshold = loaded.backfill.confirm_above
        if est.cost > threshold and not yes:
            click.confirm(
                f"This reads about {est.posts:,} posts, {_money(est.cost)} at "
                f"${est.price_per_post:g}/post (over the {_money(threshold)} threshold). Go on?",
                abort=True,
                err=True,
            )
        job_id = plan.create_job(app.db, made, queue=queue, now=datetime.now(UTC))
        if queue:
            click.echo(f"queued as backfill {job_id}: the running daemon works it")
            return
        runner = Runner(
            app.pipeline,
            source_name,
            made.source,
            job_id,
            reserve=loaded.backfill.reserve,
            guard=app.guard,
        )
        _run(runner, as_json)
    finally:
        app.close()


def _print_estimate(
    console: Console, source: str, handle: str, est: Estimate, *, network: str, crm: str
) -> None:
    table = Table("stream", "window (UTC)", "endpoint", "query", "posts", "requests", "time")
    for s in est.segments:
        seg = s.segment
        table.add_row(
            str(seg.stream),
            f"{seg.since:%Y-%m-%d %H:%M} → {seg.until:%Y-%m-%d %H:%M}",
            seg.route,
            escape(seg.query or "-"),
            f"{'' if s.count.exact else '~'}{s.count.posts:,}",
            f"{s.requests:,}",
            _duration(s.seconds),
        )
    console.print(f"[bold]backfill {escape(source)} @{escape(handle)}[/]")
    console.print(table)
    approx = "" if est.exact else "about "
    console.print(
        f"posts read: {approx}{est.posts:,} → {_money(est.cost)} at "
        f"${est.price_per_post:g}/post ({est.counting_requests} request(s) spent counting)"
    )
    console.print(
        f"{label(crm)} calls: {est.crm_writes:,} writes of up to {est.write_batch} + at most "
        f"{est.crm_lookups:,} look-ups   time: about {_duration(est.seconds)} at "
        f"{label(network)}'s rate limits"
    )
    for note in est.notes:
        console.print(f"[yellow]note:[/] {escape(note)}")


def _run(runner: Runner, as_json: bool) -> None:
    if not runner.claim(paused_too=True):
        raise UserError(_busy(runner))
    console = Console(stderr=True, highlight=False)
    bar = None if as_json or not console.is_terminal else _bar(console)
    last_line = [0.0]

    def show(r: Report) -> None:
        job, p = r.job, r.progress
        if as_json:
            click.echo(json.dumps({
                "job": job.id, "status": job.status, "read": job.read, "new": job.new,
                "written": p.written, "held": p.held, "pending": p.pending,
                "rate": round(r.rate, 1), "eta_seconds": None if r.eta is None else round(r.eta),
                "waiting_until": r.waiting_until.isoformat() if r.waiting_until else None,
            }))  # fmt: skip
            return
        eta = _duration(r.eta) if r.eta is not None else "?"
        wait = f"rate-limited until {r.waiting_until:%H:%M:%S}" if r.waiting_until else ""
        total = (job.estimate or {}).get("posts")
        if bar is not None:
            bar.update(
                bar.task_ids[0], completed=job.read, total=max(total or 0, job.read) or None,
                new=f"{job.new:,}", written=f"{p.written:,}", held=f"{p.held:,}",
                rate=f"{r.rate:,.0f}", eta=eta, wait=wait,
            )  # fmt: skip
            return
        if time.monotonic() - last_line[0] < LINE_EVERY and job.status == BackfillState.RUNNING:
            return  # a log, not a terminal: a line every few seconds is enough
        last_line[0] = time.monotonic()
        share = f" of ~{total:,}" if isinstance(total, int) else ""
        console.print(
            f"backfill {job.id}: read {job.read:,}{share}  new {job.new:,}  written "
            f"{p.written:,}  held {p.held:,}  {r.rate:,.0f} posts/s  ETA {eta}  {wait}".rstrip()
        )

    try:
        if bar is not None:
            bar.add_task("read", total=None, new="0", written="0", held="0", rate="0", eta="?",
                         wait="")  # fmt: skip
            with bar:
                job = work(runner, show)
        else:
            job = work(runner, show)
    except backfills.LeaseLost:
        with runner.db.connect() as conn:
            gone = backfills.get(conn, runner.job_id)
        raise UserError(
            f"backfill {runner.job_id} stopped: it is now {gone.status if gone else 'gone'}"
        ) from None
    if job.status == BackfillState.PAUSED:
        click.echo(f"backfill {job.id} paused: `syncd backfill resume {job.id}` goes on", err=True)
        raise SystemExit(130)
    if job.status == BackfillState.DONE:
        click.echo(f"backfill {job.id} done: {job.read:,} read, {job.new:,} new", err=True)


def _bar(console: Console) -> Progress:
    return Progress(
        TextColumn("[bold]backfill"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn(
            "read · new {task.fields[new]} · written {task.fields[written]} · held "
            "{task.fields[held]} · {task.fields[rate]}/s · ETA {task.fields[eta]} "
            "{task.fields[wait]}"
        ),
        console=console,
        transient=False,
    )


def _busy(runner: Runner) -> str:
    with runner.db.connect() as conn:
        job = backfills.get(conn, runner.job_id)
    if job is None:
        return f"no backfill {runner.job_id} (see `syncd backfill list`)"
    if job.status in (BackfillState.DONE, BackfillState.CANCELLED, BackfillState.FAILED):
        return f"backfill {job.id} is {job.status}"
    until = f" until {job.lease_until:%H:%M:%S} UTC" if job.lease_until else ""
    return f"backfill {job.id} is being worked by {job.lease_owner}{until}; wait, or cancel it"


@backfill.command("list")
@click.option("--all", "all_", is_flag=True, help="Finished and cancelled jobs too.")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@click.pass_context
@user_errors
def list_(ctx: click.Context, all_: bool, as_json: bool) -> None:
    """Backfill jobs, newest first, with their progress."""
    with state(ctx) as (loaded, conn):
        found = backfills.jobs(conn, active_only=not all_)
        progress = {j.id: backfills.progress(conn, loaded.crm.name, j.id) for j in found}
    if as_json:
        click.echo(json.dumps([_job_json(j, progress[j.id]) for j in found], default=str))
        return
    if not found:
        click.echo("no backfills" + ("" if all_ else " running or queued (--all shows every one)"))
        return
    table = Table("id", "account", "window (UTC)", "status", "read", "new", "written", "held")
    for j in found:
        p = progress[j.id]
        table.add_row(
            str(j.id),
            escape(f"{j.source} @{j.account}"),
            f"{j.since:%Y-%m-%d} → {j.until:%Y-%m-%d}",
            j.status + (f" ({escape(j.error)})" if j.error else ""),
            f"{j.read:,}",
            f"{j.new:,}",
            f"{p.written:,}",
            f"{p.held:,}",
        )
    Console().print(table)


def _job_json(j: Job, p: backfills.Progress) -> dict[str, Any]:
    return {
        "id": j.id, "source": j.source, "account": j.account, "since": j.since,
        "until": j.until, "streams": j.streams, "status": j.status, "segment": j.segment,
        "segments": len(j.plan), "read": j.read, "new": j.new, "requests": j.requests,
        "written": p.written, "held": p.held, "pending": p.pending, "error": j.error,
        "lease_owner": j.lease_owner, "created_at": j.created_at, "finished_at": j.finished_at,
    }  # fmt: skip


@backfill.command("resume")
@click.argument("job_id", type=int)
@click.option("--queue", is_flag=True, help="Hand it to the running daemon instead.")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable progress lines.")
@click.pass_context
@user_errors
def resume(ctx: click.Context, job_id: int, queue: bool, as_json: bool) -> None:
    """Go on with a paused or interrupted job from its last stored page."""
    loaded = settings(ctx)
    app = App(loaded)
    try:
        app.open()
        with app.db.connect() as conn:
            job = backfills.get(conn, job_id)
        if job is None:
            raise UserError(f"no backfill {job_id} (see `syncd backfill list`)")
        if queue:
            with app.db.transaction() as conn:
                backfills.finish(conn, job_id, BackfillState.QUEUED, datetime.now(UTC))
            click.echo(f"backfill {job_id} queued: the running daemon works it")
            return
        if job.source not in app.sources:
            raise UserError(f"backfill {job_id} reads source {job.source!r}, not in the config")
        source = cast(BackfillSource, app.sources[job.source][1])
        runner = Runner(
            app.pipeline,
            job.source,
            source,
            job_id,
            reserve=loaded.backfill.reserve,
            guard=app.guard,
        )
        _run(runner, as_json)
    finally:
        app.close()


@backfill.command("cancel")
@click.argument("job_id", type=int)
@click.pass_context
@user_errors
def cancel(ctx: click.Context, job_id: int) -> None:
    """Stop a job for good; what it stored stays and is written as usual."""
    with state(ctx, write=True) as (_, conn):
        job = backfills.get(conn, job_id)
        if job is None:
            raise UserError(f"no backfill {job_id} (see `syncd backfill list`)")
        if not backfills.finish(conn, job_id, BackfillState.CANCELLED, datetime.now(UTC)):
            raise UserError(f"backfill {job_id} is already {job.status}")
    click.echo(f"backfill {job_id} cancelled after {job.read:,} posts read")
