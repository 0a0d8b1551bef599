"""Command line: parse, call the core, print. No logic of its own.

Commands live in modules by audience: :mod:`.service` (running it), :mod:`.admin` (what an
admin inspects and repairs), :mod:`.links` and :mod:`.review` (who each author is in the
CRM), :mod:`.tryout` (sandbox and demo), :mod:`.forget` and :mod:`.compliance` (privacy
requests, posts deleted on the network, payload retention), :mod:`.check` (is the setup
usable: ``syncd check``). Each connector may add a group of its own setup helpers through the
registry (see :mod:`syncd.contracts.commands`).
"""

from __future__ import annotations

from syncd.cli import (
    admin,
    backfill,
    check,
    compliance,
    forget,
    links,
    review,
    service,
    tryout,
)
from syncd.cli.base import cli

__all__ = [
    "admin",
    "backfill",
    "check",
    "cli",
    "compliance",
    "forget",
    "links",
    "main",
    "review",
    "service",
    "tryout",
]


def main() -> None:
    cli(prog_name="syncd")
