"""Meta's webhook deliveries, sent to a receiver: signed, unsigned, wrongly signed, replayed.

Meta POSTs a JSON body and signs it: ``X-Hub-Signature-256: sha256=<hex HMAC-SHA256 of the
exact body bytes, keyed with the app secret>`` (and the older ``X-Hub-Signature: sha1=...``
beside it); a subscription is verified first with ``GET ?hub.mode=subscribe&
hub.challenge=…&hub.verify_token=…``, the receiver answering the challenge (Webhooks, Getting
Started). Meta keeps no history of deliveries and retries failed ones, so the same body can
arrive twice: :meth:`WebhookSender.replay` sends a delivery's exact bytes again.

Payload shapes as recorded by restfb (``tests/fixtures/meta/restfb/``): Page ``feed`` comment
add/remove (``webhooks/feed-comment-*.json``), Page ``mention`` of a post or a comment
(``webhooks/mention-*.json``), Instagram ``mentions`` (``instagram/wh-mentions.json``),
Messenger ``messages`` and ``message_echoes`` (``webhooks/messaging-message-basic-echo.json``,
with the ids as strings, as Meta's messages reference shows them). Instagram ``messages``
(Direct) has no recording either: Messenger's event on the Instagram object, echoes on the
same field, as Meta's Instagram messaging webhooks reference shows it. The
Instagram ``comments`` field has no recording under a permissive licence; its shape follows
Meta's changelog of 2021-10-20 and the Instagram webhooks reference (``id``, ``text``,
``from {id, username}``, ``media {id, media_product_type}``, ``parent_id`` for a reply).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import secrets
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal

import requests

JsonObject = dict[str, Any]
Signing = Literal["valid", "none", "wrong", "sha1_only"]


def signature(body: bytes, app_secret: str) -> str:
    """The ``X-Hub-Signature-256`` value Meta sends for ``body``."""
    return "sha256=" + hmac.new(app_secret.encode(), body, hashlib.sha256).hexdigest()


@dataclass(frozen=True)
class Delivery:
    """One POST as sent: replaying it sends these very bytes and headers again."""

    body: bytes
    headers: Mapping[str, str] = field(default_factory=dict)


class WebhookSender:
    """Sends deliveries for an app (its secret signs them) to a receiver URL."""

    def __init__(self, app_secret: str, *, timeout: float = 10.0) -> None:
        self._secret = app_secret
        self.timeout = timeout
        self.sent: list[Delivery] = []

    def __repr__(self) -> str:  # the app secret never shows
        return f"WebhookSender(sent={len(self.sent)})"

    def prepare(self, payload: JsonObject, signing: Signing = "valid") -> Delivery:
        """The body Meta would send (compact JSON) and its headers: signed with the app
        secret, not at all, with another secret, or with the SHA-1 header only."""
        body = json.dumps(payload, separators=(",", ":")).encode("utf-8")
        headers = {"Content-Type": "application/json", "User-Agent": "facebookexternalua"}
        sha1 = "sha1=" + hmac.new(self._secret.encode(), body, hashlib.sha1).hexdigest()
        if signing == "valid":
            headers["X-Hub-Signature-256"] = signature(body, self._secret)
            headers["X-Hub-Signature"] = sha1
        elif signing == "wrong":
            other = secrets.token_hex(16)
            headers["X-Hub-Signature-256"] = signature(body, other)
        elif signing == "sha1_only":
            headers["X-Hub-Signature"] = sha1
        return Delivery(body, headers)

    def deliver(
        self, url: str, payload: JsonObject, signing: Signing = "valid"
    ) -> requests.Response:
        return self.send(url, self.prepare(payload, signing))

    def send(self, url: str, delivery: Delivery) -> requests.Response:
        self.sent.append(delivery)
        return requests.post(
            url, data=delivery.body, headers=dict(delivery.headers), timeout=self.timeout
        )

    def replay(self, url: str, delivery: Delivery | None = None) -> requests.Response:
        """Send a delivery (by default the last one sent) again, byte for byte."""
        again = delivery or self.sent[-1]
        return self.send(url, again)

    def tamper(self, delivery: Delivery) -> Delivery:
        """The same signature on a changed body (one more space): a forgery."""
        return Delivery(delivery.body + b" ", delivery.headers)

    def verify_subscription(
        self, url: str, verify_token: str, challenge: str | None = None
    ) -> requests.Response:
        """Meta's subscription check: the receiver must answer the challenge."""
        params = {
            "hub.mode": "subscribe",
            "hub.challenge": challenge or str(secrets.randbelow(10**9)),
            "hub.verify_token": verify_token,
        }
        return requests.get(url, params=params, timeout=self.timeout)


def _epoch(moment: datetime | None) -> int:
    return int((moment or datetime.now(UTC)).timestamp())


def _page_entry(
    page_id: str, field_name: str, value: JsonObject, at: datetime | None
) -> JsonObject:
    return {
        "object": "page",
        "entry": [
            {"id": page_id, "time": _epoch(at), "changes": [{"field": field_name, "value": value}]}
        ],
    }


def feed_comment(
    page_id: str,
    *,
    comment_id: str,
    post_id: str,
    parent_id: str,
    author: Mapping[str, str] | None,
    message: str | None,
    created_time: datetime,
    verb: Literal["add", "edited", "remove"] = "add",
    at: datetime | None = None,
) -> JsonObject:
    """Page ``feed``, ``item: comment`` (restfb feed-comment-add-211.json; a removal carries
    no message nor time, as feed-comment-remove-25.json)."""
    value: JsonObject = {
        "item": "comment",
        "verb": verb,
        "comment_id": comment_id,
        "post_id": post_id,
        "parent_id": parent_id,
    }
    if author is not None:
        value["from"] = {"id": author["id"], "name": author["name"]}
    if verb != "remove":
        value["created_time"] = _epoch(created_time)
        if message is not None:
            value["message"] = message
    return _page_entry(page_id, "feed", value, at or created_time)


def page_mention(
    page_id: str,
    *,
    post_id: str,
    message: str,
    created_time: datetime,
    comment_id: str | None = None,
    at: datetime | None = None,
) -> JsonObject:
    """Page ``mention`` of the Page in a post or, with ``comment_id``, a comment: no author
    (restfb mention-post-add-real.json, mention-comment-add.json)."""
    value: JsonObject = {"message": message, "post_id": post_id}
    if comment_id is not None:
        value["comment_id"] = comment_id
    value.update(
        created_time=_epoch(created_time),
        item="comment" if comment_id is not None else "post",
        verb="add",
    )
    return _page_entry(page_id, "mention", value, at or created_time)


def instagram_mention(
    account_id: str, *, media_id: str, comment_id: str | None = None, at: datetime | None = None
) -> JsonObject:
    """Instagram ``mentions``: ids only (restfb instagram/wh-mentions.json); a caption
    mention has no ``comment_id`` (IG mentions guide)."""
    value: JsonObject = {"media_id": media_id}
    if comment_id is not None:
        value = {"comment_id": comment_id, "media_id": media_id}
    return {
        "entry": [
            {
                "changes": [{"field": "mentions", "value": value}],
                "id": account_id,
                "time": _epoch(at),
            }
        ],
        "object": "instagram",
    }


def instagram_comment(
    account_id: str,
    *,
    comment_id: str,
    text: str,
    author: Mapping[str, str],
    media_id: str,
    media_product_type: str = "FEED",
    parent_id: str | None = None,
    at: datetime | None = None,
) -> JsonObject:
    """Instagram ``comments`` (not recorded: Meta's documented shape, see the module)."""
    value: JsonObject = {
        "from": {"id": author["id"], "username": author["username"]},
        "media": {"id": media_id, "media_product_type": media_product_type},
        "id": comment_id,
        "text": text,
    }
    if parent_id is not None:
        value["parent_id"] = parent_id
    return {
        "entry": [
            {
                "id": account_id,
                "time": _epoch(at),
                "changes": [{"field": "comments", "value": value}],
            }
        ],
        "object": "instagram",
    }


def page_message(
    page_id: str,
    *,
    psid: str,
    mid: str,
    text: str,
    created_time: datetime,
    from_page: bool = False,
    at: datetime | None = None,
) -> JsonObject:
    """Messenger ``messages`` (a person wrote to the Page) or, ``from_page``,
    ``message_echoes`` (the Page wrote): ``entry[].messaging[]`` with the sender, the
    recipient, the time in milliseconds and the message's ``mid``."""
    return _messaging("page", page_id, psid, mid, text, created_time, from_page, at)


def direct_message(
    account_id: str,
    *,
    igsid: str,
    mid: str,
    text: str,
    created_time: datetime,
    from_account: bool = False,
    at: datetime | None = None,
) -> JsonObject:
    """Instagram ``messages``: a person wrote to the account or, ``from_account``, the
    account wrote (``is_echo``, on the same field) [doc: Instagram Platform webhook examples,
    messaging payload; Instagram messaging webhooks]. Not recorded: Meta's documented shape,
    Messenger's ``messaging[]`` on the Instagram object."""
    return _messaging("instagram", account_id, igsid, mid, text, created_time, from_account, at)


def _messaging(
    kind: Literal["page", "instagram"],
    account_id: str,
    person: str,
    mid: str,
    text: str,
    created_time: datetime,
    echo: bool,
    at: datetime | None,
) -> JsonObject:
    """One ``entry[].messaging[]`` event: the sender, the recipient, the time in
    milliseconds and the message's ``mid`` (``is_echo`` when the account wrote it)."""
    message: JsonObject = {"mid": mid, "text": text}
    if echo:
        message["is_echo"] = True
        if kind == "page":
            message["app_id"] = 1517776481860111
    sender, recipient = (account_id, person) if echo else (person, account_id)
    event: JsonObject = {
        "sender": {"id": sender},
        "recipient": {"id": recipient},
        "timestamp": int(created_time.timestamp() * 1000),
        "message": message,
    }
    moment = at or created_time
    return {
        "object": kind,
        "entry": [{"id": account_id, "time": int(moment.timestamp() * 1000), "messaging": [event]}],
    }
