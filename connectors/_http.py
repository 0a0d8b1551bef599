"""HTTP plumbing shared by connectors: base-URL rewriting, a whole-request timeout, no clear text.

tweepy and simple-salesforce hard-code ``https://`` hosts. Mounting :class:`RewritingAdapter` on
the ``requests.Session`` they use points them at another base URL (a sandbox, a proxy) without
modifying either library. tweepy sets no timeout at all, so the adapter supplies one.

requests' timeout bounds each socket operation, not the request: a server (or proxy) sending
a byte every few seconds holds a call, and the job thread with it, for as long as it likes.
The adapter's timeout is a deadline for the whole request instead (connecting, sending, the
answer's headers and body): every read of its connections waits at most for what is left.

Every request and every redirect passes through the adapter, which refuses to send anything
over plain ``http://`` to a host other than this one (:mod:`syncd.contracts.urls`): requests
keeps a 307's body (a login's password, a refresh token) when it follows the redirect, and an
API can answer with an address of its own (Salesforce's instance).
"""

from __future__ import annotations

import contextvars
import io
import re
import socket
import ssl
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any, TypeVar
from urllib.parse import urlsplit

import httpcore
import httpx
import requests
import urllib3
from requests.adapters import HTTPAdapter
from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool

from syncd.contracts import ResponseObserver
from syncd.contracts.urls import LOOPBACK_ONLY, plain_http_to_elsewhere

if TYPE_CHECKING:  # urllib3 defines these protocols for type checkers only
    from urllib3._base_connection import BaseHTTPConnection, BaseHTTPSConnection

DEFAULT_TIMEOUT = 30.0
# A numeric path segment after a name is an id (/users/123); one after none is a version (/2).
_ID_SEGMENT = re.compile(r"(?<=[A-Za-z])/\d+(?=/|$)")
_Conn = TypeVar("_Conn")
# When the request this thread is making must be over (time.monotonic()), if it has a deadline.
_DEADLINE: contextvars.ContextVar[float | None] = contextvars.ContextVar(
    "syncd_http_deadline", default=None
)


class PlainHttpRefused(requests.ConnectionError):
    """A request (or a redirect) would have gone over plain HTTP to another host."""


class _DeadlineSocket:
    """A connection's socket whose every read and send waits at most until the deadline of
    the request under way (and never longer than the socket's own timeout). Past it, reading
    raises the socket timeout urllib3 reports as a read timeout."""

    def __init__(self, sock: socket.socket) -> None:
        self._sock = sock
        self._timeout = sock.gettimeout()

    def settimeout(self, value: float | None) -> None:
        self._timeout = value
        self._sock.settimeout(value)

    def gettimeout(self) -> float | None:
        return self._timeout

    def _bound(self) -> None:
        deadline = _DEADLINE.get()
        if deadline is None:
            self._sock.settimeout(self._timeout)
            return
        left = deadline - time.monotonic()
        if left <= 0:
            raise TimeoutError("timed out: the request took longer than its timeout")
        self._sock.settimeout(left if self._timeout is None else min(left, self._timeout))

    # Arguments pass through as given: a TLS socket's defaults differ from a plain one's.
    def recv_into(self, buffer: Any, *args: Any) -> int:
        self._bound()
        return self._sock.recv_into(buffer, *args)

    def recv(self, *args: Any) -> bytes:
        self._bound()
        return self._sock.recv(*args)

    def sendall(self, data: Any, *args: Any) -> None:
        self._bound()  # since Python 3.5 a sendall's timeout bounds all of it
        self._sock.sendall(data, *args)

    def makefile(self, mode: str = "r", buffering: int | None = None, **kwargs: Any) -> Any:
        if mode != "rb":
            return self._sock.makefile(mode, buffering, **kwargs)  # type: ignore[call-overload]
        # http.client reads status line, headers and body from this file: its reads must come
        # through recv_into above. As socket.makefile does, the file holds the socket open.
        self._sock._io_refs += 1  # type: ignore[attr-defined]
        raw = socket.SocketIO(self, "rb")  # type: ignore[arg-type]
        return io.BufferedReader(raw, buffering or io.DEFAULT_BUFFER_SIZE)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._sock, name)


def _bounded(conn: _Conn) -> _Conn:
    """``conn``, its socket wrapped in a :class:`_DeadlineSocket` whenever it connects (for
    TLS, after the handshake). Done to the instance, not by subclassing the connection class:
    the pool's own class stays whatever it is (a recording library patches it)."""
    real: Any = conn
    connect = real.connect

    def bounded_connect() -> None:
        connect()
        if isinstance(real.sock, socket.socket):
            real.sock = _DeadlineSocket(real.sock)

    real.connect = bounded_connect
    return conn


class _Pool(HTTPConnectionPool):
    def _new_conn(self) -> BaseHTTPConnection:
        return _bounded(super()._new_conn())


class _TlsPool(HTTPSConnectionPool):
    def _new_conn(self) -> BaseHTTPSConnection:
        return _bounded(super()._new_conn())


_POOLS = {"http": _Pool, "https": _TlsPool}


@contextmanager
def _deadline(seconds: float | None) -> Iterator[None]:
    token = _DEADLINE.set(None if seconds is None else time.monotonic() + seconds)
    try:
        yield
    finally:
        _DEADLINE.reset(token)


def origin(url: str) -> str:
    """``scheme://host[:port]`` of a URL, lower-cased, without a trailing slash or path."""
    parts = urlsplit(url)
    if not parts.scheme or not parts.netloc:
        raise ValueError(f"not an absolute URL: {url!r}")
    return f"{parts.scheme.lower()}://{parts.netloc.lower()}"


class RewritingAdapter(HTTPAdapter):
    """Sends requests for one origin to another, and applies a default timeout.

    ``rewrites`` maps the origin a library uses (``https://api.twitter.com``) to the base URL
    to use instead (``http://127.0.0.1:8080`` or ``https://proxy.example/x``). The path of the
    target base is prefixed to the request path.
    """

    def __init__(self, rewrites: Mapping[str, str], timeout: float = DEFAULT_TIMEOUT) -> None:
        super().__init__()
        self.rewrites = {origin(k): v.rstrip("/") for k, v in rewrites.items()}
        self.timeout = timeout

    def init_poolmanager(self, *args: Any, **kwargs: Any) -> None:
        super().init_poolmanager(*args, **kwargs)
        self.poolmanager.pool_classes_by_scheme = _POOLS

    def proxy_manager_for(self, proxy: str, **proxy_kwargs: Any) -> Any:
        manager = super().proxy_manager_for(proxy, **proxy_kwargs)
        if isinstance(manager, urllib3.PoolManager):  # a SOCKS proxy keeps its own classes
            manager.pool_classes_by_scheme = _POOLS
        return manager

    def add(self, source_origin: str, target: str) -> None:
        self.rewrites[origin(source_origin)] = target.rstrip("/")

    def send(  # type: ignore[override]
        self, request: requests.PreparedRequest, **kwargs: Any
    ) -> requests.Response:
        url = request.url or ""
        try:
            target = self.rewrites.get(origin(url))
        except ValueError:
            target = None
        if target is not None:
            parts = urlsplit(url)
            rest = parts.path + (f"?{parts.query}" if parts.query else "")
            request.url = target + rest
        if plain_http_to_elsewhere(request.url or ""):
            # Only scheme and host: the rest of a URL may carry a token or a query.
            where = urlsplit(request.url or "")
            raise PlainHttpRefused(
                f"refused to send a request to http://{where.netloc.rpartition('@')[2]} "
                f"unencrypted: {LOOPBACK_ONLY}",
                request=request,
            )
        timeout = kwargs.get("timeout")
        if timeout is None:
            kwargs["timeout"] = timeout = self.timeout
        # A caller's (connect, read) pair sets no deadline; one number, or ours, bounds it all.
        total = float(timeout) if isinstance(timeout, int | float) else None
        with _deadline(total):
            response = super().send(request, **kwargs)
            if not kwargs.get("stream"):
                # requests reads the body after send() returns: read it here, in time.
                response.content  # noqa: B018
        return response


def mount(session: requests.Session, adapter: RewritingAdapter) -> None:
    """Route every request of ``session`` through ``adapter``."""
    session.mount("https://", adapter)
    session.mount("http://", adapter)


# -- httpx (the atproto SDK's HTTP library) ----------------------------------------------------
# The same whole-request deadline for clients built on httpx: httpx's timeouts, like requests',
# bound each read and write, so a server sending a byte at a time holds a request for as long
# as it likes. The deadline lives in its own variable, set per request by the transport: a
# stale one must never reach a requests call on the same thread.
_HTTPX_DEADLINE: contextvars.ContextVar[float | None] = contextvars.ContextVar(
    "syncd_httpx_deadline", default=None
)


def _left(timeout: float | None, error: type[Exception]) -> float | None:
    deadline = _HTTPX_DEADLINE.get()
    if deadline is None:
        return timeout
    left = deadline - time.monotonic()
    if left <= 0:
        raise error("the request's deadline passed")
    return left if timeout is None else min(timeout, left)


class _DeadlineStream(httpcore.NetworkStream):
    """A connection whose every read and write waits at most until the request's deadline."""

    def __init__(self, inner: httpcore.NetworkStream) -> None:
        self._inner = inner

    def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        return self._inner.read(max_bytes, _left(timeout, httpcore.ReadTimeout))

    def write(self, buffer: bytes, timeout: float | None = None) -> None:
        self._inner.write(buffer, _left(timeout, httpcore.WriteTimeout))

    def close(self) -> None:
        self._inner.close()

    def start_tls(
        self,
        ssl_context: ssl.SSLContext,
        server_hostname: str | None = None,
        timeout: float | None = None,
    ) -> httpcore.NetworkStream:
        bounded = _left(timeout, httpcore.ConnectTimeout)
        return _DeadlineStream(self._inner.start_tls(ssl_context, server_hostname, bounded))

    def get_extra_info(self, info: str) -> Any:
        return self._inner.get_extra_info(info)


class _DeadlineBackend(httpcore.NetworkBackend):
    def __init__(self) -> None:
        self._inner = httpcore.SyncBackend()

    def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Any = None,
    ) -> httpcore.NetworkStream:
        bounded = _left(timeout, httpcore.ConnectTimeout)
        stream = self._inner.connect_tcp(host, port, bounded, local_address, socket_options)
        return _DeadlineStream(stream)

    def connect_unix_socket(
        self, path: str, timeout: float | None = None, socket_options: Any = None
    ) -> httpcore.NetworkStream:
        raise httpcore.ConnectError("syncd connects over TCP only")

    def sleep(self, seconds: float) -> None:
        self._inner.sleep(seconds)


class DeadlineTransport(httpx.BaseTransport):
    """An httpx transport whose requests each must be over within ``timeout`` seconds, from
    connecting to the last byte of the answer (redirects each get their own)."""

    def __init__(self, timeout: float) -> None:
        self.timeout = timeout
        self._inner = httpx.HTTPTransport()
        # httpx offers no way to pass its pool a network backend: the pool it built (its TLS
        # context, its limits) gets the one bounding every read and write by the deadline.
        # tests/connectors/test_httpx_deadline.py fails should httpcore rename the attribute.
        self._inner._pool._network_backend = _DeadlineBackend()

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        # Not reset on return: the body is read after this returns, on this thread.
        _HTTPX_DEADLINE.set(time.monotonic() + self.timeout)
        return self._inner.handle_request(request)

    def close(self) -> None:
        self._inner.close()


# -- answers reported (syncd.contracts.ObservedResponses) ----------------------------------------
def route(url: str) -> str:
    """The path of ``url`` with its ids as ``:id`` (``/2/users/:id/mentions``): ids in paths
    would make one metric series per account or post."""
    return _ID_SEGMENT.sub("/:id", urlsplit(url).path) or "/"


class ResponseReporter:
    """The callbacks a source's ``observe_responses`` was given, told of each answer by a
    hook on whatever client the connector makes its requests with (:meth:`requests_hook` for
    a ``requests`` session's ``response`` hooks, :meth:`httpx_hook` for an httpx client's
    ``response`` event hooks). One reporter a source: every client it builds, now or later,
    is given the same hook, so a callback added once hears them all."""

    def __init__(self) -> None:
        # Replaced whole, never changed in place: hooks on other threads read it unlocked.
        self._callbacks: tuple[ResponseObserver, ...] = ()

    def add(self, callback: ResponseObserver) -> None:
        if callback not in self._callbacks:
            self._callbacks = (*self._callbacks, callback)

    def requests_hook(self, response: requests.Response, *args: Any, **kwargs: Any) -> None:
        self._tell(response.url, response.status_code, response.headers)

    def httpx_hook(self, response: httpx.Response) -> None:
        self._tell(str(response.request.url), response.status_code, response.headers)

    def _tell(self, url: str, status: int, headers: Mapping[str, str]) -> None:
        callbacks = self._callbacks
        if not callbacks:
            return
        path = route(url)
        lowered = {name.lower(): value for name, value in headers.items()}
        for callback in callbacks:
            callback(path, status, lowered)
