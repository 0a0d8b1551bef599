"""The command group and what every command shares: settings, logging, user errors; and the
groups connectors add to it."""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from functools import wraps
from pathlib import Path
from typing import Any, TypeVar

import click
from sqlalchemy import Connection

import connectors
from syncd import __version__
from syncd.config import settings as config_mod
from syncd.contracts import redaction
from syncd.errors import UserError
from syncd.service import logs

F = TypeVar("F", bound=Callable[..., Any])


def user_errors(fn: F) -> F:
    """Print a UserError as one message (no traceback) and exit with its code; the same for
    an unavailable state database (exit 75, EX_TEMPFAIL: run the command again later)."""

    @wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except UserError as exc:
            click.echo(f"syncd: {exc}", err=True)
            sys.exit(exc.exit_code)
        except Exception as exc:
            from syncd.state.db import unavailable

            if (outage := unavailable(exc)) is None:
                raise
            # What was committed stays; the rest is redone from there by the next run.
            click.echo(f"syncd: {outage}; run it again once the database is back", err=True)
            sys.exit(outage.exit_code)

    return wrapper  # type: ignore[return-value]


class _Syncd(click.Group):
    """syncd's own commands, and the group each connector adds (``connectors.COMMANDS``),
    built only when named, or listed by ``--help``."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted({*super().list_commands(ctx), *connectors.COMMANDS})

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        own = super().get_command(ctx, cmd_name)
        if own is not None or cmd_name not in connectors.COMMANDS:
            return own
        return connectors.command_group(cmd_name)(_ConnectorContext(ctx))

    def invoke(self, ctx: click.Context) -> Any:
        # A connector's commands raise UserError too, without this module's decorator.
        return user_errors(super().invoke)(ctx)


@click.group(cls=_Syncd)
@click.version_option(__version__, prog_name="syncd")
@click.option(
    "--config",
    "config_path",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help=f"Config file (default: $SYNCD_CONFIG or {config_mod.DEFAULT_PATH}).",
)
@click.option(
    "--log-level",
    type=click.Choice(["DEBUG", "INFO", "WARNING", "ERROR"]),
    default=None,
    help="Overrides [logging] level.",
)
@click.option(
    "--log-format",
    type=click.Choice(["auto", "human", "json"]),
    default=None,
    help="Overrides [logging] format: auto (journal lines under systemd, else human), human, "
    "or json (one object per line, for log shippers).",
)
@click.pass_context
def cli(
    ctx: click.Context, config_path: Path | None, log_level: str | None, log_format: str | None
) -> None:
    """syncd: social conversations into CRM history."""
    ctx.obj = {"config": config_path, "log_level": log_level, "log_format": log_format}


class _ConnectorContext:
    """The :class:`syncd.contracts.commands.CommandContext` handed to connectors' commands:
    the configuration as the root options (``--config`` and the log overrides) name it."""

    def __init__(self, root: click.Context) -> None:
        self._root = root

    def settings(self) -> config_mod.Settings:
        return settings(self._root)

    def settings_if_any(self) -> config_mod.Settings | None:
        named = self._root.obj["config"] is not None or config_mod.default_path() != Path(
            config_mod.DEFAULT_PATH
        )
        if not named and not config_path(self._root).exists():
            return None
        return self.settings()


def config_path(ctx: click.Context) -> Path:
    return Path(ctx.obj["config"] or config_mod.default_path())


def settings(ctx: click.Context) -> config_mod.Settings:
    loaded = config_mod.load(config_path(ctx))
    logs.setup(
        ctx.obj["log_level"] or loaded.logging.level,
        ctx.obj["log_format"] or loaded.logging.format,
    )
    redaction.protect_settings(loaded)
    return loaded


@contextmanager
def state(ctx: click.Context, *, write: bool = False) -> Iterator[tuple[Any, Connection]]:
    """Settings and a connection to the migrated state database (a transaction if ``write``)."""
    from syncd.state.db import Database

    loaded = settings(ctx)
    db = Database(loaded.state.url, timeouts=loaded.state.timeouts())
    try:
        db.upgrade()
        if write:
            with db.transaction() as conn:
                yield loaded, conn
        else:
            with db.connect() as conn:
                yield loaded, conn
    finally:
        db.dispose()
