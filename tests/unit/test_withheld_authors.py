"""Interactions whose author the network withheld, on SQLite and PostgreSQL: stored once with
no identity and no delivery (nothing stands in for the strangers, so none is merged with
another), counted by the read model for ``syncd status`` (text and JSON) and /metrics, and
handled by ``forget`` (nobody's to forget, redacted like any post) and the compliance job
(a deleted one's words go).

The source is the fake network, whose posts may be ``withheld``: read without an author, as
Meta leaves ``from`` out for an app without Advanced Access.
"""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from sqlalchemy import select
from support.config import BASE
from support.fake_crm import FakeCrm
from support.fake_source import NETWORK, FakeNetwork, FakeSource
from support.pipeline import T0, Clock, count

from syncd.cli import cli
from syncd.compliance import deleted
from syncd.compliance import forget as forgetting
from syncd.model import Account, Author, Cursor, Direction, Interaction, Page, Stream
from syncd.pipeline import Pipeline, PipelineSettings
from syncd.service.metrics import _state_metrics
from syncd.state import ingest as st
from syncd.state import status as read_model
from syncd.state.db import Database
from syncd.state.status import Withheld
from syncd.state.tables import deliveries, identities, interactions, post_checks


class World:
    """The brand, a known customer and two strangers the network does not name."""

    def __init__(self, db: Database) -> None:
        self.db = db
        self.net = FakeNetwork()
        brand = self.net.add_user("acme")
        self.alice = self.net.add_user("alice")
        self.strangers = [self.net.add_user("stranger1"), self.net.add_user("stranger2")]
        self.account = Account(NETWORK, brand.handle, brand.id)
        self.known = self.net.add_post(self.alice.id, "@acme where is my order?")
        self.withheld = [
            self.net.add_post(s.id, f"@acme help, says {s.handle}", withheld=True)
            for s in self.strangers
        ]
        self.net.add_post(brand.id, "@alice on its way", in_reply_to=self.known.id)
        self.reply = self.net.add_post(brand.id, "sorry!", in_reply_to=self.withheld[0].id)
        self.source = FakeSource(self.net, page_size=10)
        self.clock = Clock()
        self.pipeline = Pipeline(
            db, "sf", FakeCrm({}), PipelineSettings(retries=0), clock=self.clock
        )

    def poll(self) -> int:
        return sum(
            self.pipeline.poll("src", self.source, self.account, stream).new
            for stream in (Stream.MENTIONS, Stream.REPLIES)
        )

    def rewind(self) -> None:
        """The cursors as before any walk, as if none had been saved."""
        for stream in (Stream.MENTIONS, Stream.REPLIES):
            with self.db.transaction() as conn:
                st.ingest_page(
                    conn,
                    source="src",
                    network=NETWORK,
                    account=self.account,
                    stream=stream,
                    page=Page((), (), Cursor()),
                    crms=["sf"],
                    brand_ids=set(),
                    now=T0,
                )

    def row(self, post_id: str) -> Any:
        with self.db.connect() as conn:
            return conn.execute(select(interactions).where(interactions.c.post_id == post_id)).one()


def test_a_withheld_author_is_stored_once_with_no_identity_and_no_delivery(
    db: Database,
) -> None:
    w = World(db)
    assert w.poll() == 5
    for post in w.withheld:
        row = w.row(post.id)
        assert (row.author_id, row.counterpart_identity_id) == (None, None)
    reply = w.row(w.reply.id)  # the brand answering a stranger: its author known, not whom
    assert (reply.author_id, reply.counterpart_identity_id) == (w.account.user_id, None)
    with db.connect() as conn:
        people = set(conn.scalars(select(identities.c.user_id)))
    assert people.isdisjoint(s.id for s in w.strangers)
    assert count(db, deliveries) == 2  # alice's mention and the brand's answer to her

    w.rewind()
    assert w.poll() == 0  # read again: unique on (network, post id) as any post
    assert (count(db, interactions), count(db, deliveries)) == (5, 2)
    w.pipeline.resolve()  # nothing of them is offered to the resolver, or written
    w.pipeline.deliver()
    assert count(db, deliveries) == 2

    with db.connect() as conn:
        assert read_model.status(conn, "sf").withheld == [Withheld("src", NETWORK, 3)]
        assert read_model.snapshot(conn, "sf", T0).withheld == [Withheld("src", NETWORK, 3)]


def test_an_author_named_on_a_later_read_fills_the_stored_post_in(db: Database) -> None:
    # First read without its author (no Advanced Access yet), read again once the network
    # names them: the stored post gains its author and customer, and is written once.
    w = World(db)
    stranger = w.strangers[0]
    crm = FakeCrm({stranger.id: "003STRANGER"})
    w.pipeline = Pipeline(db, "sf", crm, PipelineSettings(retries=0), clock=w.clock)
    assert w.poll() == 5
    assert count(db, deliveries) == 2
    for post in w.withheld:
        post.withheld = False
    w.rewind()
    assert w.poll() == 0  # nothing new: the same posts, now with their authors
    mention, reply = w.row(w.withheld[0].id), w.row(w.reply.id)
    with db.connect() as conn:
        named = conn.execute(
            select(identities.c.id, identities.c.handle).where(identities.c.user_id == stranger.id)
        ).one()
    assert (mention.author_id, mention.counterpart_identity_id) == (stranger.id, named.id)
    assert (reply.author_id, reply.counterpart_identity_id) == (w.account.user_id, named.id)
    assert named.handle == stranger.handle
    assert count(db, deliveries) == 5  # both strangers' mentions, the answer to the first
    with db.connect() as conn:
        assert read_model.status(conn, "sf").withheld == []

    w.pipeline.resolve()
    w.pipeline.deliver()
    w.rewind()
    assert w.poll() == 0  # a third read changes nothing: one delivery each, written once
    assert count(db, deliveries) == 5
    w.pipeline.deliver()
    sent = [r.external_id for batch in crm.upserts for r in batch]
    theirs = [f"{NETWORK}:{w.withheld[0].id}", f"{NETWORK}:{w.reply.id}"]
    assert sorted(i for i in sent if i in theirs) == sorted(theirs)


def test_a_post_read_again_as_the_brands_does_not_name_a_customer_for_it(db: Database) -> None:
    # Read without its author, the brand's own comment was taken for a person's (inbound);
    # read again with it, it is the brand answering someone. That someone did not write it.
    w = World(db)
    w.poll()
    post = w.withheld[0]
    stored = w.row(post.id)
    assert stored.direction == str(Direction.INBOUND)
    answer = Interaction(
        network=NETWORK,
        post_id=post.id,
        account=w.account.handle,
        stream=Stream.REPLIES,
        direction=Direction.OUTBOUND,
        author_id=w.account.user_id,
        counterpart_id=w.alice.id,
        text=stored.text,
        created_at=stored.created_at,
        url=stored.url,
    )
    with db.transaction() as conn:
        st.store_page(
            conn,
            source="src",
            network=NETWORK,
            account=w.account,
            page=Page((answer,), (Author(NETWORK, w.alice.id, "alice"),), Cursor()),
            crms=["sf"],
            brand_ids={w.account.user_id},
            now=T0,
        )
    again = w.row(post.id)
    assert (again.author_id, again.counterpart_identity_id) == (None, None)
    assert count(db, deliveries) == 2


def test_status_json_and_metrics_show_the_withheld_count(
    db: Database, state_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    w = World(db)
    w.poll()
    monkeypatch.setenv("T_X_BEARER", "bearer-token-value")
    monkeypatch.setenv("T_SF_PASSWORD", "password-value")
    monkeypatch.setenv("COLUMNS", "400")
    (tmp_path / "token").write_text("security-token-value")
    config = tmp_path / "config.toml"
    state = 'url = "sqlite:///{tmp}/state.db"'
    config.write_text(BASE.replace(state, f'url = "{state_url}"').replace("{tmp}", str(tmp_path)))
    shown = CliRunner().invoke(cli, ["--config", str(config), "status"])
    assert shown.exit_code == 0, shown.output
    assert "author withheld by the network" in shown.output and "src (fake) 3" in shown.output
    as_json = CliRunner().invoke(cli, ["--config", str(config), "status", "--json"])
    assert as_json.exit_code == 0, as_json.output
    got = json.loads(as_json.output)["withheld"]
    assert got == [{"source": "src", "network": NETWORK, "interactions": 3}]

    with db.connect() as conn:
        snap = read_model.snapshot(conn, "sf", T0)
    [gauge] = [m for m in _state_metrics(snap) if m.name == "syncd_interactions_author_withheld"]
    assert [(s.labels, s.value) for s in gauge.samples] == [
        ({"source": "src", "network": NETWORK}, 3.0)
    ]


def test_forget_leaves_withheld_posts_but_redacts_them(db: Database) -> None:
    w = World(db)
    named = w.net.add_post(w.strangers[1].id, "@acme same as @alice", withheld=True)
    w.poll()
    forgotten = forgetting.forget(db, NETWORK, "alice", crm_name="sf", crm=None, lease=60.0)
    assert forgotten.removed["interactions"] == 2  # her mention and the brand's answer
    assert w.row(named.id).text == "@acme same as @[forgotten]"  # nobody's: kept, redacted
    assert count(db, interactions) == 4
    with db.connect() as conn:
        assert read_model.status(conn, "sf").withheld == [Withheld("src", NETWORK, 4)]


def test_a_withheld_post_deleted_on_the_network_loses_its_words(db: Database) -> None:
    w = World(db)
    w.poll()
    w.net.delete_post(w.withheld[0].id)
    crm = FakeCrm({})
    report = deleted.run(
        db,
        "sf",
        crm,
        {"src": w.source},
        horizon=timedelta(days=30),
        interval=timedelta(hours=1),
        action="delete",
        now=T0 + timedelta(hours=2),
    )
    assert (report.checked, report.deleted, report.acted) == (3, 1, 0)  # nothing in the CRM
    gone, kept = w.row(w.withheld[0].id), w.row(w.withheld[1].id)
    assert (gone.text, gone.raw) == ("", {})
    assert kept.text == f"@acme help, says {w.strangers[1].handle}"
    with db.connect() as conn:
        stmt = select(post_checks.c.interaction_id, post_checks.c.action)
        checks = {r.interaction_id: r.action for r in conn.execute(stmt)}
    assert checks[gone.id] == "unwritten" and checks[kept.id] is None
