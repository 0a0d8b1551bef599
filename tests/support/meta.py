"""The Graph stand-in's clock for Meta source tests, a webhook table for a source, a
mentions walk driven page by page, and the listener serving a source's webhook."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta

import pytest
from prometheus_client import CollectorRegistry
from sqlalchemy import func, select

from connectors.meta.receiver import WebhookSettings
from connectors.meta.walk import MetaSource
from sandbox.meta.api import MetaSandbox
from support.fake_crm import FakeCrm
from support.pipeline import Clock as PipelineClock
from syncd.model import Account, Cursor, Page, Stream, WebhookHint, merge_marks
from syncd.pipeline import Pipeline, PipelineSettings
from syncd.service.http import HealthServer
from syncd.service.webhooks import SourceWebhooks
from syncd.state.db import Database
from syncd.state.tables import interactions

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


class Walker:
    """A Meta source's mentions walk, page by page, the cursor carried as the poller carries
    it (the marks merged in), each page offered the hints given."""

    def __init__(self, source: MetaSource, account: Account) -> None:
        self.source = source
        self.account = account
        self.cursor = Cursor(since_id=source.start_after(source.clock()))

    def page(self, offered: tuple[WebhookHint, ...] = ()) -> Page:
        cursor = replace(self.cursor, hints=offered)
        page = self.source.fetch(self.account, Stream.MENTIONS, cursor)
        self.cursor = replace(page.next_cursor, marks=merge_marks(cursor.marks, page.marks))
        return page

    def walk(self) -> list[Page]:
        pages = [self.page()]
        while not pages[-1].walk_complete:
            pages.append(self.page())
        return pages


def stored(db: Database, post_id: str) -> int:
    """How many interactions of that id the state database holds."""
    with db.connect() as conn:
        return int(
            conn.execute(select(func.count()).where(interactions.c.post_id == post_id)).scalar_one()
        )


@dataclass(frozen=True)
class Listener:
    """Where the listener takes the source's deliveries, the pipeline polling it, and the
    sources woken so far."""

    url: str
    pipeline: Pipeline
    woken: list[str]


@contextmanager
def listening(db: Database, name: str, source: MetaSource) -> Iterator[Listener]:
    """The core's HTTP listener serving ``source``'s webhook as ``name``, and a pipeline on
    ``db`` to poll it with; the names of the sources a delivery woke are kept."""
    pipeline = Pipeline(db, "sf", FakeCrm({}), PipelineSettings(retries=0), clock=PipelineClock())
    woken: list[str] = []
    sources = {name: source}
    server = HealthServer(
        "127.0.0.1:0",
        lambda: (200, {}),
        CollectorRegistry(),
        webhooks=SourceWebhooks(lambda: sources, lambda: db, pipeline.clock, woken.append),
    )
    server.start()
    try:
        yield Listener(f"{server.url}/webhooks/{name}", pipeline, woken)
    finally:
        server.stop()
