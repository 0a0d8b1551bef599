"""Webhook hints in state (``syncd.state.hints``), on SQLite and PostgreSQL: each (source,
object, kind) stored once, offered to the account's walks until the page that read the object
is stored, and marked taken in that page's transaction only: a crash before leaves the hint
untaken and it is read again; a hint the API does not confirm stores nothing but its row.

The source is the fake with a webhook (:class:`FakeWebhookSource`): a mentions walk's first
page reads the posts its ``mention`` hints name, as Meta's mentions are read by id.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import select
from support.fake_crm import FakeCrm
from support.fake_source import FakeNetwork, FakeSource, FakeWebhook, FakeWebhookSource
from support.pipeline import Clock, count

from syncd.errors import TransientError
from syncd.model import Account, Stream, WebhookHint
from syncd.pipeline import Pipeline, PipelineSettings
from syncd.state import hints, walks
from syncd.state.db import Database
from syncd.state.tables import deliveries, interactions, webhook_hints


class Mentions:
    """A brand whose mentions are polled, and a post in no timeline the webhook tells of."""

    def __init__(self, db: Database, source: FakeSource | None = None) -> None:
        self.world = FakeNetwork()
        brand = self.world.add_user("acme")
        self.alice = self.world.add_user("alice")
        self.account = Account("fake", brand.handle, brand.id)
        self.hidden = self.world.add_post(self.alice.id, "@acme in my caption", unpolled=True)
        self.source = source or FakeWebhookSource(self.world, FakeWebhook("t", "s"), page_size=1)
        self.source.world = self.world
        self.db = db
        self.clock = Clock()
        self.pipeline = Pipeline(
            db, "sf", FakeCrm({}), PipelineSettings(retries=0), clock=self.clock
        )

    def hint(self, object_id: str, kind: str = "mention") -> WebhookHint:
        return WebhookHint(self.account.user_id, object_id, kind)

    def deliver(self, *received: WebhookHint) -> int:
        with self.db.transaction() as conn:
            return hints.add(conn, "src", received, self.clock())

    def poll(self) -> Any:
        return self.pipeline.poll("src", self.source, self.account, Stream.MENTIONS)

    def untaken(self) -> tuple[WebhookHint, ...]:
        with self.db.connect() as conn:
            return hints.untaken(conn, "src", self.account.user_id)

    def stored_posts(self) -> set[str]:
        with self.db.connect() as conn:
            return set(conn.execute(select(interactions.c.post_id)).scalars())


def test_a_delivery_is_stored_once_and_hints_are_offered_oldest_first(db: Database) -> None:
    w = Mentions(db)
    first, second = w.hint("9001"), w.hint("9002")
    assert w.deliver(first, second, first) == 2
    assert w.deliver(second) == 0  # a replay adds nothing
    w.clock.now += timedelta(seconds=5)
    other = WebhookHint("another-account", "9003", "mention")
    kinds = [w.hint("9001", "comment"), other, WebhookHint("", "1", "mention")]
    assert w.deliver(*kinds) == 2  # the same object as another kind is another hint; no empty id
    assert w.untaken() == (first, second, w.hint("9001", "comment"))
    with db.connect() as conn:
        assert hints.untaken(conn, "src", "another-account") == (other,)
        assert hints.untaken(conn, "other-source", w.account.user_id) == ()
        assert hints.untaken(conn, "src", w.account.user_id, limit=1) == (first,)


def test_a_hinted_post_no_poll_sees_is_read_and_its_hint_taken_with_its_page(
    db: Database,
) -> None:
    w = Mentions(db)
    polled = w.world.add_post(w.alice.id, "@acme hello").id
    w.poll()
    assert w.stored_posts() == {polled}  # the caption mention is in no timeline

    w.deliver(w.hint(w.hidden.id), w.hint(w.hidden.id, "comment"))
    result = w.poll()
    assert result.new == 1 and w.stored_posts() == {polled, w.hidden.id}
    assert count(db, deliveries) == 2
    # The mention is taken; the hint of a kind no stream reads stays, offered again.
    assert w.untaken() == (w.hint(w.hidden.id, "comment"),)
    assert count(db, webhook_hints, webhook_hints.c.taken_at.is_not(None)) == 1

    w.deliver(w.hint(w.hidden.id))  # Meta sends it again after it was read: nothing new
    w.poll()
    assert w.untaken() == (w.hint(w.hidden.id, "comment"),)
    assert count(db, interactions) == 2


def test_a_forged_hint_is_taken_and_adds_nothing_the_api_does_not_confirm(db: Database) -> None:
    w = Mentions(db)
    unrelated = w.world.add_post(w.alice.id, "nothing about the brand", unpolled=True).id
    w.deliver(w.hint("123456789"), w.hint(unrelated))
    w.poll()
    assert w.stored_posts() == set() and count(db, deliveries) == 0
    assert w.untaken() == ()  # read through the API once, not again on every walk


def test_a_crash_before_the_page_is_stored_leaves_the_hint_untaken(
    db: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    w = Mentions(db)
    w.world.add_post(w.alice.id, "@acme one")
    w.world.add_post(w.alice.id, "@acme two")  # two pages: the hint rides on the first
    w.deliver(w.hint(w.hidden.id))
    stored = walks.page_stored

    def killed(*args: Any) -> None:
        stored(*args)  # the page, its cursor and its taken hint are written; then it dies
        raise RuntimeError("killed before commit")

    monkeypatch.setattr(walks, "page_stored", killed)
    with pytest.raises(RuntimeError, match="killed"):
        w.poll()
    assert w.untaken() == (w.hint(w.hidden.id),) and w.stored_posts() == set()

    # The first page stored, the second's request fails: the hint went with the first.
    monkeypatch.setattr(walks, "page_stored", stored)
    w.world.faults = [None, "transient"]
    with pytest.raises(TransientError):
        w.poll()
    assert w.untaken() == () and w.hidden.id in w.stored_posts()
    result = w.poll()  # the walk goes on; the hint is not offered again
    assert not any(c.hints for c in w.source.fetched[3:])
    assert result.new == 1 and count(db, interactions) == 3


def test_a_source_without_a_webhook_is_offered_no_hints(db: Database) -> None:
    world = FakeNetwork()
    w = Mentions(db, FakeSource(world, page_size=1))
    w.deliver(w.hint(w.hidden.id))
    w.poll()
    assert all(c.hints == () for c in w.source.fetched)
    assert w.untaken() == (w.hint(w.hidden.id),)
