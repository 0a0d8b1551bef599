"""Instagram Direct through the account's ``messages`` webhook, read by the same code as
Messenger's (connectors/meta/threads.py).

An Instagram messaging delivery (``object: instagram``, ``entry[].messaging[]``, the account's
own messages as ``is_echo`` on the same field) names a message; the mentions walk reads it by
id while it is among its thread's 20 newest and stores it as the Direct walk would. What each
test pins: the delivery's hint; a thread busier than 20 messages between two thread walks
loses nothing with the webhook on and records no gap (without it, the gap as before); a
message Graph no longer details is dropped and counted; a hint naming another account's
message adds nothing; a delivery through the listener is stored once.
"""

from __future__ import annotations

from datetime import timedelta

import pytest
from support.meta import GraphClock, Walker, by_id, hint_from, hooked, listening, stored

from connectors.meta import webhook
from connectors.meta.instagram import InstagramSource
from sandbox.meta.api import MetaSandbox
from sandbox.meta.store import DirectMessage, IGAccount, IGUser
from syncd.model import Account, Direction, Page, Stream, WebhookHint
from syncd.state import hints
from syncd.state.db import Database

TOKEN = "EAAB-page-token-direct-hints"
NAME = "acme-ig"


def account_and_fan(sandbox: MetaSandbox) -> tuple[IGAccount, IGUser]:
    """The brand's Instagram account and a person who writes to it."""
    page = sandbox.add_page("Acme", token=TOKEN)
    return sandbox.add_instagram_account(page.id, "acme"), sandbox.add_ig_user("ann.fan")


def hint_of(sandbox: MetaSandbox, message: DirectMessage) -> WebhookHint:
    """The hint the receiver stores for the stand-in's delivery of ``message``."""
    return hint_from(sandbox.direct_message_event(message.id))


def test_a_direct_delivery_is_a_message_hint_of_the_account(
    graph: tuple[MetaSandbox, GraphClock],
) -> None:
    sandbox, _ = graph
    ig, fan = account_and_fan(sandbox)
    asked = sandbox.add_direct_message(ig.id, fan, "is it in stock?")
    answered = sandbox.add_direct_message(ig.id, fan, "yes", from_account=True)
    delivery = sandbox.direct_message_event(answered.id)
    (event,) = delivery["entry"][0]["messaging"]
    assert delivery["object"] == "instagram" and event["message"]["is_echo"] is True
    assert event["sender"]["id"] == ig.id
    assert event["recipient"]["id"] == sandbox.igsid(fan, ig.id)
    assert hint_of(sandbox, asked) == WebhookHint(ig.id, asked.id, "instagram:messages:message")
    # Instagram sends the account's own messages on the same field (no message_echoes).
    assert hint_of(sandbox, answered).kind == "instagram:messages:message"
    event["message"] = {"mid": answered.id, "is_deleted": True}
    assert webhook.hints(delivery) == []  # unsent: nothing left to read


def busy_thread(
    graph: tuple[MetaSandbox, GraphClock], webhook_on: bool
) -> tuple[MetaSandbox, Walker, list[DirectMessage], list[Page]]:
    """A Direct thread gaining 30 messages between two thread walks: ten arrive before a
    walk's first page (which reads the hints), twenty more before its thread page. Every
    sixth is the account's answer (its echo delivered too)."""
    sandbox, clock = graph
    ig, fan = account_and_fan(sandbox)
    sandbox.add_direct_message(ig.id, fan, "hello", at=clock.now - timedelta(hours=1))
    source = InstagramSource(TOKEN, ig_user_id=ig.id, api_base_url=sandbox.url, clock=clock)
    walker = Walker(source, Account("instagram", "acme", ig.id))
    walker.walk()

    def burst(prefix: str, count: int) -> list[DirectMessage]:
        return [
            sandbox.add_direct_message(ig.id, fan, f"{prefix}{n}", from_account=n % 6 == 5)
            for n in range(count)
        ]

    sent = burst("a", 10)
    pages = [walker.page(tuple(hint_of(sandbox, m) for m in sent) if webhook_on else ())]
    later = burst("b", 20)
    offered = tuple(hint_of(sandbox, m) for m in later) if webhook_on else ()
    while not pages[-1].walk_complete:  # media, tags, then the threads
        pages.append(walker.page(offered))
        offered = ()
    return sandbox, walker, sent + later, pages


def test_a_busy_direct_thread_loses_nothing_with_the_webhook_on(
    graph: tuple[MetaSandbox, GraphClock],
) -> None:
    sandbox, walker, sent, pages = busy_thread(graph, webhook_on=True)
    got = by_id(pages)
    assert set(got) == {m.id for m in sent}
    assert not pages[-1].cut  # every message beyond the 20 newest was read by its hint
    assert not any("a gap" in w for p in pages for w in p.warnings)
    assert sum(len(p.taken_hints) for p in pages) == 30
    ig = walker.account.user_id
    fan = next(iter(sandbox.store.ig_users.values()))
    thread = sandbox.direct_thread(ig, fan)
    person = f"{ig}:{sandbox.igsid(fan, ig)}"
    for message in sent:
        item = got[message.id]
        assert item.network == "instagram"
        assert item.conversation_id == thread.id  # as the Direct walk keeps it
        if message.sender[0] == "account":
            assert item.direction is Direction.OUTBOUND and item.stream is Stream.REPLIES
            assert item.counterpart_id == person  # attributed to the person answered
        else:
            assert item.direction is Direction.INBOUND and item.author_id == person
    # The thread walk passed every hinted message: their marks are gone.
    assert not [k for k in walker.cursor.marks if k.startswith("msg:")]
    assert walker.source.dropped_hints == {}


def test_without_the_webhook_the_busy_direct_thread_is_a_gap_as_before(
    graph: tuple[MetaSandbox, GraphClock],
) -> None:
    _, _, sent, pages = busy_thread(graph, webhook_on=False)
    assert pages[-1].cut
    assert any("Instagram Direct thread" in w and "a gap" in w for w in pages[-1].warnings)
    assert len(by_id(pages)) < len(sent)


def test_a_direct_message_past_the_twenty_newest_or_another_accounts_is_dropped(
    graph: tuple[MetaSandbox, GraphClock],
) -> None:
    sandbox, clock = graph
    ig, fan = account_and_fan(sandbox)
    early = sandbox.add_direct_message(ig.id, fan, "first")
    for n in range(20):  # the hinted message falls out of the 20 newest before it is read
        sandbox.add_direct_message(ig.id, fan, f"then {n}")
    rival_page = sandbox.add_page("Rival", token="EAAB-rival-token")
    rival = sandbox.add_instagram_account(rival_page.id, "rival")
    theirs = sandbox.add_direct_message(rival.id, fan, "hi rival")
    source = InstagramSource(
        TOKEN, ig_user_id=ig.id, api_base_url=sandbox.url, direct=False, clock=clock
    )
    forged = (
        hint_of(sandbox, early),
        WebhookHint(ig.id, theirs.id, "instagram:messages:message"),
    )
    page = Walker(source, Account("instagram", "acme", ig.id)).page(forged)
    assert page.interactions == ()
    assert page.taken_hints == forged  # taken: asking again would change nothing
    assert sum(source.dropped_hints.values()) == 2
    source.close()


def test_a_direct_delivery_through_the_listener_is_stored_once(
    db: Database, graph: tuple[MetaSandbox, GraphClock], monkeypatch: pytest.MonkeyPatch
) -> None:
    sandbox, clock = graph
    settings = hooked(monkeypatch, sandbox)
    ig, fan = account_and_fan(sandbox)
    source = InstagramSource(
        TOKEN, ig_user_id=ig.id, api_base_url=sandbox.url, clock=clock, webhook=settings
    )
    account = Account("instagram", "acme", ig.id)
    try:
        with listening(db, NAME, source) as heard:
            heard.pipeline.poll(NAME, source, account, Stream.MENTIONS)
            message = sandbox.add_direct_message(ig.id, fan, "is my order on its way?")
            sender = sandbox.webhooks()
            delivery = sender.prepare(sandbox.direct_message_event(message.id))
            assert sender.send(heard.url, delivery).status_code == 200
            assert heard.woken == [NAME]
            heard.pipeline.poll(NAME, source, account, Stream.MENTIONS)
            assert stored(db, message.id) == 1
            assert sender.replay(heard.url, delivery).status_code == 200
            heard.pipeline.poll(NAME, source, account, Stream.MENTIONS)
            assert stored(db, message.id) == 1
            with db.connect() as conn:
                assert hints.untaken(conn, NAME, ig.id) == ()
    finally:
        source.close()
