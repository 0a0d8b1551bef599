"""Keeping the CRM true to the network: ``syncd compliance run`` and ``syncd compliance prune``.

The daemon runs both on its own schedule; these run them once, now.
"""

from __future__ import annotations

import json
from dataclasses import asdict

import click

from syncd.cli.base import cli, settings, user_errors
from syncd.service.app import App


@cli.group()
def compliance() -> None:
    """Posts deleted on the network, and how long raw payloads are kept."""


@compliance.command("run")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@click.pass_context
@user_errors
def compliance_run(ctx: click.Context, as_json: bool) -> None:
    """Re-check recently written posts now and delete (or mark, per [compliance] action)
    the CRM records of those deleted on the network."""
    loaded = settings(ctx)
    app = App(loaded)
    try:
        app.open()
        report = app.compliance()
    finally:
        app.close()
    if as_json:
        click.echo(json.dumps(asdict(report), indent=2))
    else:
        verb = "deleted" if loaded.compliance.action == "delete" else "marked"
        click.echo(
            f"checked {report.checked} post(s): {report.deleted} deleted on the network, "
            f"{report.undecided} undecided; CRM records {verb}: {report.acted}, "
            f"refused: {report.failed}"
        )
        for source, why in report.errors.items():
            click.echo(f"{source}: not checked: {why}", err=True)
    if report.errors or report.failed:
        ctx.exit(1)


@compliance.command("prune")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@click.pass_context
@user_errors
def compliance_prune(ctx: click.Context, as_json: bool) -> None:
    """Empty raw payloads older than [privacy] payload_retention now."""
    loaded = settings(ctx)
    app = App(loaded)
    try:
        app.open()
        counts = app.prune()
    finally:
        app.close()
    if as_json:
        click.echo(json.dumps(counts, indent=2))
    elif not loaded.privacy.payload_retention:
        click.echo("payload_retention is 0: raw payloads are kept")
    else:
        click.echo(", ".join(f"{t}: {n} pruned" for t, n in counts.items()))
