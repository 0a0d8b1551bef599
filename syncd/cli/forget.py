"""Privacy requests: ``syncd forget`` removes one person from state (and from the CRM)."""

from __future__ import annotations

import json
from typing import Any

import click

import connectors
from syncd.cli.base import cli, settings, user_errors
from syncd.errors import UserError
from syncd.state import privacy
from syncd.state.db import Database


@cli.command()
@click.option("--network", default="x", show_default=True, help="The person's network.")
@click.option(
    "--user", "user", required=True, help="Their handle (current or former, '@' optional) or id."
)
@click.option(
    "--crm",
    "with_crm",
    is_flag=True,
    help="First delete the CRM records syncd wrote for their interactions.",
)
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@click.pass_context
@user_errors
def forget(
    ctx: click.Context, network: str, user: str, with_crm: bool, yes: bool, as_json: bool
) -> None:
    """Remove everything syncd keeps about one person, in one transaction.

    Their identity and former handles, links and link history, review candidates, the
    interactions they wrote or were addressed to (with their deliveries), and quarantined
    items naming them. With --crm, the CRM records syncd wrote for those interactions are
    deleted first; if the CRM refuses any, state is left as it was, so running the command
    again reaches them. Posts still on the network are read again if they are polled
    again (a backfill, a mention newer than the cursor).
    """
    loaded = settings(ctx)
    db = Database(loaded.state.url)
    try:
        db.upgrade()
        with db.connect() as conn:
            person = _find(conn, network, user)
            records = privacy.crm_records(conn, person, loaded.crm.name)
        if not yes:
            what = f" and {len(records)} CRM record(s)" if with_crm else ""
            click.confirm(
                f"Forget {network} user {person.shown}{what}? This cannot be undone",
                abort=True,
                err=True,
            )
        crm_deleted = _delete_crm(loaded, records) if with_crm else 0
        with db.transaction() as conn:
            person = _find(conn, network, str(person.user_id))
            counts = privacy.forget(conn, person)
    finally:
        db.dispose()
    result: dict[str, Any] = {
        "network": network,
        "user_id": person.user_id,
        "handle": person.handle,
        "removed": counts,
        "crm_records_deleted": crm_deleted if with_crm else None,
    }
    if as_json:
        click.echo(json.dumps(result, indent=2))
        return
    click.echo(f"forgot {network} user {person.shown}")
    for table, n in sorted(counts.items()):
        click.echo(f"  {table}: {n} row(s)")
    if with_crm:
        click.echo(f"  CRM records deleted: {crm_deleted}")


def _find(conn: Any, network: str, user: str) -> privacy.Person:
    try:
        person = privacy.find(conn, network, user)
    except privacy.BrandAccount as exc:
        raise UserError(f"refusing to forget {user!r}: {exc}") from None
    if person is None:
        raise UserError(
            f"no {network} user {user!r} in state (by id, handle or former handle): "
            "nothing to forget"
        )
    return person


def _delete_crm(loaded: Any, records: list[str]) -> int:
    if not records:
        return 0
    crm = connectors.crm_class(loaded.crm.type).from_settings(loaded.crm)
    try:
        outcomes = crm.delete_history(records)
    finally:
        crm.close()
    refused = [o for o in outcomes if not o.ok]
    if refused:
        shown = "; ".join(f"{o.record_id}: {o.error_code}: {o.error}" for o in refused[:5])
        more = f" (and {len(refused) - 5} more)" if len(refused) > 5 else ""
        raise UserError(
            f"the CRM refused to delete {len(refused)} of {len(records)} record(s): "
            f"{shown}{more}; nothing was removed from state, run the command again"
        )
    return len(outcomes)
