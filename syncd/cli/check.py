"""Setup checks: ``syncd check`` (is every outside system usable?) and ``syncd salesforce
fields`` (the metadata package that creates the fields syncd needs).

The checks themselves are the connectors' (``check()`` of the Source and Crm contracts);
this module runs them and prints what they say.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import click
from rich.console import Console
from rich.markup import escape
from rich.table import Table

import connectors
from syncd.cli.base import cli, config_path, settings, user_errors
from syncd.config import settings as config_mod
from syncd.contracts import CheckRow
from syncd.errors import UserError
from syncd.service.http import exposure_warning, is_loopback, parse_listen


def _run_checks(ctx: click.Context) -> list[tuple[str, CheckRow]]:
    loaded = settings(ctx)  # a config problem exits 2 here, naming the key
    rows = [("config", CheckRow(str(config_path(ctx)), True, "valid"))]
    listen = loaded.daemon.listen
    if listen is not None and not is_loopback(parse_listen(listen)[0]):
        # Said, not failed: a proxy in front may well control who reads it.
        rows.append(("config", CheckRow("daemon.listen", True, exposure_warning(listen))))
    for s in loaded.sources:
        source = connectors.source_class(s.type).from_settings(s)
        try:
            rows += [(s.name, r) for r in source.check(s.accounts)]
        finally:
            source.close()
    crm = connectors.crm_class(loaded.crm.type).from_settings(loaded.crm)
    try:
        rows += [(loaded.crm.name, r) for r in crm.check()]
    finally:
        crm.close()
    return rows


@cli.command("check")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@click.pass_context
@user_errors
def check(ctx: click.Context, as_json: bool) -> None:
    """Check the config, then reach every source and the CRM: log in, read once, and verify
    the objects and fields syncd uses exist as it needs them. Exit 0 only if all is OK."""
    rows = _run_checks(ctx)
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


# -- salesforce ------------------------------------------------------------------------------
@cli.group()
def salesforce() -> None:
    """Salesforce setup helpers."""


@salesforce.command("fields")
@click.option(
    "--out",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Write the package into this directory instead of printing it.",
)
@click.pass_context
@user_errors
def fields(ctx: click.Context, out: Path | None) -> None:
    """The custom fields syncd needs as a Metadata API package (package.xml, objects/*.object
    and a permission set granting access to them), named as configured, or by the defaults
    when there is no config file. Deploy with `sf project deploy start --metadata-dir DIR`."""
    from connectors.salesforce.setup.package import PERMISSION_SET, package

    files = package(_salesforce_settings(ctx))
    if out is None:
        for path, text in files.items():
            click.echo(f"==> {path} <==")
            click.echo(text)
        return
    for path, text in files.items():
        target = out / path
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(text, encoding="utf-8")
        click.echo(f"wrote {target}")
    click.echo(
        f"deploy: sf project deploy start --metadata-dir {out}\n"
        f"then assign the permission set {PERMISSION_SET} to the integration user"
    )


def _salesforce_settings(ctx: click.Context) -> Any:
    from connectors.salesforce.settings import SalesforceSettings

    explicit = ctx.obj["config"] is not None or config_mod.default_path() != Path(
        config_mod.DEFAULT_PATH
    )
    if not explicit and not config_path(ctx).exists():
        # An admin preparing an org may have no config yet: the documented defaults.
        return SalesforceSettings.model_construct(type="salesforce")
    crm = settings(ctx).crm
    if not isinstance(crm, SalesforceSettings):
        raise UserError(f"the configured CRM is {crm.type!r}, not salesforce")
    return crm
