"""Salesforce setup helpers: ``syncd salesforce fields``, the metadata package that creates the
fields syncd needs."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import click

from syncd.errors import UserError

if TYPE_CHECKING:
    from connectors.salesforce.settings import SalesforceSettings
    from syncd.contracts.commands import CommandContext


def group(context: CommandContext) -> click.Group:
    """``syncd salesforce``, its commands handed ``context`` as their click context's object."""
    return click.Group(
        "salesforce",
        commands=[fields],
        help="Salesforce setup helpers.",
        context_settings={"obj": context},
    )


@click.command("fields")
@click.option(
    "--out",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Write the package into this directory instead of printing it.",
)
@click.pass_obj
def fields(context: CommandContext, out: Path | None) -> None:
    """The custom fields syncd needs as a Metadata API package (package.xml, objects/*.object
    and a permission set granting access to them), named as configured, or by the defaults
    when there is no config file. Deploy with `sf project deploy start --metadata-dir DIR`."""
    from connectors.salesforce.setup.package import PERMISSION_SET, package

    files = package(_salesforce_settings(context))
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


def _salesforce_settings(context: CommandContext) -> SalesforceSettings:
    from connectors.salesforce.settings import IDENTITY_DEFAULTS, SalesforceSettings

    loaded = context.settings_if_any()
    if loaded is None:
        # An admin preparing an org may have no config yet: the documented defaults, with
        # every network's identity fields (which networks will be read is not known yet).
        default = SalesforceSettings.model_construct(type="salesforce")
        return default.for_networks(list(IDENTITY_DEFAULTS))
    crm = loaded.crm
    if not isinstance(crm, SalesforceSettings):
        raise UserError(f"the configured CRM is {crm.type!r}, not salesforce")
    return crm
