"""Meta webhook hints, read: a delivery reaches the real HTTP listener signed as Meta signs
it, its hint is stored, and the next poll of the Instagram source reads the object through
the Graph stand-in (sandbox/meta/), stores what the API confirms and takes the hint in that
page's transaction, on SQLite and PostgreSQL.

What each test pins: a mention of the brand in someone else's Instagram comment (no poll
sees it) is written once after the poll that follows its delivery, and neither a second poll
nor a replayed delivery writes it again; a hint for an object the API does not have (a
forged row: a valid signature needs the app secret) stores nothing and is taken; a hint the
API could not answer for a moment is left for the next walk; the Page's feed hint reads the
comment by id; ``check`` says whether the webhook is configured and what is missed without.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace
from datetime import timedelta

import pytest
from prometheus_client import CollectorRegistry
from sqlalchemy import func, select
from support.fake_crm import FakeCrm
from support.meta import VERIFY, GraphClock, hooked
from support.pipeline import Clock as PipelineClock

from connectors.meta.facebook import FacebookSource
from connectors.meta.instagram import InstagramSource
from connectors.meta.receiver import WebhookSettings
from connectors.meta.settings import FacebookSettings, InstagramSettings
from sandbox.meta.api import MetaSandbox
from syncd.model import Account, Cursor, Stream, WebhookHint
from syncd.pipeline import Pipeline, PipelineSettings
from syncd.pipeline.poll import PollResult
from syncd.service.http import HealthServer
from syncd.service.webhooks import SourceWebhooks
from syncd.state import hints
from syncd.state.db import Database
from syncd.state.tables import interactions

TOKEN = "EAAB-page-token-hints"
NAME = "acme-ig"


class Brand:
    """An Instagram account polled by the real pipeline, its webhook on the real listener."""

    def __init__(
        self,
        db: Database,
        sandbox: MetaSandbox,
        clock: GraphClock,
        webhook: WebhookSettings | None,
    ) -> None:
        self.sandbox = sandbox
        page = sandbox.add_page("Acme", token=TOKEN)
        self.ig = sandbox.add_instagram_account(page.id, "acme")
        self.account = Account("instagram", "acme", self.ig.id)
        self.source = InstagramSource(
            TOKEN,
            ig_user_id=self.ig.id,
            api_base_url=sandbox.url,
            page_size=5,
            start="1d",
            clock=clock,
            webhook=webhook,
        )
        self.db = db
        self.clock = PipelineClock()
        self.pipeline = Pipeline(
            db, "sf", FakeCrm({}), PipelineSettings(retries=0), clock=self.clock
        )
        sources = {NAME: self.source}
        self.server = HealthServer(
            "127.0.0.1:0",
            lambda: (200, {}),
            CollectorRegistry(),
            webhooks=SourceWebhooks(lambda: sources, lambda: db, self.clock),
        )

    @property
    def url(self) -> str:
        return f"{self.server.url}/webhooks/{NAME}"

    def poll(self) -> PollResult:
        return self.pipeline.poll(NAME, self.source, self.account, Stream.MENTIONS)

    def stored(self, post_id: str) -> int:
        with self.db.connect() as conn:
            return int(
                conn.execute(
                    select(func.count()).where(interactions.c.post_id == post_id)
                ).scalar_one()
            )

    def untaken(self) -> tuple[WebhookHint, ...]:
        with self.db.connect() as conn:
            return hints.untaken(conn, NAME, self.account.user_id)

    def close(self) -> None:
        self.source.close()


@pytest.fixture
def brand(
    db: Database,
    graph: tuple[MetaSandbox, GraphClock],
    monkeypatch: pytest.MonkeyPatch,
) -> Iterator[Brand]:
    sandbox, clock = graph
    one = Brand(db, sandbox, clock, hooked(monkeypatch, sandbox))
    one.server.start()
    yield one
    one.server.stop()
    one.close()


def test_a_mention_in_someone_else_s_comment_arrives_by_webhook_and_is_written_once(
    brand: Brand,
) -> None:
    sandbox = brand.sandbox
    zoe = sandbox.add_ig_user("zoe")
    holiday = sandbox.add_others_media(zoe, "sunset")
    mention = sandbox.add_ig_comment(holiday.id, zoe, "@acme my parcel never came")
    brand.poll()
    assert brand.stored(mention.id) == 0  # no poll sees a comment on someone else's media

    sender = sandbox.webhooks()
    delivery = sender.prepare(sandbox.instagram_mention_event(brand.ig.id, holiday.id, mention.id))
    assert sender.send(brand.url, delivery).status_code == 200
    assert brand.untaken() == (WebhookHint(brand.ig.id, mention.id, "instagram:mentions:comment"),)
    brand.poll()
    assert brand.stored(mention.id) == 1
    assert brand.untaken() == ()

    assert sender.replay(brand.url, delivery).status_code == 200  # stored once: taken
    brand.poll()
    assert brand.stored(mention.id) == 1
    assert brand.untaken() == ()


def test_a_forged_hint_for_an_object_the_api_does_not_have_stores_nothing(
    brand: Brand,
) -> None:
    forged = WebhookHint(brand.ig.id, "17999999999999999", "instagram:mentions:comment")
    with brand.db.transaction() as conn:
        hints.add(conn, NAME, [forged], brand.clock())
    brand.poll()
    assert brand.stored(forged.object_id) == 0
    assert brand.untaken() == ()  # the API confirmed nothing: taken, nothing to ask again
    assert sum(brand.source.dropped_hints.values()) == 1  # said and counted


def test_a_hint_the_api_cannot_answer_now_is_left_for_the_next_walk(
    brand: Brand,
) -> None:
    sandbox = brand.sandbox
    zoe = sandbox.add_ig_user("zoe")
    shot = sandbox.add_others_media(zoe, "@acme the new jacket")
    hint = WebhookHint(brand.ig.id, shot.id, "instagram:mentions:media")
    with brand.db.transaction() as conn:
        hints.add(conn, NAME, [hint], brand.clock())
    # Every page of the walk offers the hint; each read of it is answered unreadably.
    sandbox.inject("malformed", endpoint="node", count=10)
    result = brand.poll()
    assert any("webhook hint is left for later" in w for w in result.warnings)
    assert sandbox.faults.injected >= 1
    sandbox.faults.clear()
    assert brand.stored(shot.id) == 0
    assert brand.untaken() == (hint,)
    brand.poll()
    assert brand.stored(shot.id) == 1
    assert brand.untaken() == ()


def test_a_page_feed_hint_reads_the_comment_by_id(
    graph: tuple[MetaSandbox, GraphClock],
) -> None:
    sandbox, clock = graph
    page = sandbox.add_page("Acme", token=TOKEN)
    fan = sandbox.add_person("Ann Fan")
    post = sandbox.add_post(page.id, "Launch", at=clock.now - timedelta(days=3))
    comment = sandbox.add_comment(
        post.id, fan, "where is my order?", at=clock.now - timedelta(days=2)
    )
    source = FacebookSource(
        TOKEN, page_id=page.id, api_base_url=sandbox.url, messenger=False, clock=clock
    )
    acme = Account("facebook", "Acme", page.id)
    hint = WebhookHint(page.id, comment.id, "facebook:feed:comment")
    gone = WebhookHint(page.id, f"{post.id.split('_')[-1]}_999", "facebook:mention:comment")
    # A walk from now reads no comment of two days ago: only the hint brings it.
    quiet = Cursor(since_id=source.start_after(clock()))
    assert source.fetch(acme, Stream.MENTIONS, quiet).interactions == ()
    cursor = replace(quiet, hints=(hint, gone))
    page_read = source.fetch(acme, Stream.MENTIONS, cursor)
    assert [i.post_id for i in page_read.interactions] == [comment.id]
    assert page_read.taken_hints == (hint, gone)
    replies = source.fetch(acme, Stream.REPLIES, cursor)
    assert replies.taken_hints == ()  # the mentions walk reads hints
    # A post elsewhere naming the Page (the 'mention' field): read by id, author and all.
    elsewhere = sandbox.add_page("Elsewhere")
    shout = sandbox.add_visitor_post(elsewhere.id, fan, "@Acme still waiting")
    told = WebhookHint(page.id, shout.id, "facebook:mention:post")
    read = source.fetch(acme, Stream.MENTIONS, replace(cursor, hints=(told,)))
    assert [i.post_id for i in read.interactions if i.post_id == shout.id] == [shout.id]
    assert read.taken_hints == (told,)
    source.close()


def test_check_says_whether_the_webhook_is_configured_and_what_is_missed(
    graph: tuple[MetaSandbox, GraphClock], monkeypatch: pytest.MonkeyPatch
) -> None:
    sandbox, clock = graph
    page = sandbox.add_page("Acme", token=TOKEN)
    ig = sandbox.add_instagram_account(page.id, "acme")
    bare = InstagramSource(TOKEN, ig_user_id=ig.id, api_base_url=sandbox.url, clock=clock)
    rows = {r.item: r for r in bare.check(["acme"])}
    assert rows["webhooks"].detail.startswith("not configured")
    assert "@mentions in other people's captions and comments" in rows["webhooks"].detail
    assert bare.webhook() is None
    with_hook = InstagramSource(
        TOKEN,
        ig_user_id=ig.id,
        api_base_url=sandbox.url,
        clock=clock,
        webhook=hooked(monkeypatch, sandbox),
    )
    sandbox.subscribe_app(page.id, ["feed"])  # Instagram's webhooks need the linked Page's
    rows = {r.item: r for r in with_hook.check(["acme"])}
    assert rows["webhooks"].ok and rows["webhooks"].detail.startswith("configured")
    assert with_hook.webhook() is not None
    assert sandbox.app_secret not in repr(with_hook.webhook())
    fb = FacebookSource(TOKEN, page_id=page.id, api_base_url=sandbox.url, clock=clock)
    rows = {r.item: r for r in fb.check(["Acme"])}
    assert "'mention' webhook" in rows["webhooks"].detail
    for source in (bare, with_hook, fb):
        source.close()


def test_the_settings_carry_the_webhook_table_to_the_source(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("FB", "a-page-token")
    monkeypatch.setenv("META_VERIFY_TOKEN", VERIFY)
    monkeypatch.setenv("META_APP_SECRET", "an-app-secret")
    table = {"verify_token": "env:META_VERIFY_TOKEN", "app_secret": "env:META_APP_SECRET"}
    page = {"name": "acme-fb", "type": "facebook", "page_id": "123", "access_token": "env:FB"}
    fb = FacebookSettings.model_validate({**page, "webhook": table})
    ig = InstagramSettings.model_validate(
        {"name": "acme-ig", "type": "instagram", "ig_user_id": "178", "access_token": "env:FB"}
    )
    assert FacebookSource.from_settings(fb).webhook() is not None
    assert InstagramSource.from_settings(ig).webhook() is None
    with pytest.raises(ValueError, match="app_secret"):
        FacebookSettings.model_validate({**page, "webhook": {"verify_token": "env:X"}})
