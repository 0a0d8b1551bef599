"""connectors._http.DeadlineTransport: the Bluesky source's ``timeout`` bounds each whole
request (httpx, under the atproto SDK), as the requests adapter does for X and Salesforce.

A server that dribbles its answer (a byte every 20 ms, far inside any per-read timeout) would
hold a call for seconds; with a 0.4 s timeout it fails as a timeout instead, in the headers and
in the body. Nothing here measures time: a call not cut short returns the whole answer, and the
test fails on that.
"""

from __future__ import annotations

import base64
import json
import socket
import threading
import time
from pathlib import Path

import httpx
import pytest

from connectors._http import DeadlineTransport
from connectors.bluesky.source import BlueskySource
from syncd.errors import MalformedAnswer, TransientError
from syncd.model import Account, Cursor, Stream

BODY = b'{"notifications": [], "x": "' + b"x" * 200 + b'"}'
TIMEOUT = 0.4


class Dribbler:
    """Answers every request 200 with BODY, one byte every 20 ms (``slow_headers``: from the
    status line on), or whole at once (``quick``)."""

    def __init__(self, *, slow_headers: bool = False, quick: bool = False) -> None:
        self.slow_headers, self.quick = slow_headers, quick
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._serve, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.listener.getsockname()[1]}"

    def _serve(self) -> None:
        self.listener.settimeout(0.1)
        while not self.stop.is_set():
            try:
                conn, _ = self.listener.accept()
            except TimeoutError:
                continue
            threading.Thread(target=self._answer, args=(conn,), daemon=True).start()

    def _answer(self, conn: socket.socket) -> None:
        head = (
            f"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(BODY)}\r\n\r\n"
        ).encode()
        try:
            with conn:
                while True:  # keep-alive: one answer per request on this connection
                    request = b""
                    while b"\r\n\r\n" not in request:
                        chunk = conn.recv(4096)
                        if not chunk:
                            return
                        request += chunk
                    if self.quick:
                        conn.sendall(head + BODY)
                        continue
                    if not self.slow_headers:
                        conn.sendall(head)
                    for byte in (head if self.slow_headers else b"") + BODY:
                        if self.stop.wait(0.02):
                            return
                        conn.sendall(bytes([byte]))
        except OSError:
            return  # the client gave up: what the test wants

    def __enter__(self) -> Dribbler:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        self.thread.join(5)
        self.listener.close()


def jwt(scope: str) -> str:
    """A token the SDK can read the expiry of (an hour on): it checks it before each call."""
    claims = {"scope": scope, "sub": "did:plc:a", "exp": int(time.time()) + 3600}
    part = base64.urlsafe_b64encode(json.dumps(claims).encode()).rstrip(b"=").decode()
    return f"eyJhbGciOiJFUzI1NksifQ.{part}.c2ln"


@pytest.mark.parametrize("slow_headers", [False, True], ids=["slow-body", "slow-headers"])
def test_a_dribbled_answer_times_out_as_a_whole(slow_headers: bool) -> None:
    with Dribbler(slow_headers=slow_headers) as srv:
        client = httpx.Client(transport=DeadlineTransport(TIMEOUT), timeout=30.0)
        with pytest.raises(httpx.TimeoutException):
            client.get(srv.url)
        client.close()


def test_a_quick_answer_arrives_whole_on_a_reused_connection() -> None:
    with Dribbler(quick=True) as srv:
        client = httpx.Client(transport=DeadlineTransport(TIMEOUT), timeout=30.0)
        bodies = [client.get(srv.url).content for _ in range(3)]
        client.close()
    assert bodies == [BODY] * 3


def test_the_bluesky_source_fails_a_dribbled_call_as_transient(tmp_path: Path) -> None:
    session = tmp_path / "s.session"
    with Dribbler() as srv:
        # A kept session, so the first request is the read itself (no login).
        access, refresh = jwt("com.atproto.access"), jwt("com.atproto.refresh")
        session.write_text(f"acme.bsky.social:::did:plc:a:::{access}:::{refresh}:::{srv.url}\n")
        session.chmod(0o600)
        source = BlueskySource(
            identifier="acme.bsky.social",
            app_password="app-password",
            session_file=session,
            service=srv.url,
            timeout=TIMEOUT,
        )
        brand = Account("bluesky", "acme", "did:plc:a")
        try:
            # A whole body in time would be an empty notifications page, not an error.
            with pytest.raises(TransientError) as info:
                source.fetch(brand, Stream.MENTIONS, Cursor())
            assert not isinstance(info.value, MalformedAnswer)
        finally:
            source.close()
