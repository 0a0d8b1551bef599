"""Registry of connectors: the config's ``type`` → class, imported only when used; and the
command groups connectors add to ``syncd``, built only when asked for."""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from syncd.contracts import Crm, Source
    from syncd.contracts.commands import CommandGroup

SOURCES: dict[str, str] = {
    "x": "connectors.x.source:XSource",
    "mastodon": "connectors.mastodon.source:MastodonSource",
    "bluesky": "connectors.bluesky.source:BlueskySource",
    "facebook": "connectors.meta.facebook:FacebookSource",
    "instagram": "connectors.meta.instagram:InstagramSource",
}

CRMS: dict[str, str] = {
    "salesforce": "connectors.salesforce.crm:SalesforceCrm",
}

# ``syncd NAME …`` → the function building that group (see syncd.contracts.commands).
COMMANDS: dict[str, str] = {
    "x": "connectors.x.commands:group",
    "salesforce": "connectors.salesforce.commands:group",
}

# The loggers of the libraries connectors drive, which say too much below WARNING.
LIBRARY_LOGGERS: tuple[str, ...] = (
    "tweepy",
    "simple_salesforce",
    "mastodon",
    "httpx",
    "atproto_client",
)


def _load(table: dict[str, str], kind: str, type_: str) -> Any:
    try:
        target = table[type_]
    except KeyError:
        known = ", ".join(sorted(table))
        raise LookupError(f"unknown {kind} type {type_!r} (known: {known})") from None
    module, _, attr = target.partition(":")
    return getattr(importlib.import_module(module), attr)


def source_class(type_: str) -> type[Source]:
    cls: type[Source] = _load(SOURCES, "source", type_)
    return cls


def crm_class(type_: str) -> type[Crm]:
    cls: type[Crm] = _load(CRMS, "crm", type_)
    return cls


def command_group(name: str) -> CommandGroup:
    build: CommandGroup = _load(COMMANDS, "command", name)
    return build
