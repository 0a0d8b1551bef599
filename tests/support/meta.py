"""The Graph stand-in's clock for Meta source tests and the fixtures serving it (loaded by the
root conftest), a webhook table for a source, a mentions walk driven page by page, the
poller's storing of a walk, and the listener serving a source's webhook."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta

import pytest
from prometheus_client import CollectorRegistry
from sqlalchemy import func, select

from connectors.meta import webhook
from connectors.meta.receiver import WebhookSettings, hint_kind
from connectors.meta.walk import MetaSource
from sandbox.meta.api import MetaSandbox
from support.fake_crm import FakeCrm
from support.pipeline import Clock as PipelineClock
from syncd.model import (
    Account,
    Cursor,
    Interaction,
    JsonObject,
    Page,
    Stream,
    WebhookHint,
    merge_marks,
)
from syncd.pipeline import Pipeline, PipelineSettings
from syncd.service.http import HealthServer
from syncd.service.webhooks import SourceWebhooks
from syncd.state import gaps
from syncd.state.db import Database
from syncd.state.ingest import ingest_page, load_cursor
from syncd.state.tables import interactions

VERIFY = "meta-verify-token-9876543210"


class GraphClock:
    """The stand-in's and the source's clock: one second on at each reading (Graph's times are
    whole seconds), and moved on at will."""

    def __init__(self) -> None:
        self.now = datetime(2026, 11, 2, 9, 0, tzinfo=UTC)

    def __call__(self) -> datetime:
        self.now += timedelta(seconds=1)
        return self.now

    def advance(self, delta: timedelta) -> None:
        self.now += delta


@contextmanager
def graph_server() -> Iterator[tuple[MetaSandbox, GraphClock]]:
    """The Graph stand-in and its clock (the source under test reads the same clock)."""
    clock = GraphClock()
    with MetaSandbox(clock=clock) as server:
        yield server, clock


@pytest.fixture
def graph() -> Iterator[tuple[MetaSandbox, GraphClock]]:
    """The Graph stand-in and its clock, together."""
    with graph_server() as both:
        yield both


@pytest.fixture
def clock() -> GraphClock:
    return GraphClock()


@pytest.fixture
def sandbox(clock: GraphClock) -> Iterator[MetaSandbox]:
    """The Graph stand-in on the ``clock`` fixture's clock."""
    with MetaSandbox(clock=clock) as server:
        yield server


class Calls:
    """Each answer the source reports (ObservedResponses), by route."""

    def __init__(self) -> None:
        self.routes: Counter[str] = Counter()

    def __call__(self, route: str, status: int, headers: Mapping[str, str]) -> None:
        self.routes[route.split("/", 2)[-1]] += 1

    def clear(self) -> None:
        self.routes.clear()

    def count(self, suffix: str) -> int:
        return sum(n for route, n in self.routes.items() if route.endswith(suffix))


def hint_from(delivery: JsonObject) -> WebhookHint:
    """The hint the receiver stores for a delivery naming one object."""
    (found,) = webhook.hints(delivery)
    return WebhookHint(found.account_id, found.object_id, hint_kind(found))


def by_id(pages: list[Page]) -> dict[str, Interaction]:
    return {i.post_id: i for p in pages for i in p.interactions}


def ids(pages: list[Page]) -> list[str]:
    return [i.post_id for p in pages for i in p.interactions]


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


class Core:
    """State as the poller keeps it: a walk reads with the stored cursor and marks, and each
    page is stored in one transaction. ``new`` counts the interactions stored for the first
    time."""

    def __init__(self, db: Database, source: str) -> None:
        self.db = db
        self.source = source
        self.new = 0

    def cursor(self, account: Account, stream: Stream) -> Cursor:
        with self.db.transaction() as conn:
            return load_cursor(conn, self.source, account.handle, stream)

    def store(self, source: MetaSource, account: Account, stream: Stream, page: Page) -> None:
        with self.db.transaction() as conn:
            result = ingest_page(
                conn,
                source=self.source,
                network=source.network,
                account=account,
                stream=stream,
                page=page,
                crms=["crm"],
                brand_ids={account.user_id},
                now=datetime.now(UTC),
            )
        self.new += result.new

    def walk(
        self,
        source: MetaSource,
        account: Account,
        stream: Stream = Stream.MENTIONS,
        *,
        stop_after: int | None = None,
    ) -> list[Page]:
        """One walk from the stored cursor, each page stored; ``stop_after`` pages: the
        process dies after reading the next one, before storing it."""
        cursor = self.cursor(account, stream)
        if cursor.since_id is None and not cursor.in_walk:
            cursor = Cursor(since_id=source.start_after(source.clock()), marks=cursor.marks)
        pages: list[Page] = []
        while True:
            assert len(pages) < 50, "the walk never ends"
            page = source.fetch(account, stream, cursor)
            pages.append(page)
            if stop_after is not None and len(pages) > stop_after:
                return pages  # read, never stored
            self.store(source, account, stream, page)
            if page.walk_complete:
                return pages
            cursor = Cursor(
                page.next_cursor.since_id,
                page.next_cursor.pagination_token,
                page.next_cursor.pending_since_id,
                merge_marks(cursor.marks, page.marks),
            )

    def gaps(self) -> list[gaps.Gap]:
        with self.db.connect() as conn:
            return gaps.listing(conn)


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
