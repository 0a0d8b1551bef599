"""Registry of connectors: the config's ``type`` → class, imported only when used."""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from syncd.contracts import Crm, Source

SOURCES: dict[str, str] = {
    "x": "connectors.x.source:XSource",
}

CRMS: dict[str, str] = {
    "salesforce": "connectors.salesforce.crm:SalesforceCrm",
}


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
