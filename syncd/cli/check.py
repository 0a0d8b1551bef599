"""Setup checks: ``syncd check`` (is every outside system usable?).

The checks themselves are the connectors' (``check()`` of the Source and Crm contracts), run
by :mod:`syncd.service.checks`; this module prints what they say.
"""

from __future__ import annotations

import json
import sys

import click
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from syncd.cli.base import cli, config_path, settings, user_errors
from syncd.contracts import CheckRow
from syncd.service.checks import run_checks


@cli.command("check")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@click.pass_context
@user_errors
def check(ctx: click.Context, as_json: bool) -> None:
    """Check the config, then reach every source and the CRM: log in, read once, and verify
    the objects and fields syncd uses exist as it needs them. Exit 0 only if all is OK."""
    loaded = settings(ctx)  # a config problem exits 2 here, naming the key
    rows = run_checks(loaded, config_path(ctx))
    ok = all(r.ok for _, r in rows)
    if as_json:
        checks = [
            {"target": t, "item": r.item, "ok": r.ok, "detail": r.detail, "fix": r.fix}
            for t, r in rows
        ]
        click.echo(json.dumps({"ok": ok, "checks": checks}, indent=2))
    else:
        _print(rows, ok)
    sys.exit(0 if ok else 1)


def _print(rows: list[tuple[str, CheckRow]], ok: bool) -> None:
    console = Console(highlight=False)
    table = Table("", "target", "item", "detail")
    for target, r in rows:
        status = "[green]OK[/]" if r.ok else "[bold red]FAIL[/]"
        table.add_row(status, escape(target), escape(r.item), escape(r.detail))
    console.print(table)
    failed = [(t, r) for t, r in rows if not r.ok]
    if failed:
        # Plain lines, not table cells: a fix is copied, and a wrapped cell breaks it up.
        click.echo(f"\n{len(failed)} to fix:")
        for target, r in failed:
            click.echo(f"  {target} {r.item}: {r.fix or r.detail}")
    else:
        click.echo("all OK")
