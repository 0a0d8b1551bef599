"""connectors.meta.webhook: the subscription check, the signature check, and the ids taken
from the recorded deliveries (tests/fixtures/meta/restfb/, README there)."""

from __future__ import annotations

import copy
import hashlib
import hmac
import json
from typing import Any

import pytest
from support import FIXTURES

from connectors.meta.webhook import Hint, hints, verify_signature, verify_subscription

RESTFB = FIXTURES / "meta" / "restfb"
SECRET = "app-secret-value-123"


def raw(path: str) -> bytes:
    return (RESTFB / path).read_bytes()


def delivery(path: str) -> Any:
    return json.loads(raw(path))


def sign(body: bytes, secret: str = SECRET) -> str:
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


# -- subscription -----------------------------------------------------------------------------
def test_the_subscription_check_answers_the_challenge_for_the_right_token() -> None:
    params = {"hub.mode": "subscribe", "hub.verify_token": "s3cret", "hub.challenge": "1158201444"}
    assert verify_subscription(params, "s3cret") == "1158201444"


@pytest.mark.parametrize(
    "params",
    [
        {"hub.mode": "subscribe", "hub.verify_token": "wrong", "hub.challenge": "1"},
        {"hub.mode": "unsubscribe", "hub.verify_token": "s3cret", "hub.challenge": "1"},
        {"hub.verify_token": "s3cret", "hub.challenge": "1"},
        {"hub.mode": "subscribe", "hub.challenge": "1"},
        {"hub.mode": "subscribe", "hub.verify_token": "s3cret"},
        # Never echo what is not a challenge's shape back to whoever asks.
        {"hub.mode": "subscribe", "hub.verify_token": "s3cret", "hub.challenge": "<script>"},
        {"hub.mode": "subscribe", "hub.verify_token": "s3cret", "hub.challenge": "1" * 129},
    ],
)
def test_the_subscription_check_refuses_anything_else(params: dict[str, str]) -> None:
    assert verify_subscription(params, "s3cret") is None


def test_no_configured_token_accepts_no_subscription() -> None:
    params = {"hub.mode": "subscribe", "hub.verify_token": "", "hub.challenge": "1"}
    assert verify_subscription(params, "") is None


# -- signature --------------------------------------------------------------------------------
def test_a_delivery_signed_with_the_app_secret_is_accepted() -> None:
    body = raw("webhooks/feed-comment-add-211.json")
    assert verify_signature(body, sign(body), SECRET)
    assert verify_signature(body, sign(body).upper().replace("SHA256=", "sha256="), SECRET)


@pytest.mark.parametrize(
    "header",
    [
        None,
        "",
        "sha256=",
        "sha256=zz",
        "sha1=" + hashlib.sha1(b"x").hexdigest(),  # the older header's form: refused
        "md5=00",
        "sha256=" + "0" * 64,
    ],
)
def test_unsigned_sha1_or_wrong_signatures_are_refused(header: str | None) -> None:
    body = raw("webhooks/feed-comment-add-211.json")
    assert not verify_signature(body, header, SECRET)


def test_a_changed_body_or_another_secret_breaks_the_signature() -> None:
    body = raw("webhooks/feed-comment-add-211.json")
    header = sign(body)
    assert not verify_signature(body.replace(b"next one", b"next two"), header, SECRET)
    assert not verify_signature(body, header, "another-secret")
    assert not verify_signature(body, header, "")


# -- hints ------------------------------------------------------------------------------------
def test_a_page_comment_names_the_comment_and_its_post() -> None:
    assert hints(delivery("webhooks/feed-comment-add-211.json")) == [
        Hint(
            "facebook",
            "1234567890321",
            "feed",
            "comment",
            "901097836652708_903438993085259",
            "1234567890321_901097836652708",
            "add",
        )
    ]


def test_a_removed_comment_says_remove() -> None:
    [hint] = hints(delivery("webhooks/feed-comment-remove-25.json"))
    assert (hint.item, hint.object_id, hint.verb) == (
        "comment",
        "905578656204626_905579239537901",
        "remove",
    )


def test_page_mentions_name_the_post_or_the_comment() -> None:
    [post] = hints(delivery("webhooks/mention-post-add-real.json"))
    assert (post.field, post.item, post.object_id) == (
        "mention",
        "post",
        "1234567890321_98722536423179",
    )
    [comment] = hints(delivery("webhooks/mention-comment-add.json"))
    assert (comment.item, comment.object_id, comment.parent_id) == (
        "comment",
        "7363534231324_3754798971271444",
        "1234567890321_7363534231324",
    )


def test_an_instagram_mention_names_the_comment_on_its_media() -> None:
    [hint] = hints(delivery("instagram/wh-mentions.json"))
    assert hint == Hint(
        "instagram", "0", "mentions", "comment", "17887498072083520", "17887498072083520"
    )
    caption = delivery("instagram/wh-mentions.json")
    del caption["entry"][0]["changes"][0]["value"]["comment_id"]
    [media] = hints(caption)
    assert (media.item, media.object_id, media.parent_id) == ("media", "17887498072083520", None)


def test_an_instagram_comment_names_the_comment_and_its_media() -> None:
    # The comments field's shape (changelog 2021-10-20); no permissive recording exists.
    payload = {
        "object": "instagram",
        "entry": [
            {
                "id": "17841406338772941",
                "time": 1633000000,
                "changes": [
                    {
                        "field": "comments",
                        "value": {
                            "id": "17865799348089039",
                            "text": "hello",
                            "from": {"id": "1789", "username": "fan"},
                            "media": {"id": "123123123", "media_product_type": "FEED"},
                        },
                    }
                ],
            }
        ],
    }
    [hint] = hints(payload)
    assert (hint.item, hint.object_id, hint.parent_id) == (
        "comment",
        "17865799348089039",
        "123123123",
    )


def test_nothing_but_ids_is_taken_and_odd_shapes_are_skipped() -> None:
    forged = copy.deepcopy(delivery("webhooks/feed-comment-add-211.json"))
    value = forged["entry"][0]["changes"][0]["value"]
    value["comment_id"] = "1_2/../../me?fields=access_token"
    assert hints(forged) == []
    reaction = copy.deepcopy(delivery("webhooks/feed-comment-add-211.json"))
    reaction["entry"][0]["changes"][0]["value"]["item"] = "reaction"
    assert hints(reaction) == []
    odd_shapes: list[Any] = [
        None,
        [],
        {"object": "user"},
        {"object": "page", "entry": "x"},
        {"object": "page", "entry": [{"id": "abc", "changes": []}]},
        {"object": "page", "entry": [{"id": "1", "changes": [{"field": "feed"}]}]},
    ]
    for odd in odd_shapes:
        assert hints(odd) == []


def test_a_repeated_change_is_one_hint() -> None:
    twice = delivery("webhooks/feed-comment-add-211.json")
    twice["entry"].append(copy.deepcopy(twice["entry"][0]))
    assert len(hints(twice)) == 1


# -- Messenger ----------------------------------------------------------------------------------
def test_messenger_deliveries_name_their_message() -> None:
    # An echo is the Page's own message (message_echoes); an edit names the edited message;
    # the recordings give the entry id as a number, taken as its digits.
    assert hints(delivery("webhooks/messaging-message-basic-echo.json")) == [
        Hint(
            "facebook",
            "12345654332",
            "message_echoes",
            "message",
            "mid.1457764197618:41d102a3e1ae206a38",
        )
    ]
    assert hints(delivery("webhooks/messaging-message-edits.json")) == [
        Hint(
            "facebook",
            "12345654332",
            "message_edits",
            "message",
            "mid.1457764197618:41d102a3e1ae206a38",
        )
    ]
    # An unsent message leaves nothing to read.
    assert hints(delivery("webhooks/messaging-message-isdeleted.json")) == []


def test_a_message_to_the_page_and_odd_events_beside_it() -> None:
    echo = delivery("webhooks/messaging-message-basic-echo.json")
    event = echo["entry"][0]["messaging"][0]
    inbound = copy.deepcopy(event)
    del inbound["message"]["is_echo"]
    inbound["message"]["mid"] = "m_AG5Hz2Uq7tuwNEhXfYYKj8mJEM_QPpz5jdCK48PnKAjSdjfipqxqMvK8ma6A"
    read_receipt = {"sender": event["sender"], "read": {"watermark": 1458668856253}}
    path_like = copy.deepcopy(inbound)
    path_like["message"]["mid"] = "../me/accounts"
    echo["entry"][0]["messaging"] = [inbound, read_receipt, path_like, "junk"]
    standby = copy.deepcopy(inbound)  # another app owns the thread: Meta says so apart
    standby["message"]["mid"] = "qT7ywaKpO9kkQR7Gv-nM8LIfLZDamVrALniheUYEDdHJXjDXEAyaS1xxONzb2Iv"
    echo["entry"][0]["standby"] = [standby]
    assert hints(echo) == [
        Hint("facebook", "12345654332", "messages", "message", inbound["message"]["mid"]),
        Hint("facebook", "12345654332", "messages", "message", standby["message"]["mid"]),
    ]
