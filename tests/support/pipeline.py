"""A scripted source, a CRM fake and a clock for driving the Pipeline by hand."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import func, select

from support.fake_crm import NoExtras
from syncd.model import (
    Account,
    Author,
    CrmRef,
    Cursor,
    Direction,
    HistoryRecord,
    IdentityKey,
    Interaction,
    Match,
    Page,
    Refusal,
    Stream,
    WriteResult,
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


class ScriptedSource:
    """Answers fetch() from a script: cursor → Page, or an exception to raise."""

    network = "x"

    def __init__(self, script: Mapping[Cursor, Page | Exception]) -> None:
        self.script = dict(script)
        self.calls: list[Cursor] = []

    def resolve_accounts(self, handles: Sequence[str]) -> dict[str, Account]:
        return {h: BRAND for h in handles if h == "acme"}

    def fetch(self, account: Account, stream: Stream, cursor: Cursor, known: object = None) -> Page:
        self.calls.append(cursor)
        answer = self.script[cursor]
        if isinstance(answer, Exception):
            raise answer
        return answer

    def close(self) -> None:
        pass


# What the fake's error codes mean, as a CRM connector reads its own (Salesforce's here);
# any other code is final.
REFUSALS = {"UNABLE_TO_LOCK_ROW": Refusal.RETRY, "ENTITY_IS_DELETED": Refusal.GONE}


class FakeCrm(NoExtras):
    """Knows some people by X user id; records every upsert; answers per-record errors on cue."""

    def __init__(self, people: Mapping[str, str]) -> None:
        self.people = dict(people)  # x user id → Contact id
        self.lookups: list[list[IdentityKey]] = []
        self.upserts: list[list[HistoryRecord]] = []
        self.store: dict[str, HistoryRecord] = {}
        self.errors: dict[str, str] = {}  # external id → error code to answer once

    def lookup(self, keys: Sequence[IdentityKey]) -> dict[IdentityKey, Match]:
        self.lookups.append(list(keys))
        return {
            k: Match(CrmRef("Contact", self.people[k.user_id]), "crm_user_id")
            for k in keys
            if k.user_id in self.people
        }

    def upsert_history(self, records: Sequence[HistoryRecord]) -> list[WriteResult]:
        self.upserts.append(list(records))
        out = []
        for r in records:
            code = self.errors.pop(r.external_id, None)
            if code:
                refusal = REFUSALS.get(code, Refusal.FINAL)
                out.append(WriteResult(r.external_id, False, None, None, code, code, refusal))
            else:
                created = r.external_id not in self.store
                self.store[r.external_id] = r
                out.append(WriteResult(r.external_id, True, f"00T{r.external_id[-6:]}", created))
        return out

    def close(self) -> None:
        pass


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
    return Pipeline(db, "sf", crm, PipelineSettings(retries=0), clock=clock or Clock())  # type: ignore[arg-type]


def count(db: Database, table: Any, *where: Any) -> int:
    with db.connect() as conn:
        return int(conn.execute(select(func.count()).select_from(table).where(*where)).scalar_one())
