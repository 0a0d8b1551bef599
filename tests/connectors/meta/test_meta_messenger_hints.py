"""Messenger through the Page's ``messages`` webhook, and the relevance of what hints read.

A delivery names a message; the mentions walk reads it by id (``GET /{message-id}``) while it
is among its thread's 20 newest, and stores it as the thread walk would: the same id, the
thread, outbound when the Page wrote it. What each test pins: a thread busier than 20
messages between two thread walks loses nothing with the webhook on, and records no gap;
without it the gap is recorded as before; a message Graph no longer details is dropped and
counted, not an error; a forged hint naming another Page's comment or message adds nothing;
a delivery Meta sends twice is stored once, and the first one brings the poll forward; stale
hint rows are pruned.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import select
from support.meta import GraphClock, Walker, by_id, hint_from, hooked, listening, stored

from connectors.meta.facebook import FacebookSource
from sandbox.meta.api import MetaSandbox
from sandbox.meta.store import Message
from syncd.model import Account, Direction, Page, Stream, WebhookHint
from syncd.state import hints
from syncd.state.db import Database
from syncd.state.tables import webhook_hints

TOKEN = "EAAB-page-token-messenger"
NAME = "acme-fb"


def hint_of(sandbox: MetaSandbox, message: Message) -> WebhookHint:
    """The hint the receiver stores for the stand-in's delivery of ``message``."""
    return hint_from(sandbox.message_event(message.id))


def busy_thread(
    graph: tuple[MetaSandbox, GraphClock], webhook_on: bool
) -> tuple[MetaSandbox, Walker, list[Message], list[Page]]:
    """A thread gaining 30 messages between two thread walks: ten arrive before a walk's
    first page (which reads the hints), twenty more before its thread page. Every sixth is
    the Page's answer (its echo delivered too)."""
    sandbox, clock = graph
    page = sandbox.add_page("Acme", token=TOKEN)
    fan = sandbox.add_person("Ann Fan")
    sandbox.add_message(page.id, fan, "hello", at=clock.now - timedelta(hours=1))
    source = FacebookSource(TOKEN, page_id=page.id, api_base_url=sandbox.url, clock=clock)
    walker = Walker(source, Account("facebook", "Acme", page.id))
    walker.walk()
    sent = [sandbox.add_message(page.id, fan, f"a{n}", from_page=n % 6 == 5) for n in range(10)]
    first = walker.page(tuple(hint_of(sandbox, m) for m in sent) if webhook_on else ())
    assert not first.walk_complete  # the feed's page: the threads come next
    later = [sandbox.add_message(page.id, fan, f"b{n}", from_page=n % 6 == 5) for n in range(20)]
    offered = tuple(hint_of(sandbox, m) for m in later) if webhook_on else ()
    second = walker.page(offered)
    assert second.walk_complete
    return sandbox, walker, sent + later, [first, second]


def test_a_busy_thread_loses_nothing_with_the_webhook_on(
    graph: tuple[MetaSandbox, GraphClock],
) -> None:
    sandbox, walker, sent, pages = busy_thread(graph, webhook_on=True)
    got = by_id(pages)
    assert set(got) == {m.id for m in sent}
    assert not pages[-1].cut  # every message beyond the 20 newest was read by its hint
    assert not any("a gap" in w for p in pages for w in p.warnings)
    assert [len(p.taken_hints) for p in pages] == [10, 20]
    thread = sandbox.conversation(walker.account.user_id, sandbox.store.people[sent[0].sender[1]])
    fan_id = next(i.author_id for i in got.values() if i.direction is Direction.INBOUND)
    for message in sent:
        item = got[message.id]
        assert item.conversation_id == thread.id  # as the thread walk keeps it
        if message.sender[0] == "page":
            assert item.direction is Direction.OUTBOUND and item.stream is Stream.REPLIES
            assert item.counterpart_id == fan_id  # attributed to the person answered
        else:
            assert item.direction is Direction.INBOUND and item.author_id == fan_id
    # The thread walk passed every hinted message: their marks are gone.
    assert not [k for k in walker.cursor.marks if k.startswith("msg:")]
    assert walker.source.dropped_hints == {}


def test_without_the_webhook_the_busy_thread_is_a_gap_as_before(
    graph: tuple[MetaSandbox, GraphClock],
) -> None:
    _, _, sent, pages = busy_thread(graph, webhook_on=False)
    assert pages[-1].cut
    assert any("a gap" in w for w in pages[-1].warnings)
    assert len(by_id(pages)) < len(sent)


def test_a_message_graph_no_longer_details_is_dropped_and_counted(
    graph: tuple[MetaSandbox, GraphClock],
) -> None:
    sandbox, clock = graph
    page = sandbox.add_page("Acme", token=TOKEN)
    fan = sandbox.add_person("Ann Fan")
    early = sandbox.add_message(page.id, fan, "first")
    hint = hint_of(sandbox, early)
    for n in range(20):  # the hinted message falls out of the 20 newest before it is read
        sandbox.add_message(page.id, fan, f"then {n}")
    source = FacebookSource(
        TOKEN, page_id=page.id, api_base_url=sandbox.url, messenger=False, clock=clock
    )
    walker = Walker(source, Account("facebook", "Acme", page.id))
    read_page = walker.page((hint,))
    assert read_page.interactions == ()
    assert read_page.taken_hints == (hint,)  # taken: asking again would change nothing
    assert sum(source.dropped_hints.values()) == 1
    source.close()


def test_a_forged_hint_for_another_page_s_objects_adds_nothing(
    graph: tuple[MetaSandbox, GraphClock],
) -> None:
    sandbox, clock = graph
    page = sandbox.add_page("Acme", token=TOKEN)
    rival = sandbox.add_page("Rival", token="EAAB-rival-token")
    fan = sandbox.add_person("Ann Fan")
    theirs = sandbox.add_post(rival.id, "Their launch", at=clock.now - timedelta(days=1))
    comment = sandbox.add_comment(theirs.id, fan, "public words", at=clock.now - timedelta(hours=2))
    elsewhere = sandbox.add_message(rival.id, fan, "hi rival")
    source = FacebookSource(
        TOKEN, page_id=page.id, api_base_url=sandbox.url, messenger=False, clock=clock
    )
    forged = (
        WebhookHint(page.id, comment.id, "facebook:feed:comment"),
        WebhookHint(page.id, comment.id, "facebook:mention:comment"),  # names no Page
        WebhookHint(page.id, theirs.id, "facebook:feed:post"),
        WebhookHint(page.id, theirs.id, "facebook:mention:post"),
        WebhookHint(page.id, elsewhere.id, "facebook:messages:message"),
    )
    read_page = Walker(source, Account("facebook", "Acme", page.id)).page(forged)
    assert read_page.interactions == ()
    assert read_page.taken_hints == forged
    assert sum(source.dropped_hints.values()) == len(forged)
    # A comment there that does @mention the Page is the mention it says.
    shout = sandbox.add_comment(theirs.id, fan, "@acme still waiting")
    told = WebhookHint(page.id, shout.id, "facebook:mention:comment")
    heard = Walker(source, Account("facebook", "Acme", page.id)).page((told,))
    assert [i.post_id for i in heard.interactions] == [shout.id]
    # The Page's own post and comment read by the same hints are kept.
    ours = sandbox.add_post(page.id, "Launch", at=clock.now - timedelta(days=1))
    mine = sandbox.add_comment(ours.id, fan, "where is it?", at=clock.now - timedelta(hours=1))
    good = (
        WebhookHint(page.id, mine.id, "facebook:feed:comment"),
        WebhookHint(page.id, ours.id, "facebook:feed:post"),
    )
    kept = Walker(source, Account("facebook", "Acme", page.id)).page(good)
    assert {i.post_id for i in kept.interactions} == {mine.id}  # the Page's post: replies
    source.close()


# -- through the listener and the pipeline -------------------------------------------------------
def test_a_replayed_messages_delivery_is_stored_once_and_brings_the_poll_forward_once(
    db: Database, graph: tuple[MetaSandbox, GraphClock], monkeypatch: pytest.MonkeyPatch
) -> None:
    sandbox, clock = graph
    settings = hooked(monkeypatch, sandbox)
    page = sandbox.add_page("Acme", token=TOKEN)
    fan = sandbox.add_person("Ann Fan")
    source = FacebookSource(
        TOKEN, page_id=page.id, api_base_url=sandbox.url, clock=clock, webhook=settings
    )
    account = Account("facebook", "Acme", page.id)
    try:
        with listening(db, NAME, source) as heard:
            heard.pipeline.poll(NAME, source, account, Stream.MENTIONS)
            message = sandbox.add_message(page.id, fan, "is my order on its way?")
            sender = sandbox.webhooks()
            delivery = sender.prepare(sandbox.message_event(message.id))
            assert sender.send(heard.url, delivery).status_code == 200
            assert heard.woken == [NAME]
            heard.pipeline.poll(NAME, source, account, Stream.MENTIONS)
            assert stored(db, message.id) == 1
            assert sender.replay(heard.url, delivery).status_code == 200
            assert heard.woken == [NAME]  # nothing new: no early poll
            heard.pipeline.poll(NAME, source, account, Stream.MENTIONS)
            assert stored(db, message.id) == 1
            with db.connect() as conn:
                assert hints.untaken(conn, NAME, page.id) == ()
    finally:
        source.close()


def test_stale_hints_are_pruned(db: Database) -> None:
    t0 = datetime(2026, 11, 2, 9, 0, tzinfo=UTC)
    taken = WebhookHint("111", "m_taken", "facebook:messages:message")
    orphan = WebhookHint("999", "m_orphan", "facebook:messages:message")  # no poll reads it
    fresh = WebhookHint("111", "m_fresh", "facebook:messages:message")
    with db.transaction() as conn:
        hints.add(conn, NAME, [taken, orphan], t0)
        hints.take(conn, NAME, [taken], t0)
        hints.add(conn, NAME, [fresh], t0 + hints.UNTAKEN_KEEP)

    def left() -> set[str]:
        with db.connect() as conn:
            return set(conn.execute(select(webhook_hints.c.object_id)).scalars())

    with db.transaction() as conn:
        assert hints.prune(conn, t0 + timedelta(days=1)) == 0
    assert left() == {"m_taken", "m_orphan", "m_fresh"}
    with db.transaction() as conn:
        assert hints.prune(conn, t0 + hints.TAKEN_KEEP + timedelta(seconds=1)) == 1
    assert left() == {"m_orphan", "m_fresh"}
    with db.transaction() as conn:
        assert hints.prune(conn, t0 + hints.UNTAKEN_KEEP + timedelta(seconds=1)) == 1
    assert left() == {"m_fresh"}
