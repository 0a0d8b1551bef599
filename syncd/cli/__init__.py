"""Command line: parse, call the core, print. No logic of its own.

Commands live in modules by audience: :mod:`.service` (running it), :mod:`.admin` (what an
admin inspects and repairs), :mod:`.links` and :mod:`.review` (who each author is in the
CRM), :mod:`.tryout` (sandbox and demo).
"""

from __future__ import annotations

from syncd.cli import admin, backfill, links, review, service, tryout
from syncd.cli.base import cli

__all__ = ["admin", "backfill", "cli", "links", "main", "review", "service", "tryout"]


def main() -> None:
    cli(prog_name="syncd")
