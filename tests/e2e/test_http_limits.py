"""The /healthz and /metrics listener against clients that stall, trickle or send too much:
what one client holds is bounded (connections, header bytes, seconds per request), so the
daemon keeps its file descriptors and /healthz keeps answering (issue 16, item 10)."""

from __future__ import annotations

import contextlib
import json
import logging
import os
import select
import socket
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner
from prometheus_client import CollectorRegistry
from support.e2e import config_text

from sandbox.salesforce.api import SalesforceSandbox
from sandbox.seed import set_up_org
from sandbox.x.api import XSandbox
from syncd.cli import cli
from syncd.service.http import HealthServer, Limits, is_loopback

# Short server bounds keep the tests quick; the clients' own waits are generous (2 loaded
# cores), and only bound how long a failing test takes to say so.
LIMITS = Limits(connections=100, idle_seconds=1, request_seconds=2, header_bytes=2048)
WAIT = 60.0
STALLED = 200


@pytest.fixture
def server() -> Iterator[HealthServer]:
    s = HealthServer("127.0.0.1:0", lambda: (200, {"status": "ok"}), CollectorRegistry(), LIMITS)
    s.start()
    yield s
    s.stop()


def open_descriptors() -> int:
    return len(os.listdir("/proc/self/fd"))


def healthz(server: HealthServer) -> int:
    with urllib.request.urlopen(f"{server.url}/healthz", timeout=WAIT) as response:
        status: int = response.status
        return status


def read_to_end(sock: socket.socket) -> bytes:
    data = b""
    while chunk := sock.recv(65536):
        data += chunk
    return data


@pytest.mark.parametrize("stall", ["silent", "endless header"])
def test_stalled_connections_neither_exhaust_descriptors_nor_keep_healthz_from_answering(
    server: HealthServer, stall: str
) -> None:
    before = open_descriptors()
    clients: list[socket.socket] = []
    try:
        for _ in range(STALLED):
            client = socket.create_connection(("127.0.0.1", server.port), timeout=WAIT)
            clients.append(client)
            if stall == "endless header":
                # A header line that has not ended (under the stdlib's 64 KB line limit,
                # which would answer it): as much of it as the socket takes without waiting.
                client.setblocking(False)
                with contextlib.suppress(BlockingIOError):
                    client.send(b"GET /healthz HTTP/1.1\r\nX-Pad: " + b"a" * 60_000)
        assert healthz(server) == 200
        # The kernel hands connections over in the order they came, so the listener has
        # taken all 200 before the /healthz one: a thread per connection would hold them all.
        held = open_descriptors() - before - len(clients)
        # (+10: whatever else this process opened meanwhile; the stdlib server held 200.)
        assert held <= LIMITS.connections + 10, f"{held} descriptors held for {STALLED} clients"
    finally:
        for client in clients:
            client.close()


def test_headers_over_the_limit_are_answered_431_and_the_connection_closed(
    server: HealthServer,
) -> None:
    with socket.create_connection(("127.0.0.1", server.port), timeout=WAIT) as client:
        # Unfinished (no blank line): a server reading until the headers end would wait.
        pad = b"a" * (2 * LIMITS.header_bytes)
        client.sendall(b"GET /healthz HTTP/1.1\r\nHost: syncd\r\nX-Pad: " + pad)
        answer = read_to_end(client)  # b"" only once the server has closed it
    assert answer.split(b"\r\n", 1)[0].split(b" ", 2)[1] == b"431", answer[:200]
    assert healthz(server) == 200


def test_a_request_trickling_in_is_cut_off(server: HealthServer) -> None:
    with socket.create_connection(("127.0.0.1", server.port), timeout=WAIT) as client:
        client.sendall(b"GET /healthz HTTP/1.1\r\n")
        closed = False
        give_up = time.monotonic() + WAIT
        # A header line every quarter second: never silent long enough for the idle bound,
        # and small enough never to reach the header limit in WAIT seconds.
        while not closed and time.monotonic() < give_up:
            readable, _, _ = select.select([client], [], [], 0.25)
            try:
                if readable and not client.recv(4096):
                    closed = True
                else:
                    client.sendall(b"X-A: b\r\n")
            except OSError:  # reset by the server
                closed = True
    assert closed, "the server kept a request arriving for a minute"
    assert healthz(server) == 200


def exchange(server: HealthServer, request: bytes) -> bytes:
    with socket.create_connection(("127.0.0.1", server.port), timeout=WAIT) as client:
        client.sendall(request)
        return read_to_end(client)


def test_head_gets_the_headers_alone_and_other_methods_are_refused(
    server: HealthServer,
) -> None:
    head = exchange(server, b"HEAD /healthz HTTP/1.1\r\nHost: s\r\nConnection: close\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200 ") and head.endswith(b"\r\n\r\n"), head
    delete = exchange(server, b"DELETE /healthz HTTP/1.1\r\nHost: s\r\nConnection: close\r\n\r\n")
    assert delete.startswith(b"HTTP/1.1 405 ") and b"Allow: GET, HEAD\r\n" in delete, delete
    body = (
        b"POST /metrics HTTP/1.1\r\nHost: s\r\nContent-Length: 5\r\nConnection: close\r\n\r\nhello"
    )
    assert exchange(server, body).startswith(b"HTTP/1.1 413 ")


def test_stop_closes_the_listener_and_every_connection(server: HealthServer) -> None:
    clients = [socket.create_connection(("127.0.0.1", server.port), timeout=WAIT) for _ in range(5)]
    clients[0].sendall(b"GET /healthz HTTP/1.1\r\n")  # a request half sent
    assert healthz(server) == 200  # the listener has taken them all (see above)
    server.stop()
    try:
        for client in clients:
            with contextlib.suppress(ConnectionResetError):
                assert read_to_end(client) == b""
        with pytest.raises(ConnectionRefusedError):
            socket.create_connection(("127.0.0.1", server.port), timeout=WAIT).close()
    finally:
        for client in clients:
            client.close()


@pytest.mark.parametrize(
    ("host", "loopback"),
    [
        ("127.0.0.1", True),
        ("127.0.0.53", True),
        ("::1", True),
        ("localhost", True),
        ("::ffff:127.0.0.1", True),
        ("0.0.0.0", False),
        ("::", False),
        ("192.0.2.10", False),
        ("no-such-host.invalid", False),
    ],
)
def test_loopback_addresses(host: str, loopback: bool) -> None:
    assert is_loopback(host) is loopback


def test_a_listen_address_beyond_loopback_is_warned_about_once_at_start(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="syncd.health")
    for listen in ("127.0.0.1:0", "0.0.0.0:0"):
        s = HealthServer(listen, lambda: (200, {}), CollectorRegistry(), LIMITS)
        s.start()
        s.stop()
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1
    assert "'0.0.0.0:0' is not a loopback address" in warnings[0]
    assert "no authentication" in warnings[0]


def test_check_says_when_the_listener_is_reachable_beyond_this_machine(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("E2E_X_BEARER", "e2e-bearer")
    monkeypatch.setenv("E2E_SF_PASSWORD", "sandbox-password")
    monkeypatch.setenv("E2E_SF_TOKEN", "sandbox-token")
    with XSandbox(bearer_token="e2e-bearer") as x, SalesforceSandbox() as sf:
        set_up_org(sf)
        x.add_user("acme", "Acme")
        path = tmp_path / "config.toml"
        text = config_text(f"sqlite:///{tmp_path}/state.db", x.url, sf.url, ("acme",))
        details = {}
        for listen in ("127.0.0.1:9464", "0.0.0.0:9464"):
            path.write_text(text.replace("[daemon]\n", f'[daemon]\nlisten = "{listen}"\n'))
            result = CliRunner().invoke(cli, ["--config", str(path), "check", "--json"])
            assert result.exit_code == 0, result.output  # said, not failed
            rows = json.loads(result.output)["checks"]
            details[listen] = [r["detail"] for r in rows if r["item"] == "daemon.listen"]
    assert details["127.0.0.1:9464"] == []
    [warning] = details["0.0.0.0:9464"]
    assert "not a loopback address" in warning
