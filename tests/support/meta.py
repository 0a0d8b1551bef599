"""The Graph stand-in's clock for Meta source tests, and a webhook table for a source."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta

import pytest

from connectors.meta.receiver import WebhookSettings
from sandbox.meta.api import MetaSandbox

VERIFY = "meta-verify-token-9876543210"


class GraphClock:
    """The stand-in's and the source's clock: one second on at each reading."""

    def __init__(self) -> None:
        self.now = datetime(2026, 11, 2, 9, 0, tzinfo=UTC)

    def __call__(self) -> datetime:
        self.now += timedelta(seconds=1)
        return self.now


@contextmanager
def graph_server() -> Iterator[tuple[MetaSandbox, GraphClock]]:
    """The Graph stand-in and its clock (the source under test reads the same clock)."""
    clock = GraphClock()
    with MetaSandbox(clock=clock) as server:
        yield server, clock


def hooked(monkeypatch: pytest.MonkeyPatch, sandbox: MetaSandbox) -> WebhookSettings:
    """``[sources.webhook]`` for a source the stand-in's deliveries are signed for."""
    monkeypatch.setenv("META_VERIFY_TOKEN", VERIFY)
    monkeypatch.setenv("META_APP_SECRET", sandbox.app_secret)
    return WebhookSettings.model_validate(
        {"verify_token": "env:META_VERIFY_TOKEN", "app_secret": "env:META_APP_SECRET"}
    )
