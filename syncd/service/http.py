"""The optional HTTP listener of ``syncd run`` (``[daemon] listen``): /healthz, /metrics and
each webhook source's ``/webhooks/<source name>``.

Served by waitress, not a thread per connection: with the stdlib's ``http.server``, 130
connections that never sent a request exhausted the daemon's file descriptors and unfinished
requests held megabytes of headers each. waitress multiplexes every connection on one thread
and bounds what a client can hold (:class:`Limits`): connections open at once, header bytes,
seconds a connection may stay silent; syncd adds the seconds a request may take to arrive, so
a client trickling a byte at a time is cut off too. The endpoints are unauthenticated and
metrics name accounts and CRM objects: a listen address that is not loopback is warned about.

A webhook (:class:`syncd.contracts.WebhookSource`) is answered here, plain HTTP behind the
operator's TLS reverse proxy: a ``GET`` is the network's subscription check; a ``POST`` body
over ``Limits.body_bytes`` is refused (413) by waitress from its Content-Length, before it is
read; a refused signature stores nothing (403); a delivery's hints are stored in one
transaction and answered 200 at once, no API call made (the poller reads them later).
"""

from __future__ import annotations

import contextlib
import ipaddress
import json
import logging
import socket
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from http import HTTPStatus
from typing import Any, Protocol, cast
from urllib.parse import parse_qsl
from wsgiref.types import StartResponse, WSGIEnvironment

from prometheus_client import CollectorRegistry, make_wsgi_app
from waitress import wasyncore
from waitress.adjustments import Adjustments
from waitress.channel import HTTPChannel
from waitress.parser import HTTPRequestParser
from waitress.server import TcpWSGIServer

from syncd.contracts import WebhookEndpoint
from syncd.errors import ConfigError
from syncd.model import WebhookHint
from syncd.service.sdnotify import Heartbeat, heartbeat_seconds

log = logging.getLogger("syncd.health")

# Ticks come every few seconds; this many missed in a row means the scheduler is stuck.
STALE_TICKS = 6
MIN_STALE_SECONDS = 30.0


@dataclass(frozen=True)
class Run:
    """A job run in progress: when it started (``time.monotonic()``) and how long it may last
    before /healthz calls it stuck."""

    job: str
    started: float
    limit: float


class Watched(Protocol):
    """What /healthz looks at (the daemon)."""

    heartbeat: Heartbeat
    stopping: threading.Event

    @property
    def parked(self) -> set[str]: ...

    def runs(self) -> Sequence[Run]: ...

    def state_outage(self) -> str | None: ...


def verdict(daemon: Watched, now: float | None = None) -> tuple[int, dict[str, Any]]:
    """200 with ``{"status": "ok"}``, or 503 naming every reason it is not.

    ``now``: the ``time.monotonic()`` to judge job runs by (tests move it forward)."""
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
            "parked (an account after authentication failures, a SOURCE:HANDLE:STREAM after "
            "unreadable answers): " + ", ".join(parked)
            + " (fix the cause, then `syncd resume NAME`)"
        )  # fmt: skip
    # Jobs waiting out an unavailable state database.
    if (outage := daemon.state_outage()) is not None:
        reasons.append(outage)
    # The scheduler ticks on its own thread, so a job hung on a call that never returns (a
    # lock, a socket without a timeout) would otherwise look healthy while its work waits.
    now = time.monotonic() if now is None else now
    stuck = []
    for run in sorted(daemon.runs(), key=lambda r: r.job):
        running = now - run.started
        if running > run.limit:
            stuck.append({"job": run.job, "running_seconds": round(running)})
            reasons.append(
                f"job {run.job} has been running for {running:.0f}s (stuck after {run.limit:.0f}s)"
            )
    body: dict[str, Any] = {"status": "fail" if reasons else "ok", "parked": parked, "stuck": stuck}
    if age is not None:
        body["last_tick_seconds_ago"] = round(age, 3)
    if reasons:
        body["reasons"] = reasons
    return (503 if reasons else 200), body


def is_loopback(host: str) -> bool:
    """Whether every address ``host`` stands for is this machine's own (127/8, ::1)."""
    try:
        infos = socket.getaddrinfo(host, None, proto=socket.IPPROTO_TCP)
    except OSError:
        return False
    addresses = [ipaddress.ip_address(str(info[4][0]).split("%")[0]) for info in infos]
    return bool(addresses) and all(_loopback(a) for a in addresses)


def _loopback(address: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped.is_loopback
    return address.is_loopback


def exposure_warning(listen: str) -> str:
    return (
        f"daemon.listen = {listen!r} is not a loopback address: anyone who can reach it reads "
        "/healthz and /metrics, which need no authentication and name accounts and CRM "
        "objects. Listen on 127.0.0.1 (or [::1]) unless a proxy in front controls who reads it"
    )


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


class Webhooks(Protocol):
    """What the listener's ``/webhooks/<source>`` needs of the daemon."""

    def endpoint(self, source: str) -> WebhookEndpoint | None:
        """The configured source's webhook; None: no such source, or it has none (404)."""
        ...

    def store(self, source: str, hints: Sequence[WebhookHint]) -> int:
        """Store one delivery's hints in one transaction; how many were new. Raises when the
        state database cannot take them (the answer is then 503: the network sends again)."""
        ...


WEBHOOKS = "/webhooks/"


@dataclass(frozen=True)
class Limits:
    """What clients can hold of the listener, whatever they send (or do not). Whole seconds:
    waitress's unit. A Prometheus scraper and a load balancer need a few connections each."""

    connections: int = 32  # open at once; more wait in the kernel's queue, holding nothing here
    idle_seconds: int = 10  # a connection silent this long is closed
    request_seconds: int = 10  # a request (line and headers) must arrive whole within this
    header_bytes: int = 8192  # request line and headers; more: 431 and the connection closed
    threads: int = 4  # requests answered at once: a slow /metrics leaves /healthz free
    # A webhook delivery's body (Meta batches at most 1,000 changes, well under this); only
    # /webhooks/ takes a body at all, and only with webhooks served.
    body_bytes: int = 1 << 20
    check_seconds: int = 1  # how often connections are checked against the limits


class _Parser(HTTPRequestParser):
    """waitress's request parser, stamped with when the request's first byte came."""

    def __init__(self, adj: Adjustments) -> None:
        super().__init__(adj)
        self.begun = time.monotonic()


class _Channel(HTTPChannel):
    parser_class = _Parser


class _Server(TcpWSGIServer):
    channel_class = _Channel
    request_seconds = Limits.request_seconds

    def maintenance(self, now: float) -> None:
        """waitress closes silent connections; also close one whose request is still arriving
        after ``request_seconds`` (a byte now and then keeps waitress's idle clock at zero)."""
        super().maintenance(now)  # type: ignore[arg-type]  # the stub says int: it is time.time()
        cutoff = time.monotonic() - self.request_seconds
        channels = cast("dict[int, HTTPChannel]", self.active_channels)
        for channel in list(channels.values()):
            request = channel.request
            if isinstance(request, _Parser) and not channel.requests and request.begun < cutoff:
                channel.will_close = True


class HealthServer:
    def __init__(
        self,
        listen: str,
        check: Callable[[], tuple[int, dict[str, Any]]],
        registry: CollectorRegistry,
        limits: Limits = Limits(),
        webhooks: Webhooks | None = None,
    ) -> None:
        self.listen = listen
        self.webhooks = webhooks
        self.host, self.port = parse_listen(listen)
        self._check = check
        self._metrics = make_wsgi_app(registry)
        self.limits = limits
        self._map: dict[int, Any] = {}
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None
        self._stopping = threading.Event()

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    def start(self) -> None:
        """Bind and serve in a thread; OSError (address in use, …) is the caller's to report."""
        family = socket.AF_INET6 if ":" in self.host else socket.AF_INET
        # Bound here rather than by waitress: a name binds the one address it resolves to
        # first (waitress would bind each, on different ports when 0 was asked).
        sock = socket.socket(family, socket.SOCK_STREAM)
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind((self.host, self.port))
        except OSError:
            sock.close()
            raise
        bound = sock.getsockname()
        self.port = bound[1]  # the real one when 0 was asked
        limits = self.limits
        adj = Adjustments(
            sockets=[sock],
            threads=limits.threads,
            connection_limit=limits.connections,
            channel_timeout=limits.idle_seconds,
            cleanup_interval=limits.check_seconds,
            max_request_header_size=limits.header_bytes,
            # Without webhooks GET only: any body is refused (413).
            max_request_body_size=limits.body_bytes if self.webhooks is not None else 0,
            asyncore_use_poll=True,  # select() cannot watch a descriptor numbered over 1023
            log_socket_errors=False,  # a client hanging up is not the operator's concern
            ident="syncd",
        )
        server = _Server(
            self._app, self._map, _sock=sock, adj=adj, bind_socket=False,
            sockinfo=(family, socket.SOCK_STREAM, None, bound),
        )  # fmt: skip
        server.request_seconds = limits.request_seconds
        self._server = server
        self._thread = threading.Thread(target=self._run, name="health-http", daemon=True)
        self._thread.start()
        log.info("health and metrics on %s/healthz and %s/metrics", self.url, self.url)
        if not is_loopback(str(bound[0])):
            log.warning("%s", exposure_warning(self.listen))

    def _run(self) -> None:
        # One poll at a time, so stop() ends the loop between two polls (its wake-up makes
        # the current one return at once); every socket is then closed on this thread.
        try:
            while not self._stopping.is_set():
                wasyncore.loop(timeout=1.0, map=self._map, use_poll=True, count=1)
        except Exception:  # the jobs carry on; /healthz going unanswered says the rest
            log.error("the /healthz and /metrics listener stopped", exc_info=True)
        finally:
            wasyncore.close_all(self._map, ignore_all=True)

    def stop(self) -> None:
        """Close the listener and every connection: within about a second, whatever clients do."""
        server, thread = self._server, self._thread
        if server is None or thread is None:
            return
        self._stopping.set()
        if thread.is_alive():
            with contextlib.suppress(OSError):  # the loop closed its trigger on its way out
                server.pull_trigger()
        thread.join(2.0)
        # Answers in progress are abandoned (daemon threads); the process is stopping.
        server.task_dispatcher.shutdown(cancel_pending=True, timeout=1)
        self._server = self._thread = None

    # -- the WSGI application --------------------------------------------------------------
    def _app(self, environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        answer = self._route(environ, start_response)
        if environ["REQUEST_METHOD"] != "HEAD":
            return answer
        # waitress sends whatever the application returns, HEAD or not: the headers only.
        close = getattr(answer, "close", None)
        if close is not None:
            close()
        return []

    def _route(self, environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        def no_store(
            status: str, headers: list[tuple[str, str]], exc_info: Any = None
        ) -> Callable[[bytes], object]:
            return start_response(status, [*headers, ("Cache-Control", "no-store")], exc_info)

        method, path = environ["REQUEST_METHOD"], environ.get("PATH_INFO", "")
        if path.startswith(WEBHOOKS) and self.webhooks is not None:
            return self._webhook(self.webhooks, path[len(WEBHOOKS) :], environ, no_store)
        if _has_body(environ):
            text = b"no request body here\n"
            return _answer(no_store, "413 Content Too Large", "text/plain", text)
        if method not in ("GET", "HEAD"):
            text = b"GET or HEAD only\n"
            return _answer(no_store, "405 Method Not Allowed", "text/plain", text, GET_HEAD)
        if path == "/healthz":
            code, body = self._check()
            status = f"{code} {HTTPStatus(code).phrase}"
            return _answer(no_store, status, "application/json", json.dumps(body).encode() + b"\n")
        if path == "/metrics":
            return cast("Iterable[bytes]", self._metrics(environ, no_store))
        text = b"not found: try /healthz or /metrics\n"
        return _answer(no_store, "404 Not Found", "text/plain", text)

    def _webhook(
        self,
        webhooks: Webhooks,
        name: str,
        environ: WSGIEnvironment,
        start_response: Callable[..., Callable[[bytes], object]],
    ) -> Iterable[bytes]:
        method = environ["REQUEST_METHOD"]
        endpoint = webhooks.endpoint(name) if name and "/" not in name else None
        if endpoint is None:
            text = b"no webhook here\n"
            return _answer(start_response, "404 Not Found", "text/plain", text)
        if method in ("GET", "HEAD"):
            params = dict(reversed(parse_qsl(environ.get("QUERY_STRING", ""))))  # first wins
            echo = endpoint.subscribe(params)
            if echo is None:
                return _answer(start_response, "403 Forbidden", "text/plain", b"refused\n")
            return _answer(start_response, "200 OK", "text/plain", echo.encode())
        if method != "POST":
            text = b"GET, HEAD or POST only\n"
            allow = [("Allow", "GET, HEAD, POST")]
            return _answer(start_response, "405 Method Not Allowed", "text/plain", text, allow)
        # waitress has read the whole body already, bounded by Limits.body_bytes.
        body = environ["wsgi.input"].read()
        hints = endpoint.receive(body, _headers(environ))
        if hints is None:
            log.warning("webhook %s: a delivery was refused (its signature does not check)", name)
            return _answer(start_response, "403 Forbidden", "text/plain", b"refused\n")
        try:
            new = webhooks.store(name, hints) if hints else 0
        except Exception:
            log.error("webhook %s: could not store a delivery's hints", name, exc_info=True)
            text = b"not stored, send again\n"
            return _answer(start_response, "503 Service Unavailable", "text/plain", text)
        log.debug("webhook %s: %d hints, %d new", name, len(hints), new)
        return _answer(start_response, "200 OK", "text/plain", b"ok\n")


def _has_body(environ: WSGIEnvironment) -> bool:
    length = environ.get("CONTENT_LENGTH") or "0"
    return not length.isdigit() or int(length) > 0


def _headers(environ: WSGIEnvironment) -> dict[str, str]:
    """The request's headers, their names in lower case with dashes (``x-hub-signature-256``)."""
    found = {
        key[5:].replace("_", "-").lower(): str(value)
        for key, value in environ.items()
        if key.startswith("HTTP_")
    }
    for key in ("CONTENT_TYPE", "CONTENT_LENGTH"):
        if environ.get(key):
            found[key.replace("_", "-").lower()] = str(environ[key])
    return found


GET_HEAD = [("Allow", "GET, HEAD")]


def _answer(
    start_response: Callable[..., object],
    status: str,
    content_type: str,
    body: bytes,
    extra: list[tuple[str, str]] | None = None,
) -> list[bytes]:
    headers = [("Content-Type", content_type), ("Content-Length", str(len(body))), *(extra or [])]
    start_response(status, headers)
    return [body]


def serve(
    listen: str,
    daemon: Watched,
    registry: CollectorRegistry,
    config: object,
    webhooks: Webhooks | None = None,
) -> HealthServer:
    """Start the listener for ``daemon``; a port that cannot be bound is a config problem."""
    server = HealthServer(listen, lambda: verdict(daemon), registry, webhooks=webhooks)
    try:
        server.start()
    except OSError as exc:
        raise ConfigError(
            [("daemon.listen", f"cannot listen on {listen} ({exc.strerror or exc})")],
            source=config,
        ) from None
    return server
