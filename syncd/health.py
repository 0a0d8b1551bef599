"""The optional HTTP listener of ``syncd run`` (``[daemon] listen``): /healthz and /metrics.

stdlib ``http.server`` in daemon threads: two read-only endpoints for a load balancer or a
Prometheus scraper do not justify a web framework. Bind it to loopback unless something in
front of it controls who can read it: metrics name accounts and CRM objects.
"""

from __future__ import annotations

import json
import logging
import socket
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Protocol

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest

from syncd.errors import ConfigError
from syncd.sdnotify import Heartbeat, heartbeat_seconds

log = logging.getLogger("syncd.health")

# Ticks come every few seconds; this many missed in a row means the scheduler is stuck.
STALE_TICKS = 6
MIN_STALE_SECONDS = 30.0


class Watched(Protocol):
    """What /healthz looks at (the daemon)."""

    heartbeat: Heartbeat
    parked: set[str]
    stopping: threading.Event


def verdict(daemon: Watched) -> tuple[int, dict[str, Any]]:
    """200 with ``{"status": "ok"}``, or 503 naming every reason it is not."""
    reasons: list[str] = []
    age = daemon.heartbeat.age()
    stale_after = max(MIN_STALE_SECONDS, STALE_TICKS * heartbeat_seconds())
    if daemon.stopping.is_set():
        reasons.append("stopping")
    if age is None:
        reasons.append("the scheduler has not ticked yet")
    elif age > stale_after:
        reasons.append(f"the scheduler last ticked {age:.0f}s ago (limit {stale_after:.0f}s)")
    parked = sorted(daemon.parked)
    if parked:
        reasons.append(
            "parked after authentication failures: " + ", ".join(parked)
            + " (fix the credentials, then `syncd resume NAME`)"
        )  # fmt: skip
    body: dict[str, Any] = {"status": "fail" if reasons else "ok", "parked": parked}
    if age is not None:
        body["last_tick_seconds_ago"] = round(age, 3)
    if reasons:
        body["reasons"] = reasons
    return (503 if reasons else 200), body


def parse_listen(value: str) -> tuple[str, int]:
    """``host:port`` or ``[v6]:port`` → (host, port); ValueError names what is wrong."""
    host, sep, port = value.rpartition(":")
    if not sep or not host:
        raise ValueError("must be 'host:port', e.g. '127.0.0.1:9464' or '[::1]:9464'")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    elif ":" in host:
        raise ValueError("an IPv6 address goes in brackets: '[::1]:9464'")
    if not host:
        raise ValueError("names no host: use '127.0.0.1:9464' (or '0.0.0.0:9464' for all)")
    if not port.isdigit() or not 0 <= int(port) <= 65535:
        raise ValueError(f"port must be a number from 0 to 65535, not {port!r}")
    return host, int(port)


class _Server(ThreadingHTTPServer):
    daemon_threads = True  # a slow scraper must never hold up shutdown


class HealthServer:
    def __init__(
        self,
        listen: str,
        check: Callable[[], tuple[int, dict[str, Any]]],
        registry: CollectorRegistry,
    ) -> None:
        self.host, self.port = parse_listen(listen)
        self._check = check
        self._registry = registry
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    def start(self) -> None:
        """Bind and serve in a thread; OSError (address in use, …) is the caller's to report."""
        check, registry = self._check, self._registry

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                path = self.path.split("?", 1)[0]
                if path == "/healthz":
                    code, body = check()
                    self._send(code, "application/json", json.dumps(body).encode() + b"\n")
                elif path == "/metrics":
                    self._send(200, CONTENT_TYPE_LATEST, generate_latest(registry))
                else:
                    self._send(404, "text/plain", b"not found: try /healthz or /metrics\n")

            def _send(self, code: int, content_type: str, body: bytes) -> None:
                self.send_response(code)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(body)))
                self.send_header("Cache-Control", "no-store")
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: Any) -> None:
                log.debug("%s " + format, self.address_string(), *args)

        family = socket.AF_INET6 if ":" in self.host else socket.AF_INET
        server_class = type("Server", (_Server,), {"address_family": family})
        self._server = server_class((self.host, self.port), Handler)
        self.port = self._server.server_address[1]  # the real one when 0 was asked
        self._thread = threading.Thread(
            target=self._server.serve_forever, name="health-http", daemon=True
        )
        self._thread.start()
        log.info("health and metrics on %s/healthz and %s/metrics", self.url, self.url)

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None


def serve(
    listen: str, daemon: Watched, registry: CollectorRegistry, config: object
) -> HealthServer:
    """Start the listener for ``daemon``; a port that cannot be bound is a config problem."""
    server = HealthServer(listen, lambda: verdict(daemon), registry)
    try:
        server.start()
    except OSError as exc:
        raise ConfigError(
            [("daemon.listen", f"cannot listen on {listen} ({exc.strerror or exc})")],
            source=config,
        ) from None
    return server
