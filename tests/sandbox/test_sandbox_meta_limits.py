"""sandbox.meta's tokens, usage headers, budgets, faults and webhook deliveries, against the
recorded bodies and headers (tests/fixtures/meta/) and Meta's rate-limiting, error-handling and
webhooks references where nothing is recorded."""

from __future__ import annotations

import hashlib
import hmac
import json
import threading
from collections.abc import Iterator
from datetime import timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
import requests
from meta_support import (
    PAGE_TOKEN,
    USER_TOKEN,
    Clock,
    World,
    assert_same_shape,
    get,
    recorded,
    world,
)

from sandbox.meta import webhooks
from sandbox.meta.api import MetaSandbox
from sandbox.server import CONTROL_PATH


@pytest.fixture
def clock() -> Clock:
    return Clock()


def _sandbox(clock: Clock, **kw: Any) -> MetaSandbox:
    sandbox = MetaSandbox(clock=clock, **kw)
    sandbox.poll_interval = 0.005
    return sandbox


@pytest.fixture
def w(clock: Clock) -> Iterator[World]:
    with _sandbox(clock) as sandbox:
        yield world(sandbox, clock)


def usage_header(resp: requests.Response, name: str) -> Any:
    return json.loads(resp.headers[name])


# -- tokens ----------------------------------------------------------------------------------
def test_the_token_goes_as_a_parameter_or_a_bearer_header(w: World) -> None:
    as_param = requests.get(f"{w.sb.url}/v25.0/me", params={"access_token": PAGE_TOKEN}, timeout=10)
    assert as_param.json()["id"] == w.page.id
    oauth = requests.get(
        f"{w.sb.url}/v25.0/me", headers={"Authorization": f"OAuth {PAGE_TOKEN}"}, timeout=10
    )
    assert oauth.json()["id"] == w.page.id
    missing = get(w.sb, "/me", None)
    assert missing.status_code == 400 and missing.json()["error"]["code"] == 104


def test_bad_tokens_answer_190_with_the_subcode(w: World, clock: Clock) -> None:
    real = recorded("restfb/oauthExampleError.json")["error"]
    unknown = get(w.sb, "/me", "never-issued")
    assert unknown.status_code == 400
    error = unknown.json()["error"]
    assert_same_shape(error, real, "error")
    assert error["code"] == 190 and "error_subcode" not in error
    assert "invalid_token" in unknown.headers["WWW-Authenticate"]
    w.sb.add_token("short", w.page.id, lifetime=timedelta(hours=1))
    clock.advance(hours=2)
    expired = get(w.sb, "/me", "short").json()["error"]
    assert (expired["code"], expired["error_subcode"]) == (190, 463)
    assert expired["message"].startswith("Error validating access token: Session has expired on")
    w.sb.invalidate_token(PAGE_TOKEN, 460)
    changed = get(w.sb, "/me").json()["error"]
    assert (changed["code"], changed["error_subcode"]) == (190, 460)
    assert "changed their password" in changed["message"]


def test_debug_token_has_the_recorded_shape(w: World, clock: Clock) -> None:
    real = recorded("python-facebook/base/token_info.json")
    body = get(w.sb, "/debug_token", USER_TOKEN, input_token=PAGE_TOKEN).json()
    documented = {"profile_id": "a Page token's Page"}  # debug_token reference, not recorded
    ours = {k: v for k, v in body["data"].items() if k not in documented}
    assert_same_shape({"data": ours}, real, "debug_token")
    data = body["data"]
    assert data["type"] == "PAGE" and data["profile_id"] == w.page.id and data["is_valid"]
    assert data["expires_at"] == 0  # a long-lived Page token does not expire
    assert "pages_read_user_content" in data["scopes"]
    user = get(w.sb, "/debug_token", PAGE_TOKEN, input_token=USER_TOKEN).json()["data"]
    assert user["type"] == "USER" and user["expires_at"] == int(
        (clock.now + timedelta(days=60)).timestamp()
    )
    w.sb.invalidate_token(USER_TOKEN, 492)
    dead = get(w.sb, "/debug_token", PAGE_TOKEN, input_token=USER_TOKEN).json()["data"]
    assert dead["is_valid"] is False and dead["error"]["subcode"] == 492


def test_debug_token_tells_a_grant_and_its_ends_in_the_recorded_shape(
    w: World, clock: Clock
) -> None:
    real = recorded("python-facebook/base/token_info.json")
    w.sb.grant(
        PAGE_TOKEN,
        scopes=("pages_show_list", "pages_manage_metadata", "public_profile"),
        targets={"pages_show_list": (w.page.id, "199999999999999")},
        expires_at=clock.now + timedelta(days=3),
        data_access_until=clock.now + timedelta(days=5),
    )
    data = get(w.sb, "/debug_token", PAGE_TOKEN, input_token=PAGE_TOKEN).json()["data"]
    # Named by the debug_token reference, not recorded: a Page token's Page, and the Pages
    # or accounts a permission was granted for ("if permission applies to all, targets will
    # not be shown").
    grants = [{k: v for k, v in g.items() if k != "target_ids"} for g in data["granular_scopes"]]
    ours = {k: v for k, v in data.items() if k != "profile_id"} | {"granular_scopes": grants}
    assert_same_shape({"data": ours}, real, "debug_token")
    assert set(real["data"]) - set(data) == set()  # every recorded key is answered
    assert data["granular_scopes"] == [
        {"scope": "pages_show_list", "target_ids": [w.page.id, "199999999999999"]},
        {"scope": "pages_manage_metadata"},
    ]
    assert data["expires_at"] == int((clock.now + timedelta(days=3)).timestamp())
    assert data["data_access_expires_at"] == int((clock.now + timedelta(days=5)).timestamp())


def test_subscribed_apps_lists_the_pages_webhook_apps_to_its_page_token(w: World) -> None:
    assert get(w.sb, f"/{w.page.id}/subscribed_apps").json() == {"data": []}
    w.sb.subscribe_app(w.page.id, ["feed", "mention"])
    w.sb.subscribe_app(w.page.id, ["leadgen"], app_id="999000999000999", name="Other app")
    (ours, other) = get(w.sb, f"/{w.page.id}/subscribed_apps").json()["data"]
    assert ours == {
        "name": w.sb.app_name,
        "id": w.sb.app_id,
        "subscribed_fields": ["feed", "mention"],
    }
    assert other["id"] == "999000999000999" and other["subscribed_fields"] == ["leadgen"]
    w.sb.subscribe_app(w.page.id, [])
    assert [a["id"] for a in get(w.sb, "/me/subscribed_apps").json()["data"]] == [other["id"]]
    # A Page token with pages_manage_metadata only [doc: page/subscribed_apps].
    user = get(w.sb, f"/{w.page.id}/subscribed_apps", USER_TOKEN).json()["error"]
    assert user["code"] == 210
    w.sb.grant(PAGE_TOKEN, scopes=("pages_show_list",))
    denied = get(w.sb, f"/{w.page.id}/subscribed_apps").json()["error"]
    assert denied["code"] == 200 and "pages_manage_metadata" in denied["message"]


def test_appsecret_proof_is_checked_when_sent_and_required_when_set(clock: Clock) -> None:
    with _sandbox(clock, require_appsecret_proof=True) as sb:
        world(sb, clock)
        proof = hmac.new(sb.app_secret.encode(), PAGE_TOKEN.encode(), hashlib.sha256).hexdigest()
        assert get(sb, "/me", appsecret_proof=proof).status_code == 200
        assert get(sb, "/me", appsecret_proof="0" * 64).json()["error"]["code"] == 100
        assert "appsecret_proof" in get(sb, "/me").json()["error"]["message"]


# -- usage headers and budgets ---------------------------------------------------------------
def test_usage_headers_on_every_answer_in_the_recorded_form(w: World) -> None:
    real_header = next(
        h["value"]
        for h in recorded("restfb/batch/batch-simple.json")[0]["headers"]
        if h["name"] == "X-App-Usage"
    )
    ok = get(w.sb, f"/{w.page.id}/feed")
    gone = get(w.sb, "/123")
    for resp in (ok, gone):
        app = usage_header(resp, "X-App-Usage")
        assert set(app) == set(json.loads(real_header))
        assert all(isinstance(v, int) for v in app.values())
        assert resp.headers["Facebook-API-Version"] == "v25.0"
        buc = usage_header(resp, "X-Business-Use-Case-Usage")
        assert list(buc) == [w.page.id]
        (entry,) = buc[w.page.id]
        # The documented keys (rate-limiting reference, BUC header, a "pages" entry).
        assert set(entry) == {
            "type",
            "call_count",
            "total_cputime",
            "total_time",
            "estimated_time_to_regain_access",
        }
        assert entry["type"] == "pages"
    # Compact JSON, as Meta sends it.
    assert " " not in ok.headers["X-App-Usage"]


def test_a_spent_page_budget_throttles_with_80001_until_the_window_moves(clock: Clock) -> None:
    with _sandbox(clock, budgets={"pages": (4, 3600.0)}) as sb:
        w = world(sb, clock)
        shown = []
        for _ in range(4):
            resp = get(sb, f"/{w.page.id}/feed")
            assert resp.status_code == 200
            shown.append(usage_header(resp, "X-Business-Use-Case-Usage")[w.page.id][0])
            clock.advance(minutes=10)
        assert [e["call_count"] for e in shown] == [25, 50, 75, 100]
        assert {e["estimated_time_to_regain_access"] for e in shown} == {0}
        refused = get(sb, f"/{w.page.id}/feed")
        assert refused.status_code == 400
        error = refused.json()["error"]
        assert (error["code"], error["type"]) == (80001, "OAuthException")
        assert error["message"].startswith("(#80001) There have been too many calls to this Page")
        entry = usage_header(refused, "X-Business-Use-Case-Usage")[w.page.id][0]
        assert entry["call_count"] == 125
        # A call fits again when two calls left the one-hour window: the one made 30
        # minutes ago leaves 30 minutes from now.
        assert entry["estimated_time_to_regain_access"] == 30
        clock.advance(minutes=31)
        assert get(sb, f"/{w.page.id}/feed").status_code == 200


def test_refused_calls_count_too(clock: Clock) -> None:
    # "Continuing to make calls will continue to increase your call count, which will
    # increase the time before calls will be successful again."
    with _sandbox(clock, budgets={"pages": (2, 3600.0)}) as sb:
        w = world(sb, clock)
        get(sb, "/me")
        clock.advance(minutes=10)
        get(sb, "/me")
        clock.advance(minutes=10)
        first = get(sb, "/me")
        clock.advance(minutes=10)
        again = get(sb, "/me")

        def wait(resp: requests.Response) -> int:
            entry = usage_header(resp, "X-Business-Use-Case-Usage")[w.page.id][0]
            return int(entry["estimated_time_to_regain_access"])

        assert first.json()["error"]["code"] == again.json()["error"]["code"] == 80001
        # Had the first refusal not counted, the second would wait 40 minutes, not 50.
        assert wait(first) == 50 and wait(again) == 50


def test_instagram_messenger_and_user_token_budgets(clock: Clock) -> None:
    budgets = {"instagram": (1, 3600.0), "messenger": (1, 3600.0), "app": (3, 3600.0)}
    with _sandbox(clock, budgets=budgets) as sb:
        w = world(sb, clock)
        account = sb.add_instagram_account(w.page.id, "acme")
        assert get(sb, f"/{account.id}/media").status_code == 200
        ig = get(sb, f"/{account.id}/media")
        assert ig.json()["error"]["code"] == 80002
        assert usage_header(ig, "X-Business-Use-Case-Usage")[account.id][0]["type"] == "instagram"
        assert get(sb, f"/{w.page.id}/conversations").status_code == 200
        messenger = get(sb, f"/{w.page.id}/conversations")
        assert messenger.json()["error"]["code"] == 80006
        # Pages calls have their own budget, untouched.
        assert get(sb, f"/{w.page.id}/feed").status_code == 200
        # A user token meets the app's platform budget (every call above counted): code 4,
        # and no BUC header.
        user = get(sb, "/me", USER_TOKEN)
        assert user.json()["error"]["code"] == 4
        assert "X-Business-Use-Case-Usage" not in user.headers


# -- faults ----------------------------------------------------------------------------------
def test_throttle_fault_codes_follow_the_endpoint_or_the_option(w: World) -> None:
    sb = w.sb
    account = sb.add_instagram_account(w.page.id, "acme")
    sb.inject("throttle", endpoint="feed")
    page = get(sb, f"/{w.page.id}/feed")
    assert page.json()["error"]["code"] == 80001 and page.json()["error"]["is_transient"]
    entry = usage_header(page, "X-Business-Use-Case-Usage")[w.page.id][0]
    assert (entry["call_count"], entry["estimated_time_to_regain_access"]) == (100, 5)
    sb.inject("throttle", endpoint="media", minutes=12)
    ig = get(sb, f"/{account.id}/media")
    assert ig.json()["error"]["code"] == 80002
    assert (
        usage_header(ig, "X-Business-Use-Case-Usage")[account.id][0][
            "estimated_time_to_regain_access"
        ]
        == 12
    )
    sb.inject("throttle", endpoint="conversations")
    assert get(sb, f"/{w.page.id}/conversations").json()["error"]["code"] == 80006
    for code in (4, 17, 32, 613):
        sb.inject("throttle", error_code=code)
        assert get(sb, "/me").json()["error"]["code"] == code
    with pytest.raises(ValueError, match="error_code"):
        sb.inject("throttle", error_code=429)
    with pytest.raises(ValueError, match="unknown options"):
        sb.inject("expired_token", minutes=3)
    assert get(sb, "/me").status_code == 200


def test_faults_through_the_control_endpoint(w: World) -> None:
    rule = requests.post(
        w.sb.url + CONTROL_PATH,
        json={"kind": "expired_token", "subcode": 460, "endpoint": "node"},
        timeout=10,
    )
    assert rule.status_code == 201 and rule.json()["subcode"] == 460
    error = get(w.sb, "/me").json()["error"]
    assert (error["code"], error["error_subcode"]) == (190, 460)
    assert get(w.sb, "/me").status_code == 200  # one request, the token itself is fine
    bad = requests.post(
        w.sb.url + CONTROL_PATH, json={"kind": "throttle", "error_code": 1}, timeout=10
    )
    assert bad.status_code == 400


def test_transient_5xx_carries_is_transient(w: World) -> None:
    w.sb.inject("status", status=500, endpoint="comments")
    post = w.sb.add_post(w.page.id, "p")
    resp = get(w.sb, f"/{post.id}/comments")
    assert resp.status_code == 500
    error = resp.json()["error"]
    assert_same_shape(error, recorded("restfb/oauthExampleError.json")["error"], "error")
    assert error["is_transient"] is True and error["code"] == 2


def test_withheld_from_fault(w: World) -> None:
    post = w.sb.add_post(w.page.id, "p")
    w.sb.add_comment(post.id, w.ann, "hello")
    w.sb.add_comment(post.id, w.page, "hi")
    w.sb.inject("withheld_from", endpoint="comments")
    withheld = get(w.sb, f"/{post.id}/comments", fields="from").json()["data"]
    assert ["from" in c for c in withheld] == [False, True]
    again = get(w.sb, f"/{post.id}/comments", fields="from").json()["data"]
    assert ["from" in c for c in again] == [True, True]


def test_late_comment_fault_lands_on_the_oldest_post(w: World, clock: Clock) -> None:
    old = w.sb.add_post(w.page.id, "old", at=clock.now - timedelta(days=80))
    new = w.sb.add_post(w.page.id, "new", at=clock.now - timedelta(days=1))
    w.sb.inject("late_comment", endpoint="feed")
    feed = get(w.sb, f"/{w.page.id}/feed", fields="id,updated_time,comments.summary(true).limit(0)")
    data = feed.json()["data"]
    assert [p["id"] for p in data] == [new.id, old.id]
    assert data[1]["updated_time"] == clock.now.strftime("%Y-%m-%dT%H:%M:%S+0000")
    assert data[1]["comments"]["summary"]["total_count"] == 1
    with pytest.raises(ValueError, match="unknown endpoint"):
        w.sb.inject("late_comment", endpoint="media")


def test_busy_thread_fault_brings_more_than_20_messages(w: World) -> None:
    w.sb.add_message(w.page.id, w.ann, "first")
    w.sb.inject("busy_thread", endpoint="conversations", messages=22)
    fields = "messages.limit(100){id,message}"
    (thread,) = get(w.sb, f"/{w.page.id}/conversations", fields=fields).json()["data"]
    messages = thread["messages"]["data"]
    assert len(messages) == 23
    assert [("message" in m) for m in messages] == [True] * 20 + [False] * 3


# -- webhooks ---------------------------------------------------------------------------------
class _Receiver:
    """A loopback receiver that keeps what arrives (body bytes and headers)."""

    def __init__(self) -> None:
        self.got: list[tuple[str, bytes, dict[str, str], str]] = []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def _keep(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length)
                outer.got.append((self.command, body, dict(self.headers), self.path))
                self.send_response(200)
                self.send_header("Content-Length", "0")
                self.end_headers()

            do_GET = do_POST = _keep

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/webhooks/meta"

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def receiver() -> Iterator[_Receiver]:
    r = _Receiver()
    yield r
    r.close()


def _structure(value: Any) -> Any:
    """Keys and JSON types, values aside."""
    if isinstance(value, dict):
        return {k: _structure(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_structure(v) for v in value]
    return type(value).__name__


def test_payloads_have_the_recorded_shapes(w: World) -> None:
    sb = w.sb
    post = sb.add_post(w.page.id, "post")
    comment = sb.add_comment(post.id, w.page, "and the next one")
    real = recorded("restfb/webhooks/feed-comment-add-211.json")
    assert _structure(sb.comment_event(comment.id)) == _structure(real)
    removed = recorded("restfb/webhooks/feed-comment-remove-25.json")
    assert _structure(sb.comment_event(comment.id, "remove")) == _structure(removed)
    elsewhere = sb.add_page("Elsewhere")
    their_post = sb.add_post(elsewhere.id, "A test post message @Acme")
    real_post = recorded("restfb/webhooks/mention-post-add-real.json")
    assert _structure(sb.mention_event(w.page.id, their_post.id)) == _structure(real_post)
    their_comment = sb.add_comment(their_post.id, w.ann, "Just a test message @Acme")
    real_comment = recorded("restfb/webhooks/mention-comment-add.json")
    event = sb.mention_event(w.page.id, their_comment.id)
    assert _structure(event) == _structure(real_comment)
    # No author in a mention, as recorded.
    assert "from" not in event["entry"][0]["changes"][0]["value"]
    account = sb.add_instagram_account(w.page.id, "acme")
    fan = sb.add_ig_user("fan")
    media = sb.add_others_media(fan, "hey @acme")
    mention = sb.add_ig_comment(media.id, fan, "@acme look")
    real_ig = recorded("restfb/instagram/wh-mentions.json")
    ig_event = sb.instagram_mention_event(account.id, media.id, mention.id)
    assert _structure(ig_event) == _structure(real_ig)
    ours = sb.add_media(account.id, "ours")
    ig_comment = sb.add_ig_comment(ours.id, fan, "nice")
    value = sb.instagram_comment_event(ig_comment.id)["entry"][0]["changes"][0]["value"]
    assert value["from"] == {"id": sb.igsid(fan, account.id), "username": "fan"}
    assert value["media"] == {"id": ours.id, "media_product_type": "FEED"}


def test_signed_unsigned_wrong_and_replayed_deliveries(w: World, receiver: _Receiver) -> None:
    sb = w.sb
    sender = sb.webhooks()
    assert sb.app_secret not in repr(sender)
    post = sb.add_post(w.page.id, "post")
    comment = sb.add_comment(post.id, w.ann, "hello")
    payload = sb.comment_event(comment.id)
    assert sender.deliver(receiver.url, payload).status_code == 200
    method, body, headers, _ = receiver.got[-1]
    expected = "sha256=" + hmac.new(sb.app_secret.encode(), body, hashlib.sha256).hexdigest()
    assert method == "POST" and headers["X-Hub-Signature-256"] == expected
    assert headers["X-Hub-Signature"].startswith("sha1=")
    assert json.loads(body) == payload
    sender.replay(receiver.url)
    assert receiver.got[-1][1] == body and receiver.got[-1][2]["X-Hub-Signature-256"] == expected
    sender.deliver(receiver.url, payload, "none")
    assert "X-Hub-Signature-256" not in receiver.got[-1][2]
    assert "X-Hub-Signature" not in receiver.got[-1][2]
    sender.deliver(receiver.url, payload, "wrong")
    wrong = receiver.got[-1]
    assert wrong[2]["X-Hub-Signature-256"] != webhooks.signature(wrong[1], sb.app_secret)
    sender.deliver(receiver.url, payload, "sha1_only")
    assert set(receiver.got[-1][2]) & {"X-Hub-Signature-256", "X-Hub-Signature"} == {
        "X-Hub-Signature"
    }
    forged = sender.tamper(sender.sent[0])
    sender.send(receiver.url, forged)
    tampered = receiver.got[-1]
    assert tampered[2]["X-Hub-Signature-256"] == expected
    assert webhooks.signature(tampered[1], sb.app_secret) != expected


def test_subscription_verification_request(w: World, receiver: _Receiver) -> None:
    w.sb.webhooks().verify_subscription(receiver.url, "my-verify-token", challenge="1158201444")
    method, _, _, path = receiver.got[-1]
    assert method == "GET"
    assert "hub.mode=subscribe" in path and "hub.challenge=1158201444" in path
    assert "hub.verify_token=my-verify-token" in path
