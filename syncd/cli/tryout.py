"""Trying syncd out: the sandbox stand-ins and the demo."""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import Any

import click
from rich.console import Console

from sandbox.config import STANDINS
from syncd.cli.base import cli, user_errors
from syncd.service import logs


def _port_options(command: Callable[..., Any]) -> Callable[..., Any]:
    """``--<name>-port`` for each stand-in the sandbox declares."""
    for standin in reversed(STANDINS):
        command = click.option(
            f"--{standin.name}-port",
            f"{standin.name}_port",
            type=int,
            default=0,
            help=f"Port of the {standin.title} stand-in (0: any).",
        )(command)
    return command


@cli.command()
@_port_options
@click.option("--seed/--no-seed", default=True, help="Load the demo brand and customers.")
@user_errors
def sandbox(seed: bool, **ports: int) -> None:
    """Run every stand-in of the sandbox in the foreground and print their URLs."""
    from sandbox.run import serve

    serve(
        ports={s.name: ports[f"{s.name}_port"] for s in STANDINS},
        seed_world=seed,
    )


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
@click.option(
    "--service-cloud",
    is_flag=True,
    help="As a Service Cloud org: SocialPosts and SocialPersonas beside the Tasks, and a "
    "priority that follows the customer's tier.",
)
@user_errors
def demo(
    customers: int,
    posts: int,
    seconds: float,
    state_url: str | None,
    show: int,
    log_level: str,
    service_cloud: bool,
) -> None:
    """Run the real daemon against the built-in sandbox and print what reached the CRM."""
    from syncd.service.demo import run_demo

    logs.setup(log_level, "human")
    sys.exit(
        run_demo(
            customers=customers,
            posts=posts,
            seconds=seconds,
            state_url=state_url,
            show=show,
            service_cloud=service_cloud,
            console=Console(width=None if sys.stdout.isatty() else 120),
        )
    )
