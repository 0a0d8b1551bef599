"""Command line: parse, call the core, print. No logic of its own."""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from dataclasses import asdict
from datetime import datetime
from functools import wraps
from pathlib import Path
from typing import Any, TypeVar

import click
from rich.console import Console
from rich.table import Table

from syncd import __version__, logs
from syncd import config as config_mod
from syncd.errors import UserError

F = TypeVar("F", bound=Callable[..., Any])

EXIT_INCOMPLETE = 1  # `poll --once`: something did not go through


def user_errors(fn: F) -> F:
    """Print a UserError as one message (no traceback) and exit with its code."""

    @wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except UserError as exc:
            click.echo(f"syncd: {exc}", err=True)
            sys.exit(exc.exit_code)

    return wrapper  # type: ignore[return-value]


@click.group()
@click.version_option(__version__, prog_name="syncd")
@click.option(
    "--config",
    "config_path",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help=f"Config file (default: $SYNCD_CONFIG or {config_mod.DEFAULT_PATH}).",
)
@click.option(
    "--log-level",
    type=click.Choice(["DEBUG", "INFO", "WARNING", "ERROR"]),
    default=None,
    help="Overrides [logging] level.",
)
@click.option(
    "--log-format",
    type=click.Choice(["auto", "human", "json"]),
    default=None,
    help="Overrides [logging] format.",
)
@click.pass_context
def cli(
    ctx: click.Context, config_path: Path | None, log_level: str | None, log_format: str | None
) -> None:
    """syncd: social conversations into CRM history."""
    ctx.obj = {"config": config_path, "log_level": log_level, "log_format": log_format}


def _settings(ctx: click.Context) -> config_mod.Settings:
    path = ctx.obj["config"] or config_mod.default_path()
    settings = config_mod.load(path)
    logs.setup(
        ctx.obj["log_level"] or settings.logging.level,
        ctx.obj["log_format"] or settings.logging.format,
    )
    return settings


def _app(ctx: click.Context) -> Any:
    from syncd.app import App

    app = App(_settings(ctx))
    app.open()
    return app


@cli.command()
@click.pass_context
@user_errors
def run(ctx: click.Context) -> None:
    """Run the daemon: poll, resolve and write on schedule until SIGTERM or SIGINT."""
    from syncd.daemon import Daemon

    app = _app(ctx)
    try:
        code = Daemon(app).run()
    finally:
        app.close()
    sys.exit(code)


@cli.command()
@click.option("--once", is_flag=True, required=True, help="One full cycle, then exit.")
@click.option("--json", "as_json", is_flag=True, help="Print the cycle report as JSON.")
@click.pass_context
@user_errors
def poll(ctx: click.Context, once: bool, as_json: bool) -> None:
    """Poll every stream, resolve and write once. Exit 0 only if everything went through."""
    app = _app(ctx)
    try:
        report = app.cycle()
    finally:
        app.close()
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
                f"{report.resolve.linked} linked, {report.resolve.unmatched} held"
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
    """Per-stream cursors and last success, deliveries by state, held identities."""
    from syncd.state.db import Database
    from syncd.state.status import status as read_status

    settings = _settings(ctx)
    db = Database(settings.state.url)
    try:
        db.upgrade()
        with db.connect() as conn:
            st = read_status(conn, settings.crm.name)
    finally:
        db.dispose()
    if as_json:
        click.echo(json.dumps(asdict(st), default=str, indent=2))
        return
    console = Console()
    table = Table("source", "account", "stream", "since_id", "last success (UTC)", "last error")
    for s in st.streams:
        table.add_row(
            s.source,
            s.account,
            s.stream + (" (mid-walk)" if s.in_walk else ""),
            s.since_id or "-",
            _when(s.last_success_at),
            s.last_error or "",
        )
    for column in table.columns[:5]:
        column.no_wrap = True
    console.print(table)
    states = ", ".join(f"{k} {v}" for k, v in sorted(st.deliveries.items())) or "none"
    console.print(f"interactions: {st.interactions}   deliveries: {states}")
    console.print(
        f"held identities (no CRM match yet): {st.held_identities}   "
        f"quarantined items: {st.quarantined}"
    )


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

    settings = _settings(ctx)
    database = Database(settings.state.url)
    try:
        database.upgrade()
        click.echo(f"state database at revision {database.revision()}")
    finally:
        database.dispose()


@cli.command()
@click.option("--x-port", type=int, default=0, help="Port of the X API stand-in (0: any).")
@click.option("--salesforce-port", type=int, default=0, help="Port of the Salesforce stand-in.")
@click.option("--seed/--no-seed", default=True, help="Load the demo brand and customers.")
@user_errors
def sandbox(x_port: int, salesforce_port: int, seed: bool) -> None:
    """Run the X and Salesforce stand-ins in the foreground and print their URLs."""
    from syncd.sandbox.run import serve

    serve(x_port=x_port, salesforce_port=salesforce_port, seed_world=seed)


@cli.command()
@click.option("--customers", type=int, default=300, show_default=True)
@click.option(
    "--posts",
    type=int,
    default=400,
    show_default=True,
    help="Mentions and replies played over the run.",
)
@click.option(
    "--seconds",
    type=float,
    default=8.0,
    show_default=True,
    help="How long the posts take to arrive.",
)
@click.option("--state", "state_url", default=None, help="State DB URL (default: a temp file).")
@click.option("--show", type=int, default=5, show_default=True, help="Customer timelines to print.")
@click.option(
    "--log-level",
    type=click.Choice(["DEBUG", "INFO", "WARNING", "ERROR"]),
    default="WARNING",
    show_default=True,
)
@user_errors
def demo(
    customers: int, posts: int, seconds: float, state_url: str | None, show: int, log_level: str
) -> None:
    """Run the real daemon against the built-in sandbox and print what reached the CRM."""
    from syncd.demo import run_demo

    logs.setup(log_level, "human")
    sys.exit(
        run_demo(
            customers=customers,
            posts=posts,
            seconds=seconds,
            state_url=state_url,
            show=show,
            console=Console(width=None if sys.stdout.isatty() else 120),
        )
    )


def main() -> None:
    cli(prog_name="syncd")
