"""connectors.meta.receiver on the real HTTP listener, with the deliveries Meta sends as the
sandbox's :class:`WebhookSender` makes them (signed, unsigned, wrongly signed, SHA-1 only,
tampered, replayed), the hints landing in the state database on SQLite and PostgreSQL."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime

import pytest
from prometheus_client import CollectorRegistry
from pydantic import ValidationError
from sqlalchemy import select

from connectors.meta.receiver import MetaWebhook, WebhookSettings
from sandbox.meta import webhooks
from syncd.contracts import WebhookEndpoint
from syncd.service.http import HealthServer
from syncd.service.webhooks import SourceWebhooks
from syncd.state.db import Database
from syncd.state.tables import webhook_hints

SECRET = "meta-app-secret-0123456789"
TOKEN = "meta-verify-token-9876543210"
PAGE = "2121008874780932"
IG = "17841405822304914"
AT = datetime(2026, 12, 1, 9, 30, tzinfo=UTC)


class MetaSource:
    """What the listener asks of the Meta source: its webhook."""

    def __init__(self, hook: WebhookEndpoint) -> None:
        self.hook = hook

    def webhook(self) -> WebhookEndpoint:
        return self.hook


class Receiver:
    def __init__(self, db: Database, hook: MetaWebhook) -> None:
        self.db = db
        sources = {"acme-meta": MetaSource(hook)}
        hooks = SourceWebhooks(lambda: sources, lambda: db, lambda: AT)
        self.server = HealthServer(
            "127.0.0.1:0", lambda: (200, {}), CollectorRegistry(), webhooks=hooks
        )
        self.sender = webhooks.WebhookSender(SECRET)

    @property
    def url(self) -> str:
        return f"{self.server.url}/webhooks/acme-meta"

    def stored(self) -> list[tuple[str, str, str]]:
        with self.db.connect() as conn:
            rows = conn.execute(
                select(webhook_hints.c.account, webhook_hints.c.object_id, webhook_hints.c.kind)
                .where(webhook_hints.c.source == "acme-meta")
                .order_by(webhook_hints.c.id)
            )
            return [(a, o, k) for a, o, k in rows]


@pytest.fixture
def receiver(db: Database, monkeypatch: pytest.MonkeyPatch) -> Iterator[Receiver]:
    monkeypatch.setenv("META_VERIFY_TOKEN", TOKEN)
    monkeypatch.setenv("META_APP_SECRET", SECRET)
    settings = WebhookSettings.model_validate(
        {"verify_token": "env:META_VERIFY_TOKEN", "app_secret": "env:META_APP_SECRET"}
    )
    one = Receiver(db, MetaWebhook.from_settings(settings))
    one.server.start()
    yield one
    one.server.stop()


def test_meta_s_subscription_check_is_answered_with_the_right_verify_token_only(
    receiver: Receiver,
) -> None:
    ok = receiver.sender.verify_subscription(receiver.url, TOKEN, challenge="1158201444")
    assert (ok.status_code, ok.text) == (200, "1158201444")
    wrong = receiver.sender.verify_subscription(receiver.url, "not-the-token", "1158201444")
    assert wrong.status_code == 403 and "1158201444" not in wrong.text


def test_signed_deliveries_store_their_hints_once_whatever_meta_sends_again(
    receiver: Receiver,
) -> None:
    send, url = receiver.sender, receiver.url
    mention = webhooks.page_mention(
        PAGE, post_id=f"{PAGE}_555", comment_id="555_777", message="@Acme help", created_time=AT
    )
    assert send.deliver(url, mention).status_code == 200
    assert send.replay(url).status_code == 200  # Meta retries: the same bytes again
    caption = webhooks.instagram_mention(IG, media_id="17900000000000001", at=AT)
    comment = webhooks.instagram_comment(
        IG,
        comment_id="17800000000000002",
        text="where is my order",
        author={"id": "6543", "username": "alice"},
        media_id="17900000000000003",
        at=AT,
    )
    assert send.deliver(url, caption).status_code == 200
    assert send.deliver(url, comment).status_code == 200
    assert receiver.stored() == [
        (PAGE, "555_777", "facebook:mention:comment"),
        (IG, "17900000000000001", "instagram:mentions:media"),
        (IG, "17800000000000002", "instagram:comments:comment"),
    ]


@pytest.mark.parametrize("signing", ["none", "wrong", "sha1_only"])
def test_a_delivery_not_signed_with_the_app_secret_is_refused_and_stores_nothing(
    receiver: Receiver, signing: webhooks.Signing
) -> None:
    caption = webhooks.instagram_mention(IG, media_id="17900000000000001", at=AT)
    answer = receiver.sender.deliver(receiver.url, caption, signing)
    assert answer.status_code == 403
    assert receiver.stored() == []


def test_a_tampered_body_under_a_real_signature_is_refused(receiver: Receiver) -> None:
    caption = webhooks.instagram_mention(IG, media_id="17900000000000001", at=AT)
    signed = receiver.sender.prepare(caption)
    forged = receiver.sender.tamper(signed)
    assert receiver.sender.send(receiver.url, forged).status_code == 403
    assert receiver.stored() == []


def test_the_endpoint_keeps_its_secrets_to_itself(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("META_APP_SECRET", SECRET)
    settings = WebhookSettings.model_validate(
        {"verify_token": "env:META_APP_SECRET", "app_secret": "env:META_APP_SECRET"}
    )
    hook = MetaWebhook.from_settings(settings)
    assert SECRET not in repr(hook) and SECRET not in repr(settings)
    # The secret itself where a reference goes is refused (the config reports it by key).
    with pytest.raises(ValidationError, match="secret reference"):
        WebhookSettings.model_validate({"verify_token": TOKEN, "app_secret": SECRET})
