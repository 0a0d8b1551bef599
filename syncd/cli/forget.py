"""Privacy requests: ``syncd forget`` removes one person from state (and from the CRM)."""

from __future__ import annotations

import json
from typing import Any

import click

import connectors
from syncd.cli.base import cli, settings, user_errors
from syncd.compliance import forget as forgetting
from syncd.errors import UserError
from syncd.state import privacy
from syncd.state.db import Database


@cli.command()
@click.option(
    "--network",
    default=None,
    help="The person's network (default: the one the configured sources read).",
)
@click.option(
    "--user", "user", required=True, help="Their handle (current or former, '@' optional) or id."
)
@click.option(
    "--crm",
    "with_crm",
    is_flag=True,
    help="Also delete the CRM records syncd wrote for them (and the Lead it created), and "
    "rewrite others' records that named them.",
)
@click.option(
    "--unsuppress",
    is_flag=True,
    help="Lift an earlier forget's block instead: their posts are read in again from the "
    "next poll or backfill on.",
)
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@click.pass_context
@user_errors
def forget(
    ctx: click.Context,
    network: str | None,
    user: str,
    with_crm: bool,
    unsuppress: bool,
    yes: bool,
    as_json: bool,
) -> None:
    """Remove everything syncd keeps about one person, and keep them out.

    Their identity and former handles, links and link history, review candidates, the
    interactions they wrote or that were addressed to them (with their deliveries), and
    quarantined items naming them are deleted; others' posts naming them are kept with the
    naming redacted. They go on a suppression list (hashes of their id and handles): later
    polls and backfills drop their posts and redact them from others'. With --crm, the CRM
    records syncd wrote for them and the Lead it created for them are deleted and others'
    records naming them are written again; if the CRM refuses a deletion, they stay in
    state (suppressed), so running the command again reaches them. Writes under way are
    waited for (several instances) or undone by the writer that made them.
    """
    loaded = settings(ctx)
    if network is None:
        read = loaded.networks()
        if len(read) != 1:
            raise click.UsageError(f"the sources read {', '.join(read)}: choose with --network")
        network = read[0]
    db = Database(loaded.state.url, timeouts=loaded.state.timeouts())
    try:
        db.upgrade()
        if unsuppress:
            _unsuppress(db, network, user, as_json)
            return
        crm = connectors.crm_class(loaded.crm.type).from_settings(loaded.crm) if with_crm else None
        try:
            done = forgetting.forget(
                db,
                network,
                user,
                crm_name=loaded.crm.name,
                crm=crm,
                lease=loaded.daemon.lease,
                confirm=None if yes else _confirm(network, with_crm),
                progress=lambda step: _progress(step, as_json),
            )
        finally:
            if crm is not None:
                crm.close()
    finally:
        db.dispose()
    person = done.person
    result: dict[str, Any] = {
        "network": network,
        "user_id": person.user_id,
        "handle": person.handle,
        "removed": done.removed,
        "others_redacted": done.redacted,
        "crm_records_deleted": done.crm_deleted if with_crm else None,
        "crm_records_rewritten": done.crm_rewritten if with_crm else None,
        "suppressed": True,
        "warnings": done.warnings,
    }
    if as_json:
        click.echo(json.dumps(result, indent=2))
        return
    click.echo(f"forgot {network} user {person.shown}; their posts will not be read in again")
    for table, n in sorted(done.removed.items()):
        click.echo(f"  {table}: {n} row(s)")
    if done.redacted:
        click.echo(f"  others' posts redacted: {done.redacted}")
    if with_crm:
        click.echo(f"  CRM records deleted: {done.crm_deleted}")
        click.echo(f"  CRM records naming them rewritten: {done.crm_rewritten}")
    for warning in done.warnings:
        click.echo(f"warning: {warning}", err=True)


def _confirm(network: str, with_crm: bool) -> Any:
    def ask(person: privacy.Person, records: int) -> None:
        what = f" and {records} CRM record(s)" if with_crm else ""
        click.confirm(
            f"Forget {network} user {person.shown}{what}? This cannot be undone",
            abort=True,
            err=True,
        )

    return ask


def _progress(step: str, as_json: bool) -> None:
    if step != "marked" and not as_json:
        click.echo(f"... {step}", err=True)


def _unsuppress(db: Database, network: str, user: str, as_json: bool) -> None:
    lifted = forgetting.unsuppress(db, network, user)
    if not lifted:
        raise UserError(f"no {network} user {user!r} is suppressed (by id or handle they had)")
    if as_json:
        click.echo(json.dumps({"network": network, "user": user, "unsuppressed": True}))
        return
    click.echo(
        f"{network} user {user} is no longer suppressed: their posts are read in again from "
        "the next poll or backfill on (what was forgotten stays forgotten)"
    )
