"""The two contracts every connector implements. The core depends on these, never on a connector.

Connectors do no database work and no sleeping: they translate one API exchange into domain
objects and raise the errors of :mod:`syncd.errors`.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Annotated, Any, ClassVar, Protocol, Self

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, field_validator

from syncd.model import (
    Account,
    Cursor,
    HistoryRecord,
    IdentityKey,
    Match,
    Page,
    Stream,
    WriteResult,
)


class ConnectorSettings(BaseModel):
    """Base of each connector's settings model; unknown keys are an error, not ignored."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str
    type: str


_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)?\s*$")
_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}


def parse_duration(value: Any) -> float:
    """``"60s"``, ``"5m"``, ``"1h"``, ``"250ms"`` or a number of seconds → seconds (float)."""
    if isinstance(value, bool):
        raise ValueError("must be a duration like '60s', '5m' or '1h'")
    if isinstance(value, int | float):
        seconds = float(value)
    elif isinstance(value, str) and (m := _DURATION.match(value)):
        seconds = float(m.group(1)) * _UNITS[m.group(2) or "s"]
    else:
        raise ValueError("must be a duration like '60s', '5m' or '1h'")
    if seconds <= 0:
        raise ValueError("must be a positive duration")
    return seconds


Duration = Annotated[float, BeforeValidator(parse_duration)]


class SourceSettings(ConnectorSettings):
    """Keys every source has, whatever its network."""

    accounts: list[str] = Field(min_length=1)
    streams: list[Stream] = Field(default=[Stream.MENTIONS, Stream.REPLIES], min_length=1)
    interval: Duration = 60.0

    @field_validator("accounts")
    @classmethod
    def _handles(cls, value: list[str]) -> list[str]:
        handles = [h.strip().removeprefix("@") for h in value]
        if any(not h for h in handles):
            raise ValueError("handles must not be empty")
        if len({h.lower() for h in handles}) != len(handles):
            raise ValueError("handles must not repeat")
        return handles


class Source(Protocol):
    """A social network: reads brand accounts' streams."""

    network: ClassVar[str]
    Settings: ClassVar[type[ConnectorSettings]]

    @classmethod
    def from_settings(cls, settings: Any) -> Self: ...

    def resolve_accounts(self, handles: Sequence[str]) -> Mapping[str, Account]:
        """Look up brand handles (one batched call). Unknown handles are absent from the result."""
        ...

    def fetch(self, account: Account, stream: Stream, cursor: Cursor) -> Page:
        """Read one page of ``stream`` after ``cursor``. The page carries the cursor to store."""
        ...

    def close(self) -> None: ...


class Crm(Protocol):
    """A CRM: finds people and appends history to them."""

    Settings: ClassVar[type[ConnectorSettings]]

    @classmethod
    def from_settings(cls, settings: Any) -> Self: ...

    def lookup(self, keys: Sequence[IdentityKey]) -> Mapping[IdentityKey, Match]:
        """Find CRM people for identity keys, batched. Keys with no match are absent."""
        ...

    def upsert_history(self, records: Sequence[HistoryRecord]) -> Sequence[WriteResult]:
        """Upsert history records by external id; one result per record, in order."""
        ...

    def close(self) -> None: ...
