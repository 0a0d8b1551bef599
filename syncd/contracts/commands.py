"""What the command line hands a connector's own commands.

A connector may add a command group to ``syncd`` (its setup helpers: authorizing an account,
the fields a CRM needs). It names a function in the registry (``connectors.COMMANDS``) that
builds the group from a :class:`CommandContext`; the command line calls it only when the
group is asked for. The context is all such a command gets of the core: the configuration,
loaded as every other command loads it. A command reports a mistake of its user by raising
:class:`syncd.errors.UserError`, which the command line prints as one line, exiting with the
error's code, as for its own commands.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    import click

    from syncd.contracts import ConnectorSettings, SourceSettings


class Configured(Protocol):
    """The loaded configuration, as far as a connector's commands read it."""

    @property
    def path(self) -> Path: ...
    @property
    def sources(self) -> Sequence[SourceSettings]: ...
    @property
    def crm(self) -> ConnectorSettings: ...


class CommandContext(Protocol):
    def settings(self) -> Configured:
        """The configuration (``--config``, ``$SYNCD_CONFIG`` or the default path), checked,
        with logging set up as it says. A problem in it exits 2, naming the key."""
        ...

    def settings_if_any(self) -> Configured | None:
        """As :meth:`settings`, or None when no config file was named and none is at the
        default path: a helper that works with the documented defaults (preparing an
        outside system before syncd is configured) then uses those."""
        ...


CommandGroup = Callable[[CommandContext], "click.Group"]
