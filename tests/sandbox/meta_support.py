"""What the Meta stand-in tests share: the recordings, a settable clock, a world, requests."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import parse_qs, urlsplit

import requests
from support import FIXTURES

from sandbox.meta.api import MetaSandbox
from sandbox.meta.store import Page, Person

RECORDED = FIXTURES / "meta"
PAGE_TOKEN = "sandbox-meta-page-token"
USER_TOKEN = "sandbox-meta-user-token"
V = "v25.0"


def recorded(path: str) -> Any:
    return json.loads((RECORDED / path).read_text(encoding="utf-8"))


@dataclass
class Clock:
    now: datetime = field(default_factory=lambda: datetime(2026, 11, 2, 9, 0, tzinfo=UTC))

    def __call__(self) -> datetime:
        return self.now

    def advance(self, **delta: float) -> None:
        self.now += timedelta(**delta)


def get(
    sb: MetaSandbox, path: str, token: str | None = PAGE_TOKEN, *, version: str = V, **params: Any
) -> requests.Response:
    headers = {} if token is None else {"Authorization": f"Bearer {token}"}
    return requests.get(f"{sb.url}/{version}{path}", params=params, headers=headers, timeout=10)


def follow(url: str, token: str | None = PAGE_TOKEN) -> requests.Response:
    headers = {} if token is None else {"Authorization": f"Bearer {token}"}
    return requests.get(url, headers=headers, timeout=10)


def query(url: str) -> dict[str, list[str]]:
    return parse_qs(urlsplit(url).query, keep_blank_values=True)


def kind(value: Any) -> str:
    return "null" if value is None else type(value).__name__


def assert_same_shape(ours: Any, real: Any, where: str = "") -> None:
    """Every field the stand-in sends is one the recording has, with the same JSON type;
    objects and lists compared inside."""
    if isinstance(ours, dict):
        assert isinstance(real, dict), f"{where}: an object here, {kind(real)} recorded"
        invented = set(ours) - set(real)
        assert not invented, f"{where}: fields no recording has: {sorted(invented)}"
        for key, value in ours.items():
            assert_same_shape(value, real[key], f"{where}.{key}")
    elif isinstance(ours, list):
        assert isinstance(real, list), f"{where}: a list here, {kind(real)} recorded"
        for value in ours:
            if real:
                assert_same_shape(value, real[0], f"{where}[]")
    else:
        assert kind(ours) == kind(real), f"{where}: {kind(ours)} here, {kind(real)} recorded"


def merged(*objects: dict[str, Any]) -> dict[str, Any]:
    """One recorded object holding the fields of several (a field seen in any of them)."""
    out: dict[str, Any] = {}
    for obj in objects:
        for key, value in obj.items():
            out.setdefault(key, value)
    return out


@dataclass
class World:
    sb: MetaSandbox
    clock: Clock
    page: Page
    ann: Person
    bob: Person


def world(sb: MetaSandbox, clock: Clock) -> World:
    page = sb.add_page("Acme", token=PAGE_TOKEN, admin_token=USER_TOKEN)
    return World(sb, clock, page, sb.add_person("Ann Customer"), sb.add_person("Bob Buyer"))
