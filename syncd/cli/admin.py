"""What an admin inspects and repairs: quarantined API items and dead-lettered CRM writes."""

from __future__ import annotations

import json
from dataclasses import asdict
from datetime import UTC, datetime
from typing import Any

import click
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from syncd.cli.base import cli, state, user_errors
from syncd.errors import UserError
from syncd.model import DEFAULT_TARGET
from syncd.state import admin


def _json(value: Any) -> None:
    click.echo(json.dumps(value, default=str, indent=2))


def _when(value: datetime) -> str:
    return value.strftime("%Y-%m-%d %H:%M:%S")


# -- quarantine ----------------------------------------------------------------------------
@cli.group()
def quarantine() -> None:
    """API items syncd could not understand, kept whole with the reason."""


@quarantine.command("list")
@click.option("--source", default=None, help="Only this source.")
@click.option("--limit", type=int, default=100, show_default=True)
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@click.pass_context
@user_errors
def quarantine_list(ctx: click.Context, source: str | None, limit: int, as_json: bool) -> None:
    """The newest quarantined items first."""
    with state(ctx) as (_, conn):
        items = admin.quarantined(conn, limit=limit, source=source)
    if as_json:
        _json([asdict(i) for i in items])
        return
    if not items:
        click.echo("nothing is quarantined")
        return
    table = Table("id", "when (UTC)", "source", "item", "reason")
    for i in items:
        table.add_row(str(i.id), _when(i.created_at), i.source, i.item_id or "-", escape(i.reason))
    Console().print(table)


@quarantine.command("show")
@click.argument("item_id", type=int)
@click.pass_context
@user_errors
def quarantine_show(ctx: click.Context, item_id: int) -> None:
    """One quarantined item: its reason and the raw payload as the API sent it."""
    with state(ctx) as (_, conn):
        item = admin.quarantined_item(conn, item_id)
    if item is None:
        raise UserError(f"no quarantined item {item_id} (see `syncd quarantine list`)")
    _json(asdict(item))


# -- dead letters --------------------------------------------------------------------------
@cli.group()
def deadletter() -> None:
    """CRM writes refused for good: see why, then retry them or drop them."""


@deadletter.command("list")
@click.option("--limit", type=int, default=100, show_default=True)
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@click.pass_context
@user_errors
def deadletter_list(ctx: click.Context, limit: int, as_json: bool) -> None:
    """Dead letters, oldest first, with the CRM's error code and message."""
    with state(ctx) as (settings, conn):
        letters = admin.dead_letters(conn, settings.crm.name, limit=limit)
        total = admin.dead_count(conn, settings.crm.name)
    if as_json:
        _json([asdict(d) for d in letters])
        return
    if not letters:
        click.echo("no dead letters")
        return
    table = Table("id", "post", "account", "tries", "code", "message", "since (UTC)")
    for d in letters:
        table.add_row(
            str(d.delivery_id),
            # Which record it was, where the CRM writes several per post.
            f"{d.network}:{d.post_id}" + ("" if d.target == DEFAULT_TARGET else f" {d.target}"),
            d.account,
            str(d.attempts),
            d.error_code or "?",
            escape(d.error or ""),
            _when(d.updated_at),
        )
    # The code is what an admin searches for: never wrapped or cut; the message may wrap.
    for column in (*table.columns[:5], table.columns[6]):
        column.no_wrap = True
    table.columns[4].min_width = max(len(d.error_code or "?") for d in letters)
    console = Console()
    console.print(table)
    if total > len(letters):
        console.print(f"… {total - len(letters)} more (--limit)")


def _targets(ids: tuple[int, ...], all_: bool) -> list[int] | None:
    if not ids and not all_:
        raise click.UsageError("give delivery ids (from `syncd deadletter list`) or --all")
    return None if all_ else list(ids)


@deadletter.command("retry")
@click.argument("ids", nargs=-1, type=int)
@click.option("--all", "all_", is_flag=True, help="Every dead letter.")
@click.pass_context
@user_errors
def deadletter_retry(ctx: click.Context, ids: tuple[int, ...], all_: bool) -> None:
    """Queue dead letters again, e.g. after fixing a validation rule in the CRM.

    The running daemon writes them on its next writer round.
    """
    with state(ctx, write=True) as (settings, conn):
        n = admin.retry_dead(conn, settings.crm.name, _targets(ids, all_), datetime.now(UTC))
    if ids and n < len(ids):
        click.echo(f"{len(ids) - n} of the given ids are not dead letters", err=True)
    click.echo(f"queued again: {n}")


@deadletter.command("drop")
@click.argument("ids", nargs=-1, type=int)
@click.option("--all", "all_", is_flag=True, help="Every dead letter.")
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
@click.pass_context
@user_errors
def deadletter_drop(ctx: click.Context, ids: tuple[int, ...], all_: bool, yes: bool) -> None:
    """Give up on dead letters: they stay in state, marked dropped, and are never written."""
    targets = _targets(ids, all_)
    what = "every dead letter" if targets is None else f"{len(targets)} dead letter(s)"
    if not yes:
        click.confirm(f"Drop {what}? They will never reach the CRM", abort=True)
    with state(ctx, write=True) as (settings, conn):
        n = admin.drop_dead(conn, settings.crm.name, targets, datetime.now(UTC))
    click.echo(f"dropped: {n}")
