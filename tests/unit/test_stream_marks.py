"""Per-object marks kept with a stream's cursor (``Cursor.marks``, ``Page.marks``), on SQLite
and PostgreSQL: stored in the transaction of the page that moved them, so a crash replays at
most one page and the marks never run ahead of (or behind) the cursor.

The source is the fake that keeps a mark per thread it re-reads (:class:`FakeThreads`), as a
network whose new comments land on old posts is read.
"""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import delete, event
from support.fake_crm import FakeCrm
from support.fake_source import NETWORK, FakeSource, FakeThreads
from support.pipeline import Clock, count

from syncd.errors import TransientError
from syncd.model import Account, Cursor, Page, Stream
from syncd.pipeline import Pipeline, PipelineSettings
from syncd.state import ingest as st
from syncd.state import walks
from syncd.state.db import Database
from syncd.state.tables import cursors, deliveries, interactions, stream_marks


class Threads:
    """Three threads with a post each, read a thread a page."""

    def __init__(self, db: Database) -> None:
        self.world = FakeThreads()
        brand = self.world.add_user("acme")
        alice, bob = self.world.add_user("alice"), self.world.add_user("bob")
        self.account = Account(NETWORK, brand.handle, brand.id)
        self.t = [self.world.open_thread() for _ in range(3)]
        self.p = [
            self.world.add_post(thread, who.id).id
            for thread, who in zip(self.t, (alice, bob, alice), strict=True)
        ]
        self.alice = alice
        self.source = FakeSource(self.world, page_size=1)
        self.db = db
        self.pipeline = Pipeline(db, "sf", FakeCrm({}), PipelineSettings(retries=0), clock=Clock())

    def poll(self) -> Any:
        return self.pipeline.poll("src", self.source, self.account, Stream.MENTIONS)

    def cursor(self) -> Cursor:
        with self.db.connect() as conn:
            return st.load_cursor(conn, "src", "acme", Stream.MENTIONS)


def test_a_crash_between_pages_replays_one_page_and_marks_move_with_the_cursor(
    db: Database,
) -> None:
    w = Threads(db)
    w.world.faults = [None, "transient"]  # the second page's request fails: a crash there
    with pytest.raises(TransientError):
        w.poll()
    # The first page is stored with both its cursor and its mark, nothing of the second.
    assert w.cursor() == Cursor(pagination_token=w.t[1], marks={w.t[0]: w.p[0]})
    assert count(db, interactions) == 1

    late = w.world.add_post(w.t[0], w.alice.id).id  # a new post in a thread already passed
    result = w.poll()
    assert w.source.fetched[2:] == [
        Cursor(pagination_token=w.t[1], marks={w.t[0]: w.p[0]}),  # only the missing pages
        Cursor(pagination_token=w.t[2], marks={w.t[0]: w.p[0], w.t[1]: w.p[1]}),
    ]
    assert (result.pages, result.new) == (2, 2)
    assert w.cursor() == Cursor(marks=dict(zip(w.t, w.p, strict=True)))

    again = w.poll()  # the next walk reads each thread after its mark: the late post only
    assert (again.pages, again.seen, again.new) == (3, 1, 1)
    assert w.cursor().marks == {w.t[0]: late, w.t[1]: w.p[1], w.t[2]: w.p[2]}
    assert count(db, interactions) == 4 and count(db, deliveries) == 4

    w.world.closed.add(w.t[1])  # a thread that left the window: its mark goes
    w.poll()
    assert w.cursor().marks == {w.t[0]: late, w.t[2]: w.p[2]}
    assert count(db, stream_marks) == 2


def test_a_page_whose_transaction_fails_stores_neither_its_cursor_nor_its_marks(
    db: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    w = Threads(db)
    stored = walks.page_stored
    calls = [0]

    def crash_on_the_second(*args: Any) -> None:
        calls[0] += 1
        stored(*args)  # the page, its cursor and its marks are written; then the process dies
        if calls[0] == 2:
            raise RuntimeError("killed before commit")

    monkeypatch.setattr(walks, "page_stored", crash_on_the_second)
    with pytest.raises(RuntimeError, match="killed"):
        w.poll()
    assert w.cursor() == Cursor(pagination_token=w.t[1], marks={w.t[0]: w.p[0]})
    assert count(db, interactions) == 1

    monkeypatch.setattr(walks, "page_stored", stored)
    result = w.poll()
    assert w.source.fetched[2] == Cursor(pagination_token=w.t[1], marks={w.t[0]: w.p[0]})
    assert (result.pages, result.new) == (2, 2)
    assert w.cursor() == Cursor(marks=dict(zip(w.t, w.p, strict=True)))


def test_marks_are_loaded_with_their_stream_only_in_one_query(db: Database) -> None:
    long = "c" * 600  # a network's paging cursor, kept whole
    with db.transaction() as conn:
        for account, stream, marks in (
            ("acme", Stream.MENTIONS, {"p1": long, "p2": "2"}),
            ("acme", Stream.REPLIES, {"p1": "other stream"}),
            ("acmesupport", Stream.MENTIONS, {"p1": "other account"}),
        ):
            page = Page((), (), Cursor(pagination_token="next"), marks=marks)
            st.ingest_page(
                conn,
                source="src",
                network=NETWORK,
                account=Account(NETWORK, account, "1"),
                stream=stream,
                page=page,
                crms=["sf"],
                brand_ids=set(),
                now=Clock()(),
            )
    statements: list[str] = []

    def seen(*args: Any) -> None:
        statements.append(str(args[2]))

    with db.connect() as conn:
        event.listen(db.engine, "before_cursor_execute", seen)
        try:
            cursor = st.load_cursor(conn, "src", "acme", Stream.MENTIONS)
        finally:
            event.remove(db.engine, "before_cursor_execute", seen)
    assert cursor == Cursor(pagination_token="next", marks={"p1": long, "p2": "2"})
    assert sum("stream_marks" in s for s in statements) == 1


def test_a_mark_key_too_long_for_its_column_moves_nothing(db: Database) -> None:
    """A connector's bug is refused alike on both backends (SQLite enforces no length),
    before anything of the page is kept."""
    page = Page((), (), Cursor(pagination_token="next"), marks={"k" * 256: "1"})
    with pytest.raises(ValueError, match="mark's key"), db.transaction() as conn:
        st.ingest_page(
            conn,
            source="src",
            network=NETWORK,
            account=Account(NETWORK, "acme", "1"),
            stream=Stream.MENTIONS,
            page=page,
            crms=["sf"],
            brand_ids=set(),
            now=Clock()(),
        )
    with db.connect() as conn:
        assert st.load_cursor(conn, "src", "acme", Stream.MENTIONS) == Cursor()


def test_marks_go_with_their_cursor_row(db: Database) -> None:
    """Whatever removes a stream's cursor row (a source taken out of state) takes its marks
    with it: each mark names its cursor row, on delete cascade."""
    w = Threads(db)
    w.poll()
    assert count(db, stream_marks) == 3
    with db.transaction() as conn:
        conn.execute(delete(cursors).where(cursors.c.source == "src"))
    assert count(db, stream_marks) == 0
