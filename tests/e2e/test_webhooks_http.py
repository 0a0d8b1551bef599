"""``/webhooks/<source>`` on the HTTP listener, over real HTTP, with a fake source's endpoint
and the hint store on SQLite and PostgreSQL: the subscription check, signatures refused before
anything is stored, a delivery's hints stored once however often it comes, bodies bounded
before they are read, and only configured webhook sources answered."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from datetime import UTC, datetime

import pytest
import requests
from prometheus_client import CollectorRegistry
from sqlalchemy import select
from support.fake_source import (
    FakeNetwork,
    FakeSource,
    FakeWebhook,
    FakeWebhookSource,
    fake_signature,
)

from syncd.service.http import HealthServer, Limits
from syncd.service.webhooks import SourceWebhooks
from syncd.state.db import Database
from syncd.state.tables import webhook_hints

SECRET = "fake-app-secret-1234"
TOKEN = "fake-verify-token-5678"
BODY_BYTES = 4096
NOW = datetime(2026, 12, 6, 12, 0, tzinfo=UTC)


def sign(body: bytes) -> str:
    return fake_signature(body, SECRET)


class Listener:
    def __init__(self, db: Database) -> None:
        self.db = db
        self.hook = FakeWebhook(TOKEN, SECRET)
        sources = {
            "acme-fake": FakeWebhookSource(FakeNetwork(), self.hook),
            "quiet": FakeWebhookSource(FakeNetwork(), None),  # configured without a webhook
            "plain": FakeSource(FakeNetwork()),  # a source that has none at all
        }
        hooks = SourceWebhooks(lambda: sources, lambda: db, lambda: NOW)
        limits = Limits(body_bytes=BODY_BYTES)
        self.server = HealthServer(
            "127.0.0.1:0", lambda: (200, {}), CollectorRegistry(), limits, webhooks=hooks
        )

    @property
    def url(self) -> str:
        return f"{self.server.url}/webhooks/acme-fake"

    def post(self, body: bytes, signed: bool = True, url: str | None = None) -> requests.Response:
        headers = {"X-Fake-Signature": sign(body)} if signed else {}
        return requests.post(url or self.url, data=body, headers=headers, timeout=10)

    def stored(self) -> list[tuple[str, str, str, str]]:
        with self.db.connect() as conn:
            rows = conn.execute(
                select(
                    webhook_hints.c.source,
                    webhook_hints.c.account,
                    webhook_hints.c.object_id,
                    webhook_hints.c.kind,
                ).order_by(webhook_hints.c.object_id)
            )
            return [(s, a, o, k) for s, a, o, k in rows]


@pytest.fixture
def listener(db: Database) -> Iterator[Listener]:
    one = Listener(db)
    one.server.start()
    yield one
    one.server.stop()


def test_the_subscription_check_echoes_the_challenge_for_the_right_token_only(
    listener: Listener,
) -> None:
    answer = requests.get(
        listener.url, params={"token": TOKEN, "challenge": "1158201444"}, timeout=10
    )
    assert (answer.status_code, answer.text) == (200, "1158201444")
    wrong = requests.get(
        listener.url, params={"token": "guess", "challenge": "1158201444"}, timeout=10
    )
    assert wrong.status_code == 403 and "1158201444" not in wrong.text


def test_an_unsigned_or_wrongly_signed_delivery_is_refused_and_stores_nothing(
    listener: Listener,
) -> None:
    body = b"17841400000000001 9001 mention\n"
    assert listener.post(body, signed=False).status_code == 403
    forged = requests.post(
        listener.url, data=body, headers={"X-Fake-Signature": sign(b"other")}, timeout=10
    )
    assert forged.status_code == 403
    assert listener.stored() == []
    # The endpoint saw the exact bytes, and the headers by lower-case name.
    assert listener.hook.received[-1][0] == body
    assert "x-fake-signature" in listener.hook.received[-1][1]


def test_a_signed_delivery_stores_its_hints_once_and_a_replay_adds_nothing(
    listener: Listener,
) -> None:
    body = b"17841400000000001 9001 mention\n17841400000000001 9002 comment\n"
    first = listener.post(body)
    assert (first.status_code, first.text) == (200, "ok\n")
    expected = [
        ("acme-fake", "17841400000000001", "9001", "mention"),
        ("acme-fake", "17841400000000001", "9002", "comment"),
    ]
    assert listener.stored() == expected
    assert listener.post(body).status_code == 200  # the same delivery again
    overlapping = b"17841400000000001 9002 comment\n17841400000000001 9002 mention\n"
    assert listener.post(overlapping).status_code == 200
    assert listener.stored() == [*expected, ("acme-fake", "17841400000000001", "9002", "mention")]


def test_a_body_over_the_bound_is_refused_413_before_it_is_sent(listener: Listener) -> None:
    with socket.create_connection(("127.0.0.1", listener.server.port), timeout=10) as client:
        # The headers alone: the answer comes without waiting for a body that never comes.
        client.sendall(
            b"POST /webhooks/acme-fake HTTP/1.1\r\nHost: s\r\n"
            + f"Content-Length: {BODY_BYTES + 1}\r\n\r\n".encode()
        )
        answer = client.recv(65536)
    assert answer.startswith(b"HTTP/1.1 413 "), answer
    assert listener.post(b"1 2 kind\n" + b" " * (BODY_BYTES + 1)).status_code == 413
    assert listener.stored() == [] and listener.hook.received == []


def test_only_configured_webhook_sources_answer_and_other_methods_are_refused(
    listener: Listener,
) -> None:
    base = f"{listener.server.url}/webhooks"
    body = b"1 2 kind\n"
    for url in (f"{base}/nobody", f"{base}/quiet", f"{base}/plain", f"{base}/", f"{base}/a/b"):
        assert listener.post(body, url=url).status_code == 404, url
        assert (
            requests.get(url, params={"token": TOKEN, "challenge": "1"}, timeout=10).status_code
            == 404
        )
    put = requests.put(listener.url, data=body, timeout=10)
    assert put.status_code == 405 and put.headers["Allow"] == "GET, HEAD, POST"
    # A body anywhere else is still refused, as before webhooks.
    assert requests.post(f"{listener.server.url}/metrics", data=body, timeout=10).status_code == 413
    assert listener.stored() == []


def test_a_delivery_state_cannot_take_is_answered_503_for_meta_to_send_again(
    listener: Listener, monkeypatch: pytest.MonkeyPatch
) -> None:
    def down(*_args: object) -> int:
        raise OSError("the state database is unreachable")

    monkeypatch.setattr("syncd.state.hints.add", down)
    assert listener.post(b"17841400000000001 9001 mention\n").status_code == 503
    monkeypatch.undo()
    assert listener.post(b"17841400000000001 9001 mention\n").status_code == 200
    assert len(listener.stored()) == 1
