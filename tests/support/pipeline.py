"""Scripted walks, and a clock, for driving the Pipeline by hand with the fakes."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import func, select

from support.fake_crm import FakeCrm
from support.fake_source import FakeXSource, Script
from syncd.model import (
    Account,
    Author,
    Cursor,
    Direction,
    Interaction,
    Page,
    Stream,
)
from syncd.pipeline import Pipeline, PipelineSettings
from syncd.state import ingest as st
from syncd.state.db import Database

BRAND = Account("x", "acme", "100")


T0 = datetime(2026, 11, 1, 12, 0, tzinfo=UTC)


def post(
    post_id: str,
    author: str,
    *,
    direction: Direction = Direction.INBOUND,
    counterpart: str | None = None,
) -> Interaction:
    return Interaction(
        network="x",
        post_id=post_id,
        account="acme",
        stream=Stream.MENTIONS if direction is Direction.INBOUND else Stream.REPLIES,
        direction=direction,
        author_id=author,
        counterpart_id=counterpart or author,
        text=f"post {post_id}",
        created_at=T0 + timedelta(minutes=int(post_id) % 1000),
        url=f"https://x.com/u/status/{post_id}",
        raw={"id": post_id},
    )


def author(user_id: str, handle: str) -> Author:
    return Author("x", user_id, handle, handle.title())


def scripted(pages: Mapping[Cursor, Page | Exception]) -> FakeXSource:
    """A source answering the brand's walks from ``pages``, by cursor."""
    return FakeXSource(Script.of(BRAND, pages))


class Clock:
    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> datetime:
        return self.now


def two_page_walk() -> dict[Cursor, Page | Exception]:
    first = Page(
        interactions=(post("205", "7"), post("204", "8")),
        authors=(author("7", "alice"), author("8", "bob")),
        next_cursor=Cursor(since_id="100", pagination_token="p2", pending_since_id="205"),
    )
    second = Page(
        interactions=(post("203", "7"),),
        authors=(author("7", "alice"),),
        next_cursor=Cursor(since_id="205"),
    )
    return {Cursor(since_id="100"): first, Cursor("100", "p2", "205"): second}


def seed_cursor(db: Database, since_id: str, cursor: Cursor | None = None) -> None:
    """Store a cursor as an empty page would: ``since_id``, or a whole ``cursor``."""
    with db.transaction() as conn:
        page = Page((), (), cursor or Cursor(since_id=since_id))
        st.ingest_page(
            conn,
            source="src",
            network="x",
            account=BRAND,
            stream=Stream.MENTIONS,
            page=page,
            crms=["sf"],
            brand_ids=set(),
            now=T0,
        )


def make(db: Database, crm: FakeCrm, clock: Clock | None = None) -> Pipeline:
    return Pipeline(db, "sf", crm, PipelineSettings(retries=0), clock=clock or Clock())


def count(db: Database, table: Any, *where: Any) -> int:
    with db.connect() as conn:
        return int(conn.execute(select(func.count()).select_from(table).where(*where)).scalar_one())
