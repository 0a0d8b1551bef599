"""``syncd sandbox``: both stand-ins in the foreground, for trying syncd by hand."""

from __future__ import annotations

import contextlib
import random
import threading

import click

from sandbox.salesforce.api import SalesforceSandbox
from sandbox.seed import next_post, seed
from sandbox.server import CONTROL_PATH
from sandbox.x.api import XSandbox

X_BEARER = "sandbox-x-bearer"


def serve(
    *, x_port: int = 0, salesforce_port: int = 0, seed_world: bool = True, post_every: float = 2.0
) -> None:
    x = XSandbox(port=x_port, bearer_token=X_BEARER)
    sf = SalesforceSandbox(port=salesforce_port)
    stop = threading.Event()
    with x, sf:
        click.echo(f"X API v2 stand-in:      {x.url}   (bearer token: {X_BEARER})")
        click.echo(f"Salesforce stand-in:    {sf.url}   (login_url)")
        click.echo("  username integration@sandbox.example, password sandbox-password,")
        click.echo("  security token sandbox-token")
        click.echo(f"fault injection:        POST/GET/DELETE {x.url}{CONTROL_PATH}")
        click.echo(f"                        POST/GET/DELETE {sf.url}{CONTROL_PATH}")
        click.echo('  e.g. {"kind": "status", "endpoint": "mentions", "status": 503, "count": 3}')
        if seed_world:
            world = seed(x, sf)
            click.echo(
                f"seeded brand @acme and @acmesupport with {len(world.customers)} customers;"
                f" a new mention or reply every {post_every:g}s"
            )
            rng = random.Random()
            with contextlib.suppress(KeyboardInterrupt):
                while not stop.wait(post_every):
                    next_post(x, world, rng)
        else:
            with contextlib.suppress(KeyboardInterrupt):
                stop.wait()
